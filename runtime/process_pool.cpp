#include "corun/process_pool.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <random>
#include <system_error>
#include <thread>

#include "abandon.hpp"
#include "failure.hpp"
#include "frame.hpp"
#include "frame_buffer.hpp"
#include "output_relay.hpp"
#include "shared_segment.hpp"
#include "worker.hpp"

namespace corun {

worker_crashed::worker_crashed(int pid, int signal, int exit_code, const std::string& what, std::string host,
                               int rank)
    : std::runtime_error(what),
      m_pid(pid),
      m_signal(signal),
      m_exit_code(exit_code),
      m_host(std::move(host)),
      m_rank(rank) {}

remote_error::remote_error(std::string type_name, std::string message, int pid)
    : std::runtime_error("corun: " + type_name + " in worker " + std::to_string(pid) + ": " + message),
      m_type(std::move(type_name)),
      m_message(std::move(message)),
      m_pid(pid) {}

pool_closed::pool_closed(const std::string& reason)
    : std::logic_error("corun: the pool is closed: " + reason), m_reason(reason) {}

namespace detail {

namespace {

using clock = std::chrono::steady_clock;

/// How long, once the pool is going, workers and their output get before
/// they are killed or dropped: the bound on a destructor's wait.
constexpr auto shutdown_grace = std::chrono::milliseconds(1000);
/// How long a dead worker's output pipes are read for, when something it
/// started holds them open.
constexpr auto output_after_exit = std::chrono::milliseconds(1000);
/// Respawning after a failure (no descriptors, fork refused) backs off from
/// the first to the last.
constexpr auto respawn_first_delay = std::chrono::milliseconds(10);
constexpr auto respawn_max_delay = std::chrono::milliseconds(1000);

}  // namespace

/// One worker process as the parent sees it.
struct worker_proc {
    worker_proc(const executor& ex, std::uint32_t i, const server_message& m, worker_board* b,
                std::uint64_t seq)
        : index(i),
          pid(m.pid),
          channel(ex, asio::local::stream_protocol(), m.fds[0]),
          out(ex, m.fds[1]),
          err(ex, m.fds[2]),
          output_deadline(ex),
          write_retry(ex),
          board(b),
          next_seq(seq) {
        out.non_blocking(true);
        err.non_blocking(true);
    }
    ~worker_proc() {
        ::munmap(board, sizeof(worker_board));
        close_all(fds);
    }

    struct held {
        std::uint64_t seq;
        pool_task* task;  // null once withdrawn or failed: its answer is dropped
        clock::time_point sent;
    };

    std::uint32_t index;
    pid_t pid;
    asio::local::stream_protocol::socket channel;
    asio::posix::stream_descriptor out, err;
    asio::steady_timer output_deadline;
    asio::steady_timer write_retry;
    worker_board* board;
    line_splitter lines[2];
    bool relay_open[2] = {true, true};
    bool relay_paused[2] = {false, false};
    bool output_expired = false;
    /// Answers as they arrive, [rpos, rend) not yet parsed, and the
    /// descriptors of their segments, in order.
    frame_buffer rbuf;
    std::size_t rpos = 0, rend = 0;
    std::deque<int> fds;
    /// Tasks to send with their sequence numbers; the write in progress.
    struct outgoing {
        std::shared_ptr<const std::string> frame;
        std::shared_ptr<wire::segment_sink> segment;
        std::uint64_t seq;
        bool inline_answer;
    };
    std::vector<outgoing> pending;
    /// The write in progress, in pieces: headers and small frames copied into
    /// one buffer (which measured twice as fast as a gather-write of small
    /// frames), large frames' payloads written from where they are. A frame
    /// with a segment starts a piece, whose first byte carries its descriptor.
    struct piece {
        std::shared_ptr<const std::string> frame;  // null: [offset, offset + size) of `writing_bytes`
        std::size_t offset, size;
    };
    std::string writing_bytes;
    std::vector<piece> pieces;
    std::size_t next_piece = 0, piece_written = 0;
    std::deque<std::pair<std::size_t, std::shared_ptr<wire::segment_sink>>> attached;  // by piece
    bool writing = false;
    std::deque<held> inflight;
    std::uint64_t next_seq;
    std::size_t assigned = 0;
    bool retiring = false;      // has had its share of tasks; leaves when idle
    bool doomed = false;        // killed by the pool: takes nothing more
    bool channel_down = false;  // end of file, error, or we closed it
    bool exited = false;        // the fork server reaped it
    int status = 0;
    std::string protocol_error;
    bool cancelled_by_pool = false;  // killed to cancel its task

    /// Tasks are sent ahead only to a worker whose tasks have proved short:
    /// queued behind a long one, a task would wait while another worker idles.
    bool available(std::size_t prefetch, bool batch) const {
        return !channel_down && !retiring && !doomed &&
               inflight.size() < (short_tasks || batch ? prefetch : 1);
    }
    bool busy() const {
        return std::any_of(inflight.begin(), inflight.end(), [](const held& h) { return h.task != nullptr; });
    }
    bool short_tasks = false;
    clock::time_point last_answer{};
};

namespace {

/// The pools of one event loop (see `abandonable`).
class pool_service : public asio::execution_context::service {
public:
    static inline asio::execution_context::id id;

    explicit pool_service(asio::execution_context& context) : service(context) {}

    void add(std::weak_ptr<abandonable> core) {
        std::erase_if(m_cores, [](const auto& c) { return c.expired(); });
        m_cores.push_back(std::move(core));
    }

private:
    void shutdown() override {
        auto cores = std::move(m_cores);
        m_cores.clear();
        for (auto& weak : cores)
            if (auto core = weak.lock()) core->abandon_tasks();
    }

    std::vector<std::weak_ptr<abandonable>> m_cores;
};

}  // namespace

std::exception_ptr task_cancelled() {
    return std::make_exception_ptr(
        boost::system::system_error(asio::error::operation_aborted, "corun: task cancelled"));
}

void abandon_with_loop(const executor& ex, std::weak_ptr<abandonable> core) {
    asio::use_service<pool_service>(asio::query(ex, asio::execution::context)).add(std::move(core));
}

class process_pool_core : public std::enable_shared_from_this<process_pool_core>, public abandonable {
public:
    process_pool_core(executor ex, process_pool_options options)
        : m_ex(std::move(ex)),
          m_options(std::move(options)),
          m_control_wait(m_ex),
          m_respawn_timer(m_ex),
          m_let_go_timer(m_ex),
          m_server_exit(m_ex),
          m_server_poll(m_ex),
          m_server_deadline(m_ex) {
        if (m_options.workers == 0) m_options.workers = std::max(1u, std::thread::hardware_concurrency());
        m_options.prefetch = std::clamp<std::size_t>(m_options.prefetch, 1, worker_board::slots);
        if (m_options.max_frame_size == 0) m_options.max_frame_size = 1;
    }

    /// Forks the server and the first workers; blocks until they are all
    /// there. Leaves nothing behind if it throws.
    void start() {
        auto& context = asio::query(m_ex, asio::execution::context);
        // The fork server only ever forks and waits: it never runs or tears
        // down the parent's event loop, so the child side needs no fork_child.
        context.notify_fork(asio::execution_context::fork_prepare);
        m_server = start_fork_server(m_options);
        context.notify_fork(asio::execution_context::fork_parent);
        if (m_server.pidfd >= 0) {
            boost::system::error_code ec;
            m_server_exit.assign(m_server.pidfd, ec);
            if (ec) ::close(m_server.pidfd);  // then the pool polls for its exit
            m_server.pidfd = -1;
        }
        std::vector<server_message> spawned, early_exits;
        try {
            for (std::uint32_t i = 0; i < m_options.workers; ++i)
                if (!request_worker(m_server.control, i)) throw server_gone_error();
            std::exception_ptr failure;  // the first; every answer is still awaited, to clean up
            for (std::size_t answers = 0; answers < m_options.workers;) {
                server_message m = receive_blocking();
                if (m.kind == server_message::exited) {
                    early_exits.push_back(m);
                    continue;
                }
                ++answers;
                if (m.kind == server_message::spawned && !m.fds_lost) {
                    spawned.push_back(m);
                    continue;
                }
                if (m.kind == server_message::spawned) spawned_without_fds(m);
                if (!failure) failure = std::make_exception_ptr(start_failure(m));
            }
            if (failure) std::rethrow_exception(failure);
            const int watch = ::fcntl(m_server.control, F_DUPFD_CLOEXEC, 0);
            if (watch < 0) throw system_failure(errno, "corun: process_pool: dup of its control socket");
            m_control_wait.assign(watch);
            try {
                m_relay = std::make_unique<output_relay>(m_ex, [weak = weak_from_this()] {
                    if (auto self = weak.lock()) self->resume_output();
                });
            } catch (const std::system_error& e) {
                throw system_failure(e.code().value(), "corun: process_pool: cannot start its output thread");
            }
        } catch (...) {
            abandon_start(spawned);
            throw;
        }
        m_workers.resize(m_options.workers);
        for (auto& m : spawned) add_worker(m);
        if (m_spawn_error) {  // a worker's board could not be mapped
            const auto e = m_spawn_error;
            shutdown();
            std::rethrow_exception(e);
        }
        m_control_wait.non_blocking(true);
        ::fcntl(m_server.control, F_SETFL, ::fcntl(m_server.control, F_GETFL) | O_NONBLOCK);
        for (auto& m : early_exits) on_server_message(m);
        wait_control();
        abandon_with_loop(m_ex, weak_from_this());
    }

    /// The event loop is being destroyed: every pending task's handler is
    /// destroyed uncalled (which may destroy this pool's owner, and so run
    /// `shutdown`).
    void abandon_tasks() override {
        if (m_finished) return;
        m_closed = true;
        std::vector<pool_task*> tasks(m_queue.begin(), m_queue.end());
        m_queue.clear();
        for (auto& w : m_workers)
            if (w)
                for (auto& h : w->inflight)
                    if (h.task) tasks.push_back(std::exchange(h.task, nullptr));
        for (pool_task* t : tasks) t->abandon();
    }

    const executor& get_executor() const { return m_ex; }
    std::size_t workers() const { return m_options.workers; }

    std::string closed_reason() const { return m_closed ? m_close_reason : std::string(); }

    std::vector<int> pids() const {
        std::vector<int> out;
        for (auto& w : m_workers)
            if (w && !w->channel_down && !w->doomed) out.push_back(w->pid);
        return out;
    }

    void submit(pool_task* t) {
        if (m_closed) return t->complete(std::make_exception_ptr(pool_closed(m_close_reason)), {});
        const std::uint64_t size =
            t->frame->size() - sizeof(frame_header) + (t->segment ? t->segment->size() : 0);
        if (size > m_options.max_frame_size)
            return t->complete(std::make_exception_ptr(value_too_large("a task (its function and arguments)",
                                                                       size, m_options.max_frame_size)),
                               {});
        if (m_spawn_error && !live_workers() && m_spawning == 0) return t->complete(m_spawn_error, {});
        m_queue.push_back(t);
        dispatch();
    }

    void cancel(pool_task* t) {
        if (auto q = std::find(m_queue.begin(), m_queue.end(), t); q != m_queue.end()) {
            m_queue.erase(q);
            t->complete(task_cancelled(), {});
            return;
        }
        for (auto& w : m_workers) {
            if (!w) continue;
            auto h =
                std::find_if(w->inflight.begin(), w->inflight.end(), [t](auto& e) { return e.task == t; });
            if (h == w->inflight.end()) continue;
            h->task = nullptr;
            if (w->board->withdraw(h->seq)) {
                // It will never start: it does not count towards retiring.
                if (m_options.max_tasks_per_child && !m_closed && w->assigned > 0)
                    w->retiring = --w->assigned >= m_options.max_tasks_per_child;
            } else if (w->board->doom(h->seq)) {
                // Running: the only way to stop it is to kill its worker. The
                // tasks sent after it have not started and never will there:
                // they go back to the pool at once.
                std::vector<pool_task*> others;
                for (auto r = std::next(h); r != w->inflight.end(); ++r)
                    if (r->task && w->board->withdraw(r->seq))
                        others.push_back(std::exchange(r->task, nullptr));
                m_queue.insert(m_queue.begin(), others.begin(), others.end());
                w->cancelled_by_pool = true;
                kill_worker(*w);
            }
            // Otherwise it is done, and its answer, on its way, is dropped.
            t->complete(task_cancelled(), {});
            dispatch();
            check_join();
            return;
        }
    }

    void close(const std::string& reason) {
        if (m_closed) return;
        m_closed = true;
        m_close_reason = reason;
        check_join();
    }

    void terminate() {
        close("terminate() was called");
        fail_queued(task_cancelled());
        for (auto& w : m_workers) {
            if (!w) continue;
            fail_held(*w, task_cancelled());
            kill_worker(*w);
        }
        check_join();
    }

    void join(join_waiters::handler h) {
        close("close() was called");
        if (m_finished) return h.post(nullptr);
        m_join_waiters.add(std::move(h));
        check_join();
    }

    /// The destructor's close-and-join: blocking, for when no coroutine can
    /// await it any more, and bounded whatever the workers, the fork server or
    /// the reader of our stdout do.
    void shutdown() {
        if (m_finished) return;
        close("the pool was destroyed");
        fail_queued(task_cancelled());
        for (auto& w : m_workers) {
            if (!w) continue;
            const bool busy = w->busy();
            fail_held(*w, task_cancelled());
            if (busy) kill_worker(*w);  // its answers would be thrown away
            let_go(*w);
        }
        finish_blocking();
    }

private:
    using worker_ptr = std::shared_ptr<worker_proc>;

    static std::system_error server_gone_error() {
        return std::system_error(ECHILD, std::generic_category(),
                                 "corun: process_pool: the fork server died");
    }

    /// Waits (bounded) for the server's next message, while starting.
    server_message receive_blocking() {
        for (;;) {
            pollfd p{m_server.control, POLLIN, 0};
            const int r = ::poll(&p, 1, 30'000);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0)
                throw std::system_error(ETIMEDOUT, std::generic_category(),
                                        "corun: process_pool: the fork server does not answer");
            server_message m;
            bool gone = false;
            if (receive_server_message(m_server.control, m, gone)) return m;
            if (gone) throw server_gone_error();
        }
    }

    std::system_error start_failure(const server_message& m) const {
        const std::string which = "corun: process_pool: cannot start worker " + std::to_string(m.index + 1) +
                                  " of " + std::to_string(m_options.workers);
        if (m.kind == server_message::spawned)
            return system_failure(EMFILE, which + ": no descriptor left for its channel and output pipes");
        return system_failure(m.status, which + ": " + spawn_stage_name(m.stage) + " failed");
    }

    /// A worker whose descriptors did not all arrive (this process is out of
    /// them): it is unreachable, so it goes.
    static void spawned_without_fds(const server_message& m) {
        for (int fd : m.fds)
            if (fd >= 0) ::close(fd);
        ::kill(m.pid, SIGKILL);
    }

    /// Undoes a start that failed: every worker killed, every descriptor
    /// closed, the server reaped.
    void abandon_start(const std::vector<server_message>& spawned) {
        for (auto& m : spawned) {
            for (int fd : m.fds)
                if (fd >= 0) ::close(fd);
            if (m.pid > 0) ::kill(m.pid, SIGKILL);
        }
        finish_blocking();
    }

    void add_worker(const server_message& m) {
        void* board = ::mmap(nullptr, sizeof(worker_board), PROT_READ | PROT_WRITE, MAP_SHARED, m.fds[3], 0);
        ::close(m.fds[3]);
        if (board == MAP_FAILED) {
            ::close(m.fds[0]);
            ::close(m.fds[1]);
            ::close(m.fds[2]);
            ::kill(m.pid, SIGKILL);
            return spawn_failed(m.index,
                                system_failure(errno, "corun: process_pool: cannot map a worker's board"));
        }
        std::uniform_int_distribution<std::uint64_t> first_seq(1, max_seq / 2);
        auto w = std::make_shared<worker_proc>(m_ex, m.index, m, static_cast<worker_board*>(board),
                                               first_seq(m_random));
        m_workers[m.index] = w;
        m_spawn_error = nullptr;
        m_respawn_delay = respawn_first_delay;
        wait_channel(w);
        wait_output(w, 0);
        wait_output(w, 1);
    }

    std::size_t live_workers() const {
        return static_cast<std::size_t>(
            std::count_if(m_workers.begin(), m_workers.end(),
                          [](const worker_ptr& w) { return w && !w->channel_down && !w->doomed; }));
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
        const std::uint64_t seq = w.next_seq++;
        w.board->mark_queued(seq);
        w.inflight.push_back({seq, t, clock::now()});
        w.pending.push_back({t->frame, t->segment, seq, t->inline_answer});
        if (m_options.max_tasks_per_child && ++w.assigned >= m_options.max_tasks_per_child) w.retiring = true;
        if (!w.writing) start_write(m_workers[w.index]);
    }

    void start_write(const worker_ptr& w) {
        if (w->pending.empty() || w->channel_down) return;
        constexpr std::size_t copied_below = std::size_t(64) << 10;
        w->writing = true;
        w->writing_bytes.clear();
        w->pieces.clear();
        w->attached.clear();
        w->next_piece = w->piece_written = 0;
        for (auto& f : w->pending) {
            if (f.segment || w->pieces.empty() || w->pieces.back().frame) {
                w->pieces.push_back({nullptr, w->writing_bytes.size(), 0});
                if (f.segment) w->attached.emplace_back(w->pieces.size() - 1, f.segment);
            }
            const std::size_t payload = f.frame->size() - sizeof(frame_header);
            const std::uint32_t flags = (f.segment ? std::uint32_t(has_segment) : 0u) |
                                        (f.inline_answer ? std::uint32_t(inline_answer) : 0u);
            const frame_header h{payload, task_frame, flags, f.seq};
            w->writing_bytes.append(reinterpret_cast<const char*>(&h), sizeof h);
            w->pieces.back().size += sizeof h;
            if (payload < copied_below) {
                w->writing_bytes.append(*f.frame, sizeof(frame_header));
                w->pieces.back().size += payload;
            } else {
                w->pieces.push_back({f.frame, sizeof(frame_header), payload});
            }
        }
        w->pending.clear();
        continue_write(w);
    }

    /// Writes what the socket takes, a segment's descriptor with the first
    /// byte of its frame; then waits for room, or starts the next write.
    void continue_write(const worker_ptr& w) {
        const int fd = w->channel.native_handle();
        while (w->next_piece < w->pieces.size()) {
            // Up to the next piece with a descriptor, which goes with its own first byte.
            iovec iov[64];
            std::size_t count = 0;
            int attach = -1;
            std::size_t stop = w->pieces.size();  // the next piece with a descriptor of its own
            if (!w->attached.empty()) {
                const bool here = w->attached.front().first == w->next_piece;
                if (here) attach = w->attached.front().second->fd();
                if (w->attached.size() > std::size_t(here)) stop = w->attached[here].first;
            }
            for (std::size_t i = w->next_piece; i < stop && count < std::size(iov); ++i) {
                const worker_proc::piece& p = w->pieces[i];
                const char* base = p.frame ? p.frame->data() : w->writing_bytes.data();
                const std::size_t skip = i == w->next_piece ? w->piece_written : 0;
                iov[count++] = {const_cast<char*>(base + p.offset + skip), p.size - skip};
            }
            const ssize_t n = send_frame_bytes(fd, iov, count, attach);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                w->channel.async_wait(asio::socket_base::wait_write,
                                      [self = shared_from_this(), w](boost::system::error_code ec) {
                                          if (ec || self->m_finished || w->channel_down) return end_write(*w);
                                          self->continue_write(w);
                                      });
                return;
            }
            if (n < 0 && attach >= 0 && errno != EPIPE && errno != ECONNRESET) {
                // The descriptor was refused (ETOOMANYREFS: too many in flight
                // for this user): the frame goes without it, marked so that
                // its task fails, alone.
                refuse_segment(w->writing_bytes.data() + w->pieces[w->next_piece].offset, errno);
                w->attached.pop_front();
                continue;
            }
            if (n < 0 &&
                (errno == ENOBUFS || errno == ENOMEM)) {  // the kernel is short of memory: again soon
                w->write_retry.expires_after(std::chrono::milliseconds(10));
                w->write_retry.async_wait([self = shared_from_this(), w](boost::system::error_code ec) {
                    if (ec || self->m_finished || w->channel_down) return end_write(*w);
                    self->continue_write(w);
                });
                return;
            }
            if (n <= 0) {
                end_write(*w);
                // The worker has gone (the read side sees it), or the channel
                // cannot be written: the worker goes.
                if (n < 0 && errno != EPIPE && errno != ECONNRESET)
                    fail_protocol(w, std::string("could not be written to: ") + std::strerror(errno));
                return;
            }
            if (attach >= 0) w->attached.pop_front();
            for (auto left = static_cast<std::size_t>(n); left > 0;) {
                const std::size_t rest = w->pieces[w->next_piece].size - w->piece_written;
                if (left < rest) {
                    w->piece_written += left;
                    break;
                }
                left -= rest;
                ++w->next_piece;
                w->piece_written = 0;
            }
        }
        w->writing = false;
        w->pieces.clear();
        start_write(w);
    }

    static void end_write(worker_proc& w) {
        w.writing = false;
        w.attached.clear();
        w.pieces.clear();
    }

    // ---- answers from a worker --------------------------------------------

    /// Reads the channel here rather than with async_read_some, so that no
    /// bytes can sit in a completion not yet run when the worker's exit makes
    /// us read the rest at once.
    void wait_channel(const worker_ptr& w) {
        w->channel.async_wait(asio::socket_base::wait_read,
                              [self = shared_from_this(), w](boost::system::error_code ec) {
                                  if (self->m_finished || w->channel_down) return;
                                  if (ec) return self->channel_down(w);
                                  if (self->pump_channel(w)) self->wait_channel(w);
                              });
    }

    /// Reads and handles what the channel holds; false once it is down.
    bool pump_channel(const worker_ptr& w) {
        constexpr std::size_t chunk = 1 << 16;
        std::size_t budget = std::size_t(16) << 20;  // then let others run
        while (budget > 0) {
            try {
                if (w->rbuf.capacity() - w->rend < chunk) w->rbuf.resize_capacity(grown_capacity(*w));
            } catch (const std::bad_alloc&) {
                return fail_protocol(w, "sent a frame this process has no memory for");
            }
            const ssize_t n = receive_frame_bytes(w->channel.native_handle(), w->rbuf.data() + w->rend,
                                                  w->rbuf.capacity() - w->rend, w->fds);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
            if (n <= 0) {
                if (w->rend != w->rpos && w->protocol_error.empty())
                    w->protocol_error = "ended in the middle of a frame (truncated frame)";
                channel_down(w);
                return false;
            }
            w->rend += static_cast<std::size_t>(n);
            budget -= std::min(budget, static_cast<std::size_t>(n));
            if (!parse(w)) return false;
        }
        return true;
    }

    /// The buffer's next capacity: doubled, but never beyond what the frame
    /// being received has announced, so that memory follows the bytes.
    std::size_t grown_capacity(const worker_proc& w) const {
        std::size_t want = std::max<std::size_t>(w.rbuf.capacity() * 2, 1 << 17);
        if (w.rend - w.rpos >= sizeof(frame_header)) {
            frame_header h;
            std::memcpy(&h, w.rbuf.data() + w.rpos, sizeof h);
            want = std::min<std::size_t>(
                want, std::max<std::size_t>(w.rend + (1 << 16), w.rpos + sizeof h + h.length));
        }
        return want;
    }

    bool fail_protocol(const worker_ptr& w, std::string what) {
        w->protocol_error = std::move(what);
        kill_worker(*w);
        channel_down(w);
        return false;
    }

    /// Handles every complete frame; false when the worker broke the protocol.
    bool parse(const worker_ptr& w) {
        bool answered = false;
        while (w->rend - w->rpos >= sizeof(frame_header)) {
            frame_header h;
            std::memcpy(&h, w->rbuf.data() + w->rpos, sizeof h);
            if (h.kind != result_frame && h.kind != failure_frame && h.kind != skipped_frame)
                return fail_protocol(w, "sent a malformed frame (kind " + std::to_string(h.kind) + ")");
            // A worker keeps its results within max_frame_size itself: more is junk.
            if (h.length > m_options.max_frame_size + 4096)
                return fail_protocol(w, "sent an oversized frame (" + std::to_string(h.length) + " bytes)");
            if (w->inflight.empty() || w->inflight.front().seq != h.id)
                return fail_protocol(w, "sent a malformed frame (an answer to a task it does not hold)");
            if (w->rend - w->rpos - sizeof h < h.length) break;
            // A result's large blocks: in the segment that came with it.
            wire::segment_view segment;
            bool segment_lost = false;  // this process had no descriptor for it
            const int refused = h.flags & segment_refused ? refused_errno(h.flags) : 0;
            if (h.flags & has_segment) {
                if (h.kind != result_frame || w->fds.empty())
                    return fail_protocol(w, "sent a malformed frame (a missing shared segment)");
                segment_lost = w->fds.front() < 0;
                if (!segment_lost && !inspect_segment(w->fds.front(), segment))
                    return fail_protocol(w, "sent a malformed frame (a bad shared segment)");
                if (segment.size > m_options.max_frame_size + 4096 - h.length)
                    return fail_protocol(w, "sent an oversized frame (" + std::to_string(segment.size) +
                                                " bytes of shared memory)");
                w->fds.pop_front();
            }
            const fd_closer close_segment{segment.fd};
            const std::string_view payload(w->rbuf.data() + w->rpos + sizeof h, h.length);
            w->rpos += sizeof h + h.length;
            const auto held = w->inflight.front();
            w->inflight.pop_front();
            answered = true;
            if (h.kind == skipped_frame) {
                // It did not run: withdrawn, or (if the page was scribbled on)
                // not; either way it may still run elsewhere.
                if (held.task) m_queue.push_front(held.task);
                continue;
            }
            const auto now = clock::now();
            w->short_tasks = now - std::max(held.sent, w->last_answer) < std::chrono::milliseconds(1);
            w->last_answer = now;
            if (held.task) {
                if (segment_lost)
                    held.task->complete(std::make_exception_ptr(system_failure(
                                            EMFILE,
                                            "corun: a result's shared memory could not be received: "
                                            "this process is out of descriptors")),
                                        {});
                else if (refused && h.kind == result_frame)
                    held.task->complete(std::make_exception_ptr(system_failure(
                                            refused,
                                            "corun: a result's shared memory could not be passed back "
                                            "from its worker")),
                                        {});
                else if (h.kind == result_frame)
                    held.task->complete(nullptr, payload, segment);
                else
                    held.task->complete(decode_failure(payload, w->pid), {});
            }
        }
        // A descriptor is only ever owed to the one frame still arriving:
        // more is a worker filling this process's descriptor table.
        if (w->fds.size() > 1) return fail_protocol(w, "sent descriptors with no frame of theirs");
        // Keep the partial frame at the front of the buffer.
        std::memmove(w->rbuf.data(), w->rbuf.data() + w->rpos, w->rend - w->rpos);
        w->rend -= w->rpos;
        w->rpos = 0;
        if (w->rend == 0 && w->rbuf.capacity() > (std::size_t(1) << 20)) w->rbuf.resize_capacity(1 << 16);
        if (answered) {
            if (w->retiring && w->inflight.empty()) let_go(*w);
            dispatch();
            check_join();
        }
        return true;
    }

    // ---- a worker leaving ----------------------------------------------------

    /// Kills a worker (the fork server reports its exit and kills its group).
    static void kill_worker(worker_proc& w) {
        w.doomed = true;
        if (!w.exited) ::kill(w.pid, SIGKILL);
    }

    /// Lets an idle worker go: end of file on its channel makes it exit.
    static void let_go(worker_proc& w) {
        w.retiring = true;
        if (!w.channel_down) ::shutdown(w.channel.native_handle(), SHUT_WR);
    }

    void fail_held(worker_proc& w, std::exception_ptr e) {
        for (auto& h : w.inflight)
            if (auto* t = std::exchange(h.task, nullptr)) t->complete(e, {});
    }

    void channel_down(const worker_ptr& w) {
        if (w->channel_down) return;
        w->channel_down = true;
        boost::system::error_code ignored;
        w->channel.close(ignored);
        close_all(w->fds);
        // A worker that closed its channel but lives on is made to exit, so
        // that its exit is always reported.
        if (!w->exited && (w->busy() || !w->protocol_error.empty())) kill_worker(*w);
        maybe_remove(w);
    }

    void on_server_message(const server_message& m) {
        switch (m.kind) {
            case server_message::spawned:
                --m_spawning;
                if (m.fds_lost) {
                    spawned_without_fds(m);
                    return spawn_failed(m.index, start_failure(m));
                }
                if (m_finished) {
                    for (int fd : m.fds) ::close(fd);
                    return;
                }
                add_worker(m);
                dispatch();
                check_join();
                return;
            case server_message::spawn_failed:
                --m_spawning;
                return spawn_failed(m.index, start_failure(m));
            default:
                for (auto* list : {&m_workers, &m_retired})
                    for (auto& w : *list)
                        if (w && w->pid == m.pid) return worker_exited(w, m.status);
        }
    }

    /// The fork server reaped it: that is the word on its death, whoever
    /// else still holds its channel (something a task started).
    void worker_exited(worker_ptr w, int status) {
        w->exited = true;
        w->status = status;
        if (!w->channel_down) {
            pump_channel(w);  // what it wrote before it died
            channel_down(w);
        }
        if (w->relay_open[0] || w->relay_open[1]) {
            w->output_deadline.expires_after(output_after_exit);
            w->output_deadline.async_wait([self = shared_from_this(), w](boost::system::error_code ec) {
                if (ec || self->m_finished) return;
                w->output_expired = true;
                self->end_expired_output(w);
            });
        }
        maybe_remove(w);
    }

    /// Once its channel is down and its exit reported: what it was running
    /// failed, what it never started goes back to the pool, and it is
    /// replaced if there is work or the pool is open.
    void maybe_remove(worker_ptr w) {  // by value: it clears the slot it may come from
        if (!w->channel_down || !w->exited || m_workers[w->index] != w) return;
        std::vector<pool_task*> again;
        for (auto& h : w->inflight) {
            if (!h.task) continue;
            if (w->board->never_started(h.seq))
                again.push_back(h.task);
            else
                h.task->complete(std::make_exception_ptr(crash_error(*w)), {});
        }
        w->inflight.clear();
        m_queue.insert(m_queue.begin(), again.begin(), again.end());
        if (w->relay_open[0] || w->relay_open[1]) m_retired.push_back(w);  // its output is still draining
        m_workers[w->index] = nullptr;
        // Workers that die before they are ready, again and again (a
        // failing initializer, a broken environment), would be replaced
        // forever: past a few in a row the pool gives up and says why. A
        // task that kills its worker is that task's failure, not the pool's.
        const bool ready = w->board->ready.load() != 0;
        m_fruitless = ready || w->cancelled_by_pool ? 0 : m_fruitless + 1;
        const bool init_failed = !ready && w->board->exit_reason.load() == worker_board::initializer_threw;
        if (!m_broken && (init_failed || m_fruitless >= std::max<std::size_t>(5, 2 * m_options.workers))) {
            const std::string why = init_failed ? "its initializer failed in worker " +
                                                      std::to_string(w->pid) + " (see its stderr)"
                                                : "workers keep dying before they are ready (" +
                                                      std::string(crash_error(*w).what()) + ")";
            give_up(why, std::make_exception_ptr(
                             worker_crashed(w->pid, 0, WIFEXITED(w->status) ? WEXITSTATUS(w->status) : -1,
                                            "corun: " + why + "; the pool is closed")));
        }
        // Once the pool has given up it runs nothing more: what went back to
        // the queue fails too.
        if (m_broken) fail_queued(m_broken);
        if (!m_closed || !m_queue.empty()) respawn(w->index);
        dispatch();
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
        else if (w.board->exit_reason.load() == worker_board::initializer_threw)
            what += " exited: the pool's initializer failed (see its stderr)";
        else if (w.board->exit_reason.load() == worker_board::out_of_memory)
            what += " ran out of memory taking in a task (memory_limit)";
        else
            what += " exited with code " + std::to_string(code);
        return worker_crashed(w.pid, sig, code, what);
    }

    // ---- the fork server and respawning ----------------------------------------

    void respawn(std::uint32_t index) {
        if (m_server_gone || m_finished) return;
        ++m_spawning;
        if (!request_worker(m_server.control, index)) {
            --m_spawning;
            server_died();
        }
    }

    /// A worker could not be made (no descriptors, fork refused): the slot
    /// is retried with a growing delay. Meanwhile, with no worker left,
    /// tasks fail at once with the cause rather than wait for who knows how
    /// long.
    void spawn_failed(std::uint32_t index, const std::system_error& cause) {
        m_spawn_error = std::make_exception_ptr(cause);
        m_respawn_wanted.push_back(index);
        if (!live_workers() && m_spawning == 0) fail_queued(m_spawn_error);
        if (m_respawn_armed) return;
        m_respawn_armed = true;
        m_respawn_timer.expires_after(m_respawn_delay);
        m_respawn_delay = std::min<clock::duration>(m_respawn_delay * 2, respawn_max_delay);
        m_respawn_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            auto self = weak.lock();
            if (!self || ec || self->m_finished) return;
            self->m_respawn_armed = false;
            auto wanted = std::move(self->m_respawn_wanted);
            self->m_respawn_wanted.clear();
            for (auto index : wanted)
                if (!self->m_closed || !self->m_queue.empty()) self->respawn(index);
            self->check_join();
        });
        check_join();
    }

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

    /// The pool cannot work: closed for good, with `why` in every later
    /// `pool_closed`; queued tasks, and those that come back to the queue,
    /// fail with `error`.
    void give_up(const std::string& why, std::exception_ptr error) {
        close(why);
        m_broken = error;
        fail_queued(error);
    }

    void server_died() {
        if (m_server_gone) return;
        m_server_gone = true;
        const auto e = std::make_exception_ptr(
            worker_crashed(m_server.pid, 0, -1, "corun: the pool's fork server died; the pool is closed"));
        give_up("its fork server died", e);
        for (auto& w : m_workers) {
            if (!w) continue;
            fail_held(*w, e);
            kill_worker(*w);
            // Nobody is left to report its exit: count it as reported.
            worker_exited(w, SIGKILL);  // as waitpid would say: killed by SIGKILL
        }
        m_spawning = 0;
        m_respawn_wanted.clear();
        check_join();
    }

    // ---- output -------------------------------------------------------------

    /// Waits for output and reads it here rather than with async_read_some, so
    /// that bytes taken from the pipe are never left in a completion handler
    /// that might not run (the pool being destroyed).
    void wait_output(const worker_ptr& w, int which) {
        auto& pipe = which == 0 ? w->out : w->err;
        pipe.async_wait(asio::posix::stream_descriptor::wait_read,
                        [self = shared_from_this(), w, which](boost::system::error_code ec) {
                            if (self->m_finished || !w->relay_open[which]) return;
                            if (ec) return self->relay_end(w, which);
                            self->pump_output(w, which);
                        });
    }

    /// Relays what the pipe holds now, up to a budget; then waits for more,
    /// or for room when the relay's backlog is full.
    void pump_output(const worker_ptr& w, int which) {
        if (!read_output(*w, which, std::size_t(1) << 18)) return relay_end(w, which);
        if (m_relay->full()) {
            w->relay_paused[which] = true;
            m_paused.push_back(w);
            m_relay->want_room();
            return;
        }
        wait_output(w, which);
    }

    /// Reads up to `budget` bytes into the relay; false at the end of the output.
    bool read_output(worker_proc& w, int which, std::size_t budget) {
        const int fd = (which == 0 ? w.out : w.err).native_handle();
        char buf[1 << 14];
        std::string lines;
        bool open = true;
        while (budget > 0) {
            const ssize_t n = ::read(fd, buf, std::min(sizeof buf, budget));
            if (n > 0) {
                w.lines[which].feed(std::string_view(buf, static_cast<std::size_t>(n)), prefix(w), lines);
                budget -= static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            open = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
        m_relay->push(which + 1, std::move(lines));
        return open;
    }

    std::string prefix(const worker_proc& w) const {
        return m_options.prefix_output ? "[worker " + std::to_string(w.index) + "] " : std::string();
    }

    void resume_output() {
        auto paused = std::move(m_paused);
        m_paused.clear();
        for (auto& w : paused) {
            for (int which : {0, 1}) {
                if (!w->relay_paused[which]) continue;
                w->relay_paused[which] = false;
                if (w->relay_open[which] && !m_finished) pump_output(w, which);
            }
            if (w->output_expired) end_expired_output(w);
        }
    }

    /// A dead worker's pipes are closed once read, unless something it started
    /// holds them open: then after `output_after_exit`, back-pressure aside.
    void end_expired_output(const worker_ptr& w) {
        for (int which : {0, 1}) {
            if (!w->relay_open[which] || w->relay_paused[which]) continue;
            read_output(*w, which, std::size_t(1) << 18);
            relay_end(w, which);
        }
    }

    void relay_end(const worker_ptr& w, int which) {
        if (!w->relay_open[which]) return;
        w->relay_open[which] = false;
        std::string last;
        w->lines[which].finish(prefix(*w), last);
        m_relay->push(which + 1, std::move(last));
        boost::system::error_code ignored;
        (which == 0 ? w->out : w->err).close(ignored);
        if (!w->relay_open[0] && !w->relay_open[1]) {
            w->output_deadline.cancel();
            std::erase(m_retired, w);
            check_join();
        }
    }

    // ---- closing -------------------------------------------------------------

    void fail_queued(std::exception_ptr e) {
        auto queued = std::move(m_queue);
        m_queue.clear();
        for (pool_task* t : queued) t->complete(e, {});
    }

    void check_join() {
        if (!m_closed || m_finishing || !m_queue.empty()) return;
        for (auto& w : m_workers)
            if (w && w->busy()) return;
        // Idle and closed: let the workers go (end of file makes them exit).
        m_respawn_wanted.clear();
        for (auto& w : m_workers)
            if (w) let_go(*w);
        if (m_join_waiters.empty()) return;
        if (std::any_of(m_workers.begin(), m_workers.end(),
                        [](const worker_ptr& w) { return w != nullptr; })) {
            // A worker that does not leave (stopped, stuck in its
            // initializer) holds no task: after the grace it is killed.
            if (!m_let_go_armed) {
                m_let_go_armed = true;
                m_let_go_timer.expires_after(shutdown_grace);
                m_let_go_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
                    auto self = weak.lock();
                    if (!self || ec || self->m_finishing) return;
                    for (auto& w : self->m_workers)
                        if (w && !w->busy()) kill_worker(*w);
                });
            }
            return;
        }
        if (m_spawning || !m_retired.empty()) return;  // a worker coming, output still draining
        finish_async();
    }

    /// The end of `join`: every worker is gone and its output read. Stops
    /// the server and reaps it, and waits for the output to be written,
    /// without blocking the event loop.
    void finish_async() {
        m_finishing = true;
        m_let_go_timer.cancel();
        m_respawn_timer.cancel();
        close_control();
        // No worker is left: the server exits at once, unless something holds
        // its end of the control socket open (a forked copy of this program):
        // then it is killed after the grace.
        m_server_deadline.expires_after(shutdown_grace);
        m_server_deadline.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            auto self = weak.lock();
            if (!self || ec || self->m_server.pid <= 0) return;
            ::kill(self->m_server.pid, SIGKILL);
        });
        wait_server_exit();
        m_relay->when_empty([weak = weak_from_this()] {
            if (auto self = weak.lock()) {
                self->m_output_written = true;
                self->maybe_finished();
            }
        });
    }

    void wait_server_exit() {
        auto reaped = [weak = weak_from_this()](boost::system::error_code ec) {
            auto self = weak.lock();
            if (!self || ec == asio::error::operation_aborted || self->m_finished) return;
            if (!self->try_reap_server()) return self->wait_server_exit();
            self->m_server_deadline.cancel();
            self->maybe_finished();
        };
        if (m_server_exit.is_open()) {
            m_server_exit.async_wait(asio::posix::stream_descriptor::wait_read, reaped);
        } else {  // no pidfd: look again shortly
            m_server_poll.expires_after(std::chrono::milliseconds(10));
            m_server_poll.async_wait(reaped);
        }
    }

    /// True once the server has been reaped (here, or by whoever else reaps:
    /// SIGCHLD ignored, the application's own handler).
    bool try_reap_server() {
        if (m_server.pid <= 0) return true;
        const pid_t r = ::waitpid(m_server.pid, nullptr, WNOHANG);
        if (r != m_server.pid && !(r < 0 && errno == ECHILD)) return false;
        m_server.pid = -1;
        boost::system::error_code ignored;
        m_server_exit.close(ignored);
        return true;
    }

    void maybe_finished() {
        if (m_finished || m_server.pid > 0 || !m_output_written) return;
        m_finished = true;
        m_relay->stop(clock::now() + std::chrono::milliseconds(100));
        m_relay.reset();
        m_retired.clear();
        m_workers.clear();
        m_join_waiters.complete_all();
    }

    void close_control() {
        boost::system::error_code ignored;
        m_control_wait.close(ignored);
        // End of file on the control socket: the server lets its workers go,
        // kills those still there after its grace, and exits. A worker it
        // made for us that we have not received yet has its channel closed
        // with the socket, and leaves at once.
        if (m_server.control >= 0) ::close(m_server.control);
        m_server.control = -1;
    }

    /// The destructor's end (and a failed start's): everything left is
    /// stopped, drained and reaped, blocking, within one deadline whatever
    /// the workers, the server or the reader of our stdout do.
    void finish_blocking() {
        m_finished = true;
        const auto deadline = clock::now() + shutdown_grace + std::chrono::milliseconds(500);
        boost::system::error_code ignored;
        m_respawn_timer.cancel();
        m_let_go_timer.cancel();
        m_server_deadline.cancel();
        m_server_poll.cancel();
        close_control();
        drain_output(deadline);
        reap_server(deadline);
        if (m_relay) {
            m_relay->flush(deadline);
            m_relay->stop(std::max(deadline, clock::now() + std::chrono::milliseconds(100)));
            m_relay.reset();
        }
        for (auto* list : {&m_workers, &m_retired})
            for (auto& w : *list)
                if (w) {
                    w->channel.close(ignored);
                    w->out.close(ignored);
                    w->err.close(ignored);
                    w->output_deadline.cancel();
                }
        m_retired.clear();
        m_workers.clear();
        m_paused.clear();
        m_join_waiters.complete_all();
    }

    /// Reads every worker's output to its end, or until `deadline` (something
    /// a task started may hold a pipe open, or print for ever).
    void drain_output(clock::time_point deadline) {
        if (!m_relay) return;
        std::vector<std::pair<worker_ptr, int>> open;
        for (auto* list : {&m_workers, &m_retired})
            for (auto& w : *list)
                if (w)
                    for (int which : {0, 1})
                        if (w->relay_open[which]) open.emplace_back(w, which);
        while (!open.empty()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0 || m_relay->full()) break;
            std::vector<pollfd> fds;
            for (auto& [w, which] : open)
                fds.push_back({(which == 0 ? w->out : w->err).native_handle(), POLLIN, 0});
            if (::poll(fds.data(), fds.size(), static_cast<int>(left)) <= 0) break;
            for (std::size_t i = fds.size(); i-- > 0;) {
                if (!fds[i].revents) continue;
                auto [w, which] = open[i];
                if (!read_output(*w, which, std::size_t(1) << 18)) {
                    relay_end(w, which);
                    open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
                }
            }
        }
        for (auto& [w, which] : open) relay_end(w, which);
    }

    /// Waits for the server to exit until `deadline`; then kills it and every
    /// worker group it may not have killed (it may be stopped). Never a
    /// blocking waitpid: with SIGCHLD ignored, or reaped by the application's
    /// own handler, the server is never ours to wait for.
    void reap_server(clock::time_point deadline) {
        if (m_server.pid <= 0) return;
        const int pidfd = m_server_exit.is_open() ? m_server_exit.native_handle() : -1;
        auto exited = [&](int timeout_ms) {
            if (pidfd >= 0) {
                pollfd p{pidfd, POLLIN, 0};
                if (::poll(&p, 1, timeout_ms) == 0) return false;
            } else if (timeout_ms > 0) {
                ::usleep(static_cast<useconds_t>(std::min(timeout_ms, 10)) * 1000);
            }
            return try_reap_server();
        };
        bool gone = false;
        while (!gone) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0) break;
            gone = exited(static_cast<int>(std::min<long>(left, 100)));
        }
        if (gone) return;
        for (auto* list : {&m_workers, &m_retired})
            for (auto& w : *list)
                if (w && !w->exited) {
                    ::killpg(w->pid, SIGKILL);
                    ::kill(w->pid, SIGKILL);
                }
        ::kill(m_server.pid, SIGKILL);  // its workers die with it (PR_SET_PDEATHSIG)
        for (int i = 0; i < 500 && !gone; ++i) gone = exited(10);
    }

    executor m_ex;
    process_pool_options m_options;
    fork_server_handle m_server;
    asio::posix::stream_descriptor m_control_wait;
    std::unique_ptr<output_relay> m_relay;
    std::vector<worker_ptr> m_workers;  // by worker index; null while replaced
    std::vector<worker_ptr> m_retired;  // gone, their output still draining
    std::vector<worker_ptr> m_paused;   // their output waits for the relay to have room
    std::deque<pool_task*> m_queue;
    join_waiters m_join_waiters;
    std::mt19937_64 m_random{std::random_device{}()};
    std::size_t m_spawning = 0;
    std::size_t m_fruitless = 0;  // workers in a row that died before they were ready
    std::exception_ptr m_spawn_error;
    std::exception_ptr m_broken;  // why the pool gave up
    std::vector<std::uint32_t> m_respawn_wanted;
    asio::steady_timer m_respawn_timer;
    asio::steady_timer m_let_go_timer;
    bool m_let_go_armed = false;
    asio::posix::stream_descriptor m_server_exit;  // its pidfd, readable once it has exited
    asio::steady_timer m_server_poll;              // without a pidfd
    asio::steady_timer m_server_deadline;
    bool m_output_written = false;
    bool m_finishing = false;
    clock::duration m_respawn_delay = respawn_first_delay;
    bool m_respawn_armed = false;
    std::string m_close_reason;
    bool m_closed = false;
    bool m_finished = false;
    bool m_server_gone = false;
};

namespace {

/// Buffers of this thread's finished frames, kept for the next ones: fresh
/// memory costs a page fault a page, which on some machines is most of what
/// a large map costs. Bounded, in count and in bytes.
struct spare_frames {
    static constexpr std::size_t min_size = std::size_t(64) << 10;
    static constexpr std::size_t max_size = std::size_t(8) << 20;
    static constexpr std::size_t max_total = std::size_t(32) << 20;
    std::vector<std::string> buffers;
    std::size_t total = 0;
};
thread_local spare_frames spare;

}  // namespace

std::string new_task_frame(std::size_t size) {
    std::string frame;
    if (size >= spare_frames::min_size) {
        // The smallest spare buffer that fits; else a new one, of the size
        // asked, so that it fits the next chunk like this one.
        auto& b = spare.buffers;
        auto fit = b.end();
        for (auto i = b.begin(); i != b.end(); ++i)
            if (i->capacity() >= size && (fit == b.end() || i->capacity() < fit->capacity())) fit = i;
        if (fit != b.end()) {
            spare.total -= fit->capacity();
            frame = std::move(*fit);
            b.erase(fit);
            frame.clear();
        } else {
            frame.reserve(size);
        }
    }
    frame.append(sizeof(frame_header), '\0');
    return frame;
}

std::shared_ptr<std::string> frame_ptr(std::string frame) {
    return std::shared_ptr<std::string>(new std::string(std::move(frame)), [](std::string* f) {
        const std::size_t c = f->capacity();
        if (c >= spare_frames::min_size && c <= spare_frames::max_size &&
            spare.total + c <= spare_frames::max_total) {
            try {
                spare.buffers.push_back(std::move(*f));
                spare.total += c;
            } catch (...) {
            }
        }
        delete f;
    });
}

void core_submit(process_pool_core& core, pool_task* task) {
    asio::dispatch(core.get_executor(), [c = core.shared_from_this(), task] { c->submit(task); });
}

void core_cancel(process_pool_core& core, pool_task* task) {
    core.cancel(task);
}

std::size_t core_workers(const process_pool_core& core) noexcept {
    return core.workers();
}
void core_close(process_pool_core& core) {
    core.close("close() was called");
}
void core_terminate(process_pool_core& core) {
    core.terminate();
}
void core_join(process_pool_core& core, join_waiters::handler handler) {
    core.join(std::move(handler));
}

}  // namespace detail

process_pool::process_pool(executor ex) : process_pool(std::move(ex), process_pool_options{}) {}

process_pool::process_pool(executor ex, process_pool_options options)
    : frame_pool(ex, std::make_shared<detail::process_pool_core>(ex, std::move(options))) {
    m_core->start();
}

process_pool::~process_pool() {
    m_core->shutdown();
}

std::vector<int> process_pool::worker_pids() const {
    return m_core->pids();
}
std::string process_pool::closed_reason() const {
    return m_core->closed_reason();
}

}  // namespace corun
