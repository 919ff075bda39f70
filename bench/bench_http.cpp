// http: keep-alive GETs with corun::http::client on one thread. C coroutines
// each loop `co_await client.get(url)` for the duration, over one client whose
// pool holds C connections; every response must be a 200 with the expected
// body size (decoded, when the server encoded it), and anything else is
// counted as an error, never dropped.
//
//   corun-bench http [--url URL] [--connections 64] [--duration SECONDS]
//                    [--body-size N] [--cacert FILE] [--insecure]
//                    [--proxy http://HOST:PORT] [--[no-]compressed] --json
//
// --compressed (the client's default) sends `Accept-Encoding: gzip, deflate,
// br` and decodes the body; --no-compressed asks for no encoding. --proxy
// sends every request through that proxy. The line says which encoding the
// server chose (`content_encoding` of the first response, "identity" when
// none), so a caller can tell that a compressed run was really compressed.
//
// With no URL it serves itself: an embedded httpbin on loopback, /bytes/1024,
// once over HTTP (case "http") and once over HTTPS (case "https", its
// self-signed certificate trusted through `ca_file`). bench/compare runs it
// against nginx beside wrk and aiohttp.
#include <corun/corun.hpp>

#include <sys/resource.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.hpp"
#include "httpbin.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

constexpr auto warm_up_time = std::chrono::milliseconds(500);

struct http_options {
    std::string url = {};
    std::size_t connections = 64;
    double seconds = 5;
    /// 0: the size of the first successful response of the warm-up.
    std::size_t body_size = 0;
    std::string cacert = {};
    bool insecure = false;
    std::string proxy = {};
    bool compressed = true;
};

struct tally {
    long long requests = 0;
    long long errors = 0;
    /// Responses over TLS whose certificate did not verify (only with --insecure).
    long long tls_unverified = 0;
    std::string first_error = {};

    void fail(std::string what) {
        if (errors++ == 0) first_error = std::move(what);
    }
};

/// CPU time (user + system) of the calling thread, in seconds: the client's
/// own cost, whatever else the machine runs (an embedded server's thread too).
double thread_cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_THREAD, &ru);
    auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
    return sec(ru.ru_utime) + sec(ru.ru_stime);
}

struct outcome {
    double seconds = 0;
    double cpu_seconds = 0;
    tally counts = {};
    tally warm_up = {};
    std::size_t body_size = 0;
    /// The Content-Encoding of the first successful response; empty until then.
    std::string content_encoding = {};
};

/// GETs `url` one after another until `deadline`, tallying each response.
corun::awaitable<void> fetch_until(corun::http::client& http, const std::string& url,
                                   clock_type::time_point deadline, outcome& out, tally& counts) {
    std::size_t& body_size = out.body_size;
    while (clock_type::now() < deadline) {
        try {
            auto r = co_await http.get(url);
            if (body_size == 0 && r.status == 200) body_size = r.body.size();
            if (out.content_encoding.empty() && r.status == 200)
                out.content_encoding = std::string(r.header("content-encoding").value_or("identity"));
            if (r.status == 200 && r.body.size() == body_size) {
                ++counts.requests;
                if (!r.tls_verified && r.url.starts_with("https:")) ++counts.tls_unverified;
            } else {
                counts.fail("status " + std::to_string(r.status) + ", " + std::to_string(r.body.size()) +
                            " bytes");
            }
        } catch (const corun::http::error& e) {
            counts.fail(e.what());
        }
    }
}

corun::awaitable<void> fetch_all(corun::http::client& http, const std::string& url, std::size_t connections,
                                 clock_type::time_point deadline, outcome& out, tally& counts) {
    co_await corun::gather(corun::range(static_cast<std::int64_t>(connections)) |
                           std::views::transform([&](std::int64_t) {
                               return fetch_until(http, url, deadline, out, counts);
                           }));
}

corun::awaitable<outcome> measure(http_options opts) {
    // Locals, not temporaries beside the co_await: GCC 12 mishandles those.
    const corun::executor ex = co_await corun::this_executor();
    corun::http::client_options client_opts{.limit = opts.connections,
                                            .limit_per_host = opts.connections,
                                            .decompress = opts.compressed,
                                            .ca_file = opts.cacert,
                                            .insecure = opts.insecure,
                                            .proxy = opts.proxy};
    corun::http::client http{ex, std::move(client_opts)};
    outcome out{.body_size = opts.body_size};
    co_await fetch_all(http, opts.url, opts.connections, clock_type::now() + warm_up_time, out, out.warm_up);
    const double cpu0 = thread_cpu_seconds();
    const auto t0 = clock_type::now();
    const auto deadline =
        t0 + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opts.seconds));
    co_await fetch_all(http, opts.url, opts.connections, deadline, out, out.counts);
    out.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    out.cpu_seconds = thread_cpu_seconds() - cpu0;
    co_return out;
}

/// Measures and prints the JSON line; `server_connections` (the embedded
/// server's count of accepted connections) is left out when it is unknown.
int report(const http_options& opts, const std::function<long long()>& server_connections = {}) {
    const bool tls = opts.url.starts_with("https:");
    const outcome out = corun::run(measure(opts));
    corun_bench::json_line line(tls ? "https" : "http");
    line.add("url", opts.url)
        .add("connections", static_cast<long long>(opts.connections))
        .add("seconds", out.seconds)
        .add("requests", out.counts.requests)
        .add("req_per_s", static_cast<double>(out.counts.requests) / out.seconds)
        .add("cpu_us_per_req", out.counts.requests ? out.cpu_seconds * 1e6 / out.counts.requests : 0.0)
        .add("errors", out.counts.errors)
        .add("warm_up_errors", out.warm_up.errors)
        .add("body_size", static_cast<long long>(out.body_size))
        .add("scheme", tls ? "https" : "http")
        .add_bool("compressed", opts.compressed)
        .add("content_encoding", out.content_encoding);
    if (!opts.proxy.empty()) line.add("proxy", opts.proxy);
    if (tls) line.add("tls_unverified", out.counts.tls_unverified);
    if (server_connections) line.add("server_connections", server_connections());
    line.print();
    if (out.warm_up.errors)
        std::fprintf(stderr, "corun-bench http: %lld errors while warming up, the first: %s\n",
                     out.warm_up.errors, out.warm_up.first_error.c_str());
    if (out.counts.errors)
        std::fprintf(stderr, "corun-bench http: %lld errors, the first: %s\n", out.counts.errors,
                     out.counts.first_error.c_str());
    return out.counts.requests > 0 ? 0 : 1;
}

/// The embedded server's certificate, in a temporary file removed on exit.
class temp_file {
public:
    temp_file() {
        std::string pattern = (std::filesystem::temp_directory_path() / "corun-bench-cert-XXXXXX").string();
        const int fd = ::mkstemp(pattern.data());
        if (fd < 0) throw std::runtime_error("corun-bench http: cannot make a temporary file");
        ::close(fd);
        m_path = pattern;
    }
    temp_file(const temp_file&) = delete;
    temp_file& operator=(const temp_file&) = delete;
    ~temp_file() { std::filesystem::remove(m_path); }
    const std::string& path() const noexcept { return m_path; }

private:
    std::string m_path;
};

int self_served(http_options opts) {
    constexpr std::size_t body_size = 1024;
    const std::string path = "/bytes/" + std::to_string(body_size);
    opts.body_size = body_size;
    int status = 0;
    {
        httpbin::background_server server{httpbin::options{}};
        http_options plain = opts;
        plain.url = server.base_url() + path;
        status |= report(plain, [&] { return static_cast<long long>(server.connections_accepted()); });
    }
    {
        temp_file cert;
        httpbin::background_server server{httpbin::options{.tls = true, .write_cert = cert.path()}};
        http_options secure = opts;
        secure.url = server.base_url() + path;
        secure.cacert = cert.path();
        status |= report(secure, [&] { return static_cast<long long>(server.connections_accepted()); });
    }
    return status;
}

std::optional<http_options> parse(const std::vector<std::string>& args) {
    http_options opts;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        const bool has_value = i + 1 < args.size();
        if (a == "--json") continue;
        if (a == "--insecure") {
            opts.insecure = true;
        } else if (a == "--compressed") {
            opts.compressed = true;
        } else if (a == "--no-compressed") {
            opts.compressed = false;
        } else if (a == "--proxy" && has_value) {
            opts.proxy = args[++i];
        } else if (a == "--url" && has_value) {
            opts.url = args[++i];
        } else if (a == "--cacert" && has_value) {
            opts.cacert = args[++i];
        } else if (a == "--connections" && has_value) {
            opts.connections = std::strtoul(args[++i].c_str(), nullptr, 10);
        } else if (a == "--duration" && has_value) {
            opts.seconds = std::strtod(args[++i].c_str(), nullptr);
        } else if (a == "--body-size" && has_value) {
            opts.body_size = std::strtoul(args[++i].c_str(), nullptr, 10);
        } else {
            return std::nullopt;
        }
    }
    if (opts.connections == 0 || !(opts.seconds > 0)) return std::nullopt;
    // The client holds its strings in place: one too long is a usage error here.
    try {
        [[maybe_unused]] const decltype(corun::http::client_options::proxy) proxy{opts.proxy};
        [[maybe_unused]] const decltype(corun::http::client_options::ca_file) cacert{opts.cacert};
    } catch (const std::length_error&) {
        return std::nullopt;
    }
    return opts;
}

corun_bench::register_case http_case("http", [](const std::vector<std::string>& args) {
    const auto opts = parse(args);
    if (!opts) {
        std::fprintf(stderr,
                     "usage: corun-bench http [--url URL] [--connections 64] [--duration SECONDS] "
                     "[--body-size N] [--cacert FILE] [--insecure] [--proxy http://HOST:PORT] "
                     "[--[no-]compressed] --json\n");
        return 2;
    }
    return opts->url.empty() ? self_served(*opts) : report(*opts);
});

}  // namespace
