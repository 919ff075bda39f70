// raw_server: a deliberately misbehaving HTTP server for the HTTP fault tests.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
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
        /// request line, or nothing once the peer has closed. The whole head
        /// and the body are kept: `last_head()`, `last_body()`.
        std::optional<std::string> read_request() {
            auto head = read_head();
            if (!head) return std::nullopt;
            auto length = field(*head, "content-length");
            std::string body = read_bytes(length ? std::stoul(*length) : 0);
            if (length && body.size() != std::stoul(*length)) return std::nullopt;
            m_body = std::move(body);
            return head->substr(0, head->find("\r\n"));
        }

        /// Reads one request head (request line and fields, without the empty
        /// line that ends it), leaving any body unread; nothing once the peer
        /// has closed. Also `last_head()` from then on, with an empty `last_body()`.
        std::optional<std::string> read_head() {
            std::size_t end;
            while ((end = m_in.find("\r\n\r\n")) == std::string::npos)
                if (!receive()) return std::nullopt;
            m_head = m_in.substr(0, end);
            m_body.clear();
            m_in.erase(0, end + 4);
            return m_head;
        }

        /// Reads `n` bytes; fewer only if the peer closes (or the server stops) first.
        std::string read_bytes(std::size_t n) {
            while (m_in.size() < n)
                if (!receive()) break;
            std::string out = m_in.substr(0, std::min(n, m_in.size()));
            m_in.erase(0, out.size());
            return out;
        }

        /// Reads a body in chunked transfer encoding (after `read_head`),
        /// trailer included; returns it decoded, or nothing if it breaks off
        /// or is malformed.
        std::optional<std::string> read_chunked_body() {
            std::string body;
            for (;;) {
                auto line = read_line();
                if (!line) return std::nullopt;
                std::size_t size = 0;
                try {
                    size = std::stoul(line->substr(0, line->find(';')), nullptr, 16);
                } catch (const std::exception&) {
                    return std::nullopt;
                }
                if (size == 0) break;
                std::string data = read_bytes(size + 2);
                if (data.size() != size + 2 || data.substr(size) != "\r\n") return std::nullopt;
                body.append(data, 0, size);
            }
            for (;;) {  // the trailer section, up to its empty line
                auto line = read_line();
                if (!line) return std::nullopt;
                if (line->empty()) break;
            }
            m_body = body;
            return body;
        }

        /// Whatever arrives within `d`, ending early when the peer closes.
        std::string read_for(std::chrono::milliseconds d) {
            auto until = std::chrono::steady_clock::now() + d;
            while (std::chrono::steady_clock::now() < until && !m_closed && !m_stopping && m_fd >= 0) {
                pollfd p{m_fd, POLLIN, 0};
                if (::poll(&p, 1, 10) > 0) receive();
            }
            std::string out = std::move(m_in);
            m_in.clear();
            return out;
        }

        /// The head of the last request read (request line and fields) and its body.
        const std::string& last_head() const noexcept { return m_head; }
        const std::string& last_body() const noexcept { return m_body; }

        /// The value of the first field `name` (case-insensitive) in a request
        /// or response head, without surrounding blanks; nothing if absent.
        static std::optional<std::string> field(std::string_view head, std::string_view name) {
            for (std::size_t at = head.find("\r\n"); at != std::string_view::npos;) {
                at += 2;
                std::size_t end = std::min(head.find("\r\n", at), head.size());
                std::string_view line = head.substr(at, end - at);
                if (line.size() > name.size() && line[name.size()] == ':' &&
                    std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
                        return std::tolower(static_cast<unsigned char>(a)) ==
                               std::tolower(static_cast<unsigned char>(b));
                    })) {
                    std::string_view value = line.substr(name.size() + 1);
                    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
                        value.remove_prefix(1);
                    while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
                        value.remove_suffix(1);
                    return std::string(value);
                }
                if (end == head.size()) break;
                at = end;
            }
            return std::nullopt;
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
        /// Appends what the peer sends next to the input; false once it has
        /// closed (or the server stops).
        bool receive() {
            for (;;) {
                if (m_closed || !wait(POLLIN)) return false;
                char buf[16 * 1024];
                ssize_t n = ::recv(m_fd, buf, sizeof buf, 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (n <= 0) {
                    m_closed = true;
                    return false;
                }
                m_in.append(buf, static_cast<std::size_t>(n));
                return true;
            }
        }

        /// One CRLF-ended line, without its CRLF.
        std::optional<std::string> read_line() {
            std::size_t end;
            while ((end = m_in.find("\r\n")) == std::string::npos)
                if (!receive()) return std::nullopt;
            std::string line = m_in.substr(0, end);
            m_in.erase(0, end + 2);
            return line;
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
        std::string m_head, m_body;
        bool m_closed = false;  // the peer has closed (or reset) its side
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

    std::uint16_t port() const noexcept { return m_port; }
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
