// The errors a pool's tasks can fail with besides their own.
#pragma once

#include <stdexcept>
#include <string>

#include "corun/awaitable.hpp"

namespace corun {

/// The worker process running a task died (a signal, an exit, the OOM
/// killer), or broke the protocol and was killed; every task it held fails
/// with this, the worker is replaced, and the pool goes on.
class CORUN_API worker_crashed : public std::runtime_error {
public:
    worker_crashed(int pid, int signal, int exit_code, const std::string& what);
    /// The worker's process id.
    int pid() const noexcept { return m_pid; }
    /// The signal that ended it, or 0.
    int signal() const noexcept { return m_signal; }
    /// Its exit code if it exited, or -1.
    int exit_code() const noexcept { return m_exit_code; }

private:
    int m_pid;
    int m_signal;
    int m_exit_code;
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

/// A task was submitted to a pool after `close()` or `terminate()`.
class CORUN_API pool_closed : public std::logic_error {
public:
    pool_closed() : std::logic_error("corun: the pool is closed") {}
};

}  // namespace corun
