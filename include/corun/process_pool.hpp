// corun::process_pool — CPU work in worker processes: crash-safe, cancellable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>

#include "corun/awaitable.hpp"
#include "corun/detail/join_waiters.hpp"
#include "corun/detail/pool_ops.hpp"
#include "corun/detail/remote_call.hpp"
#include "corun/detail/wire.hpp"
#include "corun/pool_errors.hpp"

namespace corun {

/// Options of a `process_pool`, for designated initialisers:
/// `corun::process_pool pool{ex, {.workers = 4, .max_tasks_per_child = 100}}`.
struct process_pool_options {
    /// Worker processes; 0 means one per core.
    std::size_t workers = 0;
    /// A worker is replaced after this many tasks (0: never), as Python's
    /// `maxtasksperchild`: a cure for leaks in the code it runs.
    std::size_t max_tasks_per_child = 0;
    /// Runs once in each worker before its first task (a function, or a
    /// lambda without captures: the worker is a copy of the parent, so what
    /// the parent had set up before making the pool is there already).
    void (*initializer)() = nullptr;
    /// How much memory a worker may allocate beyond the copy of the parent it
    /// starts as, in bytes (RLIMIT_AS above its size at start; 0: no limit).
    /// An allocation beyond it fails the task with `std::bad_alloc`.
    std::size_t memory_limit = 0;
    /// Prefix every line a worker prints with `[worker N] `.
    bool prefix_output = false;
    /// Tasks sent ahead to one worker before it has answered (at most 256);
    /// more keeps workers busy between round trips. A task sent ahead is
    /// still only ever run once, and cancelling it before it starts never
    /// costs its worker.
    std::size_t prefetch = 32;
    /// The largest task (function and arguments, as encoded) or result that
    /// may cross, in bytes. Beyond it, `corun::value_too_large` names the
    /// size and the limit, raised where the value was made (the parent for a
    /// task, the worker for a result).
    std::uint64_t max_frame_size = std::uint64_t(4) << 30;
};
// Every options struct of corun is trivially destructible: GCC 12 destroys a
// braced temporary of a type with a destructor one time too many when it
// stands in an expression with `co_await`, as in
// `corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}}`.
static_assert(std::is_trivially_destructible_v<process_pool_options>);

namespace detail {

class process_pool_core;

/// One submitted task as the pool core sees it; the typed operation derives
/// from it and owns the user's completion handler.
class CORUN_API pool_task {
public:
    virtual ~pool_task() = default;
    /// Called once, on the pool's executor, with the result's bytes (and
    /// its shared segment, valid during the call) or the error; the task is
    /// gone afterwards.
    virtual void complete(std::exception_ptr error, std::string_view result,
                          wire::segment_view segment = {}) = 0;
    /// Instead of `complete`, when the event loop itself is being destroyed:
    /// the handler is destroyed without being called, as Asio does with the
    /// handlers of every operation still pending then.
    void abandon() noexcept { delete this; }

    /// The whole task frame, kept until the task ends (it may be sent again
    /// if its worker is killed for another task) and shared with the write
    /// in progress, which may outlive a cancelled task.
    std::shared_ptr<std::string> frame;
    /// The frame's large blocks, if it has any (sealed).
    std::shared_ptr<wire::segment_sink> segment;
    std::uint64_t id = 0;
    /// The answer must come with every byte inline (it is relayed to
    /// another host).
    bool inline_answer = false;
    /// Part of a `map`: all of its tasks are needed, so they may be sent
    /// ahead to a busy worker (see `prefetch`).
    bool batch = false;
};

/// The frame header's room: the core fills it in. Payload follows. With a
/// `size` to come of 64 KiB or more, the buffer of a finished task of this
/// thread is reused when one is spare (see `frame_ptr`): a map's chunks
/// then cost no fresh memory after the first call.
CORUN_API std::string new_task_frame(std::size_t size = 0);
/// Owns a task's frame; gives its buffer back for reuse once the task is done.
CORUN_API std::shared_ptr<std::string> frame_ptr(std::string frame);

/// A typed task of a pool whose core is `Core` (`process_pool_core`, or the
/// MPI pool's): it decodes the result and completes the user's handler.
template <class R, class Handler, class Core = process_pool_core>
class submit_op final : public pool_task {
public:
    submit_op(Handler h, executor ex, std::shared_ptr<Core> core)
        : m_handler(std::move(h)), m_ex(std::move(ex)), m_core(std::move(core)) {}

    void start(std::string f, std::shared_ptr<wire::segment_sink> s);

    /// For a `map` chunk of raw results: where they go.
    using into_type = std::conditional_t<is_into<R>::value, R, std::monostate>;
    void set_into(into_type dest) { m_into = dest; }

    void complete(std::exception_ptr error, std::string_view bytes, wire::segment_view segment) override {
        auto slot = asio::get_associated_cancellation_slot(m_handler);
        if (slot.is_connected()) slot.clear();
        // The handler gets the value, or only the error: for `void`, and for
        // a map chunk, whose results are read straight into their place.
        constexpr bool valueless = std::is_void_v<R> || is_into<R>::value;
        std::conditional_t<valueless, std::monostate, wire_result_t<R>> value{};
        if (!error) {
            try {
                wire::reader r(bytes, segment);
                if constexpr (is_into<R>::value) {
                    if (r.pod<std::uint64_t>() != m_into.n)
                        throw std::runtime_error("corun: a chunk came back with a wrong number of results");
                    r.raw(m_into.dest, m_into.n * sizeof(*m_into.dest));
                } else if constexpr (!valueless) {
                    value = wire::get<wire_result_t<R>>(r);
                }
            } catch (...) {
                error = std::current_exception();
            }
        }
        Handler h = std::move(m_handler);
        // A plain callback has no executor of its own: it runs on the pool's,
        // never on a thread of Asio's system pool behind the user's back.
        auto ex = asio::get_associated_executor(h, m_ex);
        delete this;
        if constexpr (valueless) {
            asio::post(ex, asio::append(std::move(h), error));
        } else {
            asio::post(ex, asio::append(std::move(h), error, std::move(value)));
        }
    }

private:
    Handler m_handler;
    [[no_unique_address]] into_type m_into{};
    executor m_ex;
    std::shared_ptr<Core> m_core;
};

// What a pool's public calls ask of its core (the core's type is private to
// the library: these are the calls across).
CORUN_API void core_submit(process_pool_core& core, pool_task* task);
CORUN_API void core_cancel(process_pool_core& core, pool_task* task);
CORUN_API std::size_t core_workers(const process_pool_core& core) noexcept;
CORUN_API void core_close(process_pool_core& core);
CORUN_API void core_terminate(process_pool_core& core);
CORUN_API void core_join(process_pool_core& core, join_waiters::handler handler);

template <class R, class Handler, class Core>
void submit_op<R, Handler, Core>::start(std::string f, std::shared_ptr<wire::segment_sink> s) {
    frame = frame_ptr(std::move(f));
    // Out of descriptors for a segment, this process would be for the
    // answer's too: the answer comes inline.
    if (s && s->failed()) inline_answer = true;
    if (s && s->size()) {
        s->seal();
        segment = std::move(s);
    }
    auto slot = asio::get_associated_cancellation_slot(m_handler);
    if (slot.is_connected()) {
        slot.assign([this](asio::cancellation_type) { core_cancel(*m_core, this); });
    }
    core_submit(*m_core, this);
}

/// What a pool of worker processes is made of, whatever its core (local, or
/// across hosts): its executor, its core, and the calls that turn a call into
/// a task frame. `pool_ops` builds map, imap and the rest on them.
template <class Pool, class Core>
class frame_pool : public pool_ops<Pool> {
public:
    executor get_executor() const noexcept { return m_ex; }
    /// Worker processes (on every host, for `mpi_pool`).
    std::size_t workers() const noexcept { return core_workers(*m_core); }

    /// No more tasks may be submitted (they fail with `pool_closed`).
    void close() { core_close(*m_core); }
    /// Closes, then waits until every submitted task has finished and every
    /// worker has exited. Cancelling the wait (`with_timeout`) ends it with
    /// `operation_aborted`; the pool goes on finishing its work.
    template <class Token = use_awaitable_t>
    auto join(Token&& token = {}) {
        return asio::async_initiate<Token, void(std::exception_ptr)>(
            [this](auto handler) { core_join(*m_core, join_waiters::handler(std::move(handler))); }, token);
    }
    /// Kills every worker now; tasks not yet finished fail with `operation_aborted`.
    void terminate() { core_terminate(*m_core); }

    static constexpr bool in_process = false;

    /// Internal: runs a chunk of `map`/`imap` as one task.
    template <call_mode Mode, class F, class E>
    awaitable<chunk_result_t<Mode, call_result_t<Mode, F, E>>> run_chunk(F f, std::vector<E> chunk,
                                                                         bool batch) {
        std::string frame = new_task_frame();
        auto segment = new_segment();
        wire::writer w(frame, segment.get());
        put_task_head<Mode, F, E>(w, f);
        wire::put(w, chunk);
        using R = chunk_result_t<Mode, call_result_t<Mode, F, E>>;
        return start_task<R>(std::move(frame), std::move(segment), use_awaitable,
                             [batch](auto& task) { task.batch = batch; });
    }

    /// Internal: items [first, last) of `map`'s random-access `items`, raw
    /// both ways (`raw_chunk`): the frame is written from the items where
    /// they are, and the results are read straight into `dest`.
    template <call_mode Mode, class F, class View, class R>
    awaitable<void> run_slice(const F& f, const View& items, std::size_t first, std::size_t last, R* dest) {
        using E = std::ranges::range_value_t<View>;
        std::string frame = new_task_frame((last - first) * sizeof(E) + 1024);
        auto segment = new_segment();
        wire::writer w(frame, segment.get());
        put_task_head<Mode, F, E>(w, f);
        const std::uint64_t n = last - first;
        w.pod(n);
        auto it = std::ranges::begin(items) + static_cast<std::ptrdiff_t>(first);
        if constexpr (std::ranges::contiguous_range<View>) {
            w.block(std::to_address(it), n * sizeof(E));
        } else if (n * sizeof(E) >= wire::shared_block_min) {
            const std::vector<E> gathered(it, it + static_cast<std::ptrdiff_t>(n));
            w.block(gathered.data(), n * sizeof(E));
        } else {
            w.values<E>(n, [&](std::size_t i) { return E(it[static_cast<std::ptrdiff_t>(i)]); });
        }
        return start_task<into<R>>(std::move(frame), std::move(segment), use_awaitable,
                                   [dest, n](auto& task) {
                                       task.batch = true;
                                       task.set_into(into<R>{dest, n});
                                   });
    }

protected:
    frame_pool(executor ex, std::shared_ptr<Core> core) : m_ex(std::move(ex)), m_core(std::move(core)) {}

    executor m_ex;
    std::shared_ptr<Core> m_core;

private:
    friend class pool_ops<Pool>;

    template <class Token, class F, class... A>
    auto submit_with(Token&& token, F f, A&&... args) {
        using R = std::invoke_result_t<F&, sent_t<A>&...>;
        std::string frame = new_task_frame();
        auto segment = new_segment();
        wire::writer w(frame, segment.get());
        put_task_head<call_mode::single, F, sent_t<A>...>(w, f);
        (wire::put(w, as_sent(args)), ...);
        return start_task<R>(std::move(frame), std::move(segment), std::forward<Token>(token), [](auto&) {});
    }

    /// Where a task's large blocks go: shared memory, for a pool whose
    /// workers are on this host.
    static std::shared_ptr<wire::segment_sink> new_segment() {
        if constexpr (Pool::shared_memory) {
            return std::make_shared<wire::segment_sink>();
        } else {
            return nullptr;
        }
    }

    /// Starts the task of `frame`; `prepare(task)` first sets what the
    /// typed task needs beyond it.
    template <class R, class Token, class Prepare>
    auto start_task(std::string frame, std::shared_ptr<wire::segment_sink> segment, Token&& token,
                    Prepare prepare) {
        return asio::async_initiate<Token, submit_signature<R>>(
            [this, prepare](auto handler, std::string f, std::shared_ptr<wire::segment_sink> s) {
                using op = submit_op<R, decltype(handler), Core>;
                auto* task = new op(std::move(handler), m_ex, m_core);
                prepare(*task);
                task->start(std::move(f), std::move(s));
            },
            token, std::move(frame), std::move(segment));
    }
};

}  // namespace detail

/// A pool of worker processes, like Python's `multiprocessing.Pool`, whose
/// calls are awaitable and which never hangs, loses a result or leaks a process.
///
/// - Workers are forked, when the pool is made, from a single-threaded fork
///   server; replacements come from it too, so they are safe even once the
///   parent has started threads. Stdio is flushed before every fork. Workers
///   hold none of the parent's sockets, never touch its event loop, and die
///   with it (PR_SET_PDEATHSIG, and end of file on their socket). Every child
///   is reaped.
/// - Each worker's stdout and stderr reach the parent's whole line by line.
/// - A worker that dies fails exactly the tasks it held with
///   `worker_crashed` and is replaced; a malformed, oversized or truncated
///   frame from it counts as a crash. The parent never goes down with it.
/// - Cancelling a task that is running kills its worker (real cancellation
///   of runaway CPU work); a queued one is simply dropped.
/// - A task's standard exception is rethrown as its own type; any other as
///   `remote_error` with its type name, message and the worker's pid.
///
/// Values cross to the workers as bytes: trivially copyable types and
/// contiguous ranges of them as they are, any type with a cereal `serialize`
/// function through cereal. Callables: functions, captureless lambdas,
/// lambdas capturing trivially copyable values, serializable function
/// objects. Anything else fails to compile with a message that names it. How
/// a callable is named on the wire is described in `detail/remote_call.hpp`.
///
/// The pool belongs to the executor it is made with, which must be a strand
/// (a `corun::run` loop is one): start its operations there. The thread that
/// makes the pool must outlive it (the fork server dies with that thread).
///
/// @code
/// corun::process_pool pool{co_await corun::this_executor()};
/// std::vector<int> sq = co_await pool.map(square, corun::range(5));
/// int nine = co_await pool.submit(square, 3);
/// @endcode
class CORUN_API process_pool : public detail::frame_pool<process_pool, detail::process_pool_core> {
public:
    /// Large values cross in shared memory (see the README).
    static constexpr bool shared_memory = true;

    explicit process_pool(executor ex);
    process_pool(executor ex, process_pool_options options);
    process_pool(const process_pool&) = delete;
    process_pool& operator=(const process_pool&) = delete;
    /// Closes and joins the processes, blocking, as Python's `with Pool()`
    /// (which terminates): tasks not finished yet fail with
    /// `operation_aborted` (a worker busy with one is killed), worker output
    /// is drained and every child is reaped. To let submitted work finish,
    /// `close()` and `co_await join()` first. A destructor cannot run the
    /// event loop, and waiting on a task that may never end would hang.
    ~process_pool();

    /// The pids of the live workers, in worker order.
    std::vector<int> worker_pids() const;

    /// Internal: runs a task made elsewhere (the MPI pool's host agents hand
    /// theirs over); it completes on the pool's executor.
    void submit_task(detail::pool_task* task) { detail::core_submit(*m_core, task); }
    /// Internal: cancels a task given to `submit_task`; it completes at once.
    void cancel_task(detail::pool_task* task) { detail::core_cancel(*m_core, task); }
    /// Internal: why the pool takes no more tasks (it was closed, or gave
    /// up); empty while it does.
    std::string closed_reason() const;
};

}  // namespace corun
