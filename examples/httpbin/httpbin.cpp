#include "httpbin.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstring>
#include <list>
#include <optional>
#include <random>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "certs.hpp"

namespace httpbin {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace urls = boost::urls;
using tcp = net::ip::tcp;
using boost::system::error_code;
using steady = std::chrono::steady_clock;
constexpr auto use_awaitable = net::use_awaitable;
constexpr auto as_tuple = net::as_tuple(net::use_awaitable);

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

namespace {

constexpr std::size_t header_limit = 64 * 1024;
constexpr std::size_t request_body_limit = std::size_t{16} << 20;
constexpr std::size_t drip_limit = std::size_t{10} << 20;  // httpbin.org's cap on /drip
constexpr double max_seconds = 10;                         // on /delay, and /drip's delay and duration
constexpr std::size_t write_batch = 16 * 1024;

std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
}

void fill_seeded(std::string& out, std::size_t n, std::uint64_t seed) {
    out.resize(n);
    for (auto& byte : out) byte = static_cast<char>(splitmix64(seed) & 0xff);
}

/// Unseeded bytes promise nothing but randomness: all eight bytes of each output are used.
void fill_random(std::string& out, std::size_t n, std::uint64_t& state) {
    out.resize(n);
    for (std::size_t i = 0; i < n; i += 8) {
        std::uint64_t z = splitmix64(state);
        std::memcpy(out.data() + i, &z, std::min<std::size_t>(8, n - i));
    }
}

}  // namespace

std::string seeded_bytes(std::size_t n, std::uint64_t seed) {
    std::string out;
    fill_seeded(out, n, seed);
    return out;
}

struct connection_base;

struct server_state {
    server_state(net::any_io_executor ex, options o)
        : strand(net::make_strand(ex)), opts(std::move(o)), acceptor(strand), retry_timer(strand) {}

    net::strand<net::any_io_executor> strand;
    options opts;
    tcp::acceptor acceptor;
    std::optional<net::ssl::context> tls;
    std::uint16_t port = 0;
    std::string base_url;
    std::atomic<std::size_t> accepted{0};
    std::uint64_t seed_base = 0;
    // Touched on the strand only.
    net::steady_timer retry_timer;
    bool stopped = false;
    std::list<connection_base*> open;

    void close_all();
};

/// What every connection owns, whatever its stream: reused across its requests.
struct connection_base {
    connection_base(std::shared_ptr<server_state> s, const net::any_io_executor& ex)
        : st(std::move(s)), timer(ex) {}
    virtual ~connection_base() = default;
    virtual void close() = 0;

    /// Suspends until `t`; false when the server stopped meanwhile (or had already).
    net::awaitable<bool> wait_until(steady::time_point t) {
        if (st->stopped) co_return false;
        if (t <= steady::now()) co_return true;
        timer.expires_at(t);
        auto [ec] = co_await timer.async_wait(as_tuple);
        co_return !ec && !st->stopped;
    }
    net::awaitable<bool> wait_for(steady::duration d) { return wait_until(steady::now() + d); }

    std::shared_ptr<server_state> st;
    net::steady_timer timer;
    beast::flat_buffer buffer;
    std::string body;  // the response body's storage, moved into each response and back
    std::string wire;  // chunked encoding being written
    std::string origin;
    std::uint64_t rng = 0;
};

template <class Stream>
struct connection final : connection_base {
    template <class... Args>
    connection(std::shared_ptr<server_state> s, tcp::socket sock, Args&... args)
        : connection_base(std::move(s), sock.get_executor()), stream(std::move(sock), args...) {}

    void close() override {
        error_code ignored;
        beast::get_lowest_layer(stream).close(ignored);
        timer.cancel();
    }

    Stream stream;
};

void server_state::close_all() {
    if (stopped) return;
    stopped = true;
    error_code ignored;
    acceptor.close(ignored);
    retry_timer.cancel();
    for (auto* c : open) c->close();
}

namespace {

// ---- parsing -------------------------------------------------------------

std::string_view sv(boost::core::string_view s) {
    return {s.data(), s.size()};
}

/// Digits only; saturates instead of overflowing (a huge n is capped like any other).
std::optional<std::uint64_t> parse_count(std::string_view s) {
    if (s.empty() || s.size() > 64) return std::nullopt;
    std::uint64_t v = 0;
    for (char ch : s) {
        if (ch < '0' || ch > '9') return std::nullopt;
        unsigned d = static_cast<unsigned>(ch - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    return v;
}

std::optional<double> parse_seconds(std::string_view s) {
    double v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v) || v < 0) return std::nullopt;
    return v;
}

std::optional<unsigned> parse_status(std::string_view s) {
    auto v = parse_count(s);
    if (!v || *v < 200 || *v > 599) return std::nullopt;
    return static_cast<unsigned>(*v);
}

std::optional<std::string> param(urls::url_view u, std::string_view key) {
    auto ps = u.params();
    auto it = ps.find(key);
    if (it == ps.end()) return std::nullopt;
    return (*it).value;
}

steady::duration seconds(double s) {
    return std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(s));
}

// ---- JSON ----------------------------------------------------------------

/// Length of the valid UTF-8 sequence starting at s[i], or 0. By hand, as no
/// library at hand both escapes and repairs the arbitrary bytes a client may send.
std::size_t utf8_length(std::string_view s, std::size_t i) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = b(i);
    std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || c > 0xf4 || i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((b(i + k) & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && b(i + 1) < 0xa0) return 0;  // overlong
    if (c == 0xed && b(i + 1) > 0x9f) return 0;  // surrogate
    if (c == 0xf0 && b(i + 1) < 0x90) return 0;  // overlong
    if (c == 0xf4 && b(i + 1) > 0x8f) return 0;  // beyond U+10FFFF
    return n;
}

/// Appends `s` as a JSON string; bytes that are not UTF-8 become U+FFFD.
void append_json(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (std::size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            std::size_t n = utf8_length(s, i);
            if (n == 0) {
                out += "\\ufffd";
                ++i;
            } else {
                out.append(s.substr(i, n));
                i += n;
            }
            continue;
        }
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        } else {
            out += static_cast<char>(c);
        }
        ++i;
    }
    out += '"';
}

/// Appends {"key": value, ...}; a key given more than once maps to an array
/// (args, like httpbin.org) or to its values joined by "," (headers, like HTTP).
template <class Range, class Key, class Value>
void append_json_object(std::string& out, const Range& items, Key key_of, Value value_of, bool as_array) {
    out += '{';
    bool first = true;
    for (auto it = items.begin(); it != items.end(); ++it) {
        auto key = key_of(*it);
        bool seen = false;
        for (auto prev = items.begin(); prev != it && !seen; ++prev) seen = key_of(*prev) == key;
        if (seen) continue;
        std::size_t count = 0;
        for (auto same = it; same != items.end(); ++same) count += key_of(*same) == key;
        if (!first) out += ", ";
        first = false;
        append_json(out, key);
        out += ": ";
        if (count == 1) {
            append_json(out, value_of(*it));
            continue;
        }
        std::string joined;
        if (as_array) out += '[';
        for (auto same = it; same != items.end(); ++same) {
            if (key_of(*same) != key) continue;
            if (as_array) {
                if (same != it) out += ", ";
                append_json(out, value_of(*same));
            } else {
                if (same != it) joined += ',';
                joined += value_of(*same);
            }
        }
        if (as_array) out += ']';
        if (!as_array) append_json(out, joined);
    }
    out += '}';
}

/// The body of /get (and of /delay, /anything, /post).
void append_echo(std::string& out, const connection_base& c, const request& req, urls::url_view u,
                 bool with_body) {
    out += "{\n  \"args\": ";
    auto params = u.params();
    append_json_object(
        out, params, [](const urls::param& p) { return p.key; }, [](const urls::param& p) { return p.value; },
        true);
    if (with_body) {
        out += ",\n  \"data\": ";
        append_json(out, req.body());
    }
    out += ",\n  \"headers\": ";
    append_json_object(
        out, req, [](const auto& f) { return sv(f.name_string()); },
        [](const auto& f) { return sv(f.value()); }, false);
    if (with_body) {
        out += ",\n  \"method\": ";
        append_json(out, sv(req.method_string()));
    }
    out += ",\n  \"origin\": ";
    append_json(out, c.origin);
    std::string url = c.st->opts.tls ? "https://" : "http://";
    auto host = req[http::field::host];
    url += host.empty() ? std::string_view(c.st->base_url).substr(url.size()) : sv(host);
    url += sv(req.target());
    out += ",\n  \"url\": ";
    append_json(out, url);
    out += "\n}\n";
}

constexpr std::string_view index_html = R"(<!DOCTYPE html>
<html><head><title>corun-httpbin</title></head><body>
<h1>corun-httpbin</h1>
<p>A loopback stand-in for httpbin.org.</p>
<ul>
<li><code>/bytes/:n?seed=S</code> n bytes (at most 102400); reproducible with a seed</li>
<li><code>/stream-bytes/:n?seed=S&amp;chunk_size=C</code> the same, chunked</li>
<li><code>/delay/:s</code> answers after s seconds (at most 10)</li>
<li><code>/status/:code</code> answers with that status</li>
<li><code>/redirect/:n</code> n redirects, then /get</li>
<li><code>/redirect-to?url=U&amp;status_code=C</code> redirects to U</li>
<li><code>/get</code> echoes the query and the headers as JSON</li>
<li><code>/anything</code>, <code>/post</code> the same plus the method and the body</li>
<li><code>/drip?numbytes=N&amp;duration=S&amp;delay=S&amp;code=C</code> N bytes spread over S seconds</li>
</ul></body></html>
)";

// ---- routing -------------------------------------------------------------

/// How a request is answered: plain responses are complete once routed; the
/// others need the connection's timer or several writes.
struct plan {
    enum kind_type { plain, delayed, stream, drip } kind = plain;
    double delay = 0;            // delayed, drip: seconds before the response
    double duration = 0;         // drip: seconds the body is spread over
    std::uint64_t numbytes = 0;  // drip
    std::size_t chunk_size = 0;  // stream
};

void set_text(response& res, http::status status, std::string_view text) {
    res.result(status);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body().assign(text);
}

void set_json(response& res) {
    res.set(http::field::content_type, "application/json");
}

bool method_is(const request& req, std::initializer_list<http::verb> allowed, response& res,
               std::string_view allow) {
    if (std::find(allowed.begin(), allowed.end(), req.method()) != allowed.end()) return true;
    set_text(res, http::status::method_not_allowed, "method not allowed\n");
    res.set(http::field::allow, allow);
    return false;
}

/// Fills `res` (and c.body through it) for the request; returns what remains to do.
plan route(connection_base& c, const request& req, response& res) {
    auto bad = [&](std::string_view why) {
        set_text(res, http::status::bad_request, why);
        return plan{};
    };
    auto parsed = urls::parse_origin_form(req.target());
    if (!parsed) return bad("malformed request target\n");
    urls::url_view u = *parsed;
    std::array<std::string, 2> seg;
    std::size_t nseg = 0;
    for (auto s : u.segments()) {
        if (nseg == seg.size()) {
            nseg = seg.size() + 1;
            break;
        }
        seg[nseg++] = std::move(s);
    }
    std::string_view name = nseg > 0 ? std::string_view(seg[0]) : std::string_view();
    std::string_view arg = nseg > 1 ? std::string_view(seg[1]) : std::string_view();

    if (const auto& extra = c.st->opts.extra_route;
        extra && (req.method() == http::verb::get || req.method() == http::verb::head)) {
        if (auto text = extra(std::string_view(u.encoded_path()))) {
            set_text(res, http::status::ok, *text);
            return {};
        }
    }
    if (nseg == 0) {
        res.set(http::field::content_type, "text/html; charset=utf-8");
        res.body().assign(index_html);
        return {};
    }
    if (nseg == 1 && (name == "get" || name == "anything" || name == "post")) {
        bool with_body = name != "get";
        if (name == "get" && !method_is(req, {http::verb::get, http::verb::head}, res, "GET, HEAD"))
            return {};
        if (name == "post" && !method_is(req, {http::verb::post}, res, "POST")) return {};
        set_json(res);
        append_echo(res.body(), c, req, u, with_body);
        return {};
    }
    if (nseg == 2 && (name == "bytes" || name == "stream-bytes")) {
        auto n = parse_count(arg);
        if (!n) return bad("n must be a non-negative integer\n");
        auto count = static_cast<std::size_t>(std::min<std::uint64_t>(*n, max_bytes));
        if (auto s = param(u, "seed")) {
            auto seed = parse_count(*s);
            if (!seed) return bad("seed must be a non-negative integer\n");
            fill_seeded(res.body(), count, *seed);
        } else {
            fill_random(res.body(), count, c.rng);
        }
        res.set(http::field::content_type, "application/octet-stream");
        if (name == "bytes") return {};
        plan p{.kind = plan::stream, .chunk_size = 10240};
        if (auto s = param(u, "chunk_size")) {
            auto v = parse_count(*s);
            if (!v) return bad("chunk_size must be a non-negative integer\n");
            p.chunk_size = static_cast<std::size_t>(std::clamp<std::uint64_t>(*v, 1, max_bytes));
        }
        return p;
    }
    if (nseg == 2 && name == "delay") {
        auto s = parse_seconds(arg);
        if (!s) return bad("the delay must be a non-negative number of seconds\n");
        set_json(res);
        append_echo(res.body(), c, req, u, false);
        return plan{.kind = plan::delayed, .delay = std::min(*s, max_seconds)};
    }
    if (nseg == 2 && name == "status") {
        auto code = parse_status(arg);
        if (!code) return bad("the status must be an integer from 200 to 599\n");
        res.result(*code);
        if (http::int_to_status(*code) == http::status::unknown) res.reason("Unknown");
        if (*code == 301 || *code == 302 || *code == 303 || *code == 307 || *code == 308)
            res.set(http::field::location, "/redirect/1");
        return {};
    }
    if (nseg == 2 && name == "redirect") {
        auto n = parse_count(arg);
        if (!n || *n == 0) return bad("n must be a positive integer\n");
        res.result(http::status::found);
        res.set(http::field::location, *n == 1 ? std::string("/get") : "/redirect/" + std::to_string(*n - 1));
        return {};
    }
    if (nseg == 1 && name == "redirect-to") {
        auto url = param(u, "url");
        if (!url || url->empty()) return bad("the url parameter is missing\n");
        if (std::any_of(url->begin(), url->end(),
                        [](char ch) { return static_cast<unsigned char>(ch) < 0x20; }))
            return bad("the url parameter holds control characters\n");
        unsigned status = 302;
        if (auto s = param(u, "status_code")) {
            auto v = parse_count(*s);
            if (!v) return bad("status_code must be an integer\n");
            if (*v >= 300 && *v < 400) status = static_cast<unsigned>(*v);
        }
        res.result(status);
        res.set(http::field::location, *url);
        return {};
    }
    if (nseg == 1 && name == "drip") {
        plan p{.kind = plan::drip, .delay = 2, .duration = 2, .numbytes = 10};
        unsigned code = 200;
        if (auto s = param(u, "numbytes")) {
            auto v = parse_count(*s);
            if (!v || *v == 0) return bad("numbytes must be a positive integer\n");
            p.numbytes = std::min<std::uint64_t>(*v, drip_limit);
        }
        for (auto [key, out] : {std::pair{"duration", &p.duration}, std::pair{"delay", &p.delay}}) {
            if (auto s = param(u, key)) {
                auto v = parse_seconds(*s);
                if (!v) return bad("duration and delay must be non-negative numbers of seconds\n");
                *out = std::min(*v, max_seconds);
            }
        }
        if (auto s = param(u, "code")) {
            auto v = parse_status(*s);
            if (!v) return bad("code must be an integer from 200 to 599\n");
            code = *v;
        }
        res.result(code);
        res.set(http::field::content_type, "application/octet-stream");
        return p;
    }
    set_text(res, http::status::not_found, "not found\n");
    return {};
}

// ---- writing -------------------------------------------------------------

response start_response(connection_base& c, unsigned version, bool keep_alive) {
    response res{http::status::ok, version};
    res.body() = std::move(c.body);
    res.body().clear();
    res.set(http::field::server, "corun-httpbin");
    res.keep_alive(keep_alive);
    return res;
}

template <class Stream>
net::awaitable<void> send(connection<Stream>& c, response& res, bool head) {
    res.prepare_payload();
    if (head) res.body().clear();  // Content-Length stays that of the GET
    co_await http::async_write(c.stream, res, use_awaitable);
    c.body = std::move(res.body());
}

/// Sends the header of `res` alone, with either Content-Length or chunked.
template <class Stream>
net::awaitable<void> send_header(connection<Stream>& c, const response& res,
                                 std::optional<std::uint64_t> length) {
    http::response<http::empty_body> head{res.base()};
    if (length)
        head.content_length(*length);
    else
        head.chunked(true);
    http::response_serializer<http::empty_body> sr{head};
    co_await http::async_write_header(c.stream, sr, use_awaitable);
}

void append_chunk(std::string& wire, std::string_view data) {
    char size[20];
    auto end = std::to_chars(size, size + sizeof size, data.size(), 16).ptr;
    wire.append(size, end);
    wire += "\r\n";
    wire += data;
    wire += "\r\n";
}

/// The chunked encoding is formatted here rather than with http::make_chunk so
/// that many small chunks go out in one write instead of one write each.
template <class Stream>
net::awaitable<void> send_chunks(connection<Stream>& c, std::string_view data, std::size_t chunk_size) {
    c.wire.clear();
    while (!data.empty()) {
        std::size_t k = std::min(chunk_size, data.size());
        append_chunk(c.wire, data.substr(0, k));
        data.remove_prefix(k);
        if (c.wire.size() >= write_batch) {
            co_await net::async_write(c.stream, net::buffer(c.wire), use_awaitable);
            c.wire.clear();
        }
    }
    c.wire += "0\r\n\r\n";
    co_await net::async_write(c.stream, net::buffer(c.wire), use_awaitable);
}

/// Byte i of n goes out at i * duration / n after the start; the bytes due
/// together go in one write.
template <class Stream>
net::awaitable<bool> send_drip(connection<Stream>& c, std::uint64_t n, double duration) {
    static const std::string stars(write_batch, '*');
    auto start = steady::now();
    std::uint64_t sent = 0;
    while (sent < n) {
        double elapsed = std::chrono::duration<double>(steady::now() - start).count();
        std::uint64_t due = n;
        if (duration > 0)
            due = std::min<std::uint64_t>(n, static_cast<std::uint64_t>(elapsed / duration * n) + 1);
        while (sent < due) {
            std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(due - sent, stars.size()));
            co_await net::async_write(c.stream, net::buffer(stars.data(), k), use_awaitable);
            sent += k;
        }
        if (sent < n && !co_await c.wait_until(start + seconds(duration * static_cast<double>(sent) / n)))
            co_return false;
    }
    co_return true;
}

/// Answers one request; false when the connection must close afterwards.
template <class Stream>
net::awaitable<bool> respond(connection<Stream>& c, const request& req) {
    if (!co_await c.wait_for(c.st->opts.latency)) co_return false;
    bool keep_alive = req.keep_alive();
    bool head = req.method() == http::verb::head;
    response res = start_response(c, req.version(), keep_alive);
    plan p = route(c, req, res);
    switch (p.kind) {
        case plan::plain:
            co_await send(c, res, head);
            break;
        case plan::delayed:
            if (!co_await c.wait_for(seconds(p.delay))) co_return false;
            co_await send(c, res, head);
            break;
        case plan::stream: {
            co_await send_header(c, res, std::nullopt);
            if (!head) co_await send_chunks(c, res.body(), p.chunk_size);
            c.body = std::move(res.body());
            break;
        }
        case plan::drip:
            if (!co_await c.wait_for(seconds(p.delay))) co_return false;
            co_await send_header(c, res, p.numbytes);
            if (!head && !co_await send_drip(c, p.numbytes, p.duration)) co_return false;
            break;
    }
    co_return keep_alive;
}

bool is_parse_error(const error_code& ec) {
    return ec.category() == http::make_error_code(http::error::bad_method).category() &&
           ec != http::error::end_of_stream && ec != http::error::partial_message;
}

/// A request that could not be parsed: the answer, then the connection closes
/// (what remains in the buffer cannot be trusted to start a request).
template <class Stream>
net::awaitable<void> reject(connection<Stream>& c, const error_code& ec) {
    response res = start_response(c, 11, false);
    if (ec == http::error::header_limit)
        set_text(res, http::status::request_header_fields_too_large, "request header too large\n");
    else if (ec == http::error::body_limit)
        set_text(res, http::status::payload_too_large, "request body too large\n");
    else
        set_text(res, http::status::bad_request, "malformed request\n");
    co_await send(c, res, false);
}

/// Reads requests and answers them until either side ends the connection.
template <class Stream>
net::awaitable<void> serve_requests(connection<Stream>& c) {
    while (!c.st->stopped) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(header_limit);
        parser.body_limit(request_body_limit);
        auto [ec, n] = co_await http::async_read_header(c.stream, c.buffer, parser, as_tuple);
        if (!ec && !parser.is_done()) {
            if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
                http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
                co_await http::async_write(c.stream, go_on, use_awaitable);
            }
            std::tie(ec, n) = co_await http::async_read(c.stream, c.buffer, parser, as_tuple);
        }
        if (ec) {
            if (is_parse_error(ec) && !c.st->stopped) co_await reject(c, ec);
            co_return;
        }
        if (!co_await respond(c, parser.get())) co_return;
    }
}

/// Ends the connection politely: TLS close_notify (bounded: a peer that never
/// answers it is cut off), then FIN.
template <class Stream>
net::awaitable<void> close_politely(std::shared_ptr<connection<Stream>> c) {
    error_code ignored;
    if constexpr (!std::is_same_v<Stream, tcp::socket>) {
        c->timer.expires_after(std::chrono::seconds(1));
        c->timer.async_wait([c](error_code ec) {
            if (!ec) c->close();
        });
        co_await c->stream.async_shutdown(net::redirect_error(use_awaitable, ignored));
        c->timer.cancel();
    }
    beast::get_lowest_layer(c->stream).shutdown(tcp::socket::shutdown_send, ignored);
    c->close();
}

/// Removes a connection from the open list when its coroutine ends.
struct registration {
    registration(server_state& s, connection_base* c) : st(s), it(s.open.insert(s.open.end(), c)) {}
    ~registration() { st.open.erase(it); }
    registration(const registration&) = delete;
    registration& operator=(const registration&) = delete;
    server_state& st;
    std::list<connection_base*>::iterator it;
};

template <class Stream, class... Args>
net::awaitable<void> session(std::shared_ptr<server_state> st, tcp::socket sock, Args&... args) {
    if (st->stopped) co_return;
    error_code ec;
    auto peer = sock.remote_endpoint(ec);
    auto c = std::make_shared<connection<Stream>>(st, std::move(sock), args...);
    registration reg(*st, c.get());
    c->origin = ec ? std::string() : peer.address().to_string();
    c->rng = st->seed_base + st->accepted.load(std::memory_order_relaxed) * 0x9e3779b97f4a7c15;
    bool polite = false;
    try {
        if constexpr (!std::is_same_v<Stream, tcp::socket>)
            co_await c->stream.async_handshake(net::ssl::stream_base::server, use_awaitable);
        co_await serve_requests(*c);
        polite = !st->stopped;
    } catch (const std::exception&) {
        // The client went away, reset, or sent what TLS or HTTP could not
        // make sense of: this connection ends, the server carries on.
    }
    if (polite) {
        try {
            co_await close_politely(c);
        } catch (const std::exception&) {
        }
    }
    c->close();
}

net::awaitable<void> accept_loop(std::shared_ptr<server_state> st) {
    while (!st->stopped) {
        auto [ec, sock] = co_await st->acceptor.async_accept(as_tuple);
        if (st->stopped) co_return;
        if (ec) {
            // Out of descriptors and the like: pause rather than spin.
            st->retry_timer.expires_after(std::chrono::milliseconds(50));
            co_await st->retry_timer.async_wait(as_tuple);
            continue;
        }
        st->accepted.fetch_add(1, std::memory_order_relaxed);
        sock.set_option(tcp::no_delay(true), ec);
        if (st->tls)
            net::co_spawn(st->strand, session<beast::ssl_stream<tcp::socket>>(st, std::move(sock), *st->tls),
                          net::detached);
        else
            net::co_spawn(st->strand, session<tcp::socket>(st, std::move(sock)), net::detached);
    }
}

std::string host_for_url(const std::string& address) {
    error_code ec;
    auto ip = net::ip::make_address(address, ec);
    return !ec && ip.is_v6() ? "[" + address + "]" : address;
}

void set_up_tls(server_state& st) {
    const options& o = st.opts;
    if (o.cert_file.empty() != o.key_file.empty())
        throw std::invalid_argument("httpbin: cert_file and key_file go together");
    certs::identity id;
    if (!o.cert_file.empty()) {
        id = {.key_pem = certs::read_file(o.key_file), .cert_pem = certs::read_file(o.cert_file)};
    } else {
        certs::cert_options co{.dns_names = {"localhost"}, .ip_addresses = {"127.0.0.1", "::1"}};
        error_code ec;
        auto ip = net::ip::make_address(o.address, ec);
        if (ec && o.address != "localhost")
            co.dns_names.push_back(o.address);
        else if (!ec && !ip.is_unspecified() && !ip.is_loopback())
            co.ip_addresses.push_back(ip.to_string());
        id = certs::make_self_signed(co);
    }
    st.tls.emplace(net::ssl::context::tls_server);
    st.tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                        net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                        net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
    error_code ec;
    st.tls->use_certificate_chain(net::buffer(id.cert_pem), ec);
    if (!ec) st.tls->use_private_key(net::buffer(id.key_pem), net::ssl::context::pem, ec);
    if (ec) {
        std::string what = o.cert_file.empty()
                               ? "the generated certificate"
                               : "the certificate " + o.cert_file + " with the key " + o.key_file;
        throw std::runtime_error("httpbin: cannot serve " + what + ": " + ec.message());
    }
    if (!o.write_cert.empty()) certs::write_file(o.write_cert, id.cert_pem);
}

}  // namespace

// ---- server --------------------------------------------------------------

server::server(net::any_io_executor ex, options opts)
    : m_state(std::make_shared<server_state>(ex, std::move(opts))) {
    server_state& st = *m_state;
    if (st.opts.tls) set_up_tls(st);
    const std::string where = host_for_url(st.opts.address) + ":" + std::to_string(st.opts.port);
    error_code ec;
    tcp::resolver resolver(ex);
    auto results = resolver.resolve(st.opts.address, std::to_string(st.opts.port),
                                    tcp::resolver::numeric_service | tcp::resolver::passive, ec);
    if (ec || results.empty())
        throw std::runtime_error("httpbin: cannot resolve " + where + ": " + ec.message());
    tcp::endpoint ep = results.begin()->endpoint();
    st.acceptor.open(ep.protocol(), ec);
    if (!ec) st.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) st.acceptor.bind(ep, ec);
    if (!ec) st.acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error("httpbin: cannot listen on " + where + ": " + ec.message());
    st.port = st.acceptor.local_endpoint().port();
    st.base_url = (st.opts.tls ? "https://" : "http://") + host_for_url(st.opts.address) + ":" +
                  std::to_string(st.port);
    st.seed_base = (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
    net::co_spawn(st.strand, accept_loop(m_state), net::detached);
}

server::~server() {
    stop();
}

std::uint16_t server::port() const {
    return m_state->port;
}
std::string server::base_url() const {
    return m_state->base_url;
}
std::size_t server::connections_accepted() const {
    return m_state->accepted.load();
}

void server::stop() {
    net::dispatch(m_state->strand, [st = m_state] { st->close_all(); });
}

struct background_server::impl {
    explicit impl(options opts) : srv(io.get_executor(), std::move(opts)), thread([this] { io.run(); }) {}
    ~impl() {
        srv.stop();
        thread.join();
    }
    net::io_context io{1};
    server srv;
    std::thread thread;
};

background_server::background_server(options opts) : m_impl(std::make_unique<impl>(std::move(opts))) {}
background_server::~background_server() = default;

std::uint16_t background_server::port() const {
    return m_impl->srv.port();
}
std::string background_server::base_url() const {
    return m_impl->srv.base_url();
}
std::size_t background_server::connections_accepted() const {
    return m_impl->srv.connections_accepted();
}

}  // namespace httpbin
