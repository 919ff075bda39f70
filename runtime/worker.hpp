// The child side of a process pool: the fork server and the worker loop, and
// the parent's handle on them (private to the runtime).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <system_error>

#include "corun/process_pool.hpp"

namespace corun::detail {

/// What the fork server tells the parent.
struct server_message {
    enum kind_type : std::uint32_t { spawned = 1, exited = 2, spawn_failed = 3 };
    std::uint32_t kind = 0;
    std::uint32_t index = 0;  // spawned, spawn_failed: the worker slot it was asked for
    std::int32_t pid = 0;
    /// exited: the status as waitpid reports it; spawn_failed: the errno.
    std::int32_t status = 0;
    /// spawn_failed: the call that failed (a `spawn_stage`).
    std::uint32_t stage = 0;
    /// spawned: the channel, the stdout and stderr read ends, and the board's
    /// memfd. Those the parent had no room for stay -1 (see `fds_lost`).
    int fds[4] = {-1, -1, -1, -1};
    bool fds_lost = false;
};

enum spawn_stage : std::uint32_t { stage_socketpair, stage_pipe, stage_memfd, stage_fork };
/// The system call a `spawn_stage` stands for: "fork", "pipe" …
const char* spawn_stage_name(std::uint32_t stage);

/// A system error whose message names the errno too (EMFILE, EAGAIN …).
std::system_error system_failure(int error, const std::string& what);

/// Forks the fork server; returns its pid, a pidfd for it (or -1 on kernels
/// without them), and the parent's end of the control socket. The child
/// never returns from here. Throws `std::system_error` when it cannot.
struct fork_server_handle {
    pid_t pid = -1;
    int pidfd = -1;
    int control = -1;
};
fork_server_handle start_fork_server(const process_pool_options& options);

/// Asks the server for a new worker in slot `index`; false when it has gone.
bool request_worker(int control, std::uint32_t index);

/// Reads one message; false when none is ready (non-blocking descriptor) or
/// the server has gone (then `gone` is set).
bool receive_server_message(int control, server_message& out, bool& gone);

}  // namespace corun::detail
