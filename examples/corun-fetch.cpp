// corun-fetch — the notebook's student task as a small load tool: fetch a URL
// n times one after another, then concurrently on one event loop, then over a
// process pool, and compare. Flags follow hey, oha and wrk. With no URL it
// serves itself from an embedded httpbin on loopback, so it runs offline.
#include <corun/corun.hpp>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "httpbin/httpbin.hpp"
#include "json_text.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr const char* usage_line =
    "usage: corun-fetch [URL] [-n N] [-c C] [--mode serial|concurrent|pool|all] [--cacert FILE] "
    "[--insecure] [--cert FILE [--key FILE]] [--proxy URL] [--no-env-proxy] [--[no-]compressed] "
    "[--timeout SECONDS] [--json]";

constexpr const char* help_text = R"(
Fetches URL N times in each mode and compares the modes:
  serial       one request after another, on one client
  concurrent   coroutines on one event loop, at most C in flight
  pool         one task per request on a process pool, each worker fetching
  all          the three in turn, and the comparison (the default)
With no URL, an embedded httpbin on loopback serves /bytes/1024 with 100 ms latency.

  -n N                requests per mode (default 10)
  -c C                requests in flight at once (default 10)
  --mode MODE         serial, concurrent, pool or all
  --cacert FILE       trust the CA certificates in FILE (PEM) besides the system's
  -k, --insecure      do not verify TLS certificates or host names
  --cert FILE         present the client certificate in FILE (PEM) to servers that ask
  --key FILE          its private key (PEM); without it, read from the --cert file
  --proxy URL         send every request through the proxy http://[user:password@]host:port
  --no-env-proxy      ignore HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY (either
                      case); without --proxy they are honoured, but never for the
                      embedded httpbin
  --compressed        ask for gzip, deflate or br and decode the body (the default)
  --no-compressed     ask for no encoding and decode nothing
  -t, --timeout SECS  limit on each request (default 20)
  --json              print one JSON object instead of the table

Exit status (a request fails when no response arrives: a connection, TLS,
protocol or timeout error; a response of any status is an answer):
  0  every request of every mode got a response
  1  nothing to measure: every request of the first mode failed before reaching
     a server (bad URL, unknown host, connection refused), or another fatal error
  2  a usage error
  3  some requests failed (over all the modes run)
  4  every request failed
)";

/// The exit statuses that --help lists.
enum exit_status : int {
    exit_ok = 0,
    exit_fatal = 1,
    exit_usage = 2,
    exit_some_failed = 3,
    exit_all_failed = 4,
};

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct settings {
    std::string url = {};
    std::size_t n = 10;
    std::size_t c = 10;
    std::string mode = "all";
    std::string ca_file = {};
    bool insecure = false;
    std::string cert_file = {};
    std::string key_file = {};
    std::string proxy = {};
    bool env_proxy = true;
    bool compressed = true;
    double timeout_s = 20;
    bool json = false;
    bool help = false;
};

std::size_t parse_count(std::string_view flag, std::string_view text) {
    std::size_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || v == 0)
        throw usage_error(std::string(flag) + " needs a positive whole number, not '" + std::string(text) +
                          "'");
    return v;
}

double parse_seconds(std::string_view flag, std::string_view text) {
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || !(v > 0) || v > 86400)
        throw usage_error(std::string(flag) + " needs a number of seconds above 0, not '" +
                          std::string(text) + "'");
    return v;
}

/// `value`, if it fits in the `client_options` string field of type `Field`.
template <class Field>
std::string fitting(std::string_view flag, std::string_view value) {
    try {
        [[maybe_unused]] const Field field{value};
    } catch (const std::length_error& e) {
        throw usage_error(std::string(flag) + ": " + e.what());
    }
    return std::string(value);
}

using path_field = decltype(corun::http::client_options::ca_file);

std::string readable_file(std::string_view flag, std::string_view path) {
    std::string p = fitting<path_field>(flag, path);
    if (access(p.c_str(), R_OK) != 0)
        throw usage_error("cannot read the " + std::string(flag) + " file '" + p + "'");
    return p;
}

settings parse_args(int argc, char** argv) {
    settings s;
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view flag = args[i];
        std::optional<std::string_view> attached;  // --flag=value
        if (flag.starts_with("--")) {
            if (const auto eq = flag.find('='); eq != std::string_view::npos) {
                attached = flag.substr(eq + 1);
                flag = flag.substr(0, eq);
            }
        }
        bool took_value = false;
        const auto value = [&]() -> std::string_view {
            took_value = true;
            if (attached) return *attached;
            if (++i >= args.size()) throw usage_error(std::string(flag) + " needs a value");
            return args[i];
        };
        if (flag == "-n") {
            s.n = parse_count(flag, value());
        } else if (flag == "-c") {
            s.c = parse_count(flag, value());
        } else if (flag == "--mode") {
            s.mode = value();
            if (s.mode != "serial" && s.mode != "concurrent" && s.mode != "pool" && s.mode != "all")
                throw usage_error("unknown mode '" + s.mode + "'");
        } else if (flag == "--cacert") {
            s.ca_file = readable_file(flag, value());
        } else if (flag == "-k" || flag == "--insecure") {
            s.insecure = true;
        } else if (flag == "--cert") {
            s.cert_file = readable_file(flag, value());
        } else if (flag == "--key") {
            s.key_file = readable_file(flag, value());
        } else if (flag == "--proxy") {
            s.proxy = fitting<decltype(corun::http::client_options::proxy)>(flag, value());
            if (s.proxy.empty()) throw usage_error("--proxy needs a URL");
        } else if (flag == "--no-env-proxy") {
            s.env_proxy = false;
        } else if (flag == "--compressed") {
            s.compressed = true;
        } else if (flag == "--no-compressed") {
            s.compressed = false;
        } else if (flag == "-t" || flag == "--timeout") {
            s.timeout_s = parse_seconds(flag, value());
        } else if (flag == "--json") {
            s.json = true;
        } else if (flag == "-h" || flag == "--help") {
            s.help = true;
        } else if (flag.size() > 1 && flag.starts_with('-')) {
            throw usage_error("unknown option " + std::string(flag));
        } else if (s.url.empty()) {
            s.url = flag;
        } else {
            throw usage_error("more than one URL given");
        }
        if (attached && !took_value) throw usage_error(std::string(flag) + " takes no value");
    }
    if (!s.key_file.empty() && s.cert_file.empty()) throw usage_error("--key needs --cert");
    return s;
}

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// What every request needs to know; it crosses to the pool's workers.
struct job {
    std::string url = {};
    std::string ca_file = {};
    bool insecure = false;
    std::string cert_file = {};
    std::string key_file = {};
    std::string proxy = {};
    bool trust_env = false;
    bool decompress = true;
    std::int64_t timeout_ms = 0;

    template <class Archive>
    void serialize(Archive& archive) {
        archive(url, ca_file, insecure, cert_file, key_file, proxy, trust_env, decompress, timeout_ms);
    }

    corun::http::client_options options(std::size_t connections) const {
        const std::chrono::milliseconds timeout{timeout_ms};
        return {.limit = connections,
                .connect_timeout = timeout,
                .timeout = timeout,
                .decompress = decompress,
                .ca_file = ca_file,
                .cert_file = cert_file,
                .key_file = key_file,
                .insecure = insecure,
                .proxy = proxy,
                .trust_env = trust_env,
                .user_agent = "corun-fetch"};
    }
};

/// One request's outcome. A pool worker sends it back through cereal.
struct sample {
    int status = 0;  ///< 0 when no response arrived
    std::uint64_t bytes = 0;
    double latency_s = 0;
    bool tls_unverified = false;  ///< an HTTPS response whose certificate did not verify
    std::string error_kind = {};  ///< empty when a response arrived
    std::string error = {};       ///< the exception's message

    template <class Archive>
    void serialize(Archive& archive) {
        archive(status, bytes, latency_s, tls_unverified, error_kind, error);
    }
};

sample response_sample(const corun::http::response& r, clock_type::time_point start) {
    return {.status = r.status,
            .bytes = r.body.size(),
            .latency_s = seconds_since(start),
            .tls_unverified = r.url.starts_with("https:") && !r.tls_verified};
}

/// A failed request is counted, never fatal: its kind and message are kept.
sample failed_sample(std::exception_ptr error, clock_type::time_point start) {
    sample s{.latency_s = seconds_since(start)};
    try {
        std::rethrow_exception(error);
    } catch (const corun::http::error& e) {
        s.error_kind = corun::http::to_string(e.kind());
        s.error = e.what();
    } catch (const corun::worker_crashed& e) {
        s.error_kind = "worker";
        s.error = e.what();
    } catch (const std::exception& e) {
        s.error_kind = "other";
        s.error = e.what();
    } catch (...) {
        s.error_kind = "other";
        s.error = "unknown exception";
    }
    return s;
}

/// A one-line progress bar on stderr, drawn in place, only on a terminal and
/// only for a run long enough to want one: many requests, or a second gone by.
class progress {
public:
    progress(std::string label, std::size_t total)
        : m_label(std::move(label)), m_total(total), m_terminal(isatty(STDERR_FILENO) == 1) {}
    progress(const progress&) = delete;
    progress& operator=(const progress&) = delete;
    ~progress() { clear(); }

    void tick() {
        ++m_done;
        if (!m_terminal) return;
        const auto now = clock_type::now();
        if (!m_drawn && m_total < 50 && now - m_start < 1s) return;
        if (m_drawn && m_done < m_total && now - m_drawn_at < 50ms) return;
        m_drawn_at = now;
        constexpr std::size_t width = 30;
        const std::size_t filled = m_done * width / m_total;
        std::fprintf(stderr, "\r%-10s [%s%s] %zu/%zu", m_label.c_str(), std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(), m_done, m_total);
        std::fflush(stderr);
        m_drawn = true;
    }

    void clear() {
        if (!m_drawn) return;
        std::fputs("\r\033[K", stderr);
        std::fflush(stderr);
        m_drawn = false;
    }

private:
    std::string m_label;
    std::size_t m_total;
    std::size_t m_done = 0;
    bool m_terminal;
    bool m_drawn = false;
    clock_type::time_point m_start = clock_type::now();
    clock_type::time_point m_drawn_at = {};
};

corun::awaitable<sample> timed_get(corun::http::client& http, std::string url, progress& bar) {
    const auto start = clock_type::now();
    sample s;
    std::exception_ptr error;
    try {
        // Made apart from the co_await: GCC 12 mishandles braced temporaries
        // (here `get`'s defaulted arguments) in a co_await's full expression.
        auto get = http.get(std::move(url));
        const corun::http::response r = co_await std::move(get);
        s = response_sample(r, start);
    } catch (...) {
        error = std::current_exception();
    }
    if (error) s = failed_sample(error, start);
    bar.tick();
    co_return s;
}

/// Runs in a pool worker: one whole request on an event loop of the worker's own.
sample fetch_in_worker(job j) {
    const auto start = clock_type::now();
    try {
        const corun::http::response r = corun::run(corun::http::fetch(j.url, j.options(1)));
        return response_sample(r, start);
    } catch (...) {
        return failed_sample(std::current_exception(), start);
    }
}

corun::awaitable<sample> pooled_get(corun::process_pool& pool, job j, progress& bar) {
    const auto start = clock_type::now();
    sample s;
    std::exception_ptr error;
    try {
        s = co_await pool.submit(fetch_in_worker, std::move(j));
    } catch (...) {
        error = std::current_exception();
    }
    if (error) s = failed_sample(error, start);
    bar.tick();
    co_return s;
}

corun::awaitable<std::vector<sample>> run_serial(job j, std::size_t n, progress& bar) {
    const corun::executor ex = co_await corun::this_executor();
    corun::http::client http{ex, j.options(1)};
    std::vector<sample> samples;
    for (std::size_t i = 0; i < n; ++i) samples.push_back(co_await timed_get(http, j.url, bar));
    co_return samples;
}

corun::awaitable<std::vector<sample>> run_concurrent(job j, std::size_t n, std::size_t c, progress& bar) {
    const corun::executor ex = co_await corun::this_executor();
    corun::http::client http{ex, j.options(c)};
    auto requests = corun::range(static_cast<std::int64_t>(n)) |
                    std::views::transform([&](std::int64_t) { return timed_get(http, j.url, bar); });
    const corun::gather_options in_flight{.limit = c};
    co_return co_await corun::gather(std::move(requests), in_flight);
}

corun::awaitable<std::vector<sample>> run_pool(corun::process_pool& pool, job j, std::size_t n, std::size_t c,
                                               progress& bar) {
    auto requests = corun::range(static_cast<std::int64_t>(n)) |
                    std::views::transform([&](std::int64_t) { return pooled_get(pool, j, bar); });
    const corun::gather_options in_flight{.limit = c};
    co_return co_await corun::gather(std::move(requests), in_flight);
}

/// The figures of one mode.
struct summary {
    std::string mode = {};
    double wall_s = 0;
    std::size_t requests = 0;
    std::size_t errors = 0;
    std::size_t tls_unverified = 0;
    std::uint64_t bytes = 0;
    std::vector<double> latencies = {};  ///< of the requests that got a response, sorted
    std::map<int, std::size_t> status = {};
    std::map<std::string, std::size_t> error_kinds = {};
    std::string first_error = {};

    /// Nearest-rank percentile of the latencies; NaN when none got a response.
    double percentile(double p) const {
        if (latencies.empty()) return std::numeric_limits<double>::quiet_NaN();
        const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(latencies.size())));
        return latencies[std::clamp<std::size_t>(rank, 1, latencies.size()) - 1];
    }
    double req_per_s() const { return static_cast<double>(requests) / wall_s; }

    /// Every request failed before talking HTTP at all: the URL is bad or
    /// nothing answers there, so the comparison would be meaningless.
    bool unreachable() const {
        if (requests == 0 || errors != requests) return false;
        return std::ranges::all_of(error_kinds, [](const auto& kind) {
            return kind.first == "url" || kind.first == "resolve" || kind.first == "connect";
        });
    }
};

summary summarize(std::string mode, double wall_s, const std::vector<sample>& samples) {
    summary s{.mode = std::move(mode), .wall_s = wall_s, .requests = samples.size()};
    for (const sample& x : samples) {
        if (!x.error_kind.empty()) {
            ++s.errors;
            ++s.error_kinds[x.error_kind];
            if (s.first_error.empty()) s.first_error = x.error;
            continue;
        }
        s.bytes += x.bytes;
        s.latencies.push_back(x.latency_s);
        ++s.status[x.status];
        if (x.tls_unverified) ++s.tls_unverified;
    }
    std::ranges::sort(s.latencies);
    return s;
}

/// A message on one line, as a log line or a test expects it.
std::string one_line(std::string text) {
    std::ranges::replace(text, '\n', ' ');
    std::ranges::replace(text, '\r', ' ');
    return text;
}

const summary* find_mode(const std::vector<summary>& modes, std::string_view name) {
    const auto it = std::ranges::find(modes, name, &summary::mode);
    return it == modes.end() ? nullptr : &*it;
}

std::string milliseconds(double s) {
    if (std::isnan(s)) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
    return buf;
}

/// "200:9 503:1": a histogram on one line.
template <class Map>
std::string counts_text(const Map& counts) {
    std::string out;
    for (const auto& [key, count] : counts) {
        if (!out.empty()) out += ' ';
        if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
            out += key;
        } else {
            out += std::to_string(key);
        }
        out += ':';
        out += std::to_string(count);
    }
    return out;
}

void print_table(const settings& s, std::size_t workers, const std::vector<summary>& modes) {
    std::printf("GET %s: %zu requests per mode, %zu in flight", s.url.c_str(), s.n, s.c);
    if (workers != 0) std::printf(", %zu pool workers", workers);
    std::printf("\n\n");
    std::printf("%-10s %9s %8s %9s %10s %10s %10s %9s %6s  %s\n", "mode", "wall", "speedup", "req/s", "p50",
                "p90", "p99", "bytes", "errors", "status");
    const summary* serial = find_mode(modes, "serial");
    for (const summary& m : modes) {
        char wall[32], speedup[32] = "-";
        std::snprintf(wall, sizeof wall, "%.3f s", m.wall_s);
        if (serial) std::snprintf(speedup, sizeof speedup, "%.1fx", serial->wall_s / m.wall_s);
        const std::string codes = counts_text(m.status);
        std::printf("%-10s %9s %8s %9.1f %10s %10s %10s %9llu %6zu  %s\n", m.mode.c_str(), wall, speedup,
                    m.req_per_s(), milliseconds(m.percentile(0.5)).c_str(),
                    milliseconds(m.percentile(0.9)).c_str(), milliseconds(m.percentile(0.99)).c_str(),
                    static_cast<unsigned long long>(m.bytes), m.errors, codes.empty() ? "-" : codes.c_str());
    }
    for (const summary& m : modes) {
        if (m.errors == 0) continue;
        std::printf("%s errors: %s; first: %s\n", m.mode.c_str(), counts_text(m.error_kinds).c_str(),
                    one_line(m.first_error).c_str());
    }
    if (s.insecure) {
        for (const summary& m : modes)
            std::printf("%s: %zu of %zu responses came over TLS that did not verify (--insecure)\n",
                        m.mode.c_str(), m.tls_unverified, m.requests - m.errors);
    }
    // The notebook's own lines: "serial: 5.78  parallel: 1.24".
    std::string times;
    for (const summary& m : modes) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s%s: %.4f s", times.empty() ? "" : "   ", m.mode.c_str(), m.wall_s);
        times += buf;
    }
    std::printf("\n%s\n", times.c_str());
    const summary* concurrent = find_mode(modes, "concurrent");
    if (serial && concurrent && !serial->latencies.empty()) {
        const double latency = serial->percentile(0.5);
        std::printf(
            "one request takes %s (serial p50); the concurrent run took %.2fx that, where %zu is ideal "
            "(%zu requests, %zu in flight)\n",
            milliseconds(latency).c_str(), concurrent->wall_s / latency, (s.n + s.c - 1) / s.c, s.n, s.c);
    }
}

using examples::json_number;
using examples::json_string;

template <class Map>
std::string json_counts(const Map& counts) {
    std::string out = "{";
    for (const auto& [key, count] : counts) {
        if (out.size() > 1) out += ',';
        if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
            out += json_string(key);
        } else {
            out += json_string(std::to_string(key));
        }
        out += ':';
        out += std::to_string(count);
    }
    out += '}';
    return out;
}

void print_json(const settings& s, std::size_t workers, bool embedded, const std::vector<summary>& modes) {
    const summary* serial = find_mode(modes, "serial");
    const summary* concurrent = find_mode(modes, "concurrent");
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double latency = serial ? serial->percentile(0.5) : nan;
    std::string out = "{\"url\":" + json_string(s.url) + ",\"n\":" + std::to_string(s.n) +
                      ",\"c\":" + std::to_string(s.c) + ",\"workers\":" + std::to_string(workers) +
                      ",\"embedded_server\":" + (embedded ? "true" : "false") +
                      ",\"insecure\":" + (s.insecure ? "true" : "false") +
                      ",\"single_request_latency_s\":" + json_number(latency) + ",\"modes\":{";
    for (const summary& m : modes) {
        if (&m != &modes.front()) out += ",";
        out +=
            json_string(m.mode) + ":{\"wall_s\":" + json_number(m.wall_s) +
            ",\"speedup\":" + json_number(serial ? serial->wall_s / m.wall_s : nan) +
            ",\"req_per_s\":" + json_number(m.req_per_s()) + ",\"p50_s\":" + json_number(m.percentile(0.5)) +
            ",\"p90_s\":" + json_number(m.percentile(0.9)) + ",\"p99_s\":" + json_number(m.percentile(0.99)) +
            ",\"requests\":" + std::to_string(m.requests) + ",\"bytes\":" + std::to_string(m.bytes) +
            ",\"errors\":" + std::to_string(m.errors) + ",\"error_kinds\":" + json_counts(m.error_kinds) +
            ",\"first_error\":" + (m.errors ? json_string(m.first_error) : "null") +
            ",\"status\":" + json_counts(m.status) +
            ",\"tls_unverified\":" + std::to_string(m.tls_unverified) + "}";
    }
    out +=
        "},\"concurrent_wall_over_latency\":" + json_number(concurrent ? concurrent->wall_s / latency : nan) +
        "}\n";
    std::fputs(out.c_str(), stdout);
}

/// The verdict of a run that measured something: failed requests are counted
/// over every mode.
exit_status run_status(const std::vector<summary>& modes) {
    std::size_t requests = 0;
    std::size_t errors = 0;
    for (const summary& m : modes) {
        requests += m.requests;
        errors += m.errors;
    }
    if (errors == 0) return exit_ok;
    return errors == requests ? exit_all_failed : exit_some_failed;
}

corun::awaitable<int> app(settings s) {
    const corun::executor ex = co_await corun::this_executor();
    const bool all = s.mode == "all";

    // The pool comes first, before the embedded server's thread exists: its
    // fork server is forked now, from a process with one thread, and every
    // worker is forked by that fork server later, so no worker ever inherits
    // a copy of the server thread's locks or its listening socket.
    std::optional<corun::process_pool> pool;
    if (all || s.mode == "pool") pool.emplace(ex);

    std::optional<httpbin::background_server> server;
    if (s.url.empty()) {
        server.emplace(httpbin::options{.latency = 100ms});
        s.url = server->base_url() + "/bytes/1024";
        std::fprintf(stderr,
                     "corun-fetch: no URL given: fetching %s from an embedded httpbin (100 ms latency)\n",
                     s.url.c_str());
    }
    if (s.insecure)
        std::fprintf(stderr,
                     "corun-fetch: warning: --insecure: TLS certificates and host names are not verified\n");

    // The embedded httpbin is on loopback: a proxy from the environment must
    // not see, or break, that traffic. An explicit --proxy is the user's choice.
    const job j{.url = s.url,
                .ca_file = s.ca_file,
                .insecure = s.insecure,
                .cert_file = s.cert_file,
                .key_file = s.key_file,
                .proxy = s.proxy,
                .trust_env = s.env_proxy && !server.has_value(),
                .decompress = s.compressed,
                .timeout_ms = static_cast<std::int64_t>(std::ceil(s.timeout_s * 1000))};
    std::vector<std::string> names;
    if (all || s.mode == "serial") names.push_back("serial");
    if (all || s.mode == "concurrent") names.push_back("concurrent");
    if (all || s.mode == "pool") names.push_back("pool");

    std::vector<summary> modes;
    for (const std::string& name : names) {
        progress bar{name, s.n};
        const auto start = clock_type::now();
        std::vector<sample> samples;
        if (name == "serial") {
            samples = co_await run_serial(j, s.n, bar);
        } else if (name == "concurrent") {
            samples = co_await run_concurrent(j, s.n, s.c, bar);
        } else {
            samples = co_await run_pool(*pool, j, s.n, s.c, bar);
        }
        modes.push_back(summarize(name, seconds_since(start), samples));
        bar.clear();
        if (modes.size() == 1 && modes.front().unreachable()) {
            std::fprintf(stderr, "corun-fetch: %s\n", one_line(modes.front().first_error).c_str());
            co_return exit_fatal;
        }
    }

    const std::size_t workers = pool ? pool->workers() : 0;
    if (s.json) {
        print_json(s, workers, server.has_value(), modes);
    } else {
        print_table(s, workers, modes);
    }
    if (pool) {
        pool->close();
        co_await pool->join();
    }
    co_return run_status(modes);
}

}  // namespace

int main(int argc, char** argv) {
    settings s;
    try {
        s = parse_args(argc, argv);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "corun-fetch: %s\n%s\n", e.what(), usage_line);
        return exit_usage;
    }
    if (s.help) {
        std::printf("%s\n%s", usage_line, help_text);
        return exit_ok;
    }
    try {
        return corun::run(app(std::move(s)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "corun-fetch: %s\n", one_line(e.what()).c_str());
        return exit_fatal;
    }
}
