// corun::range — Python's range() as a lazy C++20 view.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
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
    class iterator {
      public:
        using value_type = std::int64_t;
        using difference_type = std::ptrdiff_t;
        using iterator_concept = std::random_access_iterator_tag;

        iterator() = default;
        iterator(std::int64_t value, std::int64_t step) : m_value(value), m_step(step) {}

        std::int64_t operator*() const noexcept { return m_value; }
        std::int64_t operator[](difference_type n) const noexcept { return m_value + n * m_step; }
        iterator& operator++() noexcept { return m_value += m_step, *this; }
        iterator operator++(int) noexcept { return {std::exchange(m_value, m_value + m_step), m_step}; }
        iterator& operator--() noexcept { return m_value -= m_step, *this; }
        iterator operator--(int) noexcept { return {std::exchange(m_value, m_value - m_step), m_step}; }
        iterator& operator+=(difference_type n) noexcept { return m_value += n * m_step, *this; }
        iterator& operator-=(difference_type n) noexcept { return m_value -= n * m_step, *this; }
        friend iterator operator+(iterator i, difference_type n) noexcept { return i += n; }
        friend iterator operator+(difference_type n, iterator i) noexcept { return i += n; }
        friend iterator operator-(iterator i, difference_type n) noexcept { return i -= n; }
        friend difference_type operator-(const iterator& a, const iterator& b) noexcept {
            return static_cast<difference_type>((a.m_value - b.m_value) / a.m_step);
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept {
            return a.m_value == b.m_value;
        }
        friend auto operator<=>(const iterator& a, const iterator& b) noexcept {
            return a.m_step > 0 ? a.m_value <=> b.m_value : b.m_value <=> a.m_value;
        }

      private:
        std::int64_t m_value = 0;
        std::int64_t m_step = 1;
    };

    range_view() = default;
    range_view(std::int64_t begin, std::int64_t end, std::int64_t step) : m_begin(begin), m_step(step) {
        if (step == 0) throw std::invalid_argument("corun::range: step must not be zero");
        // Store the end as the first value past the last element, so the
        // iterators can compare by value.
        std::int64_t count = 0;
        if (step > 0 && end > begin) count = (end - begin + step - 1) / step;
        if (step < 0 && end < begin) count = (begin - end - step - 1) / -step;
        m_end = begin + count * step;
    }

    iterator begin() const noexcept { return {m_begin, m_step}; }
    iterator end() const noexcept { return {m_end, m_step}; }
    std::size_t size() const noexcept { return static_cast<std::size_t>((m_end - m_begin) / m_step); }

  private:
    std::int64_t m_begin = 0;
    std::int64_t m_end = 0;
    std::int64_t m_step = 1;
};

/// `range(n)`: 0, 1, … n-1.
inline range_view range(std::int64_t end) {
    return {0, end, 1};
}
/// `range(begin, end, step = 1)`, as Python's; a zero step throws `std::invalid_argument`.
inline range_view range(std::int64_t begin, std::int64_t end, std::int64_t step = 1) {
    return {begin, end, step};
}

}  // namespace corun

template <>
inline constexpr bool std::ranges::enable_borrowed_range<corun::range_view> = true;
