#include "corun/process_pool.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <thread>

#include "frame.hpp"
#include "worker.hpp"

namespace corun {

worker_crashed::worker_crashed(int pid, int signal, int exit_code, const std::string& what)
    : std::runtime_error(what), m_pid(pid), m_signal(signal), m_exit_code(exit_code) {}

remote_error::remote_error(std::string type_name, std::string message, int pid)
    : std::runtime_error("corun: " + type_name + " in worker " + std::to_string(pid) + ": " + message),
      m_type(std::move(type_name)),
      m_message(std::move(message)),
      m_pid(pid) {}

namespace detail {

namespace {

std::exception_ptr aborted() {
    return std::make_exception_ptr(
        boost::system::system_error(asio::error::operation_aborted, "corun: task cancelled"));
}

/// Like transfer_all, but lets one write take megabytes rather than Asio's
/// default 64 KiB, so a map chunk goes out in a few system calls.
std::size_t big_writes(const boost::system::error_code& ec, std::size_t) {
    return ec ? 0 : std::size_t(4) << 20;
}

void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        const ssize_t k = ::write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) {
            pollfd pf{fd, POLLOUT, 0};
            ::poll(&pf, 1, -1);
            continue;
        }
        if (k <= 0) return;
        p += k;
        n -= static_cast<std::size_t>(k);
    }
}

}  // namespace

/// One worker process as the parent sees it.
struct worker_proc {
    worker_proc(const executor& ex, std::uint32_t i, const server_message& m)
        : index(i),
          pid(m.pid),
          channel(ex, asio::local::stream_protocol(), m.fds[0]),
          out(ex, m.fds[1]),
          err(ex, m.fds[2]) {
        out.non_blocking(true);
        err.non_blocking(true);
    }

    using clock = std::chrono::steady_clock;
    struct held {
        std::uint64_t id;
        pool_task* task;  // null once cancelled: its answer is dropped
        clock::time_point sent;
    };
    /// Forwards what the worker prints to the parent's descriptor, whole lines only.
    struct relay {
        std::string partial;
        bool open = true;
    };

    std::uint32_t index;
    pid_t pid;
    asio::local::stream_protocol::socket channel;
    asio::posix::stream_descriptor out, err;
    relay relays[2];
    /// Answers as they arrive; grown without zero-filling (a chunk's answer
    /// can be megabytes) and compacted after each read.
    std::unique_ptr<char[]> rbuf = std::unique_ptr<char[]>(new char[1 << 16]);
    std::size_t rcap = 1 << 16, rpos = 0, rend = 0;
    void reserve(std::size_t n) {
        if (n <= rcap) return;
        std::unique_ptr<char[]> bigger(new char[n]);
        std::memcpy(bigger.get(), rbuf.get(), rend);
        rbuf = std::move(bigger);
        rcap = n;
    }
    using frame_ptr = std::shared_ptr<const std::string>;
    // Frames to send, and the bytes of the write in progress: one buffer, which
    // measured twice as fast as a gather-write of the frames themselves.
    std::vector<frame_ptr> pending;
    std::string writing_bytes;
    bool writing = false;
    std::deque<held> inflight;
    std::size_t assigned = 0;
    bool retiring = false;      // has had its share of tasks; leaves when idle
    bool channel_down = false;  // end of file, error, or we closed it
    bool exited = false;        // the fork server reaped it
    int status = 0;
    std::string protocol_error;

    /// Tasks are sent ahead only to a worker whose tasks have proved short:
    /// queued behind a long one, a task would wait while another worker idles.
    bool available(std::size_t prefetch, bool batch) const {
        return !channel_down && !retiring && inflight.size() < (short_tasks || batch ? prefetch : 1);
    }
    bool short_tasks = false;
    bool answered = false;           // has sent at least one answer
    bool cancelled_by_pool = false;  // killed to cancel its task
    clock::time_point last_answer{};
};

class process_pool_core : public std::enable_shared_from_this<process_pool_core> {
public:
    process_pool_core(executor ex, process_pool_options options)
        : m_ex(std::move(ex)), m_options(std::move(options)), m_control_wait(m_ex) {
        if (m_options.workers == 0) m_options.workers = std::max(1u, std::thread::hardware_concurrency());
        if (m_options.prefetch == 0) m_options.prefetch = 1;
    }

    /// Forks the server and the first workers; blocks until they are all there.
    void start() {
        auto& context = asio::query(m_ex, asio::execution::context);
        // The fork server only ever forks and waits: it never runs or tears
        // down the parent's event loop, so the child side needs no fork_child.
        context.notify_fork(asio::execution_context::fork_prepare);
        m_server = start_fork_server(m_options);
        context.notify_fork(asio::execution_context::fork_parent);
        m_workers.resize(m_options.workers);
        for (std::uint32_t i = 0; i < m_options.workers; ++i) request_worker(m_server.control, i);
        std::vector<server_message> early_exits;
        for (std::size_t started = 0; started < m_options.workers;) {
            server_message m;
            bool gone = false;
            if (!receive_server_message(m_server.control, m, gone)) {
                if (gone) throw std::runtime_error("corun: the fork server died while starting workers");
                continue;
            }
            if (m.kind == server_message::spawned) {
                add_worker(m);
                ++started;
            } else {
                early_exits.push_back(m);
            }
        }
        m_control_wait.assign(::dup(m_server.control));
        m_control_wait.non_blocking(true);
        ::fcntl(m_server.control, F_SETFL, ::fcntl(m_server.control, F_GETFL) | O_NONBLOCK);
        for (auto& m : early_exits) on_server_message(m);
        wait_control();
    }

    const executor& get_executor() const { return m_ex; }
    std::size_t workers() const { return m_options.workers; }

    std::vector<int> pids() const {
        std::vector<int> out;
        for (auto& w : m_workers)
            if (w && !w->channel_down) out.push_back(w->pid);
        return out;
    }

    void submit(pool_task* t) {
        if (m_closed) {
            t->complete(std::make_exception_ptr(pool_closed()), {});
            return;
        }
        t->id = ++m_next_id;
        const frame_header h{static_cast<std::uint32_t>(t->frame->size() - sizeof(frame_header)), task_frame,
                             t->id};
        std::memcpy(t->frame->data(), &h, sizeof h);
        m_queue.push_back(t);
        dispatch();
    }

    void cancel(pool_task* t) {
        if (auto q = std::find(m_queue.begin(), m_queue.end(), t); q != m_queue.end()) {
            m_queue.erase(q);
            t->complete(aborted(), {});
            return;
        }
        for (auto& w : m_workers) {
            if (!w) continue;
            auto h =
                std::find_if(w->inflight.begin(), w->inflight.end(), [t](auto& e) { return e.task == t; });
            if (h == w->inflight.end()) continue;
            if (h != w->inflight.begin()) {
                // Still waiting in the worker's queue: drop its answer later.
                h->task = nullptr;
                t->complete(aborted(), {});
                return;
            }
            // Running: the only way to stop it is to kill its worker. The
            // tasks queued behind it did nothing wrong and go back to the pool.
            w->inflight.pop_front();
            for (auto r = w->inflight.rbegin(); r != w->inflight.rend(); ++r)
                if (r->task) m_queue.push_front(r->task);
            w->inflight.clear();
            w->cancelled_by_pool = true;
            if (!w->exited) ::kill(w->pid, SIGKILL);
            channel_down(w);
            t->complete(aborted(), {});
            dispatch();
            return;
        }
    }

    void close() { m_closed = true; }

    void terminate() {
        m_closed = true;
        fail_queued(aborted());
        for (auto& w : m_workers) {
            if (!w) continue;
            for (auto& h : w->inflight)
                if (h.task) h.task->complete(aborted(), {});
            w->inflight.clear();
            if (!w->exited) ::kill(w->pid, SIGKILL);
            channel_down(w);
        }
        check_join();
    }

    void join(erased_handler<> h) {
        m_join_waiters.push_back(std::move(h));
        check_join();
    }

    /// The destructor's close-and-join: blocking, for when no coroutine can
    /// await it any more.
    void shutdown() {
        if (m_finished) return;
        m_closed = true;
        fail_queued(aborted());
        for (auto& w : m_workers) {
            if (!w) continue;
            bool busy = false;
            for (auto& h : w->inflight) {
                if (h.task) h.task->complete(aborted(), {});
                busy = true;
            }
            w->inflight.clear();
            if (busy && !w->exited) ::kill(w->pid, SIGKILL);  // its answers would be thrown away
            channel_down(w);
        }
        finish_blocking();
    }

private:
    using worker_ptr = std::shared_ptr<worker_proc>;

    void add_worker(const server_message& m) {
        auto w = std::make_shared<worker_proc>(m_ex, m.index, m);
        m_workers[m.index] = w;
        read_channel(w);
        read_output(w, 0);
        read_output(w, 1);
    }

    // ---- dispatching ----------------------------------------------------

    void dispatch() {
        while (!m_queue.empty()) {
            const bool batch = m_queue.front()->batch;
            worker_proc* best = nullptr;
            for (auto& w : m_workers)
                if (w && w->available(m_options.prefetch, batch) &&
                    (!best || w->inflight.size() < best->inflight.size()))
                    best = w.get();
            if (!best) break;
            pool_task* t = m_queue.front();
            m_queue.pop_front();
            send(*best, t);
        }
    }

    void send(worker_proc& w, pool_task* t) {
        w.inflight.push_back({t->id, t, worker_proc::clock::now()});
        w.pending.push_back(t->frame);
        if (m_options.max_tasks_per_child && ++w.assigned >= m_options.max_tasks_per_child) w.retiring = true;
        if (!w.writing) start_write(m_workers[w.index]);
    }

    void start_write(const worker_ptr& w) {
        if (w->pending.empty() || w->channel_down) return;
        w->writing = true;
        w->writing_bytes.clear();
        for (auto& f : w->pending) w->writing_bytes += *f;
        w->pending.clear();
        asio::async_write(w->channel, asio::buffer(w->writing_bytes), big_writes,
                          [self = shared_from_this(), w](boost::system::error_code ec, std::size_t) {
                              w->writing = false;
                              if (ec || self->m_finished) return;  // the read side sees the failure
                              self->start_write(w);
                          });
    }

    // ---- answers from a worker --------------------------------------------

    void read_channel(const worker_ptr& w) {
        if (w->rcap - w->rend < 4096) w->reserve(w->rcap * 2);
        w->channel.async_read_some(
            asio::buffer(w->rbuf.get() + w->rend, w->rcap - w->rend),
            [self = shared_from_this(), w](boost::system::error_code ec, std::size_t n) {
                if (self->m_finished || w->channel_down) return;
                if (ec) {
                    if (w->rend != w->rpos)
                        w->protocol_error = "ended in the middle of a frame (truncated frame)";
                    self->channel_down(w);
                    return;
                }
                w->rend += n;
                if (self->parse(w)) self->read_channel(w);
            });
    }

    /// Handles every complete frame; false when the worker broke the protocol.
    bool parse(const worker_ptr& w) {
        while (w->rend - w->rpos >= sizeof(frame_header)) {
            frame_header h;
            std::memcpy(&h, w->rbuf.get() + w->rpos, sizeof h);
            std::string bad;
            if (h.length > max_frame_payload)
                bad = "sent an oversized frame (" + std::to_string(h.length) + " bytes)";
            else if (h.kind != result_frame && h.kind != failure_frame)
                bad = "sent a malformed frame (kind " + std::to_string(h.kind) + ")";
            else if (w->inflight.empty() || w->inflight.front().id != h.id)
                bad = "sent a malformed frame (answer to task " + std::to_string(h.id) +
                      ", which it does not hold)";
            if (!bad.empty()) {
                w->protocol_error = std::move(bad);
                ::kill(w->pid, SIGKILL);
                channel_down(w);
                return false;
            }
            if (w->rend - w->rpos - sizeof h < h.length) {
                const std::size_t need = sizeof h + h.length;
                if (w->rcap - w->rpos < need) w->reserve(w->rpos + need + 4096);
                break;
            }
            const std::string_view payload(w->rbuf.get() + w->rpos + sizeof h, h.length);
            w->rpos += sizeof h + h.length;
            pool_task* t = w->inflight.front().task;
            const auto now = worker_proc::clock::now();
            w->short_tasks =
                now - std::max(w->inflight.front().sent, w->last_answer) < std::chrono::milliseconds(1);
            w->last_answer = now;
            w->answered = true;
            w->inflight.pop_front();
            if (t) {
                if (h.kind == result_frame)
                    t->complete(nullptr, payload);
                else
                    t->complete(decode_failure(payload, w->pid), {});
            }
        }
        // Keep the partial frame at the front of the buffer.
        std::memmove(w->rbuf.get(), w->rbuf.get() + w->rpos, w->rend - w->rpos);
        w->rend -= w->rpos;
        w->rpos = 0;
        if (w->retiring && w->inflight.empty()) ::shutdown(w->channel.native_handle(), SHUT_WR);
        dispatch();
        check_join();
        return true;
    }

    // ---- a worker leaving ----------------------------------------------------

    void channel_down(worker_ptr w) {
        if (w->channel_down) return;
        w->channel_down = true;
        boost::system::error_code ignored;
        w->channel.close(ignored);
        // A worker that closed its channel but lives on is made to exit, so
        // that its exit is always reported.
        if (!w->exited && (!w->inflight.empty() || !w->protocol_error.empty())) ::kill(w->pid, SIGKILL);
        maybe_remove(w);
    }

    void on_server_message(const server_message& m) {
        if (m.kind == server_message::spawned) {
            --m_spawning;
            if (m.fds[0] < 0 || m.fds[1] < 0 || m.fds[2] < 0) {
                // Out of descriptors: the worker is unreachable. Let it go; the
                // pool carries on with the workers it has.
                for (int fd : m.fds)
                    if (fd >= 0) ::close(fd);
                ::kill(m.pid, SIGKILL);
                check_join();
                return;
            }
            if (m_finished) {
                for (int fd : m.fds) ::close(fd);
                return;
            }
            add_worker(m);
            dispatch();
            check_join();
            return;
        }
        for (auto& w : m_workers) {
            if (w && w->pid == m.pid) {
                w->exited = true;
                w->status = m.status;
                maybe_remove(w);
                return;
            }
        }
    }

    /// Once its channel is down and its exit reported: fail what it held,
    /// replace it if there is work or the pool is open.
    void maybe_remove(worker_ptr w) {  // by value: it clears the slot it may come from
        if (!w->channel_down || !w->exited || m_workers[w->index] != w) return;
        if (!w->inflight.empty()) {
            const auto e = std::make_exception_ptr(crash_error(*w));
            for (auto& h : w->inflight)
                if (h.task) h.task->complete(e, {});
            w->inflight.clear();
        }
        m_retired.push_back(w);  // its output may still be draining
        m_workers[w->index] = nullptr;
        // Workers that die before answering anything, again and again (a
        // failing initializer, a broken environment), would be replaced
        // forever: past a few in a row the pool gives up and says why.
        m_fruitless = w->answered || w->cancelled_by_pool ? 0 : m_fruitless + 1;
        const bool init_failed = WIFEXITED(w->status) && WEXITSTATUS(w->status) == initializer_failed;
        if (init_failed || m_fruitless >= std::max<std::size_t>(5, 2 * m_options.workers)) {
            m_closed = true;
            fail_queued(std::make_exception_ptr(worker_crashed(
                w->pid, 0, WIFEXITED(w->status) ? WEXITSTATUS(w->status) : -1,
                init_failed ? "corun: the pool's initializer failed in worker " + std::to_string(w->pid) +
                                  " (see its stderr); the pool is closed"
                            : "corun: workers keep dying before answering (" +
                                  std::string(crash_error(*w).what()) + "); the pool is closed")));
        }
        if (!m_server_gone && (!m_closed || !m_queue.empty())) {
            ++m_spawning;
            request_worker(m_server.control, w->index);
        }
        check_join();
    }

    worker_crashed crash_error(const worker_proc& w) const {
        int sig = WIFSIGNALED(w.status) ? WTERMSIG(w.status) : 0;
        int code = WIFEXITED(w.status) ? WEXITSTATUS(w.status) : -1;
        std::string what = "corun: worker " + std::to_string(w.pid);
        if (!w.protocol_error.empty())
            what += " " + w.protocol_error + "; it was killed and replaced";
        else if (sig)
            what += " was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
        else if (code == initializer_failed)
            what += " exited: the pool's initializer failed (see its stderr)";
        else
            what += " exited with code " + std::to_string(code);
        return worker_crashed(w.pid, sig, code, what);
    }

    // ---- the fork server ------------------------------------------------------

    void wait_control() {
        m_control_wait.async_wait(asio::posix::stream_descriptor::wait_read,
                                  [self = shared_from_this()](boost::system::error_code ec) {
                                      if (ec || self->m_finished) return;
                                      server_message m;
                                      bool gone = false;
                                      while (receive_server_message(self->m_server.control, m, gone))
                                          self->on_server_message(m);
                                      if (gone) return self->server_died();
                                      self->wait_control();
                                  });
    }

    void server_died() {
        m_server_gone = true;
        m_closed = true;
        const auto e = std::make_exception_ptr(
            worker_crashed(m_server.pid, 0, -1, "corun: the pool's fork server died; the pool is closed"));
        fail_queued(e);
        for (auto& w : m_workers) {
            if (!w) continue;
            for (auto& h : w->inflight)
                if (h.task) h.task->complete(e, {});
            w->inflight.clear();
            ::kill(w->pid, SIGKILL);
            // Nobody is left to report their exits: count them as reported.
            w->exited = true;
            w->status = SIGKILL;  // as waitpid would say: killed by SIGKILL
            // A worker whose channel was already down waited only for its
            // exit report, which will never come now: remove it here.
            if (w->channel_down) {
                maybe_remove(w);
            } else {
                channel_down(w);
            }
        }
        m_spawning = 0;
        check_join();
    }

    // ---- output -------------------------------------------------------------

    /// Waits for output and reads it here rather than with async_read_some, so
    /// that bytes taken from the pipe are never left in a completion handler
    /// that might not run (the pool being destroyed).
    void read_output(const worker_ptr& w, int which) {
        auto& pipe = which == 0 ? w->out : w->err;
        pipe.async_wait(asio::posix::stream_descriptor::wait_read,
                        [self = shared_from_this(), w, which](boost::system::error_code ec) {
                            if (self->m_finished || !w->relays[which].open) return;
                            if (!ec && self->pump_output(*w, which)) return self->read_output(w, which);
                            self->relay_end(*w, which);
                            self->forget_silent_workers();
                            self->check_join();
                        });
    }

    /// Relays what can be read now; false at the end of the output.
    bool pump_output(worker_proc& w, int which) {
        const int fd = (which == 0 ? w.out : w.err).native_handle();
        char buf[1 << 14];
        for (;;) {
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n > 0) {
                relay(w, which, std::string_view(buf, static_cast<std::size_t>(n)));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        }
    }

    void relay(worker_proc& w, int which, std::string_view data) {
        auto& r = w.relays[which];
        r.partial.append(data);
        const std::size_t last = r.partial.rfind('\n');
        if (last == std::string::npos) return;
        std::string lines;
        if (m_options.prefix_output) {
            const std::string prefix = "[worker " + std::to_string(w.index) + "] ";
            std::size_t start = 0;
            while (start <= last) {
                const std::size_t end = r.partial.find('\n', start);
                lines += prefix;
                lines.append(r.partial, start, end + 1 - start);
                start = end + 1;
            }
        } else {
            lines.assign(r.partial, 0, last + 1);
        }
        r.partial.erase(0, last + 1);
        write_all(which == 0 ? STDOUT_FILENO : STDERR_FILENO, lines.data(), lines.size());
    }

    void relay_end(worker_proc& w, int which) {
        auto& r = w.relays[which];
        if (!r.open) return;
        r.open = false;
        if (!r.partial.empty()) relay(w, which, "\n");
        boost::system::error_code ignored;
        (which == 0 ? w.out : w.err).close(ignored);
    }

    /// A replaced worker is kept only until its output has been drained.
    void forget_silent_workers() {
        std::erase_if(m_retired,
                      [](const worker_ptr& w) { return !w->relays[0].open && !w->relays[1].open; });
    }

    // ---- closing -------------------------------------------------------------

    void fail_queued(std::exception_ptr e) {
        auto queued = std::move(m_queue);
        m_queue.clear();
        for (pool_task* t : queued) t->complete(e, {});
    }

    bool workers_busy() const {
        for (auto& w : m_workers)
            if (w && !w->inflight.empty()) return true;
        return false;
    }

    void check_join() {
        if (!m_closed || m_finished || !m_queue.empty() || workers_busy()) return;
        // Idle and closed: let the workers go (end of file makes them exit).
        for (auto& w : m_workers)
            if (w && !w->channel_down) {
                w->retiring = true;
                ::shutdown(w->channel.native_handle(), SHUT_WR);
            }
        if (m_join_waiters.empty()) return;
        for (auto& w : m_workers)
            if (w) return;  // still to exit
        if (m_spawning) return;
        for (auto& w : m_retired)
            if (w->relays[0].open || w->relays[1].open) return;  // output still draining
        finish_blocking();
    }

    /// Stops the server and reaps it, draining what the workers still print.
    void finish_blocking() {
        m_finished = true;
        if (m_server.control >= 0) {
            ::close(m_server.control);
            m_server.control = -1;
        }
        boost::system::error_code ignored;
        m_control_wait.close(ignored);
        drain_output();
        if (m_server.pid > 0) {
            while (::waitpid(m_server.pid, nullptr, 0) < 0 && errno == EINTR) {
            }
            m_server.pid = -1;
        }
        for (auto& w : m_workers)
            if (w) m_retired.push_back(std::move(w));
        for (auto& w : m_retired) {
            w->channel.close(ignored);
            w->out.close(ignored);
            w->err.close(ignored);
        }
        m_retired.clear();
        m_workers.clear();
        for (auto& h : m_join_waiters) h.post();
        m_join_waiters.clear();
    }

    /// Reads every worker's output to its end (the server exits once its last
    /// worker is reaped, closing nothing of ours, so this waits on the workers).
    void drain_output() {
        std::vector<std::pair<worker_proc*, int>> open;
        for (auto* list : {&m_workers, &m_retired})
            for (auto& w : *list)
                if (w)
                    for (int which : {0, 1})
                        if (w->relays[which].open) open.emplace_back(w.get(), which);
        while (!open.empty()) {
            std::vector<pollfd> fds;
            for (auto& [w, which] : open)
                fds.push_back({(which == 0 ? w->out : w->err).native_handle(), POLLIN, 0});
            if (::poll(fds.data(), fds.size(), 2000) <= 0) break;  // a grandchild holds a pipe: give up
            for (std::size_t i = fds.size(); i-- > 0;) {
                if (!fds[i].revents) continue;
                auto [w, which] = open[i];
                if (!pump_output(*w, which)) {
                    relay_end(*w, which);
                    open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
                }
            }
        }
    }

    executor m_ex;
    process_pool_options m_options;
    fork_server_handle m_server;
    asio::posix::stream_descriptor m_control_wait;
    std::vector<worker_ptr> m_workers;  // by worker index; null while replaced
    std::vector<worker_ptr> m_retired;
    std::deque<pool_task*> m_queue;
    std::vector<erased_handler<>> m_join_waiters;
    std::uint64_t m_next_id = 0;
    std::size_t m_spawning = 0;
    std::size_t m_fruitless = 0;  // workers in a row that died without answering
    bool m_closed = false;
    bool m_finished = false;
    bool m_server_gone = false;
};

std::string new_task_frame() {
    return std::string(sizeof(frame_header), '\0');
}

void core_submit(process_pool_core& core, pool_task* task) {
    asio::dispatch(core.get_executor(), [c = core.shared_from_this(), task] { c->submit(task); });
}

void core_cancel(process_pool_core& core, pool_task* task) {
    core.cancel(task);
}

}  // namespace detail

process_pool::process_pool(executor ex, process_pool_options options)
    : m_ex(ex), m_core(std::make_shared<detail::process_pool_core>(std::move(ex), std::move(options))) {
    m_core->start();
}

process_pool::~process_pool() {
    m_core->shutdown();
}

std::size_t process_pool::workers() const noexcept {
    return m_core->workers();
}
std::vector<int> process_pool::worker_pids() const {
    return m_core->pids();
}
void process_pool::close() {
    m_core->close();
}
void process_pool::terminate() {
    m_core->terminate();
}
void process_pool::start_join(detail::erased_handler<> handler) {
    m_core->close();
    m_core->join(std::move(handler));
}

}  // namespace corun
