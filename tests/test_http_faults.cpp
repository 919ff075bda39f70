#include "corun/http/client.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "http_support.hpp"
#include "raw_server.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
namespace http = corun::http;

namespace {

/// What a streamed GET delivered before it failed, and how it failed.
struct partial_read {
    std::string delivered;
    std::optional<http::error> failure;
};

awaitable<partial_read> stream_until_failure(std::string url) {
    corun::executor ex = co_await corun::this_executor();
    http::client client{ex, {.timeout = 5s}};
    std::string method = "GET";
    partial_read out;
    try {
        http::streamed_response st = co_await client.stream(method, url);
        for (;;) {
            std::string piece = co_await st.read_chunk(100);
            if (piece.empty()) break;
            out.delivered += piece;
        }
    } catch (const http::error& e) {
        out.failure.emplace(e);
    }
    co_return out;
}

/// The error a GET of `url` from a client with `options` ends in, within ten seconds.
http::error get_error(const std::string& url, http::client_options options = {.timeout = 5s}) {
    http::error e = thrown_within<http::error>(10s, get_once(std::move(options), url));
    INFO(e.what());
    CHECK(e.url() == url);
    CHECK(contains(e.what(), url));
    return e;
}

const std::string ok_head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
    return s;
}

}  // namespace

TEST_CASE("a garbage status line fails with kind protocol", "[http_faults]") {
    const std::string garbage = GENERATE(
        as<std::string>{}, "SSH-2.0-OpenSSH_9.2\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon in this field\r\n\r\n", std::string("\x16\x03\x01\x00\x00\x00\xff", 7));
    CAPTURE(garbage);
    raw_server server([&](raw_server::connection& c) {
        if (c.read_request()) c.send(garbage);
    });
    http::error e = get_error(server.url("/"));
    INFO(e.what());
    CHECK(kind_name(e) == "protocol");
}

TEST_CASE("a server that closes without answering fails the request with kind protocol", "[http_faults]") {
    raw_server server([](raw_server::connection& c) { c.read_request(); });
    http::error e = get_error(server.url("/"));
    INFO(e.what());
    CHECK(kind_name(e) == "protocol");
}

TEST_CASE("a body cut short of its Content-Length fails with kind protocol, keeping what came",
          "[http_faults]") {
    const std::string half = pattern(500);
    raw_server server([&](raw_server::connection& c) {
        if (c.read_request()) c.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + half);
    });
    http::error e = get_error(server.url("/truncated"));
    INFO(e.what());
    CHECK(kind_name(e) == "protocol");

    partial_read r = block_on_within(10s, stream_until_failure(server.url("/truncated")));
    REQUIRE(r.failure);
    INFO(r.failure->what());
    CHECK(kind_name(*r.failure) == "protocol");
    CHECK((r.delivered == half));
}

TEST_CASE("a close in the middle of a chunked body fails with kind protocol, keeping what came",
          "[http_faults]") {
    const std::string first = pattern(256), second = pattern(100);
    raw_server server([&](raw_server::connection& c) {
        if (!c.read_request()) return;
        c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n" + first + "\r\n100\r\n" +
               second);
    });
    http::error e = get_error(server.url("/chunked"));
    INFO(e.what());
    CHECK(kind_name(e) == "protocol");

    partial_read r = block_on_within(10s, stream_until_failure(server.url("/chunked")));
    REQUIRE(r.failure);
    INFO(r.failure->what());
    CHECK(kind_name(*r.failure) == "protocol");
    // Everything that arrived is delivered, in order, and nothing else.
    CHECK(r.delivered.size() >= first.size());
    CHECK((r.delivered == (first + second).substr(0, r.delivered.size())));
}

TEST_CASE("a 1 MiB header fails with kind too_large", "[http_faults]") {
    const bool one_field = GENERATE(true, false);
    CAPTURE(one_field);
    raw_server server([&](raw_server::connection& c) {
        if (!c.read_request()) return;
        std::string head = "HTTP/1.1 200 OK\r\n";
        if (one_field) {
            head += "X-Huge: " + pattern(1 << 20) + "\r\n";
        } else {
            for (int i = 0; i < 16 * 1024; ++i)
                head += "X-Many-" + std::to_string(i) + ": " + pattern(50) + "\r\n";
        }
        head += "Content-Length: 2\r\n\r\nok";
        c.send(head);
        c.wait_for_close();
    });
    http::error e = get_error(server.url("/huge-header"));
    INFO(e.what());
    CHECK(kind_name(e) == "too_large");
    CHECK(contains(e.what(), "header"));
    CHECK(contains(e.what(), std::to_string(http::client_options{}.max_header_size)));
}

TEST_CASE("a server sending one byte a second fails with kind timeout", "[http_faults]") {
    const bool in_body = GENERATE(false, true);
    CAPTURE(in_body);
    raw_server server([&](raw_server::connection& c) {
        if (!c.read_request()) return;
        const std::string body = pattern(100);
        std::string rest = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        if (in_body) {
            c.send(rest);
            rest = body;
        } else {
            rest += body;
        }
        for (char byte : rest)
            if (!c.send(std::string_view(&byte, 1)) || !c.pause(1s)) return;
    });
    const std::string url = server.url("/drip");
    http::error e = thrown_within<http::error>(8s, get_once({.timeout = 2s}, url));
    INFO(e.what());
    CHECK(kind_name(e) == "timeout");
    CHECK(contains(e.what(), url));
}

TEST_CASE("a server that never answers fails with kind timeout", "[http_faults]") {
    raw_server server([](raw_server::connection& c) { c.wait_for_close(); });
    const std::string url = server.url("/silent");
    http::error e = thrown_within<http::error>(5s, get_once({.timeout = 500ms}, url));
    INFO(e.what());
    CHECK(kind_name(e) == "timeout");
}

TEST_CASE("a TLS handshake that never completes fails within connect_timeout", "[http_faults]") {
    raw_server server([](raw_server::connection& c) { c.wait_for_close(); });
    const std::string url = server.url("/", "https");
    http::error e = thrown_within<http::error>(5s, get_once({.connect_timeout = 500ms}, url));
    INFO(e.what());
    CHECK(kind_name(e) == "timeout");
    CHECK(contains(e.what(), "500 ms"));
}

// A reset after the request was sent breaks the exchange the client started:
// a protocol failure, like a close at the same point (error.hpp: "a reset or
// close mid-message").
TEST_CASE("a connection reset fails with kind protocol", "[http_faults]") {
    const bool mid_body = GENERATE(false, true);
    CAPTURE(mid_body);
    raw_server server([&](raw_server::connection& c) {
        if (!c.read_request()) return;
        if (mid_body) {
            c.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + pattern(300));
            c.pause(50ms);
        }
        c.reset();
    });
    http::error e = get_error(server.url("/reset"));
    INFO(e.what());
    CHECK(kind_name(e) == "protocol");
}

TEST_CASE("a redirect loop fails with kind redirects, saying it is a loop", "[http_faults]") {
    const bool to_itself = GENERATE(true, false);
    CAPTURE(to_itself);
    raw_server server([&](raw_server::connection& c) {
        while (auto line = c.read_request()) {
            std::string next = to_itself || contains(*line, " /b ") ? "/a" : "/b";
            if (!c.send("HTTP/1.1 302 Found\r\nLocation: " + next + "\r\nContent-Length: 0\r\n\r\n")) return;
        }
    });
    http::error e = thrown_within<http::error>(10s, get_once({.timeout = 5s}, server.url("/a")));
    INFO(e.what());
    CHECK(kind_name(e) == "redirects");
    CHECK(contains(e.what(), e.url()));
    CHECK(contains(e.what(), "loop"));
}

TEST_CASE("a GET on a kept-alive connection the server drops on receipt is retried on a new one",
          "[http_faults]") {
    // The first connection answers once, then closes on the next request
    // without answering: the race of a server's keep-alive timeout.
    raw_server server([](raw_server::connection& c) {
        for (int answered = 0; c.read_request(); ++answered) {
            if (c.index() == 0 && answered == 1) return;
            if (!c.send(ok_head + "ok")) return;
        }
    });
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex};
        std::string url = server.url("/");
        http::response r = co_await client.get(url);
        CHECK(r.body == "ok");
        r = co_await client.get(url);
        CHECK(r.body == "ok");
    }());
    CHECK(server.connections_accepted() == 2);
}

TEST_CASE("a POST on a kept-alive connection the server drops on receipt is not sent twice",
          "[http_faults]") {
    std::atomic<int> posts{0};
    raw_server server([&](raw_server::connection& c) {
        for (int answered = 0;; ++answered) {
            auto line = c.read_request();
            if (!line) return;
            if (contains(*line, "POST")) ++posts;
            if (c.index() == 0 && answered == 1) return;
            if (!c.send(ok_head + "ok")) return;
        }
    });
    std::optional<http::error> failure;
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex};
        std::string url = server.url("/");
        http::response r = co_await client.get(url);
        CHECK(r.body == "ok");
        std::string method = "POST", body = "payload";
        try {
            co_await client.request(method, url, body);
        } catch (const http::error& e) {
            failure.emplace(e);
        }
    }());
    REQUIRE(failure);
    INFO(failure->what());
    CHECK(kind_name(*failure) == "protocol");
    CHECK(posts == 1);
}

TEST_CASE("a kept-alive connection the server closed while idle is not reused", "[http_faults]") {
    raw_server server([](raw_server::connection& c) {
        if (c.read_request() && c.send(ok_head + "ok")) c.pause(50ms);
    });
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex};
        std::string url = server.url("/");
        for (int i = 0; i < 3; ++i) {
            http::response r = co_await client.get(url);
            CHECK(r.body == "ok");
            co_await sleep_for(200ms);
        }
    }());
    CHECK(server.connections_accepted() == 3);
}

/// Two GETs on one client, one after the other: the bodies they got.
awaitable<std::pair<std::string, std::string>> two_gets(std::string first, std::string second) {
    http::client client(co_await corun::this_executor());
    auto r1 = co_await client.get(std::move(first));
    auto r2 = co_await client.get(std::move(second));
    co_return std::pair{r1.body, r2.body};
}

TEST_CASE("a 1xx interim response is skipped, and the final one answers the request", "[http_faults]") {
    raw_server server([](raw_server::connection& c) {
        if (!c.read_request()) return;
        c.send(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
        if (!c.read_request()) return;
        c.send("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond");
        c.wait_for_close();
    });
    auto [first, second] = block_on_within(10s, two_gets(server.url("/one"), server.url("/two")));
    CHECK(first == "first");
    CHECK(second == "second");
    CHECK(server.connections_accepted() == 1);
}

TEST_CASE("bytes sent beyond a response are never read as the next response", "[http_faults]") {
    raw_server server([](raw_server::connection& c) {
        if (!c.read_request()) return;
        if (c.index() == 0) {
            // An unasked-for response rides along with the first one.
            c.send(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil");
        } else {
            c.send("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood");
        }
        c.wait_for_close();
    });
    auto [first, second] = block_on_within(10s, two_gets(server.url("/one"), server.url("/two")));
    CHECK(first == "hello");
    CHECK(second == "good");
}

TEST_CASE("a URL whose authority Boost.URL 1.81 cuts short is rejected, never sent elsewhere",
          "[http_faults]") {
    // By RFC 3986 these are a reg-name host (or an invalid port); Boost.URL
    // 1.81 takes "127.0.0.1" as the host and the rest as a path without '/'.
    raw_server server([](raw_server::connection& c) {
        if (c.read_request()) c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    const std::string base = server.url("");
    for (const std::string& url :
         {base + "evil.example/get", std::string("http://127.0.0.1.example.invalid:1/get"),
          std::string("http://127.0.0.1%00.example.invalid:1/get")}) {
        CAPTURE(url);
        http::error e = get_error(url);
        CHECK(kind_name(e) == "url");
    }
    CHECK(server.connections_accepted() == 0);
}
