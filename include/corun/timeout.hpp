// corun::with_timeout — bound an awaitable in time, cancelling it for real.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <utility>

#include <boost/asio/steady_timer.hpp>

#include "corun/awaitable.hpp"
#include "corun/detail/child_group.hpp"
#include "corun/detail/child_task.hpp"

namespace corun {

/// Thrown by `with_timeout` once the timed-out operation has been cancelled and
/// has finished.
class CORUN_API timeout_error : public std::runtime_error {
public:
    explicit timeout_error(std::chrono::nanoseconds after);
    std::chrono::nanoseconds after() const noexcept { return m_after; }

private:
    std::chrono::nanoseconds m_after;
};

namespace detail {

template <class T>
struct timeout_state {
    using V = value_or_monostate<T>;

    explicit timeout_state(const executor& ex) : timer(ex) {}

    struct sink {
        timeout_state* self;
        void done(V&& v) const { self->value.emplace(std::move(v)); }
        void failed(std::exception_ptr e) const { self->error = std::move(e); }
    };
    void child_exit(std::size_t slot) {
        group.close(slot);
        timer.cancel();
        if (group.pending() == 0) group.notify();
    }
    void timer_fired(const boost::system::error_code& ec) {
        if (!ec && !value && !error) {
            timed_out = true;
            group.cancel_all();
        }
        group.release();
        if (group.pending() == 0) group.notify();
    }

    child_group group;
    asio::steady_timer timer;
    std::optional<V> value;
    std::exception_ptr error;
    bool timed_out = false;
};

}  // namespace detail

/// `with_timeout(duration, op)` → `op`'s value, or `timeout_error`.
///
/// `op` starts at once. When the time is up first, `op` is cancelled
/// (terminal) and awaited, and only then is `timeout_error` thrown, so nothing
/// it started is still running. If `op` still delivers a value despite the
/// cancellation, that value is returned: nothing delivered is lost.
/// Cancelling the `co_await` cancels `op` and the timer alike.
///
/// @code
/// auto page = co_await corun::with_timeout(2s, client.get(url));
/// @endcode
template <class Rep, class Period, class T>
awaitable<T> with_timeout(std::chrono::duration<Rep, Period> timeout, awaitable<T> op) {
    executor ex = co_await this_executor();
    detail::timeout_state<T> s(ex);
    detail::spawn_child(ex, s.group, &s, typename detail::timeout_state<T>::sink{&s}, std::move(op));
    s.group.hold();
    s.timer.expires_after(timeout);
    s.timer.async_wait([&s](const boost::system::error_code& ec) { s.timer_fired(ec); });
    co_await s.group.async_wait();
    if (s.value) {
        if constexpr (std::is_void_v<T>) {
            co_return;
        } else {
            co_return std::move(*s.value);
        }
    }
    if (s.group.cancelled_from_outside()) std::rethrow_exception(s.error);
    if (s.timed_out) throw timeout_error(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
    std::rethrow_exception(s.error);
}

}  // namespace corun
