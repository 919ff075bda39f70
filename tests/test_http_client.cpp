#include "corun/http/client.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "corun/gather.hpp"
#include "corun/timeout.hpp"
#include "http_support.hpp"
#include "httpbin.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
namespace http = corun::http;

namespace {

/// A loopback httpbin over plain HTTP, or over HTTPS with the test CA's
/// `server.pem`; and client options that trust it.
struct site {
    static httpbin::options with_cert(bool tls, httpbin::options o) {
        if (tls) {
            o.tls = true;
            o.cert_file = cert_path("server.pem");
            o.key_file = cert_path("server.key");
        }
        return o;
    }

    explicit site(bool use_tls, httpbin::options o = {})
        : tls(use_tls), server(with_cert(use_tls, std::move(o))) {}

    std::string url(const std::string& path) const { return server.base_url() + path; }
    http::client_options client(http::client_options o = {}) const {
        if (tls) o.ca_file = cert_path("ca.pem");
        return o;
    }

    bool tls;
    httpbin::background_server server;
};

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

/// The `corun::http::error` that getting `url` throws, within `deadline`.
http::error get_error(std::chrono::milliseconds deadline, http::client_options options,
                      const std::string& url) {
    return thrown_within<http::error>(deadline, get_once(std::move(options), url));
}

/// A loopback port nobody listens on: bound, then released.
std::uint16_t unused_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    ::close(fd);
    return ntohs(addr.sin_port);
}

std::string bytes_path(std::size_t n, std::uint64_t seed) {
    return "/bytes/" + std::to_string(n) + "?seed=" + std::to_string(seed);
}

constexpr std::size_t body_sizes[] = {0, 1, 1000, 65536, 100 * 1024};

}  // namespace

TEST_CASE("bodies from /bytes arrive intact, byte for byte", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::uint64_t seed = 7;
        for (std::size_t n : body_sizes) {
            CAPTURE(n);
            std::string url = s.url(bytes_path(n, seed));
            http::response r = co_await client.get(url);
            CHECK(r.status == 200);
            CHECK(r.ok());
            CHECK(r.url == url);
            CHECK(r.body.size() == n);
            CHECK((r.body == httpbin::seeded_bytes(n, seed)));
            ++seed;
        }
    }());
}

TEST_CASE("sequential requests reuse one kept-alive connection", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string url = s.url(bytes_path(512, 3));
        for (int i = 0; i < 10; ++i) {
            http::response r = co_await client.get(url);
            CHECK(r.status == 200);
            CHECK(r.body.size() == 512);
        }
    }());
    CHECK(s.server.connections_accepted() == 1);
}

TEST_CASE("concurrent requests stay within limit_per_host and all succeed", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls, {.latency = 30ms}};
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client({.limit_per_host = 2})};
        std::vector<awaitable<http::response>> gets;
        for (std::uint64_t i = 0; i < 12; ++i) gets.push_back(client.get(s.url(bytes_path(100, i))));
        std::vector<http::response> rs = co_await corun::gather(std::move(gets));
        REQUIRE(rs.size() == 12);
        for (std::uint64_t i = 0; i < rs.size(); ++i) {
            CHECK(rs[i].status == 200);
            CHECK((rs[i].body == httpbin::seeded_bytes(100, i)));
        }
    }());
    CHECK(s.server.connections_accepted() >= 1);
    CHECK(s.server.connections_accepted() <= 2);
}

TEST_CASE("the total limit bounds the connections of one host without limit_per_host", "[http_client]") {
    site s{false, {.latency = 30ms}};
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, {.limit = 2}};
        std::vector<awaitable<http::response>> gets;
        for (int i = 0; i < 8; ++i) gets.push_back(client.get(s.url(bytes_path(10, 1))));
        std::vector<http::response> rs = co_await corun::gather(std::move(gets));
        for (const auto& r : rs) CHECK(r.status == 200);
    }());
    CHECK(s.server.connections_accepted() >= 1);
    CHECK(s.server.connections_accepted() <= 2);
}

TEST_CASE("the total limit counts the connections of every host", "[http_client]") {
    site a{false};
    site b{false};
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, {.limit = 1}};
        std::string url_a = a.url("/get"), url_b = b.url("/get");
        // With room for one connection, a's idle one is closed to reach b,
        // and a new one is needed to reach a again.
        http::response r = co_await client.get(url_a);
        CHECK(r.status == 200);
        r = co_await client.get(url_b);
        CHECK(r.status == 200);
        r = co_await client.get(url_a);
        CHECK(r.status == 200);
    }());
    CHECK(a.server.connections_accepted() == 2);
    CHECK(b.server.connections_accepted() == 1);
}

TEST_CASE("concurrent requests to several hosts under a total limit all succeed", "[http_client]") {
    site a{false, {.latency = 20ms}};
    site b{false, {.latency = 20ms}};
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, {.limit = 3}};
        std::vector<awaitable<http::response>> gets;
        for (int i = 0; i < 16; ++i) gets.push_back(client.get((i % 2 ? a : b).url(bytes_path(10, 1))));
        std::vector<http::response> rs = co_await corun::gather(std::move(gets));
        for (const auto& r : rs) CHECK(r.status == 200);
    }());
}

TEST_CASE("redirects are followed to the end, and response.url is the final URL", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string url = s.url("/redirect/3");
        http::response r = co_await client.get(url);
        CHECK(r.status == 200);
        CHECK(r.url == s.url("/get"));
        CHECK(contains(r.body, "\"headers\""));

        // Exactly the default limit of ten is still fine.
        url = s.url("/redirect/10");
        r = co_await client.get(url);
        CHECK(r.status == 200);
        CHECK(r.url == s.url("/get"));
    }());
    // Every hop went over the one kept-alive connection.
    CHECK(s.server.connections_accepted() == 1);
}

TEST_CASE("max_redirects = 0 returns the redirect itself", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    std::string url = s.url("/redirect/3");
    http::response r = block_on_within(10s, get_once(s.client({.max_redirects = 0}), url));
    CHECK(r.status == 302);
    CHECK(r.url == url);
    REQUIRE(r.header("location"));
    CHECK(contains(std::string(*r.header("Location")), "/redirect/2"));
}

TEST_CASE("more redirects than max_redirects fail with kind redirects", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    std::string url = s.url("/redirect/11");
    http::error e = get_error(10s, s.client(), url);
    INFO(e.what());
    CHECK(kind_name(e) == "redirects");
    CHECK(contains(e.what(), "10"));
    CHECK(contains(e.url(), s.server.base_url()));

    url = s.url("/redirect/3");
    e = get_error(10s, s.client({.max_redirects = 2}), url);
    INFO(e.what());
    CHECK(kind_name(e) == "redirects");
}

TEST_CASE("a redirect back to the same URL fails with kind redirects, saying it is a loop", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    // "Location: #again" resolves to the very URL that answered it.
    std::string url = s.url("/redirect-to?url=%23again");
    http::error e = get_error(10s, s.client(), url);
    INFO(e.what());
    CHECK(kind_name(e) == "redirects");
    CHECK(contains(e.what(), "loop"));
    CHECK(e.url() == url);
}

TEST_CASE("a request slower than the timeout fails with kind timeout, promptly", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    std::string url = s.url("/delay/3");
    // The deadline is shorter than the delay: only a real timeout ends it in time.
    http::error e = get_error(2500ms, s.client({.timeout = 500ms}), url);
    INFO(e.what());
    CHECK(kind_name(e) == "timeout");
    CHECK(e.url() == url);
    CHECK(contains(e.what(), url));
    CHECK(contains(e.what(), "500 ms"));
}

TEST_CASE("status codes are reported, and raise_for_status throws kind status", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string url = s.url("/status/418");
        http::response r = co_await client.get(url);
        CHECK(r.status == 418);
        CHECK_FALSE(r.ok());
        try {
            r.raise_for_status();
            FAIL("raise_for_status did not throw for 418");
        } catch (const http::error& e) {
            CHECK(kind_name(e) == "status");
            CHECK(contains(e.what(), "418"));
            CHECK(contains(e.what(), url));
        }

        url = s.url("/status/204");
        r = co_await client.get(url);
        CHECK(r.status == 204);
        CHECK(r.ok());
        CHECK(r.body.empty());
        CHECK_NOTHROW(r.raise_for_status());

        url = s.url("/status/503");
        r = co_await client.get(url);
        CHECK(r.status == 503);
        CHECK_THROWS_AS(r.raise_for_status(), http::error);

        url = s.url("/no/such/route");
        r = co_await client.get(url);
        CHECK(r.status == 404);
    }());
}

TEST_CASE("chunked bodies arrive intact, read whole or streamed", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    const std::size_t n = 50'000;
    const std::string expected = httpbin::seeded_bytes(n, 42);
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string url = s.url("/stream-bytes/50000?seed=42&chunk_size=1000");
        http::response r = co_await client.get(url);
        CHECK(r.status == 200);
        CHECK(r.body.size() == n);
        CHECK((r.body == expected));

        std::string method = "GET";
        url = s.url("/stream-bytes/50000?seed=42&chunk_size=777");
        http::streamed_response st = co_await client.stream(method, url);
        CHECK(st.head().status == 200);
        CHECK(st.head().body.empty());
        std::string got;
        std::size_t pieces = 0;
        for (;;) {
            std::string piece = co_await st.read_chunk(4096);
            if (piece.empty()) break;
            CHECK(piece.size() <= 4096);
            got += piece;
            ++pieces;
        }
        CHECK(pieces > 1);
        CHECK(got.size() == n);
        CHECK((got == expected));

        // A body read to its end gives the connection back for reuse.
        url = s.url("/get");
        r = co_await client.get(url);
        CHECK(r.status == 200);
    }());
    CHECK(s.server.connections_accepted() == 1);
}

TEST_CASE("a streamed response dropped early closes its connection, and the client carries on",
          "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string method = "GET";
        std::string url = s.url(bytes_path(100 * 1024, 5));
        {
            http::streamed_response st = co_await client.stream(method, url);
            std::string piece = co_await st.read_chunk(100);
            CHECK(piece.size() <= 100);
            CHECK_FALSE(piece.empty());
        }
        http::response r = co_await client.get(url);
        CHECK(r.status == 200);
        CHECK((r.body == httpbin::seeded_bytes(100 * 1024, 5)));
    }());
    CHECK(s.server.connections_accepted() == 2);
}

TEST_CASE("a body over max_body_size fails with kind too_large, naming the limit", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    const http::client_options small = s.client({.max_body_size = 1000});

    std::string url = s.url(bytes_path(2000, 1));
    http::error e = get_error(10s, small, url);
    INFO(e.what());
    CHECK(kind_name(e) == "too_large");
    CHECK(contains(e.what(), "1000"));
    CHECK(contains(e.what(), url));

    // Without a Content-Length the limit is found while reading.
    url = s.url("/stream-bytes/2000?seed=1&chunk_size=100");
    e = get_error(10s, small, url);
    INFO(e.what());
    CHECK(kind_name(e) == "too_large");
    CHECK(contains(e.what(), "1000"));

    // A body of exactly the limit is fine.
    url = s.url(bytes_path(1000, 1));
    http::response r = block_on_within(10s, get_once(small, url));
    CHECK(r.body.size() == 1000);
}

TEST_CASE("stream reads a body larger than max_body_size", "[http_client]") {
    site s{false};
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, {.max_body_size = 1000}};
        std::string method = "GET";
        std::string url = s.url(bytes_path(5000, 9));
        http::streamed_response st = co_await client.stream(method, url);
        std::string got;
        for (;;) {
            std::string piece = co_await st.read_chunk();
            if (piece.empty()) break;
            got += piece;
        }
        CHECK((got == httpbin::seeded_bytes(5000, 9)));
    }());
}

TEST_CASE("header fields given to get reach the server, and header() finds fields by any case",
          "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string url = s.url("/get?colour=green");
        http::fields extra{{"X-Corun-Test", "hello-123"}};
        http::response r = co_await client.get(url, extra);
        CHECK(r.status == 200);
        INFO(r.body);
        std::string body = lower(r.body);
        CHECK(contains(body, "x-corun-test"));
        CHECK(contains(body, "hello-123"));
        CHECK(contains(body, "green"));
        REQUIRE(r.header("content-type"));
        CHECK(contains(std::string(*r.header("CONTENT-TYPE")), "json"));
        CHECK_FALSE(r.header("x-no-such-field"));
    }());
}

TEST_CASE("a HEAD response has no body and leaves the connection usable", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string method = "HEAD";
        std::string url = s.url(bytes_path(3000, 2));
        http::response r = co_await client.request(method, url);
        CHECK(r.status == 200);
        CHECK(r.body.empty());
        r = co_await client.get(url);
        CHECK((r.body == httpbin::seeded_bytes(3000, 2)));
    }());
    CHECK(s.server.connections_accepted() == 1);
}

TEST_CASE("request sends a method and a body", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string method = "POST", url = s.url("/post"), body = "payload-for-the-echo";
        http::response r = co_await client.request(method, url, body);
        CHECK(r.status == 200);
        INFO(r.body);
        CHECK(contains(r.body, "POST"));
        CHECK(contains(r.body, body));
    }());
}

TEST_CASE("a connection idle for longer than idle_timeout is not reused", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client({.idle_timeout = 100ms})};
        std::string url = s.url("/get");
        http::response r = co_await client.get(url);
        CHECK(r.status == 200);
        co_await sleep_for(300ms);
        r = co_await client.get(url);
        CHECK(r.status == 200);
    }());
    CHECK(s.server.connections_accepted() == 2);
}

TEST_CASE("get completes to a callback, and a client dropped there leaves no work behind", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    boost::asio::io_context loop{1};
    std::optional<http::client> client;
    client.emplace(loop.get_executor(), s.client());
    std::optional<http::response> got;
    bool failed = false;
    client->get(s.url(bytes_path(300, 4)), {}, [&](std::exception_ptr e, http::response r) {
        failed = e != nullptr;
        got.emplace(std::move(r));
        client.reset();
    });
    loop.run_for(10s);
    CHECK(loop.stopped());
    CHECK_FALSE(failed);
    REQUIRE(got);
    CHECK((got->body == httpbin::seeded_bytes(300, 4)));
}

TEST_CASE("a bad URL fails with kind url, naming it", "[http_client]") {
    const std::string url =
        GENERATE(as<std::string>{}, "not a url", "ftp://x/", "http://", "127.0.0.1:80/get", "");
    CAPTURE(url);
    http::error e = get_error(5s, {}, url);
    INFO(e.what());
    CHECK(kind_name(e) == "url");
    CHECK(e.url() == url);
    CHECK(contains(e.what(), url));
}

TEST_CASE("an unreachable port fails with kind connect", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    const std::string url =
        std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(unused_port()) + "/get";
    http::error e = get_error(10s, {}, url);
    INFO(e.what());
    CHECK(kind_name(e) == "connect");
    CHECK(contains(e.what(), url));
}

TEST_CASE("fetch does one request on a client of its own", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    std::string url = s.url(bytes_path(2048, 11));
    http::response r = block_on_within(10s, http::fetch(url, s.client()));
    CHECK(r.status == 200);
    CHECK((r.body == httpbin::seeded_bytes(2048, 11)));
    CHECK(r.tls_verified == tls);
}

TEST_CASE("with_timeout cancels a request for real, and the client still works afterwards", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    bool timed_out = false;
    // Well under the delay of five seconds: only a real cancellation ends it in time.
    block_on_within(4s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client()};
        std::string slow = s.url("/delay/5");
        try {
            co_await corun::with_timeout(100ms, client.get(slow));
        } catch (const corun::timeout_error&) {
            timed_out = true;
        }
        std::string url = s.url("/get");
        http::response r = co_await client.get(url);
        CHECK(r.status == 200);
    }());
    CHECK(timed_out);
}

TEST_CASE("waiting for a free connection is bounded by the timeout", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    site s{tls};
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s.client({.limit_per_host = 1, .timeout = 500ms})};
        std::string method = "GET";
        std::string url = s.url(bytes_path(10, 1));
        // Holds the only connection: the header is in, the body is not read
        // yet. Its own timeout is longer than the client's: the timeout bounds
        // the reading of a streamed body too.
        http::streamed_response held = co_await client.stream(method, url, {}, {}, {.timeout = 10s});
        std::optional<http::error> waited;
        try {
            co_await client.get(url);
        } catch (const http::error& e) {
            waited.emplace(e);
        }
        REQUIRE(waited);
        INFO(waited->what());
        CHECK(kind_name(*waited) == "timeout");

        std::string body;
        for (;;) {
            std::string piece = co_await held.read_chunk();
            if (piece.empty()) break;
            body += piece;
        }
        CHECK((body == httpbin::seeded_bytes(10, 1)));
        http::response r = co_await client.get(url);
        CHECK(r.status == 200);
    }());
}

TEST_CASE("a kept-alive connection the server closed is replaced without failing the GET", "[http_client]") {
    const bool tls = GENERATE(false, true);
    CAPTURE(tls);
    std::optional<site> s;
    s.emplace(tls);
    const std::uint16_t port = s->server.port();
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, s->client()};
        std::string url = s->url(bytes_path(100, 1));
        http::response r = co_await client.get(url);
        CHECK(r.status == 200);

        // The server goes away, closing the connection the client keeps, and
        // comes back on the same port.
        s.reset();
        s.emplace(tls, httpbin::options{.port = port});
        REQUIRE(s->server.port() == port);

        r = co_await client.get(url);
        CHECK(r.status == 200);
        CHECK((r.body == httpbin::seeded_bytes(100, 1)));
    }());
    CHECK(s->server.connections_accepted() == 1);
}

TEST_CASE("a 303 that turns a POST into a GET drops the body's framing fields", "[http_client]") {
    httpbin::background_server bin({});
    http::client_options options;
    options.timeout = 3s;
    auto post = [](http::client_options o, std::string url) -> awaitable<http::response> {
        http::client client(co_await corun::this_executor(), std::move(o));
        http::fields framing{{"Content-Length", "3"}, {"Content-Type", "text/plain"}};
        std::string method = "POST", body = "abc";
        auto r =
            co_await client.request(std::move(method), std::move(url), std::move(body), std::move(framing));
        co_return r;
    };
    auto r = block_on_within(10s, post(options, bin.base_url() + "/redirect-to?url=/get&status_code=303"));
    CHECK(r.status == 200);
    CHECK(contains(r.url, "/get"));
}

TEST_CASE("a request made with a callback outlives the client object", "[http_client]") {
    httpbin::background_server bin({});
    boost::asio::io_context io;
    int status = 0;
    {
        http::client client(io.get_executor());
        client.get(bin.base_url() + "/get", {}, [&](std::exception_ptr e, http::response r) {
            if (!e) status = r.status;
        });
    }  // gone before the request has even started
    io.run_for(5s);
    CHECK(status == 200);
}
