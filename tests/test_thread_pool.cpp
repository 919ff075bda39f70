#include "corun/thread_pool.hpp"

#include <atomic>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "corun/gather.hpp"
#include "corun/range.hpp"
#include "corun/timeout.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

namespace {
struct custom_error {
    int code;
};
}  // namespace

TEST_CASE("thread_pool offers process_pool's calls with the same results", "[thread_pool]") {
    block_on([]() -> awaitable<void> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
        const long nine = co_await pool.submit(square, 3L);
        CHECK(nine == 9);
        const long five = co_await pool.submit(add, 2L, 3L);
        CHECK(five == 5);
        for (long n : {0L, 1L, 5L, 1001L}) {
            auto out = co_await pool.map(square, corun::range(n));
            REQUIRE(out.size() == static_cast<std::size_t>(n));
            for (long i = 0; i < n; ++i) REQUIRE(out[i] == i * i);
        }
        std::vector<std::pair<long, long>> pairs{{1, 2}, {3, 4}};
        const std::vector<long> sums = co_await pool.starmap(add, pairs);
        CHECK(sums == std::vector<long>{3, 7});
        // What a process pool could not take: a capture by reference.
        std::string seen;
        co_await pool.submit([&seen] { seen = "from a thread"; });
        CHECK(seen == "from a thread");
        auto stream = pool.imap(square, corun::range(100), {.chunksize = 7});
        long expect = 0;
        while (auto v = co_await stream.next()) {
            REQUIRE(*v == expect * expect);
            ++expect;
        }
        CHECK(expect == 100);
        auto unordered = pool.imap_unordered(square, corun::range(50));
        long count = 0;
        while (auto v = co_await unordered.next()) ++count;
        CHECK(count == 50);
    }());
}

TEST_CASE("thread_pool rethrows a task's exception as its own type", "[thread_pool]") {
    block_on([]() -> awaitable<void> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
        CHECK_THROWS_AS(co_await pool.submit([] { throw std::out_of_range("x"); }), std::out_of_range);
        try {
            co_await pool.submit([] { throw custom_error{7}; });
            FAIL("no exception");
        } catch (const custom_error& e) {
            CHECK(e.code == 7);
        }
    }());
}

TEST_CASE("thread_pool delivers results on the caller's executor, callbacks included", "[thread_pool]") {
    const auto loop_thread = std::this_thread::get_id();
    std::vector<std::thread::id> delivered;
    std::vector<long> results;
    block_on([&]() -> awaitable<void> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
        const auto worker = co_await pool.submit([] { return std::this_thread::get_id(); });
        CHECK(worker != loop_thread);
        delivered.push_back(std::this_thread::get_id());
        for (long i = 0; i < 4; ++i)
            pool.submit(square, i, [&](std::exception_ptr, long r) {
                delivered.push_back(std::this_thread::get_id());
                results.push_back(r);
            });
        co_await pool.join();
    }());
    CHECK(results.size() == 4);
    for (auto id : delivered) CHECK(id == loop_thread);

    boost::asio::io_context loop;
    corun::thread_pool pool{loop.get_executor(), {.threads = 1}};
    auto f = pool.submit(square, 12L, boost::asio::use_future);
    loop.run_for(5s);
    CHECK(f.get() == 144);
}

TEST_CASE("a cancelled thread_pool task that has not started never runs", "[thread_pool]") {
    std::atomic<bool> second_ran{false};
    block_on([&]() -> awaitable<void> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 1}};
        auto busy = pool.submit([] { std::this_thread::sleep_for(100ms); });
        auto waiting = corun::with_timeout(10ms, pool.submit([&] { second_ran = true; }));
        auto [a, b] = co_await corun::gather_settled(std::move(busy), std::move(waiting));
        CHECK(a.has_value());
        CHECK_THROWS_AS(b.value(), corun::timeout_error);
        pool.close();
        co_await pool.join();
        CHECK_THROWS_AS(co_await pool.submit(square, 1L), corun::pool_closed);
    }());
    CHECK_FALSE(second_ran);
}

TEST_CASE("thread_pool terminate aborts what has not started; join completes", "[thread_pool]") {
    std::atomic<int> ran{0};
    int aborted = 0;
    block_on([&]() -> awaitable<void> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 1}};
        for (int i = 0; i < 5; ++i)
            pool.submit(
                [&] {
                    std::this_thread::sleep_for(50ms);
                    ++ran;
                },
                [&](std::exception_ptr e) {
                    if (e) ++aborted;
                });
        co_await sleep_for(10ms);
        pool.terminate();
        co_await pool.join();
        co_await sleep_for(10ms);
    }());
    CHECK(ran == 1);  // the one already running could not be stopped
    CHECK(aborted == 4);
}

TEST_CASE("10 000 submits each under a timeout of 0 to 999 us, 64 in flight: every one ends once",
          "[thread_pool]") {
    std::atomic<long> ran{0};
    long values = 0, timeouts = 0;
    block_on_within(60s, [&]() -> awaitable<void> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 2}};
        auto one = [&](long i) -> awaitable<int> {
            try {
                const long v =
                    co_await corun::with_timeout(std::chrono::microseconds(i % 1000), pool.submit(
                                                                                          [&ran](long x) {
                                                                                              ++ran;
                                                                                              return x;
                                                                                          },
                                                                                          i));
                if (v == i) ++values;
            } catch (const corun::timeout_error&) {
                ++timeouts;
            }
            co_return 0;
        };
        co_await corun::gather(corun::range(10'000) | std::views::transform(one), {.limit = 64});
        pool.close();
        co_await pool.join();
    }());
    CHECK(values + timeouts == 10'000);
    CHECK(values <= ran);  // a value is delivered only by a task that ran
    CHECK(ran <= 10'000);
}

TEST_CASE("thread_pool join is cancelled by with_timeout; the task finishes regardless", "[thread_pool]") {
    block_on([]() -> awaitable<void> {
        corun::thread_pool pool{co_await corun::this_executor(), {.threads = 1}};
        auto slow = pool.submit([] {
            std::this_thread::sleep_for(300ms);
            return 3;
        });
        auto waiter = [&]() -> awaitable<int> {
            CHECK_THROWS_AS(co_await corun::with_timeout(50ms, pool.join()), corun::timeout_error);
            co_return 0;
        };
        auto [three, zero] = co_await corun::gather(std::move(slow), waiter());
        CHECK(three == 3);
        CHECK(zero == 0);
        co_await pool.join();
    }());
}
