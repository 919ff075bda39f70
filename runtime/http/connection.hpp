// One HTTP/1.1 connection, plain or TLS, and the URL it was opened for.
// Private to the library: this is where Beast and OpenSSL live.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "corun/awaitable.hpp"
#include "corun/http/client.hpp"

namespace corun::http::detail {

namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using clock = std::chrono::steady_clock;

/// A parsed http(s) URL: what a request needs and what connections are pooled by.
struct target {
    std::string url;  ///< as given, but without user info (never a password in a message)
    bool tls = false;
    std::string host;  ///< name or address, IPv6 without brackets
    std::uint16_t port = 0;
    std::string host_header;  ///< host[:port] as the URL spelled it
    std::string path;         ///< origin form: path and query
    std::string origin;       ///< scheme://host:port, the pool's key
    /// The URL's user info, percent-decoded: Basic credentials for this origin.
    std::optional<std::pair<std::string, std::string>> credentials;
};

/// Throws `error` of kind `url`, naming `url`, when it is not an absolute
/// http or https URL with a host.
target parse_target(std::string url);

/// The addresses of `t`'s host (its address itself when it is one), in the
/// order to try them: families alternating, the resolver's first one first.
/// Throws `error` of kind resolve.
awaitable<std::vector<tcp::endpoint>> resolve(const target& t);

/// A socket connected to one of `endpoints`, tried in order: the next is
/// started 250 ms after the last, or at once when the last fails, and the
/// first to connect wins, the others closed (Happy Eyeballs, RFC 8305 §5).
/// Throws boost::system::system_error with the last failure when none connects.
awaitable<tcp::socket> connect_any(const std::vector<tcp::endpoint>& endpoints);

/// `s` with every byte but letters, digits and those in `keep` as %XX.
std::string percent_encoded(std::string_view s, std::string_view keep);

/// The absolute URL a `Location` field sends `base` to. Spaces, raw UTF-8 and
/// other bytes a URL may not hold are percent-encoded first, as browsers,
/// curl and requests do.
std::string resolve_location(const std::string& base, std::string_view location);

struct proxy_target;

class connection {
public:
    connection(const executor& ex, ssl::context* tls_context);
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Connects to one of `endpoints` (Happy Eyeballs, RFC 8305: the next
    /// address is tried 250 ms after the last without waiting for it to fail,
    /// the first to connect wins) and, for https, does the handshake with SNI
    /// and certificate + host-name verification. Throws `error`.
    /// With a `proxy`, `endpoints` are the proxy's, and an https request's
    /// TLS goes through a CONNECT tunnel (an answer of at most
    /// `max_header_size`); a failure to reach the proxy is of kind proxy.
    awaitable<void> open(const target& t, const std::vector<tcp::endpoint>& endpoints,
                         const proxy_target* proxy, std::size_t max_header_size);

    /// Calls `f` with the stream to read and write: the TLS stream or the
    /// plain one. `f` returns an awaitable.
    template <class F>
    auto with_stream(F&& f) {
        if (m_tls) return f(*m_tls);
        return f(*m_plain);
    }

    bool tls() const noexcept { return m_tls.has_value(); }
    /// For TLS: did the chain and host name verify (even when not required)?
    bool verified() const noexcept { return m_verified; }
    /// False when the peer has closed it, or sent something unasked while
    /// idle; a cheap non-blocking peek, no I/O is consumed.
    bool looks_alive() noexcept;
    void close() noexcept;

    beast::flat_buffer buffer;
    clock::time_point idle_since{};

private:
    tcp::socket& socket() noexcept;

    std::optional<beast::tcp_stream> m_plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> m_tls;
    bool m_verified = false;
};

}  // namespace corun::http::detail
