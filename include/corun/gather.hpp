// corun::gather and corun::gather_settled — run awaitables concurrently, collect every result.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include "corun/awaitable.hpp"
#include "corun/detail/child_group.hpp"
#include "corun/detail/child_task.hpp"
#include "corun/settled.hpp"

namespace corun {

/// Options of the range forms of `gather`, `gather_settled` and `as_completed`.
struct gather_options {
    /// At most this many children in flight at once; 0 means no limit. With a
    /// limit, the range is read lazily: the next awaitable is made only when a
    /// running one finishes, so an unbounded lazy range is fine.
    std::size_t limit = 0;
};
// Options are trivially destructible: GCC 12 destroys a braced temporary of a
// type with a destructor one time too many in an expression with `co_await`.
static_assert(std::is_trivially_destructible_v<gather_options>);

namespace detail {

/// State of one range-form gather: reads the range, keeps `limit` children in
/// flight, stores each outcome at its input index.
template <class View, bool Settled>
class range_gather {
public:
    using T = range_awaitable_value_t<View>;
    using V = value_or_monostate<T>;
    using slot_type =
        std::conditional_t<Settled, std::optional<settled<T>>,
                           std::conditional_t<std::is_default_constructible_v<V>, V, std::optional<V>>>;

    range_gather(executor ex, View view, std::size_t limit)
        : m_ex(std::move(ex)), m_view(std::move(view)), m_it(std::ranges::begin(m_view)), m_limit(limit) {
        if constexpr (std::ranges::sized_range<View>) m_results.reserve(std::ranges::size(m_view));
    }

    struct sink {
        range_gather* self;
        std::size_t index;
        void done(V&& value) const { self->m_results[index] = std::move(value); }
        void failed(std::exception_ptr error) const {
            if constexpr (Settled) {
                self->m_results[index] = settled<T>(std::move(error));
            } else if (!self->m_error) {
                self->m_error = std::move(error);
            }
        }
    };

    void child_exit(std::size_t slot) {
        m_group.close(slot);
        if (!Settled && m_error && !m_group.stopping()) m_group.cancel_all();
        if (!m_launching) launch(std::size_t(-1));  // a slot under the limit is free again
        if (m_group.pending() == 0) m_group.notify();
    }

    awaitable<void> run() {
        co_await ensure_not_cancelled();
        m_launching = true;
        m_group.hold();
        launch_batches();
        co_await m_group.async_wait();
        if constexpr (!Settled) {
            if (m_error) std::rethrow_exception(m_error);
        }
        if (m_it != std::ranges::end(m_view)) throw_cancelled();
    }

    std::vector<slot_type>& results() { return m_results; }

private:
    bool can_launch() {
        return !m_group.stopping() && (Settled || !m_error) && m_it != std::ranges::end(m_view) &&
               (m_limit == 0 || m_group.pending() - m_launching < m_limit);
    }

    /// Starts the children a batch at a time, posting itself between batches:
    /// children that finished meanwhile are reaped, so their memory is reused
    /// while the rest start, instead of all of them piling up first. The
    /// awaiting coroutine is already waiting, so cancellation reaches them all.
    void launch_batches() {
        launch(batch_size);
        if (can_launch()) {
            asio::post(m_ex, [this] { launch_batches(); });
            return;
        }
        m_launching = false;
        m_group.release();
        if (m_group.pending() == 0) m_group.notify();
    }

    void launch(std::size_t most) {
        for (; most != 0 && can_launch(); --most) {
            const std::size_t index = m_results.size();
            m_results.emplace_back();
            std::optional<awaitable<T>> child;
            try {
                auto&& made = *m_it;  // making the child is user code: it may throw
                child.emplace(std::move(made));
            } catch (...) {
                // Counts as that child's failure, never escapes into a
                // completion handler or strands the children already running.
                sink{this, index}.failed(std::current_exception());
                ++m_it;
                if constexpr (!Settled) m_group.cancel_all();
                continue;
            }
            spawn_child(m_ex, m_group, this, sink{this, index}, std::move(*child));
            ++m_it;
        }
    }

    executor m_ex;
    View m_view;
    std::ranges::iterator_t<View> m_it;
    std::size_t m_limit;
    child_group m_group;
    std::vector<slot_type> m_results;
    std::exception_ptr m_error;
    bool m_launching = false;
    static constexpr std::size_t batch_size = 128;
};

/// State of one variadic gather.
template <bool Settled, class... T>
class tuple_gather {
public:
    template <std::size_t I>
    using value_t = std::tuple_element_t<I, std::tuple<T...>>;
    template <class U>
    using slot_type = std::optional<std::conditional_t<Settled, settled<U>, value_or_monostate<U>>>;

    template <std::size_t I>
    struct sink {
        tuple_gather* self;
        void done(value_or_monostate<value_t<I>>&& value) const {
            if constexpr (Settled && std::is_void_v<value_t<I>>) {
                std::get<I>(self->m_results).emplace();
            } else {
                std::get<I>(self->m_results).emplace(std::move(value));
            }
        }
        void failed(std::exception_ptr error) const {
            if constexpr (Settled) {
                std::get<I>(self->m_results).emplace(std::move(error));
            } else if (!self->m_error) {
                self->m_error = std::move(error);
            }
        }
    };

    void child_exit(std::size_t slot) {
        m_group.close(slot);
        if (!Settled && m_error && !m_group.stopping()) m_group.cancel_all();
        if (m_group.pending() == 0) m_group.notify();
    }

    template <std::size_t... I>
    awaitable<std::tuple<typename slot_type<T>::value_type...>> run(std::index_sequence<I...>,
                                                                    awaitable<T>... children) {
        executor ex = co_await this_executor();
        co_await ensure_not_cancelled();
        (spawn_child(ex, m_group, this, sink<I>{this}, std::move(children)), ...);
        co_await m_group.async_wait();
        if (m_error) std::rethrow_exception(m_error);
        if (m_group.cancelled_from_outside() && !(std::get<I>(m_results) && ...)) throw_cancelled();
        co_return std::tuple<typename slot_type<T>::value_type...>(std::move(*std::get<I>(m_results))...);
    }

private:
    child_group m_group;
    std::tuple<slot_type<T>...> m_results;
    std::exception_ptr m_error;
};

template <bool Settled, class R>
auto gather_range(R&& range, gather_options options) {
    using view = std::views::all_t<R>;
    using state = range_gather<view, Settled>;
    using T = typename state::T;
    return [](view v, std::size_t limit)
               -> awaitable<std::conditional_t<Settled, std::vector<settled<T>>,
                                               std::conditional_t<std::is_void_v<T>, void, std::vector<T>>>> {
        state s(co_await this_executor(), std::move(v), limit);
        co_await s.run();
        if constexpr (Settled) {
            std::vector<settled<T>> out;
            out.reserve(s.results().size());
            for (auto& r : s.results()) out.push_back(std::move(*r));
            co_return out;
        } else if constexpr (std::is_void_v<T>) {
            co_return;
        } else if constexpr (std::is_same_v<typename state::slot_type, T>) {
            co_return std::move(s.results());
        } else {
            std::vector<T> out;
            out.reserve(s.results().size());
            for (auto& r : s.results()) out.push_back(std::move(*r));
            co_return out;
        }
    }(std::views::all(std::forward<R>(range)), options.limit);
}

template <class R>
concept awaitable_range = std::ranges::input_range<R> && requires {
    typename range_awaitable_value_t<R>;
};

}  // namespace detail

/// `gather(a, b, c…)` → `std::tuple` of the children's results, in argument
/// order; a child returning `void` contributes a `std::monostate`.
///
/// - Start: every child starts at once, on the awaiting coroutine's executor.
/// - First failure: the other children are cancelled (terminal) and awaited;
///   then the first exception is rethrown. No child outlives the call.
/// - Non-throwing variant: `gather_settled`, which returns every outcome.
/// - Cancellation: cancelling the `co_await` cancels every child; the call
///   completes once all have finished, throwing what they threw (usually
///   `boost::system::system_error` with `operation_aborted`).
///
/// @code
/// auto [page, nine] = co_await corun::gather(fetch(url), pool.submit(square, 3));
/// @endcode
template <class... T>
requires(sizeof...(T) >
         0) awaitable<std::tuple<detail::value_or_monostate<T>...>> gather(awaitable<T>... children) {
    detail::tuple_gather<false, T...> state;
    co_return co_await state.run(std::index_sequence_for<T...>{}, std::move(children)...);
}

/// `gather(range_of_awaitables, {.limit = N})` → `std::vector<T>` in input
/// order (`void` when the children return nothing).
///
/// - Start: all children at once, or at most `limit` in flight, the range
///   being read lazily as slots free up. An empty range completes at once.
/// - First failure: no further child is started, the running ones are
///   cancelled and awaited, then the first exception is rethrown.
/// - Non-throwing variant: `gather_settled(range)` → `std::vector<settled<T>>`.
/// - Cancellation: as the variadic form; children not yet started never start.
///
/// Children share the awaiting coroutine's executor, which must be a strand
/// (as `corun::run`'s event loop is). Coroutine lambdas that make the children
/// must not capture by reference anything that dies before the `co_await`
/// ends — see the README.
template <class R>
requires detail::awaitable_range<R>
auto gather(R&& range, gather_options options) {
    return detail::gather_range<false>(std::forward<R>(range), options);
}
template <class R>
requires detail::awaitable_range<R>
auto gather(R&& range) {
    return detail::gather_range<false>(std::forward<R>(range), gather_options{});
}

/// `gather_settled(a, b, c…)` → `std::tuple<settled<T>…>`: every child runs to
/// its end whatever the others do; each outcome is a value or an exception.
/// It never throws because of a child; cancelling it cancels every child and
/// then throws `operation_aborted` if some outcome is missing.
template <class... T>
requires(sizeof...(T) > 0) awaitable<std::tuple<settled<T>...>> gather_settled(awaitable<T>... children) {
    detail::tuple_gather<true, T...> state;
    co_return co_await state.run(std::index_sequence_for<T...>{}, std::move(children)...);
}

/// `gather_settled(range, {.limit = N})` → `std::vector<settled<T>>` in input
/// order. Starts as `gather(range)`; a failure cancels nothing. Cancelling
/// the call cancels the running children and throws `operation_aborted` if
/// any child was never started.
template <class R>
requires detail::awaitable_range<R>
auto gather_settled(R&& range, gather_options options) {
    return detail::gather_range<true>(std::forward<R>(range), options);
}
template <class R>
requires detail::awaitable_range<R>
auto gather_settled(R&& range) {
    return detail::gather_range<true>(std::forward<R>(range), gather_options{});
}

}  // namespace corun
