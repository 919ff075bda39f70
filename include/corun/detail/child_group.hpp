// The bookkeeping shared by every combinator that runs children concurrently.
#pragma once

#include <cstddef>
#include <deque>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>

#include "corun/awaitable.hpp"
#include "corun/detail/erased_handler.hpp"

namespace corun::detail {

/// The children started by one awaiting coroutine: one cancellation signal per
/// running child (reused once it finishes, so a `limit` bounds them), a count
/// of what is still pending, and the one coroutine waiting on them.
///
/// It lives in the awaiting coroutine's frame (or a state that frame owns),
/// which cannot resume before `async_wait` completes, so the children refer to
/// it by plain pointer. Everything runs on one strand: the awaiting coroutine's
/// executor, where the children are spawned too.
class CORUN_API child_group {
public:
    child_group() = default;
    child_group(const child_group&) = delete;
    child_group& operator=(const child_group&) = delete;
    ~child_group();

    /// Reserves a cancellation slot for a child about to start; it counts as
    /// pending until `close(id)`.
    std::size_t open();
    asio::cancellation_slot slot(std::size_t id) { return m_children[id].signal.slot(); }
    void close(std::size_t id);

    /// Something other than a child (a timer) the waiter must also outlast.
    void hold() noexcept { ++m_pending; }
    void release() noexcept { --m_pending; }

    std::size_t pending() const noexcept { return m_pending; }

    /// Emits `type` to every running child and remembers that the group is
    /// stopping, so no new child should be started.
    void cancel_all(asio::cancellation_type type = asio::cancellation_type::terminal);
    bool stopping() const noexcept { return m_stopping; }
    /// True when the cancellation came from the awaiting coroutine itself.
    bool cancelled_from_outside() const noexcept { return m_outside_cancel; }

    /// Completes the wait in progress, or the next one at once.
    void notify();

    /// Waits for `notify()`. A cancellation of the wait is forwarded to every
    /// child (`cancel_all`); the wait itself still completes only by `notify`,
    /// so the awaiting coroutine never resumes while a child it started runs.
    template <class Token = use_awaitable_t>
    auto async_wait(Token&& token = {}) {
        return asio::async_initiate<Token, void()>(
            [this](auto handler) { start_wait(erased_handler<>(std::move(handler))); }, token);
    }

private:
    struct child {
        asio::cancellation_signal signal;
        bool running = false;
    };
    void start_wait(erased_handler<> handler);

    std::deque<child> m_children;
    std::vector<std::size_t> m_free;
    std::size_t m_pending = 0;
    bool m_stopping = false;
    bool m_outside_cancel = false;
    bool m_notified = false;
    erased_handler<> m_waiter;
};

/// Throws `boost::system::system_error(operation_aborted)`.
[[noreturn]] CORUN_API void throw_cancelled();

/// Throws `operation_aborted` if the awaiting coroutine has been cancelled
/// already: a combinator checks before starting children, so that Asio's
/// throw-if-cancelled on its next `co_await` cannot strand them.
inline awaitable<void> ensure_not_cancelled() {
    asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) throw_cancelled();
}

}  // namespace corun::detail
