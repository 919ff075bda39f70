// pipeline cases: the text pipeline (stop words → stem → dedupe → count) as a
// corun::pipeline against the batch-staged way and a serial loop measured in
// the same run, on both pools; and peak memory of a 10 000 000-item lazy
// source. bench/compare adds oneTBB's parallel_pipeline (corun-tbb-pipeline),
// which runs the same stage functions.
//
// corun-bench pipeline [--docs N] [--repeat N] [--json] prints five lines:
// pipeline_first_result, pipeline_thread, pipeline_process, pipeline_rss, and
// pipeline_items: what a one-line item costs in each kind of stage and batch.
// The text ways run in N rounds (default 5), each way once per round; the
// best of each counts.
#include <corun/corun.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.hpp"
#include "text.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using words_type = std::vector<std::string>;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// What one way of running the text pipeline gives: when the first document
/// was counted, when all were, and what was counted (the same in every way).
struct run_figures {
    double first_s = 0;
    double wall_s = 0;
    std::uint64_t kept = 0;
    std::uint64_t words = 0;
    std::vector<corun::stage_stats> stages;  // a pipeline's, row 0 the source
};

/// The sink of every way: counts the words of the documents that survive dedupe.
struct counting_sink {
    clock_type::time_point t0 = clock_type::now();
    textpipe::word_counts counts;
    run_figures figures;
    void operator()(const words_type& words) {
        if (figures.kept == 0) figures.first_s = seconds_since(t0);
        counts.add(words);
        ++figures.kept;
        figures.words += words.size();
    }
    run_figures done() {
        figures.wall_s = seconds_since(t0);
        return figures;
    }
};

void same_counts(const run_figures& a, const run_figures& b, const char* way) {
    if (a.kept != b.kept || a.words != b.words)
        throw std::logic_error(std::string(way) + " counted other documents than the serial loop");
}

run_figures serial_run(const std::vector<std::string>& corpus) {
    textpipe::deduper dedupe;
    counting_sink sink;
    for (const std::string& doc : corpus)
        if (auto kept = dedupe(textpipe::stem(textpipe::remove_stop_words(doc)))) sink(*kept);
    return sink.done();
}

/// The notebook's "until now": every document through stage 1, then every one through stage 2, ...
template <class Pool>
corun::awaitable<run_figures> batch_staged_run(Pool& pool, const std::vector<std::string>& corpus) {
    counting_sink sink;
    std::vector<words_type> cleaned = co_await pool.map(textpipe::remove_stop_words, corpus);
    std::vector<words_type> stemmed = co_await pool.map(textpipe::stem, cleaned);
    cleaned.clear();
    textpipe::deduper dedupe;
    std::vector<words_type> kept;
    for (words_type& words : stemmed)
        if (auto k = dedupe(std::move(words))) kept.push_back(std::move(*k));
    for (const words_type& words : kept) sink(words);
    co_return sink.done();
}

template <class Pool>
corun::awaitable<run_figures> pipeline_run(Pool& pool, const std::vector<std::string>& corpus) {
    counting_sink sink;
    corun::pipeline p(std::views::all(corpus), corun::stage("stop_words", pool, textpipe::remove_stop_words),
                      corun::stage("stem", pool, textpipe::stem),
                      corun::serial_stage("dedupe", textpipe::deduper{}));
    auto count = [&sink](words_type words) { sink(words); };
    co_await p.for_each(count);
    run_figures r = sink.done();
    r.stages = p.stats();
    co_return r;
}

/// Keeps the run with the best wall time, and the best time to first result of any run.
void keep_best(run_figures& best, run_figures r, bool first) {
    const double first_s = first ? r.first_s : std::min(best.first_s, r.first_s);
    if (first || r.wall_s < best.wall_s) best = std::move(r);
    best.first_s = first_s;
}

/// Each stage's busy time (and tasks, for a pool stage), which shows the bottleneck.
void add_stages(corun_bench::json_line& line, const run_figures& r) {
    for (std::size_t i = 1; i < r.stages.size(); ++i) {
        const corun::stage_stats& s = r.stages[i];
        line.add(s.name + "_busy_s", std::chrono::duration<double>(s.busy).count());
        if (s.tasks != s.items_in) line.add(s.name + "_tasks", static_cast<long long>(s.tasks));
    }
}

struct text_figures {
    std::size_t threads = 0;
    std::size_t processes = 0;
    run_figures serial, batch, thread_pipe, process_pipe;
};

/// `repeat` rounds of every way, one after another in each round so that
/// they all see the same machine; the best of each way counts. The machine
/// this runs on is shared, and a round can be slowed by something else.
corun::awaitable<text_figures> text_cases(const std::vector<std::string>& corpus, std::size_t repeat) {
    auto ex = co_await corun::this_executor();
    // The process pool first, while this process has no other threads.
    corun::process_pool processes(ex);
    corun::thread_pool threads(ex);
    text_figures f;
    f.threads = threads.workers();
    f.processes = processes.workers();
    for (std::size_t i = 0; i < repeat; ++i) {
        keep_best(f.serial, serial_run(corpus), i == 0);
        run_figures batch = co_await batch_staged_run(threads, corpus);
        keep_best(f.batch, std::move(batch), i == 0);
        run_figures thread_pipe = co_await pipeline_run(threads, corpus);
        keep_best(f.thread_pipe, std::move(thread_pipe), i == 0);
        run_figures process_pipe = co_await pipeline_run(processes, corpus);
        keep_best(f.process_pipe, std::move(process_pipe), i == 0);
    }
    co_return f;
}

// ------------------------------------------------------------- memory

constexpr std::int64_t rss_items = 10'000'000;

std::int64_t spread(std::int64_t i) {
    return i * 2'654'435'761 % 1'000'003;
}
std::int64_t add_one(std::int64_t x) {
    return x + 1;
}
std::int64_t times_three(std::int64_t x) {
    return x * 3;
}
std::int64_t fold(std::int64_t x) {
    return x ^ (x >> 3);
}

/// The process's resident set now, in KiB (VmRSS of /proc/self/status).
std::size_t rss_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
    throw std::runtime_error("no VmRSS in /proc/self/status");
}

struct rss_figures {
    double start_mib = 0;
    double peak_above_start_mib = 0;
    std::uint64_t items = 0;
    double wall_s = 0;
};

corun::awaitable<rss_figures> rss_case() {
    corun::thread_pool pool(co_await corun::this_executor());
    rss_figures r;
    std::int64_t sum = 0;
    auto add = [&](std::int64_t x) {
        sum += x;
        ++r.items;
    };
    textpipe::reset_peak_rss();
    const std::size_t start_kib = rss_kib();
    const auto t0 = clock_type::now();
    corun::pipeline p(corun::range(rss_items) | std::views::transform(spread),
                      corun::stage("add_one", pool, add_one), corun::stage("times_three", pool, times_three),
                      corun::stage("fold", fold));
    co_await p.for_each(add);
    r.wall_s = seconds_since(t0);
    const std::size_t peak_kib = textpipe::peak_rss_kib();
    if (r.items != static_cast<std::uint64_t>(rss_items) || sum == 0)
        throw std::logic_error("the 10M-item pipeline lost items");
    r.start_mib = start_kib / 1024.0;
    r.peak_above_start_mib = (static_cast<double>(peak_kib) - static_cast<double>(start_kib)) / 1024.0;
    co_return r;
}

// ------------------------------------------------------- coarse items

constexpr long line_items = 200'000;

/// A one-line item: a log line of about 40 characters.
std::string log_line(long i) {
    return "2026-12-01 12:00:00 GET /item/" + std::to_string(i) + " 200";
}
/// The work per item: next to nothing, as for a filter on log lines.
std::size_t line_length(std::string line) {
    return line.size();
}

/// Nanoseconds per item of one way of running `line_length` over the lines.
struct items_figures {
    double serial_ns = 0, inline_ns = 0, thread_ns = 0, thread_batch_ns = 0, process_ns = 0,
           process_batch_ns = 0;
};

corun::awaitable<items_figures> items_case() {
    auto ex = co_await corun::this_executor();
    corun::thread_pool threads(ex);
    corun::process_pool processes(ex);
    items_figures f;
    const auto source = [] { return corun::range(line_items) | std::views::transform(log_line); };
    const auto per_item = [](clock_type::time_point t0) { return seconds_since(t0) * 1e9 / line_items; };
    std::size_t total = 0, expected = 0;
    auto t0 = clock_type::now();
    for (long i = 0; i < line_items; ++i) expected += line_length(log_line(i));
    f.serial_ns = per_item(t0);
    auto add = [&total](std::size_t n) { total += n; };
    const auto run = [&](auto p) -> corun::awaitable<double> {
        total = 0;
        const auto start = clock_type::now();
        co_await p.for_each(add);
        if (total != expected) throw std::logic_error("the line pipeline lost items");
        co_return per_item(start);
    };
    f.inline_ns = co_await run(corun::pipeline(source(), corun::stage("length", line_length)));
    f.thread_ns = co_await run(corun::pipeline(source(), corun::stage("length", threads, line_length)));
    f.thread_batch_ns =
        co_await run(corun::pipeline(source(), corun::stage("length", threads, line_length, {.batch = 512})));
    f.process_ns = co_await run(corun::pipeline(source(), corun::stage("length", processes, line_length)));
    f.process_batch_ns = co_await run(
        corun::pipeline(source(), corun::stage("length", processes, line_length, {.batch = 512})));
    co_return f;
}

// -------------------------------------------------------------- options

struct options {
    std::size_t docs = 10'000;
    std::size_t repeat = 5;
};

std::optional<options> parse(const std::vector<std::string>& args) {
    options o;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--json") continue;
        if (i + 1 == args.size() || (a != "--docs" && a != "--repeat")) return std::nullopt;
        const std::size_t v = std::strtoull(args[++i].c_str(), nullptr, 10);
        if (v == 0) return std::nullopt;
        (a == "--docs" ? o.docs : o.repeat) = v;
    }
    return o;
}

corun_bench::register_case pipeline_case("pipeline", [](const std::vector<std::string>& args) {
    const auto parsed = parse(args);
    if (!parsed) {
        std::fprintf(stderr, "usage: corun-bench pipeline [--docs 10000] [--repeat 5] --json\n");
        return 2;
    }
    const options o = *parsed;
    // The memory case first, before the corpus and the other runs leave the heap grown.
    const rss_figures rss = corun::run(rss_case());

    std::vector<std::string> corpus;
    corpus.reserve(o.docs);
    for (std::size_t i = 0; i < o.docs; ++i) corpus.push_back(textpipe::make_document(i));

    const text_figures f = corun::run(text_cases(corpus, o.repeat));
    const run_figures& serial = f.serial;
    same_counts(f.batch, serial, "batch-staged");
    same_counts(f.thread_pipe, serial, "the thread-pool pipeline");
    same_counts(f.process_pipe, serial, "the process-pool pipeline");

    const auto docs = static_cast<long long>(o.docs);
    const auto per_s = [&](const run_figures& r) { return static_cast<double>(o.docs) / r.wall_s; };
    corun_bench::json_line("pipeline_first_result")
        .add("docs", docs)
        .add("threads", static_cast<long long>(f.threads))
        .add("pipeline_first_ms", f.thread_pipe.first_s * 1e3)
        .add("batch_first_ms", f.batch.first_s * 1e3)
        .add("pipeline_wall_s", f.thread_pipe.wall_s)
        .add("batch_wall_s", f.batch.wall_s)
        .add("ratio", f.thread_pipe.first_s / f.batch.first_s)
        .print();
    corun_bench::json_line thread_line("pipeline_thread");
    thread_line.add("docs", docs)
        .add("threads", static_cast<long long>(f.threads))
        .add("kept", static_cast<long long>(serial.kept))
        .add("words", static_cast<long long>(serial.words))
        .add("pipeline_docs_per_s", per_s(f.thread_pipe))
        .add("serial_docs_per_s", per_s(serial))
        .add("pipeline_wall_s", f.thread_pipe.wall_s)
        .add("serial_wall_s", serial.wall_s)
        .add("ratio", per_s(f.thread_pipe) / per_s(serial));
    add_stages(thread_line, f.thread_pipe);
    thread_line.print();
    corun_bench::json_line process_line("pipeline_process");
    process_line.add("docs", docs)
        .add("workers", static_cast<long long>(f.processes))
        .add("pipeline_docs_per_s", per_s(f.process_pipe))
        .add("pipeline_wall_s", f.process_pipe.wall_s)
        .add("pipeline_first_ms", f.process_pipe.first_s * 1e3);
    add_stages(process_line, f.process_pipe);
    process_line.print();
    corun_bench::json_line("pipeline_rss")
        .add("items", static_cast<long long>(rss.items))
        .add("stages", 3LL)
        .add("rss_start_mib", rss.start_mib)
        .add("peak_rss_above_start_mib", rss.peak_above_start_mib)
        .add("wall_s", rss.wall_s)
        .print();
    const items_figures items = corun::run(items_case());
    corun_bench::json_line("pipeline_items")
        .add("items", static_cast<long long>(line_items))
        .add("serial_ns_per_item", items.serial_ns)
        .add("inline_stage_ns_per_item", items.inline_ns)
        .add("thread_stage_ns_per_item", items.thread_ns)
        .add("thread_stage_batch_512_ns_per_item", items.thread_batch_ns)
        .add("process_stage_ns_per_item", items.process_ns)
        .add("process_stage_batch_512_ns_per_item", items.process_batch_ns)
        .print();
    return 0;
});

}  // namespace
