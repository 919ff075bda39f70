#include "output_relay.hpp"

#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace corun::detail {

void line_splitter::feed(std::string_view data, std::string_view prefix, std::string& out) {
    while (!data.empty()) {
        const void* nl = std::memchr(data.data(), '\n', data.size());
        if (!nl) {
            if (m_partial.size() + data.size() < max_line) {
                m_partial.append(data);
                return;
            }
            if (!m_started) out.append(prefix);
            out.append(m_partial);
            out.append(data);
            m_partial.clear();
            m_started = true;
            return;
        }
        const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - data.data()) + 1;
        if (!m_started) out.append(prefix);
        out.append(m_partial);
        out.append(data.substr(0, end));
        m_partial.clear();
        m_started = false;
        data.remove_prefix(end);
    }
}

void line_splitter::finish(std::string_view prefix, std::string& out) {
    if (m_partial.empty() && !m_started) return;
    if (!m_started) out.append(prefix);
    out.append(m_partial);
    out.push_back('\n');
    m_partial.clear();
    m_started = false;
}

/// How often a writer waiting for a reader looks whether it should stop.
constexpr int poll_interval_ms = 20;

struct output_relay::state {
    executor ex;
    std::function<void()> on_room;
    mutable std::mutex lock;
    std::condition_variable changed;
    std::string queued[2];          // for stdout, stderr
    std::size_t backlog = 0;        // queued bytes, and those being written
    bool dead[2] = {false, false};  // the reader has gone
    bool room_wanted = false;
    std::function<void()> on_empty;
    bool stop = false;
    bool done = false;

    /// The writer thread: every signal blocked (SIGPIPE included: a write to a
    /// pipe nobody reads fails with EPIPE instead of killing the process).
    void run() {
        std::unique_lock guard(lock);
        for (;;) {
            changed.wait(guard, [&] { return stop || !queued[0].empty() || !queued[1].empty(); });
            if (stop) break;
            for (int i = 0; i < 2; ++i) {
                if (queued[i].empty()) continue;
                std::string batch = std::move(queued[i]);
                queued[i].clear();
                const bool drop = dead[i];
                guard.unlock();
                const bool ok = drop || write_out(i + 1, batch);
                guard.lock();
                if (!ok) dead[i] = true;
                backlog -= batch.size();
                if (room_wanted && backlog <= low_water) {
                    room_wanted = false;
                    asio::post(ex, on_room);
                }
                if (on_empty && backlog == 0) asio::post(ex, std::exchange(on_empty, nullptr));
                changed.notify_all();
            }
        }
        done = true;
        changed.notify_all();
    }

    /// False when the reader has gone (or the descriptor is unusable).
    bool write_out(int fd, std::string_view data) {
        while (!data.empty()) {
            struct stat st {};
            if (::fstat(fd, &st) != 0) return false;
            // A file never blocks; a pipe, socket or terminal may: wait until it
            // takes more, then give it at most PIPE_BUF bytes, which a pipe
            // with room takes without blocking, ending at a line where possible
            // so that the parent's own output meets ours between lines.
            std::size_t n = data.size();
            if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
                pollfd p{fd, POLLOUT, 0};
                const int r = ::poll(&p, 1, poll_interval_ms);
                if (r < 0 && errno != EINTR) return false;
                if (r <= 0) {
                    if (stopping()) return true;  // dropped: the pool is going and nobody reads
                    continue;
                }
                if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return false;
                n = std::min<std::size_t>(n, PIPE_BUF);
                if (n < data.size()) {
                    const std::size_t nl = data.substr(0, n).rfind('\n');
                    if (nl != std::string_view::npos) n = nl + 1;
                }
            }
            // Once stopped, not a byte more: the descriptor may by now be
            // something else (the application restored its stdout).
            if (stopping()) return true;
            const ssize_t k = ::write(fd, data.data(), n);
            if (k < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                if (errno == EPIPE) consume_sigpipe();
                return false;
            }
            data.remove_prefix(static_cast<std::size_t>(k));
        }
        return true;
    }

    bool stopping() {
        std::lock_guard guard(lock);
        return stop;
    }

    static void consume_sigpipe() {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        const timespec now{0, 0};
        while (::sigtimedwait(&pipe_only, nullptr, &now) < 0 && errno == EINTR) {
        }
    }
};

output_relay::output_relay(executor ex, std::function<void()> on_room) : m_state(std::make_shared<state>()) {
    m_state->ex = std::move(ex);
    m_state->on_room = std::move(on_room);
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    m_writer = std::thread([s = m_state] { s->run(); });
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

output_relay::~output_relay() {
    stop(std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
}

void output_relay::stop(std::chrono::steady_clock::time_point deadline) {
    if (!m_writer.joinable()) return;
    std::unique_lock guard(m_state->lock);
    m_state->stop = true;
    m_state->room_wanted = false;
    m_state->on_empty = nullptr;
    m_state->changed.notify_all();
    // The writer stops within its poll interval, or after its current write.
    const bool done = m_state->changed.wait_until(guard, deadline, [&] { return m_state->done; });
    guard.unlock();
    if (done) {
        m_writer.join();
    } else {
        m_writer.detach();
    }
}

void output_relay::push(int fd, std::string&& lines) {
    if (lines.empty()) return;
    std::lock_guard guard(m_state->lock);
    m_state->backlog += lines.size();
    auto& q = m_state->queued[fd == 2 ? 1 : 0];
    if (q.empty()) {
        q = std::move(lines);
    } else {
        q.append(lines);
    }
    m_state->changed.notify_all();
}

bool output_relay::full() const {
    std::lock_guard guard(m_state->lock);
    return m_state->backlog >= high_water;
}

void output_relay::want_room() {
    std::lock_guard guard(m_state->lock);
    if (m_state->backlog <= low_water) {
        asio::post(m_state->ex, m_state->on_room);
        return;
    }
    m_state->room_wanted = true;
}

void output_relay::when_empty(std::function<void()> f) {
    std::lock_guard guard(m_state->lock);
    if (m_state->backlog == 0) {
        asio::post(m_state->ex, std::move(f));
        return;
    }
    m_state->on_empty = std::move(f);
}

void output_relay::flush(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock guard(m_state->lock);
    m_state->changed.wait_until(guard, deadline, [&] { return m_state->backlog == 0 || m_state->done; });
}

}  // namespace corun::detail
