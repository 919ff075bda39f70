#include "corun/http/client.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <list>
#include <set>
#include <unordered_map>

#include <openssl/ssl.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include "connection.hpp"
#include "corun/timeout.hpp"

namespace corun::http {

namespace bhttp = boost::beast::http;
using detail::clock;
using detail::connection;
using detail::target;
namespace ssl = boost::asio::ssl;
using boost::asio::as_tuple;
using boost::beast::iequals;
using boost::system::error_code;

namespace {

std::string in_ms(std::chrono::milliseconds d) {
    return std::to_string(d.count()) + " ms";
}

/// Safe to send twice (RFC 9110 §9.2.2): a request on a kept-alive
/// connection that the server had already closed is sent again on a new one.
bool idempotent(std::string_view method) {
    for (std::string_view m : {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
        if (m == method) return true;
    return false;
}

bool is_redirect(int status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool is_token(std::string_view s) {
    return !s.empty() && std::ranges::all_of(s, [](unsigned char ch) {
        return std::isalnum(ch) ||
               std::string_view("!#$%&'*+-.^_`|~").find(char(ch)) != std::string_view::npos;
    });
}

/// A field a caller passes must not be able to smuggle another header or
/// request into the stream.
void check_field(const std::string& name, const std::string& value) {
    auto bad = [](const std::string& s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != s.npos; };
    if (!is_token(name) || bad(value))
        throw std::invalid_argument("corun::http: malformed header field '" + name + "'");
}

/// `op`, bounded by `limit`. Running out is an `error` of kind timeout naming
/// `url` as it is then (a redirect may have changed it): "<what> within the
/// timeout of <stated>". Built only then, never on the way through.
template <class T>
awaitable<T> bounded(std::chrono::milliseconds limit, std::chrono::milliseconds stated,
                     const std::string& url, const char* what, awaitable<T> op) {
    try {
        co_return co_await with_timeout(limit, std::move(op));
    } catch (const timeout_error&) {
        throw error(error_kind::timeout, url, std::string(what) + " within the timeout of " + in_ms(stated));
    }
}

}  // namespace

// ---- the connection pool ---------------------------------------------------

class client_state;

/// A connection taken from the pool; goes back (or is closed) when dropped.
class lease {
public:
    lease(std::shared_ptr<client_state> pool, std::string origin, std::unique_ptr<connection> conn,
          bool reused)
        : m_pool(std::move(pool)), m_origin(std::move(origin)), m_conn(std::move(conn)), m_reused(reused) {}
    lease(lease&&) noexcept = default;
    lease& operator=(lease&&) = delete;
    ~lease() { give_back(false); }

    connection& conn() noexcept { return *m_conn; }
    bool reused() const noexcept { return m_reused; }
    bool held() const noexcept { return m_conn != nullptr; }
    /// Returns the connection for reuse (`keep_alive`) or closes it.
    void give_back(bool keep_alive) noexcept;

private:
    std::shared_ptr<client_state> m_pool;
    std::string m_origin;
    std::unique_ptr<connection> m_conn;
    bool m_reused;
};

class client_state : public std::enable_shared_from_this<client_state> {
public:
    client_state(executor ex, client_options options)
        : m_ex(std::move(ex)), m_options(std::move(options)), m_sweeper(m_ex) {}

    const executor& get_executor() const noexcept { return m_ex; }
    const client_options& options() const noexcept { return m_options; }

    awaitable<lease> acquire(const target& t, bool fresh);
    void give_back(const std::string& origin, std::unique_ptr<connection> c, bool keep_alive) noexcept;
    void shut_down() noexcept;

private:
    struct host {
        std::vector<std::unique_ptr<connection>> idle;  // most recently used last
        std::size_t open = 0;                           // idle, busy and connecting
    };

    bool room_for(const host& h) const noexcept {
        return m_open < m_options.limit &&
               (m_options.limit_per_host == 0 || h.open < m_options.limit_per_host);
    }
    void forget(host& h, connection& c) noexcept {
        c.close();
        --h.open;
        --m_open;
    }
    bool evict_idle_except(const std::string& origin) noexcept;
    awaitable<void> wait_for_room();
    void wake_waiters() noexcept {
        for (auto* w : m_waiters) w->cancel();
    }
    void arm_sweeper() noexcept;
    void sweep() noexcept;
    ssl::context& tls_context(const target& t);

    executor m_ex;
    client_options m_options;
    std::unordered_map<std::string, host> m_hosts;
    std::size_t m_open = 0;
    std::list<boost::asio::steady_timer*> m_waiters;
    boost::asio::steady_timer m_sweeper;
    bool m_sweeping = false;
    bool m_shut_down = false;
    std::optional<ssl::context> m_tls;
};

void lease::give_back(bool keep_alive) noexcept {
    if (m_conn) m_pool->give_back(m_origin, std::move(m_conn), keep_alive);
}

ssl::context& client_state::tls_context(const target& t) {
    if (m_tls) return *m_tls;
    ssl::context ctx(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    error_code ec;
    ctx.set_default_verify_paths(ec);
    if (!m_options.ca_file.empty()) {
        ctx.load_verify_file(m_options.ca_file.str(), ec);
        if (ec)
            throw error(error_kind::tls, t.url,
                        "cannot load the CA file '" + m_options.ca_file.str() + "': " + ec.message());
    }
    ctx.set_verify_mode(m_options.insecure ? ssl::verify_none : ssl::verify_peer);
    return m_tls.emplace(std::move(ctx));
}

awaitable<lease> client_state::acquire(const target& t, bool fresh) {
    auto self = shared_from_this();
    for (;;) {
        host& h = m_hosts[t.origin];
        while (!fresh && !h.idle.empty()) {
            auto c = std::move(h.idle.back());
            h.idle.pop_back();
            // A connection idle for a second or more is checked before use (a
            // peek, no I/O consumed): servers close idle ones on their own
            // schedule. A fresher one that turns out closed is caught by the
            // retry in `send`.
            auto idle = clock::now() - c->idle_since;
            if (idle < m_options.idle_timeout && (idle < std::chrono::seconds(1) || c->looks_alive()))
                co_return lease(self, t.origin, std::move(c), true);
            forget(h, *c);
        }
        if (room_for(h) || (m_open >= m_options.limit && evict_idle_except(t.origin) && room_for(h))) {
            ssl::context* tls = t.tls ? &tls_context(t) : nullptr;
            ++h.open;
            ++m_open;
            std::exception_ptr failed;
            auto c = std::make_unique<connection>(m_ex, tls);
            try {
                co_await bounded(m_options.connect_timeout, m_options.connect_timeout, t.url, "no connection",
                                 c->open(t));
            } catch (...) {
                failed = std::current_exception();
            }
            if (failed) {
                forget(m_hosts[t.origin], *c);
                wake_waiters();
                std::rethrow_exception(failed);
            }
            co_return lease(self, t.origin, std::move(c), false);
        }
        co_await wait_for_room();
    }
}

bool client_state::evict_idle_except(const std::string& origin) noexcept {
    for (auto& [key, h] : m_hosts) {
        if (key == origin || h.idle.empty()) continue;
        auto c = std::move(h.idle.front());
        h.idle.erase(h.idle.begin());
        forget(h, *c);
        return true;
    }
    return false;
}

awaitable<void> client_state::wait_for_room() {
    // A timer that never expires by itself: give_back cancels it to wake us.
    boost::asio::steady_timer signal(m_ex, clock::time_point::max());
    m_waiters.push_back(&signal);
    // Unlisted however the frame ends: resumed, or destroyed unresumed (the
    // io_context torn down), else give_back would cancel a dead timer.
    struct unlist {
        std::list<boost::asio::steady_timer*>& waiters;
        std::list<boost::asio::steady_timer*>::iterator me;
        ~unlist() { waiters.erase(me); }
    } guard{m_waiters, std::prev(m_waiters.end())};
    co_await signal.async_wait(as_tuple(use_awaitable));
    auto cs = co_await boost::asio::this_coro::cancellation_state;
    if (cs.cancelled() != boost::asio::cancellation_type::none)
        throw boost::system::system_error(boost::asio::error::operation_aborted);
}

void client_state::give_back(const std::string& origin, std::unique_ptr<connection> c,
                             bool keep_alive) noexcept {
    host& h = m_hosts[origin];
    // Bytes the server sent beyond the response (nothing is pipelined) would
    // be read as the answer to the next request on this connection.
    if (keep_alive && !m_shut_down && c->buffer.size() == 0) {
        c->idle_since = clock::now();
        h.idle.push_back(std::move(c));
        arm_sweeper();
    } else {
        forget(h, *c);
    }
    if (!m_waiters.empty()) wake_waiters();
}

void client_state::arm_sweeper() noexcept {
    if (m_sweeping) return;
    m_sweeping = true;
    m_sweeper.expires_after(m_options.idle_timeout);
    m_sweeper.async_wait([weak = weak_from_this()](const error_code&) {
        if (auto self = weak.lock()) self->sweep();
    });
}

/// Closes the connections idle for longer than `idle_timeout`, so an unused
/// client holds no sockets open for long.
void client_state::sweep() noexcept {
    m_sweeping = false;
    if (m_shut_down) return;
    bool any_left = false;
    auto now = clock::now();
    for (auto& [key, h] : m_hosts) {
        std::erase_if(h.idle, [&](auto& c) {
            if (now - c->idle_since < m_options.idle_timeout) return false;
            forget(h, *c);
            return true;
        });
        any_left = any_left || !h.idle.empty();
    }
    if (any_left) arm_sweeper();
    if (!m_waiters.empty()) wake_waiters();
}

void client_state::shut_down() noexcept {
    m_shut_down = true;
    for (auto& [key, h] : m_hosts) {
        for (auto& c : h.idle) forget(h, *c);
        h.idle.clear();
    }
    m_sweeper.cancel();
    wake_waiters();
}

// ---- one exchange ----------------------------------------------------------

/// An answered request: its connection, the parser holding the header, and
/// the body still to read.
class stream_state {
public:
    stream_state(std::shared_ptr<client_state> pool, lease l) : pool(std::move(pool)), conn(std::move(l)) {}

    /// Reads up to `size` body bytes into `data`; returns how many (possibly 0
    /// while framing is parsed). Gives the connection back at the end.
    awaitable<std::size_t> read_some(char* data, std::size_t size);
    awaitable<void> read_all(std::string& out);
    /// The exchange failed with `ec` while `doing` something: the connection
    /// is closed, and a cancellation stays a cancellation.
    [[noreturn]] void broken(const error_code& ec, std::string_view doing);
    /// Reads the body into nothing, so the connection can carry the next
    /// request (a redirect's body); memory does not grow with it.
    awaitable<void> discard_body() {
        std::array<char, 16 * 1024> sink;
        while (!parser->is_done()) co_await read_some(sink.data(), sink.size());
    }

    std::shared_ptr<client_state> pool;
    lease conn;
    /// An optional so that it can be remade after a 1xx interim response.
    std::optional<bhttp::response_parser<bhttp::buffer_body>> parser{std::in_place};
    response head;
    clock::time_point deadline{};
};

namespace {

error read_failure(const error_code& ec, const std::string& url, const client_options& o,
                   std::string_view while_) {
    if (ec == bhttp::error::header_limit)
        return error(
            error_kind::too_large, url,
            "the response header exceeds the limit of " + std::to_string(o.max_header_size) + " bytes");
    if (ec == bhttp::error::body_limit)
        return error(error_kind::too_large, url,
                     "the response body exceeds the limit of " + std::to_string(o.max_body_size) + " bytes");
    if (ec == bhttp::error::buffer_overflow)
        return error(error_kind::too_large, url, "a response line or chunk header is too long");
    if (ec == bhttp::error::end_of_stream)
        return error(error_kind::protocol, url, "the server closed the connection without a response");
    if (ec == bhttp::error::partial_message)
        return error(error_kind::protocol, url, "the connection closed in the middle of the response");
    if (ec == ssl::error::stream_truncated)
        return error(error_kind::protocol, url, "the TLS stream was cut off in the middle of the response");
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category())
        return error(error_kind::protocol, url, "malformed response (" + ec.message() + ")");
    return error(error_kind::protocol, url, std::string(while_) + " failed: " + ec.message());
}

bool closed_before_answering(const error_code& ec) {
    return ec == bhttp::error::end_of_stream || ec == boost::asio::error::connection_reset ||
           ec == boost::asio::error::eof || ec == ssl::error::stream_truncated ||
           ec == boost::asio::error::broken_pipe;
}

}  // namespace

void stream_state::broken(const error_code& ec, std::string_view doing) {
    conn.give_back(false);
    if (ec == boost::asio::error::operation_aborted) throw boost::system::system_error(ec);
    throw read_failure(ec, head.url, pool->options(), doing);
}

awaitable<std::size_t> stream_state::read_some(char* data, std::size_t size) {
    if (parser->is_done()) co_return 0;
    if (!conn.held()) throw error(error_kind::protocol, head.url, "the response body was already broken off");
    auto& body = parser->get().body();
    body.data = data;
    body.size = size;
    body.more = true;
    auto& c = conn.conn();
    auto [ec, n] = co_await c.with_stream(
        [&](auto& s) { return bhttp::async_read_some(s, c.buffer, *parser, as_tuple(use_awaitable)); });
    std::size_t got = size - body.size;
    if (ec && ec != bhttp::error::need_buffer) broken(ec, "reading the response body");
    if (parser->is_done()) conn.give_back(parser->get().keep_alive() && !parser->need_eof());
    co_return got;
}

awaitable<void> stream_state::read_all(std::string& out) {
    std::size_t filled = out.size();
    while (!parser->is_done()) {
        if (filled == out.size()) {
            auto known = parser->content_length_remaining();
            out.resize(filled + (known ? std::max<std::size_t>(static_cast<std::size_t>(*known), 1)
                                       : std::max<std::size_t>(filled, 16 * 1024)));
        }
        filled += co_await read_some(out.data() + filled, out.size() - filled);
    }
    out.resize(filled);
}

namespace {

struct request_spec {
    std::string method;
    std::string body;
    fields headers;
    /// For `stream`: the body is read in chunks, so no limit applies to it.
    bool streamed = false;
};

/// The request head and body as one buffer, for one write. Written by hand
/// rather than with Beast's serializer: the serializer's buffer sequences
/// cost more than the rest of the request together (measured with perf),
/// and a request head is a few lines.
std::string serialize_request(const request_spec& spec, const target& t, std::string_view user_agent) {
    if (!is_token(spec.method))
        throw std::invalid_argument("corun::http: malformed method '" + spec.method + "'");
    auto given = [&](std::string_view name) {
        return std::ranges::any_of(spec.headers, [&](const auto& f) { return iequals(f.first, name); });
    };
    std::string out;
    out.reserve(128 + t.path.size() + spec.body.size());
    auto field = [&](std::string_view name, std::string_view value) {
        out.append(name).append(": ").append(value).append("\r\n");
    };
    out.append(spec.method).append(" ").append(t.path).append(" HTTP/1.1\r\n");
    if (!given("host")) field("Host", t.host_header);
    if (!given("user-agent")) field("User-Agent", user_agent);
    for (const auto& [name, value] : spec.headers) {
        check_field(name, value);
        field(name, value);
    }
    bool has_body =
        !spec.body.empty() || spec.method == "POST" || spec.method == "PUT" || spec.method == "PATCH";
    if (has_body && !given("content-length")) field("Content-Length", std::to_string(spec.body.size()));
    out.append("\r\n");
    if (has_body) out.append(spec.body);
    return out;
}

}  // namespace

/// The whole life of one request: connection, retry of a stale one, redirects.
class request_runner {
public:
    request_runner(std::shared_ptr<client_state> pool, request_spec spec, std::string url)
        : m_pool(std::move(pool)), m_spec(std::move(spec)), m_url(std::move(url)) {}

    /// Follows redirects and returns the final response with its body unread.
    awaitable<std::unique_ptr<stream_state>> run();
    const std::string& current_url() const noexcept { return m_url; }

private:
    awaitable<std::unique_ptr<stream_state>> send(const target& t);
    awaitable<std::unique_ptr<stream_state>> exchange(lease l, const target& t, bool& stale);

    std::shared_ptr<client_state> m_pool;
    request_spec m_spec;
    std::string m_url;
};

awaitable<std::unique_ptr<stream_state>> request_runner::run() {
    const auto& o = m_pool->options();
    std::set<std::string> seen;
    target t = detail::parse_target(m_url);
    for (int hops = 0;; ++hops) {
        auto st = co_await send(t);
        auto location = st->head.header("location");
        if (o.max_redirects <= 0 || !is_redirect(st->head.status) || !location) co_return st;
        std::string next = detail::resolve_location(m_url, *location);
        co_await st->discard_body();
        if (hops == o.max_redirects)
            throw error(
                error_kind::redirects, m_url,
                "more than " + std::to_string(o.max_redirects) + " redirects (the next was " + next + ")");
        seen.insert(m_spec.method + ' ' + m_url);
        int status = st->head.status;
        if ((status == 303 && m_spec.method != "HEAD") ||
            ((status == 301 || status == 302) && m_spec.method == "POST")) {
            m_spec.method = "GET";
            m_spec.body.clear();
            std::erase_if(m_spec.headers, [](const auto& f) {
                return iequals(f.first, "content-length") || iequals(f.first, "content-type") ||
                       iequals(f.first, "transfer-encoding");
            });
        }
        if (seen.count(m_spec.method + ' ' + next))
            throw error(error_kind::redirects, m_url, "redirect loop: it leads back to " + next);
        target next_target = detail::parse_target(next);
        if (next_target.origin != t.origin) {
            // Credentials meant for one origin are not handed to another.
            std::erase_if(m_spec.headers, [](const auto& f) { return iequals(f.first, "authorization"); });
        }
        m_url = std::move(next);
        t = std::move(next_target);
    }
}

awaitable<std::unique_ptr<stream_state>> request_runner::send(const target& t) {
    for (int attempt = 0;; ++attempt) {
        lease l = co_await m_pool->acquire(t, attempt > 0);
        bool reused = l.reused();
        bool stale = false;
        std::exception_ptr failed;
        try {
            co_return co_await exchange(std::move(l), t, stale);
        } catch (const error&) {
            failed = std::current_exception();
        }
        if (!(stale && reused && attempt == 0 && idempotent(m_spec.method))) std::rethrow_exception(failed);
    }
}

awaitable<std::unique_ptr<stream_state>> request_runner::exchange(lease l, const target& t, bool& stale) {
    const auto& o = m_pool->options();
    auto st = std::make_unique<stream_state>(m_pool, std::move(l));
    st->head.url = t.url;
    connection& c = st->conn.conn();

    std::string req = serialize_request(m_spec, t, o.user_agent);

    auto [wec, written] = co_await c.with_stream([&](auto& s) {
        return boost::asio::async_write(s, boost::asio::buffer(req), as_tuple(use_awaitable));
    });
    if (wec) {
        stale = true;
        st->broken(wec, "sending the request");
    }

    // 1xx responses (100 Continue, 103 Early Hints …) are interim: skipped,
    // and the final response read after them (RFC 9110 §15.2).
    for (bool interim_seen = false;; interim_seen = true) {
        if (interim_seen) st->parser.emplace();
        auto& p = *st->parser;
        p.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(o.max_header_size, UINT32_MAX)));
        if (m_spec.streamed) {
            p.body_limit(boost::none);
        } else {
            p.body_limit(o.max_body_size);
        }
        if (m_spec.method == "HEAD") p.skip(true);
        auto [rec, got] = co_await c.with_stream(
            [&](auto& s) { return bhttp::async_read_header(s, c.buffer, p, as_tuple(use_awaitable)); });
        if (rec) {
            stale = !interim_seen && !p.got_some() && closed_before_answering(rec);
            st->broken(rec, "reading the response");
        }
        int code = static_cast<int>(p.get().result_int());
        if (code / 100 != 1 || code == 101) break;
    }
    auto& p = *st->parser;

    auto& msg = p.get();
    response& head = st->head;
    head.status = static_cast<int>(msg.result_int());
    head.reason = std::string(msg.reason());
    head.headers.reserve(16);
    for (const auto& f : msg) head.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    head.tls_verified = c.tls() && c.verified();
    // 101: the connection now speaks another protocol; never pooled.
    if (p.is_done()) st->conn.give_back(head.status != 101 && msg.keep_alive() && !p.need_eof());
    co_return st;
}

// ---- response, streamed_response, client -----------------------------------

std::optional<std::string_view> response::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return std::string_view(v);
    return std::nullopt;
}

void response::raise_for_status() const {
    if (ok()) return;
    throw error(error_kind::status, url, "the server answered " + std::to_string(status) + ' ' + reason);
}

streamed_response::streamed_response(std::unique_ptr<stream_state> state) : m_state(std::move(state)) {}
streamed_response::streamed_response(streamed_response&&) noexcept = default;
streamed_response& streamed_response::operator=(streamed_response&&) noexcept = default;
streamed_response::~streamed_response() = default;

const response& streamed_response::head() const noexcept {
    return m_state->head;
}

awaitable<std::string> streamed_response::read_chunk(std::size_t max) {
    std::string out(std::max<std::size_t>(max, 1), '\0');
    std::size_t got = 0;
    auto& st = *m_state;
    while (got == 0 && !st.parser->is_done()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(st.deadline - clock::now());
        got = co_await bounded(std::max(left, std::chrono::milliseconds(0)), st.pool->options().timeout,
                               st.head.url, "the body did not arrive", st.read_some(out.data(), out.size()));
    }
    out.resize(got);
    co_return out;
}

client::client(executor ex) : client(std::move(ex), client_options{}) {}
client::client(executor ex, client_options options)
    : m_state(std::make_shared<client_state>(std::move(ex), std::move(options))) {}
client::client(client&&) noexcept = default;
client& client::operator=(client&& other) noexcept {
    if (this != &other) {
        if (m_state) m_state->shut_down();
        m_state = std::move(other.m_state);
    }
    return *this;
}
client::~client() {
    if (m_state) m_state->shut_down();
}

const client_options& client::options() const noexcept {
    return m_state->options();
}
executor client::get_executor() const noexcept {
    return m_state->get_executor();
}

namespace {

template <class T>
awaitable<T> within_request_timeout(const client_options& o, const request_runner& runner, awaitable<T> op) {
    return bounded(o.timeout, o.timeout, runner.current_url(), "no complete response", std::move(op));
}

// Free coroutines holding the pool by value: a member coroutine would read
// `this->m_state` only when first resumed, which for a callback or
// `use_future` token is after `get` has returned and the client may be gone.
awaitable<response> run_request(std::shared_ptr<client_state> pool, std::string method, std::string url,
                                std::string body, fields headers) {
    const auto& o = pool->options();
    request_runner runner(pool, {std::move(method), std::move(body), std::move(headers)}, std::move(url));
    auto whole = [](request_runner& r) -> awaitable<response> {
        auto st = co_await r.run();
        co_await st->read_all(st->head.body);
        co_return std::move(st->head);
    };
    co_return co_await within_request_timeout(o, runner, whole(runner));
}

awaitable<streamed_response> run_stream(std::shared_ptr<client_state> pool, std::string method,
                                        std::string url, std::string body, fields headers) {
    const auto& o = pool->options();
    auto deadline = clock::now() + o.timeout;
    request_runner runner(pool, {std::move(method), std::move(body), std::move(headers), true},
                          std::move(url));
    auto st = co_await within_request_timeout(o, runner, runner.run());
    st->deadline = deadline;
    co_return streamed_response(std::move(st));
}

}  // namespace

awaitable<response> client::do_request(std::string method, std::string url, std::string body,
                                       fields headers) {
    return run_request(m_state, std::move(method), std::move(url), std::move(body), std::move(headers));
}

awaitable<streamed_response> client::stream(std::string method, std::string url, std::string body,
                                            fields headers) {
    return run_stream(m_state, std::move(method), std::move(url), std::move(body), std::move(headers));
}

awaitable<response> fetch(std::string url) {
    return fetch(std::move(url), client_options{});
}

awaitable<response> fetch(std::string url, client_options options) {
    client c(co_await this_executor(), std::move(options));
    co_return co_await c.get(std::move(url));
}

}  // namespace corun::http
