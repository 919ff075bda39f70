#include "corun/http/client.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <list>
#include <set>
#include <unordered_map>

#include <openssl/ssl.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include "connection.hpp"
#include "corun/timeout.hpp"
#include "decoder.hpp"
#include "proxy.hpp"

namespace corun::http {

namespace bhttp = boost::beast::http;
using detail::clock;
using detail::connection;
using detail::proxy_target;
using detail::target;
namespace ssl = boost::asio::ssl;
using boost::asio::as_tuple;
using boost::beast::iequals;
using boost::system::error_code;

namespace {

std::string in_ms(std::chrono::milliseconds d) {
    return std::to_string(d.count()) + " ms";
}

/// Safe to send twice (RFC 9110 §9.2.2): a request on a kept-alive
/// connection that the server had already closed is sent again on a new one.
bool idempotent(std::string_view method) {
    for (std::string_view m : {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
        if (m == method) return true;
    return false;
}

bool is_redirect(int status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool is_token(std::string_view s) {
    return !s.empty() && std::ranges::all_of(s, [](unsigned char ch) {
        return std::isalnum(ch) ||
               std::string_view("!#$%&'*+-.^_`|~").find(char(ch)) != std::string_view::npos;
    });
}

/// `op`, bounded by `limit`. Running out is an `error` of kind timeout naming
/// `url` as it is then (a redirect may have changed it): "<what> within the
/// timeout of <stated>". Built only then, never on the way through.
template <class T>
awaitable<T> bounded(std::chrono::milliseconds limit, std::chrono::milliseconds stated,
                     const std::string& url, const char* what, awaitable<T> op) {
    try {
        co_return co_await with_timeout(limit, std::move(op));
    } catch (const timeout_error&) {
        throw error(error_kind::timeout, url, std::string(what) + " within the timeout of " + in_ms(stated));
    }
}

}  // namespace

// ---- the connection pool ---------------------------------------------------

class client_state;

/// A connection taken from the pool; goes back (or is closed) when dropped.
class lease {
public:
    lease(std::shared_ptr<client_state> pool, std::string origin, std::unique_ptr<connection> conn,
          bool reused)
        : m_pool(std::move(pool)), m_origin(std::move(origin)), m_conn(std::move(conn)), m_reused(reused) {}
    lease(lease&&) noexcept = default;
    lease& operator=(lease&&) = delete;
    ~lease() { give_back(false); }

    connection& conn() noexcept { return *m_conn; }
    bool reused() const noexcept { return m_reused; }
    bool held() const noexcept { return m_conn != nullptr; }
    /// Returns the connection for reuse (`keep_alive`) or closes it.
    void give_back(bool keep_alive) noexcept;

private:
    std::shared_ptr<client_state> m_pool;
    std::string m_origin;
    std::unique_ptr<connection> m_conn;
    bool m_reused;
};

class client_state : public std::enable_shared_from_this<client_state> {
public:
    client_state(executor ex, client_options options, fields headers)
        : m_ex(std::move(ex)),
          m_options(std::move(options)),
          m_headers(std::move(headers)),
          m_sweeper(m_ex) {}

    const executor& get_executor() const noexcept { return m_ex; }
    const client_options& options() const noexcept { return m_options; }
    /// The proxy for a request to `t`, its URL parsed once per client.
    std::optional<proxy_target> proxy_for(const target& t) {
        return detail::choose_proxy(m_options.proxy.view(), m_options.trust_env, t, &m_proxies);
    }
    /// The fields sent with every request.
    const fields& headers() const noexcept { return m_headers; }

    /// A decoder of `kind`, reused if one is spare: a zlib window and state
    /// are not allocated per response.
    std::unique_ptr<detail::decoder> take_decoder(std::string_view kind) {
        for (auto it = m_spare_decoders.begin(); it != m_spare_decoders.end(); ++it) {
            if ((*it)->name() != kind) continue;
            auto d = std::move(*it);
            m_spare_decoders.erase(it);
            return d;
        }
        return detail::decoder::make(kind);
    }
    void give_back_decoder(std::unique_ptr<detail::decoder> d) noexcept {
        if (m_spare_decoders.size() >= 16) return;
        try {
            d->reset();
            m_spare_decoders.push_back(std::move(d));
        } catch (...) {
        }
    }

    awaitable<lease> acquire(const target& t, const proxy_target* proxy, bool fresh);
    void give_back(const std::string& origin, std::unique_ptr<connection> c, bool keep_alive) noexcept;
    void shut_down() noexcept;

private:
    struct host {
        std::vector<std::unique_ptr<connection>> idle;  // most recently used last
        std::size_t open = 0;                           // idle, busy and connecting
    };

    bool room_for(const host& h) const noexcept {
        return m_open < m_options.limit &&
               (m_options.limit_per_host == 0 || h.open < m_options.limit_per_host);
    }
    void forget(host& h, connection& c) noexcept {
        c.close();
        --h.open;
        --m_open;
    }
    bool evict_idle_except(const std::string& origin) noexcept;
    awaitable<void> wait_for_room();
    /// Resolves `t`'s host, or the proxy's (or takes the addresses from the
    /// cache), and connects.
    awaitable<void> open(connection& c, const target& t, const proxy_target* proxy);
    void wake_waiters() noexcept {
        for (auto* w : m_waiters) w->cancel();
    }
    void arm_sweeper() noexcept;
    void sweep() noexcept;
    ssl::context& tls_context(const target& t);

    executor m_ex;
    client_options m_options;
    fields m_headers;
    detail::proxy_cache m_proxies;
    std::vector<std::unique_ptr<detail::decoder>> m_spare_decoders;
    std::unordered_map<std::string, host> m_hosts;
    std::size_t m_open = 0;
    std::list<boost::asio::steady_timer*> m_waiters;
    boost::asio::steady_timer m_sweeper;
    bool m_sweeping = false;
    bool m_shut_down = false;
    std::optional<ssl::context> m_tls;
    struct resolved {
        std::vector<detail::tcp::endpoint> endpoints;
        clock::time_point expires;
    };
    std::unordered_map<std::string, resolved> m_dns;  // by host:port
};

void lease::give_back(bool keep_alive) noexcept {
    if (m_conn) m_pool->give_back(m_origin, std::move(m_conn), keep_alive);
}

ssl::context& client_state::tls_context(const target& t) {
    if (m_tls) return *m_tls;
    ssl::context ctx(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    error_code ec;
    if (m_options.system_ca) ctx.set_default_verify_paths(ec);
    auto load = [&](std::string_view what, const std::string& file, auto&& how) {
        error_code lec;
        how(file, lec);
        if (lec)
            throw error(error_kind::tls, t.url,
                        "cannot load the " + std::string(what) + " '" + file + "': " + lec.message());
    };
    if (!m_options.ca_file.empty())
        load("CA file", m_options.ca_file.str(),
             [&](const std::string& f, error_code& e) { ctx.load_verify_file(f, e); });
    if (!m_options.cert_file.empty()) {
        load("client certificate", m_options.cert_file.str(),
             [&](const std::string& f, error_code& e) { ctx.use_certificate_chain_file(f, e); });
        std::string key = m_options.key_file.empty() ? m_options.cert_file.str() : m_options.key_file.str();
        load("client key", key,
             [&](const std::string& f, error_code& e) { ctx.use_private_key_file(f, ssl::context::pem, e); });
        if (SSL_CTX_check_private_key(ctx.native_handle()) != 1)
            throw error(error_kind::tls, t.url,
                        "the client key '" + key + "' does not match the certificate");
    }
    ctx.set_verify_mode(m_options.insecure ? ssl::verify_none : ssl::verify_peer);
    return m_tls.emplace(std::move(ctx));
}

awaitable<lease> client_state::acquire(const target& t, const proxy_target* proxy, bool fresh) {
    auto self = shared_from_this();
    // Connections through a proxy (and its credentials) are pooled apart.
    const std::string key = proxy ? t.origin + " via " + proxy->key : t.origin;
    for (;;) {
        host& h = m_hosts[key];
        while (!fresh && !h.idle.empty()) {
            auto c = std::move(h.idle.back());
            h.idle.pop_back();
            // Every reused connection is checked first, as curl does: a
            // non-blocking peek, no I/O consumed. One the server has closed,
            // or that received bytes while idle (a late answer, stray bytes
            // after a 204 or HEAD response), is closed, never read from.
            auto idle = clock::now() - c->idle_since;
            if (idle < m_options.idle_timeout && c->looks_alive())
                co_return lease(self, key, std::move(c), true);
            forget(h, *c);
        }
        if (room_for(h) || (m_open >= m_options.limit && evict_idle_except(key) && room_for(h))) {
            ssl::context* tls = t.tls ? &tls_context(t) : nullptr;
            ++h.open;
            ++m_open;
            std::exception_ptr failed;
            auto c = std::make_unique<connection>(m_ex, tls);
            // Every read is bounded: a header, a chunk-size line or a trailer
            // section longer than this is `too_large`, whatever the server sends.
            c->buffer.max_size(std::min(m_options.max_header_size, SIZE_MAX / 2) + 16 * 1024);
            try {
                co_await bounded(m_options.connect_timeout, m_options.connect_timeout, t.url, "no connection",
                                 open(*c, t, proxy));
            } catch (...) {
                failed = std::current_exception();
            }
            if (failed) {
                forget(m_hosts[key], *c);
                wake_waiters();
                std::rethrow_exception(failed);
            }
            co_return lease(self, key, std::move(c), false);
        }
        co_await wait_for_room();
    }
}

awaitable<void> client_state::open(connection& c, const target& t, const proxy_target* proxy) {
    // The name resolved is the proxy's when there is one (the proxy resolves
    // the origin's).
    target peer;
    if (proxy) {
        peer.url = t.url;
        peer.host = proxy->host;
        peer.port = proxy->port;
    }
    const target& dial = proxy ? peer : t;
    std::string key = dial.host + ':' + std::to_string(dial.port);
    auto now = clock::now();
    std::erase_if(m_dns, [&](const auto& entry) { return entry.second.expires <= now; });
    std::vector<detail::tcp::endpoint> endpoints;
    if (auto hit = m_dns.find(key); hit != m_dns.end()) {
        endpoints = hit->second.endpoints;
    } else {
        try {
            endpoints = co_await detail::resolve(dial);
        } catch (const error& e) {
            if (!proxy) throw;
            throw error(error_kind::proxy, t.url, "cannot resolve the proxy " + proxy->url + ": " + e.what());
        }
        if (m_options.dns_cache_ttl.count() > 0)
            m_dns[key] = {endpoints, clock::now() + m_options.dns_cache_ttl};
    }
    try {
        co_await c.open(t, endpoints, proxy, m_options.max_header_size);
    } catch (const error& e) {
        // Addresses none of which connects are resolved again next time.
        if (e.kind() == error_kind::connect || e.kind() == error_kind::proxy) m_dns.erase(key);
        throw;
    }
}

bool client_state::evict_idle_except(const std::string& origin) noexcept {
    for (auto& [key, h] : m_hosts) {
        if (key == origin || h.idle.empty()) continue;
        auto c = std::move(h.idle.front());
        h.idle.erase(h.idle.begin());
        forget(h, *c);
        return true;
    }
    return false;
}

awaitable<void> client_state::wait_for_room() {
    // A timer that never expires by itself: give_back cancels it to wake us.
    boost::asio::steady_timer signal(m_ex, clock::time_point::max());
    m_waiters.push_back(&signal);
    // Unlisted however the frame ends: resumed, or destroyed unresumed (the
    // io_context torn down), else give_back would cancel a dead timer.
    struct unlist {
        std::list<boost::asio::steady_timer*>& waiters;
        std::list<boost::asio::steady_timer*>::iterator me;
        ~unlist() { waiters.erase(me); }
    } guard{m_waiters, std::prev(m_waiters.end())};
    co_await signal.async_wait(as_tuple(use_awaitable));
    auto cs = co_await boost::asio::this_coro::cancellation_state;
    if (cs.cancelled() != boost::asio::cancellation_type::none)
        throw boost::system::system_error(boost::asio::error::operation_aborted);
}

void client_state::give_back(const std::string& origin, std::unique_ptr<connection> c,
                             bool keep_alive) noexcept {
    host& h = m_hosts[origin];
    // Bytes the server sent beyond the response (nothing is pipelined) would
    // be read as the answer to the next request on this connection.
    if (keep_alive && !m_shut_down && c->buffer.size() == 0) {
        c->idle_since = clock::now();
        h.idle.push_back(std::move(c));
        arm_sweeper();
    } else {
        forget(h, *c);
    }
    if (!m_waiters.empty()) wake_waiters();
}

void client_state::arm_sweeper() noexcept {
    if (m_sweeping) return;
    m_sweeping = true;
    m_sweeper.expires_after(m_options.idle_timeout);
    m_sweeper.async_wait([weak = weak_from_this()](const error_code&) {
        if (auto self = weak.lock()) self->sweep();
    });
}

/// Closes the connections idle for longer than `idle_timeout`, so an unused
/// client holds no sockets open for long.
void client_state::sweep() noexcept {
    m_sweeping = false;
    if (m_shut_down) return;
    bool any_left = false;
    auto now = clock::now();
    for (auto& [key, h] : m_hosts) {
        std::erase_if(h.idle, [&](auto& c) {
            if (now - c->idle_since < m_options.idle_timeout) return false;
            forget(h, *c);
            return true;
        });
        any_left = any_left || !h.idle.empty();
    }
    if (any_left) arm_sweeper();
    if (!m_waiters.empty()) wake_waiters();
}

void client_state::shut_down() noexcept {
    m_shut_down = true;
    for (auto& [key, h] : m_hosts) {
        for (auto& c : h.idle) forget(h, *c);
        h.idle.clear();
    }
    m_sweeper.cancel();
    wake_waiters();
}

// ---- one exchange ----------------------------------------------------------

namespace {

/// A request's options: the client's, with what the request changes.
struct settings {
    std::chrono::milliseconds timeout;
    std::chrono::milliseconds read_timeout;
    int max_redirects;
    redirect_policy redirects;
    bool decompress;
    basic_auth auth;
};

settings effective(const client_options& o, const request_options& r) {
    return {r.timeout.count() > 0 ? r.timeout : o.timeout,
            r.read_timeout.count() > 0 ? r.read_timeout : o.read_timeout,
            r.max_redirects >= 0 ? r.max_redirects : o.max_redirects,
            r.redirects.value_or(o.redirects),
            r.decompress.value_or(o.decompress),
            r.user.empty() && r.password.empty() ? o.auth : basic_auth{r.user, r.password}};
}

struct request_spec {
    std::string method;
    std::string body;
    std::optional<upload> piecewise;
    fields headers;
    settings set;
    /// For `stream`: the body is read in chunks, so no limit applies to it.
    bool streamed = false;
    /// A redirect has left the first origin: the client-wide fields bound
    /// to an origin (`origin_bound`) are no longer sent.
    bool left_origin = false;
};

/// Fields meant for one origin: credentials, and a Host the caller set.
/// Never handed to another origin on a redirect.
bool origin_bound(std::string_view name) {
    return iequals(name, "authorization") || iequals(name, "cookie") ||
           iequals(name, "proxy-authorization") || iequals(name, "host");
}

error read_failure(const error_code& ec, const std::string& url, const client_options& o,
                   std::string_view while_) {
    if (ec == bhttp::error::header_limit)
        return error(
            error_kind::too_large, url,
            "the response header exceeds the limit of " + std::to_string(o.max_header_size) + " bytes");
    if (ec == bhttp::error::body_limit)
        return error(error_kind::too_large, url,
                     "the response body exceeds the limit of " + std::to_string(o.max_body_size) + " bytes");
    if (ec == bhttp::error::buffer_overflow)
        return error(error_kind::too_large, url,
                     "a chunk-size line or the trailer section exceeds the limit of " +
                         std::to_string(o.max_header_size) + " bytes");
    if (ec == bhttp::error::end_of_stream)
        return error(error_kind::protocol, url, "the server closed the connection without a response");
    if (ec == bhttp::error::partial_message)
        return error(error_kind::protocol, url, "the connection closed in the middle of the response");
    if (ec == ssl::error::stream_truncated)
        return error(error_kind::protocol, url, "the TLS stream was cut off in the middle of the response");
    if (ec.category() == boost::asio::error::get_ssl_category()) {
        // An alert after the handshake: in TLS 1.3 the server checks a client
        // certificate only then ("certificate required", "unknown ca" …).
        std::string why = "the TLS connection failed " + std::string(while_) + ": " + ec.message();
        if (ec.message().find("certificate required") != std::string::npos)
            why += " (the server asks for a client certificate: cert_file and key_file)";
        return error(error_kind::tls, url, why);
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category())
        return error(error_kind::protocol, url, "malformed response (" + ec.message() + ")");
    return error(error_kind::protocol, url, std::string(while_) + " failed: " + ec.message());
}

bool closed_before_answering(const error_code& ec) {
    return ec == bhttp::error::end_of_stream || ec == boost::asio::error::connection_reset ||
           ec == boost::asio::error::eof || ec == ssl::error::stream_truncated ||
           ec == boost::asio::error::broken_pipe;
}

/// The request's timeout ran out while it was busy, not waiting.
error deadline_passed(const std::string& url, std::chrono::milliseconds stated) {
    return error(error_kind::timeout, url, "no complete response within the timeout of " + in_ms(stated));
}

/// Where the header that starts `s` ends (after its empty line), looking from
/// `from`; npos while it is incomplete. A bare LF ends a line too.
std::size_t header_end(std::string_view s, std::size_t from) {
    for (auto i = s.find('\n', from); i != s.npos; i = s.find('\n', i + 1)) {
        if (i + 1 < s.size() && s[i + 1] == '\n') return i + 2;
        if (i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') return i + 3;
    }
    return s.npos;
}

/// `head` as Beast parses it: CRLF line endings, and a status line with a
/// reason phrase (possibly empty). Browsers and curl accept bare LF endings
/// and "HTTP/1.1 200" alone; nothing else is changed. Empty when `head` needs
/// no change, which is nearly always.
std::string normalised_header(std::string_view head) {
    bool bare_lf = false;
    for (auto i = head.find('\n'); i != head.npos && !bare_lf; i = head.find('\n', i + 1))
        bare_lf = i == 0 || head[i - 1] != '\r';
    std::string_view first = head.substr(0, head.find('\n'));
    if (first.ends_with('\r')) first.remove_suffix(1);
    bool no_reason = first.size() == 12 && first.starts_with("HTTP/");
    if (!bare_lf && !no_reason) return {};
    std::string out;
    out.reserve(head.size() + 16);
    for (std::size_t at = 0; at < head.size();) {
        auto nl = head.find('\n', at);
        std::string_view line = head.substr(at, nl - at);
        if (line.ends_with('\r')) line.remove_suffix(1);
        out.append(line);
        if (at == 0 && no_reason) out += ' ';
        out += "\r\n";
        at = nl + 1;
    }
    return out;
}

}  // namespace

/// An answered request: its connection, the parser holding the header, and
/// the body still to read.
class stream_state {
public:
    stream_state(std::shared_ptr<client_state> pool, lease l, const settings& set)
        : pool(std::move(pool)),
          conn(std::move(l)),
          read_timeout(set.read_timeout),
          stated_timeout(set.timeout),
          decompress(set.decompress) {}
    stream_state(const stream_state&) = delete;
    stream_state& operator=(const stream_state&) = delete;
    ~stream_state() {
        if (m_decoder) pool->give_back_decoder(std::move(m_decoder));
    }

    /// Reads one response header into `*parser`. A failure is returned, but
    /// a cancellation is thrown. `got_bytes` says whether anything came.
    awaitable<error_code> read_header(bool& got_bytes);
    /// Reads up to `size` body bytes as they came into `data`; returns how
    /// many (possibly 0 while framing is parsed). Gives the connection back at the end.
    awaitable<std::size_t> read_raw(char* data, std::size_t size);
    /// Reads up to `size` bytes of the body, decoded; 0 only at its end.
    awaitable<std::size_t> read_body(char* data, std::size_t size);
    /// The whole body, decoded, within `limit` bytes.
    awaitable<void> read_all(std::string& out, std::size_t limit);
    /// The exchange failed with `ec` while `doing` something: the connection
    /// is closed, and a cancellation stays a cancellation.
    [[noreturn]] void broken(const error_code& ec, std::string_view doing);
    /// Reads the body into nothing, so the connection can carry the next
    /// request (a redirect's body); memory does not grow with it.
    awaitable<void> discard_body() {
        std::array<char, 16 * 1024> sink;
        while (!parser->is_done()) co_await read_raw(sink.data(), sink.size());
    }
    /// The header is in: sets `head` and the decoder, and gives the
    /// connection back if the response has no body.
    void took_header(const std::string& method);
    /// Throws `error` of kind timeout once the request's deadline has passed:
    /// a read that completes at once, however fast bytes come, still stops.
    void check_deadline() {
        if (clock::now() < deadline) return;
        conn.give_back(false);
        throw deadline_passed(head.url, stated_timeout);
    }

    std::shared_ptr<client_state> pool;
    lease conn;
    /// An optional so that it can be remade after a 1xx interim response.
    std::optional<bhttp::response_parser<bhttp::buffer_body>> parser{std::in_place};
    response head;
    clock::time_point deadline = clock::time_point::max();
    std::chrono::milliseconds read_timeout;
    std::chrono::milliseconds stated_timeout;
    bool decompress;
    /// The connection is closed after this response whatever it says (the
    /// request's body was not all sent).
    bool close_after = false;

private:
    /// `op()` bounded by the read timeout, if there is one.
    template <class MakeOp>
    auto one_read(MakeOp op) -> decltype(op()) {
        if (read_timeout.count() <= 0) co_return co_await op();
        // A read delivers its cancellation as a value (as_tuple), which
        // with_timeout would return as it is, never saying that its time ran
        // out: the cancellation is made an exception again, so that the read
        // timeout is a timeout_error and any other cancellation stays one.
        auto aborted_throws = [](decltype(op()) read) -> decltype(op()) {
            auto result = co_await std::move(read);
            if (std::get<0>(result) == boost::asio::error::operation_aborted)
                throw boost::system::system_error(std::get<0>(result));
            co_return result;
        };
        try {
            co_return co_await with_timeout(read_timeout, aborted_throws(op()));
        } catch (const timeout_error&) {
            conn.give_back(false);
            throw error(error_kind::timeout, head.url,
                        "no bytes arrived within the read timeout of " + in_ms(read_timeout));
        }
    }

    std::unique_ptr<detail::decoder> m_decoder;
    static constexpr std::size_t raw_piece = 16 * 1024;
};

void stream_state::broken(const error_code& ec, std::string_view doing) {
    conn.give_back(false);
    if (ec == boost::asio::error::operation_aborted) throw boost::system::system_error(ec);
    throw read_failure(ec, head.url, pool->options(), doing);
}

awaitable<error_code> stream_state::read_header(bool& got_bytes) {
    auto& c = conn.conn();
    auto& p = *parser;
    const std::size_t limit = pool->options().max_header_size;
    std::size_t scanned = 0;
    for (;;) {
        std::string_view data(static_cast<const char*>(c.buffer.data().data()), c.buffer.size());
        if (auto end = header_end(data, scanned); end != data.npos) {
            if (end > limit) co_return bhttp::error::header_limit;
            std::string_view raw = data.substr(0, end);
            std::string fixed = normalised_header(raw);
            error_code ec;
            p.put(boost::asio::buffer(fixed.empty() ? raw : std::string_view(fixed)), ec);
            c.buffer.consume(end);
            if (ec == bhttp::error::need_more) ec = bhttp::error::bad_line_ending;
            co_return ec;
        }
        if (data.size() >= limit) co_return bhttp::error::header_limit;
        scanned = data.size() < 3 ? 0 : data.size() - 3;
        check_deadline();
        std::size_t room = std::min(std::max<std::size_t>(c.buffer.capacity() - c.buffer.size(), 512),
                                    c.buffer.max_size() - c.buffer.size());
        auto [ec, n] = co_await one_read([&] {
            return c.with_stream(
                [&](auto& s) { return s.async_read_some(c.buffer.prepare(room), as_tuple(use_awaitable)); });
        });
        c.buffer.commit(n);
        got_bytes = got_bytes || n > 0;
        if (ec == boost::asio::error::operation_aborted) throw boost::system::system_error(ec);
        if (ec == boost::asio::error::eof)
            co_return c.buffer.size() == 0 ? bhttp::error::end_of_stream : bhttp::error::partial_message;
        if (ec) co_return ec;
    }
}

void stream_state::took_header(const std::string& method) {
    auto& p = *parser;
    auto& msg = p.get();
    head.status = static_cast<int>(msg.result_int());
    head.reason = std::string(msg.reason());
    head.headers.reserve(16);
    for (const auto& f : msg) head.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    head.tls_verified = conn.conn().tls() && conn.conn().verified();
    if (decompress && method != "HEAD" && !p.is_done()) {
        auto encoding = head.header("content-encoding");
        if (auto kind = encoding ? detail::decoder::kind_of(*encoding) : std::string_view(); !kind.empty()) {
            try {
                m_decoder = pool->take_decoder(kind);
            } catch (const detail::decode_error& e) {
                conn.give_back(false);
                throw error(error_kind::protocol, head.url, e.what());
            }
        }
    }
    // 101: the connection now speaks another protocol; never pooled.
    if (p.is_done()) conn.give_back(head.status != 101 && !close_after && msg.keep_alive() && !p.need_eof());
}

awaitable<std::size_t> stream_state::read_raw(char* data, std::size_t size) {
    if (parser->is_done()) co_return 0;
    if (!conn.held()) throw error(error_kind::protocol, head.url, "the response body was already broken off");
    check_deadline();
    auto& body = parser->get().body();
    body.data = data;
    body.size = size;
    body.more = true;
    auto& c = conn.conn();
    auto [ec, n] = co_await one_read([&] {
        return c.with_stream(
            [&](auto& s) { return bhttp::async_read_some(s, c.buffer, *parser, as_tuple(use_awaitable)); });
    });
    std::size_t got = size - body.size;
    if (ec && ec != bhttp::error::need_buffer) broken(ec, "reading the response body");
    if (parser->is_done()) conn.give_back(!close_after && parser->get().keep_alive() && !parser->need_eof());
    co_return got;
}

awaitable<std::size_t> stream_state::read_body(char* data, std::size_t size) {
    if (!m_decoder) {
        for (;;) {
            std::size_t n = co_await read_raw(data, size);
            if (n > 0 || parser->is_done()) co_return n;
        }
    }
    for (;;) {
        try {
            if (std::size_t n = m_decoder->output(data, size)) co_return n;
            if (parser->is_done()) {
                m_decoder->finish();
                co_return 0;
            }
        } catch (const detail::decode_error& e) {
            conn.give_back(false);
            throw error(error_kind::protocol, head.url, e.what());
        }
        // Encoded bytes are read straight into the decoder's input.
        m_decoder->commit(co_await read_raw(m_decoder->input_space(raw_piece), raw_piece));
    }
}

awaitable<void> stream_state::read_all(std::string& out, std::size_t limit) {
    std::size_t filled = out.size();
    if (!m_decoder) {
        while (!parser->is_done()) {
            if (filled == out.size()) {
                auto known = parser->content_length_remaining();
                out.resize(filled + (known ? std::max<std::size_t>(static_cast<std::size_t>(*known), 1)
                                           : std::max<std::size_t>(filled, 16 * 1024)));
            }
            filled += co_await read_raw(out.data() + filled, out.size() - filled);
        }
        out.resize(filled);
        co_return;
    }
    // Decoded: the limit applies to what the body decodes to, so a small
    // compressed body that would decode to gigabytes stops at the limit.
    // With its length known (and so within the limit, which the parser
    // holds the encoded body to), the encoded body is read whole first: a
    // gzip body then states its decoded size, and the result is allocated
    // once. Otherwise, room for a few times what has come.
    if (parser->content_length_remaining()) {
        while (!parser->is_done())
            m_decoder->commit(co_await read_raw(m_decoder->input_space(raw_piece), raw_piece));
        out.resize(filled);
        if (filled <= limit && m_decoder->decode_whole(out, limit - filled)) co_return;
        if (std::size_t stated = m_decoder->stated_size(); stated > 0 && stated <= limit)
            out.reserve(filled + stated + 1);
    }
    for (;;) {
        if (filled == out.size()) {
            if (filled > limit) {
                conn.give_back(false);
                throw error(
                    error_kind::too_large, head.url,
                    "the decoded response body exceeds the limit of " + std::to_string(limit) + " bytes");
            }
            out.resize(std::min(std::max({filled * 2, std::size_t{16 * 1024}, out.capacity()}), limit + 1));
        }
        std::size_t n = co_await read_body(out.data() + filled, out.size() - filled);
        if (n == 0) break;
        filled += n;
    }
    out.resize(filled);
}

namespace {

bool given(const fields& headers, std::string_view name) {
    return std::ranges::any_of(headers, [&](const auto& f) { return iequals(f.first, name); });
}

/// Throws `error` of kind `request` for what no server should be sent: a
/// method that is not a token, a field that could smuggle another header or
/// request into the stream, framing fields that disagree with the body.
/// The framing fields are the client's: a matching Content-Length is dropped
/// (the client writes its own), any other is refused, as is Transfer-Encoding.
/// The client-wide fields (`defaults`) are checked alike: they go out with
/// every request.
void check_request(request_spec& spec, const fields& defaults, const std::string& url) {
    if (!is_token(spec.method))
        throw error(error_kind::request, url, "the method '" + spec.method + "' is not a valid token");
    auto check = [&](const fields& fs, std::string_view whose) {
        for (const auto& [name, value] : fs) {
            if (!is_token(name))
                throw error(error_kind::request, url,
                            std::string(whose) + "header field name '" + name + "' is not a valid token");
            if (value.find_first_of(std::string_view("\r\n\0", 3)) != value.npos)
                throw error(
                    error_kind::request, url,
                    "the value of " + std::string(whose) + "header field '" + name + "' holds CR, LF or NUL");
            if (iequals(name, "transfer-encoding"))
                throw error(error_kind::request, url,
                            "Transfer-Encoding is the client's to set (pass an `upload` for a chunked body)");
            if (iequals(name, "content-length")) {
                std::uint64_t length =
                    spec.piecewise ? spec.piecewise->length().value_or(UINT64_MAX) : spec.body.size();
                if (value != std::to_string(length))
                    throw error(
                        error_kind::request, url,
                        "Content-Length: " + value + " does not match the body of " +
                            (length == UINT64_MAX ? std::string("unknown length") : std::to_string(length)) +
                            " bytes; the client sets it");
            }
        }
    };
    check(spec.headers, "the ");
    check(defaults, "the client-wide ");
    std::erase_if(spec.headers, [](const auto& f) { return iequals(f.first, "content-length"); });
}

/// The request head, with the body appended when it is a string (one write).
/// Written by hand rather than with Beast's serializer: the serializer's
/// buffer sequences cost more than the rest of the request together
/// (measured with perf), and a request head is a few lines.
///
/// Through a proxy (plain http only: https goes through a tunnel), the target
/// is in absolute form and the proxy's credentials go along (RFC 9112 §3.2.2).
/// `tunnelled`: the request goes to the origin through a proxy's tunnel.
std::string serialize_request(const request_spec& spec, const target& t, const fields& defaults,
                              std::string_view user_agent, const proxy_target* proxy, bool tunnelled) {
    std::string out;
    out.reserve(256 + t.path.size() + spec.body.size());
    auto field = [&](std::string_view name, std::string_view value) {
        out.append(name).append(": ").append(value).append("\r\n");
    };
    // A client-wide field goes out unless the request has its own, but never
    // Content-Length (the client writes its own) nor, once a redirect has
    // left the first origin, one bound to that origin.
    auto default_sent = [&](std::string_view name) {
        return !given(spec.headers, name) && !iequals(name, "content-length") &&
               !(spec.left_origin && origin_bound(name));
    };
    auto has = [&](std::string_view name) {
        return given(spec.headers, name) || (given(defaults, name) && default_sent(name));
    };
    out.append(spec.method).append(" ");
    if (proxy) out.append("http://").append(t.host_header);
    out.append(t.path).append(" HTTP/1.1\r\n");
    if (proxy && !proxy->authorization.empty() && !has("proxy-authorization"))
        field("Proxy-Authorization", proxy->authorization);
    // Through a tunnel the origin reads every field: a Proxy-Authorization
    // there would hand the proxy's credentials to it.
    auto for_origin = [&](std::string_view name) {
        return !(tunnelled && iequals(name, "proxy-authorization"));
    };
    if (!has("host")) field("Host", t.host_header);
    if (!has("user-agent")) field("User-Agent", user_agent);
    if (spec.set.decompress && !has("accept-encoding")) field("Accept-Encoding", "gzip, deflate, br");
    if (!has("authorization")) {
        if (t.credentials) {
            field("Authorization", detail::basic_credentials(t.credentials->first, t.credentials->second));
        } else if (!spec.set.auth.empty()) {
            field("Authorization", detail::basic_credentials(spec.set.auth.user, spec.set.auth.password));
        }
    }
    for (const auto& [name, value] : defaults)
        if (default_sent(name) && for_origin(name)) field(name, value);
    for (const auto& [name, value] : spec.headers)
        if (for_origin(name)) field(name, value);
    if (spec.piecewise) {
        if (auto length = spec.piecewise->length()) {
            field("Content-Length", std::to_string(*length));
        } else {
            field("Transfer-Encoding", "chunked");
        }
        out.append("\r\n");
        return out;
    }
    bool has_body =
        !spec.body.empty() || spec.method == "POST" || spec.method == "PUT" || spec.method == "PATCH";
    if (has_body) field("Content-Length", std::to_string(spec.body.size()));
    out.append("\r\n");
    if (has_body) out.append(spec.body);
    return out;
}

bool expects_continue(const request_spec& spec) {
    return std::ranges::any_of(spec.headers, [](const auto& f) {
        return iequals(f.first, "expect") && iequals(f.second, "100-continue");
    });
}

}  // namespace

/// The whole life of one request: connection, retry of a stale one, redirects.
class request_runner {
public:
    request_runner(std::shared_ptr<client_state> pool, request_spec spec, std::string url)
        : m_pool(std::move(pool)), m_spec(std::move(spec)), m_url(std::move(url)) {}

    /// Follows redirects and returns the final response with its body unread.
    awaitable<std::unique_ptr<stream_state>> run();
    const std::string& current_url() const noexcept { return m_url; }
    const request_spec& spec() const noexcept { return m_spec; }

private:
    awaitable<std::unique_ptr<stream_state>> send(const target& t);
    awaitable<std::unique_ptr<stream_state>> exchange(lease l, const target& t, bool& stale);
    /// Writes the body of an `upload`; returns the failure, if any.
    awaitable<error_code> send_pieces(connection& c, const target& t);

    std::shared_ptr<client_state> m_pool;
    request_spec m_spec;
    std::string m_url;
    clock::time_point m_deadline = clock::now() + m_spec.set.timeout;
    /// The upload's source has been read from: it cannot be sent again.
    bool m_pieces_taken = false;
    /// The proxy of the request to the current target, if any.
    std::optional<proxy_target> m_proxy;
};

awaitable<std::unique_ptr<stream_state>> request_runner::run() {
    std::set<std::string> seen;
    target t = detail::parse_target(m_url);
    m_url = t.url;
    check_request(m_spec, m_pool->headers(), m_url);
    const int max_redirects = m_spec.set.max_redirects;
    for (int hops = 0;; ++hops) {
        auto st = co_await send(t);
        auto location = st->head.header("location");
        int status = st->head.status;
        if (max_redirects <= 0 || !is_redirect(status) || !location) co_return st;
        const bool as_get = (status == 303 && m_spec.method != "HEAD") ||
                            ((status == 301 || status == 302) && m_spec.method == "POST");
        // A redirect that keeps the method resends the body, which an
        // upload cannot do twice: the 3xx is the answer.
        if (m_spec.piecewise && !as_get) co_return st;
        std::string next = detail::resolve_location(m_url, *location);
        co_await st->discard_body();
        if (hops == max_redirects)
            throw error(
                error_kind::redirects, m_url,
                "more than " + std::to_string(max_redirects) + " redirects (the next was " + next + ")");
        seen.insert(m_spec.method + ' ' + m_url);
        if (as_get) {
            m_spec.method = "GET";
            m_spec.body.clear();
            m_spec.piecewise.reset();
            std::erase_if(m_spec.headers, [](const auto& f) {
                return iequals(f.first, "content-type") || iequals(f.first, "expect");
            });
        }
        target next_target = detail::parse_target(next);
        next = next_target.url;
        if (seen.count(m_spec.method + ' ' + next))
            throw error(error_kind::redirects, m_url, "redirect loop: it leads back to " + next);
        if (next_target.origin != t.origin) {
            if (m_spec.set.redirects == redirect_policy::same_origin)
                throw error(error_kind::redirects, m_url,
                            "the redirect to " + next +
                                " leaves the origin, which redirect_policy::same_origin refuses");
            if (m_spec.set.redirects == redirect_policy::no_downgrade && t.tls && !next_target.tls)
                throw error(error_kind::redirects, m_url,
                            "the redirect to " + next +
                                " leaves https for plain http, which redirect_policy::no_downgrade refuses");
            // Credentials meant for one origin are not handed to another, nor
            // is a Host the caller set for it (as curl, requests and httpx do),
            // whether the request or the client carries them.
            std::erase_if(m_spec.headers, [](const auto& f) { return origin_bound(f.first); });
            m_spec.left_origin = true;
            m_spec.set.auth = {};
        }
        // The URL's own user info is for its origin only: kept on a redirect
        // within it (unless the Location brings its own), as the request's
        // Authorization and `auth` are, and dropped on leaving it.
        if (next_target.origin != t.origin) {
            next_target.credentials = {};
        } else if (!next_target.credentials) {
            next_target.credentials = t.credentials;
        }
        m_url = std::move(next);
        t = std::move(next_target);
    }
}

awaitable<std::unique_ptr<stream_state>> request_runner::send(const target& t) {
    for (int attempt = 0;; ++attempt) {
        m_proxy = m_pool->proxy_for(t);
        lease l = co_await m_pool->acquire(t, m_proxy ? &*m_proxy : nullptr, attempt > 0);
        bool reused = l.reused();
        bool stale = false;
        std::exception_ptr failed;
        try {
            co_return co_await exchange(std::move(l), t, stale);
        } catch (const error&) {
            failed = std::current_exception();
        }
        if (!(stale && reused && attempt == 0 && !m_pieces_taken && idempotent(m_spec.method)))
            std::rethrow_exception(failed);
    }
}

awaitable<error_code> request_runner::send_pieces(connection& c, const target& t) {
    m_pieces_taken = true;
    const auto length = m_spec.piecewise->length();
    std::uint64_t sent = 0;
    for (;;) {
        if (clock::now() >= m_deadline) throw deadline_passed(t.url, m_spec.set.timeout);
        std::string piece = co_await m_spec.piecewise->next()();
        if (length && sent + piece.size() > *length)
            throw error(error_kind::request, t.url,
                        "the upload gave more than the " + std::to_string(*length) + " bytes it declared");
        std::array<char, 24> size_line{};
        std::size_t size_len = 0;
        if (!length)
            size_len = static_cast<std::size_t>(
                std::snprintf(size_line.data(), size_line.size(), "%zx\r\n", piece.size()));
        std::array<boost::asio::const_buffer, 3> buffers{
            boost::asio::buffer(size_line.data(), size_len), boost::asio::buffer(piece),
            boost::asio::buffer(length ? std::string_view() : std::string_view("\r\n"))};
        auto [ec, n] = co_await c.with_stream(
            [&](auto& s) { return boost::asio::async_write(s, buffers, as_tuple(use_awaitable)); });
        if (ec) co_return ec;
        sent += piece.size();
        if (piece.empty()) break;
    }
    if (length && sent != *length)
        throw error(error_kind::request, t.url,
                    "the upload gave " + std::to_string(sent) + " bytes, not the " + std::to_string(*length) +
                        " it declared");
    co_return error_code{};
}

awaitable<std::unique_ptr<stream_state>> request_runner::exchange(lease l, const target& t, bool& stale) {
    const auto& o = m_pool->options();
    auto st = std::make_unique<stream_state>(m_pool, std::move(l), m_spec.set);
    st->head.url = t.url;
    st->deadline = m_deadline;
    connection& c = st->conn.conn();

    std::string req = serialize_request(m_spec, t, m_pool->headers(), o.user_agent,
                                        m_proxy && !t.tls ? &*m_proxy : nullptr, m_proxy && t.tls);
    bool has_body = m_spec.piecewise || !m_spec.body.empty();
    // With `Expect: 100-continue` the head goes alone, and the body only
    // after a 100, or after a second without an answer (RFC 9110 §10.1.1).
    bool wait_continue = has_body && expects_continue(m_spec);
    std::string_view first_write = req;
    if (wait_continue && !m_spec.piecewise)
        first_write = std::string_view(req).substr(0, req.size() - m_spec.body.size());

    auto [wec, written] = co_await c.with_stream([&](auto& s) {
        return boost::asio::async_write(s, boost::asio::buffer(first_write), as_tuple(use_awaitable));
    });
    bool body_pending = !wec && (wait_continue || m_spec.piecewise);
    // A server may answer early and close while the body is still going out
    // (413 after the first kilobyte): that answer is read and returned, as
    // httpx and aiohttp do, and the connection closed after it.
    auto send_body = [&]() -> awaitable<error_code> {
        body_pending = false;
        if (m_spec.piecewise) co_return co_await send_pieces(c, t);
        auto rest = std::string_view(req).substr(first_write.size());
        auto [ec, n] = co_await c.with_stream([&](auto& s) {
            return boost::asio::async_write(s, boost::asio::buffer(rest), as_tuple(use_awaitable));
        });
        co_return ec;
    };
    if (!wec && body_pending && !wait_continue) wec = co_await send_body();
    if (wec == boost::asio::error::operation_aborted) st->broken(wec, "sending the request");
    if (wec) st->close_after = true;

    const auto expect_until = clock::now() + std::chrono::seconds(1);
    // 1xx responses (100 Continue, 103 Early Hints …) are interim: skipped,
    // and the final response read after them (RFC 9110 §15.2).
    for (bool interim_seen = false;; interim_seen = true) {
        if (interim_seen) st->parser.emplace();
        auto& p = *st->parser;
        p.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(o.max_header_size, UINT32_MAX)));
        if (m_spec.streamed) {
            p.body_limit(boost::none);
        } else {
            p.body_limit(o.max_body_size);
        }
        if (m_spec.method == "HEAD") p.skip(true);
        bool got_bytes = false;
        error_code rec;
        if (body_pending) {
            // One second in all for the 100 (an interim 103 does not restart
            // it), a wait bounded by itself: no read timeout inside it.
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(expect_until - clock::now());
            bool answered = false;
            if (left.count() > 0) {
                auto read_timeout = std::exchange(st->read_timeout, std::chrono::milliseconds(0));
                try {
                    rec = co_await with_timeout(left, st->read_header(got_bytes));
                    answered = true;
                } catch (const timeout_error&) {
                }
                st->read_timeout = read_timeout;
            }
            if (!answered) {
                // No answer to the Expect: the body goes anyway.
                wec = co_await send_body();
                if (wec == boost::asio::error::operation_aborted) st->broken(wec, "sending the request");
                if (wec) st->close_after = true;
                rec = co_await st->read_header(got_bytes);
            }
        } else {
            rec = co_await st->read_header(got_bytes);
        }
        if (rec) {
            if (wec) {
                // Nothing to read after the failed send: that failure it is.
                stale = !interim_seen;
                st->broken(wec, "sending the request");
            }
            stale = !interim_seen && !got_bytes && closed_before_answering(rec);
            st->broken(rec, "reading the response");
        }
        int code = static_cast<int>(p.get().result_int());
        if (code == 100 && body_pending) {
            wec = co_await send_body();
            if (wec == boost::asio::error::operation_aborted) st->broken(wec, "sending the request");
            if (wec) st->close_after = true;
        }
        if (code / 100 != 1 || code == 101) break;
    }
    // A final answer before the body was sent: the body never goes, so the
    // connection cannot carry another request.
    if (body_pending) st->close_after = true;
    st->took_header(m_spec.method);
    co_return st;
}

// ---- response, streamed_response, upload, client ---------------------------

std::optional<std::string_view> response::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return std::string_view(v);
    return std::nullopt;
}

void response::raise_for_status() const {
    if (ok()) return;
    throw error(error_kind::status, url, "the server answered " + std::to_string(status) + ' ' + reason);
}

streamed_response::streamed_response(std::unique_ptr<stream_state> state) : m_state(std::move(state)) {}
streamed_response::streamed_response(streamed_response&&) noexcept = default;
streamed_response& streamed_response::operator=(streamed_response&&) noexcept = default;
streamed_response::~streamed_response() = default;

const response& streamed_response::head() const noexcept {
    return m_state->head;
}

awaitable<std::string> streamed_response::read_chunk(std::size_t max) {
    std::string out(std::max<std::size_t>(max, 1), '\0');
    auto& st = *m_state;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(st.deadline - clock::now());
    std::size_t got =
        co_await bounded(std::max(left, std::chrono::milliseconds(0)), st.stated_timeout, st.head.url,
                         "no complete response", st.read_body(out.data(), out.size()));
    out.resize(got);
    co_return out;
}

upload::upload(source next, std::optional<std::uint64_t> length)
    : m_next(std::move(next)), m_length(length) {}

upload upload::file(const std::string& path) {
    std::shared_ptr<std::FILE> f(std::fopen(path.c_str(), "rb"), [](std::FILE* p) {
        if (p) std::fclose(p);
    });
    if (!f)
        throw error(error_kind::request, path,
                    "cannot open the file to upload: " + std::string(std::strerror(errno)));
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    if (ec)
        throw error(error_kind::request, path, "cannot read the size of the file to upload: " + ec.message());
    return upload(
        [f, path]() -> awaitable<std::string> {
            std::string piece(64 * 1024, '\0');
            std::size_t n = std::fread(piece.data(), 1, piece.size(), f.get());
            if (n < piece.size() && std::ferror(f.get()))
                throw error(error_kind::request, path, "reading the file to upload failed");
            piece.resize(n);
            co_return piece;
        },
        size);
}

std::string with_query(std::string url, const fields& params) {
    if (params.empty()) return url;
    std::string fragment;
    if (auto hash = url.find('#'); hash != url.npos) {
        fragment = url.substr(hash);
        url.resize(hash);
    }
    char sep = url.find('?') == url.npos ? '?' : (url.back() == '?' || url.back() == '&' ? '\0' : '&');
    for (const auto& [name, value] : params) {
        if (sep) url += sep;
        sep = '&';
        url += detail::percent_encoded(name, "-._~");
        url += '=';
        url += detail::percent_encoded(value, "-._~");
    }
    return url + fragment;
}

client::client(executor ex) : client(std::move(ex), client_options{}) {}
client::client(executor ex, client_options options) : client(std::move(ex), std::move(options), fields{}) {}
client::client(executor ex, client_options options, fields headers)
    : m_state(std::make_shared<client_state>(std::move(ex), std::move(options), std::move(headers))) {}
client::client(client&&) noexcept = default;
client& client::operator=(client&& other) noexcept {
    if (this != &other) {
        if (m_state) m_state->shut_down();
        m_state = std::move(other.m_state);
    }
    return *this;
}
client::~client() {
    if (m_state) m_state->shut_down();
}

const client_options& client::options() const noexcept {
    return m_state->options();
}
executor client::get_executor() const noexcept {
    return m_state->get_executor();
}

namespace {

template <class T>
awaitable<T> within_request_timeout(const request_runner& runner, awaitable<T> op) {
    auto t = runner.spec().set.timeout;
    return bounded(t, t, runner.current_url(), "no complete response", std::move(op));
}

// Free coroutines holding the pool by value: a member coroutine would read
// `this->m_state` only when first resumed, which for a callback or
// `use_future` token is after `get` has returned and the client may be gone.
awaitable<response> run_request(std::shared_ptr<client_state> pool, request_spec spec, std::string url) {
    request_runner runner(pool, std::move(spec), std::move(url));
    auto whole = [](request_runner& r, std::size_t limit) -> awaitable<response> {
        auto st = co_await r.run();
        co_await st->read_all(st->head.body, limit);
        co_return std::move(st->head);
    };
    co_return co_await within_request_timeout(runner, whole(runner, pool->options().max_body_size));
}

awaitable<streamed_response> run_stream(std::shared_ptr<client_state> pool, request_spec spec,
                                        std::string url) {
    request_runner runner(pool, std::move(spec), std::move(url));
    auto st = co_await within_request_timeout(runner, runner.run());
    co_return streamed_response(std::move(st));
}

}  // namespace

awaitable<response> client::do_request(std::string method, std::string url, std::string body, fields headers,
                                       request_options per_request) {
    return run_request(m_state,
                       {std::move(method), std::move(body), std::nullopt, std::move(headers),
                        effective(options(), per_request)},
                       std::move(url));
}

awaitable<response> client::do_upload(std::string method, std::string url, upload body, fields headers,
                                      request_options per_request) {
    return run_request(
        m_state,
        {std::move(method), {}, std::move(body), std::move(headers), effective(options(), per_request)},
        std::move(url));
}

awaitable<streamed_response> client::stream(std::string method, std::string url, std::string body,
                                            fields headers) {
    return stream(std::move(method), std::move(url), std::move(body), std::move(headers), request_options{});
}

awaitable<streamed_response> client::stream(std::string method, std::string url, std::string body,
                                            fields headers, request_options per_request) {
    return run_stream(m_state,
                      {std::move(method), std::move(body), std::nullopt, std::move(headers),
                       effective(options(), per_request), true},
                      std::move(url));
}

awaitable<response> fetch(std::string url) {
    return fetch(std::move(url), client_options{});
}

awaitable<response> fetch(std::string url, client_options options) {
    client c(co_await this_executor(), std::move(options));
    co_return co_await c.get(std::move(url));
}

}  // namespace corun::http
