// corun::http::client — HTTP/1.1 and HTTPS requests as awaitables, over a
// keep-alive connection pool. Beast and OpenSSL stay inside the library.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "corun/awaitable.hpp"
#include "corun/detail/fixed_string.hpp"
#include "corun/detail/with_token.hpp"
#include "corun/http/error.hpp"

namespace corun::http {

/// Header fields in the order they were sent or received.
using fields = std::vector<std::pair<std::string, std::string>>;

/// A whole response, body read.
struct CORUN_API response {
    int status = 0;
    std::string reason;
    fields headers;
    std::string body;
    /// The URL that answered: the request's, or the last redirect's.
    std::string url;
    /// True only when the response came over TLS whose certificate chain and
    /// host name were both verified; false over plain HTTP and when an
    /// `insecure` client accepted a certificate that did not verify.
    bool tls_verified = false;

    /// The value of the first field called `name` (case-insensitive).
    std::optional<std::string_view> header(std::string_view name) const;
    /// Like aiohttp: a status below 400.
    bool ok() const noexcept { return status > 0 && status < 400; }
    /// Throws `error` of kind `status`, naming the status and URL, when `!ok()`.
    void raise_for_status() const;
};

/// Which redirects a request follows (within `max_redirects`).
enum class redirect_policy {
    /// Every redirect, to any origin and scheme.
    follow,
    /// Every redirect but one from https to plain http: that is an `error` of
    /// kind `redirects`. The default: a URL written https:// is never answered
    /// over an unencrypted connection behind the caller's back.
    no_downgrade,
    /// Only redirects to the same scheme, host and port.
    same_origin,
};

/// A user name and password sent as HTTP Basic authentication.
struct basic_auth {
    detail::fixed_string<256> user{};
    detail::fixed_string<256> password{};
    bool empty() const noexcept { return user.empty() && password.empty(); }
};

struct client_options {
    /// Connections open at once, over all hosts; a request beyond that waits
    /// for one to come free (bounded by `timeout`).
    std::size_t limit = 100;
    /// Connections open at once to one scheme+host+port; 0 means only `limit`.
    std::size_t limit_per_host = 0;
    /// Bounds resolving, connecting and the TLS handshake of a new connection.
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
    /// Bounds a whole request: waiting for a connection, connecting, every
    /// redirect, and reading the body. The request is cancelled for real.
    std::chrono::milliseconds timeout{std::chrono::seconds(300)};
    /// Bounds each wait for the next bytes of a response: a server that stops
    /// sending for this long fails the request (kind timeout) however long
    /// `timeout` is. 0: no such bound.
    std::chrono::milliseconds read_timeout{0};
    /// How long the addresses a host name resolved to are reused (aiohttp's
    /// default); 0: resolved for every new connection.
    std::chrono::milliseconds dns_cache_ttl{std::chrono::seconds(10)};
    /// A kept-alive connection unused for this long is closed, not reused.
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(15)};
    /// Redirects followed per request; 0 returns the 3xx response itself.
    int max_redirects = 10;
    /// Which redirects are followed.
    redirect_policy redirects = redirect_policy::no_downgrade;
    /// Limit on the status line plus all header fields of a response (and on
    /// a chunk header, and on the trailer section).
    std::size_t max_header_size = 64 * 1024;
    /// Limit on a response body read whole, after decompression (not on
    /// `stream`'s chunks).
    std::size_t max_body_size = std::size_t{64} << 20;
    /// Send `Accept-Encoding: gzip, deflate, br` and decode what comes back
    /// (also through `stream`). Off: nothing is asked for or decoded.
    bool decompress = true;
    /// A PEM file of CA certificates trusted besides the system's store: a
    /// private CA.
    detail::fixed_string<4096> ca_file{};
    /// Trust the system's CA store. Off: only `ca_file` is trusted.
    bool system_ca = true;
    /// A client certificate (PEM, may hold the chain) and its private key
    /// (PEM; when empty, read from `cert_file`), for servers that ask for one.
    detail::fixed_string<4096> cert_file{};
    detail::fixed_string<4096> key_file{};
    /// Accept any certificate and host name. Off by default; a response then
    /// says whether it was verified all the same (`response::tls_verified`).
    bool insecure = false;
    /// Send every request through this proxy: "http://[user:password@]host:port".
    /// Plain http goes to it in absolute form, https through a CONNECT tunnel.
    detail::fixed_string<1024> proxy{};
    /// Read `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case)
    /// when `proxy` is empty. Off by default, as in aiohttp: a library does not
    /// change where it sends traffic from the environment unless asked.
    bool trust_env = false;
    /// Basic authentication for every request (URL user info overrides it).
    basic_auth auth{};
    detail::fixed_string<256> user_agent = "corun";
};
// Trivially destructible, strings held in place: GCC 12 destroys a braced
// temporary of a type with a destructor one time too many in an expression
// with `co_await` (`client http{co_await corun::this_executor(), {...}}`).
static_assert(std::is_trivially_destructible_v<client_options>);

/// What one request changes of its client's options; every field left at its
/// default keeps the client's. Trivially destructible for the same reason.
struct request_options {
    std::chrono::milliseconds timeout{0};       ///< 0: the client's
    std::chrono::milliseconds read_timeout{0};  ///< 0: the client's
    int max_redirects = -1;                     ///< below 0: the client's
    std::optional<redirect_policy> redirects{};
    std::optional<bool> decompress{};
    /// Basic authentication for this request; both empty: the client's (the
    /// URL's user info overrides either). Read when the call is made, so a
    /// temporary string is fine.
    std::string_view user{};
    std::string_view password{};
};
// Trivially destructible and without arrays: GCC 12 rejects ("array used as
// initializer") a braced temporary holding an array next to a braced
// `fields` in one `co_await` call.
static_assert(std::is_trivially_destructible_v<request_options>);

/// A request body read piece by piece as it is sent: a file, or any async
/// source. With a known length it goes out with `Content-Length`, else in
/// chunked transfer encoding. It is read once: a redirect that must resend
/// it (307, 308) is returned to the caller instead.
class CORUN_API upload {
public:
    /// Returns the next piece; an empty string ends the body.
    using source = std::function<awaitable<std::string>()>;

    upload(source next, std::optional<std::uint64_t> length = std::nullopt);
    /// The file's bytes, read 64 KiB at a time; its size is the length. A
    /// file that cannot be opened is an `error` of kind `request`.
    static upload file(const std::string& path);

    const source& next() const noexcept { return m_next; }
    std::optional<std::uint64_t> length() const noexcept { return m_length; }

private:
    source m_next;
    std::optional<std::uint64_t> m_length;
};

/// `url` with `params` appended to its query, each name and value
/// percent-encoded: `with_query("http://h/s", {{"q", "a b&c"}})` is
/// "http://h/s?q=a%20b%26c".
CORUN_API std::string with_query(std::string url, const fields& params);

class client_state;
class stream_state;

/// A response whose body is read chunk by chunk, for downloads too large to
/// hold. Its connection is reused once the body has been read to the end, and
/// closed if the stream is dropped earlier.
class CORUN_API streamed_response {
public:
    explicit streamed_response(std::unique_ptr<stream_state> state);
    streamed_response(streamed_response&&) noexcept;
    streamed_response& operator=(streamed_response&&) noexcept;
    ~streamed_response();

    /// Status, reason, headers, URL and TLS state; `body` stays empty.
    const response& head() const noexcept;
    /// The next piece of the body, at most `max` bytes; empty at the end.
    /// Throws `error` (protocol, timeout …) if the body breaks off.
    awaitable<std::string> read_chunk(std::size_t max = 64 * 1024);

private:
    std::unique_ptr<stream_state> m_state;
};

/// An HTTP/1.1 client with a keep-alive connection pool, like an aiohttp
/// `ClientSession`. Make one per program (or per event loop) and share it.
///
/// Every request awaits one response and returns it whole; redirects are
/// followed, connections are reused, and a connection the server had closed
/// while idle is replaced without failing a request that is safe to retry
/// (GET, HEAD, PUT, DELETE, OPTIONS). Cancelling the `co_await` (or `timeout`
/// running out) cancels the I/O for real and closes that connection. Failures
/// throw `corun::http::error`.
///
/// A client is not thread-safe: use it from coroutines of one thread (or one
/// strand). In-flight requests keep the pool alive after the client is gone.
///
/// @code
/// corun::http::client http{co_await corun::this_executor()};
/// auto r = co_await http.get("https://example.org/");
/// std::cout << r.status << ' ' << r.body.size() << '\n';
/// @endcode
class CORUN_API client {
public:
    // Two constructors, not a defaulted `options` argument: GCC 12 mishandles
    // a defaulted argument's temporaries in `client c(co_await ...)`.
    explicit client(executor ex);
    client(executor ex, client_options options);
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;
    /// Closes the idle connections; in-flight requests finish and then close theirs.
    ~client();

    /// Header fields sent with every request (a request's own fields of the
    /// same name replace them).
    client(executor ex, client_options options, fields headers);

    /// `GET url` → the response.
    template <class Token = use_awaitable_t>
    auto get(std::string url, fields headers = {}, Token&& token = {}) {
        return detail::with_token(get_executor(),
                                  do_request("GET", std::move(url), {}, std::move(headers), {}),
                                  std::forward<Token>(token));
    }
    template <class Token = use_awaitable_t>
    auto get(std::string url, fields headers, request_options per_request, Token&& token = {}) {
        return detail::with_token(get_executor(),
                                  do_request("GET", std::move(url), {}, std::move(headers), per_request),
                                  std::forward<Token>(token));
    }

    /// Any method, with an optional body and extra header fields.
    template <class Token = use_awaitable_t>
    auto request(std::string method, std::string url, std::string body = {}, fields headers = {},
                 Token&& token = {}) {
        return detail::with_token(
            get_executor(),
            do_request(std::move(method), std::move(url), std::move(body), std::move(headers), {}),
            std::forward<Token>(token));
    }
    template <class Token = use_awaitable_t>
    auto request(std::string method, std::string url, std::string body, fields headers,
                 request_options per_request, Token&& token = {}) {
        return detail::with_token(
            get_executor(),
            do_request(std::move(method), std::move(url), std::move(body), std::move(headers), per_request),
            std::forward<Token>(token));
    }
    /// A body sent piece by piece (`upload::file`, or an async source).
    template <class Token = use_awaitable_t>
    auto request(std::string method, std::string url, upload body, fields headers = {},
                 request_options per_request = {}, Token&& token = {}) {
        return detail::with_token(
            get_executor(),
            do_upload(std::move(method), std::move(url), std::move(body), std::move(headers), per_request),
            std::forward<Token>(token));
    }

    /// Sends the request and returns once the header has arrived; the body is
    /// then read with `streamed_response::read_chunk`.
    awaitable<streamed_response> stream(std::string method, std::string url, std::string body = {},
                                        fields headers = {});
    awaitable<streamed_response> stream(std::string method, std::string url, std::string body, fields headers,
                                        request_options per_request);

    const client_options& options() const noexcept;
    executor get_executor() const noexcept;

private:
    awaitable<response> do_request(std::string method, std::string url, std::string body, fields headers,
                                   request_options per_request);
    awaitable<response> do_upload(std::string method, std::string url, upload body, fields headers,
                                  request_options per_request);

    std::shared_ptr<client_state> m_state;
};

/// One request on a client of its own: `co_await corun::http::fetch(url)`.
CORUN_API awaitable<response> fetch(std::string url);
CORUN_API awaitable<response> fetch(std::string url, client_options options);

}  // namespace corun::http
