// corun::thread_pool — the process pool's calls on in-process threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "corun/awaitable.hpp"
#include "corun/detail/join_waiters.hpp"
#include "corun/detail/pool_ops.hpp"
#include "corun/pool_errors.hpp"

namespace corun {

namespace detail {

/// What a thread_pool's executor tracks: tasks out, the ones not started yet
/// (for `terminate`), and who waits for none. Touched on that executor only.
struct thread_pool_state {
    std::size_t outstanding = 0;
    bool closed = false;
    std::uint64_t next_id = 0;
    std::map<std::uint64_t, std::function<void()>> abort_queued;
    join_waiters joiners;
    void task_done() {
        if (--outstanding == 0 && closed) joiners.complete_all();
    }
};

/// One thread_pool task. Three parties may end it: the pool thread that runs
/// it, a cancellation, and `terminate()`; `m_stage` lets exactly one of them
/// do so. The thread and the abort list own it; the cancellation slot only
/// refers to it weakly, so whichever ends it last frees it, never while
/// another still runs inside it.
template <class R, class Work, class Handler>
class thread_task : public std::enable_shared_from_this<thread_task<R, Work, Handler>> {
public:
    using value_type = wire_result_t<R>;

    thread_task(Handler h, executor pool_ex, Work work, std::shared_ptr<thread_pool_state> state)
        : m_handler(std::move(h)),
          m_pool_ex(std::move(pool_ex)),
          m_work(asio::prefer(m_pool_ex, asio::execution::outstanding_work.tracked)),
          m_task(std::move(work)),
          m_state(std::move(state)) {}

    /// On the pool's executor: queue the work, and make it abortable.
    template <class Threads>
    void start(Threads& threads) {
        ++m_state->outstanding;
        m_id = ++m_state->next_id;
        m_state->abort_queued.emplace(m_id, [self = this->shared_from_this()] { self->abort(false); });
        auto slot = asio::get_associated_cancellation_slot(m_handler);
        if (slot.is_connected()) {
            slot.assign([weak = this->weak_from_this()](asio::cancellation_type) {
                if (auto self = weak.lock()) self->abort(true);
            });
        }
        asio::post(threads, [self = this->shared_from_this()] { self->run(); });
    }

    /// Posts `handler(error, value)` to the handler's own executor.
    template <class H>
    static void post_result(const auto& ex, H&& handler, std::exception_ptr error, value_type value) {
        if constexpr (std::is_void_v<R>) {
            asio::post(ex, asio::append(std::forward<H>(handler), error));
        } else {
            asio::post(ex, asio::append(std::forward<H>(handler), error, std::move(value)));
        }
    }

private:
    enum stage : int { queued, running, aborted };

    /// On a pool thread.
    void run() {
        int expected = queued;
        if (!m_stage.compare_exchange_strong(expected, running)) return;
        std::exception_ptr error;
        value_type value{};
        try {
            if constexpr (std::is_void_v<R>) {
                m_task();
            } else {
                value = m_task();
            }
        } catch (...) {
            error = std::current_exception();
        }
        // Back on the pool's executor, which owns the shared state.
        asio::post(m_pool_ex, [self = this->shared_from_this(), error, value = std::move(value)]() mutable {
            self->finish(error, std::move(value), true);
        });
    }

    /// On the pool's executor: the task has not started, and now never will.
    void abort(bool from_slot) {
        int expected = queued;
        if (!m_stage.compare_exchange_strong(expected, aborted)) return;
        // A slot's handler must not clear the slot it runs in.
        finish(std::make_exception_ptr(
                   boost::system::system_error(asio::error::operation_aborted, "corun: task cancelled")),
               {}, !from_slot);
    }

    void finish(std::exception_ptr error, value_type value, bool clear_slot) {
        if (clear_slot) {
            auto slot = asio::get_associated_cancellation_slot(m_handler);
            if (slot.is_connected()) slot.clear();
        }
        auto keep = this->shared_from_this();  // erasing the abort entry may drop the last owner
        m_state->abort_queued.erase(m_id);
        m_state->task_done();
        auto ex = asio::get_associated_executor(m_handler, m_pool_ex);
        post_result(ex, std::move(m_handler), error, std::move(value));
        m_work = executor();
    }

    Handler m_handler;
    executor m_pool_ex;
    executor m_work;  // keeps the pool's event loop running while the task is out
    Work m_task;
    std::shared_ptr<thread_pool_state> m_state;
    std::atomic<int> m_stage{queued};
    std::uint64_t m_id = 0;
};

}  // namespace detail

/// Options of a `thread_pool`.
struct thread_pool_options {
    /// Threads; 0 means one per core.
    std::size_t threads = 0;
};
static_assert(std::is_trivially_destructible_v<thread_pool_options>);  // see process_pool_options

/// `process_pool`'s calls (`submit`, `map`, `starmap`, `imap`,
/// `imap_unordered`, `close`, `join`) on threads of this process: no
/// serialization and no isolation. Switching between raw speed and isolation
/// is a one-word change.
///
/// Differences that follow from threads: a crash takes the process down; a
/// cancelled (or terminated) task that has not started never runs, but one
/// that is running cannot be stopped and delivers its result; functions and
/// values need not be serializable, only safe to use from another thread.
///
/// Results are delivered on the caller's executor (for a plain callback, the
/// pool's), never on a pool thread.
class CORUN_API thread_pool : public detail::pool_ops<thread_pool> {
public:
    explicit thread_pool(executor ex);
    thread_pool(executor ex, thread_pool_options options);
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    /// Waits (blocking) until every task already submitted has run.
    ~thread_pool();

    executor get_executor() const noexcept { return m_ex; }
    std::size_t workers() const noexcept { return m_threads_count; }

    /// No more tasks may be submitted (they fail with `pool_closed`).
    void close() noexcept { m_state->closed = true; }
    /// Closes, and fails every task not started yet with `operation_aborted`;
    /// running ones cannot be stopped and finish.
    void terminate() {
        m_state->closed = true;
        auto queued = std::move(m_state->abort_queued);
        m_state->abort_queued.clear();
        for (auto& [id, abort] : queued) abort();
    }
    /// Closes, then waits until every submitted task has finished. Cancelling
    /// the wait (`with_timeout`) ends it with `operation_aborted`; the tasks
    /// go on.
    template <class Token = use_awaitable_t>
    auto join(Token&& token = {}) {
        return asio::async_initiate<Token, void(std::exception_ptr)>(
            [this](auto handler) { start_join(detail::join_waiters::handler(std::move(handler))); }, token);
    }

    /// Internal: runs a chunk of `map`/`imap` as one task.
    template <detail::call_mode Mode, class F, class E>
    awaitable<detail::chunk_result_t<Mode, detail::call_result_t<Mode, F, E>>> run_chunk(F f,
                                                                                         std::vector<E> chunk,
                                                                                         bool) {
        return run_on_thread(use_awaitable, [f = std::move(f), chunk = std::move(chunk)]() mutable {
            return detail::call_chunk<Mode>(f, chunk);
        });
    }

    static constexpr bool in_process = true;

private:
    friend class detail::pool_ops<thread_pool>;

    template <class Token, class F, class... A>
    auto submit_with(Token&& token, F f, A&&... args) {
        return run_on_thread(std::forward<Token>(token),
                             std::bind_front(std::move(f), std::forward<A>(args)...));
    }

    /// Runs `work()` on a pool thread; completes on the caller's executor.
    template <class Token, class Work>
    auto run_on_thread(Token&& token, Work work) {
        using R = std::invoke_result_t<Work&>;
        return asio::async_initiate<Token, detail::submit_signature<R>>(
            [this](auto handler, Work w) {
                using task = detail::thread_task<R, Work, decltype(handler)>;
                if (m_state->closed) {
                    task::post_result(asio::get_associated_executor(handler, m_ex), std::move(handler),
                                      std::make_exception_ptr(pool_closed("close() was called")), {});
                    return;
                }
                auto t = std::make_shared<task>(std::move(handler), m_ex, std::move(w), m_state);
                t->start(m_threads);
            },
            token, std::move(work));
    }

    void start_join(detail::join_waiters::handler handler);

    executor m_ex;
    std::size_t m_threads_count;
    std::shared_ptr<detail::thread_pool_state> m_state = std::make_shared<detail::thread_pool_state>();
    asio::thread_pool m_threads;
};

}  // namespace corun
