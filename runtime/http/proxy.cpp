#include "proxy.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <limits>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "corun/http/error.hpp"

namespace corun::http::detail {

namespace bhttp = boost::beast::http;
namespace urls = boost::urls;
using boost::asio::as_tuple;
using boost::beast::iequals;
using boost::system::error_code;

namespace {

/// Why a proxy URL is unusable, before it is known whose error that is.
struct unusable_proxy {
    std::string why;
};

char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowercase(std::string_view s) {
    std::string out(s);
    std::ranges::transform(out, out.begin(), ascii_lower);
    return out;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

/// A host name that can go into a request line or resolver as it is:
/// RFC 3986's unreserved characters and sub-delimiters, nothing to escape.
bool plain_host_name(std::string_view host) {
    return !host.empty() && std::ranges::all_of(host, [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
    });
}

/// `url` with the password of its user info (if any) replaced by "***".
std::string masked(std::string_view url) {
    const auto scheme_end = url.find("://");
    const std::size_t start = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
    std::size_t end = url.find_first_of("/?#", start);
    if (end == std::string_view::npos) end = url.size();
    const auto at = url.substr(start, end - start).rfind('@');
    if (at == std::string_view::npos) return std::string(url);
    const auto colon = url.substr(start, at).find(':');
    if (colon == std::string_view::npos) return std::string(url);
    return std::string(url.substr(0, start + colon + 1)) + "***" + std::string(url.substr(start + at));
}

/// A key drawn once per process for the pool keys' HMAC.
const std::array<unsigned char, 32>& pool_key_secret() {
    static const std::array<unsigned char, 32> secret = [] {
        std::array<unsigned char, 32> k{};
        if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1)
            throw std::runtime_error("corun::http: no random bytes for the proxy pool key");
        return k;
    }();
    return secret;
}

std::string hmac_hex(std::string_view data) {
    const auto& secret = pool_key_secret();
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int size = 0;
    if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(), &size))
        throw std::runtime_error("corun::http: HMAC-SHA-256 failed");
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < size; ++i) {
        out += digits[mac[i] >> 4];
        out += digits[mac[i] & 15];
    }
    return out;
}

proxy_target parse_or_explain(std::string_view text) {
    text = trimmed(text);
    if (text.empty()) throw unusable_proxy{"the proxy URL is empty"};
    // "host:port", as curl and the environment variables allow, means http://.
    std::string spelled =
        text.find("://") == std::string_view::npos ? "http://" + std::string(text) : std::string(text);
    auto parsed = urls::parse_uri(spelled);
    if (!parsed) throw unusable_proxy{"not a valid proxy URL (" + parsed.error().message() + ")"};
    const urls::url_view& u = *parsed;
    const std::string_view scheme = u.scheme();
    if (iequals(scheme, "https"))
        throw unusable_proxy{"https:// proxies (TLS to the proxy) are not supported: use an http:// proxy"};
    if (scheme.size() >= 5 && iequals(scheme.substr(0, 5), "socks"))
        throw unusable_proxy{"SOCKS proxies are not supported: use an http:// proxy"};
    if (!iequals(scheme, "http"))
        throw unusable_proxy{"unsupported proxy scheme '" + std::string(scheme) + "' (http:// only)"};
    if (!u.has_authority() || u.encoded_host().empty()) throw unusable_proxy{"the proxy URL has no host"};
    if (u.has_query() || u.has_fragment()) throw unusable_proxy{"a proxy URL has no query or fragment"};

    proxy_target p;
    switch (u.host_type()) {
        case urls::host_type::ipv6:
            p.host = u.host_ipv6_address().to_string();
            break;
        case urls::host_type::ipv4:
            p.host = u.host_ipv4_address().to_string();
            break;
        case urls::host_type::name:
            p.host = lowercase(u.host());
            if (!plain_host_name(p.host)) throw unusable_proxy{"the proxy's host name is malformed"};
            break;
        default:
            throw unusable_proxy{"the proxy's host is not a name or an IP address"};
    }
    if (u.has_port()) {
        if (u.port().empty() || u.port_number() == 0)
            throw unusable_proxy{"the proxy's port is not a number from 1 to 65535"};
        p.port = u.port_number();
    } else {
        p.port = 80;  // as for any http URL; curl would assume 1080
    }
    // After the port: Boost.URL 1.81 reads "host:abc" as an empty port and
    // the path "abc".
    if (!u.encoded_path().empty() && u.encoded_path() != "/") throw unusable_proxy{"a proxy URL has no path"};
    p.url = "http://" + (u.host_type() == urls::host_type::ipv6 ? "[" + p.host + "]" : p.host) + ':' +
            std::to_string(p.port);
    p.key = p.url;
    if (u.has_userinfo()) {
        std::string user = u.user();
        std::string password = u.password();
        if (!user.empty() || !password.empty()) {
            p.authorization = basic_credentials(user, password);
            p.key += " auth=" + hmac_hex(p.authorization);
        }
    }
    return p;
}

// ---- the environment -------------------------------------------------------

/// The variable's value, or nothing when it is unset or empty.
std::optional<std::string> env(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    return std::string(v);
}

struct env_proxy {
    const char* name;
    std::string value;
};

std::optional<env_proxy> proxy_from_env(bool tls) {
    // A CGI program gets the request's "Proxy:" field as HTTP_PROXY: there
    // only the lowercase name is trusted for http.
    const bool cgi = std::getenv("REQUEST_METHOD") != nullptr;
    const std::array<const char*, 2> names =
        tls ? std::array<const char*, 2>{"https_proxy", "HTTPS_PROXY"}
            : std::array<const char*, 2>{"http_proxy", cgi ? nullptr : "HTTP_PROXY"};
    for (const char* name : {names[0], names[1], "all_proxy", "ALL_PROXY"}) {
        if (!name) continue;
        if (auto v = env(name)) return env_proxy{name, std::move(*v)};
    }
    return std::nullopt;
}

/// A decimal number from 0 to `max`, digits only.
std::optional<unsigned> number_up_to(std::string_view s, unsigned max) {
    if (s.empty() || s.size() > 5 || !std::ranges::all_of(s, [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    unsigned n = 0;
    for (char c : s) n = n * 10 + static_cast<unsigned>(c - '0');
    if (n > max) return std::nullopt;
    return n;
}

std::optional<std::uint16_t> port_number(std::string_view s) {
    auto n = number_up_to(s, 65535);
    if (!n || *n == 0) return std::nullopt;
    return static_cast<std::uint16_t>(*n);
}

std::optional<boost::asio::ip::address> address_of(std::string_view s) {
    error_code ec;
    auto a = boost::asio::ip::make_address(std::string(s), ec);
    if (ec) return std::nullopt;
    return a;
}

/// Do the first `bits` bits of `a` and `b` agree (same family)?
bool same_prefix(const boost::asio::ip::address& a, const boost::asio::ip::address& b, unsigned bits) {
    auto compare = [bits](const auto& x, const auto& y) {
        for (unsigned i = 0; i < bits; ++i) {
            const unsigned mask = 0x80u >> (i % 8);
            if ((x[i / 8] & mask) != (y[i / 8] & mask)) return false;
        }
        return true;
    };
    if (a.is_v4() && b.is_v4()) return bits <= 32 && compare(a.to_v4().to_bytes(), b.to_v4().to_bytes());
    if (a.is_v6() && b.is_v6()) return bits <= 128 && compare(a.to_v6().to_bytes(), b.to_v6().to_bytes());
    return false;
}

/// Does one NO_PROXY entry (not "*") match `t`?
bool entry_matches(std::string_view entry, const target& t, const std::string& host,
                   const std::optional<boost::asio::ip::address>& host_address) {
    // Split off a ":port": "[v6]:port", "name:port", "v4:port"; a bare IPv6
    // address (two colons or more) has none.
    std::string_view name = entry;
    std::optional<std::uint16_t> port;
    if (entry.front() == '[') {
        const auto close = entry.find(']');
        if (close == std::string_view::npos) return false;
        name = entry.substr(1, close - 1);
        std::string_view rest = entry.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':' || !(port = port_number(rest.substr(1)))) return false;
        }
    } else if (std::ranges::count(entry, ':') == 1) {
        const auto colon = entry.find(':');
        name = entry.substr(0, colon);
        if (!(port = port_number(entry.substr(colon + 1)))) return false;
    }
    if (name.empty() || (port && *port != t.port)) return false;

    if (const auto slash = name.find('/'); slash != std::string_view::npos) {
        const auto network = address_of(name.substr(0, slash));
        const auto bits = number_up_to(name.substr(slash + 1), 128);
        if (!network || !bits || !host_address) return false;
        return same_prefix(*network, *host_address, *bits);
    }
    if (const auto a = address_of(name)) return host_address && *a == *host_address;
    if (host_address) return false;  // a name never matches an address

    std::string domain = lowercase(name);
    if (domain.starts_with("*.")) domain.erase(0, 2);
    if (domain.starts_with('.')) domain.erase(0, 1);
    if (domain.ends_with('.')) domain.pop_back();
    if (domain.empty()) return false;
    return host == domain || (host.size() > domain.size() && host.ends_with(domain) &&
                              host[host.size() - domain.size() - 1] == '.');
}

bool bypassed(std::string_view list, const target& t) {
    std::string host = lowercase(t.host);
    if (host.ends_with('.')) host.pop_back();
    const auto host_address = address_of(t.host);
    std::size_t at = 0;
    while (at < list.size()) {
        const auto end = std::min(list.find_first_of(", \t\r\n", at), list.size());
        const std::string_view entry = list.substr(at, end - at);
        at = end + 1;
        if (entry.empty()) continue;
        if (entry == "*" || entry_matches(entry, t, host, host_address)) return true;
    }
    return false;
}

// ---- the tunnel ------------------------------------------------------------

/// "host:port" for the request line and Host field of CONNECT.
std::string connect_authority(const target& t) {
    if (t.host.find(':') != std::string::npos) {
        // IPv6; a zone ("fe80::1%eth0") is written "%25eth0" (RFC 6874).
        if (!address_of(t.host)) throw error(error_kind::url, t.url, "the host is not a valid IPv6 address");
        std::string out = "[";
        for (char c : t.host) out += c == '%' ? std::string("%25") : std::string(1, c);
        return out + "]:" + std::to_string(t.port);
    }
    if (!plain_host_name(t.host))
        throw error(error_kind::url, t.url,
                    "the host name holds characters that a request to a proxy cannot carry");
    return t.host + ':' + std::to_string(t.port);
}

/// The reason phrase as a message may show it: printable ASCII, not too long.
std::string shown_reason(std::string_view reason, unsigned status) {
    std::string out;
    for (char c : reason)
        if (c >= ' ' && c <= '~' && out.size() < 100) out += c;
    if (out.empty()) {
        std::string_view known = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
        if (known != "<unknown-status>") out = known;
    }
    return out;
}

error tunnel_read_failure(const error_code& ec, const target& t, const proxy_target& p,
                          std::size_t max_header_size) {
    const std::string proxy = "the proxy " + p.url;
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow)
        return error(error_kind::too_large, t.url,
                     proxy + "'s answer to CONNECT exceeds the header limit of " +
                         std::to_string(max_header_size) + " bytes");
    if (ec == bhttp::error::end_of_stream || ec == boost::asio::error::eof ||
        ec == boost::asio::error::connection_reset || ec == boost::asio::error::broken_pipe)
        return error(error_kind::proxy, t.url, proxy + " closed the connection without answering CONNECT");
    if (ec == bhttp::error::partial_message)
        return error(error_kind::proxy, t.url,
                     proxy + " closed the connection in the middle of its answer to CONNECT");
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category())
        return error(error_kind::proxy, t.url,
                     proxy + " answered CONNECT with what is not HTTP (" + ec.message() + ")");
    return error(error_kind::proxy, t.url,
                 "reading the answer of " + proxy + " to CONNECT failed: " + ec.message());
}

}  // namespace

std::string base64(std::string_view bytes) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto byte = [&](std::size_t k) {
        return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[k]));
    };
    for (; i + 3 <= bytes.size(); i += 3) {
        const std::uint32_t n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
        for (int shift : {18, 12, 6, 0}) out += alphabet[(n >> shift) & 63];
    }
    if (const std::size_t left = bytes.size() - i; left > 0) {
        const std::uint32_t n = byte(i) << 16 | (left == 2 ? byte(i + 1) << 8 : 0);
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += left == 2 ? alphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string basic_credentials(std::string_view user, std::string_view password) {
    std::string pair;
    pair.reserve(user.size() + 1 + password.size());
    pair.append(user).append(":").append(password);
    return "Basic " + base64(pair);
}

proxy_target parse_proxy(std::string_view url) {
    try {
        return parse_or_explain(url);
    } catch (const unusable_proxy& e) {
        throw error(error_kind::proxy, masked(trimmed(url)), e.why);
    }
}

std::optional<proxy_target> choose_proxy(std::string_view explicit_proxy, bool trust_env, const target& t,
                                         proxy_cache* cache) {
    auto parsed = [cache](std::string_view text) {
        if (!cache) return parse_or_explain(text);
        auto hit = cache->find(std::string(text));
        if (hit == cache->end()) hit = cache->emplace(std::string(text), parse_or_explain(text)).first;
        return hit->second;
    };
    if (!explicit_proxy.empty()) {
        try {
            return parsed(explicit_proxy);
        } catch (const unusable_proxy& e) {
            throw error(error_kind::proxy, t.url,
                        "the proxy option '" + masked(explicit_proxy) + "': " + e.why);
        }
    }
    if (!trust_env) return std::nullopt;
    auto chosen = proxy_from_env(t.tls);
    if (!chosen) return std::nullopt;
    auto no_proxy = env("no_proxy");
    if (!no_proxy) no_proxy = env("NO_PROXY");
    if (no_proxy && bypassed(*no_proxy, t)) return std::nullopt;
    try {
        return parsed(chosen->value);
    } catch (const unusable_proxy& e) {
        throw error(
            error_kind::proxy, t.url,
            std::string("the proxy in ") + chosen->name + " ('" + masked(chosen->value) + "'): " + e.why);
    }
}

awaitable<void> open_tunnel(boost::beast::tcp_stream& s, const target& t, const proxy_target& p,
                            std::size_t max_header_size) {
    const std::string authority = connect_authority(t);
    std::string request = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n";
    if (!p.authorization.empty()) request += "Proxy-Authorization: " + p.authorization + "\r\n";
    request += "\r\n";
    auto [wec, written] =
        co_await boost::asio::async_write(s, boost::asio::buffer(request), as_tuple(use_awaitable));
    if (wec == boost::asio::error::operation_aborted) throw boost::system::system_error(wec);
    if (wec)
        throw error(error_kind::proxy, t.url,
                    "cannot send CONNECT to the proxy " + p.url + ": " + wec.message());

    // The buffer cannot grow past the limit, whatever the proxy sends.
    boost::beast::flat_buffer buffer(max_header_size);
    bhttp::response_parser<bhttp::empty_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(max_header_size, std::numeric_limits<std::uint32_t>::max())));
    // A 2xx answer to CONNECT has no body whatever its fields say (RFC 9110
    // §9.3.6); any other answer fails the tunnel, its body unread.
    parser.skip(true);
    auto [rec, read] = co_await bhttp::async_read_header(s, buffer, parser, as_tuple(use_awaitable));
    if (rec == boost::asio::error::operation_aborted) throw boost::system::system_error(rec);
    if (rec) throw tunnel_read_failure(rec, t, p, max_header_size);

    const unsigned status = parser.get().result_int();
    if (status < 200 || status > 299) {
        std::string why =
            "the proxy " + p.url + " refused the tunnel to " + authority + ": " + std::to_string(status);
        if (auto reason = shown_reason(parser.get().reason(), status); !reason.empty()) why += " " + reason;
        // 407 asks for credentials; some proxies (tinyproxy) answer wrong
        // ones with 401.
        if (status == 407 || status == 401)
            why += p.authorization.empty() ? " (the proxy URL carries no credentials)"
                                           : " (the proxy did not accept the credentials)";
        throw error(error_kind::proxy, t.url, why);
    }
    // The client speaks first in TLS: a proxy that sends anything more before
    // the handshake is not tunnelling.
    if (buffer.size() != 0)
        throw error(error_kind::proxy, t.url,
                    "the proxy " + p.url + " sent " + std::to_string(buffer.size()) +
                        " bytes after its answer to CONNECT, before anything went through the tunnel");
}

}  // namespace corun::http::detail
