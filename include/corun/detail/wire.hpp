// How values cross to a worker process and back.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "corun/awaitable.hpp"

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

namespace corun::detail {

/// A chunk's results with the time the worker spent computing them: what a
/// pipeline's pool stage gets back, so that its busy time leaves out the
/// wait in the pool's queue.
template <class R>
struct timed_chunk {
    std::vector<R> results;
    std::int64_t busy_ns = 0;
};

}  // namespace corun::detail

namespace corun::detail::wire {

/// Blocks of bytes at least this large (a long string, a vector's elements)
/// travel out of line, in a frame's shared segment, when it has one.
inline constexpr std::size_t shared_block_min = std::size_t(1) << 20;

/// The shared memory a frame's large blocks are written to: a memfd made at
/// the first block, sealed once the frame is complete, then passed with the
/// frame over the worker's socket (see runtime/shared_segment.cpp). Without
/// one (memfd refused, or a frame bound for another host), blocks go inline.
class CORUN_API segment_sink {
public:
    segment_sink() = default;
    segment_sink(const segment_sink&) = delete;
    segment_sink& operator=(const segment_sink&) = delete;
    ~segment_sink();

    /// Writes `n` bytes at a page-aligned offset of the segment, set in
    /// `offset`; false when the segment cannot take them (they go inline).
    bool append(const void* p, std::size_t n, std::uint64_t& offset) noexcept;
    /// No more writes; the bytes are frozen (F_SEAL_WRITE and the rest).
    void seal() noexcept;
    int fd() const noexcept { return m_fd; }
    /// Bytes in the segment (pages included), 0 when unused.
    std::uint64_t size() const noexcept { return m_size; }
    /// A block could not go to shared memory (no descriptor left, say).
    bool failed() const noexcept { return m_failed; }

private:
    int m_fd = -1;
    std::uint64_t m_size = 0;
    bool m_failed = false;
};

/// A frame's segment as its reader sees it.
struct segment_view {
    int fd = -1;
    std::uint64_t size = 0;
};

/// Makes the kernel fault in [p, p + n) at once for writing: one call rather
/// than a page fault per page, which is most of the cost of filling fresh
/// memory on some machines.
CORUN_API void prefault(void* p, std::size_t n) noexcept;
/// Maps [offset, offset + n) of a segment for reading (offset page-aligned);
/// throws `std::bad_alloc` when the address space is full.
CORUN_API const char* map_segment(int fd, std::uint64_t offset, std::size_t n);
CORUN_API void unmap_segment(const char* p, std::size_t n) noexcept;

/// Bytes being written: a frame under construction.
class writer {
public:
    explicit writer(std::string& out, segment_sink* segment = nullptr) : m_out(out), m_segment(segment) {}
    void bytes(const void* p, std::size_t n) { m_out.append(static_cast<const char*>(p), n); }
    template <class T>
    void pod(const T& v) {
        bytes(&v, sizeof v);
    }
    /// A block that `reader::block` reads back: from `shared_block_min` bytes
    /// on, a marker first, then the bytes inline or their place in the segment.
    void block(const void* p, std::size_t n) {
        if (n < shared_block_min) return bytes(p, n);
        std::uint64_t offset = 0;
        if (m_segment && m_segment->append(p, n, offset)) {
            pod(std::uint8_t{1});
            pod(offset);
        } else {
            pod(std::uint8_t{0});
            bytes(p, n);
        }
    }
    /// `n` values of the raw type `T`, the i-th `make(i)`, as one run of
    /// bytes (through a small buffer: no per-value append).
    template <class T, class Make>
    void values(std::size_t n, Make make) {
        static_assert(sizeof(T) <= 1024);
        char buffer[4096];
        std::size_t used = 0;
        for (std::size_t i = 0; i < n; ++i) {
            if (used + sizeof(T) > sizeof buffer) {
                bytes(buffer, used);
                used = 0;
            }
            const T v = make(i);
            std::memcpy(buffer + used, &v, sizeof(T));
            used += sizeof(T);
        }
        bytes(buffer, used);
    }
    std::string& buffer() { return m_out; }

private:
    std::string& m_out;
    segment_sink* m_segment;
};

/// Bytes being read; running past the end is a `std::runtime_error`, never a
/// read out of bounds, because the bytes come from another process.
class reader {
public:
    explicit reader(std::string_view in, segment_view segment = {}) : m_in(in), m_segment(segment) {}
    const char* take(std::size_t n) {
        if (n > m_in.size()) throw std::runtime_error("corun: truncated value in frame");
        const char* p = m_in.data();
        m_in.remove_prefix(n);
        return p;
    }
    template <class T>
    T pod() {
        T v;
        std::memcpy(static_cast<void*>(&v), take(sizeof v), sizeof v);
        return v;
    }
    std::size_t remaining() const noexcept { return m_in.size(); }

    /// Reads `n` elements written by `writer::block` into the empty sequence
    /// `v`, straight from where they are (the frame, or the segment), without
    /// first zero-filling `v` where its type allows.
    template <class T>
    void block(T& v, std::size_t n) {
        using E = std::ranges::range_value_t<T>;
        const std::size_t bytes = n * sizeof(E);
        if (bytes < shared_block_min) return fill(v, take(bytes), n);
        if (pod<std::uint8_t>() == 0) {
            if (n > remaining() / sizeof(E)) throw std::runtime_error("corun: truncated sequence in frame");
            return fill(v, take(bytes), n);
        }
        const auto offset = segment_offset(bytes);
        // Mapped a window at a time, so that the reader's address space and
        // resident memory hold the block once, plus a window.
        // About 16 MiB, a whole number of elements and of pages (every window
        // starts on a page, as a mapping must).
        constexpr std::size_t unit = 4096 / std::gcd(sizeof(E), std::size_t(4096));
        constexpr std::size_t window_elements =
            std::max(unit, ((std::size_t(16) << 20) / sizeof(E)) / unit * unit);
        reserve(v, n);
        std::size_t done = 0;
        while (done < n) {
            const std::size_t k = std::min(n - done, window_elements);
            const char* p = map_segment(m_segment.fd, offset + done * sizeof(E), k * sizeof(E));
            append(v, p, k);
            unmap_segment(p, k * sizeof(E));
            done += k;
        }
    }

    /// Reads a block of `bytes` bytes written by `writer::block` into `dest`.
    void raw(void* dest, std::size_t bytes) {
        if (bytes < shared_block_min || pod<std::uint8_t>() == 0) {
            std::memcpy(dest, take(bytes), bytes);
            return;
        }
        const auto offset = segment_offset(bytes);
        constexpr std::size_t window = std::size_t(16) << 20;
        for (std::size_t done = 0; done < bytes;) {
            const std::size_t k = std::min(bytes - done, window);
            const char* p = map_segment(m_segment.fd, offset + done, k);
            std::memcpy(static_cast<char*>(dest) + done, p, k);
            unmap_segment(p, k);
            done += k;
        }
    }

private:
    /// The place of a block of `bytes` in the segment, checked: the segment
    /// is sealed against shrinking, so no read of it can fault.
    std::uint64_t segment_offset(std::size_t bytes) {
        const auto offset = pod<std::uint64_t>();
        if (m_segment.fd < 0 || offset % 4096 != 0 || offset > m_segment.size ||
            bytes > m_segment.size - offset)
            throw std::runtime_error("corun: a block beyond the frame's shared segment");
        return offset;
    }

    template <class T>
    static void reserve(T& v, std::size_t n) {
        using E = std::ranges::range_value_t<T>;
        if constexpr (requires { v.reserve(n); }) {
            v.reserve(n);
            if (n * sizeof(E) >= shared_block_min) prefault(std::ranges::data(v), n * sizeof(E));
        }
    }
    template <class T>
    static void append(T& v, const char* p, std::size_t k) {
        using E = std::ranges::range_value_t<T>;
        if constexpr (requires(const E* e) { v.insert(v.end(), e, e); }) {
            // Trivially copyable elements, copied as bytes into room that is
            // never zero-filled first (where they are aligned for E: a mapped
            // window always, the frame's own bytes not always).
            if (reinterpret_cast<std::uintptr_t>(p) % alignof(E) == 0) {
                const E* e = reinterpret_cast<const E*>(p);
                v.insert(v.end(), e, e + k);
                return;
            }
        }
        const std::size_t at = std::ranges::size(v);
        v.resize(at + k);
        std::memcpy(static_cast<void*>(std::ranges::data(v) + at), p, k * sizeof(E));
    }
    template <class T>
    static void fill(T& v, const char* p, std::size_t n) {
        reserve(v, n);
        append(v, p, n);
    }

    std::string_view m_in;
    segment_view m_segment;
};

/// Trivially copyable values travel as their bytes. Pointers do not: an
/// address means nothing in another process.
template <class T>
inline constexpr bool is_raw = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                               !std::is_member_pointer_v<T> && !std::is_empty_v<T>;

/// Contiguous sequences of raw values (`std::vector<int>`, `std::string`)
/// travel as a length and one block of bytes.
template <class T>
concept raw_sequence = requires(T& t, std::size_t n) {
    requires std::ranges::contiguous_range<T>;
    requires is_raw<std::ranges::range_value_t<T>>;
    t.resize(n);
    t.data();
};

template <class T>
inline constexpr bool is_cereal =
    cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value&&
        cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value;

template <class T>
inline constexpr bool is_empty_default = std::is_empty_v<T>&& std::is_default_constructible_v<T>;

/// True for every type that can cross the process boundary.
template <class T>
inline constexpr bool serializable_v = is_raw<T> || raw_sequence<T> || is_cereal<T> || is_empty_default<T>;
template <class T>
struct serializable : std::bool_constant<serializable_v<T>> {};
template <class T, class A>
struct serializable<std::vector<T, A>> : serializable<T> {};

/// Instantiated for a type that cannot cross to a worker: the compiler names
/// `T` in the instantiation it reports with this message.
template <class T>
struct type_cannot_cross_to_a_worker_process {
    static_assert(serializable<T>::value,
                  "corun: this type cannot be sent to or from a worker process. Make it trivially "
                  "copyable, or give it a cereal serialize() function (see process_pool.hpp).");
    static constexpr bool value = true;
};

template <class R>
struct serializable<timed_chunk<R>> : serializable<R> {};

template <class T>
struct is_timed_chunk : std::false_type {};
template <class R>
struct is_timed_chunk<timed_chunk<R>> : std::true_type {};

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

template <class T>
void put_many(writer& w, const std::vector<T>& v);
template <class T>
std::vector<T> get_many(reader& r);

template <class T>
void put(writer& w, const T& v) {
    static_assert(type_cannot_cross_to_a_worker_process<T>::value);
    if constexpr (is_timed_chunk<T>::value) {
        put_many(w, v.results);
        w.pod(v.busy_ns);
    } else if constexpr (is_vector<T>::value && !raw_sequence<T>) {
        put_many(w, v);
    } else if constexpr (is_empty_default<T>) {
    } else if constexpr (is_raw<T>) {
        w.pod(v);
    } else if constexpr (raw_sequence<T>) {
        const std::uint64_t n = std::ranges::size(v);
        w.pod(n);
        w.block(std::ranges::data(v), n * sizeof(std::ranges::range_value_t<T>));
    } else {
        std::ostringstream os(std::ios::binary);
        {
            cereal::BinaryOutputArchive archive(os);
            archive(v);
        }
        const std::string blob = std::move(os).str();
        const std::uint64_t n = blob.size();
        w.pod(n);
        w.block(blob.data(), n);
    }
}

template <class T>
T get(reader& r) {
    static_assert(type_cannot_cross_to_a_worker_process<T>::value);
    if constexpr (is_timed_chunk<T>::value) {
        T v;
        v.results = get_many<typename decltype(v.results)::value_type>(r);
        v.busy_ns = r.pod<std::int64_t>();
        return v;
    } else if constexpr (is_vector<T>::value && !raw_sequence<T>) {
        return get_many<typename T::value_type>(r);
    } else if constexpr (is_empty_default<T>) {
        return T{};
    } else if constexpr (is_raw<T>) {
        return r.pod<T>();
    } else if constexpr (raw_sequence<T>) {
        using E = std::ranges::range_value_t<T>;
        const auto n = r.pod<std::uint64_t>();
        // Bounded before anything is allocated: by the bytes left inline, or
        // (for a block in the segment) by the segment.
        if (n > std::numeric_limits<std::uint64_t>::max() / sizeof(E) ||
            (n * sizeof(E) < shared_block_min && n > r.remaining() / sizeof(E)))
            throw std::runtime_error("corun: truncated sequence in frame");
        T v;
        r.block(v, n);
        return v;
    } else {
        const auto n = r.pod<std::uint64_t>();
        std::string blob;
        r.block(blob, n);
        std::istringstream is(std::move(blob), std::ios::binary);
        cereal::BinaryInputArchive archive(is);
        T v;
        archive(v);
        return v;
    }
}

/// A vector: raw elements as one block, others one `put` each (so a vector
/// of anything serializable is serializable, and reads back as it was written).
template <class T>
void put_many(writer& w, const std::vector<T>& v) {
    if constexpr (raw_sequence<std::vector<T>>) {
        put(w, v);
    } else {
        w.pod(static_cast<std::uint64_t>(v.size()));
        for (const T& e : v) put(w, e);
    }
}

template <class T>
std::vector<T> get_many(reader& r) {
    if constexpr (raw_sequence<std::vector<T>>) {
        return get<std::vector<T>>(r);
    } else {
        const auto n = r.pod<std::uint64_t>();
        // Every element but an empty one takes at least a byte: a count beyond
        // that is a corrupt frame, not a reason to allocate.
        if (!is_empty_default<T> && n > r.remaining())
            throw std::runtime_error("corun: truncated sequence in frame");
        std::vector<T> v;
        v.reserve(n);
        for (std::uint64_t i = 0; i < n; ++i) v.push_back(get<T>(r));
        return v;
    }
}

}  // namespace corun::detail::wire
