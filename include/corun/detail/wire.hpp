// How values cross to a worker process and back.
#pragma once

#include <cstdint>
#include <cstring>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

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

/// Bytes being written: a frame under construction.
class writer {
public:
    explicit writer(std::string& out) : m_out(out) {}
    void bytes(const void* p, std::size_t n) { m_out.append(static_cast<const char*>(p), n); }
    template <class T>
    void pod(const T& v) {
        bytes(&v, sizeof v);
    }
    std::string& buffer() { return m_out; }

private:
    std::string& m_out;
};

/// Bytes being read; running past the end is a `std::runtime_error`, never a
/// read out of bounds, because the bytes come from another process.
class reader {
public:
    explicit reader(std::string_view in) : m_in(in) {}
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

private:
    std::string_view m_in;
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
        w.bytes(std::ranges::data(v), n * sizeof(std::ranges::range_value_t<T>));
    } else {
        std::ostringstream os(std::ios::binary);
        {
            cereal::BinaryOutputArchive archive(os);
            archive(v);
        }
        const std::string blob = std::move(os).str();
        const std::uint64_t n = blob.size();
        w.pod(n);
        w.bytes(blob.data(), n);
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
        if (n > r.remaining() / sizeof(E)) throw std::runtime_error("corun: truncated sequence in frame");
        T v;
        v.resize(n);
        std::memcpy(static_cast<void*>(std::ranges::data(v)), r.take(n * sizeof(E)), n * sizeof(E));
        return v;
    } else {
        const auto n = r.pod<std::uint64_t>();
        std::istringstream is(std::string(r.take(n), n), std::ios::binary);
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
