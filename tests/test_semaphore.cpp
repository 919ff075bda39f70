#include "corun/semaphore.hpp"

#include <vector>

#include "corun/gather.hpp"
#include "corun/timeout.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

TEST_CASE("semaphore serves waiters first come, first served", "[semaphore]") {
    corun::semaphore sem{1};
    std::vector<int> order;
    auto worker = [&](int id, std::chrono::milliseconds start) -> awaitable<void> {
        co_await sleep_for(start);
        auto held = co_await sem.acquire();
        order.push_back(id);
        co_await sleep_for(3ms);
    };
    block_on(corun::gather(worker(0, 0ms), worker(1, 1ms), worker(2, 2ms), worker(3, 3ms)));
    CHECK(order == std::vector<int>{0, 1, 2, 3});
    CHECK(sem.available() == 1);
}

TEST_CASE("semaphore bounds how many coroutines hold it", "[semaphore]") {
    corun::semaphore sem{3};
    int inside = 0, most = 0;
    auto worker = [&](std::int64_t) -> awaitable<void> {
        auto held = co_await sem.acquire();
        most = std::max(most, ++inside);
        co_await sleep_for(1ms);
        --inside;
    };
    std::vector<awaitable<void>> all;
    for (int i = 0; i < 20; ++i) all.push_back(worker(i));
    block_on(corun::gather(std::move(all)));
    CHECK(most == 3);
}

TEST_CASE("try_acquire never jumps the queue of waiters", "[semaphore]") {
    corun::semaphore sem{1};
    block_on([&]() -> awaitable<void> {
        auto held = co_await sem.acquire();
        bool waiter_got_it = false;
        auto waiter = [&]() -> awaitable<void> {
            auto g = co_await sem.acquire();
            waiter_got_it = true;
        };
        auto releaser = [&]() -> awaitable<void> {
            co_await sleep_for(1ms);
            CHECK(sem.waiting() == 1);
            held.reset();
            CHECK_FALSE(sem.try_acquire());  // the unit belongs to the waiter
        };
        co_await corun::gather(waiter(), releaser());
        CHECK(waiter_got_it);
        CHECK(sem.available() == 1);
    }());
}

TEST_CASE("a cancelled acquire leaves the queue and takes no unit", "[semaphore]") {
    corun::semaphore sem{1};
    std::vector<int> order;
    block_on([&]() -> awaitable<void> {
        auto held = co_await sem.acquire();
        auto impatient = [&]() -> awaitable<void> {
            try {
                [[maybe_unused]] auto never = co_await corun::with_timeout(2ms, sem.acquire());
                order.push_back(1);
            } catch (const corun::timeout_error&) {
                order.push_back(-1);
            }
        };
        auto patient = [&]() -> awaitable<void> {
            auto g = co_await sem.acquire();
            order.push_back(2);
        };
        auto releaser = [&]() -> awaitable<void> {
            co_await sleep_for(10ms);
            CHECK(sem.waiting() == 1);
            held.reset();
        };
        co_await corun::gather(impatient(), patient(), releaser());
    }());
    CHECK(order == std::vector<int>{-1, 2});
    CHECK(sem.available() == 1);
}
