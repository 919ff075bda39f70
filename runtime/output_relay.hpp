// Worker output on its way to the parent's stdout and stderr (private to the runtime).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "corun/awaitable.hpp"

namespace corun::detail {

/// One worker stream cut into whole lines. Linear in what it is fed: only new
/// bytes are searched. A line longer than `max_line` is passed on in pieces
/// as it comes (only such a line can meet another worker's output mid-line).
class line_splitter {
public:
    static constexpr std::size_t max_line = 64 * 1024;

    /// Appends to `out` every line `data` completes, each after `prefix`.
    void feed(std::string_view data, std::string_view prefix, std::string& out);
    /// Passes on an unfinished last line, ended with a newline.
    void finish(std::string_view prefix, std::string& out);

private:
    std::string m_partial;
    bool m_started = false;  // part of the current line has been passed on
};

/// Writes what the workers print to the parent's stdout (1) and stderr (2)
/// from a thread of its own, so the event loop never blocks on a slow or
/// stalled reader. A reader that has gone (EPIPE) raises no SIGPIPE: that
/// output is dropped from then on. At most `high_water` bytes wait: beyond,
/// `full()` tells the pool to stop reading its workers' pipes (so workers
/// printing faster than the reader reads block in their own writes, as they
/// would writing to that reader directly), and `on_room` runs on the pool's
/// executor once the backlog has fallen to `low_water`.
class output_relay {
public:
    static constexpr std::size_t high_water = 1 << 20;
    static constexpr std::size_t low_water = 256 * 1024;

    output_relay(executor ex, std::function<void()> on_room);
    output_relay(const output_relay&) = delete;
    output_relay& operator=(const output_relay&) = delete;
    /// Drops what is left (see `stop`).
    ~output_relay();

    /// Queues whole lines for descriptor `fd` (1 or 2).
    void push(int fd, std::string&& lines);
    bool full() const;
    /// Asks for `on_room` when the backlog is down to `low_water`.
    void want_room();
    /// Posts `f` to the pool's executor once everything queued is written
    /// (or dropped, its reader gone).
    void when_empty(std::function<void()> f);
    /// Blocks until everything queued is written or `deadline` has passed.
    void flush(std::chrono::steady_clock::time_point deadline);
    /// Drops what is left and stops the writer, waiting for it until
    /// `deadline` at most: a terminal that holds it in write() then lets it
    /// finish on its own, with its own state.
    void stop(std::chrono::steady_clock::time_point deadline);

private:
    struct state;
    std::shared_ptr<state> m_state;  // shared with the writer thread
    std::thread m_writer;
};

}  // namespace corun::detail
