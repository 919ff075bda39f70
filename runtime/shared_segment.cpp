#include "shared_segment.hpp"

#include "frame.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

namespace corun::detail {

namespace {

std::atomic<int> open_segments{0};

std::uint64_t page_size() noexcept {
    static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    return page;
}

constexpr unsigned sealed = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;

}  // namespace

wire::segment_sink::~segment_sink() {
    if (m_fd < 0) return;
    ::close(m_fd);
    --open_segments;
}

bool wire::segment_sink::append(const void* p, std::size_t n, std::uint64_t& offset) noexcept {
    if (m_failed) return false;  // once refused, the frame's other blocks go inline too
    if (m_fd < 0) {
        // Too many open already, or no descriptor left: this frame's blocks go inline.
        if (++open_segments > max_open_segments ||
            (m_fd = ::memfd_create("corun-frame", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0) {
            --open_segments;
            m_failed = true;
            return false;
        }
    }
    // Each block on a page of its own, so that its reader can map it.
    const std::uint64_t at = (m_size + page_size() - 1) / page_size() * page_size();
    // Written by the kernel (no page of ours is faulted in), once: the reader
    // reads these very pages.
    const char* bytes = static_cast<const char*>(p);
    for (std::size_t done = 0; done < n;) {
        const ssize_t k = ::pwrite(m_fd, bytes + done, std::min<std::size_t>(n - done, std::size_t(1) << 30),
                                   static_cast<off_t>(at + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {  // out of memory for shmem: inline, where the limits apply as before
            m_failed = true;
            if (::ftruncate(m_fd, static_cast<off_t>(m_size)) != 0) {
            }
            return false;
        }
        done += static_cast<std::size_t>(k);
    }
    m_size = at + n;
    offset = at;
    return true;
}

void wire::segment_sink::seal() noexcept {
    if (m_fd >= 0) ::fcntl(m_fd, F_ADD_SEALS, sealed);
}

void wire::prefault(void* p, std::size_t n) noexcept {
    const auto first = (reinterpret_cast<std::uintptr_t>(p) + page_size() - 1) / page_size() * page_size();
    const auto last = (reinterpret_cast<std::uintptr_t>(p) + n) / page_size() * page_size();
    // Fails harmlessly on kernels before 5.14: the pages are faulted in one
    // by one as they are written, as without it.
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_WRITE);
}

const char* wire::map_segment(int fd, std::uint64_t offset, std::size_t n) {
    void* p = ::mmap(nullptr, n, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, static_cast<off_t>(offset));
    if (p == MAP_FAILED) {
        if (errno == ENOMEM) throw std::bad_alloc();
        throw std::runtime_error(std::string("corun: cannot map a frame's shared segment: ") +
                                 std::strerror(errno));
    }
    return static_cast<const char*>(p);
}

void wire::unmap_segment(const char* p, std::size_t n) noexcept {
    ::munmap(const_cast<char*>(p), n);
}

ssize_t send_frame_bytes(int socket, const iovec* iov, std::size_t count, int fd, bool wait) noexcept {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = count;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    return ::sendmsg(socket, &msg, (wait ? 0 : MSG_DONTWAIT) | MSG_NOSIGNAL);
}

ssize_t receive_frame_bytes(int socket, char* p, std::size_t n, std::deque<int>& fds, bool wait) noexcept {
    iovec iov{p, n};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t r = ::recvmsg(socket, &msg, (wait ? 0 : MSG_DONTWAIT) | MSG_CMSG_CLOEXEC);
    if (r < 0) return r;
    bool received = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            received = true;
            try {
                fds.push_back(fd);
            } catch (...) {
                ::close(fd);
            }
        }
    }
    if ((msg.msg_flags & MSG_CTRUNC) && !received) {
        try {
            fds.push_back(-1);
        } catch (...) {
        }
    }
    return r;
}

bool inspect_segment(int fd, wire::segment_view& out) noexcept {
    const int seals = ::fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_WRITE)) != (F_SEAL_SHRINK | F_SEAL_WRITE)) return false;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    out = {fd, static_cast<std::uint64_t>(st.st_size)};
    return true;
}

fd_closer::~fd_closer() {
    if (fd >= 0) ::close(fd);
}

void refuse_segment(char* header, int error) noexcept {
    frame_header h;
    std::memcpy(&h, header, sizeof h);
    h.flags = (h.flags & ~std::uint32_t(has_segment) & 0xffffu) | segment_refused |
              (static_cast<std::uint32_t>(error) << 16);
    std::memcpy(header, &h, sizeof h);
}

void close_all(std::deque<int>& fds) noexcept {
    for (int fd : fds)
        if (fd >= 0) ::close(fd);
    fds.clear();
}

}  // namespace corun::detail
