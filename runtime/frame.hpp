// The framing between the pool and its workers, and the page each worker
// shares with the parent (private to the runtime).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace corun::detail {

/// Every frame, either way: this header, then `length` bytes of payload.
struct frame_header {
    std::uint64_t length;
    std::uint32_t kind;
    /// `frame_flag`s (see shared_segment.hpp).
    std::uint32_t flags;
    /// The task's sequence number at its worker (see `worker_board`).
    std::uint64_t id;
};
static_assert(sizeof(frame_header) == 24);

enum frame_kind : std::uint32_t {
    task_frame = 1,     // parent → worker: invoker address, callable, arguments
    result_frame = 2,   // worker → parent: the serialized result
    failure_frame = 3,  // worker → parent: the exception (see encode_failure)
    skipped_frame = 4,  // worker → parent: the task was cancelled before it started
};

/// A worker's exit code when the pool's initializer threw, or when it could
/// not take in a task (out of memory). A task may exit with any code too:
/// the parent trusts the board's `exit_reason`, never these.
inline constexpr int initializer_failed = 71;
inline constexpr int worker_out_of_memory = 72;

/// Where the worker's end of its channel goes: a high descriptor nothing in
/// a task is likely to write to by mistake (the application's own low
/// descriptors, a log file on 3 say, are inherited as numbers by the code the
/// worker runs). Lower when RLIMIT_NOFILE is lower.
inline constexpr int worker_channel_fd = 511;

/// One page of memory shared by the parent and one worker, so that each side
/// knows at once, without a round trip, what the other has done:
///
/// - `ready` is set by the worker once its initializer has run: a worker that
///   dies before is a failure of the pool (it counts towards giving up), one
///   that dies after is the failure of at most the task it was running.
/// - `exit_reason` says why the worker ended itself, when it did (a task may
///   exit with any code, so exit codes prove nothing).
/// - A slot per task sent ahead and not yet answered, indexed by its sequence
///   number modulo `slots`. The parent writes `queued` before sending the
///   task. Every later move is a compare-and-swap, so exactly one side wins
///   each race:
///   - worker: `queued` → `started` before running it (or, finding it
///     `cancelled`, skips it); `started` → `done` once it has returned,
///     before sending its answer;
///   - parent, to cancel: `queued` → `cancelled` (it will never start), or
///     else `started` → `doomed` (it is running: its worker is killed, and a
///     worker that finds its task doomed starts nothing more). A task already
///     `done` needs neither: its answer is on its way.
///   When a worker dies, the slots say which task it was running (that one
///   failed) and which it never started (those go back to the pool).
///
/// A task could scribble on the page (it lives in the worker's memory): the
/// parent treats anything unexpected as "started".
struct worker_board {
    static constexpr std::size_t slots = 256;
    enum state : std::uint64_t { queued = 1, started = 2, cancelled = 3, done = 4, doomed = 5 };
    enum reason : std::uint32_t { none = 0, initializer_threw = 1, out_of_memory = 2 };

    static constexpr std::uint64_t value(std::uint64_t seq, state s) noexcept { return (seq << 3) | s; }

    /// Worker side: true if the task may run (it is now `started`).
    bool claim(std::uint64_t seq) noexcept { return !move(seq, queued, started, cancelled); }
    /// Worker side, after the task returned: false if it was doomed meanwhile
    /// (the worker is about to be killed and must start nothing more).
    bool finish(std::uint64_t seq) noexcept { return !move(seq, started, done, doomed); }
    /// Parent side: true if the task will never start.
    bool withdraw(std::uint64_t seq) noexcept { return cas(seq, queued, cancelled); }
    /// Parent side: true if the task is running and now doomed (kill its worker).
    bool doom(std::uint64_t seq) noexcept { return cas(seq, started, doomed); }
    void mark_queued(std::uint64_t seq) noexcept { slot(seq).store(value(seq, queued)); }
    bool never_started(std::uint64_t seq) const noexcept {
        const auto v = m_slots[seq % slots].load();
        return v == value(seq, queued) || v == value(seq, cancelled);
    }

    std::atomic<std::uint32_t> ready{0};
    std::atomic<std::uint32_t> exit_reason{none};

private:
    std::atomic<std::uint64_t>& slot(std::uint64_t seq) noexcept { return m_slots[seq % slots]; }
    bool cas(std::uint64_t seq, state from, state to) noexcept {
        auto expected = value(seq, from);
        return slot(seq).compare_exchange_strong(expected, value(seq, to));
    }
    /// `from` → `to`; true only if the slot held `refused` instead.
    bool move(std::uint64_t seq, state from, state to, state refused) noexcept {
        auto expected = value(seq, from);
        if (slot(seq).compare_exchange_strong(expected, value(seq, to))) return false;
        return expected == value(seq, refused);
    }
    std::atomic<std::uint64_t> m_slots[slots] = {};
};
static_assert(sizeof(worker_board) <= 4096);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

/// Sequence numbers are kept below this, so that `seq << 3` loses nothing.
inline constexpr std::uint64_t max_seq = std::uint64_t(1) << 60;

}  // namespace corun::detail
