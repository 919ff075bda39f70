// Happy Eyeballs (RFC 8305): connecting races the addresses of a host, so
// one that never answers costs 250 ms, not the whole connect timeout.
#include "http/connection.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "child_server.hpp"
#include "corun/timeout.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
namespace detail = corun::http::detail;
using tcp = boost::asio::ip::tcp;

namespace {

int loopback_socket() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    return fd;
}

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

/// A listener that accepts nothing, its queue filled, so the kernel drops
/// every further SYN: a connection to it neither succeeds nor fails, like an
/// address that does not route (an IPv6 address on an IPv4-only network).
class black_hole {
public:
    black_hole() : m_listener(loopback_socket()) {
        auto a = loopback(0);
        socklen_t len = sizeof a;
        REQUIRE(::bind(m_listener, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(m_listener, 0) == 0);
        REQUIRE(::getsockname(m_listener, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        m_port = ntohs(a.sin_port);
        for (int i = 0; i < 3; ++i) {
            int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
            m_fillers.push_back(fd);
        }
    }
    ~black_hole() {
        for (int fd : m_fillers) ::close(fd);
        ::close(m_listener);
    }
    black_hole(const black_hole&) = delete;
    black_hole& operator=(const black_hole&) = delete;
    tcp::endpoint endpoint() const { return {boost::asio::ip::address_v4::loopback(), m_port}; }

private:
    int m_listener;
    std::uint16_t m_port = 0;
    std::vector<int> m_fillers;
};

/// A listener that accepts (the kernel completes the handshake).
class listener {
public:
    listener() : m_fd(loopback_socket()) {
        auto a = loopback(0);
        socklen_t len = sizeof a;
        REQUIRE(::bind(m_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(m_fd, 16) == 0);
        REQUIRE(::getsockname(m_fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        m_port = ntohs(a.sin_port);
    }
    ~listener() { ::close(m_fd); }
    listener(const listener&) = delete;
    listener& operator=(const listener&) = delete;
    tcp::endpoint endpoint() const { return {boost::asio::ip::address_v4::loopback(), m_port}; }

private:
    int m_fd;
    std::uint16_t m_port = 0;
};

tcp::endpoint refused() {
    return {boost::asio::ip::address_v4::loopback(), free_port()};
}

/// Which endpoint connect_any connected to.
awaitable<tcp::endpoint> connected_to(std::vector<tcp::endpoint> endpoints) {
    tcp::socket s = co_await detail::connect_any(endpoints);
    co_return s.remote_endpoint();
}

}  // namespace

TEST_CASE("an address that never answers is raced, not waited out", "[http_connect]") {
    black_hole hole;
    listener good;
    // The black hole is real: alone, it is still connecting a second later.
    auto alone =
        thrown_within<corun::timeout_error>(10s, corun::with_timeout(1s, connected_to({hole.endpoint()})));
    CHECK(alone.after() == 1s);
    // First in the list, it delays the next by 250 ms; the next one wins.
    auto start = std::chrono::steady_clock::now();
    CHECK(block_on_within(10s, connected_to({hole.endpoint(), good.endpoint()})) == good.endpoint());
    // Behaviour, not speed: well under the black hole's own time, which is
    // minutes (the SYN retransmissions), and under the 1 s it was given above.
    CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("a refused address moves on at once; all refused is the last failure", "[http_connect]") {
    listener good;
    CHECK(block_on_within(10s, connected_to({refused(), refused(), good.endpoint()})) == good.endpoint());
    auto e = thrown_within<boost::system::system_error>(10s, connected_to({refused(), refused()}));
    CHECK(e.code() == boost::asio::error::connection_refused);
}

TEST_CASE("cancelling the race closes every attempt", "[http_connect]") {
    black_hole a, b;
    auto e = thrown_within<corun::timeout_error>(
        10s, corun::with_timeout(600ms, connected_to({a.endpoint(), b.endpoint()})));
    CHECK(e.after() == 600ms);
}
