// Shared helpers of corun-bench: timing and one-line JSON output.
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace corun_bench {

/// One JSON object on one line, keys in insertion order.
class json_line {
  public:
    explicit json_line(const std::string& case_name) { add_raw("case", '"' + case_name + '"'); }
    json_line& add(const std::string& key, double v) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.6g", v);
        return add_raw(key, buf);
    }
    json_line& add(const std::string& key, long long v) { return add_raw(key, std::to_string(v)); }
    json_line& add(const std::string& key, const std::string& v) { return add_raw(key, '"' + v + '"'); }
    /// Not an overload of `add`: a string literal would convert to bool first.
    json_line& add_bool(const std::string& key, bool v) { return add_raw(key, v ? "true" : "false"); }
    void print() const {
        std::string out = "{";
        for (std::size_t i = 0; i < m_fields.size(); ++i) {
            if (i) out += ',';
            out += '"' + m_fields[i].first + "\":" + m_fields[i].second;
        }
        std::puts((out + "}").c_str());
        std::fflush(stdout);
    }

  private:
    json_line& add_raw(const std::string& key, std::string v) {
        m_fields.emplace_back(key, std::move(v));
        return *this;
    }
    std::vector<std::pair<std::string, std::string>> m_fields;
};

/// Best (smallest) wall time of `repeats` runs of `f`, in nanoseconds.
inline double best_ns(int repeats, const std::function<void()>& f) {
    double best = 1e300;
    for (int i = 0; i < repeats; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        const auto t1 = std::chrono::steady_clock::now();
        best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
    return best;
}

/// A benchmark case: prints its JSON line(s); `args` are what followed the case name.
using case_fn = std::function<int(const std::vector<std::string>& args)>;
std::map<std::string, case_fn>& cases();

struct register_case {
    register_case(const std::string& name, case_fn f) { cases().emplace(name, std::move(f)); }
};

}  // namespace corun_bench
