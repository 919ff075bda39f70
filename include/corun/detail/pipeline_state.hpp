// The engine of corun::pipeline: the stages' types and the state of a run.
// Included by corun/pipeline.hpp once the public option, statistics and error types are declared.
#pragma once

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include "corun/awaitable.hpp"
#include "corun/detail/child_group.hpp"
#include "corun/detail/child_task.hpp"
#include "corun/detail/pool_ops.hpp"

namespace corun {

namespace detail {

/// A stage as described by `stage` or `serial_stage`: where its function
/// runs (`Pool` is `void` for the event loop) and how.
template <class Pool, class F>
struct stage_spec {
    std::string name;
    F f;
    stage_options options;
    Pool* pool = nullptr;
    bool serial = false;
};

template <class T>
struct is_stage_spec : std::false_type {};
template <class Pool, class F>
struct is_stage_spec<stage_spec<Pool, F>> : std::true_type {};

template <class T>
struct unwrap_awaitable {
    using type = T;
    static constexpr bool coroutine = false;
};
template <class T>
struct unwrap_awaitable<asio::awaitable<T, executor>> {
    using type = T;
    static constexpr bool coroutine = true;
};

template <class T>
struct unwrap_optional {
    using type = T;
    static constexpr bool filters = false;
};
template <class T>
struct unwrap_optional<std::optional<T>> {
    using type = T;
    static constexpr bool filters = true;
};

/// What a stage does with an `In`: what its function gives (`produced`) and
/// what it passes on (`out`: the same, or the value inside an optional).
template <class Spec, class In>
struct stage_traits;
template <class F, class In>
struct stage_traits<stage_spec<void, F>, In> {
    static_assert(std::is_invocable_v<F&, In&&>,
                  "corun::pipeline: a stage cannot be called with the item "
                  "the stage before it (or the source) gives");
    using raw = std::invoke_result_t<F&, In&&>;
    static constexpr bool on_pool = false;
    static constexpr bool coroutine = unwrap_awaitable<raw>::coroutine;
    using produced = value_or_monostate<typename unwrap_awaitable<raw>::type>;
    static constexpr bool filters = unwrap_optional<produced>::filters;
    using out = typename unwrap_optional<produced>::type;
};
template <class Pool, class F, class In>
struct stage_traits<stage_spec<Pool, F>, In> {
    static_assert(std::is_invocable_v<F&, const In&>,
                  "corun::pipeline: a pool stage cannot be called with "
                  "the item the stage before it (or the source) gives");
    static constexpr bool on_pool = true;
    static constexpr bool coroutine = false;
    using produced = call_result_t<call_mode::each, F, In>;
    static constexpr bool filters = unwrap_optional<produced>::filters;
    using out = typename unwrap_optional<produced>::type;
};

/// The item types along the pipeline: `inputs` holds each stage's input type.
template <class In, class... Specs>
struct stage_chain {
    using inputs = std::tuple<>;
    using out = In;
};
template <class In, class S, class... Rest>
struct stage_chain<In, S, Rest...> {
    using next = stage_chain<typename stage_traits<S, In>::out, Rest...>;
    using inputs =
        decltype(std::tuple_cat(std::declval<std::tuple<In>>(), std::declval<typename next::inputs>()));
    using out = typename next::out;
};

template <class A>
struct awaitable_optional;
template <class T>
struct awaitable_optional<asio::awaitable<std::optional<T>, executor>> {
    using type = T;
};

/// A source that gives its items asynchronously: `co_await s.next()` until
/// `std::nullopt` (an `imap` stream, an `as_completed` stream, a generator).
template <class S>
concept next_source = requires(S& s) {
    typename awaitable_optional<decltype(s.next())>::type;
};
/// A function giving the next item: `co_await f()` until `std::nullopt`.
template <class S>
concept callable_source = std::invocable<S&> && requires {
    typename awaitable_optional<std::invoke_result_t<S&>>::type;
};

template <class S>
struct source_traits {
    using value = std::ranges::range_value_t<S>;
};
template <class S>
requires(!std::ranges::input_range<S> && next_source<S>) struct source_traits<S> {
    using value = typename awaitable_optional<decltype(std::declval<S&>().next())>::type;
};
template <class S>
requires(!std::ranges::input_range<S> && !next_source<S> && callable_source<S>) struct source_traits<S> {
    using value = typename awaitable_optional<std::invoke_result_t<S&>>::type;
};

template <class S>
struct source_position {
    struct none {};
    using type = none;
};
template <std::ranges::input_range S>
struct source_position<S> {
    using type = std::ranges::iterator_t<S>;
};

/// A source the pipeline owns (a container given as an rvalue): its items
/// can be moved out rather than copied.
template <class S>
inline constexpr bool owning_source = false;
template <class R>
inline constexpr bool owning_source<std::ranges::owning_view<R>> = true;

template <class S>
concept pipeline_source = std::ranges::input_range<S> || next_source<S> || callable_source<S>;

/// Holds what arrives out of order until its turn: slot `s - m_base` belongs
/// to item `s`. An empty inner optional is an item a filter dropped, kept so
/// the ones after it know their turn has come.
template <class T>
class reorder_buffer {
public:
    void put(std::uint64_t seq, std::optional<T>&& item) {
        const std::size_t at = static_cast<std::size_t>(seq - m_base);
        if (m_slots.size() <= at) m_slots.resize(at + 1);
        m_slots[at].emplace(std::move(item));
    }
    bool ready() const { return !m_slots.empty() && m_slots.front().has_value(); }
    std::uint64_t front_seq() const { return m_base; }
    /// The next item in order (or its hole); only when `ready()`.
    std::optional<T> pop() {
        std::optional<T> item = std::move(*m_slots.front());
        m_slots.pop_front();
        ++m_base;
        return item;
    }

private:
    std::deque<std::optional<std::optional<T>>> m_slots;
    std::uint64_t m_base = 0;
};

using pipeline_clock = std::chrono::steady_clock;

/// One stage while the pipeline runs: its waiting items and what it has in flight.
template <class Spec, class In>
struct stage_state {
    using traits = stage_traits<Spec, In>;

    explicit stage_state(Spec s) : spec(std::move(s)) {}

    Spec spec;
    std::deque<std::pair<std::uint64_t, In>> queue;  // a parallel stage's waiting items
    reorder_buffer<In> in_order;                     // a serial stage's
    std::size_t running = 0;                         // items (coroutine) or tasks (pool) in flight
    std::size_t items_in_flight = 0;
    std::size_t concurrency = 1;
    std::size_t capacity = 16;
    std::size_t batch = 1;
    std::size_t batch_now = 1;  // the slow start of a pool stage's batches

    /// The most items it can have in flight, which the capacity after it must hold.
    std::size_t max_in_flight() const { return traits::on_pool ? concurrency * batch : concurrency; }
};

/// The running pipeline, shared by its handle and the children it spawned.
/// Everything happens on one strand, the awaiting coroutine's executor: the
/// children refer to it by plain pointer, and when the handle is dropped
/// mid-run it keeps itself alive until its last child has finished.
template <class Source, class... Specs>
class pipeline_state : public std::enable_shared_from_this<pipeline_state<Source, Specs...>> {
public:
    using source_value = typename source_traits<Source>::value;
    using chain = stage_chain<source_value, Specs...>;
    using value_type = typename chain::out;
    static constexpr std::size_t stage_count = sizeof...(Specs);
    static constexpr bool range_source = std::ranges::input_range<Source>;

    pipeline_state(Source source, Specs... specs)
        : m_source(std::move(source)),
          m_stages(make_states(std::index_sequence_for<Specs...>{}, std::move(specs)...)) {
        m_stats.resize(stage_count + 2);
        m_stats[0].name = "source";
        m_stats.back().name = "sink";
        name_stages(std::index_sequence_for<Specs...>{});
    }

    void configure(pipeline_options options) {
        if (m_started) throw std::logic_error("corun::pipeline: options must be set before it runs");
        m_options = options;
    }
    const std::vector<stage_stats>& stats() const noexcept { return m_stats; }
    /// The last row: what the consumer took, and its time in `for_each`'s function.
    stage_stats& sink_stats() noexcept { return m_stats.back(); }

    /// The next result; `std::nullopt` at the end.
    awaitable<std::optional<value_type>> next() {
        // The common case: a result is ready, there is nothing to wait for.
        asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
        if (m_started && !m_error && !m_closed && !m_consuming && !m_group.cancelled_from_outside() &&
            cs.cancelled() == asio::cancellation_type::none) {
            if (auto item = take()) {
                refill();
                co_return item;
            }
        }
        // Asio throws at every `co_await` of a cancelled coroutine, which
        // would skip the wait for the stages: off while this waits.
        const bool throws = co_await asio::this_coro::throw_if_cancelled();
        co_await asio::this_coro::throw_if_cancelled(false);
        std::optional<value_type> item;
        std::exception_ptr error;
        try {
            item = co_await wait_next();
        } catch (...) {
            error = std::current_exception();
        }
        co_await asio::this_coro::throw_if_cancelled(throws);
        if (error) std::rethrow_exception(error);
        co_return item;
    }

    /// Stops every stage and waits until all their work has ended.
    awaitable<void> close() {
        const bool throws = co_await asio::this_coro::throw_if_cancelled();
        co_await asio::this_coro::throw_if_cancelled(false);
        std::exception_ptr error;
        try {
            enter();
            if (m_started) co_await stop();
            m_started = m_closed = true;
        } catch (...) {
            error = std::current_exception();
        }
        m_consuming = false;
        co_await asio::this_coro::throw_if_cancelled(throws);
        if (error) std::rethrow_exception(error);
    }

    /// The handle went while work was running: cancel it and stay alive until
    /// the last child has finished.
    void abandon() {
        if (m_group.pending() == 0) return;
        m_group.cancel_all();
        m_keep_alive = this->shared_from_this();
    }

    void child_exit(std::size_t slot) {
        m_group.close(slot);
        after_event();
    }

private:
    template <std::size_t I>
    using in_t = std::tuple_element_t<I, typename chain::inputs>;
    /// The item in front of stage `J`; `J == stage_count` is the sink's.
    template <std::size_t J>
    using item_t = std::tuple_element_t<J, decltype(std::tuple_cat(std::declval<typename chain::inputs>(),
                                                                   std::declval<std::tuple<value_type>>()))>;
    template <std::size_t I>
    using spec_t = std::tuple_element_t<I, std::tuple<Specs...>>;
    template <std::size_t I>
    using state_t = stage_state<spec_t<I>, in_t<I>>;
    template <std::size_t I>
    using traits_t = typename state_t<I>::traits;

    template <std::size_t... I>
    static std::tuple<state_t<I>...> make_states(std::index_sequence<I...>, Specs&&... specs) {
        return std::tuple<state_t<I>...>(state_t<I>(std::move(specs))...);
    }
    template <std::size_t... I>
    static auto states_type(std::index_sequence<I...>) -> std::tuple<state_t<I>...>;
    using states = decltype(states_type(std::index_sequence_for<Specs...>{}));

    template <std::size_t... I>
    void name_stages(std::index_sequence<I...>) {
        ((m_stats[I + 1].name = std::get<I>(m_stages).spec.name), ...);
    }

    template <std::size_t I>
    state_t<I>& st() {
        return std::get<I>(m_stages);
    }

    // ---- the consumer ----------------------------------------------------------

    /// One consumer at a time: a second one would wait on the same group.
    void enter() {
        if (m_consuming)
            throw std::logic_error("corun::pipeline: next() or close() while another coroutine is in one");
        m_consuming = true;
    }

    awaitable<std::optional<value_type>> wait_next() {
        enter();
        struct leave {
            bool& consuming;
            ~leave() { consuming = false; }
        } guard{m_consuming};
        if (!m_started) co_await start();
        for (;;) {
            if (m_error) {
                co_await stop();
                std::rethrow_exception(m_error);
            }
            if (m_closed) co_return std::nullopt;
            asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
            if (m_group.cancelled_from_outside() || cs.cancelled() != asio::cancellation_type::none) {
                co_await stop();
                throw_cancelled();
            }
            if (auto item = take()) {
                refill();
                co_return item;
            }
            pump();  // dropped items taken above made room
            if (ready()) continue;
            if (finished()) {
                co_await stop();
                co_return std::nullopt;
            }
            // Nothing running and nothing to start would be a wait forever.
            if (m_group.pending() == 0) throw std::logic_error("corun::pipeline: stalled (a bug in corun)");
            co_await m_group.async_wait();
        }
    }

    /// After a result is taken: refill once a quarter of the room is free, or
    /// nothing is left to take, rather than a whole pass of the stages per result.
    void refill() {
        if (!ready() || m_alive + m_max_in_flight / 4 <= m_max_in_flight) pump();
    }

    // ---- set-up --------------------------------------------------------------

    awaitable<void> start() {
        m_started = true;
        m_ex = co_await this_executor();
        co_await ensure_not_cancelled();
        if constexpr (range_source) m_it.emplace(std::ranges::begin(m_source));
        std::size_t total = size_stages(std::index_sequence_for<Specs...>{});
        m_max_in_flight = m_options.max_in_flight ? m_options.max_in_flight : std::max<std::size_t>(total, 1);
        pump();
    }

    /// Fills in each stage's defaults; returns the automatic `max_in_flight`:
    /// twice what all the stages can have in flight at once, enough to keep
    /// each busy while the next batch waits in front of it.
    template <std::size_t... I>
    std::size_t size_stages(std::index_sequence<I...>) {
        std::size_t total = 0;
        std::size_t before = 1;  // the source reads one item at a time
        auto one = [&](auto& s) {
            const stage_options& o = s.spec.options;
            using T = typename std::remove_reference_t<decltype(s)>::traits;
            if (s.spec.serial) {
                s.concurrency = 1;
            } else if constexpr (T::on_pool) {
                s.concurrency =
                    o.concurrency ? o.concurrency : 2 * std::max<std::size_t>(1, s.spec.pool->workers());
                s.batch = o.batch ? o.batch : 32;
            } else if constexpr (T::coroutine) {
                s.concurrency = o.concurrency ? o.concurrency : 1;
            }
            s.capacity = o.capacity ? o.capacity : std::max<std::size_t>(16, s.max_in_flight() + before);
            before = s.max_in_flight();
            total += s.max_in_flight();
        };
        (one(std::get<I>(m_stages)), ...);
        return 2 * total + 16;
    }

    // ---- moving items along ---------------------------------------------------

    bool halted() const { return m_error || m_group.stopping(); }
    bool finished() const { return m_source_done && m_alive == 0; }

    /// Does whatever can be done now: starts work in every stage whose next
    /// stage has room (downstream first, which makes room upstream), then
    /// reads the source. A long run of synchronous work yields to the event
    /// loop now and then.
    void pump() {
        if (m_pumping) {
            m_pump_again = true;
            return;
        }
        m_pumping = true;
        std::size_t reads = 0;
        do {
            m_pump_again = false;
            if (halted()) break;
            if (start_stages(std::index_sequence_for<Specs...>{})) m_pump_again = true;
            if (read_source(reads)) m_pump_again = true;
            if (reads >= yield_after && m_pump_again) {
                m_group.hold();
                asio::post(*m_ex, [this] {
                    m_group.release();
                    after_event();
                });
                break;
            }
        } while (m_pump_again);
        m_pumping = false;
        if (m_error && !m_group.stopping()) m_group.cancel_all();
    }

    void after_event() {
        pump();
        m_group.notify();
        if (m_group.pending() == 0) m_keep_alive.reset();  // may destroy *this: nothing after it
    }

    template <std::size_t... I>
    bool start_stages(std::index_sequence<I...>) {
        bool progress = false;
        // Last stage first.
        ((progress = start_stage<stage_count - 1 - I>() || progress), ...);
        return progress;
    }

    /// Room in front of stage `J` for items from the one before: a serial
    /// stage and the sink take everything (the reorder needs it; the whole
    /// pipeline's `max_in_flight` bounds them).
    template <std::size_t J>
    std::size_t room() {
        if constexpr (J == stage_count) {
            return std::numeric_limits<std::size_t>::max();
        } else {
            auto& s = st<J>();
            if (s.spec.serial) return std::numeric_limits<std::size_t>::max();
            std::size_t used = s.queue.size();
            if constexpr (J > 0) {
                used += st<J - 1>().items_in_flight;
            } else {
                used += m_source_busy ? 1 : 0;
            }
            return used >= s.capacity ? 0 : s.capacity - used;
        }
    }

    template <std::size_t I>
    bool start_stage() {
        auto& s = st<I>();
        using T = traits_t<I>;
        bool progress = false;
        if constexpr (T::on_pool) {
            while (!halted() && s.running < s.concurrency && !s.queue.empty()) {
                const std::size_t free = s.concurrency - s.running;
                const std::size_t n = std::min(
                    {s.queue.size(), s.batch_now, (s.queue.size() + free - 1) / free, room<I + 1>()});
                if (n == 0) break;
                run_batch<I>(n);
                progress = true;
            }
        } else if (busy_timer timer(m_stats[I + 1], !T::coroutine); s.spec.serial) {
            while (!halted() && s.running == 0 && s.in_order.ready() && room<I + 1>() > 0) {
                const std::uint64_t seq = s.in_order.front_seq();
                std::optional<in_t<I>> item = s.in_order.pop();
                progress = true;
                timer.begin();
                if (!item) {
                    deliver<I + 1>(seq, std::nullopt);
                } else {
                    run_one<I>(seq, std::move(*item));
                }
            }
        } else {
            while (!halted() && (!T::coroutine || s.running < s.concurrency) && !s.queue.empty() &&
                   room<I + 1>() > 0) {
                auto [seq, item] = std::move(s.queue.front());
                s.queue.pop_front();
                timer.begin();
                run_one<I>(seq, std::move(item));
                progress = true;
            }
        }
        return progress;
    }

    /// Adds the time from its first `begin()` to its end to a stage's busy
    /// time: an inline stage is timed per run of calls, not per call, which
    /// would cost more than a cheap step itself.
    class busy_timer {
    public:
        busy_timer(stage_stats& stats, bool on) : m_stats(stats), m_on(on) {}
        busy_timer(const busy_timer&) = delete;
        busy_timer& operator=(const busy_timer&) = delete;
        void begin() {
            if (m_on && !m_started) {
                m_started = true;
                m_start = pipeline_clock::now();
            }
        }
        ~busy_timer() {
            if (m_started) m_stats.busy += pipeline_clock::now() - m_start;
        }

    private:
        stage_stats& m_stats;
        bool m_on;
        bool m_started = false;
        pipeline_clock::time_point m_start{};
    };

    /// One item through an event-loop stage: called inline, or spawned as a child.
    template <std::size_t I>
    void run_one(std::uint64_t seq, in_t<I>&& item) {
        auto& s = st<I>();
        using T = traits_t<I>;
        stage_stats& stats = m_stats[I + 1];
        ++stats.items_in;
        ++stats.tasks;
        if constexpr (T::coroutine) {
            const auto start = pipeline_clock::now();
            std::optional<typename T::raw> child;
            try {
                child.emplace(call_owning<typename T::raw>(s.spec.f, std::move(item)));
            } catch (...) {
                fail(I + 1);
                return;
            }
            ++s.running;
            ++s.items_in_flight;
            spawn_child(*m_ex, m_group, this, item_done<I>{this, seq, start}, std::move(*child));
        } else {
            std::optional<typename T::produced> value;
            try {
                if constexpr (std::is_void_v<typename T::raw>) {
                    std::invoke(s.spec.f, std::move(item));
                    value.emplace();
                } else {
                    value.emplace(std::invoke(s.spec.f, std::move(item)));
                }
            } catch (...) {
                fail(I + 1);
                return;
            }
            pass_on<I>(seq, std::move(*value));
        }
    }

    /// `f(item)` in a frame that owns the item, so that a coroutine stage
    /// taking its item by reference reads it while it runs.
    template <class A, class F, class In>
    static A call_owning(F& f, In item) {
        if constexpr (std::is_void_v<typename unwrap_awaitable<A>::type>) {
            co_await std::invoke(f, std::move(item));
        } else {
            co_return co_await std::invoke(f, std::move(item));
        }
    }

    /// `n` waiting items of a pool stage as one task.
    template <std::size_t I>
    void run_batch(std::size_t n) {
        auto& s = st<I>();
        using T = traits_t<I>;
        std::vector<in_t<I>> chunk;
        std::vector<std::uint64_t> seqs;
        chunk.reserve(n);
        seqs.reserve(n);
        for (std::size_t k = 0; k < n; ++k) {
            seqs.push_back(s.queue.front().first);
            chunk.push_back(std::move(s.queue.front().second));
            s.queue.pop_front();
        }
        stage_stats& stats = m_stats[I + 1];
        stats.items_in += n;
        ++stats.tasks;
        ++s.running;
        s.items_in_flight += n;
        const auto start = pipeline_clock::now();
        std::optional<awaitable<timed_chunk<typename T::produced>>> child;
        try {
            child.emplace(
                s.spec.pool->template run_chunk<call_mode::each_timed>(s.spec.f, std::move(chunk), true));
        } catch (...) {
            --s.running;
            s.items_in_flight -= n;
            fail(I + 1);
            return;
        }
        spawn_child(*m_ex, m_group, this, batch_done<I>{this, std::move(seqs), start}, std::move(*child));
    }

    template <std::size_t I>
    struct item_done {
        pipeline_state* self;
        std::uint64_t seq;
        pipeline_clock::time_point start;
        void done(typename traits_t<I>::produced&& value) const {
            if (self->work_ended<I>(1, pipeline_clock::now() - start))
                self->pass_on<I>(seq, std::move(value));
        }
        void failed(std::exception_ptr error) const {
            if (self->work_ended<I>(1, pipeline_clock::now() - start)) self->fail(I + 1, error);
        }
    };

    template <std::size_t I>
    struct batch_done {
        pipeline_state* self;
        std::vector<std::uint64_t> seqs;
        pipeline_clock::time_point start;
        void done(timed_chunk<typename traits_t<I>::produced>&& chunk) const {
            if (!self->work_ended<I>(seqs.size(), std::chrono::nanoseconds(chunk.busy_ns))) return;
            auto& s = self->st<I>();
            s.batch_now = std::min(s.batch, 2 * s.batch_now);
            for (std::size_t k = 0; k < seqs.size(); ++k)
                self->pass_on<I>(seqs[k], std::move(chunk.results[k]));
        }
        void failed(std::exception_ptr error) const {
            if (self->work_ended<I>(seqs.size(), pipeline_clock::now() - start)) self->fail(I + 1, error);
        }
    };

    /// Books the end of a task; false once the pipeline is stopping, when its
    /// result is dropped.
    template <std::size_t I>
    bool work_ended(std::size_t items, pipeline_clock::duration busy) {
        auto& s = st<I>();
        --s.running;
        s.items_in_flight -= items;
        m_stats[I + 1].busy += std::chrono::duration_cast<std::chrono::nanoseconds>(busy);
        return !halted();
    }

    /// What stage `I` made of an item, to the next stage (a filter's
    /// `std::nullopt` travels on as a hole, which keeps the order).
    template <std::size_t I>
    void pass_on(std::uint64_t seq, typename traits_t<I>::produced&& value) {
        using T = traits_t<I>;
        if constexpr (T::filters) {
            if (value) ++m_stats[I + 1].items_out;
            deliver<I + 1>(seq, std::move(value));
        } else {
            ++m_stats[I + 1].items_out;
            deliver<I + 1>(seq, std::optional<typename T::out>(std::move(value)));
        }
    }

    /// An item (or a hole) arrives in front of stage `J`, or at the sink.
    template <std::size_t J>
    void deliver(std::uint64_t seq, std::optional<item_t<J>>&& item) {
        if constexpr (J == stage_count) {
            finish_item(seq, std::move(item));
        } else {
            auto& s = st<J>();
            if (s.spec.serial) {
                s.in_order.put(seq, std::move(item));
            } else if (!item) {
                deliver<J + 1>(seq, std::nullopt);  // a parallel stage has no order to keep
            } else {
                s.queue.emplace_back(seq, std::move(*item));
            }
        }
    }

    // ---- the source -----------------------------------------------------------

    bool read_source(std::size_t& reads) {
        bool progress = false;
        busy_timer timer(m_stats[0], range_source);
        while (!m_source_done && !m_source_busy && !halted() && m_alive < m_max_in_flight && room<0>() > 0 &&
               reads < yield_after) {
            if constexpr (range_source) {
                timer.begin();
                std::optional<source_value> item;
                try {
                    if (*m_it == std::ranges::end(m_source)) {
                        m_source_done = true;
                        break;
                    }
                    if constexpr (owning_source<Source>) {
                        item.emplace(std::ranges::iter_move(*m_it));  // the pipeline's own: moved out
                    } else {
                        item.emplace(**m_it);
                    }
                    ++*m_it;
                } catch (...) {
                    fail(0);
                    break;
                }
                ++reads;
                admit(std::move(*item));
                progress = true;
            } else {
                std::optional<awaitable<std::optional<source_value>>> child;
                try {
                    if constexpr (next_source<Source>) {
                        child.emplace(m_source.next());
                    } else {
                        child.emplace(std::invoke(m_source));
                    }
                } catch (...) {
                    fail(0);
                    break;
                }
                m_source_busy = true;
                spawn_child(*m_ex, m_group, this, source_done{this, pipeline_clock::now()},
                            std::move(*child));
                progress = true;
            }
        }
        return progress;
    }

    struct source_done {
        pipeline_state* self;
        pipeline_clock::time_point start;
        void done(std::optional<source_value>&& item) const {
            self->m_source_busy = false;
            self->m_stats[0].busy += pipeline_clock::now() - start;
            if (self->halted()) return;
            if (!item) {
                self->m_source_done = true;
                return;
            }
            self->admit(std::move(*item));
        }
        void failed(std::exception_ptr error) const {
            self->m_source_busy = false;
            if (!self->halted()) self->fail(0, error);
        }
    };

    void admit(source_value&& item) {
        ++m_alive;
        ++m_stats[0].items_in;
        ++m_stats[0].items_out;
        deliver<0>(m_next_seq++, std::optional<source_value>(std::move(item)));
    }

    // ---- the sink -------------------------------------------------------------

    bool ready() const { return m_options.ordered ? m_done.ready() : !m_done_unordered.empty(); }

    std::optional<value_type> take() {
        if (m_options.ordered) {
            while (m_done.ready()) {
                std::optional<value_type> item = m_done.pop();
                --m_alive;
                if (item) {
                    ++sink_stats().items_in;
                    return item;
                }
            }
            return std::nullopt;
        }
        if (m_done_unordered.empty()) return std::nullopt;
        std::optional<value_type> item(std::move(m_done_unordered.front()));
        m_done_unordered.pop_front();
        --m_alive;
        ++sink_stats().items_in;
        return item;
    }

    void finish_item(std::uint64_t seq, std::optional<value_type>&& item) {
        if (m_options.ordered) {
            m_done.put(seq, std::move(item));
        } else if (item) {
            m_done_unordered.push_back(std::move(*item));
        } else {
            --m_alive;
        }
        m_group.notify();
    }

    // ---- stopping -------------------------------------------------------------

    /// The first failure wins: it is wrapped in a `stage_error` naming the
    /// stage, and every stage is cancelled.
    void fail(std::size_t index, std::exception_ptr error = std::current_exception()) {
        if (m_error) return;
        try {
            std::rethrow_exception(error);
        } catch (...) {
            m_error = std::make_exception_ptr(stage_error(m_stats[index].name, index));
        }
        // The other stages are cancelled at the end of the next pump, not
        // here: this may run inside the failing child, and Asio 1.81 throws
        // out of a child cancelled while it runs synchronously.
        m_group.notify();
    }

    /// Cancels whatever still runs and waits for all of it to end (its caller
    /// has turned Asio's throw-if-cancelled off, so the wait happens).
    awaitable<void> stop() {
        if (m_group.pending() != 0) {
            m_group.cancel_all();
            while (m_group.pending() != 0) co_await m_group.async_wait();
        }
        if constexpr (requires { m_source.close(); }) {
            if (!m_source_closed) {
                m_source_closed = true;
                co_await m_source.close();
            }
        }
    }

    static constexpr std::size_t yield_after = 1024;

    Source m_source;
    std::optional<typename source_position<Source>::type> m_it;  // a range source's position
    states m_stages;
    std::vector<stage_stats> m_stats;
    pipeline_options m_options;
    std::size_t m_max_in_flight = 0;

    std::optional<executor> m_ex;
    child_group m_group;
    std::exception_ptr m_error;
    std::uint64_t m_next_seq = 0;
    std::size_t m_alive = 0;  // read from the source, not yet handed out
    bool m_started = false;
    bool m_closed = false;
    bool m_source_done = false;
    bool m_source_busy = false;
    bool m_source_closed = false;
    bool m_pumping = false;
    bool m_consuming = false;  // a coroutine is in next() or close()
    bool m_pump_again = false;

    reorder_buffer<value_type> m_done;        // ordered results
    std::deque<value_type> m_done_unordered;  // unordered results
    std::shared_ptr<pipeline_state> m_keep_alive;
};

}  // namespace detail
}  // namespace corun
