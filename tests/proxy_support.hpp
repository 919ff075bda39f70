// A real HTTP proxy for the tests: Debian's tinyproxy (package tinyproxy-bin,
// installed by scripts/install-deps), run as a child process on a loopback
// port of its own.
#pragma once

#include <fcntl.h>
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
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace corun_test {

/// A tinyproxy listening on 127.0.0.1, allowing CONNECT to every port.
///
/// Its configuration and log live in a temporary directory. The process is
/// started in the constructor, which returns once it accepts connections (or
/// throws, saying why: tinyproxy missing, a configuration it refused …), and
/// is stopped and reaped in the destructor, SIGTERM first and SIGKILL if it
/// lingers. Should the test program die first, the kernel kills it too
/// (PR_SET_PDEATHSIG): make it on the thread that outlives it, as tests do.
class tinyproxy {
public:
    struct options {
        /// With a user, the proxy demands Basic authentication (tinyproxy's
        /// BasicAuth). tinyproxy's configuration takes letters, digits, '.',
        /// '_' and '-' only.
        std::string user = {};
        std::string password = {};
    };

    tinyproxy() : tinyproxy(options{}) {}
    explicit tinyproxy(options opts) : m_options(std::move(opts)) {
        for (const std::string* s : {&m_options.user, &m_options.password}) {
            for (char c : *s) {
                if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
                    throw std::invalid_argument(
                        "tinyproxy takes only letters, digits, '.', '_' and '-' in "
                        "BasicAuth, not '" +
                        *s + "'");
            }
        }
        std::string dir_template =
            (std::filesystem::temp_directory_path() / "corun-tinyproxy-XXXXXX").string();
        if (!::mkdtemp(dir_template.data()))
            throw std::runtime_error("mkdtemp: " + std::string(strerror(errno)));
        m_dir = dir_template;
        try {
            start();
        } catch (...) {
            stop();
            std::error_code ignored;
            std::filesystem::remove_all(m_dir, ignored);
            throw;
        }
    }

    tinyproxy(const tinyproxy&) = delete;
    tinyproxy& operator=(const tinyproxy&) = delete;

    ~tinyproxy() {
        stop();
        std::error_code ignored;
        std::filesystem::remove_all(m_dir, ignored);
    }

    std::uint16_t port() const noexcept { return m_port; }
    /// "http://127.0.0.1:PORT"
    std::string url() const { return "http://127.0.0.1:" + std::to_string(m_port); }
    /// The same with credentials in it: "http://user:password@127.0.0.1:PORT".
    std::string url_with(std::string_view user, std::string_view password) const {
        return "http://" + std::string(user) + ":" + std::string(password) +
               "@127.0.0.1:" + std::to_string(m_port);
    }

    /// Everything tinyproxy has logged so far.
    std::string log() const { return read_file(log_path()); }
    /// Requests it has read ("GET http://…", "CONNECT host:port" …), whatever
    /// it answered: tinyproxy logs each before it acts on it.
    std::size_t requests() const { return count_lines("]: Request (file descriptor "); }
    /// The CONNECT requests among them.
    std::size_t tunnels() const { return count_lines("): CONNECT "); }

private:
    std::filesystem::path log_path() const { return m_dir / "tinyproxy.log"; }

    static std::string read_file(const std::filesystem::path& p) {
        std::ifstream in(p);
        std::ostringstream all;
        all << in.rdbuf();
        return all.str();
    }

    std::size_t count_lines(std::string_view marker) const {
        std::istringstream lines(log());
        std::size_t n = 0;
        for (std::string line; std::getline(lines, line);)
            if (line.find("]: Request (file descriptor ") != std::string::npos &&
                line.find(marker) != std::string::npos)
                ++n;
        return n;
    }

    /// A port that was free a moment ago: tinyproxy cannot be told to pick one.
    static std::uint16_t free_port() {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw std::runtime_error("socket: " + std::string(strerror(errno)));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
            int e = errno;
            ::close(fd);
            throw std::runtime_error("binding a loopback port: " + std::string(strerror(e)));
        }
        ::close(fd);
        return ntohs(a.sin_port);
    }

    void write_config() const {
        std::ofstream conf(m_dir / "tinyproxy.conf", std::ios::trunc);
        conf << "Port " << m_port << "\n"
             << "Listen 127.0.0.1\n"
             << "Allow 127.0.0.1\n"
             << "Timeout 30\n"
             << "MaxClients 32\n"
             // Info: its "Accepting connections" line says it is listening.
             << "LogLevel Info\n"
             << "LogFile \"" << log_path().string() << "\"\n"
             << "DisableViaHeader Yes\n";
        // No ConnectPort line: CONNECT is allowed to every port.
        if (!m_options.user.empty())
            conf << "BasicAuth " << m_options.user << " " << m_options.password << "\n";
        if (!conf) throw std::runtime_error("cannot write " + (m_dir / "tinyproxy.conf").string());
    }

    void start() {
        std::string why;
        // The port may be taken between free_port() and tinyproxy's bind:
        // tinyproxy then exits, and another port is tried.
        for (int attempt = 0; attempt < 5; ++attempt) {
            m_port = free_port();
            std::filesystem::remove(log_path());
            write_config();
            spawn();
            if (wait_until_listening(why)) return;
            stop();
        }
        throw std::runtime_error("tinyproxy did not start: " + why);
    }

    void spawn() {
        const std::string conf = (m_dir / "tinyproxy.conf").string();
        const std::string output = (m_dir / "output.txt").string();
        std::vector<std::string> args = {"tinyproxy", "-d", "-c", conf};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const pid_t parent = ::getpid();

        // exec's failure comes back through this pipe (closed on success).
        int report[2];
        if (::pipe2(report, O_CLOEXEC) != 0)
            throw std::runtime_error("pipe2: " + std::string(strerror(errno)));
        const pid_t pid = ::fork();
        if (pid < 0) {
            int e = errno;
            ::close(report[0]);
            ::close(report[1]);
            throw std::runtime_error("fork: " + std::string(strerror(e)));
        }
        if (pid == 0) {
            // Only async-signal-safe calls from here to exec.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            int null = ::open("/dev/null", O_RDONLY);
            if (out >= 0) {
                ::dup2(out, 1);
                ::dup2(out, 2);
            }
            if (null >= 0) ::dup2(null, 0);
            // Nothing of the test's (listening sockets …) stays open in it.
            ::close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
            ::execvp("tinyproxy", argv.data());
            int e = errno;
            [[maybe_unused]] auto n = ::write(report[1], &e, sizeof e);
            ::_exit(127);
        }
        m_pid = pid;
        ::close(report[1]);
        int e = 0;
        ssize_t n;
        do {
            n = ::read(report[0], &e, sizeof e);
        } while (n < 0 && errno == EINTR);
        ::close(report[0]);
        if (n == static_cast<ssize_t>(sizeof e)) {
            reap(true);
            throw std::runtime_error("cannot run tinyproxy (" + std::string(strerror(e)) +
                                     "): the proxy tests need Debian's tinyproxy-bin, which "
                                     "scripts/install-deps installs");
        }
    }

    /// True once tinyproxy says it accepts connections; false (with `why`)
    /// if it exits first or takes too long.
    bool wait_until_listening(std::string& why) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            if (log().find("Accepting connections") != std::string::npos) return true;
            int status = 0;
            if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
                m_pid = -1;
                why = "it exited (" + describe(status) + ") on port " + std::to_string(m_port) +
                      "; its output: " + read_file(m_dir / "output.txt") + "; its log: " + log();
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        why = "it did not listen on port " + std::to_string(m_port) + " within 10 s; its log: " + log();
        return false;
    }

    static std::string describe(int status) {
        if (WIFEXITED(status)) return "status " + std::to_string(WEXITSTATUS(status));
        if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
        return "wait status " + std::to_string(status);
    }

    /// Waits for the child (killing it outright if `kill`), and forgets it.
    void reap(bool kill) noexcept {
        if (m_pid <= 0) return;
        if (kill) ::kill(m_pid, SIGKILL);
        while (::waitpid(m_pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        m_pid = -1;
    }

    /// SIGTERM, up to 3 s to exit, then SIGKILL; always reaped.
    void stop() noexcept {
        if (m_pid <= 0) return;
        ::kill(m_pid, SIGTERM);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        while (std::chrono::steady_clock::now() < deadline) {
            if (::waitpid(m_pid, nullptr, WNOHANG) == m_pid) {
                m_pid = -1;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        reap(true);
    }

    options m_options;
    std::filesystem::path m_dir;
    std::uint16_t m_port = 0;
    pid_t m_pid = -1;
};

}  // namespace corun_test
