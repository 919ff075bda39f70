// Code that runs in the fork server and in the workers. It is written for a
// freshly forked process of a possibly multi-threaded parent: no locks the
// parent's other threads might have held, no Asio, only system calls and the
// task code itself.
#include "worker.hpp"

#include <cxxabi.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <system_error>
#include <typeinfo>

#include "corun/detail/remote_call.hpp"
#include "frame.hpp"

namespace corun::detail {

namespace {

[[noreturn]] void die(const char* what) {
    const int e = errno;
    std::fprintf(stderr, "corun: %s: %s\n", what, std::strerror(e));
    _exit(70);
}

void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        const ssize_t k = ::write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) _exit(0);  // the parent is gone: nothing left to do
        p += k;
        n -= static_cast<std::size_t>(k);
    }
}

/// Dies with the parent (whose death is that of the thread that forked us).
void follow_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("prctl");
    if (getppid() != parent) _exit(0);  // it died before prctl took effect
}

std::string demangle(const char* name) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
    return status == 0 && d ? d.get() : name;
}

// ---- the worker ----------------------------------------------------------

enum failure_kind : std::uint8_t {
    other,
    logic_error,
    invalid_argument,
    domain_error,
    length_error,
    out_of_range,
    runtime_error,
    range_error,
    overflow_error,
    underflow_error,
    bad_alloc,
    system_error,
};

/// Runs every complete task frame in `in` from `pos`, appending answers to `out`.
std::size_t run_frames(std::string& in, std::size_t pos, std::string& out) {
    while (in.size() - pos >= sizeof(frame_header)) {
        frame_header h;
        std::memcpy(&h, in.data() + pos, sizeof h);
        if (in.size() - pos - sizeof h < h.length) break;
        const std::string_view payload(in.data() + pos + sizeof h, h.length);
        pos += sizeof h + h.length;

        const std::size_t at = out.size();
        out.append(sizeof(frame_header), '\0');
        frame_header answer{0, result_frame, h.id};
        try {
            wire::reader r(payload);
            wire::writer w(out);
            run_task(r, w);
        } catch (...) {
            out.resize(at + sizeof(frame_header));
            answer.kind = failure_frame;
            encode_failure(out, std::current_exception());
        }
        answer.length = static_cast<std::uint32_t>(out.size() - at - sizeof(frame_header));
        std::memcpy(out.data() + at, &answer, sizeof answer);
    }
    return pos;
}

/// Reads tasks and answers them, in order, until the parent closes the
/// channel. Answers are written when no further task is already waiting, so a
/// burst of tasks costs one write.
[[noreturn]] void worker_loop(int fd) {
    std::string in, out;
    std::size_t pos = 0;
    constexpr std::size_t buffer_size = 1 << 16;
    std::unique_ptr<char[]> buf(new char[buffer_size]);
    for (;;) {
        pos = run_frames(in, pos, out);
        if (!out.empty()) {
            std::fflush(stdout);
            std::fflush(stderr);
            write_all(fd, out.data(), out.size());
            out.clear();
        }
        if (pos == in.size()) {
            in.clear();
            pos = 0;
        }
        // Read what the frame being received still needs in one go (a map
        // chunk can be megabytes), or a buffer's worth.
        std::size_t want = 1 << 16;
        if (in.size() - pos >= sizeof(frame_header)) {
            frame_header h;
            std::memcpy(&h, in.data() + pos, sizeof h);
            want = std::max(want, sizeof h + h.length - (in.size() - pos));
        }
        if (in.capacity() < in.size() + want) in.reserve(in.size() + want);
        const ssize_t n = ::read(fd, buf.get(), std::min<std::size_t>(want, buffer_size));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            std::fflush(stdout);
            std::fflush(stderr);
            _exit(0);
        }
        in.append(buf.get(), static_cast<std::size_t>(n));
    }
}

[[noreturn]] void worker_main(const process_pool_options& options, pid_t server, int channel, int out,
                              int err) {
    follow_parent(server);
    // The parent's signal handlers (a test framework's, a crash reporter's)
    // are not the worker's: a crash must kill it so that the pool sees it.
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ||
        dup2(channel, worker_channel_fd) < 0)
        die("worker set-up");
    // Nothing of the parent's or the server's stays open: no socket, no
    // listening port, no event loop descriptor.
    if (close_range(worker_channel_fd + 1, ~0u, 0) != 0) die("close_range");
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::setvbuf(stderr, nullptr, _IOLBF, 0);
    if (options.memory_limit != 0) {
        const rlimit limit{options.memory_limit, options.memory_limit};
        if (setrlimit(RLIMIT_AS, &limit) != 0) die("setrlimit");
    }
    if (options.initializer) {
        try {
            options.initializer();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "corun: worker initializer failed: %s\n", e.what());
            _exit(initializer_failed);
        } catch (...) {
            std::fprintf(stderr, "corun: worker initializer failed\n");
            _exit(initializer_failed);
        }
    }
    worker_loop(worker_channel_fd);
}

// ---- the fork server ------------------------------------------------------

/// False when the parent has gone (or is going): stop reporting, keep reaping.
bool send_message(int control, const server_message& m, int nfds) {
    struct {
        std::uint32_t kind, index;
        std::int32_t pid, status;
    } body{m.kind, m.index, m.pid, m.status};
    iovec iov{&body, sizeof body};
    alignas(cmsghdr) char control_buf[CMSG_SPACE(sizeof(int) * 3)] = {};
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

/// Forks a worker for slot `index`; false when it could not be handed over.
bool spawn_worker(const process_pool_options& options, int control, int sigfd, std::uint32_t index) {
    int channel[2], out[2], err[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
        pipe2(err, O_CLOEXEC) != 0)
        die("fork server: socketpair/pipe");
    std::fflush(nullptr);
    const pid_t server = getpid();
    const pid_t pid = fork();
    if (pid < 0) die("fork server: fork");
    if (pid == 0) {
        ::close(control);
        ::close(sigfd);
        ::close(channel[0]);
        ::close(out[0]);
        ::close(err[0]);
        worker_main(options, server, channel[1], out[1], err[1]);
    }
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
    const bool sent = send_message(control, m, 3);
    // Unsent, the worker's channel closes here: it reads end of file and exits.
    ::close(channel[0]);
    ::close(out[0]);
    ::close(err[0]);
    return sent;
}

/// The fork server: single-threaded, it forks workers on request and reaps
/// them, reporting each exit. It ends when the parent closes the control
/// socket and the last worker has been reaped.
[[noreturn]] void server_main(const process_pool_options& options, pid_t parent, int control) {
    follow_parent(parent);
    if (dup2(control, 3) < 0) die("fork server: dup2");
    control = 3;
    if (close_range(4, ~0u, 0) != 0) die("fork server: close_range");
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, nullptr);
    const int sigfd = signalfd(-1, &chld, SFD_CLOEXEC);
    if (sigfd < 0) die("fork server: signalfd");

    std::size_t live = 0;
    bool closing = false;
    for (;;) {
        pollfd fds[2] = {{sigfd, POLLIN, 0}, {closing ? -1 : control, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("fork server: poll");
        }
        if (fds[0].revents) {
            signalfd_siginfo info;
            while (::read(sigfd, &info, sizeof info) < 0 && errno == EINTR) {
            }
            int status = 0;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                --live;
                server_message m;
                m.kind = server_message::exited;
                m.pid = pid;
                m.status = status;
                if (!closing && !send_message(control, m, 0)) closing = true;
            }
        }
        if (fds[1].revents) {
            std::uint32_t index = 0;
            const ssize_t n = recv(control, &index, sizeof index, 0);
            if (n == static_cast<ssize_t>(sizeof index)) {
                ++live;
                if (!spawn_worker(options, control, sigfd, index)) closing = true;
            } else if (n == 0 || (n < 0 && errno != EINTR)) {
                closing = true;
            }
        }
        if (closing && live == 0) _exit(0);
    }
}

}  // namespace

fork_server_handle start_fork_server(const process_pool_options& options) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        throw std::system_error(errno, std::generic_category(), "corun: socketpair");
    std::fflush(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
        const int e = errno;
        ::close(sv[0]);
        ::close(sv[1]);
        throw std::system_error(e, std::generic_category(), "corun: fork");
    }
    if (pid == 0) {
        ::close(sv[0]);
        server_main(options, parent, sv[1]);
    }
    ::close(sv[1]);
    return {pid, sv[0]};
}

void request_worker(int control, std::uint32_t index) {
    while (send(control, &index, sizeof index, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            pollfd p{control, POLLOUT, 0};
            poll(&p, 1, -1);
            continue;
        }
        throw std::system_error(errno, std::generic_category(), "corun: the fork server is gone");
    }
}

bool receive_server_message(int control, server_message& out, bool& gone) {
    struct {
        std::uint32_t kind, index;
        std::int32_t pid, status;
    } body{};
    iovec iov{&body, sizeof body};
    alignas(cmsghdr) char control_buf[CMSG_SPACE(sizeof(int) * 3)] = {};
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
    if (msg.msg_flags & MSG_CTRUNC) return true;  // descriptors lost: fds stay -1
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            std::memcpy(out.fds, CMSG_DATA(c),
                        std::min<std::size_t>(c->cmsg_len - CMSG_LEN(0), sizeof out.fds));
    }
    return true;
}

void encode_failure(std::string& out, std::exception_ptr error) {
    failure_kind kind = other;
    std::string type, message;
    std::int32_t code = 0;
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        const std::type_info& t = typeid(e);
        type = demangle(t.name());
        message = e.what();
        if (t == typeid(std::logic_error))
            kind = logic_error;
        else if (t == typeid(std::invalid_argument))
            kind = invalid_argument;
        else if (t == typeid(std::domain_error))
            kind = domain_error;
        else if (t == typeid(std::length_error))
            kind = length_error;
        else if (t == typeid(std::out_of_range))
            kind = out_of_range;
        else if (t == typeid(std::runtime_error))
            kind = runtime_error;
        else if (t == typeid(std::range_error))
            kind = range_error;
        else if (t == typeid(std::overflow_error))
            kind = overflow_error;
        else if (t == typeid(std::underflow_error))
            kind = underflow_error;
        else if (t == typeid(std::bad_alloc))
            kind = bad_alloc;
        else if (t == typeid(std::system_error)) {
            const auto& se = static_cast<const std::system_error&>(e);
            if (se.code().category() == std::generic_category() ||
                se.code().category() == std::system_category()) {
                kind = system_error;
                code = se.code().value();
            }
        }
    } catch (...) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        type = t ? demangle(t->name()) : "unknown";
    }
    wire::writer w(out);
    wire::put(w, static_cast<std::uint8_t>(kind));
    wire::put(w, code);
    wire::put(w, type);
    wire::put(w, message);
}

std::exception_ptr decode_failure(std::string_view payload, int pid) {
    try {
        wire::reader r(payload);
        const auto kind = wire::get<std::uint8_t>(r);
        const auto code = wire::get<std::int32_t>(r);
        auto type = wire::get<std::string>(r);
        auto message = wire::get<std::string>(r);
        switch (kind) {
            case logic_error:
                return std::make_exception_ptr(std::logic_error(message));
            case invalid_argument:
                return std::make_exception_ptr(std::invalid_argument(message));
            case domain_error:
                return std::make_exception_ptr(std::domain_error(message));
            case length_error:
                return std::make_exception_ptr(std::length_error(message));
            case out_of_range:
                return std::make_exception_ptr(std::out_of_range(message));
            case runtime_error:
                return std::make_exception_ptr(std::runtime_error(message));
            case range_error:
                return std::make_exception_ptr(std::range_error(message));
            case overflow_error:
                return std::make_exception_ptr(std::overflow_error(message));
            case underflow_error:
                return std::make_exception_ptr(std::underflow_error(message));
            case bad_alloc:
                return std::make_exception_ptr(std::bad_alloc());
            case system_error:
                return std::make_exception_ptr(std::system_error(code, std::generic_category(), message));
            default:
                return std::make_exception_ptr(remote_error(std::move(type), std::move(message), pid));
        }
    } catch (...) {
        return std::current_exception();
    }
}

}  // namespace corun::detail
