// corun::pipeline — per-item stages across the event loop and the pools, with backpressure.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "corun/awaitable.hpp"
#include "corun/detail/pool_ops.hpp"

namespace corun {

/// Options of one stage, for designated initialisers: `{.concurrency = 16}`.
struct stage_options {
    /// A coroutine stage: items in flight at once (0: 1). A pool stage: tasks
    /// in flight at once (0: twice the pool's workers). Inline and serial
    /// stages run one item at a time whatever this says.
    std::size_t concurrency = 0;
    /// Items in front of the stage: those waiting for it, and those the
    /// stage before it is working on (they will land here). When it is full
    /// the stages before it, and in the end the source, are held back. 0: what
    /// the two stages can have in flight together, and at least 16. A serial
    /// stage reorders its items and is bounded by `max_in_flight` alone.
    std::size_t capacity = 0;
    /// A pool stage: the most items sent to the pool in one task (0: 32). A
    /// task takes what is waiting, shared between the free task slots, and
    /// starts at one item, doubling as tasks come back: the first results
    /// come quickly, a busy stage amortises the round trip over many items.
    std::size_t batch = 0;
};

/// Options of a whole pipeline: `p.with({.ordered = false})`.
struct pipeline_options {
    /// Results in input order (`false`: as they are ready, for lower latency).
    bool ordered = true;
    /// Items read from the source and not yet handed out, wherever they are;
    /// the source is not read further until one leaves. This is what keeps
    /// memory flat for an endless source, like oneTBB's token count. 0: twice
    /// what the stages can have in flight together (a pool stage: its
    /// concurrency × batch), plus 16. Set it for big items.
    std::size_t max_in_flight = 0;
};

// Options are trivially destructible: see gather_options.
static_assert(std::is_trivially_destructible_v<stage_options>);
static_assert(std::is_trivially_destructible_v<pipeline_options>);

/// `p.with(corun::unordered)`: results as they are ready.
inline constexpr pipeline_options unordered{.ordered = false};

/// What one stage did, for finding the bottleneck: `p.stats()[i]`, where row
/// 0 is the source, row i the i-th stage, and the last row the sink: results
/// the consumer took (`items_in`), and for `for_each` and `collect` the calls
/// that consumed them (`tasks`, `items_out`); `for_each`'s function is timed in
/// `busy`, its waits included when it is a coroutine.
struct stage_stats {
    std::string name;
    /// Items the stage was given, and items it passed on (fewer if it filters).
    std::uint64_t items_in = 0;
    std::uint64_t items_out = 0;
    /// Calls of its function (inline and coroutine stages) or pool tasks.
    std::uint64_t tasks = 0;
    /// Time spent in its function, summed over its tasks: measured by the
    /// pool's thread or worker for a pool stage (its wait in the pool's queue
    /// left out), on the event loop for the others. A coroutine stage's time
    /// runs from its start to its end, waits included. Summed over
    /// concurrent tasks, it can exceed the wall time.
    std::chrono::nanoseconds busy{0};
};

/// The exception a pipeline rethrows when a stage (or its source) fails. It
/// names the stage; the stage's own exception is nested in it
/// (`std::rethrow_if_nested(e)`, or `e.cause()`).
class CORUN_API stage_error : public std::runtime_error, public std::nested_exception {
public:
    /// Made while the stage's exception is being handled (inside a `catch`).
    stage_error(std::string stage, std::size_t index);
    /// The stage's name; "source" for the source.
    const std::string& stage() const noexcept { return m_stage; }
    /// 0 for the source, i for the i-th stage.
    std::size_t index() const noexcept { return m_index; }
    /// The exception the stage threw.
    std::exception_ptr cause() const noexcept { return nested_ptr(); }

private:
    std::string m_stage;
    std::size_t m_index;
};

}  // namespace corun

// The engine, which needs the types above.
#include "corun/detail/pipeline_state.hpp"

namespace corun {

/// A stage on the event loop: `f(item)` → the next stage's item.
///
/// - A plain function runs inline, one item at a time: for cheap steps
///   (parsing, filtering) that are not worth a trip to a pool.
/// - A coroutine function (`f(item)` → `awaitable<U>`) is I/O: up to
///   `options.concurrency` items are in flight at once.
/// - A function returning `std::optional<U>` is also a filter: `std::nullopt`
///   drops the item.
template <class F>
detail::stage_spec<void, F> stage(std::string_view name, F f, stage_options options) {
    return {std::string(name), std::move(f), options, nullptr, false};
}
template <class F>
detail::stage_spec<void, F> stage(std::string_view name, F f) {
    return stage(name, std::move(f), stage_options{});
}

/// A CPU stage on a `process_pool` or `thread_pool`, which must outlive the
/// run: `f(item)` is called as by `pool.map` (the same functions and values
/// work), on batches of waiting items (see `stage_options::batch`). Cancelling
/// the pipeline cancels its tasks by the pool's rules: a process pool kills a
/// worker busy with one.
///
/// The return type is deduced so that the body, and with it the check of `F`
/// (`callable_checked`), is instantiated at the call, not at the end of the file.
template <class Pool, class F>
requires std::derived_from<Pool, detail::pool_ops<Pool>>
auto stage(std::string_view name, Pool& pool, F f, stage_options options) {
    if constexpr (detail::callable_checked<Pool, F>)
        return detail::stage_spec<Pool, F>{std::string(name), std::move(f), options, &pool, false};
}
template <class Pool, class F>
requires std::derived_from<Pool, detail::pool_ops<Pool>>
auto stage(std::string_view name, Pool& pool, F f) {
    return stage(name, pool, std::move(f), stage_options{});
}

/// A stage on the event loop that sees the items one at a time, in input
/// order, whatever the stages before it did and even in an unordered
/// pipeline, like oneTBB's `serial_in_order` filter: `f` may keep state
/// (a `mutable` lambda deduplicating or counting). It may be a coroutine
/// function and may filter, as `stage`.
template <class F>
detail::stage_spec<void, F> serial_stage(std::string_view name, F f) {
    return {std::string(name), std::move(f), stage_options{}, nullptr, true};
}

/// `pipeline(source, stages...)`: every item of the source goes through the
/// stages one after another, each stage working on some items while the
/// stages before it work on later ones, then comes out at the sink —
/// `collect()` into a vector, `next()` one at a time, or `for_each(f)`.
///
/// - Source: any input range, read lazily (`corun::range(n) |
///   std::views::transform(f)`, a vector); an object with `awaitable<
///   std::optional<T>> next()` (an `imap` or `as_completed` stream); or a
///   function returning one such awaitable per call. `std::nullopt` ends it.
/// - Start: at the first `collect`, `for_each` or `next`, on the awaiting
///   coroutine's executor, where every event-loop stage runs too.
/// - Flow: bounded buffers between the stages and `max_in_flight` over the
///   whole: a slow stage holds the ones before it back, so memory stays flat
///   for an endless source. Results come in input order unless `with(corun::
///   unordered)`.
/// - Failure: the first exception of a stage (or of the source) cancels every
///   stage, nothing further is drained, and once all work has ended it is
///   rethrown as a `stage_error` naming the stage, with the original nested.
/// - Cancellation: cancelling the awaiting coroutine does the same and throws
///   `operation_aborted`; pool work in flight is cancelled by the pool's rules.
/// - A pipeline runs once; `stats()` tells what each stage did. Dropping it
///   mid-run (a `next()` loop left without `close()`) cancels its work
///   without waiting for it.
///
/// @code
/// corun::thread_pool pool{co_await corun::this_executor()};
/// corun::pipeline p(urls,
///                   corun::stage("fetch", fetch_page, {.concurrency = 16}),
///                   corun::stage("parse", pool, parse),
///                   corun::serial_stage("dedupe", deduper{}));
/// std::vector<page> pages = co_await p.collect();
/// @endcode
template <class Source, class... Specs>
requires(detail::pipeline_source<Source> && (detail::is_stage_spec<Specs>::value && ...)) class pipeline {
    using state = detail::pipeline_state<Source, Specs...>;

public:
    using value_type = typename state::value_type;

    template <class S>
    explicit pipeline(S&& source, Specs... stages)
        : m_state(std::make_shared<state>(Source(std::forward<S>(source)), std::move(stages)...)) {}
    pipeline(pipeline&&) noexcept = default;
    pipeline& operator=(pipeline&&) = delete;
    ~pipeline() {
        if (m_state) m_state->abandon();
    }

    /// Sets the options; before the pipeline runs.
    pipeline& with(pipeline_options options) & {
        m_state->configure(options);
        return *this;
    }
    pipeline&& with(pipeline_options options) && {
        m_state->configure(options);
        return std::move(*this);
    }

    /// Every result, in a vector.
    awaitable<std::vector<value_type>> collect() { return collect_all(m_state); }

    /// `f(result)` for each result as it comes; `f` may be a coroutine
    /// function, which is awaited before the next result (so a slow `f`
    /// holds the pipeline back). An exception from `f` stops the pipeline
    /// and is rethrown as it is.
    template <class F>
    awaitable<void> for_each(F f) {
        return for_each_result(m_state, std::move(f));
    }

    /// The next result, `std::nullopt` at the end: the pipeline as a stream.
    /// One coroutine at a time may be in `next` or `close` (a second one gets
    /// `std::logic_error`). Like an async generator in Python, a stream left
    /// before its end must be closed: `co_await p.close()` on every way out
    /// of the loop, or the stages are only cancelled, not waited for, when
    /// the pipeline is destroyed. `collect` and `for_each` do that themselves.
    /// A cancelled `next` (`with_timeout`) stops the whole pipeline.
    awaitable<std::optional<value_type>> next() { return m_state->next(); }

    /// Stops early: cancels every stage and waits for its work to end; `next`
    /// then gives `std::nullopt`.
    awaitable<void> close() { return m_state->close(); }

    /// What each stage did so far: row 0 is the source, row i the i-th stage.
    const std::vector<stage_stats>& stats() const noexcept { return m_state->stats(); }

private:
    static awaitable<std::vector<value_type>> collect_all(std::shared_ptr<state> s) {
        std::vector<value_type> out;
        co_await for_each_result<false>(std::move(s),
                                        [&out](value_type&& v) { out.push_back(std::move(v)); });
        co_return out;
    }

    /// The consumer loop of `collect` and `for_each`: however it ends early
    /// (a stage's error, `f`'s, a cancellation), the stages have ended before
    /// the exception leaves.
    /// With `timed`, the sink's row counts `f`'s calls and time.
    template <bool timed = true, class F>
    static awaitable<void> for_each_result(std::shared_ptr<state> s, F f) {
        std::exception_ptr error;
        try {
            stage_stats& sink = s->sink_stats();
            while (auto item = co_await s->next()) {
                const auto start =
                    timed ? detail::pipeline_clock::now() : detail::pipeline_clock::time_point{};
                if constexpr (detail::unwrap_awaitable<std::invoke_result_t<F&, value_type&&>>::coroutine) {
                    co_await std::invoke(f, std::move(*item));
                } else {
                    std::invoke(f, std::move(*item));
                }
                ++sink.tasks;
                ++sink.items_out;
                if (timed) sink.busy += detail::pipeline_clock::now() - start;
            }
            co_return;
        } catch (...) {
            error = std::current_exception();
        }
        // A cancelled coroutine would throw at the `co_await` of close()
        // before it could wait: Asio's throw-if-cancelled is off meanwhile.
        const bool throws = co_await asio::this_coro::throw_if_cancelled();
        co_await asio::this_coro::throw_if_cancelled(false);
        co_await s->close();
        co_await asio::this_coro::throw_if_cancelled(throws);
        std::rethrow_exception(error);
    }

    std::shared_ptr<state> m_state;
};

namespace detail {
/// How a pipeline holds its source: a range as a view (a vector given as an
/// lvalue is not copied), anything else by value.
template <class S>
struct source_storage {
    using type = std::decay_t<S>;
};
template <std::ranges::input_range S>
struct source_storage<S> {
    using type = std::views::all_t<S>;
};
}  // namespace detail

template <class S, class... Specs>
pipeline(S&&, Specs...) -> pipeline<typename detail::source_storage<S>::type, Specs...>;

}  // namespace corun
