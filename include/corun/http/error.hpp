// corun::http::error — every failure of the HTTP client, typed by kind.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "corun/awaitable.hpp"

namespace corun::http {

/// What went wrong, coarse enough to branch on.
enum class error_kind {
    url,       ///< the URL could not be parsed, or its scheme is not http/https
    request,   ///< the request itself is malformed: a bad method, a field with CR/LF, a framing field
    resolve,   ///< the host name did not resolve
    connect,   ///< no TCP connection could be made (refused, unreachable)
    tls,       ///< TLS failed: untrusted or expired certificate, wrong host, a client certificate refused …
    proxy,     ///< the proxy could not be reached or refused the request or tunnel (407, 403 …)
    timeout,   ///< the connect, whole-request or read timeout ran out
    protocol,  ///< the peer broke HTTP: garbage, a truncated or undecodable body, a reset mid-message
    too_large,  ///< the header or body exceeded its limit
    redirects,  ///< too many redirects, a redirect loop, or one the redirect policy refuses
    status,     ///< `response::raise_for_status()` on a 4xx/5xx response
};

/// The kind's name: "url", "resolve", "connect", "tls", "timeout" …
CORUN_API std::string_view to_string(error_kind kind) noexcept;

/// Thrown by every operation of `corun::http`. `what()` reads
/// "<kind> error for <url>: <detail>", so a log line says which request failed
/// and why.
class CORUN_API error : public std::runtime_error {
public:
    error(error_kind kind, std::string url, std::string_view detail);

    error_kind kind() const noexcept { return m_kind; }
    /// The URL of the request that failed (after redirects, the one that failed).
    const std::string& url() const noexcept { return m_url; }

private:
    error_kind m_kind;
    std::string m_url;
};

}  // namespace corun::http
