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
#include "corun/detail/erased_handler.hpp"
#include "corun/detail/pool_ops.hpp"
#include "corun/pool_errors.hpp"

namespace corun {

/// Options of a `thread_pool`.
struct thread_pool_options {
    /// Threads; 0 means one per core.
    std::size_t threads = 0;
};

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
    explicit thread_pool(executor ex, thread_pool_options options = {});
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
    /// Closes, then waits until every submitted task has finished.
    template <class Token = use_awaitable_t>
    auto join(Token&& token = {}) {
        return asio::async_initiate<Token, void()>(
            [this](auto handler) { start_join(detail::erased_handler<>(std::move(handler))); }, token);
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
    /// What the pool's executor tracks: tasks out, and who waits for none.
    struct shared_state {
        std::size_t outstanding = 0;
        bool closed = false;
        std::uint64_t next_id = 0;
        std::map<std::uint64_t, std::function<void()>> abort_queued;  // for terminate()
        std::vector<detail::erased_handler<>> joiners;
        void task_done() {
            if (--outstanding == 0 && closed) {
                for (auto& j : joiners) j.post();
                joiners.clear();
            }
        }
    };

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
                using handler_type = decltype(handler);
                // Shared by the thread that runs the task and the cancellation
                // path; `stage` decides which of them completes the handler.
                struct op {
                    handler_type handler;
                    executor ex;
                    Work work;
                    std::shared_ptr<shared_state> state;
                    std::atomic<int> stage{0};  // 0 queued, 1 running, 2 cancelled
                    std::uint64_t id = 0;
                    void finish(std::exception_ptr e, detail::wire_result_t<R> value = {}) {
                        auto slot = asio::get_associated_cancellation_slot(handler);
                        if (slot.is_connected()) slot.clear();
                        state->abort_queued.erase(id);
                        state->task_done();
                        if constexpr (std::is_void_v<R>) {
                            asio::post(ex, asio::append(std::move(handler), e));
                        } else {
                            asio::post(ex, asio::append(std::move(handler), e, std::move(value)));
                        }
                    }
                };
                auto ex = asio::get_associated_executor(handler, m_ex);
                if (m_state->closed) {
                    auto e = std::make_exception_ptr(pool_closed());
                    if constexpr (std::is_void_v<R>) {
                        asio::post(ex, asio::append(std::move(handler), e));
                    } else {
                        asio::post(ex, asio::append(std::move(handler), e, detail::wire_result_t<R>{}));
                    }
                    return;
                }
                ++m_state->outstanding;
                auto o = std::make_shared<op>(std::move(handler), ex, std::move(w), m_state);
                auto abort = [o] {
                    int queued = 0;
                    if (o->stage.compare_exchange_strong(queued, 2))
                        o->finish(std::make_exception_ptr(boost::system::system_error(
                            asio::error::operation_aborted, "corun: task cancelled")));
                };
                o->id = ++m_state->next_id;
                m_state->abort_queued.emplace(o->id, abort);
                auto slot = asio::get_associated_cancellation_slot(o->handler);
                if (slot.is_connected()) slot.assign([abort](asio::cancellation_type) { abort(); });
                asio::post(m_threads, [o] {
                    int queued = 0;
                    if (!o->stage.compare_exchange_strong(queued, 1)) return;
                    std::exception_ptr error;
                    detail::wire_result_t<R> value{};
                    try {
                        if constexpr (std::is_void_v<R>) {
                            o->work();
                        } else {
                            value = o->work();
                        }
                    } catch (...) {
                        error = std::current_exception();
                    }
                    // Back on the caller's executor to touch shared state and complete.
                    asio::post(o->ex, [o, error, value = std::move(value)]() mutable {
                        o->finish(error, std::move(value));
                    });
                });
            },
            token, std::move(work));
    }

    void start_join(detail::erased_handler<> handler);

    executor m_ex;
    std::size_t m_threads_count;
    std::shared_ptr<shared_state> m_state = std::make_shared<shared_state>();
    asio::thread_pool m_threads;
};

}  // namespace corun
