#include "connection.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "corun/http/error.hpp"
#include "proxy.hpp"

namespace corun::http::detail {

namespace urls = boost::urls;

namespace {

[[noreturn]] void bad_url(const std::string& url, std::string_view why) {
    throw error(error_kind::url, url, why);
}

}  // namespace

target parse_target(std::string url) {
    auto parsed = urls::parse_uri(url);
    if (!parsed) bad_url(url, "not a valid absolute URL (" + parsed.error().message() + ")");
    const urls::url_view& u = *parsed;
    target t;
    if (beast::iequals(u.scheme(), "https")) {
        t.tls = true;
    } else if (!beast::iequals(u.scheme(), "http")) {
        bad_url(url, "unsupported scheme '" + std::string(u.scheme()) + "' (http and https only)");
    }
    if (!u.has_authority() || u.encoded_host().empty()) bad_url(url, "the URL has no host");
    if (u.has_userinfo()) t.credentials.emplace(std::string(u.user()), std::string(u.password()));
    // RFC 3986: after an authority the path is empty or starts with '/'.
    // Boost.URL 1.81 accepts "http://10.0.0.1.example/" as host 10.0.0.1 and
    // path ".example/": the request would go to a host the URL does not name.
    if (!u.encoded_path().empty() && u.encoded_path().front() != '/')
        bad_url(url, "the authority is malformed (a path after it must start with '/')");
    if (u.host_type() == urls::host_type::name && u.host().find('\0') != std::string::npos)
        bad_url(url, "the host contains a NUL");
    t.host =
        u.host_type() == urls::host_type::ipv6 ? u.host_ipv6_address().to_string() : std::string(u.host());
    if (u.has_port()) {
        if (u.port().empty() || u.port_number() == 0)
            bad_url(url, "the port is not a number from 1 to 65535");
        t.port = u.port_number();
    } else {
        t.port = t.tls ? 443 : 80;
    }
    t.host_header = std::string(u.encoded_host_and_port());
    t.path = u.encoded_path().empty() ? "/" : std::string(u.encoded_path());
    if (u.has_query()) {
        t.path += '?';
        t.path += u.encoded_query();
    }
    t.origin =
        (t.tls ? "https://" : "http://") + std::string(u.encoded_host()) + ':' + std::to_string(t.port);
    if (u.has_userinfo()) {
        urls::url bare(u);
        bare.remove_userinfo();
        t.url = std::string(bare.buffer());
    } else {
        t.url = std::move(url);
    }
    return t;
}

std::string percent_encoded(std::string_view s, std::string_view keep) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        auto b = static_cast<unsigned char>(ch);
        if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
            keep.find(ch) != std::string_view::npos) {
            out += ch;
        } else {
            out += '%';
            out += hex[b >> 4];
            out += hex[b & 15];
        }
    }
    return out;
}

std::string resolve_location(const std::string& base, std::string_view location) {
    // '%' and the reserved characters are left as they are.
    std::string encoded = percent_encoded(location, "-._~:/?#[]@!$&'()*+,;=%");
    auto ref = urls::parse_uri_reference(encoded);
    if (!ref) {
        throw error(error_kind::url, base,
                    "the redirect's Location '" + std::string(location) + "' is not a valid URL");
    }
    urls::url dest;
    auto done = urls::resolve(urls::url_view(base), *ref, dest);
    if (!done)
        throw error(error_kind::url, base, "cannot resolve the redirect to '" + std::string(location) + "'");
    dest.remove_fragment();
    return std::string(dest.buffer());
}

connection::connection(const executor& ex, ssl::context* tls_context) {
    // Beast sizes each read by the buffer's free capacity, at least 512
    // bytes: without room reserved, a 1 KiB response costs three reads.
    buffer.reserve(16 * 1024);
    if (tls_context) {
        m_tls.emplace(ex, *tls_context);
    } else {
        m_plain.emplace(ex);
    }
}

tcp::socket& connection::socket() noexcept {
    return m_tls ? beast::get_lowest_layer(*m_tls).socket() : m_plain->socket();
}

awaitable<std::vector<tcp::endpoint>> resolve(const target& t) {
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(t.host, ec);
    std::vector<tcp::endpoint> endpoints;
    if (!ec) {
        endpoints.emplace_back(address, t.port);
        co_return endpoints;
    }
    tcp::resolver resolver(co_await this_executor());
    auto [rec, results] =
        co_await resolver.async_resolve(t.host, std::to_string(t.port), boost::asio::as_tuple(use_awaitable));
    if (rec == boost::asio::error::operation_aborted) throw boost::system::system_error(rec);
    if (rec) throw error(error_kind::resolve, t.url, "cannot resolve '" + t.host + "': " + rec.message());
    // RFC 8305 §4: alternate the families, starting with the resolver's first.
    std::vector<tcp::endpoint> first, other;
    for (const auto& r : results) {
        if (first.empty() || r.endpoint().protocol() == first.front().protocol()) {
            first.push_back(r.endpoint());
        } else {
            other.push_back(r.endpoint());
        }
    }
    for (std::size_t i = 0; i < std::max(first.size(), other.size()); ++i) {
        if (i < first.size()) endpoints.push_back(first[i]);
        if (i < other.size()) endpoints.push_back(other[i]);
    }
    co_return endpoints;
}

namespace {

/// The attempts of one Happy Eyeballs race. The attempts hold it by shared
/// pointer, so they may finish after the race is decided.
struct race {
    explicit race(const executor& ex) : wake(ex) {}
    boost::asio::steady_timer wake;  ///< cancelled to wake the racer
    std::vector<std::unique_ptr<tcp::socket>> sockets;
    std::optional<tcp::socket> winner;
    std::size_t running = 0;
    boost::system::error_code last;
    bool decided = false;
};

awaitable<void> attempt(std::shared_ptr<race> r, std::size_t i, tcp::endpoint ep) {
    auto [ec] = co_await r->sockets[i]->async_connect(ep, boost::asio::as_tuple(use_awaitable));
    --r->running;
    if (!ec && !r->decided) {
        r->decided = true;
        r->winner.emplace(std::move(*r->sockets[i]));
    } else if (ec && ec != boost::asio::error::operation_aborted) {
        r->last = ec;
    }
    r->wake.cancel();
}

}  // namespace

awaitable<tcp::socket> connect_any(const std::vector<tcp::endpoint>& endpoints) {
    if (endpoints.empty()) throw boost::system::system_error(boost::asio::error::host_not_found);
    executor ex = co_await this_executor();
    auto r = std::make_shared<race>(ex);
    // However the race ends, the attempts still running are stopped.
    struct stop_the_rest {
        race& r;
        ~stop_the_rest() {
            r.decided = true;
            boost::system::error_code ignored;
            for (auto& s : r.sockets) s->close(ignored);
        }
    } guard{*r};
    constexpr auto stagger = std::chrono::milliseconds(250);
    auto next_start = clock::now();
    std::size_t started = 0;
    for (;;) {
        if (r->winner) co_return std::move(*r->winner);
        if (started < endpoints.size() && (r->running == 0 || clock::now() >= next_start)) {
            r->sockets.push_back(std::make_unique<tcp::socket>(ex));
            ++r->running;
            boost::asio::co_spawn(ex, attempt(r, started, endpoints[started]), boost::asio::detached);
            ++started;
            next_start = clock::now() + stagger;
            continue;
        }
        if (r->running == 0) throw boost::system::system_error(r->last);
        r->wake.expires_at(started < endpoints.size() ? next_start : clock::time_point::max());
        co_await r->wake.async_wait(boost::asio::as_tuple(use_awaitable));
        auto cs = co_await boost::asio::this_coro::cancellation_state;
        if (cs.cancelled() != boost::asio::cancellation_type::none)
            throw boost::system::system_error(boost::asio::error::operation_aborted);
    }
}

awaitable<void> connection::open(const target& t, const std::vector<tcp::endpoint>& endpoints,
                                 const proxy_target* proxy, std::size_t max_header_size) {
    boost::system::error_code ec;
    (void)boost::asio::ip::make_address(t.host, ec);
    const bool literal_address = !ec;
    auto& lowest = m_tls ? beast::get_lowest_layer(*m_tls) : *m_plain;
    try {
        lowest.socket() = co_await connect_any(endpoints);
    } catch (const boost::system::system_error& e) {
        if (e.code() == boost::asio::error::operation_aborted) throw;
        if (proxy)
            throw error(error_kind::proxy, t.url,
                        "cannot connect to the proxy " + proxy->url + ": " + e.code().message());
        throw error(error_kind::connect, t.url,
                    "cannot connect to " + t.host_header + ": " + e.code().message());
    }
    if (proxy && m_tls) co_await open_tunnel(lowest, t, *proxy, max_header_size);
    lowest.socket().set_option(tcp::no_delay(true), ec);
    if (!m_tls) co_return;

    SSL* ssl_handle = m_tls->native_handle();
    // Asio's engine asks OpenSSL to free its record buffers whenever they are
    // empty, which costs several 16 KiB allocations per request; a pooled
    // connection keeps them instead.
    SSL_clear_mode(ssl_handle, SSL_MODE_RELEASE_BUFFERS);
    if (!literal_address) {
        // SNI carries host names only, never addresses (RFC 6066).
        SSL_set_tlsext_host_name(ssl_handle, t.host.c_str());
        SSL_set1_host(ssl_handle, t.host.c_str());
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_handle), t.host.c_str());
    }
    auto [hec] =
        co_await m_tls->async_handshake(ssl::stream_base::client, boost::asio::as_tuple(use_awaitable));
    if (hec == boost::asio::error::operation_aborted) throw boost::system::system_error(hec);
    long verify = SSL_get_verify_result(ssl_handle);
    if (hec) {
        std::string why = verify != X509_V_OK ? std::string("certificate verification failed: ") +
                                                    X509_verify_cert_error_string(verify)
                                              : "handshake failed: " + hec.message();
        throw error(error_kind::tls, t.url, why);
    }
    // With `insecure` the handshake succeeds whatever the certificate; OpenSSL
    // has still checked it, and the response says how that went.
    m_verified = verify == X509_V_OK && SSL_get0_peer_certificate(ssl_handle) != nullptr;
}

bool connection::looks_alive() noexcept {
    if (!socket().is_open()) return false;
    if (buffer.size() != 0) return false;
    // Over TLS, bytes that came while idle may already have left the socket
    // for OpenSSL's buffers, as a record read with the last response.
    if (m_tls) {
        SSL* ssl = m_tls->native_handle();
        if (SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0) return false;
    }
    char byte;
    ssize_t n = ::recv(socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void connection::close() noexcept {
    boost::system::error_code ignored;
    // No TLS close_notify: every response read is length-delimited, and a
    // client that is done owes the server no goodbye (browsers skip it too).
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
}

}  // namespace corun::http::detail
