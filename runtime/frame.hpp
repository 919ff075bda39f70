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
    std::uint32_t reserved;
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

/// A worker's exit code when the pool's initializer threw.
inline constexpr int initializer_failed = 71;
/// A worker's exit code when it could not take in a task (out of memory).
inline constexpr int worker_out_of_memory = 72;

/// The worker's end of its channel to the parent is always this descriptor.
inline constexpr int worker_channel_fd = 3;

/// One page of memory shared by the parent and one worker, so that each side
/// knows at once, without a round trip, what the other has done:
///
/// - `ready` is set by the worker once its initializer has run: a worker that
///   dies before is a failure of the pool (it counts towards giving up), one
///   that dies after is the failure of at most the task it was running.
/// - A slot per task sent ahead and not yet answered, indexed by its sequence
///   number modulo `slots`. The parent writes `queued` before sending the task;
///   the worker moves it to `started` before running it, the parent to
///   `cancelled` to withdraw it. Both moves are compare-and-swaps, so exactly
///   one of them wins: a withdrawn task never starts, and a started one can
///   only be stopped by killing its worker. When a worker dies, the slots say
///   which task it was running (that one failed) and which it never started
///   (those go back to the pool).
///
/// A task could scribble on the page (it lives in the worker's memory): the
/// parent treats anything unexpected as "started".
struct worker_board {
    static constexpr std::size_t slots = 256;
    enum state : std::uint64_t { queued = 1, started = 2, cancelled = 3 };

    static constexpr std::uint64_t value(std::uint64_t seq, state s) noexcept { return (seq << 2) | s; }

    /// Worker side: true if the task may run (it is now `started`).
    bool claim(std::uint64_t seq) noexcept {
        auto expected = value(seq, queued);
        if (slot(seq).compare_exchange_strong(expected, value(seq, started))) return true;
        return expected != value(seq, cancelled);
    }
    /// Parent side: true if the task will never start.
    bool withdraw(std::uint64_t seq) noexcept {
        auto expected = value(seq, queued);
        return slot(seq).compare_exchange_strong(expected, value(seq, cancelled));
    }
    void mark_queued(std::uint64_t seq) noexcept { slot(seq).store(value(seq, queued)); }
    bool never_started(std::uint64_t seq) const noexcept {
        const auto v = m_slots[seq % slots].load();
        return v == value(seq, queued) || v == value(seq, cancelled);
    }

    std::atomic<std::uint32_t> ready{0};

private:
    std::atomic<std::uint64_t>& slot(std::uint64_t seq) noexcept { return m_slots[seq % slots]; }
    std::atomic<std::uint64_t> m_slots[slots] = {};
};
static_assert(sizeof(worker_board) <= 4096);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

/// Sequence numbers are kept below this, so that `seq << 2` loses nothing.
inline constexpr std::uint64_t max_seq = std::uint64_t(1) << 61;

}  // namespace corun::detail
