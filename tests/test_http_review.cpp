// Review findings against the HTTP client: loopback servers that misbehave
// in ways the hostile suite does not try. Each case states what a client
// should do; a failing case is a defect.
#include "corun/http/client.hpp"

#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http_support.hpp"
#include "process_support.hpp"
#include "raw_server.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
namespace http = corun::http;
using steady = std::chrono::steady_clock;
using conn = raw_server::connection;

namespace {

constexpr std::size_t MiB = std::size_t{1} << 20;

long ms_since(steady::time_point start) {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start).count());
}

std::string compressible(std::size_t n) {
    std::string s;
    for (int i = 0; s.size() < n; ++i) s += "line " + std::to_string(i * 7919 % 1000) + " of the body\n";
    s.resize(n);
    return s;
}

/// `data` deflated with zlib: window_bits 31 is gzip, 15 zlib, -15 raw deflate.
std::string zlib_compress(std::string_view data, int window_bits) {
    z_stream z{};
    REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

std::string chunk(std::string_view piece) {
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
    return size + std::string(piece) + "\r\n";
}

/// Peak growth of this process's resident memory, in MiB, while `f` runs.
template <class F>
long peak_rss_growth_mib(F&& f) {
    const long before = status_kib("VmRSS");
    reset_peak_rss();
    f();
    return (status_kib("VmHWM") - before) / 1024;
}

awaitable<http::response> get_or_stream(bool streamed, http::client_options options, std::string url,
                                        http::request_options per_request = {}) {
    corun::executor ex = co_await corun::this_executor();
    http::client client{ex, options};
    http::fields no_fields;
    if (!streamed) co_return co_await client.get(std::move(url), no_fields, per_request);
    std::string method = "GET", no_body;
    http::streamed_response st = co_await client.stream(method, std::move(url), no_body, no_fields, per_request);
    http::response r = st.head();
    for (;;) {
        std::string piece = co_await st.read_chunk();
        if (piece.empty()) break;
        r.body += piece;
    }
    co_return r;
}

struct piece_list {
    std::vector<std::string> pieces;
    std::size_t next = 0;
};

awaitable<std::string> next_piece(std::shared_ptr<piece_list> list) {
    if (list->next < list->pieces.size()) co_return list->pieces[list->next++];
    co_return std::string();
}

http::upload upload_of(const std::string& body, std::optional<std::uint64_t> declared) {
    auto list = std::make_shared<piece_list>();
    for (std::size_t at = 0; at < body.size(); at += 1000) list->pieces.push_back(body.substr(at, 1000));
    return http::upload([list]() { return next_piece(list); }, declared);
}

std::optional<std::string> read_body(conn& c, const std::string& head) {
    if (conn::field(head, "transfer-encoding")) return c.read_chunked_body();
    auto length = conn::field(head, "content-length");
    return c.read_bytes(length ? std::stoul(*length) : 0);
}

}  // namespace

// A gzip body of two members, the second arriving in a later read: both are
// part of the body (RFC 1952 §2.2), as they are when they come together.
TEST_CASE("review: a second gzip member arriving in a later read is decoded, not dropped", "[http_review]") {
    const bool streamed = GENERATE(false, true);
    CAPTURE(streamed);
    const std::string a = compressible(5000), b = "and the second member\n";
    const std::string gz_a = zlib_compress(a, 31), gz_b = zlib_compress(b, 31);
    raw_server server([&](conn& c) {
        if (!c.read_request()) return;
        c.send("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " +
               std::to_string(gz_a.size() + gz_b.size()) + "\r\n\r\n" + gz_a);
        c.pause(200ms);
        c.send(gz_b);
        c.wait_for_close();
    });
    // Through get, the body framed by Content-Length is read whole before
    // decoding; chunked framing decodes as it comes.
    raw_server chunked([&](conn& c) {
        if (!c.read_request()) return;
        c.send("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" +
               chunk(gz_a));
        c.pause(200ms);
        c.send(chunk(gz_b) + "0\r\n\r\n");
        c.wait_for_close();
    });
    const std::string url = streamed ? server.url("/two") : chunked.url("/two");
    http::response r = block_on_within(10s, get_or_stream(streamed, {.timeout = 5s}, url));
    CHECK(r.status == 200);
    CHECK(r.body.size() == a.size() + b.size());
    CHECK((r.body == a + b));
}

// The raw-deflate fallback restarts "from its first byte again"; that byte
// must still be there when the body trickles in.
TEST_CASE("review: a raw deflate body arriving a byte at a time is decoded", "[http_review]") {
    const bool streamed = GENERATE(false, true);
    CAPTURE(streamed);
    const std::string data = compressible(3000);
    const std::string raw = zlib_compress(data, -15);
    raw_server server([&](conn& c) {
        if (!c.read_request()) return;
        const bool by_length = streamed;
        c.send("HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n" +
               std::string(by_length ? "Content-Length: " + std::to_string(raw.size()) + "\r\n\r\n"
                                     : "Transfer-Encoding: chunked\r\n\r\n"));
        for (std::size_t i = 0; i < 4; ++i) {
            c.send(by_length ? raw.substr(i, 1) : chunk(raw.substr(i, 1)));
            c.pause(50ms);
        }
        c.send(by_length ? raw.substr(4) : chunk(raw.substr(4)) + "0\r\n\r\n");
        c.wait_for_close();
    });
    http::response r = block_on_within(10s, get_or_stream(streamed, {.timeout = 5s}, server.url("/raw")));
    CHECK(r.status == 200);
    CHECK((r.body == data));
}

// stream() has no body limit, but each read_chunk must stay bounded in
// memory: bytes after the end of the gzip stream must not pile up.
TEST_CASE("review: endless bytes after a gzip body's end do not pile up in stream's memory", "[http_review]") {
    const std::string gz = zlib_compress("hello", 31);
    std::atomic<std::size_t> sent{0};
    raw_server server([&](conn& c) {
        if (!c.read_request()) return;
        if (!c.send("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" +
                    chunk(gz)))
            return;
        const std::string garbage = chunk(std::string(64 * 1024, 'x'));
        while (sent < 300 * MiB && c.send(garbage)) sent += garbage.size();
        c.wait_for_close();
    });
    std::optional<std::string> outcome;
    long growth = peak_rss_growth_mib([&] {
        try {
            http::response r = block_on_within(20s, get_or_stream(true, {.timeout = 4s}, server.url("/g")));
            outcome = "body of " + std::to_string(r.body.size());
        } catch (const http::error& e) {
            outcome = e.what();
        }
    });
    INFO(*outcome << "; server sent " << sent / MiB << " MiB");
    CHECK(growth < 64);
}

// A PUT upload answered 301 (or 302): the redirect keeps the method and so
// must resend the body, which an upload cannot; it has to be returned like
// a 307 (or fail), never resent empty.
TEST_CASE("review: a chunked PUT upload redirected with 301 is not resent with an empty body", "[http_review]") {
    std::mutex m;
    std::vector<std::string> bodies;
    raw_server server([&](conn& c) {
        while (auto line = c.read_head()) {
            auto body = read_body(c, *line);
            {
                std::lock_guard lock(m);
                bodies.push_back(body.value_or("<broken>"));
            }
            if (line->find(" /first ") != std::string::npos) {
                c.send("HTTP/1.1 301 Moved\r\nLocation: /second\r\nContent-Length: 0\r\n\r\n");
            } else {
                c.send("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    const std::string data(20000, 'd');
    std::optional<http::response> r;
    std::optional<http::error> e;
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, {.timeout = 5s}};
        std::string method = "PUT";
        try {
            std::string url = server.url("/first");
            http::upload up = upload_of(data, std::nullopt);
            r = co_await client.request(method, url, std::move(up));
        } catch (const http::error& err) {
            e = err;
        }
    }());
    std::lock_guard lock(m);
    for (std::size_t i = 0; i < bodies.size(); ++i) INFO("request " << i << " body of " << bodies[i].size());
    if (r) {
        INFO("returned " << r->status);
        CHECK(r->status == 301);
    }
    // Whatever the client did, no request went out with an empty body.
    for (const auto& b : bodies) CHECK(b.size() == data.size());
}

// Waiting for a 100 Continue is not a stall of the response: a read_timeout
// shorter than the one-second wait must not fail a server that ignores Expect.
TEST_CASE("review: Expect: 100-continue with a read_timeout under a second, server ignoring Expect",
          "[http_review]") {
    raw_server server([&](conn& c) {
        auto head = c.read_head();
        if (!head) return;
        auto body = read_body(c, *head);
        c.send("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body ? body->size() : 0) + "\r\n\r\n" +
               body.value_or(""));
        c.wait_for_close();
    });
    http::response r = block_on_within(10s, [&]() -> awaitable<http::response> {
        corun::executor ex = co_await corun::this_executor();
        http::client_options options{.timeout = 5s, .read_timeout = 300ms};
        http::client client{ex, options};
        std::string method = "POST", url = server.url("/e"), body(5000, 'b');
        http::fields expect{{"Expect", "100-continue"}};
        co_return co_await client.request(method, url, body, expect);
    }());
    CHECK(r.status == 200);
    CHECK(r.body.size() == 5000);
}

// A server that answers 413 early and then simply stops reading (without
// closing): the answer is there to read, but the client only reads once
// the body is all written, so it waits until the server gives up.
TEST_CASE("review: an early 413 from a server that stops reading is returned without waiting for the close",
          "[http_review]") {
    raw_server server([&](conn& c) {
        if (!c.read_head()) return;
        c.send("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        c.pause(4s);  // neither reads nor closes
        c.reset();
    });
    auto start = steady::now();
    std::optional<http::response> r;
    std::optional<std::string> failure;
    block_on_within(15s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client client{ex, {.timeout = 10s}};
        std::string method = "POST";
        try {
            std::string url = server.url("/big"), body(32 * MiB, 'x');
            r = co_await client.request(method, url, body);
        } catch (const http::error& e) {
            failure = e.what();
        }
    }());
    INFO("took " << ms_since(start) << " ms; " << failure.value_or("returned"));
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(ms_since(start) < 2000);
}

// ---- a scripted TLS server ----

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>

#include <thread>

namespace {

/// One TLS connection at a time on a loopback port, each handed to a script
/// with a blocking SSL*; for as many connections as `count`.
class tls_script_server {
public:
    using script = std::function<void(SSL*, std::size_t)>;
    tls_script_server(std::size_t count, script s) : m_script(std::move(s)) {
        ::signal(SIGPIPE, SIG_IGN);  // SSL_write to a client that has gone
        m_ctx = SSL_CTX_new(TLS_server_method());
        REQUIRE(SSL_CTX_use_certificate_chain_file(m_ctx, cert_path("server.pem").c_str()) == 1);
        REQUIRE(SSL_CTX_use_PrivateKey_file(m_ctx, cert_path("server.key").c_str(), SSL_FILETYPE_PEM) == 1);
        m_listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(m_listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(m_listener, 8) == 0);
        socklen_t len = sizeof addr;
        ::getsockname(m_listener, reinterpret_cast<sockaddr*>(&addr), &len);
        m_port = ntohs(addr.sin_port);
        m_thread = std::thread([this, count] {
            for (std::size_t i = 0; i < count; ++i) {
                pollfd p{m_listener, POLLIN, 0};
                while (!m_stop && ::poll(&p, 1, 20) <= 0) {
                }
                if (m_stop) return;
                int fd = ::accept4(m_listener, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) return;
                timeval tv{3, 0};
                ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                SSL* ssl = SSL_new(m_ctx);
                SSL_set_fd(ssl, fd);
                // No session tickets: nothing but what the script writes follows the handshake.
                SSL_set_num_tickets(ssl, 0);
                if (SSL_accept(ssl) == 1) m_script(ssl, i);
                SSL_free(ssl);
                ::close(fd);
            }
        });
    }
    ~tls_script_server() {
        m_stop = true;
        m_thread.join();
        ::close(m_listener);
        SSL_CTX_free(m_ctx);
    }
    std::string url(const std::string& path) const {
        return "https://127.0.0.1:" + std::to_string(m_port) + path;
    }

    /// Reads one request head; empty once the peer has gone.
    static std::string read_head(SSL* ssl) {
        std::string in;
        char buf[4096];
        while (in.find("\r\n\r\n") == std::string::npos) {
            int n = SSL_read(ssl, buf, sizeof buf);
            if (n <= 0) return {};
            in.append(buf, static_cast<std::size_t>(n));
        }
        return in;
    }

private:
    script m_script;
    SSL_CTX* m_ctx = nullptr;
    int m_listener = -1;
    std::uint16_t m_port = 0;
    std::atomic<bool> m_stop{false};
    std::thread m_thread;
};

}  // namespace

// Issue 12's point 3 over TLS: bytes a server sends right after a 204 land
// in the TLS layer's buffer, not in the socket, so a peek at the socket does
// not see them; they must never be read as the next response.
TEST_CASE("review: stray bytes after a 204 over TLS are never read as the next response", "[http_review]") {
    tls_script_server server(2, [](SSL* ssl, std::size_t index) {
        if (index == 0) {
            if (tls_script_server::read_head(ssl).empty()) return;
            std::string answer = "HTTP/1.1 204 No Content\r\n\r\n";
            std::string stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!";
            // Two records in one TCP segment: the client's TLS layer takes both from the socket.
            int fd = SSL_get_fd(ssl), on = 1, off = 0;
            ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
            SSL_write(ssl, answer.data(), static_cast<int>(answer.size()));
            SSL_write(ssl, stray.data(), static_cast<int>(stray.size()));
            ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
            tls_script_server::read_head(ssl);  // a second request, if the connection is reused: not answered
            return;
        }
        if (tls_script_server::read_head(ssl).empty()) return;
        std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood";
        SSL_write(ssl, ok.data(), static_cast<int>(ok.size()));
        tls_script_server::read_head(ssl);
    });
    std::string second = block_on_within(15s, [&]() -> awaitable<std::string> {
        corun::executor ex = co_await corun::this_executor();
        http::client_options options{.timeout = 5s};
        options.ca_file = cert_path("ca.pem");
        http::client client{ex, options};
        std::string url = server.url("/nothing");
        http::response first = co_await client.get(url);
        CHECK(first.status == 204);
        co_await sleep_for(100ms);
        try {
            http::response r = co_await client.get(url);
            co_return std::to_string(r.status) + " " + r.body;
        } catch (const http::error& e) {
            co_return std::string(e.what());
        }
    }());
    CHECK(second == "200 good");
}

// The one-second wait for a 100 Continue applies only to the first answer:
// after a 103 Early Hints the client waits for a 100 for ever (until the
// timeout), while the server, ignoring Expect, waits for the body.
TEST_CASE("review: Expect: 100-continue answered 103 Early Hints first still sends the body", "[http_review]") {
    raw_server server([&](conn& c) {
        auto head = c.read_head();
        if (!head) return;
        c.send("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n");
        auto body = read_body(c, *head);
        c.send("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body ? body->size() : 0) + "\r\n\r\n" +
               body.value_or(""));
        c.wait_for_close();
    });
    auto start = steady::now();
    http::response r = block_on_within(15s, [&]() -> awaitable<http::response> {
        corun::executor ex = co_await corun::this_executor();
        http::client_options options{.timeout = 4s};
        http::client client{ex, options};
        std::string method = "POST", url = server.url("/e"), body(5000, 'b');
        http::fields expect{{"Expect", "100-continue"}};
        co_return co_await client.request(method, url, body, expect);
    }());
    CHECK(r.status == 200);
    CHECK(r.body.size() == 5000);
    CHECK(ms_since(start) < 3000);
}

// Cancelled in the middle of everything: an upload whose source never ends,
// a server that stops reading the upload, a compressed stream, and the
// client dropped with requests in flight. Each ends in time (kind timeout),
// with no sanitizer report.
TEST_CASE("review: cancellation mid-upload, mid-decompression, and with the client gone", "[http_review]") {
    const std::string gz = zlib_compress(compressible(4 * MiB), 31);
    raw_server server([&](conn& c) {
        auto head = c.read_head();
        if (!head) return;
        if (head->find(" /gz ") != std::string::npos) {
            c.send("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + std::to_string(gz.size()) +
                   "\r\n\r\n" + gz.substr(0, gz.size() / 2));
        }
        c.pause(5s);  // reads nothing more
    });
    const std::string which = GENERATE(as<std::string>{}, "source never ends", "server stops reading",
                                       "mid-decompression", "client dropped");
    CAPTURE(which);
    auto start = steady::now();
    block_on_within(10s, [&]() -> awaitable<void> {
        corun::executor ex = co_await corun::this_executor();
        http::client_options options{.timeout = 700ms};
        std::optional<http::client> client;
        client.emplace(ex, options);
        std::string method = "POST", url = server.url("/up");
        try {
            if (which == "source never ends") {
                http::upload forever([]() -> awaitable<std::string> {
                    co_await sleep_for(1h);
                    co_return std::string();
                });
                co_await client->request(method, url, std::move(forever));
            } else if (which == "server stops reading") {
                co_await client->request(method, url, upload_of(std::string(64 * MiB, 'u'), 64 * MiB));
            } else if (which == "mid-decompression") {
                std::string get = "GET", gz_url = server.url("/gz"), none;
                http::streamed_response st = co_await client->stream(get, gz_url, none, {});
                for (;;)
                    if ((co_await st.read_chunk(1000)).empty()) break;
            } else {
                std::string gz_url = server.url("/gz");
                auto pending = client->get(gz_url);
                client.reset();  // in-flight requests keep the pool
                co_await std::move(pending);
            }
            FAIL("no error");
        } catch (const http::error& e) {
            INFO(e.what());
            CHECK(std::string(http::to_string(e.kind())) == "timeout");
        }
    }());
    CHECK(ms_since(start) < 2500);
}
