// corun::semaphore — an asynchronous counting semaphore for coroutines.
#pragma once

#include <cstddef>
#include <list>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/system/error_code.hpp>

#include "corun/awaitable.hpp"
#include "corun/detail/erased_handler.hpp"

namespace corun {

/// A counting semaphore whose `acquire` suspends the coroutine instead of
/// blocking the thread: the way to guard shared state or cap concurrency.
///
/// - Fair: waiters are served strictly first come, first served; a unit
///   released while some coroutine waits goes to the oldest waiter, and
///   `try_acquire` never jumps the queue.
/// - Cancellable: cancelling a pending acquire (Asio cancellation slot, `||`
///   with a timer, `with_timeout`) removes the waiter from the queue; it then
///   fails with `operation_aborted` and takes no unit.
/// - Not thread-safe: use it from one strand (a `corun::run` event loop is one).
///
/// @code
/// corun::semaphore sem{4};
/// auto held = co_await sem.acquire();   // released when `held` goes
/// @endcode
class CORUN_API semaphore {
public:
    /// Releases its unit when destroyed; move-only.
    class [[nodiscard]] guard {
    public:
        explicit guard(semaphore& s) noexcept : m_sem(&s) {}
        guard(guard&& o) noexcept : m_sem(std::exchange(o.m_sem, nullptr)) {}
        guard& operator=(guard&& o) noexcept {
            if (this != &o) {
                reset();
                m_sem = std::exchange(o.m_sem, nullptr);
            }
            return *this;
        }
        ~guard() { reset(); }
        void reset() noexcept {
            if (m_sem) std::exchange(m_sem, nullptr)->release();
        }

    private:
        semaphore* m_sem;
    };

    explicit semaphore(std::size_t initial) noexcept : m_available(initial) {}
    semaphore(const semaphore&) = delete;
    semaphore& operator=(const semaphore&) = delete;
    /// Pending waiters fail with `operation_aborted`.
    ~semaphore();

    /// Takes a unit at once if one is free and nobody is waiting.
    bool try_acquire() noexcept;
    /// Returns `n` units, waking waiters in order (their resumption is posted).
    void release(std::size_t n = 1);

    /// Waits for a unit; completes with `error_code` (`operation_aborted` when
    /// cancelled). The raw Asio form, for any completion token.
    template <class Token = use_awaitable_t>
    auto async_acquire(Token&& token = {}) {
        return asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { start_acquire(handler_type(std::move(handler))); }, token);
    }

    /// `co_await sem.acquire()` → a guard holding one unit.
    awaitable<guard> acquire() {
        co_await async_acquire(use_awaitable);
        co_return guard(*this);
    }

    std::size_t available() const noexcept { return m_available; }
    std::size_t waiting() const noexcept { return m_waiters.size(); }

private:
    using handler_type = detail::erased_handler<boost::system::error_code>;
    void start_acquire(handler_type handler);

    std::size_t m_available;
    std::list<handler_type> m_waiters;
};

}  // namespace corun
