// A string held in place, for options structs that must stay trivially destructible.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace corun::detail {

/// At most `N - 1` characters, stored inline. Options structs hold their
/// strings this way so that they stay trivially destructible (see
/// `process_pool_options`): a braced options temporary next to a `co_await`
/// is then safe on GCC 12. Made from any string; a longer one is a
/// `std::length_error` naming the limit.
template <std::size_t N>
class fixed_string {
public:
    constexpr fixed_string() noexcept = default;
    constexpr fixed_string(const char* s) : fixed_string(std::string_view(s)) {}
    fixed_string(const std::string& s) : fixed_string(std::string_view(s)) {}
    constexpr fixed_string(std::string_view s) {
        if (s.size() >= N)
            throw std::length_error("corun: a string option is longer than " + std::to_string(N - 1) +
                                    " characters");
        for (std::size_t i = 0; i < s.size(); ++i) m_data[i] = s[i];
        m_size = s.size();
    }

    constexpr std::string_view view() const noexcept { return {m_data, m_size}; }
    constexpr operator std::string_view() const noexcept { return view(); }
    std::string str() const { return std::string(view()); }
    constexpr bool empty() const noexcept { return m_size == 0; }

private:
    char m_data[N] = {};
    std::size_t m_size = 0;
};

}  // namespace corun::detail
