// corun::mpi_pool — the process pool's calls across many hosts, on Open MPI.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "corun/process_pool.hpp"

namespace corun {

/// Options of an `mpi_session`, for designated initialisers.
struct mpi_options {
    /// How often each host agent tells rank 0 it is alive.
    std::chrono::milliseconds heartbeat_interval{250};
    /// A host agent silent this long is lost: the tasks it held run elsewhere
    /// and it gets no more work (a stopped or hung host; a host that dies
    /// ends the job, see the README's "Many hosts").
    std::chrono::milliseconds heartbeat_timeout{3000};
};
static_assert(std::is_trivially_destructible_v<mpi_options>);  // see process_pool_options

/// One host of an `mpi_session`, as rank 0 knows it.
struct mpi_host {
    int rank = 0;
    std::string name;
    int pid = 0;  // the agent's (rank 0's own for rank 0)
    bool lost = false;
};

/// The MPI side of a program: made first thing in `main`, before any pool.
///
/// - Launched by `mpirun` or `srun` with N ranks: rank 0 returns from the
///   constructor and runs the program; every other rank becomes a *host
///   agent* and never returns (it serves the `mpi_pool`s rank 0 makes, then
///   exits when rank 0's session ends). Agents check at start that they run
///   the same binaries as rank 0 (every loaded module's build id): a host
///   that differs is refused and the job ends with a message naming it.
/// - Launched without MPI (no `mpirun`, no `srun`): nothing is started, and
///   every `mpi_pool` is a local process pool.
///
/// All MPI calls are made by one progress thread of the session's own; it
/// sleeps when there is no traffic (at most 2 ms between polls).
///
/// @code
/// int main(int argc, char** argv) {
///     corun::mpi_session mpi(argc, argv);
///     return corun::run(app());   // app() makes corun::mpi_pool pools
/// }
/// @endcode
class CORUN_API mpi_session {
public:
    mpi_session(int& argc, char**& argv, mpi_options options = {});
    mpi_session(const mpi_session&) = delete;
    mpi_session& operator=(const mpi_session&) = delete;
    /// Rank 0: tells the agents to exit and finalises MPI. A host still
    /// silent then would hang MPI's finalisation: the job is aborted instead
    /// (non-zero exit), with a message naming the host.
    ~mpi_session();

    /// 0 in the program; the number of ranks, 1 without MPI.
    int rank() const noexcept;
    int size() const noexcept;
    /// Every host: rank 0 first, then each agent.
    std::vector<mpi_host> hosts() const;
};

/// Options of an `mpi_pool`: those of every host's local process pool.
/// `workers` is per host (0: one per core of that host).
struct mpi_pool_options {
    process_pool_options pool = {};
    /// Rank 0 runs tasks on its own host too (with `pool.workers` workers);
    /// false leaves rank 0's host to the program.
    bool local_workers = true;
};
static_assert(std::is_trivially_destructible_v<mpi_pool_options>);

namespace detail {
class mpi_pool_core;
CORUN_API void core_submit(mpi_pool_core& core, pool_task* task);
CORUN_API void core_cancel(mpi_pool_core& core, pool_task* task);
CORUN_API std::size_t core_workers(const mpi_pool_core& core) noexcept;
CORUN_API void core_close(mpi_pool_core& core);
CORUN_API void core_terminate(mpi_pool_core& core);
CORUN_API void core_join(mpi_pool_core& core, join_waiters::handler handler);
}  // namespace detail

/// A pool of worker processes on every host of an `mpi_session`, with exactly
/// the calls of `process_pool` (both are a `frame_pool`): `submit` (every completion token), `map`,
/// `starmap`, `imap`, `imap_unordered`, `close`, `join`, `terminate`,
/// cancellation, the same typed errors. Switching is one word.
///
/// - Each host (rank 0's own, and each agent's) runs a local `process_pool`;
///   tasks go, as the existing task frames, to the hosts that ask for work, so
///   a faster or less loaded host does more. User code runs only in the
///   forked workers, never in a rank's process.
/// - A task that crashes its worker fails with `worker_crashed` naming the
///   host, rank and pid; the job goes on. A host that stops answering (see
///   `mpi_options::heartbeat_timeout`) is lost: its tasks run elsewhere.
/// - Without an `mpi_session`, or with one rank, it is a local process pool.
///
/// @code
/// corun::mpi_pool pool{co_await corun::this_executor()};
/// std::vector<int> sq = co_await pool.map(square, corun::range(100));
/// @endcode
class CORUN_API mpi_pool : public detail::frame_pool<mpi_pool, detail::mpi_pool_core> {
public:
    /// Values cross to other hosts inline, in the frame itself.
    static constexpr bool shared_memory = false;

    explicit mpi_pool(executor ex);
    mpi_pool(executor ex, mpi_pool_options options);
    mpi_pool(const mpi_pool&) = delete;
    mpi_pool& operator=(const mpi_pool&) = delete;
    /// As `process_pool`'s: unfinished tasks fail with `operation_aborted`,
    /// every host's workers are stopped and reaped (blocking, bounded).
    ~mpi_pool();

    /// The hosts serving this pool (rank 0's first when it has workers).
    std::vector<mpi_host> hosts() const;
};

}  // namespace corun
