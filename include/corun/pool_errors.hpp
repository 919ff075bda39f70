// The errors a pool's tasks can fail with besides their own.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "corun/awaitable.hpp"

namespace corun {

/// The worker process running a task died (a signal, an exit, the OOM
/// killer), or broke the protocol and was killed; every task it held fails
/// with this, the worker is replaced, and the pool goes on.
class CORUN_API worker_crashed : public std::runtime_error {
public:
    worker_crashed(int pid, int signal, int exit_code, const std::string& what, std::string host = {},
                   int rank = -1);
    /// The worker's process id (on its host).
    int pid() const noexcept { return m_pid; }
    /// The signal that ended it, or 0.
    int signal() const noexcept { return m_signal; }
    /// Its exit code if it exited, or -1.
    int exit_code() const noexcept { return m_exit_code; }
    /// The host it ran on, for a worker of `mpi_pool` on another host; else empty.
    const std::string& host() const noexcept { return m_host; }
    /// The MPI rank of its host's agent, for a worker of `mpi_pool` on another
    /// host; else -1.
    int rank() const noexcept { return m_rank; }

private:
    int m_pid;
    int m_signal;
    int m_exit_code;
    std::string m_host;
    int m_rank;
};

/// A task threw something other than a standard exception: its type, message
/// and the worker it ran in are kept (standard exceptions are rethrown as
/// their own type).
class CORUN_API remote_error : public std::runtime_error {
public:
    remote_error(std::string type_name, std::string message, int pid);
    const std::string& type_name() const noexcept { return m_type; }
    const std::string& message() const noexcept { return m_message; }
    int pid() const noexcept { return m_pid; }

private:
    std::string m_type;
    std::string m_message;
    int m_pid;
};

/// A task was submitted to a pool that no longer takes tasks: after
/// `close()` or `terminate()`, or after the pool gave up (its initializer
/// failed, workers kept dying before they could run anything, its fork server
/// died). `reason()` says which.
class CORUN_API pool_closed : public std::logic_error {
public:
    explicit pool_closed(const std::string& reason);
    const std::string& reason() const noexcept { return m_reason; }

private:
    std::string m_reason;
};

/// A value (a task with its arguments, or a result) is larger than the pool's
/// `max_frame_size`. Raised where it was made: by `submit`/`map` in the parent
/// for a task, by the worker for a result (which then comes back as this).
class CORUN_API value_too_large : public std::length_error {
public:
    value_too_large(const std::string& what_was_large, std::uint64_t size, std::uint64_t limit);
    std::uint64_t size() const noexcept { return m_size; }
    std::uint64_t limit() const noexcept { return m_limit; }

private:
    std::uint64_t m_size;
    std::uint64_t m_limit;
};

}  // namespace corun
