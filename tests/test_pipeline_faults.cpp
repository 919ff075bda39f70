// corun::pipeline when things go wrong: stage and source errors, worker
// crashes, cancellation from outside, streams stopped early, misuse.
#include "corun/pipeline.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "corun/process_pool.hpp"
#include "corun/range.hpp"
#include "corun/thread_pool.hpp"
#include "corun/timeout.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

namespace {

long sleep_long(long x) {
    sleep(30);
    return x;
}
long crash_on_three(long x) {
    if (x == 3) raise(SIGKILL);
    return x;
}

std::atomic<int> pool_running{0};
long counted_sleep(long x) {
    ++pool_running;
    usleep(static_cast<useconds_t>(x) * 100'000);
    --pool_running;
    return x;
}

/// A source giving the lines of a file, one `co_await next()` at a time.
struct file_lines {
    std::ifstream in;
    awaitable<std::optional<std::string>> next() {
        std::string line;
        if (!std::getline(in, line)) co_return std::nullopt;
        co_return line;
    }
};

}  // namespace

TEST_CASE("an exception in a middle stage cancels the others and is rethrown naming the stage",
          "[pipeline]") {
    cancel_log first;
    std::vector<std::int64_t> reached_last;
    auto e = thrown_within<corun::stage_error>(10s, [&]() -> awaitable<void> {
        auto maybe_slow = [&](std::int64_t i) -> awaitable<std::int64_t> {
            // Item 9 is still in this stage when item 5 fails in the next one.
            if (i == 9) co_return co_await logged_sleep(first);
            co_return i;
        };
        auto check = [](std::int64_t i) -> std::int64_t {
            if (i == 5) throw std::invalid_argument("five is not allowed");
            return i;
        };
        corun::pipeline p(corun::range(1000), corun::stage("first", maybe_slow, {.concurrency = 4}),
                          corun::stage("check", check), corun::stage("last", [&](std::int64_t i) {
                              reached_last.push_back(i);
                              return i;
                          }));
        co_await p.collect();
    }());
    CHECK(e.stage() == "check");
    CHECK(e.index() == 2);
    CHECK(std::string(e.what()).find("'check'") != std::string::npos);
    CHECK(std::string(e.what()).find("five is not allowed") != std::string::npos);
    CHECK_THROWS_AS(std::rethrow_exception(e.cause()), std::invalid_argument);
    CHECK(first.cancelled);
    CHECK_FALSE(first.ran_past_cancellation);
    // Nothing at or after the failed item went on.
    CHECK(std::ranges::all_of(reached_last, [](std::int64_t i) { return i < 5; }));
}

TEST_CASE("cancelling the awaiting coroutine stops every stage, pool work included", "[pipeline]") {
    cancel_log io;
    std::vector<int> pids_before;
    std::vector<int> pids_after;
    bool timed_out = false;
    block_on([&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        pids_before = pool.worker_pids();
        auto wait_long = [&](long x) -> awaitable<long> {
            if (x == 3) co_return co_await logged_sleep(io);
            co_return x;
        };
        corun::pipeline p(std::vector<long>{0, 1, 2, 3}, corun::stage("io", wait_long, {.concurrency = 4}),
                          corun::stage("cpu", pool, sleep_long));
        try {
            co_await corun::with_timeout(300ms, p.collect());
        } catch (const corun::timeout_error&) {
            timed_out = true;
        }
        // The workers that held a sleeping task were killed; wait for their replacements.
        for (int i = 0; i < 500 && pool.worker_pids().size() < 2; ++i) co_await sleep_for(10ms);
        pids_after = pool.worker_pids();
    }());
    CHECK(timed_out);
    CHECK(io.cancelled);
    CHECK_FALSE(io.ran_past_cancellation);
    REQUIRE(pids_before.size() == 2);
    REQUIRE(pids_after.size() == 2);
    for (int pid : pids_before) CHECK(std::ranges::find(pids_after, pid) == pids_after.end());
}

TEST_CASE("a worker that crashes fails the pipeline with the stage's name", "[pipeline]") {
    auto e = thrown_within<corun::stage_error>(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        corun::pipeline p(std::vector<long>{0, 1, 2, 3, 4, 5}, corun::stage("crashy", pool, crash_on_three));
        co_await p.collect();
    }());
    CHECK(e.stage() == "crashy");
    CHECK_THROWS_AS(std::rethrow_exception(e.cause()), corun::worker_crashed);
}

TEST_CASE("a source that throws fails the pipeline as 'source'", "[pipeline]") {
    auto e = thrown_within<corun::stage_error>(10s, []() -> awaitable<void> {
        auto source = corun::range(10) | std::views::transform([](std::int64_t i) {
                          if (i == 4) throw std::runtime_error("bad input");
                          return i;
                      });
        auto later = [](std::int64_t i) -> awaitable<std::int64_t> {
            co_await sleep_for(1ms);
            co_return i;
        };
        corun::pipeline p(source, corun::stage("later", later, {.concurrency = 4}));
        co_await p.collect();
    }());
    CHECK(e.stage() == "source");
    CHECK(e.index() == 0);
    CHECK(std::string(e.what()).find("bad input") != std::string::npos);
}

TEST_CASE("a pipeline is a stream: results one at a time, and close stops it early", "[pipeline]") {
    cancel_log late;
    std::vector<std::int64_t> got;
    block_on([&]() -> awaitable<void> {
        auto work = [&](std::int64_t i) -> awaitable<std::int64_t> {
            if (i >= 3) co_return co_await logged_sleep(late);
            co_return i;
        };
        corun::pipeline p(corun::range(1'000'000'000), corun::stage("work", work, {.concurrency = 4}));
        while (auto v = co_await p.next()) {
            got.push_back(*v);
            if (got.size() == 3) break;
        }
        co_await p.close();
        CHECK_FALSE(co_await p.next());
    }());
    CHECK(got == std::vector<std::int64_t>{0, 1, 2});
    CHECK(late.cancelled);
    CHECK_FALSE(late.ran_past_cancellation);
}

TEST_CASE("an exception from for_each stops the pipeline and comes out as it is", "[pipeline]") {
    cancel_log running;
    block_on([&]() -> awaitable<void> {
        auto work = [&](std::int64_t i) -> awaitable<std::int64_t> {
            if (i == 2) co_return co_await logged_sleep(running);
            co_return i;
        };
        corun::pipeline p(corun::range(100), corun::stage("work", work, {.concurrency = 4}));
        p.with(corun::unordered);
        CHECK_THROWS_AS(co_await p.for_each([](std::int64_t) { throw std::logic_error("stop"); }),
                        std::logic_error);
    }());
    CHECK(running.cancelled);
}

TEST_CASE("cancelling the awaiting coroutine waits until every stage has ended", "[pipeline]") {
    int running = 0;
    // A stage that takes a moment to wind down once cancelled (it finishes a
    // write, closes a connection): item x needs x × 100 ms whatever happens.
    auto orderly = [&running](long x) -> awaitable<long> {
        ++running;
        co_await boost::asio::this_coro::reset_cancellation_state(boost::asio::disable_cancellation());
        co_await sleep_for(x * 100ms);
        --running;
        co_return x;
    };
    SECTION("collect, with a coroutine stage and a thread pool stage") {
        int running_then = -1;
        int pool_running_then = -1;
        bool timed_out = false;
        block_on([&]() -> awaitable<void> {
            corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
            corun::pipeline p(std::vector<long>{1, 2, 3},
                              corun::stage("orderly", orderly, {.concurrency = 3}),
                              corun::stage("sleepy", pool, counted_sleep, {.batch = 1}));
            try {
                co_await corun::with_timeout(150ms, p.collect());
            } catch (const corun::timeout_error&) {
                timed_out = true;
            }
            running_then = running;
            pool_running_then = pool_running;
        }());
        CHECK(timed_out);
        CHECK(running_then == 0);
        CHECK(pool_running_then == 0);
    }
    SECTION("for_each with a coroutine function") {
        int running_then = -1;
        bool timed_out = false;
        block_on([&]() -> awaitable<void> {
            corun::pipeline p(std::vector<long>{0, 3, 3},
                              corun::stage("orderly", orderly, {.concurrency = 3}));
            try {
                co_await corun::with_timeout(
                    50ms, p.for_each([](long) -> awaitable<void> { co_await sleep_for(10s); }));
            } catch (const corun::timeout_error&) {
                timed_out = true;
            }
            running_then = running;
        }());
        CHECK(timed_out);
        CHECK(running_then == 0);
    }
}

TEST_CASE("a second coroutine in next() at once gets an error, the first goes on", "[pipeline]") {
    std::string second_error;
    std::optional<std::int64_t> first;
    block_on([&]() -> awaitable<void> {
        auto ex = co_await corun::this_executor();
        corun::pipeline p(corun::range(1000),
                          corun::stage("slow", [](std::int64_t i) -> awaitable<std::int64_t> {
                              co_await sleep_for(50ms);
                              co_return i;
                          }));
        boost::asio::co_spawn(
            ex, [&]() -> awaitable<void> { first = co_await p.next(); }, boost::asio::detached);
        co_await sleep_for(5ms);
        try {
            co_await p.next();
        } catch (const std::logic_error& e) {
            second_error = e.what();
        }
        while (!first) co_await sleep_for(5ms);
        co_await p.close();
    }());
    CHECK(second_error.find("another coroutine") != std::string::npos);
    CHECK(first == 0);
}

TEST_CASE("a pipeline reads the lines of a file, and an asynchronous source's error names the source",
          "[pipeline]") {
    const std::string path = "test_pipeline_lines.txt";
    {
        std::ofstream out(path);
        for (int i = 0; i < 1000; ++i) out << "line " << i << '\n';
    }
    auto lengths = block_on([&]() -> awaitable<std::vector<std::size_t>> {
        corun::pipeline p(file_lines{std::ifstream(path)},
                          corun::stage("length", [](std::string line) { return line.size(); }));
        co_return co_await p.collect();
    }());
    std::remove(path.c_str());
    REQUIRE(lengths.size() == 1000);
    CHECK(lengths[0] == 6);
    CHECK(lengths[999] == 8);

    auto e = thrown_within<corun::stage_error>(10s, []() -> awaitable<void> {
        int calls = 0;
        auto source = [&calls]() -> awaitable<std::optional<int>> {
            if (++calls == 3) throw std::runtime_error("the feed broke");
            co_return calls;
        };
        corun::pipeline p(source, corun::stage("same", [](int x) { return x; }));
        co_await p.collect();
    }());
    CHECK(e.stage() == "source");
    CHECK(std::string(e.what()).find("the feed broke") != std::string::npos);
}
