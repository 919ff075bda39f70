// raw_server: a deliberately misbehaving HTTP server for the HTTP fault tests.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace corun_test {

/// A deliberately misbehaving HTTP server: a loopback listener on a thread of
/// its own, handing every accepted connection to a script on a thread of its
/// own. Written on POSIX sockets so that it can break HTTP, TCP and timing in
/// ways no HTTP library would.
class raw_server {
public:
    /// One accepted connection, from the server's side. Every wait in it ends
    /// when the server stops, so a script can never keep a test waiting.
    class connection {
    public:
        connection(int fd, std::size_t index, const std::atomic<bool>& stopping)
            : m_fd(fd), m_index(index), m_stopping(stopping) {}
        connection(const connection&) = delete;
        connection& operator=(const connection&) = delete;
        ~connection() { close(); }

        /// Which connection of the server this is, from 0.
        std::size_t index() const noexcept { return m_index; }

        /// Reads one request (head and any Content-Length body); returns its
        /// request line, or nothing once the peer has closed.
        std::optional<std::string> read_request() {
            for (;;) {
                if (auto end = m_in.find("\r\n\r\n"); end != std::string::npos) {
                    std::string head = m_in.substr(0, end);
                    std::size_t length = content_length(head);
                    if (m_in.size() >= end + 4 + length) {
                        m_in.erase(0, end + 4 + length);
                        return head.substr(0, head.find("\r\n"));
                    }
                }
                if (!wait(POLLIN)) return std::nullopt;
                char buf[4096];
                ssize_t n = ::recv(m_fd, buf, sizeof buf, 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (n <= 0) return std::nullopt;
                m_in.append(buf, static_cast<std::size_t>(n));
            }
        }

        /// Sends all of `data`; false once the peer is gone.
        bool send(std::string_view data) {
            while (!data.empty()) {
                if (!wait(POLLOUT)) return false;
                ssize_t n = ::send(m_fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (n <= 0) return false;
                data.remove_prefix(static_cast<std::size_t>(n));
            }
            return true;
        }

        /// Waits `d`, or less if the server stops; false if it does.
        bool pause(std::chrono::milliseconds d) {
            auto until = std::chrono::steady_clock::now() + d;
            while (std::chrono::steady_clock::now() < until) {
                if (m_stopping) return false;
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            return !m_stopping;
        }

        /// Waits until the peer closes (or the server stops).
        void wait_for_close() {
            while (wait(POLLIN)) {
                char buf[4096];
                ssize_t n = ::recv(m_fd, buf, sizeof buf, 0);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
            }
        }

        /// Ends the connection with a reset (RST) instead of an orderly close.
        void reset() {
            if (m_fd < 0) return;
            linger abortive{1, 0};
            ::setsockopt(m_fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
            close();
        }

        void close() {
            if (m_fd >= 0) ::close(m_fd);
            m_fd = -1;
        }

    private:
        static std::size_t content_length(const std::string& head) {
            std::string lower;
            for (char c : head) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
            auto at = lower.find("\r\ncontent-length:");
            if (at == std::string::npos) return 0;
            return std::stoul(lower.substr(at + 17));
        }

        /// Polls for `events` in short steps, watching for the server to stop.
        bool wait(short events) {
            while (!m_stopping && m_fd >= 0) {
                pollfd p{m_fd, events, 0};
                int r = ::poll(&p, 1, 20);
                if (r > 0) return true;  // readiness, or an error the next call reports
                if (r < 0 && errno != EINTR) return false;
            }
            return false;
        }

        int m_fd;
        std::size_t m_index;
        const std::atomic<bool>& m_stopping;
        std::string m_in;
    };

    using script = std::function<void(connection&)>;

    explicit raw_server(script s) : m_script(std::move(s)) {
        m_listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        REQUIRE(m_listener >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        REQUIRE(::bind(m_listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(m_listener, 64) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(m_listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        m_port = ntohs(addr.sin_port);
        m_acceptor = std::thread([this] { accept_loop(); });
    }
    raw_server(const raw_server&) = delete;
    raw_server& operator=(const raw_server&) = delete;

    ~raw_server() {
        m_stopping = true;
        m_acceptor.join();
        for (auto& t : m_scripts) t.join();
        ::close(m_listener);
    }

    std::string url(const std::string& path, const char* scheme = "http") const {
        return std::string(scheme) + "://127.0.0.1:" + std::to_string(m_port) + path;
    }
    std::size_t connections_accepted() const noexcept { return m_accepted; }

private:
    void accept_loop() {
        while (!m_stopping) {
            pollfd p{m_listener, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            int fd = ::accept4(m_listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) continue;
            std::size_t index = m_accepted++;
            m_scripts.emplace_back([this, fd, index] {
                connection c(fd, index, m_stopping);
                m_script(c);
            });
        }
    }

    script m_script;
    int m_listener = -1;
    std::uint16_t m_port = 0;
    std::atomic<bool> m_stopping{false};
    std::atomic<std::size_t> m_accepted{0};
    std::thread m_acceptor;
    std::vector<std::thread> m_scripts;  // touched by the acceptor thread only, until it is joined
};

}  // namespace corun_test
