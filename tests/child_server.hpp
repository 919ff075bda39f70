// child_server: a real server program (nginx, openssl s_server …) a test
// starts on loopback, and never leaves behind.
#pragma once

#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace corun_test {

/// A port nothing listens on now (bound to 127.0.0.1, then closed).
inline std::uint16_t free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("no free loopback port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

inline bool accepts(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (fd >= 0) ::close(fd);
    return ok;
}

/// A temporary directory, removed with everything in it.
class temp_dir {
public:
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "corun-test-XXXXXX").string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        m_path = pattern;
    }
    ~temp_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(m_path, ignored);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const noexcept { return m_path; }

private:
    std::filesystem::path m_path;
};

/// Runs `argv` in a process group of its own, its output sent to `log`
/// (or nowhere), and waits until it accepts on 127.0.0.1:`port`; throws if
/// it cannot be run (saying so), exits, or does not listen within ten
/// seconds. The destructor kills the group (SIGTERM, then SIGKILL) and reaps
/// the program; should the test program die first, the kernel kills it
/// (PR_SET_PDEATHSIG: make it on the thread that outlives it, as tests do).
class child_server {
public:
    child_server(std::vector<std::string> argv, std::uint16_t port, const std::string& log = "/dev/null")
        : m_port(port) {
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        const pid_t parent = ::getpid();
        // exec's failure comes back through this pipe (closed on success).
        int report[2];
        if (::pipe2(report, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        m_pid = ::fork();
        if (m_pid < 0) {
            ::close(report[0]);
            ::close(report[1]);
            throw std::runtime_error("fork failed");
        }
        if (m_pid == 0) {
            // Only async-signal-safe calls from here to exec.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::setpgid(0, 0);
            int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            int in = ::open("/dev/null", O_RDONLY);
            if (out >= 0) {
                ::dup2(out, 1);
                ::dup2(out, 2);
            }
            if (in >= 0) ::dup2(in, 0);
            // Nothing of the test's (listening sockets …) stays open in it.
            ::close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
            ::execvp(args[0], args.data());
            int e = errno;
            [[maybe_unused]] auto n = ::write(report[1], &e, sizeof e);
            ::_exit(127);
        }
        ::setpgid(m_pid, m_pid);
        ::close(report[1]);
        int e = 0;
        ssize_t n;
        do {
            n = ::read(report[0], &e, sizeof e);
        } while (n < 0 && errno == EINTR);
        ::close(report[0]);
        if (n == static_cast<ssize_t>(sizeof e)) {
            stop();
            throw cannot_run(argv[0] + ": cannot run it (" + std::strerror(e) +
                             "); scripts/install-deps installs what the tests need");
        }
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!accepts(port)) {
            int status = 0;
            if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
                m_pid = -1;
                throw std::runtime_error(argv[0] + " exited before listening on port " +
                                         std::to_string(port) + " (see " + log + ")");
            }
            if (std::chrono::steady_clock::now() > until) {
                stop();
                throw std::runtime_error(argv[0] + " did not listen within 10 s");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    /// The program could not be started at all: trying another port is no use.
    struct cannot_run : std::runtime_error {
        using std::runtime_error::runtime_error;
    };

    /// Starts `argv_for(port)` on a port found free, and on another if that
    /// one was taken meanwhile (the program then exits): three tries.
    /// `argv_for` may write a configuration naming the port first.
    template <class F>
    static std::unique_ptr<child_server> on_free_port(F argv_for, const std::string& log = "/dev/null") {
        for (int attempt = 0;; ++attempt) {
            std::uint16_t port = free_port();
            try {
                return std::make_unique<child_server>(argv_for(port), port, log);
            } catch (const cannot_run&) {
                throw;
            } catch (const std::exception&) {
                if (attempt == 2) throw;
            }
        }
    }

    ~child_server() { stop(); }
    child_server(const child_server&) = delete;
    child_server& operator=(const child_server&) = delete;

    std::uint16_t port() const noexcept { return m_port; }

    void stop() noexcept {
        if (m_pid <= 0) return;
        ::kill(-m_pid, SIGTERM);
        for (int i = 0; i < 100; ++i) {
            if (::waitpid(m_pid, nullptr, WNOHANG) == m_pid) {
                ::kill(-m_pid, SIGKILL);  // whatever of its group is left
                m_pid = -1;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ::kill(-m_pid, SIGKILL);
        ::waitpid(m_pid, nullptr, 0);
        m_pid = -1;
    }

private:
    pid_t m_pid = -1;
    std::uint16_t m_port;
};

}  // namespace corun_test
