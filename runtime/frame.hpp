// The framing between the pool and its workers (private to the runtime).
#pragma once

#include <cstdint>

namespace corun::detail {

/// Every frame, either way: this header, then `length` bytes of payload.
struct frame_header {
    std::uint32_t length;
    std::uint32_t kind;
    std::uint64_t id;
};

enum frame_kind : std::uint32_t {
    task_frame = 1,     // parent → worker: invoker address, callable, arguments
    result_frame = 2,   // worker → parent: the serialized result
    failure_frame = 3,  // worker → parent: the exception (see encode_failure)
};

/// Larger frames are a protocol error (a worker gone mad), not an allocation.
inline constexpr std::uint32_t max_frame_payload = 1u << 30;

/// A worker's exit code when the pool's initializer threw.
inline constexpr int initializer_failed = 71;

/// The worker's end of its channel to the parent is always this descriptor.
inline constexpr int worker_channel_fd = 3;

}  // namespace corun::detail
