// corun-textpipe — the notebook's text pipeline three ways: documents →
// remove stop words → stem (Snowball English) → dedupe → word counts.
//
//   serial     one loop, one document at a time through every step
//   batch      all documents through step 1 on the pool (pool.map), then all
//              through step 2 …: the notebook's "until now"
//   pipeline   corun::pipeline: each document goes on to the next step as soon
//              as it is through one, CPU steps on the pool, dedupe in order
//
// and prints wall time, time to the first counted document, peak memory and
// per-step busy time, then the top words. The three must count the same.
#include <corun/corun.hpp>
#include <corun/pipeline.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "httpbin/httpbin.hpp"
#include "json_text.hpp"
#include "textpipe/text.hpp"

using clock_type = std::chrono::steady_clock;
using words_type = std::vector<std::string>;

namespace {

constexpr const char* usage_line =
    "usage: corun-textpipe [--docs N | --dir PATH | --urls N] [--pool thread|process] [--workers N] "
    "[--top K] [--json]";

constexpr const char* help_text = R"(
Counts the stemmed words of a corpus, dropping stop words and repeated
documents, three ways: serial, batch-staged and as a corun::pipeline.

  --docs N           N synthetic documents, made by the program (default 10000)
  --dir PATH         every regular file in the directory PATH, in name order
  --urls N           N documents fetched over HTTP from an embedded loopback httpbin
  --pool KIND        where the CPU steps run: thread (default) or process
  --workers N        pool workers (default: one per core)
  --top K            words to list (default 10)
  --json             one JSON object per line per mode instead of the table
)";

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct settings {
    enum source_kind { docs, dir, urls } source = docs;
    std::size_t count = 10000;  // --docs, --urls
    std::string dir_path = {};
    std::vector<std::string> files = {};  // --dir: listed before the pool starts
    std::string pool = "thread";
    std::size_t workers = 0;
    std::size_t top = 10;
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

settings parse_args(int argc, char** argv) {
    settings s;
    bool source_given = false;
    const auto set_source = [&](std::string_view flag, settings::source_kind kind) {
        if (source_given)
            throw usage_error("give only one of --docs, --dir and --urls (" + std::string(flag) + ")");
        source_given = true;
        s.source = kind;
    };
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view flag = args[i];
        std::optional<std::string_view> attached;  // --flag=value
        if (const auto eq = flag.find('='); flag.starts_with("--") && eq != std::string_view::npos) {
            attached = flag.substr(eq + 1);
            flag = flag.substr(0, eq);
        }
        bool took_value = false;
        const auto value = [&]() -> std::string_view {
            took_value = true;
            if (attached) return *attached;
            if (++i >= args.size()) throw usage_error(std::string(flag) + " needs a value");
            return args[i];
        };
        if (flag == "--docs") {
            set_source(flag, settings::docs);
            s.count = parse_count(flag, value());
        } else if (flag == "--dir") {
            set_source(flag, settings::dir);
            s.dir_path = value();
        } else if (flag == "--urls") {
            set_source(flag, settings::urls);
            s.count = parse_count(flag, value());
        } else if (flag == "--pool") {
            s.pool = value();
            if (s.pool != "thread" && s.pool != "process")
                throw usage_error("--pool is thread or process, not '" + s.pool + "'");
        } else if (flag == "--workers") {
            s.workers = parse_count(flag, value());
        } else if (flag == "--top") {
            s.top = parse_count(flag, value());
        } else if (flag == "--json") {
            s.json = true;
        } else if (flag == "-h" || flag == "--help") {
            s.help = true;
        } else {
            throw usage_error("unknown argument " + std::string(flag));
        }
        if (attached && !took_value) throw usage_error(std::string(flag) + " takes no value");
    }
    return s;
}

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

// ---- reading the documents -------------------------------------------------

std::string synthetic_document(std::int64_t index) {
    return textpipe::make_document(static_cast<std::uint64_t>(index));
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) throw std::runtime_error("cannot read '" + path + "'");
    return std::move(text).str();
}

/// The regular files of `dir`, in name order so every run reads them alike.
std::vector<std::string> list_files(const std::string& dir) {
    std::error_code ec;
    std::vector<std::string> files;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) throw std::runtime_error("cannot read the directory '" + dir + "': " + ec.message());
    for (const auto& entry : it) {
        if (entry.is_regular_file(ec)) files.push_back(entry.path().string());
    }
    if (files.empty()) throw std::runtime_error("the directory '" + dir + "' holds no regular files");
    std::ranges::sort(files);
    return files;
}

/// The read step when it is CPU or disk work: a plain function, inline in the
/// serial mode and on the pool in the other two.
template <class Key>
struct pool_read {
    std::string (*f)(Key);

    corun::awaitable<std::string> one(Key key) const { co_return f(key); }
    template <class Pool, class Keys>
    corun::awaitable<std::vector<std::string>> all(Pool& pool, const Keys& keys) const {
        auto map = pool.map(f, keys);
        co_return co_await std::move(map);
    }
    template <class Pool>
    auto stage(Pool& pool) const {
        return corun::stage("read", pool, f);
    }
};

corun::awaitable<std::string> fetch_text(corun::http::client& http, std::string url) {
    auto get = http.get(std::move(url));
    corun::http::response r = co_await std::move(get);
    r.raise_for_status();
    co_return std::move(r.body);
}

/// The read step when it is I/O: a fetch on the event loop, `concurrency` in
/// flight in the batch and pipeline modes.
struct url_read {
    corun::http::client* http;
    std::string base;  // "http://127.0.0.1:PORT/text/"
    std::size_t concurrency;

    corun::awaitable<std::string> one(std::int64_t i) const {
        return fetch_text(*http, base + std::to_string(i));
    }
    template <class Pool, class Keys>
    corun::awaitable<std::vector<std::string>> all(Pool&, const Keys& keys) const {
        auto fetches = keys | std::views::transform([this](std::int64_t i) { return one(i); });
        const corun::gather_options limit{.limit = concurrency};
        co_return co_await corun::gather(std::move(fetches), limit);
    }
    template <class Pool>
    auto stage(Pool&) const {
        return corun::stage("read", [this](std::int64_t i) { return one(i); }, {.concurrency = concurrency});
    }
};

// ---- the three modes ---------------------------------------------------------

enum step { read_step, stop_step, stem_step, dedupe_step, count_step, step_count };
constexpr std::array<const char*, step_count> step_names = {"read", "stop_words", "stem", "dedupe", "count"};

/// What one mode did.
struct outcome {
    std::string mode = {};
    double wall_s = 0;
    double first_s = 0;  ///< until the first document was counted
    std::size_t peak_kib = 0;
    std::array<double, step_count> busy_s = {};
    std::size_t documents = 0;
    std::size_t unique = 0;  ///< documents left after dedupe
    std::uint64_t words = 0;
    textpipe::word_counts counts = {};
};

/// Times the steps of one mode and counts what reaches the end.
class meter {
public:
    explicit meter(std::string mode) { m_out.mode = std::move(mode); }

    /// Time since the last lap, booked to step `s`.
    void lap(step s) {
        const auto now = clock_type::now();
        m_out.busy_s[s] += std::chrono::duration<double>(now - m_last).count();
        m_last = now;
    }
    void count(const words_type& words) {
        if (m_out.unique == 0) m_out.first_s = seconds_since(m_start);
        ++m_out.unique;
        m_out.words += words.size();
        m_out.counts.add(words);
    }
    outcome finish(std::size_t documents) {
        m_out.wall_s = seconds_since(m_start);
        m_out.documents = documents;
        return std::move(m_out);
    }

private:
    outcome m_out;
    clock_type::time_point m_start = clock_type::now();
    clock_type::time_point m_last = m_start;
};

template <class Read, class Keys>
corun::awaitable<outcome> run_serial(const Read& read, const Keys& keys) {
    meter m("serial");
    textpipe::deduper dedupe;
    std::size_t n = 0;
    for (const auto& key : keys) {
        ++n;
        const std::string doc = co_await read.one(key);
        m.lap(read_step);
        words_type words = textpipe::remove_stop_words(doc);
        m.lap(stop_step);
        words_type stems = textpipe::stem(words);
        m.lap(stem_step);
        auto kept = dedupe(std::move(stems));
        m.lap(dedupe_step);
        if (kept) m.count(*kept);
        m.lap(count_step);
    }
    co_return m.finish(n);
}

template <class Pool, class Read, class Keys>
corun::awaitable<outcome> run_batch(Pool& pool, const Read& read, const Keys& keys) {
    meter m("batch");
    std::vector<std::string> docs = co_await read.all(pool, keys);
    const std::size_t n = docs.size();
    m.lap(read_step);
    // Each step's input is dropped once the next is made: the least memory
    // this way of working can take.
    auto strip = pool.map(textpipe::remove_stop_words, docs);
    std::vector<words_type> words = co_await std::move(strip);
    docs = {};
    m.lap(stop_step);
    auto stem = pool.map(textpipe::stem, words);
    std::vector<words_type> stems = co_await std::move(stem);
    words = {};
    m.lap(stem_step);
    textpipe::deduper dedupe;
    std::vector<words_type> kept;
    for (words_type& s : stems) {
        if (auto k = dedupe(std::move(s))) kept.push_back(std::move(*k));
    }
    stems = {};
    m.lap(dedupe_step);
    for (const words_type& k : kept) m.count(k);
    m.lap(count_step);
    co_return m.finish(n);
}

template <class Pool, class Read, class Keys>
corun::awaitable<outcome> run_pipeline(Pool& pool, const Read& read, const Keys& keys) {
    meter m("pipeline");
    corun::pipeline p(keys, read.stage(pool), corun::stage("stop_words", pool, textpipe::remove_stop_words),
                      corun::stage("stem", pool, textpipe::stem),
                      corun::serial_stage("dedupe", textpipe::deduper{}));
    double count_s = 0;
    auto sink = [&](words_type words) {
        const auto start = clock_type::now();
        m.count(words);
        count_s += seconds_since(start);
    };
    co_await p.for_each(sink);
    outcome out = m.finish(p.stats()[0].items_out);
    for (std::size_t s = read_step; s <= dedupe_step; ++s)
        out.busy_s[s] = std::chrono::duration<double>(p.stats()[s + 1].busy).count();
    out.busy_s[count_step] = count_s;
    co_return out;
}

// ---- printing ----------------------------------------------------------------

std::string duration_text(double s) {
    char buf[32];
    if (s < 0.01) {
        std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
    } else if (s < 1) {
        std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
    } else {
        std::snprintf(buf, sizeof buf, "%.2f s", s);
    }
    return buf;
}

std::string mib_text(std::size_t kib) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(kib) / 1024);
    return buf;
}

void print_table(const std::string& what, const std::vector<outcome>& modes, std::size_t top) {
    const outcome& first = modes.front();
    std::printf("%s\n%zu documents, %zu after dedupe, %llu words after stop words, %zu distinct stems\n\n",
                what.c_str(), first.documents, first.unique, static_cast<unsigned long long>(first.words),
                first.counts.counts.size());
    std::printf("%-9s %9s %13s %15s   %-s\n", "mode", "wall", "first result", "peak RSS (1)",
                "busy per step (2): read / stop words / stem / dedupe / count");
    for (const outcome& m : modes) {
        std::string busy;
        for (std::size_t s = 0; s < step_count; ++s) {
            if (s != 0) busy += " / ";
            busy += duration_text(m.busy_s[s]);
        }
        std::printf("%-9s %9s %13s %15s   %s\n", m.mode.c_str(), duration_text(m.wall_s).c_str(),
                    duration_text(m.first_s).c_str(), mib_text(m.peak_kib).c_str(), busy.c_str());
    }
    std::printf(
        "(1) this process's peak resident set size (VmHWM), reset before each mode; pool worker\n"
        "    processes are not included\n"
        "(2) serial and batch: the step's own elapsed time; pipeline: the time in the step's function,\n"
        "    summed over its tasks (measured in the pool for pool steps); the steps overlap\n\n");
    std::printf("top %zu words (stems):\n", top);
    for (const auto& [word, n] : first.counts.top(top))
        std::printf("  %-16s %llu\n", word.c_str(), static_cast<unsigned long long>(n));
}

using examples::json_number;
using examples::json_string;

/// A digest of every (word, count), the same for equal counts whatever the
/// hash table's order: lets a reader of the JSON compare modes and runs.
std::string counts_digest(const textpipe::word_counts& wc) {
    std::vector<std::pair<std::string, std::uint64_t>> all(wc.counts.begin(), wc.counts.end());
    std::ranges::sort(all);
    std::uint64_t h = 0xcbf29ce484222325ULL;
    const auto mix = [&h](std::string_view bytes) {
        for (const char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    };
    for (const auto& [word, n] : all) {
        mix(word);
        mix(":");
        mix(std::to_string(n));
        mix("\n");
    }
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

void print_json(const settings& s, std::size_t workers, const std::vector<outcome>& modes) {
    static constexpr std::array<const char*, 3> sources = {"docs", "dir", "urls"};
    for (const outcome& m : modes) {
        std::string out =
            "{\"mode\":" + json_string(m.mode) + ",\"source\":\"" + sources[s.source] +
            "\",\"pool\":" + json_string(s.pool) + ",\"workers\":" + std::to_string(workers) +
            ",\"documents\":" + std::to_string(m.documents) +
            ",\"unique_documents\":" + std::to_string(m.unique) + ",\"words\":" + std::to_string(m.words) +
            ",\"distinct_words\":" + std::to_string(m.counts.counts.size()) +
            ",\"wall_s\":" + json_number(m.wall_s) + ",\"first_result_s\":" + json_number(m.first_s) +
            ",\"peak_rss_kib\":" + std::to_string(m.peak_kib) + ",\"busy_s\":{";
        for (std::size_t i = 0; i < step_count; ++i)
            out += std::string(i ? "," : "") + "\"" + step_names[i] + "\":" + json_number(m.busy_s[i]);
        out += "},\"counts_digest\":\"" + counts_digest(m.counts) + "\",\"top\":[";
        bool first = true;
        for (const auto& [word, n] : m.counts.top(s.top)) {
            out += std::string(first ? "" : ",") + "[" + json_string(word) + "," + std::to_string(n) + "]";
            first = false;
        }
        out += "]}\n";
        std::fputs(out.c_str(), stdout);
    }
}

// ---- the program -------------------------------------------------------------

/// Runs the three modes, each from a clean peak-memory mark.
template <class Pool, class Read, class Keys>
corun::awaitable<std::vector<outcome>> run_modes(Pool& pool, const Read& read, const Keys& keys) {
    std::vector<outcome> modes;
    for (const char* name : {"serial", "batch", "pipeline"}) {
        textpipe::reset_peak_rss();
        const std::string mode = name;
        outcome o;
        if (mode == "serial") {
            o = co_await run_serial(read, keys);
        } else if (mode == "batch") {
            o = co_await run_batch(pool, read, keys);
        } else {
            o = co_await run_pipeline(pool, read, keys);
        }
        o.peak_kib = textpipe::peak_rss_kib();
        modes.push_back(std::move(o));
    }
    co_return modes;
}

/// The path of an embedded-server request for document n: "/text/n".
std::optional<std::string> serve_text(std::string_view path) {
    constexpr std::string_view prefix = "/text/";
    if (!path.starts_with(prefix)) return std::nullopt;
    path.remove_prefix(prefix.size());
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(path.data(), path.data() + path.size(), n);
    if (ec != std::errc{} || end != path.data() + path.size()) return std::nullopt;
    return textpipe::make_document(n);
}

template <class Pool>
corun::awaitable<std::vector<outcome>> run_source(const settings& s, Pool& pool, std::string& what) {
    const std::string pool_text = std::to_string(pool.workers()) + " " + s.pool + " pool workers";
    if (s.source == settings::dir) {
        what = std::to_string(s.files.size()) + " files of " + s.dir_path + ", " + pool_text;
        const pool_read<const std::string&> read{read_file};
        co_return co_await run_modes(pool, read, s.files);
    }
    const auto keys = corun::range(static_cast<std::int64_t>(s.count));
    if (s.source == settings::docs) {
        what = std::to_string(s.count) + " synthetic documents, " + pool_text;
        const pool_read<std::int64_t> read{synthetic_document};
        co_return co_await run_modes(pool, read, keys);
    }
    // The documents come from an embedded httpbin, which serves the synthetic
    // corpus as /text/n through its extra_route hook: the same documents as
    // --docs, so the counts can be compared, but read over real HTTP. It
    // starts after the pool, so no worker inherits its thread or socket.
    httpbin::options server_options;
    server_options.extra_route = serve_text;
    httpbin::background_server server{server_options};
    const corun::executor ex = co_await corun::this_executor();
    const corun::http::client_options client_options{.limit = 16, .user_agent = "corun-textpipe"};
    corun::http::client http{ex, client_options};
    const url_read read{&http, server.base_url() + "/text/", 16};
    what = std::to_string(s.count) + " documents over HTTP from " + server.base_url() + ", " + pool_text;
    co_return co_await run_modes(pool, read, keys);
}

template <class Pool>
corun::awaitable<int> run_with(const settings& s, Pool& pool) {
    std::string what;
    const std::vector<outcome> modes = co_await run_source(s, pool, what);
    pool.close();
    co_await pool.join();

    if (s.json) {
        print_json(s, pool.workers(), modes);
    } else {
        print_table(what, modes, s.top);
    }
    for (const outcome& m : modes) {
        if (m.counts.counts != modes.front().counts.counts || m.unique != modes.front().unique) {
            std::fprintf(stderr, "corun-textpipe: the %s mode counted differently from the %s mode\n",
                         m.mode.c_str(), modes.front().mode.c_str());
            co_return 1;
        }
    }
    co_return 0;
}

corun::awaitable<int> app(settings s) {
    const corun::executor ex = co_await corun::this_executor();
    if (s.source == settings::dir) s.files = list_files(s.dir_path);
    if (s.pool == "process") {
        const corun::process_pool_options options{.workers = s.workers};
        corun::process_pool pool{ex, options};
        co_return co_await run_with(s, pool);
    }
    const corun::thread_pool_options options{.threads = s.workers};
    corun::thread_pool pool{ex, options};
    co_return co_await run_with(s, pool);
}

}  // namespace

int main(int argc, char** argv) {
    settings s;
    try {
        s = parse_args(argc, argv);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "corun-textpipe: %s\n%s\n", e.what(), usage_line);
        return 2;
    }
    if (s.help) {
        std::printf("%s\n%s", usage_line, help_text);
        return 0;
    }
    try {
        return corun::run(app(std::move(s)));
    } catch (const std::exception& e) {
        std::string message = e.what();
        try {
            std::rethrow_if_nested(e);
        } catch (const std::exception& cause) {
            message += ": " + std::string(cause.what());
        }
        std::fprintf(stderr, "corun-textpipe: %s\n", message.c_str());
        return 1;
    }
}
