// Regression tests for HTTP client bugs found in review (loopback only).
#include <atomic>
#include <functional>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "corun/http/client.hpp"
#include "httpbin.hpp"
#include "support.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace corun_test;

namespace {

/// A blocking loopback server on a thread of its own: each accepted
/// connection is handed to `script` (socket, index of the connection).
class raw_server {
public:
    explicit raw_server(std::function<void(tcp::socket&, int)> script)
        : m_acceptor(m_io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          m_script(std::move(script)) {
        m_thread = std::thread([this] {
            for (int i = 0;; ++i) {
                tcp::socket s(m_io);
                boost::system::error_code ec;
                m_acceptor.accept(s, ec);
                if (ec || m_stop) return;
                ++accepted;
                try {
                    m_script(s, i);
                } catch (...) {
                }
            }
        });
    }
    ~raw_server() {
        m_stop = true;
        boost::system::error_code ec;
        // Wake the accept.
        tcp::socket poke(m_io);
        poke.connect(m_acceptor.local_endpoint(), ec);
        m_thread.join();
    }
    std::string url(const std::string& path = "/") const {
        return "http://127.0.0.1:" + std::to_string(m_acceptor.local_endpoint().port()) + path;
    }
    std::atomic<int> accepted{0};

private:
    asio::io_context m_io;
    tcp::acceptor m_acceptor;
    std::function<void(tcp::socket&, int)> m_script;
    std::atomic<bool> m_stop{false};
    std::thread m_thread;
};

void read_request_head(tcp::socket& s, asio::streambuf& buf) {
    auto n = asio::read_until(s, buf, "\r\n\r\n");
    buf.consume(n);
}

}  // namespace

TEST_CASE("a 1xx interim response is skipped, not returned as the response") {
    raw_server server([](tcp::socket& s, int) {
        asio::streambuf buf;
        read_request_head(s, buf);
        asio::write(
            s, asio::buffer(std::string_view("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                                             "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")));
        read_request_head(s, buf);
        asio::write(s, asio::buffer(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")));
        char c;
        boost::system::error_code ec;
        s.read_some(asio::buffer(&c, 1), ec);
    });
    auto [s1, b1, s2, b2] =
        block_on([&]() -> corun::awaitable<std::tuple<int, std::string, int, std::string>> {
            corun::http::client http(co_await corun::this_executor());
            auto r1 = co_await http.get(server.url("/one"));
            auto r2 = co_await http.get(server.url("/two"));
            co_return std::tuple{r1.status, r1.body, r2.status, r2.body};
        }());
    CHECK(s1 == 200);
    CHECK(b1 == "first");
    CHECK(s2 == 200);
    CHECK(b2 == "second");
}

TEST_CASE("bytes left over after a response are never read as the next response") {
    raw_server server([](tcp::socket& s, int conn) {
        asio::streambuf buf;
        read_request_head(s, buf);
        if (conn == 0) {
            // A (buggy or hostile) server: an extra, unasked-for response rides along.
            asio::write(s,
                        asio::buffer(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                                                      "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")));
        } else {
            asio::write(s,
                        asio::buffer(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")));
        }
        char c;
        boost::system::error_code ec;
        s.read_some(asio::buffer(&c, 1), ec);  // keep the connection open
    });
    auto second = block_on([&]() -> corun::awaitable<std::string> {
        corun::http::client http(co_await corun::this_executor());
        auto r1 = co_await http.get(server.url("/one"));
        auto r2 = co_await http.get(server.url("/two"));
        co_return r2.body;
    }());
    CHECK(second == "good");
}

TEST_CASE("a URL whose authority Boost.URL 1.81 cuts short is rejected, not sent elsewhere") {
    // By RFC 3986 these are a reg-name host (and an invalid port); Boost.URL
    // 1.81 parses "127.0.0.1" as the host and the rest as a path without '/'.
    raw_server server([](tcp::socket& s, int) {
        asio::streambuf buf;
        read_request_head(s, buf);
        asio::write(s, asio::buffer(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")));
    });
    auto port = server.url().substr(std::string("http://127.0.0.1:").size());
    port.pop_back();  // the trailing '/'
    for (std::string url : {"http://127.0.0.1:" + port + "evil.example/get",
                            std::string("http://127.0.0.1.example.invalid:1/get"),
                            std::string("http://127.0.0.1%00.example.invalid:1/get")}) {
        CAPTURE(url);
        auto kind = block_on([&]() -> corun::awaitable<std::string> {
            corun::http::client http(co_await corun::this_executor());
            try {
                auto r = co_await http.get(url);
                co_return "answered " + std::to_string(r.status);
            } catch (const corun::http::error& e) {
                co_return std::string(corun::http::to_string(e.kind()));
            }
        }());
        CHECK(kind == "url");
    }
    CHECK(server.accepted == 0);
}

TEST_CASE("a 303 that turns POST into GET drops the body's framing fields") {
    httpbin::background_server bin({});
    std::string url = bin.base_url() + "/redirect-to?url=/get&status_code=303";
    auto status = block_on_within(10s, [&]() -> corun::awaitable<std::string> {
        corun::http::client_options o;
        o.timeout = 3s;
        corun::http::client http(co_await corun::this_executor(), o);
        corun::http::fields h{{"Content-Length", "3"}, {"Content-Type", "text/plain"}};
        std::string method = "POST", body = "abc";
        try {
            auto r = co_await http.request(method, url, body, h);
            co_return std::to_string(r.status);
        } catch (const corun::http::error& e) {
            co_return std::string(e.what());
        }
    }());
    CHECK(status == "200");
}

TEST_CASE("a callback request outlives the client object") {
    httpbin::background_server bin({});
    asio::io_context io;
    int status = 0;
    {
        auto http = std::make_unique<corun::http::client>(io.get_executor());
        http->get(bin.base_url() + "/get", {}, [&](std::exception_ptr e, corun::http::response r) {
            if (!e) status = r.status;
        });
        http.reset();  // "In-flight requests keep the pool alive after the client is gone."
    }
    io.run_for(5s);
    CHECK(status == 200);
}
