// The one thread that makes every MPI call of a process (private to the runtime).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace corun::detail::mpi {

/// Every message starts with this (it takes the room a task frame keeps for
/// its own header, so a task frame crosses as it is).
struct header {
    std::uint32_t kind;
    std::uint32_t pool;
    std::uint64_t id;
    std::uint64_t aux;
};
static_assert(sizeof(header) == 24);

enum kind : std::uint32_t {
    hello = 1,   // agent → 0: host name, pid, loaded modules
    welcome,     // 0 → agent: heartbeat interval (aux, in µs)
    open_pool,   // 0 → agent: a pool's options
    pool_ready,  // agent → 0: its workers (aux), or why not (payload)
    task,        // 0 → agent: a task frame (id)
    result,      // agent → 0: a task's result (id)
    failure,     // agent → 0: a task's exception (id)
    cancel,      // 0 → agent: cancel task id
    close_pool,  // 0 → agent: close (aux 0) or terminate (aux 1) the pool
    pool_gone,   // agent → 0: its pool has finished, every worker reaped
    heartbeat,   // agent → 0
    shutdown,    // 0 → agent: exit
};

/// A message with its header filled in and `payload` after it.
std::string message(kind k, std::uint32_t pool, std::uint64_t id, std::uint64_t aux = 0,
                    std::string_view payload = {});
header header_of(std::string_view m);

/// A message as received. Its bytes are not initialised before MPI writes
/// them: zeroing a buffer of gigabytes first would stall the link's thread,
/// and with it the heartbeats, for seconds.
struct received {
    std::unique_ptr<char[]> bytes;
    std::size_t size = 0;
    std::string_view view() const noexcept { return {bytes.get(), size}; }
};

/// Starts MPI on its own thread and moves messages: `send` from any thread,
/// `on_message` called on the link's thread for each one received. Polls
/// without burning a core: short sleeps for a few milliseconds after any
/// traffic, then longer ones, up to 2 ms once idle for a second.
class link {
public:
    struct callbacks {
        std::function<void(int source, received message)> on_message;
        /// A rank not heard from for `silence` (rank 0 only): called once,
        /// and `on_heard_again` once if it speaks again.
        std::function<void(int rank)> on_silent;
        std::function<void(int rank)> on_heard_again;
        /// An MPI call failed talking to `rank` (-1: unknown): the job is lost.
        std::function<void(int rank, const std::string& what)> on_error;
    };

    /// Starts the thread, which calls MPI_Init_thread; returns once it has.
    link();
    /// Stops: see `stop`.
    ~link();

    int rank() const noexcept { return m_rank; }
    int size() const noexcept { return m_size; }

    /// Set once, before any traffic (the heartbeat may be set later).
    void set_heartbeat(std::chrono::microseconds heartbeat) {
        std::lock_guard lock(m_lock);
        m_heartbeat = heartbeat;
    }
    /// Rank 0: from now on, a rank silent this long is reported.
    void set_silence(std::chrono::microseconds silence) {
        std::lock_guard lock(m_lock);
        m_silence = silence;
    }
    void start(callbacks cb, std::chrono::microseconds heartbeat, std::chrono::microseconds silence);
    void send(int dest, std::shared_ptr<const std::string> message);
    void send(int dest, std::string message) {
        send(dest, std::make_shared<const std::string>(std::move(message)));
    }
    /// Waits (at most `grace`) for sends in flight, then finalises MPI and
    /// joins the thread; `abort` calls MPI_Abort(code) instead of finalising.
    void stop(std::chrono::milliseconds grace);
    [[noreturn]] void abort(int code);

private:
    void run();

    std::thread m_thread;
    int m_rank = 0, m_size = 1;
    callbacks m_cb;
    std::chrono::microseconds m_heartbeat{0}, m_silence{0};

    std::mutex m_lock;
    std::condition_variable m_wake;
    bool m_started = false, m_ready = false, m_stopping = false;
    int m_abort_code = -1;
    std::chrono::steady_clock::time_point m_stop_deadline{};
    std::vector<std::pair<int, std::shared_ptr<const std::string>>> m_outbox;
};

/// Messages above this size (4 MiB) are sent in pieces of it; a test may
/// lower it with CORUN_MPI_PIECE (bytes).
std::size_t piece_size();

/// The loaded modules, one "path build-id" line each, to compare across hosts.
std::string module_list();
/// Empty when `theirs` runs the same code as `ours`; else what differs.
std::string module_difference(const std::string& ours, const std::string& theirs);

}  // namespace corun::detail::mpi
