// corun::range — Python's range() as a lazy C++20 view.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <ranges>
#include <stdexcept>
#include <utility>

namespace corun {

/// A lazy arithmetic progression: `range(5)` is 0 1 2 3 4, `range(2, 10, 3)`
/// is 2 5 8, `range(5, 0, -2)` is 5 3 1, exactly like Python's `range`. It
/// stores three numbers whatever its length, so `range(10'000'000)` can feed
/// `map`, `imap` or a pipeline without materialising anything.
class range_view : public std::ranges::view_interface<range_view> {
public:
    /// Holds its position as an index, so that no arithmetic ever goes past
    /// the last element (a range may end at the limits of `std::int64_t`).
    class iterator {
    public:
        using value_type = std::int64_t;
        using difference_type = std::ptrdiff_t;
        using iterator_concept = std::random_access_iterator_tag;

        iterator() = default;
        iterator(std::int64_t begin, std::int64_t step, difference_type index)
            : m_begin(begin), m_step(step), m_index(index) {}

        std::int64_t operator*() const noexcept { return at(m_index); }
        std::int64_t operator[](difference_type n) const noexcept { return at(m_index + n); }
        iterator& operator++() noexcept { return ++m_index, *this; }
        iterator operator++(int) noexcept { return {m_begin, m_step, m_index++}; }
        iterator& operator--() noexcept { return --m_index, *this; }
        iterator operator--(int) noexcept { return {m_begin, m_step, m_index--}; }
        iterator& operator+=(difference_type n) noexcept { return m_index += n, *this; }
        iterator& operator-=(difference_type n) noexcept { return m_index -= n, *this; }
        friend iterator operator+(iterator i, difference_type n) noexcept { return i += n; }
        friend iterator operator+(difference_type n, iterator i) noexcept { return i += n; }
        friend iterator operator-(iterator i, difference_type n) noexcept { return i -= n; }
        friend difference_type operator-(const iterator& a, const iterator& b) noexcept {
            return a.m_index - b.m_index;
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept {
            return a.m_index == b.m_index;
        }
        friend auto operator<=>(const iterator& a, const iterator& b) noexcept {
            return a.m_index <=> b.m_index;
        }

    private:
        std::int64_t at(difference_type i) const noexcept {
            // Two's-complement arithmetic in unsigned: exact for every element.
            return static_cast<std::int64_t>(static_cast<std::uint64_t>(m_begin) +
                                             static_cast<std::uint64_t>(i) *
                                                 static_cast<std::uint64_t>(m_step));
        }
        std::int64_t m_begin = 0;
        std::int64_t m_step = 1;
        difference_type m_index = 0;
    };

    range_view() = default;
    range_view(std::int64_t begin, std::int64_t end, std::int64_t step) : m_begin(begin), m_step(step) {
        if (step == 0) throw std::invalid_argument("corun::range: step must not be zero");
        const auto distance = [](std::int64_t from, std::int64_t to) {
            return static_cast<std::uint64_t>(to) - static_cast<std::uint64_t>(from);
        };
        std::uint64_t count = 0;
        if (step > 0 && end > begin)
            count = (distance(begin, end) - 1) / static_cast<std::uint64_t>(step) + 1;
        if (step < 0 && end < begin)
            count = (distance(end, begin) - 1) / (0 - static_cast<std::uint64_t>(step)) + 1;
        if (count > static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max()))
            throw std::length_error("corun::range: more elements than an iterator can count");
        m_size = static_cast<std::ptrdiff_t>(count);
    }

    iterator begin() const noexcept { return {m_begin, m_step, 0}; }
    iterator end() const noexcept { return {m_begin, m_step, m_size}; }
    std::size_t size() const noexcept { return static_cast<std::size_t>(m_size); }

private:
    std::int64_t m_begin = 0;
    std::int64_t m_step = 1;
    std::ptrdiff_t m_size = 0;
};

/// `range(n)`: 0, 1, … n-1.
inline range_view range(std::int64_t end) {
    return {0, end, 1};
}
/// `range(begin, end, step = 1)`, as Python's; a zero step throws
/// `std::invalid_argument`, a range of more than 2^63 - 1 elements `std::length_error`.
inline range_view range(std::int64_t begin, std::int64_t end, std::int64_t step = 1) {
    return {begin, end, step};
}

}  // namespace corun

template <>
inline constexpr bool std::ranges::enable_borrowed_range<corun::range_view> = true;
