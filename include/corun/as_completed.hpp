// corun::as_completed — results one at a time, in the order children finish.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <ranges>
#include <utility>

#include "corun/awaitable.hpp"
#include "corun/detail/child_group.hpp"
#include "corun/detail/child_task.hpp"
#include "corun/gather.hpp"
#include "corun/settled.hpp"

namespace corun {

/// One finished child of `as_completed`: its outcome and its input index.
template <class T>
struct completion : settled<T> {
    completion(std::size_t i, settled<T> outcome) : settled<T>(std::move(outcome)), index(i) {}
    std::size_t index;
};

namespace detail {

/// Runs the children of a range, at most `limit` running or finished but
/// unread, and hands their outcomes out in completion order, or in input
/// order when `Ordered` (the basis of `imap`: an early result waits for the
/// ones before it, and still counts against the limit, so memory stays flat).
template <class View, bool Ordered = false>
class as_completed_state : public std::enable_shared_from_this<as_completed_state<View, Ordered>> {
public:
    using T = range_awaitable_value_t<View>;
    using V = value_or_monostate<T>;

    as_completed_state(View view, std::size_t limit)
        : m_view(std::move(view)), m_it(std::ranges::begin(m_view)), m_limit(limit) {}

    struct sink {
        as_completed_state* self;
        std::size_t index;
        void done(V&& value) const {
            if constexpr (std::is_void_v<T>) {
                self->store(index, settled<T>());
            } else {
                self->store(index, settled<T>(std::move(value)));
            }
        }
        void failed(std::exception_ptr error) const { self->store(index, std::move(error)); }
    };

    void child_exit(std::size_t slot) {
        m_group.close(slot);
        m_group.notify();
        if (m_group.pending() == 0) m_keep_alive.reset();  // may destroy *this: nothing after it
    }

    awaitable<std::optional<completion<T>>> next() {
        if (!m_ex) {
            m_ex = co_await this_executor();
            launch();
        }
        while (!next_ready()) {
            // A cancelled next() stopped the stream: say so rather than end
            // it as if every child had been seen.
            if (m_group.cancelled_from_outside()) throw_cancelled();
            if (m_group.pending() == 0) co_return std::nullopt;
            co_await m_group.async_wait();
            // This call was cancelled: what arrived meanwhile stays for the next.
            if (m_group.cancelled_from_outside()) throw_cancelled();
        }
        std::optional<completion<T>> out(std::move(*m_ready.front()));
        m_ready.pop_front();
        --m_unread;
        ++m_next_out;
        launch();
        co_return out;
    }

    awaitable<void> close() {
        m_group.cancel_all();
        while (m_group.pending() != 0) co_await m_group.async_wait();
        m_ready.clear();
        m_unread = 0;
    }

    /// The stream was dropped with children still running: cancel them and let
    /// the last one to finish free the state.
    void abandon() {
        if (m_group.pending() == 0) return;
        m_group.cancel_all();
        m_keep_alive = this->shared_from_this();
    }

private:
    /// Completion order: a queue. Input order: slot `i - m_next_out` of the
    /// queue belongs to child `i`, filled whenever it finishes.
    void store(std::size_t index, settled<T> outcome) {
        ++m_unread;
        if constexpr (Ordered) {
            const std::size_t at = index - m_next_out;
            if (m_ready.size() <= at) m_ready.resize(at + 1);
            m_ready[at].emplace(index, std::move(outcome));
        } else {
            m_ready.emplace_back(std::in_place, index, std::move(outcome));
        }
    }
    bool next_ready() const { return !m_ready.empty() && m_ready.front().has_value(); }

    void launch() {
        while (!m_group.stopping() && m_it != std::ranges::end(m_view) &&
               (m_limit == 0 || m_group.pending() + m_unread < m_limit)) {
            const std::size_t index = m_next++;
            std::optional<awaitable<T>> child;
            try {
                auto&& made = *m_it;  // user code: a failure is that child's outcome
                child.emplace(std::move(made));
            } catch (...) {
                sink{this, index}.failed(std::current_exception());
                ++m_it;
                continue;
            }
            spawn_child(*m_ex, m_group, this, sink{this, index}, std::move(*child));
            ++m_it;
        }
    }

    View m_view;
    std::ranges::iterator_t<View> m_it;
    std::size_t m_limit;
    std::size_t m_next = 0;
    std::optional<executor> m_ex;
    child_group m_group;
    std::deque<std::optional<completion<T>>> m_ready;
    std::size_t m_unread = 0;
    std::size_t m_next_out = 0;
    std::shared_ptr<as_completed_state> m_keep_alive;
};

}  // namespace detail

/// The stream `as_completed` returns: `co_await next()` until it gives
/// `std::nullopt`.
template <class View, bool Ordered = false>
class as_completed_stream {
public:
    using value_type = completion<detail::range_awaitable_value_t<View>>;

    as_completed_stream(View view, std::size_t limit)
        : m_state(std::make_shared<detail::as_completed_state<View, Ordered>>(std::move(view), limit)) {}
    as_completed_stream(as_completed_stream&&) noexcept = default;
    as_completed_stream& operator=(as_completed_stream&&) = delete;
    ~as_completed_stream() {
        if (m_state) m_state->abandon();
    }

    /// The next child to finish, with its index; `std::nullopt` when all have.
    /// The first call starts the children, on the awaiting coroutine's executor.
    awaitable<std::optional<value_type>> next() { return m_state->next(); }

    /// Cancels the children still running and waits until they have finished.
    awaitable<void> close() { return m_state->close(); }

private:
    std::shared_ptr<detail::as_completed_state<View, Ordered>> m_state;
};

/// `as_completed(range, {.limit = N})` → a stream of `completion<T>` (the
/// outcome plus its input index) in the order the children finish.
///
/// - Start: at the first `next()`, every child (or `limit` of them; a new one
///   starts each time a result is taken, so running plus unread results never
///   exceed `limit` and memory stays flat for unbounded ranges).
/// - Failure: a child's exception is its completion's outcome (`value()`
///   rethrows it); nothing else is cancelled, as with `gather_settled`.
/// - Stopping early: `co_await stream.close()` cancels the rest and waits for
///   them; merely dropping the stream cancels them without waiting.
/// - Cancellation: cancelling a `next()` cancels the stream: every running
///   child is cancelled, no new one starts, outcomes already in hand are
///   still handed out, and then `next()` throws `operation_aborted` (never a
///   false end of stream).
///
/// @code
/// auto done = corun::as_completed(urls | std::views::transform(get), {.limit = 8});
/// while (auto r = co_await done.next()) std::cout << r->index << ": " << r->value() << '\n';
/// @endcode
template <class R>
requires detail::awaitable_range<R>
auto as_completed(R&& range, gather_options options) {
    return as_completed_stream<std::views::all_t<R>>(std::views::all(std::forward<R>(range)), options.limit);
}
template <class R>
requires detail::awaitable_range<R>
auto as_completed(R&& range) {
    return as_completed(std::forward<R>(range), gather_options{});
}

}  // namespace corun
