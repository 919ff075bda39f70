// The child side of a process pool: the fork server and the worker loop, and
// the parent's handle on them (private to the runtime).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include "corun/process_pool.hpp"

namespace corun::detail {

/// What the fork server tells the parent.
struct server_message {
    enum kind_type : std::uint32_t { spawned = 1, exited = 2 };
    std::uint32_t kind = 0;
    std::uint32_t index = 0;  // spawned: the worker slot it was asked for
    std::int32_t pid = 0;
    std::int32_t status = 0;    // exited: as waitpid reports it
    int fds[3] = {-1, -1, -1};  // spawned: channel, stdout and stderr read ends
};

/// Forks the fork server; returns its pid and the parent's end of the control
/// socket. The child never returns from here.
struct fork_server_handle {
    pid_t pid = -1;
    int control = -1;
};
fork_server_handle start_fork_server(const process_pool_options& options);

/// Asks the server for a new worker in slot `index` (blocking, tiny).
void request_worker(int control, std::uint32_t index);

/// Reads one message; false when none is ready (non-blocking descriptor) or
/// the server has gone (then `gone` is set).
bool receive_server_message(int control, server_message& out, bool& gone);

/// The failure frame's payload for the exception in flight (worker side), and
/// back to an exception (parent side).
void encode_failure(std::string& out, std::exception_ptr error);
std::exception_ptr decode_failure(std::string_view payload, int pid);

}  // namespace corun::detail
