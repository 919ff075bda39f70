// Frames' shared segments on a worker's socket (private to the runtime): the
// descriptor of a frame's sealed memfd is passed with the frame's first
// byte, so it arrives no later than the frame that names it.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <deque>

#include "corun/detail/wire.hpp"

namespace corun::detail {

/// Frame header flags (`frame_header::flags`).
enum frame_flag : std::uint32_t {
    /// The frame's large blocks are in a segment: the next descriptor
    /// received on the socket.
    has_segment = 1,
    /// Parent → worker: answer with every byte inline (the answer is relayed
    /// to another host, where a descriptor means nothing).
    inline_answer = 2,
    /// The frame's segment could not be passed (sendmsg refused its
    /// descriptor with the errno in the flags' high half): the frame's task
    /// fails, alone.
    segment_refused = 4,
};

/// Marks the frame whose header is at `header` as `segment_refused` with
/// `error`, in place.
void refuse_segment(char* header, int error) noexcept;
/// The errno of a `segment_refused` frame.
inline int refused_errno(std::uint32_t flags) noexcept {
    return static_cast<int>(flags >> 16);
}

/// sendmsg of `iov`, without blocking unless `wait`, with `fd` (if >= 0)
/// attached to its first byte. Returns what sendmsg does.
ssize_t send_frame_bytes(int socket, const iovec* iov, std::size_t count, int fd, bool wait = false) noexcept;

/// recvmsg into [p, p + n), without blocking unless `wait`. The descriptor
/// that came with the bytes (one at most: one goes with a frame, and Linux
/// ends a read at a message with descriptors) is appended to `fds`
/// (close-on-exec), or -1 in its place when this process had no room for
/// it: the frame that names it can then fail alone. Returns what recvmsg does.
ssize_t receive_frame_bytes(int socket, char* p, std::size_t n, std::deque<int>& fds,
                            bool wait = false) noexcept;

/// Segments this process has open at most (the descriptors of tasks not yet
/// finished count): beyond, a frame's blocks go inline, so that a large map
/// cannot run the process out of descriptors.
inline constexpr int max_open_segments = 64;

/// A received segment, if it is one: a memfd sealed against writing and
/// shrinking (so that no one can change it, or make a read of it fault,
/// while it is read). False for anything else.
bool inspect_segment(int fd, wire::segment_view& out) noexcept;

/// Closes a descriptor at the end of a scope (if there is one).
struct fd_closer {
    explicit fd_closer(int f) : fd(f) {}
    fd_closer(const fd_closer&) = delete;
    int fd;
    ~fd_closer();
};

/// Closes every descriptor in `fds`.
void close_all(std::deque<int>& fds) noexcept;

}  // namespace corun::detail
