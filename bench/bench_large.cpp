// process_pool case `large`: values of 100 MiB (a std::string) and 381 MiB
// (50 M doubles) sent to a worker as an argument and brought back as a
// result, against one copy of the same value into fresh memory in the same
// run, with the parent's peak resident memory during each call. The results
// are returned by reference to values the workers inherited, as the Python
// peer returns a global: what is timed is the value crossing, not the task
// making it. bench/compare adds Python's Pool.apply.
#include <corun/corun.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.hpp"
#include "text.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t string_bytes = std::size_t(100) << 20;
constexpr std::size_t double_count = 50'000'000;
constexpr int repeats = 3;

std::string g_string;
std::vector<double> g_doubles;

const std::string& string_result() {
    return g_string;
}
const std::vector<double>& doubles_result() {
    return g_doubles;
}

// What the argument tasks return: a check that the value arrived whole.
std::uint64_t string_check(const std::string& s) {
    std::uint64_t sum = s.size();
    for (std::size_t i = 0; i < s.size(); i += 4096) sum += static_cast<unsigned char>(s[i]);
    return sum;
}
std::uint64_t doubles_check(const std::vector<double>& v) {
    std::uint64_t sum = v.size();
    for (std::size_t i = 0; i < v.size(); i += 512) sum += static_cast<std::uint64_t>(v[i]);
    return sum;
}

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

std::size_t rss_kib() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    unsigned long pages[2] = {0, 0};
    if (f) {
        if (std::fscanf(f, "%lu %lu", &pages[0], &pages[1]) != 2) pages[1] = 0;
        std::fclose(f);
    }
    return pages[1] * 4;
}

struct timing {
    double best_s = 1e300;
    double peak_ratio = 0;  // the parent's peak resident memory above its start, per byte of the value
};

/// Runs `call` `repeats` times: its best time, and its worst peak.
template <class Call>
corun::awaitable<timing> measure(std::size_t value_bytes, Call call) {
    timing t;
    for (int i = 0; i < repeats; ++i) {
        textpipe::reset_peak_rss();
        const std::size_t start = rss_kib();
        const auto t0 = clock_type::now();
        co_await call();
        t.best_s = std::min(t.best_s, seconds_since(t0));
        const double above =
            (static_cast<double>(textpipe::peak_rss_kib()) - static_cast<double>(start)) * 1024;
        t.peak_ratio = std::max(t.peak_ratio, above / static_cast<double>(value_bytes));
    }
    co_return t;
}

template <class T>
double copy_floor_s(const T& value) {
    double best = 1e300;
    for (int i = 0; i < repeats; ++i) {
        const auto t0 = clock_type::now();
        T copy(value);  // fresh memory, as a value arriving in a process is
        best = std::min(best, seconds_since(t0));
        if (copy.size() != value.size()) throw std::logic_error("copy lost bytes");
    }
    return best;
}

corun::awaitable<void> run_large() {
    g_string.assign(string_bytes, 'x');
    for (std::size_t i = 0; i < g_string.size(); i += 4096)
        g_string[i] = static_cast<char>('a' + i / 4096 % 26);
    g_doubles.resize(double_count);
    for (std::size_t i = 0; i < g_doubles.size(); ++i) g_doubles[i] = static_cast<double>(i % 1000);
    const std::uint64_t string_sum = string_check(g_string), doubles_sum = doubles_check(g_doubles);

    auto ex = co_await corun::this_executor();
    corun::process_pool pool(ex, {.workers = 1});
    const timing s_arg = co_await measure(string_bytes, [&]() -> corun::awaitable<void> {
        if (co_await pool.submit(string_check, g_string) != string_sum)
            throw std::logic_error("string argument");
    });
    const timing s_res = co_await measure(string_bytes, [&]() -> corun::awaitable<void> {
        const std::string back = co_await pool.submit(string_result);
        if (string_check(back) != string_sum) throw std::logic_error("string result");
    });
    const std::size_t double_bytes = double_count * sizeof(double);
    const timing d_arg = co_await measure(double_bytes, [&]() -> corun::awaitable<void> {
        if (co_await pool.submit(doubles_check, g_doubles) != doubles_sum)
            throw std::logic_error("doubles argument");
    });
    const timing d_res = co_await measure(double_bytes, [&]() -> corun::awaitable<void> {
        const std::vector<double> back = co_await pool.submit(doubles_result);
        if (doubles_check(back) != doubles_sum) throw std::logic_error("doubles result");
    });
    corun_bench::json_line("large")
        .add("string_mib", static_cast<long long>(string_bytes >> 20))
        .add("string_argument_s", s_arg.best_s)
        .add("string_result_s", s_res.best_s)
        .add("string_copy_s", copy_floor_s(g_string))
        .add("string_argument_peak", s_arg.peak_ratio)
        .add("string_result_peak", s_res.peak_ratio)
        .add("doubles_mib", static_cast<long long>(double_bytes >> 20))
        .add("doubles_argument_s", d_arg.best_s)
        .add("doubles_result_s", d_res.best_s)
        .add("doubles_copy_s", copy_floor_s(g_doubles))
        .add("doubles_argument_peak", d_arg.peak_ratio)
        .add("doubles_result_peak", d_res.peak_ratio)
        .print();
}

corun_bench::register_case large_case("large", [](const std::vector<std::string>&) {
    corun::run(run_large());
    return 0;
});

}  // namespace
