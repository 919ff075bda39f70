// JSON by hand for the examples' --json output: their objects are small and
// flat, and Boost.JSON would print every double in exponent form (0.1 as
// 1E-1), which is hard on a human reader.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

namespace examples {

/// `text` as a JSON string, quotes included.
inline std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (const char ch : text) {
        const auto u = static_cast<unsigned char>(ch);
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += ch;
        } else if (u < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", u);
            out += buf;
        } else {
            out += ch;
        }
    }
    return out + "\"";
}

/// `v` to a microsecond's precision, shortest form; `null` if not finite.
inline std::string json_number(double v) {
    if (!std::isfinite(v)) return "null";
    v = std::round(v * 1e6) / 1e6;
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, ec == std::errc{} ? end : buf);
}

}  // namespace examples
