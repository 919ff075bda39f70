// The bytes read from a worker (private to the runtime).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <new>
#include <utility>

namespace corun::detail {

/// A buffer grown with mremap: a frame of any size is never copied as the
/// buffer grows, and its memory is committed as its bytes arrive, not when a
/// header announces them.
class frame_buffer {
public:
    frame_buffer() = default;
    frame_buffer(const frame_buffer&) = delete;
    frame_buffer& operator=(const frame_buffer&) = delete;
    ~frame_buffer() {
        if (m_data) ::munmap(m_data, m_capacity);
    }

    char* data() noexcept { return m_data; }
    const char* data() const noexcept { return m_data; }
    std::size_t capacity() const noexcept { return m_capacity; }

    /// Makes the capacity `n` bytes (rounded up to pages), keeping the contents
    /// that fit. Throws `std::bad_alloc`.
    void resize_capacity(std::size_t n) {
        const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        n = (n + page - 1) / page * page;
        if (n == m_capacity) return;
        void* p = m_data ? ::mremap(m_data, m_capacity, n, MREMAP_MAYMOVE)
                         : ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        m_data = static_cast<char*>(p);
        m_capacity = n;
    }

private:
    char* m_data = nullptr;
    std::size_t m_capacity = 0;
};

}  // namespace corun::detail
