// corun-tour — the comparisons of the multiprocessing-and-pipelines notebook
// corun grew from, done natively. Each section is one idea of the notebook.
#include <corun/corun.hpp>

#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <ranges>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "httpbin/httpbin.hpp"
#include "textpipe/text.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

/// Dummy function standing for a complex computation, as in the notebook.
long square(long x) {
    std::printf("x: %ld pid: %d\n", x, static_cast<int>(getpid()));
    std::fflush(stdout);
    std::this_thread::sleep_for(1s);  // simulate a long calculation
    return x * x;
}

/// The same computation as a coroutine: it waits on a timer instead of
/// blocking, so the event loop runs the others meanwhile.
corun::awaitable<long> square_async(long x) {
    std::printf("x: %ld pid: %d\n", x, static_cast<int>(getpid()));
    std::fflush(stdout);
    boost::asio::steady_timer timer(co_await corun::this_executor(), 1s);
    co_await timer.async_wait(corun::use_awaitable);
    co_return x* x;
}

template <class Range>
std::string list(const Range& values) {
    std::ostringstream out;
    out << '[';
    const char* sep = "";
    for (const auto& v : values) out << std::exchange(sep, ", ") << v;
    out << ']';
    return out.str();
}

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

void heading(const char* title) {
    std::printf("\n== %s ==\n", title);
}

void sequential() {
    heading("Ordinary sequential execution");
    const auto start = clock_type::now();
    std::vector<long> results;
    for (long i : corun::range(5)) results.push_back(square(i));
    std::printf("execution time: %.4f\n%s\n", seconds_since(start), list(results).c_str());
}

corun::awaitable<void> concurrent() {
    heading("Coroutines on one event loop: corun::gather");
    const auto start = clock_type::now();
    std::vector<long> results = co_await corun::gather(corun::range(5) | std::views::transform(square_async));
    std::printf("execution time: %.4f\n%s\n", seconds_since(start), list(results).c_str());
}

/// Python's `Pool()` has a worker per core; the notebook's machine had at
/// least five, so the tour asks for five to show the same one-second result
/// on any machine.
const corun::process_pool_options five_workers{.workers = 5};

corun::awaitable<void> pool_submit() {
    heading("Process pool: submit with a callback (apply_async)");
    const auto start = clock_type::now();
    std::vector<long> results;
    {
        corun::process_pool pool{co_await corun::this_executor(), five_workers};
        for (long i : corun::range(5))
            pool.submit(square, i, [&results](std::exception_ptr, long r) { results.push_back(r); });
        pool.close();          // no more tasks
        co_await pool.join();  // wait for the ones submitted
    }
    std::printf("execution time: %.4f\n%s   <- in completion order: not sorted\n", seconds_since(start),
                list(results).c_str());
}

corun::awaitable<void> pool_map() {
    heading("Process pool: map");
    const auto start = clock_type::now();
    corun::process_pool pool{co_await corun::this_executor(), five_workers};
    std::vector<long> results = co_await pool.map(square, corun::range(5), {.chunksize = 1});
    std::printf("execution time: %.4f\n%s   <- in input order\n", seconds_since(start),
                list(results).c_str());
}

/// The notebook's pipelines: rather than every document through "remove
/// stop words", then every document through "stem" and so on, each document
/// goes on to the next step as soon as it is through one, while the next
/// document is in the first step.
corun::awaitable<void> pipelines() {
    heading("Pipelines: remove stop words -> stem -> remove duplicates, per document");
    corun::process_pool pool{co_await corun::this_executor()};
    auto docs =
        corun::range(4000) | std::views::transform([](std::int64_t i) { return textpipe::make_document(i); });

    // Until now: one step over all documents, then the next step.
    auto start = clock_type::now();
    auto words = co_await pool.map(textpipe::remove_stop_words, docs);
    auto stems = co_await pool.map(textpipe::stem, words);
    textpipe::deduper dedupe;
    std::size_t kept = 0;
    for (auto& s : stems) kept += dedupe(std::move(s)).has_value();
    const double batch_all = seconds_since(start);
    std::printf("step by step: first document done after %.3f s, all %zu after %.3f s\n", batch_all, kept,
                batch_all);

    // A pipeline: the steps joined per document.
    start = clock_type::now();
    std::optional<double> first;
    kept = 0;
    corun::pipeline p(docs, corun::stage("remove stop words", pool, textpipe::remove_stop_words),
                      corun::stage("stem", pool, textpipe::stem),
                      corun::serial_stage("dedupe", textpipe::deduper{}));
    co_await p.for_each([&](const std::vector<std::string>&) {
        if (!first) first = seconds_since(start);
        ++kept;
    });
    std::printf("pipeline:     first document done after %.3f s, all %zu after %.3f s\n", *first, kept,
                seconds_since(start));
    for (const corun::stage_stats& s : p.stats())
        std::printf("  %-18s %5llu in %5llu out %5llu tasks\n", s.name.c_str(),
                    static_cast<unsigned long long>(s.items_in), static_cast<unsigned long long>(s.items_out),
                    static_cast<unsigned long long>(s.tasks));
}

/// The notebook's student task: read a web source ten times, one read after
/// another, then all at once. An embedded httpbin that waits 100 ms before
/// every response stands in for the round trip to httpbin.org, so it runs offline.
corun::awaitable<void> student_task(std::string url) {
    heading("Student task: read a web source ten times");
    const corun::executor ex = co_await corun::this_executor();
    corun::http::client http{ex};
    auto read_page = [&http, &url](std::int64_t) { return http.get(url); };

    auto start = clock_type::now();
    for (std::int64_t i : corun::range(10)) co_await read_page(i);
    const double serial = seconds_since(start);

    start = clock_type::now();
    co_await corun::gather(corun::range(10) | std::views::transform(read_page));
    const double parallel = seconds_since(start);

    std::printf("serial: %.4f\nparallel: %.4f\nspeedup: %.1fx, on one thread\n", serial, parallel,
                serial / parallel);
}

void read_a_web_source() {
    // Started last: the pools above were made while the process had one
    // thread, and the server runs on a thread of its own.
    httpbin::background_server server{{.latency = 100ms}};
    corun::run(student_task(server.base_url() + "/bytes/1024"));
}

}  // namespace

int main() {
    std::printf("corun tour: the notebook's comparisons, natively\n");
    sequential();
    corun::run(concurrent());
    corun::run(pool_submit());
    corun::run(pool_map());
    std::printf("\nEach pool worker is its own process: note the distinct pids above.\n");
    corun::run(pipelines());
    read_a_web_source();
    return 0;
}
