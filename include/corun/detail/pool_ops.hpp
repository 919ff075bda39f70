// map, starmap, imap and imap_unordered, shared by process_pool and thread_pool.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <iterator>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_future.hpp>

#include "corun/as_completed.hpp"
#include "corun/awaitable.hpp"
#include "corun/detail/remote_call.hpp"
#include "corun/detail/with_token.hpp"
#include "corun/gather.hpp"
#include "corun/range.hpp"

namespace corun {

/// Options of `map` and `starmap`.
struct map_options {
    /// Items per task sent to a worker; 0 means `ceil(n / (4 × workers))`, as
    /// Python's `Pool.map`.
    std::size_t chunksize = 0;
};

/// Options of `imap` and `imap_unordered`.
struct imap_options {
    /// Items per task sent to a worker (Python's default is 1; raise it for
    /// cheap functions).
    std::size_t chunksize = 1;
    /// Chunks running or finished but not yet consumed; 0 means 2 × workers.
    /// This bounds the memory an unbounded input can take.
    std::size_t max_in_flight = 0;
};

static_assert(std::is_trivially_destructible_v<map_options>);  // see process_pool_options
static_assert(std::is_trivially_destructible_v<imap_options>);

namespace detail {

/// Holds a callable in a view that must be move-assignable, as
/// `std::views::transform` does: a lambda with captures has no assignment.
template <class F>
class callable_box {
public:
    explicit callable_box(F f) : m_f(std::in_place, std::move(f)) {}
    callable_box(callable_box&&) = default;
    callable_box& operator=(callable_box&& other) noexcept(std::is_nothrow_move_constructible_v<F>) {
        if (this != &other) {
            m_f.reset();
            if (other.m_f) m_f.emplace(std::move(*other.m_f));
        }
        return *this;
    }
    F& operator*() noexcept { return *m_f; }

private:
    std::optional<F> m_f;
};

/// A lazy view of tasks: each dereference reads the next `chunksize` items of
/// the input and returns the awaitable that runs them on the pool. Read once,
/// front to back, by gather or as_completed.
template <class Pool, call_mode Mode, class F, class View>
class chunk_task_view : public std::ranges::view_interface<chunk_task_view<Pool, Mode, F, View>> {
public:
    using item_type = std::ranges::range_value_t<View>;
    using result_type = call_result_t<Mode, F, item_type>;
    using task_type = awaitable<std::vector<result_type>>;

    chunk_task_view(Pool& pool, F f, View items, std::size_t chunksize, bool batch)
        : m_pool(&pool),
          m_f(std::move(f)),
          m_items(std::move(items)),
          m_chunksize(chunksize),
          m_batch(batch) {}
    chunk_task_view(chunk_task_view&&) = default;
    chunk_task_view& operator=(chunk_task_view&&) = default;

    struct sentinel {};
    class iterator {
    public:
        using iterator_concept = std::input_iterator_tag;
        using value_type = task_type;
        using difference_type = std::ptrdiff_t;

        iterator() = default;
        explicit iterator(chunk_task_view* v) : m_view(v) {}
        task_type operator*() const { return m_view->next_task(); }
        iterator& operator++() { return *this; }
        void operator++(int) {}
        friend bool operator==(const iterator& i, sentinel) { return i.m_view->exhausted(); }

    private:
        chunk_task_view* m_view = nullptr;
    };

    iterator begin() {
        m_it.emplace(std::ranges::begin(m_items));
        return iterator(this);
    }
    sentinel end() const { return {}; }

    bool exhausted() { return *m_it == std::ranges::end(m_items); }
    task_type next_task() {
        std::vector<item_type> chunk;
        chunk.reserve(m_chunksize);
        for (auto& it = *m_it; chunk.size() < m_chunksize && it != std::ranges::end(m_items); ++it)
            chunk.push_back(*it);
        return m_pool->template run_chunk<Mode>(*m_f, std::move(chunk), m_batch);
    }

private:
    Pool* m_pool;
    callable_box<F> m_f;
    View m_items;
    std::optional<std::ranges::iterator_t<View>> m_it;
    std::size_t m_chunksize;
    bool m_batch;
};

/// What a `map` chunk of raw results completes with: nothing, its results
/// are decoded straight into their place in the output (see `map_impl`).
template <class R>
struct into {
    R* dest = nullptr;
    std::size_t n = 0;
};
template <class T>
struct is_into : std::false_type {};
template <class R>
struct is_into<into<R>> : std::true_type {};

template <class R>
struct submit_signature_of {
    using type = void(std::exception_ptr, R);
};
template <class R>
struct submit_signature_of<into<R>> {
    using type = void(std::exception_ptr);
};
template <>
struct submit_signature_of<void> {
    using type = void(std::exception_ptr);
};
/// `submit` completes with `(std::exception_ptr, R)`, or `(std::exception_ptr)` for `void`.
template <class R>
using submit_signature = typename submit_signature_of<R>::type;

template <class T>
struct is_asio_token : std::false_type {};
template <class E>
struct is_asio_token<asio::use_awaitable_t<E>> : std::true_type {};
template <class A>
struct is_asio_token<asio::use_future_t<A>> : std::true_type {};
template <>
struct is_asio_token<asio::deferred_t> : std::true_type {};
template <>
struct is_asio_token<asio::detached_t> : std::true_type {};

/// Is `T`, the last argument given to `submit`, its completion token: one of
/// Asio's tokens, or a callback taking `(std::exception_ptr, R)`?
template <class T, class R>
inline constexpr bool is_submit_token =
    is_asio_token<std::decay_t<T>>::value ||
    (std::is_void_v<R> ? std::is_invocable_v<std::decay_t<T>&, std::exception_ptr>
                       : std::is_invocable_v<std::decay_t<T>&, std::exception_ptr, wire_result_t<R>>);

/// One item at a time out of a stream of chunk results.
template <class Stream, class R>
class item_stream {
public:
    explicit item_stream(Stream chunks) : m_chunks(std::move(chunks)) {}

    /// The next result, or `std::nullopt` at the end; a task's exception is
    /// rethrown here, at its item.
    awaitable<std::optional<R>> next() {
        while (m_pos == m_current.size()) {
            auto done = co_await m_chunks.next();
            if (!done) co_return std::nullopt;
            m_current = std::move(*done).value();
            m_pos = 0;
        }
        co_return std::move(m_current[m_pos++]);
    }

    /// Stops early: cancels the chunks still running and waits for them.
    awaitable<void> close() { return m_chunks.close(); }

private:
    Stream m_chunks;
    std::vector<R> m_current;
    std::size_t m_pos = 0;
};

/// Can `F` be run by `Pool`? A thread pool runs anything; a process pool
/// only what can cross to a worker (see remote_call.hpp). Checked first thing
/// in every call, where the callable's type is complete and fresh (GCC 12
/// can misjudge a lambda made in a coroutine when asked later), so that an
/// unfit callable fails with one short message naming it and nothing else.
template <class Pool, class F>
inline constexpr bool callable_fits = Pool::in_process || callable_can_travel<F>;

/// `callable_fits`, asked by every entry point first: when false, the
/// compilation fails here with the one message naming `F`, before anything
/// else about `F` is instantiated. Asked at the call, it also has GCC 12 judge
/// a lambda where it was written (asked later, after a coroutine's
/// transformation, GCC 12 takes a capturing lambda for not trivially copyable).
template <class Pool, class F>
inline constexpr bool callable_checked =
    std::conditional_t<callable_fits<Pool, F>, std::true_type,
                       callable_cannot_cross_to_a_worker_process<F>>::value;

/// The calls both pools offer, written once over `Pool::submit_with` and
/// `Pool::run_chunk`.
template <class Pool>
class pool_ops {
public:
    /// `co_await pool.submit(f, args...)` → `f(args...)` run by the pool.
    /// A completion token may follow the arguments: a callback
    /// `(std::exception_ptr, R)` gives Python's `apply_async(callback=,
    /// error_callback=)` (it runs on the pool's executor); `asio::use_future`
    /// and `deferred` work too. Cancelling the operation drops a queued task;
    /// a running one is killed with its worker by `process_pool`.
    template <class F, class... A>
    auto submit(F f, A&&... args) {
        if constexpr (!callable_checked<Pool, F>) {
            return;  // not compiled: callable_checked has failed with its message
        } else if constexpr (sizeof...(A) > 0) {
            using last = std::tuple_element_t<sizeof...(A) - 1, std::tuple<A...>>;
            return split_token(std::make_index_sequence<sizeof...(A) - 1>{}, std::move(f),
                               std::forward_as_tuple(std::forward<A>(args)...), std::type_identity<last>{});
        } else {
            return self().submit_with(use_awaitable, std::move(f));
        }
    }

    /// `co_await pool.map(f, items)`, `map(f, items, {.chunksize})` →
    /// `std::vector` of `f(item)` in input order, like Python's `Pool.map`.
    ///
    /// - Start: the input is cut into chunks, all submitted at once (the pool
    ///   queues what its workers cannot take yet).
    /// - First failure: the other chunks are cancelled (a running one kills
    ///   its worker, which is replaced) and the first exception is rethrown.
    /// - Cancellation: cancelling the `co_await` does the same.
    /// - A `void` function gives a vector of `std::monostate`.
    /// Another completion token (a callback, `use_future`) may follow the options.
    template <class F, std::ranges::input_range R>
    auto map(F f, R&& items) {
        return map(std::move(f), std::forward<R>(items), map_options{}, use_awaitable);
    }
    template <class F, std::ranges::input_range R>
    auto map(F f, R&& items, map_options options) {
        return map(std::move(f), std::forward<R>(items), options, use_awaitable);
    }
    template <class F, std::ranges::input_range R, class Token>
    auto map(F f, R&& items, map_options options, Token&& token) {
        if constexpr (!callable_checked<Pool, F>) {
            return;  // not compiled: callable_checked has failed with its message
        } else {
            return with_token(self().get_executor(),
                              map_impl<call_mode::each>(std::move(f), std::views::all(std::forward<R>(items)),
                                                        options.chunksize),
                              std::forward<Token>(token));
        }
    }

    /// `map` for a function of several arguments: each item is a tuple (or
    /// pair) unpacked into the call, like Python's `Pool.starmap`.
    template <class F, std::ranges::input_range R>
    auto starmap(F f, R&& items) {
        return starmap(std::move(f), std::forward<R>(items), map_options{}, use_awaitable);
    }
    template <class F, std::ranges::input_range R>
    auto starmap(F f, R&& items, map_options options) {
        return starmap(std::move(f), std::forward<R>(items), options, use_awaitable);
    }
    template <class F, std::ranges::input_range R, class Token>
    auto starmap(F f, R&& items, map_options options, Token&& token) {
        if constexpr (!callable_checked<Pool, F>) {
            return;  // not compiled: callable_checked has failed with its message
        } else {
            return with_token(self().get_executor(),
                              map_impl<call_mode::each_tuple>(
                                  std::move(f), std::views::all(std::forward<R>(items)), options.chunksize),
                              std::forward<Token>(token));
        }
    }

    /// `imap(f, items)`, `imap(f, items, {.chunksize, .max_in_flight})` → a
    /// stream; `co_await s.next()` gives each `f(item)` in input order, then
    /// `std::nullopt`. The input is read lazily and at most `max_in_flight`
    /// chunks are running or waiting to be read, so an endless input is fine.
    /// A task's exception is rethrown by the `next()` that reaches its item;
    /// stopping early with `co_await s.close()` cancels the rest.
    template <class F, std::ranges::input_range R>
    auto imap(F f, R&& items) {
        return imap(std::move(f), std::forward<R>(items), imap_options{});
    }
    template <class F, std::ranges::input_range R>
    auto imap(F f, R&& items, imap_options options) {
        if constexpr (!callable_checked<Pool, F>) {
            return;  // not compiled: callable_checked has failed with its message
        } else {
            return make_stream<true>(std::move(f), std::views::all(std::forward<R>(items)), options);
        }
    }

    /// `imap` with results in completion order, for lower latency.
    template <class F, std::ranges::input_range R>
    auto imap_unordered(F f, R&& items) {
        return imap_unordered(std::move(f), std::forward<R>(items), imap_options{});
    }
    template <class F, std::ranges::input_range R>
    auto imap_unordered(F f, R&& items, imap_options options) {
        if constexpr (!callable_checked<Pool, F>) {
            return;  // not compiled: callable_checked has failed with its message
        } else {
            return make_stream<false>(std::move(f), std::views::all(std::forward<R>(items)), options);
        }
    }

private:
    Pool& self() { return static_cast<Pool&>(*this); }

    template <class F, class Last, class... A>
    static constexpr bool last_is_token() {
        if constexpr (std::is_invocable_v<F&, A&...>) {
            return is_submit_token<Last, std::invoke_result_t<F&, A&...>>;
        } else {
            return false;
        }
    }

    template <std::size_t... I, class F, class Tuple, class Last>
    auto split_token(std::index_sequence<I...>, F f, Tuple&& args, std::type_identity<Last>) {
        if constexpr (last_is_token<F, Last, std::decay_t<std::tuple_element_t<I, Tuple>>...>()) {
            return self().submit_with(std::get<sizeof...(I)>(std::move(args)), std::move(f),
                                      std::get<I>(std::move(args))...);
        } else {
            return self().submit_with(use_awaitable, std::move(f), std::get<I>(std::move(args))...,
                                      std::get<sizeof...(I)>(std::move(args)));
        }
    }

    template <call_mode Mode, class F, class View>
    awaitable<std::vector<call_result_t<Mode, F, std::ranges::range_value_t<View>>>> map_impl(
        F f, View items, std::size_t chunksize) {
        using E = std::ranges::range_value_t<View>;
        if constexpr (!std::ranges::sized_range<View>) {
            // Like Python, an input of unknown length is read whole first.
            co_return co_await map_impl<Mode>(
                std::move(f),
                std::views::all(std::vector<E>(std::ranges::begin(items), std::ranges::end(items))),
                chunksize);
        } else {
            const std::size_t n = std::ranges::size(items);
            if (chunksize == 0) {
                const std::size_t parts = 4 * std::max<std::size_t>(1, self().workers());
                chunksize = std::max<std::size_t>(1, (n + parts - 1) / parts);
            }
            using R = call_result_t<Mode, F, E>;
            if constexpr (Pool::in_process && std::ranges::random_access_range<View> &&
                          std::is_default_constructible_v<R>) {
                // Threads share memory: each slice reads its items where they
                // are and writes its results in place, no chunk is copied.
                std::vector<R> out(n);
                auto slice = [&](std::int64_t begin) {
                    const std::size_t first = static_cast<std::size_t>(begin);
                    const std::size_t last = std::min(n, first + chunksize);
                    return self().submit_with(use_awaitable, [&out, &items, &f, first, last] {
                        auto it = std::ranges::begin(items);
                        for (std::size_t i = first; i < last; ++i) out[i] = call_one<Mode>(f, it[i]);
                    });
                };
                co_await gather(
                    range_view(0, static_cast<std::int64_t>(n), static_cast<std::int64_t>(chunksize)) |
                    std::views::transform(slice));
                co_return out;
            }
            if constexpr (!Pool::in_process && std::ranges::random_access_range<View> &&
                          raw_chunk<Mode, F, E>) {
                // Raw items and results: each chunk's frame is written from
                // the items where they are, and its results are read straight
                // into their place in the output.
                std::vector<R> out;
                if (n * sizeof(R) >= wire::shared_block_min) {
                    out.reserve(n);
                    wire::prefault(out.data(), n * sizeof(R));
                }
                out.resize(n);
                auto slice = [&](std::int64_t begin) {
                    const std::size_t first = static_cast<std::size_t>(begin);
                    return self().template run_slice<Mode>(f, items, first, std::min(n, first + chunksize),
                                                           out.data() + first);
                };
                co_await gather(
                    range_view(0, static_cast<std::int64_t>(n), static_cast<std::int64_t>(chunksize)) |
                    std::views::transform(slice));
                co_return out;
            }
            auto parts = co_await gather(chunk_task_view<Pool, Mode, F, View>(
                self(), std::move(f), std::move(items), chunksize, true));
            std::vector<call_result_t<Mode, F, E>> out;
            out.reserve(n);
            for (auto& part : parts) std::ranges::move(part, std::back_inserter(out));
            co_return out;
        }
    }

    template <bool Ordered, class F, class View>
    auto make_stream(F f, View items, imap_options options) {
        using tasks = chunk_task_view<Pool, call_mode::each, F, View>;
        const std::size_t limit =
            options.max_in_flight ? options.max_in_flight : 2 * std::max<std::size_t>(1, self().workers());
        using chunks = as_completed_stream<tasks, Ordered>;
        return item_stream<chunks, typename tasks::result_type>(chunks(
            tasks(self(), std::move(f), std::move(items), std::max<std::size_t>(1, options.chunksize), false),
            limit));
    }
};

}  // namespace detail
}  // namespace corun
