// Test helpers: run a coroutine with a deadline, and small coroutine tools.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "corun/awaitable.hpp"
#include "corun/run.hpp"

namespace corun_test {

using namespace std::chrono_literals;

/// Runs `main` on a fresh event loop like corun::run, but fails the test
/// instead of hanging when it has not finished within `deadline`.
template <class T>
T block_on_within(std::chrono::milliseconds deadline, corun::awaitable<T> main) {
    boost::asio::io_context loop{1};
    corun::detail::run_outcome<T> outcome;
    corun::detail::spawn_main(loop, std::move(main), outcome);
    loop.run_for(deadline);
    if (!outcome.finished) FAIL("the coroutine did not finish within " << deadline.count() << " ms");
    return outcome.get();
}

template <class T>
T block_on(corun::awaitable<T> main) {
    return block_on_within(std::chrono::milliseconds(20'000), std::move(main));
}

/// Runs `main` like `block_on_within`, expecting it to throw `E`; returns the
/// exception so that the test can look at it. Any other exception, a hang, or
/// no exception at all fails the test.
template <class E, class T>
E thrown_within(std::chrono::milliseconds deadline, corun::awaitable<T> main) {
    std::optional<E> caught;
    try {
        block_on_within(deadline, std::move(main));
    } catch (const E& e) {
        caught.emplace(e);
    }
    INFO("expected the coroutine to throw");
    REQUIRE(caught.has_value());
    return std::move(*caught);
}

/// Burns CPU for ever. The empty asm statement keeps it a loop: an empty
/// `for (;;) {}` has no side effects, and clang may remove it.
[[noreturn]] inline void spin_forever() {
    for (;;) __asm__ __volatile__("" ::: "memory");
}

/// Plain functions for pool tests: they may cross to a worker process.
inline long square(long x) {
    return x * x;
}
inline long add(long a, long b) {
    return a + b;
}

/// Allocates `n` bytes and touches every page (through a volatile pointer, so
/// that the allocation cannot be optimised away); returns `n`.
inline std::size_t allocate_and_touch(std::size_t n) {
    std::vector<char> block(n);
    volatile char* p = block.data();
    for (std::size_t i = 0; i < n; i += 4096) p[i] = 1;
    return block.size();
}

/// Suspends the calling coroutine for `d` on a timer (cancellable).
inline corun::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
    boost::asio::steady_timer t(co_await corun::this_executor(), d);
    co_await t.async_wait(corun::use_awaitable);
}

/// `v`, after `d`.
inline corun::awaitable<int> after(std::chrono::milliseconds d, int v) {
    co_await sleep_for(d);
    co_return v;
}

/// What happened to an operation that was meant to be cancelled.
struct cancel_log {
    bool cancelled = false;              // it saw operation_aborted
    bool finished = false;               // it has ended, one way or the other
    bool ran_past_cancellation = false;  // it carried on as if nothing happened
};

/// Sleeps `d` (long, so that it can only end early by being cancelled), then returns 42.
inline corun::awaitable<int> logged_sleep(cancel_log& log, std::chrono::milliseconds d = 10s) {
    try {
        co_await sleep_for(d);
    } catch (const boost::system::system_error& e) {
        log.cancelled = e.code() == boost::asio::error::operation_aborted;
        log.finished = true;
        throw;
    }
    log.ran_past_cancellation = true;
    log.finished = true;
    co_return 42;
}

}  // namespace corun_test
