// The proxy module (runtime/http/proxy.cpp), private to the library: this
// suite compiles it in (see tests/meson.build) and tests it directly, against
// a real tinyproxy and against fake proxies that misbehave.
#include "http/proxy.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "corun/http/error.hpp"
#include "http_support.hpp"
#include "httpbin.hpp"
#include "proxy_support.hpp"
#include "raw_server.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
namespace http = corun::http;
namespace detail = corun::http::detail;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

/// A target as parse_target makes it, for a GET of /get.
detail::target make_target(bool tls, const std::string& host, std::uint16_t port) {
    detail::target t;
    t.tls = tls;
    t.host = host;
    t.port = port;
    const std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    t.host_header = shown + ":" + std::to_string(port);
    t.path = "/get";
    t.origin = (tls ? "https://" : "http://") + shown + ":" + std::to_string(port);
    t.url = t.origin + "/get";
    return t;
}

/// The error `parse_proxy(url)` throws.
http::error parse_error(const std::string& url) {
    try {
        detail::parse_proxy(url);
    } catch (const http::error& e) {
        return e;
    }
    FAIL("parse_proxy accepted '" << url << "'");
    throw std::logic_error("unreachable");
}

/// The proxy environment variables cleared for a test, set as it asks, and
/// put back as they were afterwards.
class proxy_env {
public:
    proxy_env() {
        for (const char* name : names) {
            const char* v = std::getenv(name);
            m_saved.emplace_back(v ? std::optional<std::string>(v) : std::nullopt);
            ::unsetenv(name);
        }
    }
    proxy_env(const proxy_env&) = delete;
    proxy_env& operator=(const proxy_env&) = delete;
    ~proxy_env() {
        for (std::size_t i = 0; i < std::size(names); ++i) {
            if (m_saved[i])
                ::setenv(names[i], m_saved[i]->c_str(), 1);
            else
                ::unsetenv(names[i]);
        }
    }

    void set(const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); }

private:
    static constexpr const char* names[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                            "HTTPS_PROXY", "all_proxy",  "ALL_PROXY",
                                            "no_proxy",    "NO_PROXY",   "REQUEST_METHOD"};
    std::vector<std::optional<std::string>> m_saved;
};

/// The proxy URL chosen for `t`, or "direct".
std::string chosen(std::string_view explicit_proxy, bool trust_env, const detail::target& t) {
    auto p = detail::choose_proxy(explicit_proxy, trust_env, t);
    return p ? p->url : "direct";
}

/// Whether NO_PROXY set to `list` lets a request to `host`:`port` (https)
/// bypass the proxy in HTTPS_PROXY.
bool bypasses(const std::string& list, const std::string& host, std::uint16_t port = 443) {
    proxy_env env;
    env.set("HTTPS_PROXY", "http://proxy.test:3128");
    env.set("NO_PROXY", list);
    return chosen("", true, make_target(true, host, port)) == "direct";
}

// ---- fake proxies ------------------------------------------------------------

/// A proxy that misbehaves in ways tinyproxy would not: a raw_server that
/// reads each connection's request head (kept for `heads()`), then runs a
/// script on it. Every wait ends when it is destroyed.
class fake_proxy {
public:
    using peer = raw_server::connection;
    using script = std::function<void(peer&)>;

    explicit fake_proxy(script s)
        : m_server([this, s = std::move(s)](peer& c) {
              auto head = c.read_head();
              {
                  std::lock_guard lock(m_mutex);
                  m_heads.push_back(head ? *head + "\r\n\r\n" : std::string());
              }
              s(c);
          }) {}

    std::string url() const { return m_server.url(""); }
    std::uint16_t port() const noexcept { return m_server.port(); }
    /// The request heads read so far, one per connection ("" if it closed first).
    std::vector<std::string> heads() const {
        std::lock_guard lock(m_mutex);
        return m_heads;
    }

private:
    mutable std::mutex m_mutex;
    std::vector<std::string> m_heads;
    raw_server m_server;  // last: stopped, its scripts joined, before the rest goes
};

/// Connects to the proxy `p` and asks it for a tunnel to `t`. (Arguments by
/// value: the coroutine may outlive the caller's temporaries.)
awaitable<void> tunnel_only(detail::target t, detail::proxy_target p,
                            std::size_t max_header_size = 64 * 1024) {
    beast::tcp_stream s(co_await corun::this_executor());
    co_await s.async_connect(tcp::endpoint(asio::ip::make_address(p.host), p.port), corun::use_awaitable);
    co_await detail::open_tunnel(s, t, p, max_header_size);
}

struct answer {
    unsigned status = 0;
    std::string body;
    bool verified = false;
};

/// What the client will do for https through a proxy: connect to the proxy,
/// open a tunnel to `t`, do the TLS handshake with the origin through it
/// (verifying its certificate against the test CA), GET `t.path`.
awaitable<answer> get_through(detail::target t, detail::proxy_target p) {
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.load_verify_file(cert_path("ca.pem"));
    ctx.set_verify_mode(asio::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> tls(co_await corun::this_executor(), ctx);
    auto& lowest = beast::get_lowest_layer(tls);
    co_await lowest.async_connect(tcp::endpoint(asio::ip::make_address(p.host), p.port),
                                  corun::use_awaitable);
    co_await detail::open_tunnel(lowest, t, p, 64 * 1024);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tls.native_handle()), t.host.c_str());
    co_await tls.async_handshake(asio::ssl::stream_base::client, corun::use_awaitable);

    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, t.path, 11};
    req.set(bhttp::field::host, t.host_header);
    req.set(bhttp::field::connection, "close");
    co_await bhttp::async_write(tls, req, corun::use_awaitable);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    co_await bhttp::async_read(tls, buffer, res, corun::use_awaitable);
    co_return answer{res.result_int(), res.body(), SSL_get_verify_result(tls.native_handle()) == X509_V_OK};
}

/// An HTTPS httpbin with the test CA's certificate for 127.0.0.1.
httpbin::options https_origin() {
    return {.tls = true, .cert_file = cert_path("server.pem"), .key_file = cert_path("server.key")};
}

/// The error a tunnel through `proxy` to an https target ends in.
http::error tunnel_error(const fake_proxy& proxy, std::size_t max_header_size = 64 * 1024) {
    const auto t = make_target(true, "origin.test", 443);
    http::error e =
        thrown_within<http::error>(10s, tunnel_only(t, detail::parse_proxy(proxy.url()), max_header_size));
    INFO(e.what());
    CHECK(e.url() == t.url);
    return e;
}

}  // namespace

// ---- base64 and Basic credentials ---------------------------------------------

TEST_CASE("base64 follows RFC 4648, Basic credentials RFC 7617", "[http_proxy]") {
    // RFC 4648 §10's test vectors.
    CHECK(detail::base64("") == "");
    CHECK(detail::base64("f") == "Zg==");
    CHECK(detail::base64("fo") == "Zm8=");
    CHECK(detail::base64("foo") == "Zm9v");
    CHECK(detail::base64("foob") == "Zm9vYg==");
    CHECK(detail::base64("fooba") == "Zm9vYmE=");
    CHECK(detail::base64("foobar") == "Zm9vYmFy");
    CHECK(detail::base64(std::string("\x00\xff\xfe\x80", 4)) == "AP/+gA==");
    // RFC 7617 §2's example, and its UTF-8 one (§2.1).
    CHECK(detail::basic_credentials("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    CHECK(detail::basic_credentials("test", "123\xc2\xa3") == "Basic dGVzdDoxMjPCow==");
    CHECK(detail::basic_credentials("", "") == "Basic Og==");
}

// ---- parse_proxy ------------------------------------------------------------------

TEST_CASE("parse_proxy reads http:// proxy URLs and bare host:port", "[http_proxy]") {
    auto p = detail::parse_proxy("http://proxy.example:3128");
    CHECK(p.url == "http://proxy.example:3128");
    CHECK(p.host == "proxy.example");
    CHECK(p.port == 3128);
    CHECK(p.authorization.empty());
    CHECK(p.key == "http://proxy.example:3128");

    // The scheme and host in any case, a trailing slash, surrounding blanks.
    p = detail::parse_proxy("  HTTP://Proxy.EXAMPLE:8080/ ");
    CHECK(p.url == "http://proxy.example:8080");
    CHECK(p.host == "proxy.example");

    // Without a port: 80, as for any http URL.
    p = detail::parse_proxy("http://proxy.example");
    CHECK(p.port == 80);
    CHECK(p.url == "http://proxy.example:80");

    // Bare, as curl and the environment variables allow: http://.
    p = detail::parse_proxy("proxy.example:3128");
    CHECK(p.url == "http://proxy.example:3128");
    p = detail::parse_proxy("10.1.2.3");
    CHECK(p.url == "http://10.1.2.3:80");
    p = detail::parse_proxy("[::1]:3128");
    CHECK(p.host == "::1");
    CHECK(p.url == "http://[::1]:3128");

    p = detail::parse_proxy("http://[2001:db8::7]:8080");
    CHECK(p.host == "2001:db8::7");
    CHECK(p.port == 8080);
    CHECK(p.url == "http://[2001:db8::7]:8080");
}

TEST_CASE("parse_proxy takes credentials from the user info, percent-decoded", "[http_proxy]") {
    auto p = detail::parse_proxy("http://alice:s3cret@proxy.example:3128");
    CHECK(p.url == "http://proxy.example:3128");
    CHECK(p.authorization == detail::basic_credentials("alice", "s3cret"));

    p = detail::parse_proxy("http://al%69ce:p%40ss%3Aw%2Frd%20%25@proxy.example:3128");
    CHECK(p.authorization == detail::basic_credentials("alice", "p@ss:w/rd %"));

    // A user without a password, and bare with credentials.
    p = detail::parse_proxy("http://alice@proxy.example:3128");
    CHECK(p.authorization == detail::basic_credentials("alice", ""));
    p = detail::parse_proxy("alice:pw@proxy.example:3128");
    CHECK(p.authorization == detail::basic_credentials("alice", "pw"));
    CHECK(p.url == "http://proxy.example:3128");

    // Empty user info is none.
    p = detail::parse_proxy("http://@proxy.example:3128");
    CHECK(p.authorization.empty());
}

TEST_CASE("the pool key tells credentials apart and does not contain them", "[http_proxy]") {
    const auto plain = detail::parse_proxy("http://proxy.example:3128");
    const auto alice = detail::parse_proxy("http://alice:s3cret@proxy.example:3128");
    const auto alice_again = detail::parse_proxy("alice:s3cret@PROXY.example:3128/");
    const auto bob = detail::parse_proxy("http://bob:s3cret@proxy.example:3128");
    const auto other_password = detail::parse_proxy("http://alice:other@proxy.example:3128");
    CHECK(alice.key == alice_again.key);
    CHECK(alice.key != plain.key);
    CHECK(alice.key != bob.key);
    CHECK(alice.key != other_password.key);
    CHECK(alice.key.starts_with(plain.key + " "));
    for (const auto& p : {alice, bob, other_password}) {
        CAPTURE(p.key);
        CHECK(!contains(p.key, "alice"));
        CHECK(!contains(p.key, "s3cret"));
        CHECK(!contains(p.key, p.authorization.substr(6)));  // nor their base64
    }
}

TEST_CASE("parse_proxy refuses https and socks proxies, other schemes and malformed URLs", "[http_proxy]") {
    struct refusal {
        std::string url;
        std::string says;
    };
    const refusal refusals[] = {
        {"https://proxy.example:443", "https"},
        {"HTTPS://proxy.example", "https"},
        {"socks5://proxy.example:1080", "socks"},
        {"socks5h://proxy.example:1080", "socks"},
        {"socks4a://proxy.example:1080", "socks"},
        {"ftp://proxy.example", "scheme"},
        {"", "empty"},
        {"   ", "empty"},
        {"http://", "host"},
        {"http://:3128", "host"},
        {"http://proxy.example:0", "port"},
        {"http://proxy.example:65536", "port"},
        {"http://proxy.example:", "port"},
        {"http://proxy.example:http", "port"},
        {"http://proxy.example:3128/path", "path"},
        {"http://proxy.example:3128/?q=1", "query"},
        {"http://proxy.example:3128#f", "fragment"},
        {"http://pro%0d%0axy.example:3128", "host"},
        {"http://proxy example:3128", "valid"},
    };
    for (const auto& r : refusals) {
        CAPTURE(r.url);
        http::error e = parse_error(r.url);
        INFO(e.what());
        CHECK(kind_name(e) == "proxy");
        CHECK(contains(std::string(e.what()), r.says));
    }
}

TEST_CASE("a refused proxy URL is named with its password masked", "[http_proxy]") {
    for (const std::string url :
         {"https://alice:s3cret@proxy.example:443", "socks5://alice:s3cret@proxy.example",
          "alice:s3cret@proxy.example:3128/path"}) {
        CAPTURE(url);
        http::error e = parse_error(url);
        INFO(e.what());
        CHECK(!contains(e.what(), "s3cret"));
        CHECK(!contains(e.url(), "s3cret"));
        CHECK(contains(e.url(), "alice:***@proxy.example"));
    }
}

// ---- choose_proxy -------------------------------------------------------------

TEST_CASE("the explicit proxy applies to every request, whatever the environment says", "[http_proxy]") {
    proxy_env env;
    env.set("HTTPS_PROXY", "http://env-proxy.test:1");
    env.set("HTTP_PROXY", "http://env-proxy.test:2");
    env.set("NO_PROXY", "*");
    for (bool tls : {false, true}) {
        for (bool trust_env : {false, true}) {
            CAPTURE(tls, trust_env);
            CHECK(chosen("http://explicit.test:3128", trust_env, make_target(tls, "origin.test", 443)) ==
                  "http://explicit.test:3128");
        }
    }
}

TEST_CASE("without trust_env the environment is not read", "[http_proxy]") {
    proxy_env env;
    env.set("https_proxy", "http://env-proxy.test:1");
    env.set("http_proxy", "http://env-proxy.test:2");
    env.set("all_proxy", "http://env-proxy.test:3");
    CHECK(chosen("", false, make_target(true, "origin.test", 443)) == "direct");
    CHECK(chosen("", false, make_target(false, "origin.test", 80)) == "direct");
}

TEST_CASE("the environment's proxy is chosen by the target's scheme, ALL_PROXY as fallback", "[http_proxy]") {
    proxy_env env;
    const auto https_target = make_target(true, "origin.test", 443);
    const auto http_target = make_target(false, "origin.test", 80);
    CHECK(chosen("", true, https_target) == "direct");
    CHECK(chosen("", true, http_target) == "direct");

    env.set("HTTPS_PROXY", "http://tls-proxy.test:1");
    CHECK(chosen("", true, https_target) == "http://tls-proxy.test:1");
    CHECK(chosen("", true, http_target) == "direct");  // HTTPS_PROXY is for https only

    env.set("HTTP_PROXY", "http://plain-proxy.test:2");
    CHECK(chosen("", true, http_target) == "http://plain-proxy.test:2");
    CHECK(chosen("", true, https_target) == "http://tls-proxy.test:1");

    env.set("ALL_PROXY", "http://any-proxy.test:3");
    CHECK(chosen("", true, https_target) == "http://tls-proxy.test:1");
    ::unsetenv("HTTPS_PROXY");
    CHECK(chosen("", true, https_target) == "http://any-proxy.test:3");
    ::unsetenv("HTTP_PROXY");
    CHECK(chosen("", true, http_target) == "http://any-proxy.test:3");
    env.set("all_proxy", "lower-any.test:4");
    CHECK(chosen("", true, http_target) == "http://lower-any.test:4");
}

TEST_CASE("the lowercase variable wins, an empty one counts as unset", "[http_proxy]") {
    proxy_env env;
    const auto https_target = make_target(true, "origin.test", 443);
    const auto http_target = make_target(false, "origin.test", 80);
    env.set("HTTPS_PROXY", "http://upper.test:1");
    env.set("https_proxy", "http://lower.test:1");
    env.set("HTTP_PROXY", "http://upper.test:2");
    env.set("http_proxy", "http://lower.test:2");
    CHECK(chosen("", true, https_target) == "http://lower.test:1");
    CHECK(chosen("", true, http_target) == "http://lower.test:2");
    env.set("https_proxy", "");
    env.set("http_proxy", "");
    CHECK(chosen("", true, https_target) == "http://upper.test:1");
    CHECK(chosen("", true, http_target) == "http://upper.test:2");
}

TEST_CASE("in a CGI program HTTP_PROXY is ignored, http_proxy is not", "[http_proxy]") {
    proxy_env env;
    const auto http_target = make_target(false, "origin.test", 80);
    env.set("HTTP_PROXY", "http://from-a-request-header.test:1");
    env.set("REQUEST_METHOD", "GET");
    CHECK(chosen("", true, http_target) == "direct");
    env.set("ALL_PROXY", "http://any.test:3");
    CHECK(chosen("", true, http_target) == "http://any.test:3");
    env.set("http_proxy", "http://lower.test:2");
    CHECK(chosen("", true, http_target) == "http://lower.test:2");
    // HTTPS_PROXY cannot come from a request header ("Proxy:" becomes HTTP_PROXY).
    env.set("HTTPS_PROXY", "http://tls.test:4");
    CHECK(chosen("", true, make_target(true, "origin.test", 443)) == "http://tls.test:4");
}

TEST_CASE("an unusable proxy in the environment is an error of kind proxy naming the variable",
          "[http_proxy]") {
    proxy_env env;
    const auto t = make_target(true, "origin.test", 443);
    env.set("HTTPS_PROXY", "socks5://alice:s3cret@socks.test:1080");
    try {
        detail::choose_proxy("", true, t);
        FAIL("a socks proxy was accepted");
    } catch (const http::error& e) {
        INFO(e.what());
        CHECK(kind_name(e) == "proxy");
        CHECK(e.url() == t.url);
        CHECK(contains(e.what(), "HTTPS_PROXY"));
        CHECK(contains(e.what(), "SOCKS"));
        CHECK(!contains(e.what(), "s3cret"));
    }
    // A host that NO_PROXY exempts never reads it.
    env.set("NO_PROXY", "origin.test");
    CHECK(chosen("", true, t) == "direct");

    try {
        detail::choose_proxy("https://proxy.test", false, t);
        FAIL("an https proxy was accepted");
    } catch (const http::error& e) {
        INFO(e.what());
        CHECK(kind_name(e) == "proxy");
        CHECK(e.url() == t.url);
    }
}

TEST_CASE("NO_PROXY: names match themselves and the names under them", "[http_proxy]") {
    CHECK(bypasses("example.com", "example.com"));
    CHECK(bypasses("example.com", "a.example.com"));
    CHECK(bypasses("example.com", "a.b.example.com"));
    CHECK(!bypasses("example.com", "badexample.com"));
    CHECK(!bypasses("example.com", "example.org"));
    CHECK(!bypasses("a.example.com", "example.com"));
    // A leading dot or "*." changes nothing (curl's rule): the domain itself too.
    for (const char* entry : {".example.com", "*.example.com"}) {
        CAPTURE(entry);
        CHECK(bypasses(entry, "example.com"));
        CHECK(bypasses(entry, "www.example.com"));
        CHECK(!bypasses(entry, "wwwexample.com"));
    }
    // Case and trailing dots do not matter.
    CHECK(bypasses("Example.COM", "www.example.com"));
    CHECK(bypasses("example.com", "WWW.EXAMPLE.COM"));
    CHECK(bypasses("example.com.", "www.example.com"));
    CHECK(bypasses("example.com", "www.example.com."));
    // Nothing is resolved: a name never matches an address.
    CHECK(!bypasses("localhost", "127.0.0.1"));
    CHECK(!bypasses("0.1", "10.0.0.1"));
}

TEST_CASE("NO_PROXY: '*', lists, spaces, ports", "[http_proxy]") {
    CHECK(bypasses("*", "anything.test"));
    CHECK(bypasses("*", "127.0.0.1"));
    CHECK(bypasses("*", "::1"));
    CHECK(bypasses("other.test,*", "anything.test"));
    CHECK(!bypasses("*.", "anything.test"));
    CHECK(!bypasses("", "anything.test"));

    const std::string list = " a.test , b.test,,c.test\td.test ";
    for (const char* host : {"a.test", "x.b.test", "c.test", "d.test"}) {
        CAPTURE(host);
        CHECK(bypasses(list, host));
    }
    CHECK(!bypasses(list, "e.test"));

    CHECK(bypasses("example.com:8443", "example.com", 8443));
    CHECK(!bypasses("example.com:8443", "example.com", 443));
    CHECK(bypasses("example.com:443", "www.example.com", 443));
    CHECK(bypasses("10.1.2.3:8443", "10.1.2.3", 8443));
    CHECK(!bypasses("10.1.2.3:8443", "10.1.2.3", 443));
    CHECK(bypasses("[::1]:8443", "::1", 8443));
    CHECK(!bypasses("[::1]:8443", "::1", 443));
    CHECK(!bypasses("example.com:notaport", "example.com"));
}

TEST_CASE("NO_PROXY: addresses and CIDR ranges match addresses however spelled", "[http_proxy]") {
    CHECK(bypasses("127.0.0.1", "127.0.0.1"));
    CHECK(!bypasses("127.0.0.1", "127.0.0.2"));
    CHECK(!bypasses("127.0.0.1", "localhost"));
    CHECK(bypasses("::1", "::1"));
    CHECK(bypasses("[::1]", "::1"));
    CHECK(bypasses("::1", "0:0:0:0:0:0:0:1"));
    CHECK(bypasses("2001:DB8::1", "2001:db8::1"));
    CHECK(!bypasses("::1", "::2"));
    CHECK(!bypasses("127.0.0.1", "::1"));

    CHECK(bypasses("10.0.0.0/8", "10.200.3.4"));
    CHECK(!bypasses("10.0.0.0/8", "11.0.0.1"));
    CHECK(bypasses("192.168.1.0/24", "192.168.1.77"));
    CHECK(!bypasses("192.168.1.0/24", "192.168.2.77"));
    CHECK(bypasses("0.0.0.0/0", "203.0.113.9"));
    CHECK(bypasses("10.1.2.3/32", "10.1.2.3"));
    CHECK(!bypasses("10.1.2.3/32", "10.1.2.4"));
    CHECK(bypasses("fd00::/8", "fd12:3456::1"));
    CHECK(!bypasses("fd00::/8", "fe80::1"));
    CHECK(bypasses("2001:db8::/32", "2001:db8:ffff::1"));
    CHECK(!bypasses("10.0.0.0/8", "ten.example"));  // no resolving
    CHECK(!bypasses("10.0.0.0/33", "10.0.0.1"));    // malformed entries match nothing
    CHECK(!bypasses("10.0.0.0/x", "10.0.0.1"));
}

TEST_CASE("NO_PROXY: loopback is not special, no_proxy wins over NO_PROXY", "[http_proxy]") {
    proxy_env env;
    env.set("HTTPS_PROXY", "http://proxy.test:3128");
    CHECK(chosen("", true, make_target(true, "127.0.0.1", 443)) == "http://proxy.test:3128");
    CHECK(chosen("", true, make_target(true, "localhost", 443)) == "http://proxy.test:3128");
    CHECK(chosen("", true, make_target(true, "::1", 443)) == "http://proxy.test:3128");

    const auto t = make_target(true, "www.example.com", 443);
    env.set("NO_PROXY", "example.com");
    CHECK(chosen("", true, t) == "direct");
    env.set("no_proxy", "example.org");  // the lowercase list replaces the other
    CHECK(chosen("", true, t) == "http://proxy.test:3128");
    env.set("no_proxy", "");  // empty: unset
    CHECK(chosen("", true, t) == "direct");
}

// ---- tunnels through tinyproxy ---------------------------------------------------

TEST_CASE("a tunnel through tinyproxy carries a verified TLS session and a GET to the origin",
          "[http_proxy]") {
    httpbin::background_server origin{https_origin()};
    tinyproxy proxy;
    const auto t = make_target(true, "127.0.0.1", origin.port());
    answer a = block_on_within(10s, get_through(t, detail::parse_proxy(proxy.url())));
    CHECK(a.status == 200);
    CHECK(a.verified);
    CHECK(contains(a.body, "\"url\""));
    // It went through the proxy, as one tunnel, and reached the origin.
    CHECK(proxy.tunnels() == 1);
    CHECK(proxy.requests() == 1);
    CHECK(origin.connections_accepted() == 1);
    CHECK(contains(proxy.log(), "CONNECT 127.0.0.1:" + std::to_string(origin.port())));
}

TEST_CASE("HTTPS_PROXY with trust_env sends the request through tinyproxy, NO_PROXY around it",
          "[http_proxy]") {
    httpbin::background_server origin{https_origin()};
    tinyproxy proxy;
    proxy_env env;
    env.set("HTTPS_PROXY", proxy.url());
    const auto t = make_target(true, "127.0.0.1", origin.port());
    auto p = detail::choose_proxy("", true, t);
    REQUIRE(p);
    CHECK(block_on_within(10s, get_through(t, *p)).status == 200);
    CHECK(proxy.tunnels() == 1);

    env.set("NO_PROXY", "127.0.0.0/8");
    CHECK(!detail::choose_proxy("", true, t));
}

TEST_CASE("tinyproxy with BasicAuth refuses no or wrong credentials, lets the right ones pass",
          "[http_proxy]") {
    httpbin::background_server origin{https_origin()};
    tinyproxy proxy({.user = "alice", .password = "s3cret-pw"});
    const auto t = make_target(true, "127.0.0.1", origin.port());

    // Without credentials: 407. With wrong ones tinyproxy 1.11 answers 401.
    for (const std::string& url :
         {proxy.url(), proxy.url_with("alice", "wrong"), proxy.url_with("bob", "s3cret-pw")}) {
        CAPTURE(url);
        http::error e = thrown_within<http::error>(10s, tunnel_only(t, detail::parse_proxy(url)));
        INFO(e.what());
        CHECK(kind_name(e) == "proxy");
        CHECK(e.url() == t.url);
        CHECK(contains(e.what(), "refused the tunnel"));
        if (url == proxy.url()) {
            CHECK(contains(e.what(),
                           "407 Proxy Authentication Required (the proxy URL carries no credentials)"));
        } else {
            CHECK((contains(e.what(), ": 407 ") || contains(e.what(), ": 401 ")));
            CHECK(contains(e.what(), "(the proxy did not accept the credentials)"));
        }
        CHECK(!contains(e.what(), "s3cret"));
    }
    CHECK(origin.connections_accepted() == 0);

    answer a =
        block_on_within(10s, get_through(t, detail::parse_proxy(proxy.url_with("alice", "s3cret-pw"))));
    CHECK(a.status == 200);
    CHECK(a.verified);
    CHECK(proxy.tunnels() == 4);
    CHECK(origin.connections_accepted() == 1);
}

TEST_CASE("tinyproxy's failure to reach the origin is an error of kind proxy naming its status",
          "[http_proxy]") {
    tinyproxy proxy;
    // A port nothing listens on: bound, then closed.
    std::uint16_t closed_port;
    {
        asio::io_context io;
        tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        closed_port = a.local_endpoint().port();
    }
    const auto t = make_target(true, "127.0.0.1", closed_port);
    http::error e = thrown_within<http::error>(10s, tunnel_only(t, detail::parse_proxy(proxy.url())));
    INFO(e.what());
    CHECK(kind_name(e) == "proxy");
    CHECK(contains(e.what(), "refused the tunnel to 127.0.0.1:" + std::to_string(closed_port) + ": 5"));
    CHECK(proxy.tunnels() == 1);
}

// ---- tunnels through fake proxies ------------------------------------------------

TEST_CASE("the CONNECT request names the target, IPv6 in brackets, with the credentials", "[http_proxy]") {
    fake_proxy proxy([](fake_proxy::peer& c) { c.send("HTTP/1.1 200 Connection established\r\n\r\n"); });
    const auto p =
        detail::parse_proxy("http://al%69ce:p%40ss%3Aw%2Frd@127.0.0.1:" + std::to_string(proxy.port()));
    block_on_within(10s, tunnel_only(make_target(true, "origin.test", 8443), p));
    block_on_within(10s,
                    tunnel_only(make_target(true, "2001:db8::1", 443), detail::parse_proxy(proxy.url())));
    block_on_within(10s, tunnel_only(make_target(true, "10.1.2.3", 443), detail::parse_proxy(proxy.url())));
    auto heads = proxy.heads();
    REQUIRE(heads.size() == 3);
    CHECK(heads[0] ==
          "CONNECT origin.test:8443 HTTP/1.1\r\nHost: origin.test:8443\r\n"
          "Proxy-Authorization: " +
              detail::basic_credentials("alice", "p@ss:w/rd") + "\r\n\r\n");
    CHECK(heads[1] == "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n");
    CHECK(heads[2] == "CONNECT 10.1.2.3:443 HTTP/1.1\r\nHost: 10.1.2.3:443\r\n\r\n");
}

TEST_CASE("any 2xx opens the tunnel, over HTTP/1.0 too, whatever its framing fields", "[http_proxy]") {
    const std::string ok = GENERATE(as<std::string>{}, "HTTP/1.0 200 Connection established\r\n\r\n",
                                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                    "HTTP/1.1 204 No Content\r\nProxy-Agent: fake\r\n\r\n");
    CAPTURE(ok);
    fake_proxy proxy([&](fake_proxy::peer& c) {
        c.send(ok);
        c.wait_for_close();
    });
    block_on_within(10s,
                    tunnel_only(make_target(true, "origin.test", 443), detail::parse_proxy(proxy.url())));
}

TEST_CASE("a refusal names its status and reason; a 407 says whether credentials were sent", "[http_proxy]") {
    fake_proxy proxy([](fake_proxy::peer& c) {
        c.send(
            "HTTP/1.1 407 Go Away\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: "
            "5\r\n\r\nnope!");
    });
    http::error e = tunnel_error(proxy);
    CHECK(kind_name(e) == "proxy");
    CHECK(contains(e.what(), "407 Go Away (the proxy URL carries no credentials)"));
    const auto t = make_target(true, "origin.test", 443);
    e = thrown_within<http::error>(
        10s, tunnel_only(t, detail::parse_proxy("http://a:b@127.0.0.1:" + std::to_string(proxy.port()))));
    CHECK(contains(e.what(), "407 Go Away (the proxy did not accept the credentials)"));
}

TEST_CASE("a proxy that answers what is not HTTP is an error of kind proxy", "[http_proxy]") {
    const std::string garbage =
        GENERATE(as<std::string>{}, "SSH-2.0-OpenSSH_9.2\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
                 "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
                 // A TLS server's ServerHello: no line end, and the server waits.
                 std::string("\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03\x11\x22\x33", 14));
    CAPTURE(garbage);
    fake_proxy proxy([&](fake_proxy::peer& c) {
        c.send(garbage);
        c.wait_for_close();
    });
    http::error e = tunnel_error(proxy);
    INFO(e.what());
    CHECK(kind_name(e) == "proxy");
}

TEST_CASE("a proxy that closes at once, or mid-answer, is an error of kind proxy", "[http_proxy]") {
    // A TLS server's alert, then its close: not even a status line.
    fake_proxy tls_alert([](fake_proxy::peer& c) { c.send(std::string("\x15\x03\x03\x00\x02\x02\x46", 7)); });
    http::error alert = tunnel_error(tls_alert);
    INFO(alert.what());
    CHECK(kind_name(alert) == "proxy");

    fake_proxy at_once([](fake_proxy::peer&) {});
    http::error e = tunnel_error(at_once);
    INFO(e.what());
    CHECK(kind_name(e) == "proxy");
    CHECK(contains(e.what(), "closed the connection without answering CONNECT"));

    fake_proxy mid_answer([](fake_proxy::peer& c) { c.send("HTTP/1.1 200 Connection est"); });
    e = tunnel_error(mid_answer);
    INFO(e.what());
    CHECK(kind_name(e) == "proxy");
    CHECK(contains(e.what(), "in the middle of its answer"));
}

TEST_CASE("an endless answer is cut off at the header limit: kind too_large", "[http_proxy]") {
    // Endless fields, and an endless reason phrase: the proxy would send
    // 256 MiB, and goes on until the client hangs up; the client holds at
    // most the limit (its buffer cannot grow past it).
    const bool in_fields = GENERATE(true, false);
    CAPTURE(in_fields);
    std::atomic<std::size_t> sent{0};
    fake_proxy proxy([&](fake_proxy::peer& c) {
        if (!c.send(in_fields ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 200 ")) return;
        const std::string more =
            in_fields ? "X-Filler: " + std::string(1000, 'a') + "\r\n" : std::string(1024, 'a');
        while (sent < (std::size_t{256} << 20) && c.send(more)) sent += more.size();
    });
    http::error e = tunnel_error(proxy, 8 * 1024);
    INFO(e.what());
    CHECK(kind_name(e) == "too_large");
    CHECK(contains(e.what(), "header limit of 8192 bytes"));
    CHECK(sent < (std::size_t{256} << 20));
}

TEST_CASE("bytes after the proxy's 200, before the handshake, fail the tunnel", "[http_proxy]") {
    fake_proxy proxy([](fake_proxy::peer& c) {
        c.send("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n");
        c.wait_for_close();
    });
    http::error e = tunnel_error(proxy);
    INFO(e.what());
    CHECK(kind_name(e) == "proxy");
    CHECK(contains(e.what(), "bytes after its answer to CONNECT"));
}

TEST_CASE("a host that a request line cannot carry is refused before anything is sent", "[http_proxy]") {
    fake_proxy proxy([](fake_proxy::peer& c) { c.send("HTTP/1.1 200 Connection established\r\n\r\n"); });
    for (const std::string host : {"evil.test\r\nX-Injected: 1", "evil.test HTTP/1.1", "ev%il.test", ""}) {
        CAPTURE(host);
        const auto t = make_target(true, host, 443);
        http::error e = thrown_within<http::error>(10s, tunnel_only(t, detail::parse_proxy(proxy.url())));
        INFO(e.what());
        CHECK(kind_name(e) == "url");
    }
    // The connections were made, but nothing was written on them.
    for (int i = 0; i < 200 && proxy.heads().size() < 4; ++i) std::this_thread::sleep_for(10ms);
    const auto heads = proxy.heads();
    CHECK(heads.size() == 4);
    for (const auto& head : heads) CHECK(head.empty());
}

TEST_CASE("cancelling open_tunnel throws operation_aborted", "[http_proxy]") {
    fake_proxy silent([](fake_proxy::peer& c) { c.wait_for_close(); });
    asio::io_context loop{1};
    asio::cancellation_signal cancel;
    std::exception_ptr outcome;
    bool done = false;
    asio::co_spawn(loop,
                   tunnel_only(make_target(true, "origin.test", 443), detail::parse_proxy(silent.url())),
                   asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e) {
                       outcome = e;
                       done = true;
                   }));
    // Until the proxy has the request: open_tunnel is then reading its answer.
    for (int i = 0; i < 500 && silent.heads().empty(); ++i) loop.run_for(10ms);
    REQUIRE(silent.heads().size() == 1);
    REQUIRE(!done);
    cancel.emit(asio::cancellation_type::terminal);
    for (int i = 0; i < 500 && !done; ++i) loop.run_for(10ms);
    REQUIRE(done);
    REQUIRE(outcome);
    try {
        std::rethrow_exception(outcome);
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == asio::error::operation_aborted);
    } catch (const std::exception& e) {
        FAIL("expected operation_aborted, got: " << e.what());
    }
}

// ---- the client through a real proxy ----------------------------------------

namespace {

/// `n` GETs of `url`, one after another, on one client made with `options`.
awaitable<std::vector<http::response>> gets(http::client_options options, std::string url, int n) {
    http::client client{co_await corun::this_executor(), options};
    std::vector<http::response> out;
    for (int i = 0; i < n; ++i) out.push_back(co_await client.get(url));
    co_return out;
}

http::client_options through(const std::string& proxy) {
    return {.timeout = 10s, .ca_file = cert_path("ca.pem"), .proxy = proxy};
}

}  // namespace

TEST_CASE("the client sends https through one CONNECT tunnel, reused, with TLS verified to the origin",
          "[http_proxy]") {
    httpbin::background_server origin{https_origin()};
    tinyproxy proxy;
    auto answers = block_on_within(30s, gets(through(proxy.url()), origin.base_url() + "/get", 3));
    for (const auto& r : answers) {
        CHECK(r.status == 200);
        CHECK(r.tls_verified);
    }
    // Three requests, one tunnel and one connection to the origin: the
    // connection through the proxy is pooled like a direct one.
    CHECK(proxy.tunnels() == 1);
    CHECK(origin.connections_accepted() == 1);
}

TEST_CASE("the client sends plain http to the proxy in absolute form", "[http_proxy]") {
    httpbin::background_server origin{{}};
    tinyproxy proxy;
    auto answers = block_on_within(30s, gets(through(proxy.url()), origin.base_url() + "/get?x=1", 3));
    for (const auto& r : answers) {
        CHECK(r.status == 200);
        CHECK(contains(r.body, "x=1"));
    }
    CHECK(proxy.requests() == 3);
    CHECK(contains(proxy.log(), "GET " + origin.base_url() + "/get?x=1 HTTP/1.1"));

    // A client without the proxy goes direct: the proxy sees nothing more.
    CHECK(block_on_within(30s, gets({.timeout = 10s}, origin.base_url() + "/get", 1)).at(0).status == 200);
    CHECK(proxy.requests() == 3);
}

TEST_CASE("proxy credentials from the proxy URL are sent for http and https; refused ones are kind proxy",
          "[http_proxy]") {
    httpbin::background_server secure{https_origin()};
    httpbin::background_server plain{{}};
    tinyproxy proxy({.user = "alice", .password = "s3cret-pw"});
    const auto good = through(proxy.url_with("alice", "s3cret-pw"));
    CHECK(block_on_within(30s, gets(good, secure.base_url() + "/get", 1)).at(0).status == 200);
    CHECK(block_on_within(30s, gets(good, plain.base_url() + "/get", 1)).at(0).status == 200);

    const auto bad = through(proxy.url_with("alice", "wrong"));
    http::error e = thrown_within<http::error>(30s, get_once(bad, secure.base_url() + "/get"));
    INFO(e.what());
    CHECK(kind_name(e) == "proxy");
    CHECK(!contains(e.what(), "wrong"));
    // Plain http through a proxy that refuses: its answer is the response,
    // as with aiohttp and curl.
    auto refused = block_on_within(30s, gets(bad, plain.base_url() + "/get", 1)).at(0);
    CHECK((refused.status == 401 || refused.status == 407));
    CHECK(plain.connections_accepted() == 1);
}

TEST_CASE("trust_env takes the proxy from the environment, NO_PROXY goes around it, and nothing without it",
          "[http_proxy]") {
    httpbin::background_server secure{https_origin()};
    httpbin::background_server plain{{}};
    tinyproxy proxy;
    proxy_env env;
    env.set("HTTPS_PROXY", proxy.url());
    env.set("http_proxy", proxy.url());
    auto from_env = through("");
    from_env.trust_env = true;
    CHECK(block_on_within(30s, gets(from_env, secure.base_url() + "/get", 1)).at(0).status == 200);
    CHECK(block_on_within(30s, gets(from_env, plain.base_url() + "/get", 1)).at(0).status == 200);
    CHECK(proxy.tunnels() == 1);
    CHECK(proxy.requests() == 2);

    // Not trusted: the environment is not read.
    CHECK(block_on_within(30s, gets(through(""), secure.base_url() + "/get", 1)).at(0).status == 200);
    CHECK(proxy.requests() == 2);

    env.set("NO_PROXY", "127.0.0.1");
    CHECK(block_on_within(30s, gets(from_env, secure.base_url() + "/get", 1)).at(0).status == 200);
    CHECK(block_on_within(30s, gets(from_env, plain.base_url() + "/get", 1)).at(0).status == 200);
    CHECK(proxy.requests() == 2);
}

TEST_CASE("a proxy nobody listens on is an error of kind proxy naming it", "[http_proxy]") {
    const std::string nowhere = "http://127.0.0.1:" + std::to_string(free_port());
    for (const char* scheme : {"http", "https"}) {
        CAPTURE(scheme);
        http::error e = thrown_within<http::error>(
            30s, get_once(through(nowhere), std::string(scheme) + "://127.0.0.1:9/"));
        INFO(e.what());
        CHECK(kind_name(e) == "proxy");
        CHECK(contains(e.what(), "cannot connect to the proxy " + nowhere));
    }
}
