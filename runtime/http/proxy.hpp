// HTTP proxies: which one a request goes through (the explicit one, or the
// environment's), and the CONNECT tunnel an https request needs through it.
// Private to the library, like connection.hpp.
//
// Decisions, where clients differ:
//
// * A proxy URL is "http://[user:password@]host[:port][/]", or a bare
//   "[user:password@]host[:port]" meaning http://. Without a port it is 80,
//   as for any http URL (aiohttp, Python's requests and Go do the same; curl
//   assumes 1080). https:// and socks proxies are refused: they are an
//   `error` of kind proxy, never a silent direct connection.
// * The explicit proxy (`client_options::proxy`) applies to every request:
//   the environment, NO_PROXY included, is read only when it is empty and
//   `trust_env` is set (as `client_options` documents, and as aiohttp does).
// * From the environment: https_proxy / HTTPS_PROXY for https targets,
//   http_proxy / HTTP_PROXY for http ones, else all_proxy / ALL_PROXY. The
//   lowercase name wins when both are set; a variable set to "" counts as
//   unset. Uppercase HTTP_PROXY is honoured (the client's options promise
//   "either case"), except in a CGI program (REQUEST_METHOD set), where a
//   request's "Proxy:" header arrives as HTTP_PROXY; lowercase http_proxy
//   still applies there. This is what Python's urllib does (curl ignores
//   HTTP_PROXY always; Go refuses it in CGI).
// * NO_PROXY (no_proxy wins when both are set) is a list separated by commas
//   and/or white space. An entry "*" matches every host. A name entry
//   matches the host itself and every name under it: "example.com",
//   ".example.com" and "*.example.com" all match "example.com" and
//   "a.example.com", never "badexample.com" (curl's rule for the leading
//   dot). An address entry ("10.1.2.3", "::1", "[::1]") matches that address
//   however it is spelled, a CIDR entry ("10.0.0.0/8", "fd00::/8") the
//   addresses in it; neither matches a host name (nothing is resolved). An
//   entry may end in ":port" ("example.com:8443", "[::1]:8443") and then
//   matches that port only. Names compare case-insensitively, a trailing dot
//   ignored. Loopback is not special: "localhost" and 127.0.0.1 go through
//   the proxy unless NO_PROXY names them (curl and Python do the same).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <boost/beast/core/tcp_stream.hpp>

#include "connection.hpp"
#include "corun/awaitable.hpp"

namespace corun::http::detail {

/// A parsed proxy URL.
struct proxy_target {
    /// "http://host:port" (IPv6 in brackets), without the credentials: safe
    /// to put in a message or a log.
    std::string url;
    std::string host;  ///< name (lowercase) or address, IPv6 without brackets
    std::uint16_t port = 0;
    /// "Basic base64(user:password)" from the URL's user info, percent-decoded;
    /// empty when the URL has none.
    std::string authorization;
    /// Identifies the proxy in the connection pool's key: `url`, and when
    /// there are credentials " auth=" and an HMAC-SHA-256 of `authorization`
    /// under a key drawn at random once per process, in hex. Connections
    /// through one proxy with different credentials never share a key, and
    /// the key reveals nothing of the credentials, even to a dictionary.
    std::string key;
};

/// Parses an explicit or environment proxy URL (see the top of this file).
/// Throws `error` of kind proxy, naming the URL with its password masked, when
/// it is not usable.
proxy_target parse_proxy(std::string_view url);

/// The proxy a request to `t` goes through, or none: `explicit_proxy` when it
/// is not empty, else when `trust_env` the environment's (see the top of this
/// file). Throws `error` of kind proxy, naming `t.url` (and the variable), when
/// the proxy chosen is not usable.
/// With a `cache` (a client's), each proxy URL is parsed once: the pool key's
/// HMAC is not computed again for every request.
using proxy_cache = std::unordered_map<std::string, proxy_target>;
std::optional<proxy_target> choose_proxy(std::string_view explicit_proxy, bool trust_env, const target& t,
                                         proxy_cache* cache = nullptr);

/// Asks the proxy that `s` is connected to for a tunnel to `t`'s host and port
/// ("CONNECT host:port HTTP/1.1", with Proxy-Authorization when `p` has
/// credentials) and reads its answer, whose status line and fields may take
/// at most `max_header_size` bytes. Returns once the tunnel is open, with
/// nothing read beyond the answer: the TLS handshake comes next.
///
/// Throws `error`, naming `t.url`: of kind proxy when the proxy refuses (any
/// status but 2xx, named in the message: "407 Proxy Authentication
/// Required"), closes, answers what is not HTTP, or sends bytes beyond its
/// answer; of kind too_large when the answer exceeds `max_header_size`; of
/// kind url when `t.host` cannot be written in a request line. A cancelled
/// operation throws boost::system::system_error(operation_aborted).
/// The stream is left to the caller, to close on failure; `s`, `t` and `p`
/// must outlive the operation.
awaitable<void> open_tunnel(boost::beast::tcp_stream& s, const target& t, const proxy_target& p,
                            std::size_t max_header_size);

/// Base64 (RFC 4648, with padding) of any bytes.
std::string base64(std::string_view bytes);

/// The value of an Authorization or Proxy-Authorization field for HTTP Basic
/// authentication (RFC 7617): "Basic " + base64(user ":" password). The bytes
/// go as they are given (UTF-8, as RFC 7617's charset recommends).
std::string basic_credentials(std::string_view user, std::string_view password);

}  // namespace corun::http::detail
