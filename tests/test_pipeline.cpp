#include "corun/pipeline.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <optional>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "corun/process_pool.hpp"
#include "corun/range.hpp"
#include "corun/thread_pool.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

namespace {

/// A delay that differs from item to item, so that parallel work finishes
/// out of order: 7, 2, 4, 6, 1, 3, 5, 0 … milliseconds.
std::chrono::milliseconds jitter(std::int64_t i) {
    return std::chrono::milliseconds((i * 5 + 7) % 8);
}

awaitable<std::int64_t> slow_double(std::int64_t i) {
    co_await sleep_for(jitter(i));
    co_return 2 * i;
}

long plus_one(long x) {
    return x + 1;
}
long worker_pid(long) {
    return static_cast<long>(getpid());
}
long sleep_1ms(long x) {
    usleep(1000);
    return x;
}
long sleep_5ms(long x) {
    usleep(5000);
    return x;
}

/// Counts the live instances of the items flowing through, and the peak.
struct counted {
    static inline std::atomic<int> alive = 0;
    static inline std::atomic<int> peak = 0;
    std::int64_t value = 0;
    explicit counted(std::int64_t v) : value(v) { up(); }
    counted(const counted& o) : value(o.value) { up(); }
    counted(counted&& o) noexcept : value(o.value) { up(); }
    counted& operator=(const counted&) = default;
    counted& operator=(counted&&) = default;
    ~counted() { --alive; }
    static void up() {
        const int now = ++alive;
        for (int p = peak; now > p && !peak.compare_exchange_weak(p, now);) {
        }
    }
    static void reset() { alive = peak = 0; }
};

}  // namespace

TEST_CASE("a pipeline gives its results in input order by default", "[pipeline]") {
    auto out = block_on([]() -> awaitable<std::vector<std::int64_t>> {
        corun::pipeline p(corun::range(200), corun::stage("double", slow_double, {.concurrency = 16}),
                          corun::stage("plus one", [](std::int64_t x) { return x + 1; }));
        co_return co_await p.collect();
    }());
    REQUIRE(out.size() == 200);
    for (std::int64_t i = 0; i < 200; ++i) CHECK(out[static_cast<std::size_t>(i)] == 2 * i + 1);
}

TEST_CASE("an unordered pipeline gives results as they are ready", "[pipeline]") {
    auto out = block_on([]() -> awaitable<std::vector<std::int64_t>> {
        // Item i is ready after (5 - i) × 20 ms: the last one first.
        auto late = [](std::int64_t i) -> awaitable<std::int64_t> {
            co_await sleep_for(std::chrono::milliseconds((5 - i) * 20));
            co_return i;
        };
        corun::pipeline p(corun::range(5), corun::stage("late", late, {.concurrency = 5}));
        p.with(corun::unordered);
        co_return co_await p.collect();
    }());
    CHECK(out == std::vector<std::int64_t>{4, 3, 2, 1, 0});
}

TEST_CASE("a serial stage sees the items one at a time in input order", "[pipeline]") {
    std::vector<std::int64_t> seen;
    int running = 0;
    int most_running = 0;
    auto out = block_on([&]() -> awaitable<std::vector<std::int64_t>> {
        auto record = [&](std::int64_t x) -> awaitable<std::int64_t> {
            most_running = std::max(most_running, ++running);
            seen.push_back(x);
            co_await sleep_for(1ms);
            --running;
            co_return x;
        };
        corun::pipeline p(corun::range(100), corun::stage("double", slow_double, {.concurrency = 8}),
                          corun::serial_stage("record", record));
        // Even when the output need not be ordered, the serial stage's input is.
        p.with(corun::unordered);
        co_return co_await p.collect();
    }());
    REQUIRE(seen.size() == 100);
    for (std::size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == 2 * static_cast<std::int64_t>(i));
    CHECK(most_running == 1);
    CHECK(out.size() == 100);
}

TEST_CASE("a serial stage may keep state and filter", "[pipeline]") {
    auto out = block_on([]() -> awaitable<std::vector<std::int64_t>> {
        std::vector<std::int64_t> input{3, 1, 3, 2, 1, 5, 2};
        corun::pipeline p(
            input, corun::stage("same", slow_double),
            corun::serial_stage("dedupe", [seen = std::set<std::int64_t>()](std::int64_t x) mutable {
                return seen.insert(x).second ? std::optional<std::int64_t>(x) : std::nullopt;
            }));
        auto result = co_await p.collect();
        CHECK(p.stats()[2].items_in == 7);
        CHECK(p.stats()[2].items_out == 4);
        co_return result;
    }());
    CHECK(out == std::vector<std::int64_t>{6, 2, 4, 10});
}

TEST_CASE("a filter that drops every item ends the pipeline with nothing", "[pipeline]") {
    for (bool ordered : {true, false}) {
        auto out = block_on([ordered]() -> awaitable<std::vector<std::int64_t>> {
            corun::pipeline p(
                corun::range(10'000),
                corun::stage("none", [](std::int64_t) { return std::optional<std::int64_t>(); }),
                corun::stage("never", [](std::int64_t x) { return x; }));
            p.with({.ordered = ordered, .max_in_flight = 8});
            auto result = co_await p.collect();
            CHECK(p.stats()[1].items_in == 10'000);
            CHECK(p.stats()[2].items_in == 0);
            co_return result;
        }());
        CHECK(out.empty());
    }
}

TEST_CASE("a slow consumer of the stream holds the source back", "[pipeline]") {
    std::int64_t read = 0;
    block_on([&]() -> awaitable<void> {
        auto source = corun::range(1'000'000'000) | std::views::transform([&](std::int64_t i) {
                          ++read;
                          return i;
                      });
        corun::pipeline p(source,
                          corun::stage("pass", [](std::int64_t x) -> awaitable<std::int64_t> { co_return x; },
                                       {.concurrency = 4}));
        p.with({.max_in_flight = 64});
        for (std::int64_t expected = 0; expected < 200; ++expected) {
            auto v = co_await p.next();
            REQUIRE(v);
            CHECK(*v == expected);
            co_await sleep_for(100us);
            CHECK(read <= expected + 1 + 64);
        }
        co_await p.close();
    }());
    CHECK(read < 200 + 64 + 1);
}

TEST_CASE("a slow last stage holds the source back: the items alive stay bounded", "[pipeline]") {
    counted::reset();
    std::int64_t read = 0;
    std::int64_t most_ahead = 0;  // how far the source got ahead of the slow stage
    std::size_t limit = 0;
    block_on([&]() -> awaitable<void> {
        auto source = corun::range(2000) | std::views::transform([&](std::int64_t i) {
                          ++read;
                          return counted(i);
                      });
        auto slow = [&](counted c) -> awaitable<counted> {
            most_ahead = std::max(most_ahead, read - c.value);
            co_await sleep_for(100us);
            co_return c;
        };
        corun::pipeline p(source, corun::stage("pass", [](counted c) { return c; }),
                          corun::stage("slow", slow, {.capacity = 8}));
        p.with({.max_in_flight = 32});
        limit = 32;
        std::int64_t expected = 0;
        co_await p.for_each([&](counted c) { CHECK(c.value == expected++); });
        CHECK(expected == 2000);
    }());
    CHECK(read == 2000);
    INFO("peak live items " << counted::peak << ", source ahead by " << most_ahead);
    // Each item alive in the pipeline is one object, plus a few moved-from
    // copies on their way between a queue and a stage.
    CHECK(counted::peak <= static_cast<int>(limit) + 4);
    CHECK(most_ahead <= static_cast<std::int64_t>(limit));
    CHECK(counted::alive == 0);
}

TEST_CASE("a pipeline over an empty source ends at once", "[pipeline]") {
    auto out = block_on([]() -> awaitable<std::vector<long>> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
        corun::pipeline p(std::vector<long>{}, corun::stage("square", pool, square),
                          corun::stage("io", slow_double));
        auto result = co_await p.collect();
        for (const auto& s : p.stats()) CHECK(s.items_in == 0);
        co_return std::vector<long>(result.begin(), result.end());
    }());
    CHECK(out.empty());
}

TEST_CASE("a pipeline carries 100 000 items through the event loop and a thread pool", "[pipeline]") {
    auto [out,
          stats] = block_on([]() -> awaitable<std::pair<std::vector<long>, std::vector<corun::stage_stats>>> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
        corun::pipeline p(
            corun::range(100'000), corun::stage("square", pool, square), corun::stage("plus one", plus_one),
            corun::stage("io", [](long x) -> awaitable<long> { co_return x; }, {.concurrency = 8}));
        auto result = co_await p.collect();
        co_return std::pair(std::move(result), p.stats());
    }());
    REQUIRE(out.size() == 100'000);
    bool all_right = true;
    for (long i = 0; i < 100'000; ++i) all_right = all_right && out[static_cast<std::size_t>(i)] == i * i + 1;
    CHECK(all_right);
    REQUIRE(stats.size() == 5);
    CHECK(stats[0].name == "source");
    CHECK(stats[1].name == "square");
    CHECK(stats[4].name == "sink");  // collect's: every result taken
    for (const auto& s : stats) {
        CHECK(s.items_in == 100'000);
        CHECK(s.items_out == 100'000);
    }
    // The pool stage batched its items: far fewer tasks than items.
    CHECK(stats[1].tasks < 100'000 / 4);
    CHECK(stats[2].tasks == 100'000);
}

TEST_CASE("one pipeline mixes the event loop, a process pool and a thread pool", "[pipeline]") {
    std::set<long> pids;
    auto out = block_on([&]() -> awaitable<std::vector<long>> {
        auto ex = co_await corun::this_executor();
        corun::process_pool processes{ex, {.workers = 2}};
        corun::thread_pool threads{ex, {.threads = 2}};
        auto fetch = [](long i) -> awaitable<long> {
            co_await sleep_for(std::chrono::milliseconds(i % 3));
            co_return i;
        };
        corun::pipeline p(corun::range(300) | std::views::transform([](std::int64_t i) { return long(i); }),
                          corun::stage("fetch", fetch, {.concurrency = 8}),
                          corun::stage("square", processes, square),
                          corun::stage("plus one", threads, plus_one));
        auto squares = co_await p.collect();
        corun::pipeline q(corun::range(20) | std::views::transform([](std::int64_t i) { return long(i); }),
                          corun::stage("pid", processes, worker_pid, {.batch = 1}));
        for (long pid : co_await q.collect()) pids.insert(pid);
        co_return squares;
    }());
    REQUIRE(out.size() == 300);
    for (long i = 0; i < 300; ++i) CHECK(out[static_cast<std::size_t>(i)] == i * i + 1);
    CHECK(pids.count(static_cast<long>(getpid())) == 0);
    CHECK(!pids.empty());
}

TEST_CASE("the sink has a row of its own in stats(): what the consumer took and its time", "[pipeline]") {
    auto [consumed, streamed] =
        block_on([]() -> awaitable<std::pair<corun::stage_stats, corun::stage_stats>> {
            corun::pipeline p(corun::range(10), corun::stage("plus one", plus_one));
            long sum = 0;
            co_await p.for_each([&sum](long x) -> awaitable<void> {
                co_await sleep_for(2ms);  // a slow consumer
                sum += x;
            });
            CHECK(sum == 55);
            REQUIRE(p.stats().size() == 3);
            corun::pipeline q(corun::range(7), corun::stage("plus one", plus_one));
            while (auto v = co_await q.next()) {
            }
            co_return std::pair(p.stats().back(), q.stats().back());
        }());
    CHECK(consumed.name == "sink");
    CHECK(consumed.items_in == 10);
    CHECK(consumed.items_out == 10);
    CHECK(consumed.tasks == 10);
    CHECK(consumed.busy >= 20ms);
    CHECK(streamed.items_in == 7);
    CHECK(streamed.tasks == 0);
}

TEST_CASE("a pool stage's busy time is its work in the pool, not its wait in the queue", "[pipeline]") {
    for (int kind = 0; kind < 2; ++kind) {
        auto stats = block_on([kind]() -> awaitable<std::vector<corun::stage_stats>> {
            auto ex = co_await corun::this_executor();
            auto run = [](auto& pool) -> awaitable<std::vector<corun::stage_stats>> {
                // Both stages share the pool: each one's tasks queue behind the other's.
                corun::pipeline p(std::vector<long>(40, 1L), corun::stage("fast", pool, sleep_1ms),
                                  corun::stage("slow", pool, sleep_5ms));
                co_await p.collect();
                co_return p.stats();
            };
            if (kind == 0) {
                corun::process_pool pool{ex, {.workers = 2}};
                co_return co_await run(pool);
            }
            corun::thread_pool pool{ex, {.threads = 2}};
            co_return co_await run(pool);
        }());
        INFO((kind == 0 ? "process pool" : "thread pool")
             << ": fast " << stats[1].busy.count() << " ns, slow " << stats[2].busy.count() << " ns");
        CHECK(stats[1].busy >= 40ms);
        CHECK(stats[2].busy >= 200ms);
        CHECK(stats[2].busy > 3 * stats[1].busy);
    }
}

TEST_CASE("a pipeline reads asynchronous sources: a stream and a function", "[pipeline]") {
    auto [from_stream, from_function] =
        block_on([]() -> awaitable<std::pair<std::vector<long>, std::vector<long>>> {
            corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
            auto squares = pool.imap(
                square, corun::range(50) | std::views::transform([](std::int64_t i) { return long(i); }));
            corun::pipeline p(std::move(squares), corun::stage("plus one", plus_one));
            auto a = co_await p.collect();
            long next = 0;
            auto count_to_ten = [&next]() -> awaitable<std::optional<long>> {
                co_await sleep_for(1ms);
                if (next == 10) co_return std::nullopt;
                co_return next++;
            };
            corun::pipeline q(count_to_ten, corun::stage("square", pool, square));
            auto b = co_await q.collect();
            co_return std::pair(std::move(a), std::move(b));
        }());
    REQUIRE(from_stream.size() == 50);
    for (long i = 0; i < 50; ++i) CHECK(from_stream[static_cast<std::size_t>(i)] == i * i + 1);
    CHECK(from_function == std::vector<long>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81});
}

TEST_CASE("a pipeline written in one expression works", "[pipeline]") {
    auto out = block_on([]() -> awaitable<std::vector<std::int64_t>> {
        co_return co_await corun::pipeline(corun::range(5), corun::stage("double", slow_double)).collect();
    }());
    CHECK(out == std::vector<std::int64_t>{0, 2, 4, 6, 8});
}

TEST_CASE("a coroutine stage may take its item by reference", "[pipeline]") {
    std::vector<std::string> in;
    for (int i = 0; i < 8; ++i) in.push_back("item number " + std::to_string(i) + std::string(40, '.'));
    auto out = block_on([&]() -> awaitable<std::vector<std::string>> {
        auto echo = [](const std::string& s) -> awaitable<std::string> {
            co_await sleep_for(1ms);
            co_return s;
        };
        corun::pipeline p(in, corun::stage("echo", echo, {.concurrency = 4}),
                          corun::serial_stage("echo in order", echo));
        co_return co_await p.collect();
    }());
    CHECK(out == in);
}

TEST_CASE("the default bounds keep a long pipeline's items to a few hundred", "[pipeline]") {
    counted::reset();
    block_on([&]() -> awaitable<void> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
        auto fetch = [](std::int64_t i) -> awaitable<counted> {
            co_await sleep_for(100us);
            co_return counted(i);
        };
        auto touch = [](const counted& c) { return c; };
        corun::pipeline p(corun::range(5000), corun::stage("fetch", fetch, {.concurrency = 16}),
                          corun::stage("stop words", pool, touch), corun::stage("stem", pool, touch),
                          corun::serial_stage("dedupe", [](counted c) { return c; }));
        co_await p.for_each([](counted) -> awaitable<void> { co_await sleep_for(200us); });  // a slowish sink
    }());
    INFO("peak live items with the default options: " << counted::peak);
    // Twice what the stages can have in flight (16 + 2 × 4 tasks × 32 items +
    // 1) plus 16 is 562 items alive, against 5000 in the source. A pool task
    // holds an item twice while it makes the result: up to 2 × 4 × 32 more objects.
    CHECK(counted::peak <= 562 + 256);
    CHECK(counted::alive == 0);
}
