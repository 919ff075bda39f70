// httpbin — a loopback HTTP/HTTPS server with httpbin.org's routes, on Beast
// and C++20 coroutines: what corun's examples, tests and benchmarks fetch from.
//
// Routes (any other path is 404, a malformed request 400):
//   /                       an index of these routes
//   /bytes/:n               n bytes (capped at max_bytes); ?seed=S makes them seeded_bytes(n, S)
//   /stream-bytes/:n        the same bytes in chunked transfer encoding; ?seed=, ?chunk_size= (default 10240)
//   /delay/:s               /get's answer after s seconds (fractional, capped at 10)
//   /status/:code           an empty response with that status (200..599); 3xx ones point at /redirect/1
//   /redirect/:n            302 to /redirect/n-1, the last one to /get
//   /redirect-to?url=U&status_code=C   C (default 302, 3xx only) with Location: U
//   /get                    JSON of "args", "headers", "origin" and "url"
//   /anything, /post        the same plus "method" and "data" (the request body)
//   /drip?numbytes=&duration=&delay=&code=   numbytes '*' spread evenly over duration s, after delay s
//   anything options::extra_route answers (corun-textpipe's /text/:n)
//
// Every connection is one coroutine on the server's strand; HTTP/1.1
// keep-alive, `Connection: close` and HTTP/1.0 are honoured.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>

namespace httpbin {

/// /bytes and /stream-bytes answer at most this many bytes, like httpbin.org.
inline constexpr std::size_t max_bytes = 100 * 1024;

struct options {
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;                // 0: an ephemeral port
    std::chrono::milliseconds latency{0};  // added before every response (stand-in for internet RTT)
    bool tls = false;                      // serve HTTPS instead of HTTP
    std::string cert_file = {};            // PEM; when tls and both empty: a self-signed certificate
    std::string key_file = {};             //   for localhost, 127.0.0.1 and address is made at start-up
    std::string write_cert = {};           // if set, the certificate in use is written there (PEM)
    /// More routes, given by the program embedding the server: called with the
    /// path of every GET and HEAD request before the built-in routes, on the
    /// server's thread. A string is answered as 200 text/plain; std::nullopt
    /// falls through to the built-in routes. It lets a program serve its own
    /// data (corun-textpipe its corpus) without httpbin depending on it.
    std::function<std::optional<std::string>(std::string_view path)> extra_route = {};
};

/// The bytes /bytes/n?seed=S answers: byte i is the low byte of the i-th
/// output (from 0) of SplitMix64 started at state S, that is of
///   S += 0x9e3779b97f4a7c15; z = S;
///   z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
///   z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
///   output z ^ (z >> 31).
std::string seeded_bytes(std::size_t n, std::uint64_t seed);

struct server_state;

/// Serves on the executor it is given (on a strand of it, so a multi-threaded
/// executor is fine). Binds and listens in the constructor, which throws
/// std::exception if it cannot (address in use, unreadable certificate …).
class server {
public:
    server(boost::asio::any_io_executor ex, options opts);
    ~server();  // stop()
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    std::uint16_t port() const;
    std::string base_url() const;  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT"
    /// TCP connections accepted so far (thread-safe): tests prove connection reuse with it.
    std::size_t connections_accepted() const;
    /// Stops accepting and closes every open connection, cancelling their
    /// waits. Safe from any thread; the closing happens on the server's strand.
    void stop();

private:
    std::shared_ptr<server_state> m_state;
};

/// A server on an io_context and thread of its own.
class background_server {
public:
    explicit background_server(options opts);
    ~background_server();  // stops the server and joins its thread
    background_server(const background_server&) = delete;
    background_server& operator=(const background_server&) = delete;

    std::uint16_t port() const;
    std::string base_url() const;
    std::size_t connections_accepted() const;

private:
    struct impl;
    std::unique_ptr<impl> m_impl;
};

}  // namespace httpbin
