// Code that runs in the fork server and in the workers. It is written for a
// freshly forked process of a possibly multi-threaded parent: no locks the
// parent's other threads might have held, no Asio, only system calls and the
// task code itself.
#include "worker.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <optional>
#include <system_error>
#include <vector>

#include "corun/detail/remote_call.hpp"
#include "corun/pool_errors.hpp"
#include "failure.hpp"
#include "frame.hpp"
#include "shared_segment.hpp"

namespace corun::detail {

namespace {

[[noreturn]] void die(const char* what) {
    const int e = errno;
    std::fprintf(stderr, "corun: %s: %s\n", what, std::strerror(e));
    _exit(70);
}

/// Dies with the parent (whose death is that of the thread that forked us).
void follow_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("prctl");
    if (getppid() != parent) _exit(0);  // it died before prctl took effect
}

/// The parent's signal handlers and mask (a test framework's, a crash
/// reporter's, SIGCHLD ignored by a server) are not ours: a crash must kill a
/// worker so that the pool sees it, and the fork server must see its
/// children exit.
void default_signals() {
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
}

void append_header(std::string& out, frame_kind kind, std::uint64_t id, std::uint64_t length = 0) {
    const frame_header h{length, kind, 0, id};
    out.append(reinterpret_cast<const char*>(&h), sizeof h);
}

// ---- the worker ----------------------------------------------------------

/// Appends the failure frame for `error`, or, if that would exceed
/// `max_frame` (an exception with a huge message), one for `value_too_large`.
void append_failure(std::string& out, std::uint64_t id, std::exception_ptr error, std::uint64_t max_frame) {
    const std::size_t at = out.size();
    append_header(out, failure_frame, id);
    encode_failure(out, std::move(error));
    std::uint64_t size = out.size() - at - sizeof(frame_header);
    if (size > max_frame) {
        out.resize(at + sizeof(frame_header));
        encode_failure(out,
                       std::make_exception_ptr(value_too_large("the exception of a task", size, max_frame)));
        size = out.size() - at - sizeof(frame_header);
    }
    const frame_header answer{size, failure_frame, 0, id};
    std::memcpy(out.data() + at, &answer, sizeof answer);
}

/// Reaps the children a task left behind that have exited (this worker is
/// their subreaper, so orphans of its descendants come here too): between
/// tasks, nobody else will wait for them.
void reap_leftovers() {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

/// Sends the answers in `out`, after what the task printed, with the
/// descriptor of the last one's segment if it has one (its header at `last`).
void send_answers(int fd, std::string& out, int segment = -1, std::size_t last = 0) {
    if (out.empty()) return;
    std::fflush(stdout);
    std::fflush(stderr);
    for (std::size_t done = 0; done < out.size();) {
        const iovec rest{out.data() + done, out.size() - done};
        // Blocking: one call, however long the answer (the parent reads as it goes).
        const ssize_t k = send_frame_bytes(fd, &rest, 1, segment, true);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == ENOBUFS || errno == ENOMEM)) {  // the kernel is short of memory: again soon
            poll(nullptr, 0, 10);
            continue;
        }
        if (k < 0 && segment >= 0 && errno != EPIPE && errno != ECONNRESET) {
            // The descriptor was refused (ETOOMANYREFS): the answer goes
            // without it, and its task fails, saying why.
            refuse_segment(out.data() + last, errno);
            segment = -1;
            continue;
        }
        if (k <= 0) _exit(0);  // the parent is gone: nothing left to do
        done += static_cast<std::size_t>(k);
        segment = -1;
    }
    out.clear();
}

/// The worker cannot take in a task: it says why on its board and exits.
[[noreturn]] void cannot_take_task(worker_board& board) {
    board.exit_reason.store(worker_board::out_of_memory);
    _exit(worker_out_of_memory);
}

/// The segment of a task frame flagged `has_segment`: the next descriptor
/// received (it came with the frame's first byte), -1 if it was lost.
int take_segment(std::deque<int>& fds) {
    if (fds.empty()) return -1;
    const int fd = fds.front();
    fds.pop_front();
    return fd;
}

/// Runs every complete task frame in `in` from `pos`; returns the new `pos`.
/// Each answer is sent before the next task starts: if that one crashes the
/// worker, the tasks before it have delivered their results. A task
/// withdrawn before it started is answered as skipped.
std::size_t run_frames(int fd, std::string& in, std::size_t pos, std::deque<int>& fds, std::string& out,
                       worker_board& board, std::uint64_t max_frame) {
    while (in.size() - pos >= sizeof(frame_header)) {
        frame_header h;
        std::memcpy(&h, in.data() + pos, sizeof h);
        if (in.size() - pos - sizeof h < h.length) break;
        const std::string_view payload(in.data() + pos + sizeof h, h.length);
        pos += sizeof h + h.length;
        if (h.kind != task_frame) _exit(0);  // not our parent talking: stop
        wire::segment_view task_segment;
        if (h.flags & has_segment) task_segment.fd = take_segment(fds);
        const fd_closer close_task_segment{task_segment.fd};
        if (!board.claim(h.id)) {
            append_header(out, skipped_frame, h.id);
            continue;
        }
        const std::size_t at = out.size();
        append_header(out, result_frame, h.id);
        // The result's large blocks go to shared memory, unless the parent
        // relays the answer to another host.
        std::optional<wire::segment_sink> result_segment;
        if (!(h.flags & inline_answer)) result_segment.emplace();
        try {
            if (h.flags & segment_refused)
                throw system_failure(refused_errno(h.flags),
                                     "corun: a task's shared memory could not be passed to its worker");
            if ((h.flags & has_segment) && task_segment.fd < 0)
                throw system_failure(EMFILE,
                                     "corun: a task's shared memory could not be received: "
                                     "the worker is out of descriptors");
            if (task_segment.fd >= 0 && !inspect_segment(task_segment.fd, task_segment))
                throw std::runtime_error("corun: a task's shared segment is not sealed");
            wire::reader r(payload, task_segment);
            wire::writer w(out, result_segment ? &*result_segment : nullptr);
            run_task(r, w);
            const std::uint64_t shared = result_segment ? result_segment->size() : 0;
            const std::uint64_t size = out.size() - at - sizeof h + shared;
            if (size > max_frame) throw value_too_large("the result of a task", size, max_frame);
            if (shared) result_segment->seal();
            const frame_header answer{out.size() - at - sizeof h, result_frame,
                                      shared ? std::uint32_t(has_segment) : 0u, h.id};
            std::memcpy(out.data() + at, &answer, sizeof answer);
        } catch (...) {
            out.resize(at);
            append_failure(out, h.id, std::current_exception(), max_frame);
            result_segment.reset();
        }
        // Cancelled while it ran: the parent is killing this worker, which
        // must start nothing more meanwhile.
        if (!board.finish(h.id))
            for (;;) pause();
        send_answers(fd, out, result_segment ? result_segment->fd() : -1, at);
        reap_leftovers();
    }
    return pos;
}

/// Reads tasks and answers them, in order, until the parent closes the
/// channel.
[[noreturn]] void worker_loop(int fd, worker_board& board, std::uint64_t max_frame) {
    std::string in, out;
    std::deque<int> fds;
    std::size_t pos = 0;
    constexpr std::size_t buffer_size = 1 << 16;
    std::unique_ptr<char[]> buf(new char[buffer_size]);
    std::uint64_t discard = 0;  // bytes left of a task frame there was no memory for
    for (;;) {
        pos = run_frames(fd, in, pos, fds, out, board, max_frame);
        send_answers(fd, out);
        if (pos == in.size()) {
            in.clear();
            pos = 0;
        }
        // Make room for the whole of the frame being received (a map chunk can
        // be megabytes), so that it is read in place.
        if (discard == 0 && in.size() - pos >= sizeof(frame_header)) {
            frame_header h;
            std::memcpy(&h, in.data() + pos, sizeof h);
            const std::uint64_t missing = sizeof h + h.length - (in.size() - pos);
            try {
                if (in.capacity() < in.size() + missing) {
                    in.erase(0, pos);
                    pos = 0;
                    in.reserve(in.size() + missing);
                }
            } catch (const std::bad_alloc&) {
                // No room for this task under memory_limit: it fails with
                // bad_alloc, its bytes are read and dropped.
                if (h.flags & has_segment) {
                    const fd_closer dropped{take_segment(fds)};
                }
                if (board.claim(h.id)) {
                    append_failure(out, h.id, std::current_exception(), max_frame);
                    if (!board.finish(h.id))
                        for (;;) pause();
                } else {
                    append_header(out, skipped_frame, h.id);
                }
                discard = missing;
                in.resize(pos);
                continue;
            }
        }
        const ssize_t n = receive_frame_bytes(fd, buf.get(), buffer_size, fds, true);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            std::fflush(stdout);
            std::fflush(stderr);
            _exit(0);
        }
        std::size_t got = static_cast<std::size_t>(n);
        const std::size_t dropped = static_cast<std::size_t>(std::min<std::uint64_t>(discard, got));
        discard -= dropped;
        try {
            in.append(buf.get() + dropped, got - dropped);
        } catch (const std::bad_alloc&) {
            cannot_take_task(board);
        }
    }
}

/// The size of this process's address space, in bytes.
std::size_t address_space_size() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
        std::fclose(f);
    }
    return pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

/// The descriptor for the worker's channel: `worker_channel_fd`, or the
/// highest one RLIMIT_NOFILE allows if that is lower.
int channel_descriptor() {
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) return worker_channel_fd;
    return static_cast<int>(std::clamp<rlim_t>(files.rlim_cur - 1, 3, worker_channel_fd));
}

[[noreturn]] void worker_main(const process_pool_options& options, pid_t server, int channel, int out,
                              int err, worker_board* board) {
    follow_parent(server);
    // A group of its own: when it exits, whatever a task started in it is
    // killed with it (the fork server kills the group). And the subreaper of
    // what it starts: orphans of a task's processes stay attributed to this
    // worker, and go to the fork server, to be killed, only when it dies.
    setpgid(0, 0);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) die("worker set-up: prctl");
    default_signals();
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) die("worker set-up");
    // The channel is close-on-exec: a program a task runs never holds it.
    const int fd = channel_descriptor();
    if (channel == fd ? fcntl(channel, F_SETFD, FD_CLOEXEC) < 0 : dup3(channel, fd, O_CLOEXEC) < 0)
        die("worker set-up");
    // Nothing of the parent's or the server's stays open: no socket, no
    // listening port, no event loop descriptor, no file the application
    // opened (code that still writes to its number writes to nothing).
    if ((fd > 3 && close_range(3, static_cast<unsigned>(fd) - 1, 0) != 0) ||
        close_range(static_cast<unsigned>(fd) + 1, ~0u, 0) != 0)
        die("close_range");
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::setvbuf(stderr, nullptr, _IOLBF, 0);
    if (options.memory_limit != 0) {
        // The worker starts with a copy of the parent's address space: the
        // limit is on what it allocates beyond that.
        const rlim_t limit = address_space_size() + options.memory_limit;
        const rlimit l{limit, limit};
        if (setrlimit(RLIMIT_AS, &l) != 0) die("setrlimit");
    }
    if (options.initializer) {
        const char* failure = nullptr;
        std::string what;
        try {
            options.initializer();
        } catch (const std::exception& e) {
            what = e.what();
            failure = what.c_str();
        } catch (...) {
            failure = "";
        }
        if (failure) {
            std::fprintf(stderr, "corun: worker initializer failed%s%s\n", *failure ? ": " : "", failure);
            board->exit_reason.store(worker_board::initializer_threw);
            _exit(initializer_failed);
        }
        reap_leftovers();
    }
    board->ready.store(1);
    worker_loop(fd, *board, options.max_frame_size);
}

// ---- the fork server ------------------------------------------------------

/// False when the parent has gone (or is going): stop reporting, keep reaping.
bool send_message(int control, const server_message& m, int nfds) {
    struct {
        std::uint32_t kind, index;
        std::int32_t pid, status;
        std::uint32_t stage;
    } body{m.kind, m.index, m.pid, m.status, m.stage};
    iovec iov{&body, sizeof body};
    alignas(cmsghdr) char control_buf[CMSG_SPACE(sizeof(int) * 4)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        msg.msg_control = control_buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        std::memcpy(CMSG_DATA(c), m.fds, sizeof(int) * nfds);
    }
    while (sendmsg(control, &msg, MSG_NOSIGNAL) < 0) {
        if (errno != EINTR) return false;
    }
    return true;
}

/// Kills the fork server's children that are not workers. Each worker is the
/// subreaper of what its tasks start, so these can only be what a dead
/// worker left behind (reparented to the server, its own subreaper), or
/// their children, orphaned in turn when they were killed.
void kill_adopted(const std::vector<pid_t>& workers) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/children", static_cast<int>(getpid()));
    std::FILE* f = std::fopen(path, "r");
    if (!f) return;
    int pid = 0;
    while (std::fscanf(f, "%d", &pid) == 1)
        if (std::find(workers.begin(), workers.end(), pid) == workers.end()) ::kill(pid, SIGKILL);
    std::fclose(f);
}

class fork_server {
public:
    fork_server(const process_pool_options& options, int control, int sigfd)
        : m_options(options), m_control(control), m_sigfd(sigfd) {
        m_workers.reserve(2 * options.workers + 8);
    }

    [[noreturn]] void run() {
        using clock = std::chrono::steady_clock;
        // Once the parent has closed the control socket, workers have this
        // long to leave on their own (their channels are closed too) before
        // they are killed: a stopped or stuck worker must not hold the pool's
        // end.
        constexpr auto grace = std::chrono::milliseconds(1000);
        clock::time_point closing_since{};
        for (;;) {
            if (m_closing && m_workers.empty()) finish();
            int timeout = -1;
            if (m_closing) {
                const auto left = grace - (clock::now() - closing_since);
                if (left <= clock::duration::zero()) {
                    for (pid_t w : m_workers) {
                        ::killpg(w, SIGKILL);
                        ::kill(w, SIGKILL);
                    }
                    timeout = 100;
                } else {
                    timeout = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
                }
            }
            pollfd fds[2] = {{m_sigfd, POLLIN, 0}, {m_closing ? -1 : m_control, POLLIN, 0}};
            if (poll(fds, 2, timeout) < 0) {
                if (errno == EINTR) continue;
                die("fork server: poll");
            }
            if (fds[0].revents) reap();
            if (fds[1].revents) {
                std::uint32_t index = 0;
                const ssize_t n = recv(m_control, &index, sizeof index, 0);
                if (n == static_cast<ssize_t>(sizeof index)) {
                    spawn(index);
                } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                    m_closing = true;
                    closing_since = clock::now();
                }
            }
        }
    }

private:
    void reap() {
        signalfd_siginfo info;
        while (::read(m_sigfd, &info, sizeof info) < 0 && errno == EINTR) {
        }
        int status = 0;
        pid_t pid;
        bool reaped = false;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            reaped = true;  // a worker, or something one left behind: its children are ours now
            auto w = std::find(m_workers.begin(), m_workers.end(), pid);
            if (w == m_workers.end()) continue;
            m_workers.erase(w);
            // Nothing a task started outlives its worker.
            ::killpg(pid, SIGKILL);
            server_message m;
            m.kind = server_message::exited;
            m.pid = pid;
            m.status = status;
            report(m, 0);
        }
        if (reaped) kill_adopted(m_workers);
    }

    void spawn(std::uint32_t index) {
        int channel[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
        int board_fd = -1;
        void* board = MAP_FAILED;
        auto fail = [&](spawn_stage stage) {
            server_message m;
            m.kind = server_message::spawn_failed;
            m.index = index;
            m.status = errno;
            m.stage = stage;
            for (int fd : {channel[0], channel[1], out[0], out[1], err[0], err[1], board_fd})
                if (fd >= 0) ::close(fd);
            if (board != MAP_FAILED) munmap(board, sizeof(worker_board));
            report(m, 0);
        };
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel) != 0) return fail(stage_socketpair);
        if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return fail(stage_pipe);
        board_fd = memfd_create("corun-board", MFD_CLOEXEC);
        if (board_fd < 0 || ftruncate(board_fd, sizeof(worker_board)) != 0) return fail(stage_memfd);
        board = mmap(nullptr, sizeof(worker_board), PROT_READ | PROT_WRITE, MAP_SHARED, board_fd, 0);
        if (board == MAP_FAILED) return fail(stage_memfd);
        new (board) worker_board();
        std::fflush(nullptr);
        const pid_t server = getpid();
        const pid_t pid = fork();
        if (pid < 0) return fail(stage_fork);
        if (pid == 0) {
            ::close(m_sigfd);
            ::close(channel[0]);
            ::close(out[0]);
            ::close(err[0]);
            worker_main(m_options, server, channel[1], out[1], err[1], static_cast<worker_board*>(board));
        }
        setpgid(pid, pid);  // as the worker does itself: whichever runs first
        m_workers.push_back(pid);
        munmap(board, sizeof(worker_board));
        ::close(channel[1]);
        ::close(out[1]);
        ::close(err[1]);
        server_message m;
        m.kind = server_message::spawned;
        m.index = index;
        m.pid = pid;
        m.fds[0] = channel[0];
        m.fds[1] = out[0];
        m.fds[2] = err[0];
        m.fds[3] = board_fd;
        // Unsent, the worker's channel closes here: it reads end of file and exits.
        report(m, 4);
        for (int fd : m.fds) ::close(fd);
    }

    void report(const server_message& m, int nfds) {
        if (!m_closing && !send_message(m_control, m, nfds)) m_closing = true;
    }

    /// Every worker is gone: kill and reap what they left behind, and go.
    [[noreturn]] void finish() {
        for (;;) {
            kill_adopted(m_workers);
            const pid_t pid = waitpid(-1, nullptr, 0);
            if (pid < 0 && errno == ECHILD) _exit(0);
        }
    }

    const process_pool_options& m_options;
    int m_control;
    int m_sigfd;
    std::vector<pid_t> m_workers;
    bool m_closing = false;
};

/// The fork server: single-threaded, it forks workers on request and reaps
/// them, reporting each exit. It ends when the parent closes the control
/// socket and the last worker has gone.
[[noreturn]] void server_main(const process_pool_options& options, pid_t parent, int control) {
    follow_parent(parent);
    // Out of the way of the terminal's signals, which are the application's
    // to handle: the pool goes when the application does.
    setpgid(0, 0);
    default_signals();
    if (control != 3) {
        if (dup2(control, 3) < 0) die("fork server: dup2");
        if (control < 3) ::close(control);
        control = 3;
    }
    if (close_range(4, ~0u, 0) != 0) die("fork server: close_range");
    // Workers get these as stdin, stdout and stderr: make sure they exist.
    for (int fd = 0; fd < 3; ++fd)
        if (fcntl(fd, F_GETFD) < 0 && ::open("/dev/null", O_RDWR) != fd) die("fork server: /dev/null");
    // Orphans of the workers' descendants come to us, to be killed and reaped.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) die("fork server: prctl");
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, nullptr);
    const int sigfd = signalfd(-1, &chld, SFD_CLOEXEC);
    if (sigfd < 0) die("fork server: signalfd");
    fork_server server(options, control, sigfd);
    server.run();
}

}  // namespace

std::system_error system_failure(int error, const std::string& what) {
    const char* name = strerrorname_np(error);
    return std::system_error(error, std::generic_category(),
                             what + (name ? std::string(" (") + name + ")" : ""));
}

const char* spawn_stage_name(std::uint32_t stage) {
    switch (stage) {
        case stage_socketpair:
            return "socketpair";
        case stage_pipe:
            return "pipe";
        case stage_memfd:
            return "memfd_create";
        default:
            return "fork";
    }
}

fork_server_handle start_fork_server(const process_pool_options& options) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        throw system_failure(errno, "corun: process_pool: socketpair");
    std::fflush(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
        const int e = errno;
        ::close(sv[0]);
        ::close(sv[1]);
        throw system_failure(e, "corun: process_pool: fork of its fork server");
    }
    if (pid == 0) {
        ::close(sv[0]);
        server_main(options, parent, sv[1]);
    }
    ::close(sv[1]);
    // Not reaped until we wait for it, so the pid is still its own. Without a
    // pidfd (old kernels, no descriptor left) the pool polls instead.
    // (glibc 2.36's <sys/pidfd.h> cannot be used from C++: its declarations
    // lack C linkage.)
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    return {pid, pidfd, sv[0]};
}

bool request_worker(int control, std::uint32_t index) {
    while (send(control, &index, sizeof index, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            pollfd p{control, POLLOUT, 0};
            poll(&p, 1, 100);
            continue;
        }
        return false;
    }
    return true;
}

bool receive_server_message(int control, server_message& out, bool& gone) {
    struct {
        std::uint32_t kind, index;
        std::int32_t pid, status;
        std::uint32_t stage;
    } body{};
    iovec iov{&body, sizeof body};
    alignas(cmsghdr) char control_buf[CMSG_SPACE(sizeof(int) * 4)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control_buf;
    msg.msg_controllen = sizeof control_buf;
    ssize_t n;
    while ((n = recvmsg(control, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n != static_cast<ssize_t>(sizeof body)) {
        gone = true;
        return false;
    }
    out = server_message{};
    out.kind = body.kind;
    out.index = body.index;
    out.pid = body.pid;
    out.status = body.status;
    out.stage = body.stage;
    std::size_t received = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            received = std::min<std::size_t>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int), 4);
            std::memcpy(out.fds, CMSG_DATA(c), received * sizeof(int));
        }
    }
    if (out.kind == server_message::spawned && (received < 4 || (msg.msg_flags & MSG_CTRUNC)))
        out.fds_lost = true;
    return true;
}

}  // namespace corun::detail
