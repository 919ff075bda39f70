// process_pool cases: map, submit_latency, submit_throughput and sleep, each
// against its in-process baseline (a serial loop, a raw socketpair ping-pong)
// measured in the same run. bench/compare adds the Python peers.
#include <corun/corun.hpp>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

long square(long x) {
    return x * x;
}

// The serial baseline's function: a real call per item, as a worker makes.
__attribute__((noinline)) long square_serial(long x) {
    return x * x;
}

void sleep_one(std::int64_t) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
}

double ns_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::nano>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// ---------------------------------------------------------------- map

constexpr long map_n = 1'000'000;
constexpr int map_repeats = 5;

struct map_result {
    double corun_ns_per_item = 0;
    std::size_t workers = 0;
};

corun::awaitable<map_result> map_with_pool() {
    auto ex = co_await corun::this_executor();
    corun::process_pool pool(ex);
    map_result r;
    r.workers = pool.workers();
    double best = 1e300;
    for (int i = 0; i < map_repeats; ++i) {
        const auto t0 = clock_type::now();
        std::vector<long> out = co_await pool.map(square, corun::range(map_n));
        const double ns = ns_since(t0);
        if (out.size() != static_cast<std::size_t>(map_n) || out.back() != (map_n - 1) * (map_n - 1))
            throw std::logic_error("map gave wrong results");
        best = std::min(best, ns);
    }
    r.corun_ns_per_item = best / map_n;
    co_return r;
}

double serial_ns_per_item() {
    long check = 0;
    const double best = corun_bench::best_ns(map_repeats, [&] {
        std::vector<long> out;
        for (std::int64_t i : corun::range(map_n)) out.push_back(square_serial(i));
        check += out.back();
    });
    if (check != map_repeats * (map_n - 1) * (map_n - 1))
        throw std::logic_error("serial loop gave wrong results");
    return best / map_n;
}

corun_bench::register_case map_case("map", [](const std::vector<std::string>&) {
    const map_result pooled = corun::run(map_with_pool());
    const double serial = serial_ns_per_item();
    corun_bench::json_line("map")
        .add("n", static_cast<long long>(map_n))
        .add("workers", static_cast<long long>(pooled.workers))
        .add("corun_ns_per_item", pooled.corun_ns_per_item)
        .add("serial_ns_per_item", serial)
        .print();
    return 0;
});

// ------------------------------------------------------------ thread_map

corun::awaitable<double> thread_map_ns_per_item(std::size_t threads) {
    corun::thread_pool pool(co_await corun::this_executor(), {.threads = threads});
    double best = 1e300;
    for (int i = 0; i < map_repeats; ++i) {
        const auto t0 = clock_type::now();
        std::vector<long> out = co_await pool.map(square_serial, corun::range(map_n));
        const double ns = ns_since(t0);
        if (out.size() != static_cast<std::size_t>(map_n) || out.back() != (map_n - 1) * (map_n - 1))
            throw std::logic_error("thread_pool map gave wrong results");
        best = std::min(best, ns);
    }
    co_return best / map_n;
}

/// The same work split by hand: one std::thread per slice, writing in place.
double std_thread_ns_per_item(std::size_t threads) {
    long check = 0;
    const double best = corun_bench::best_ns(map_repeats, [&] {
        std::vector<long> out(map_n);
        std::vector<std::thread> team;
        const long slice = (map_n + static_cast<long>(threads) - 1) / static_cast<long>(threads);
        for (std::size_t t = 0; t < threads; ++t)
            team.emplace_back([&out, t, slice] {
                const long end = std::min<long>(map_n, (static_cast<long>(t) + 1) * slice);
                for (long i = static_cast<long>(t) * slice; i < end; ++i) out[i] = square_serial(i);
            });
        for (auto& th : team) th.join();
        check += out.back();
    });
    if (check != map_repeats * (map_n - 1) * (map_n - 1))
        throw std::logic_error("std::thread split gave wrong results");
    return best / map_n;
}

corun_bench::register_case thread_map_case("thread_map", [](const std::vector<std::string>&) {
    const std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
    const double pooled = corun::run(thread_map_ns_per_item(threads));
    const double by_hand = std_thread_ns_per_item(threads);
    corun_bench::json_line("thread_map")
        .add("n", static_cast<long long>(map_n))
        .add("threads", static_cast<long long>(threads))
        .add("corun_ns_per_item", pooled)
        .add("std_thread_ns_per_item", by_hand)
        .add("ratio", pooled / by_hand)
        .print();
    return 0;
});

// ------------------------------------------------------ submit_latency

constexpr int latency_warmup = 200;
constexpr int latency_rounds = 2000;

corun::awaitable<double> submit_median_us() {
    auto ex = co_await corun::this_executor();
    corun::process_pool pool(ex, {.workers = 1});
    std::vector<double> us;
    us.reserve(latency_rounds);
    for (int i = 0; i < latency_warmup + latency_rounds; ++i) {
        const auto t0 = clock_type::now();
        const long nine = co_await pool.submit(square, 3L);
        const double ns = ns_since(t0);
        if (nine != 9) throw std::logic_error("submit gave a wrong result");
        if (i >= latency_warmup) us.push_back(ns / 1000);
    }
    co_return median(std::move(us));
}

void write_all(int fd, const char* p, std::size_t n) {
    while (n) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw std::runtime_error(std::string("ping-pong write: ") + std::strerror(errno));
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

// False at end of file.
bool read_all(int fd, char* p, std::size_t n) {
    while (n) {
        const ssize_t r = ::read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) return false;
        if (r < 0) throw std::runtime_error(std::string("ping-pong read: ") + std::strerror(errno));
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

/// Median µs of an 8-byte round trip over a socketpair to a forked echo child.
double raw_pingpong_median_us() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
    std::fflush(nullptr);
    const pid_t child = ::fork();
    if (child < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (child == 0) {
        ::close(fds[0]);
        char buf[8];
        try {
            while (read_all(fds[1], buf, sizeof buf)) write_all(fds[1], buf, sizeof buf);
        } catch (...) {
            ::_exit(1);
        }
        ::_exit(0);
    }
    ::close(fds[1]);
    const int fd = fds[0];
    std::vector<double> us;
    us.reserve(latency_rounds);
    char msg[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    char back[8];
    for (int i = 0; i < latency_warmup + latency_rounds; ++i) {
        const auto t0 = clock_type::now();
        write_all(fd, msg, sizeof msg);
        if (!read_all(fd, back, sizeof back)) throw std::runtime_error("ping-pong child hung up");
        const double ns = ns_since(t0);
        if (i >= latency_warmup) us.push_back(ns / 1000);
    }
    ::close(fd);
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    return median(std::move(us));
}

corun_bench::register_case latency_case("submit_latency", [](const std::vector<std::string>&) {
    // Raw first, then corun, then raw again: the better raw median is the floor.
    double raw = raw_pingpong_median_us();
    const double pooled = corun::run(submit_median_us());
    raw = std::min(raw, raw_pingpong_median_us());
    corun_bench::json_line("submit_latency")
        .add("corun_median_us", pooled)
        .add("raw_pingpong_median_us", raw)
        .add("ratio", pooled / raw)
        .print();
    return 0;
});

// --------------------------------------------------- submit_throughput

constexpr int throughput_n = 20'000;
constexpr int throughput_repeats = 3;

struct throughput_result {
    double us_per_task = 0;
    std::size_t workers = 0;
};

corun::awaitable<throughput_result> submit_many() {
    auto ex = co_await corun::this_executor();
    corun::process_pool pool(ex);
    throughput_result r;
    r.workers = pool.workers();
    double best = 1e300;
    for (int round = 0; round < throughput_repeats; ++round) {
        const auto t0 = clock_type::now();
        std::vector<long> out = co_await corun::gather(
            corun::range(throughput_n) |
            std::views::transform([&pool](std::int64_t i) { return pool.submit(square, long(i)); }));
        const double ns = ns_since(t0);
        if (out.size() != static_cast<std::size_t>(throughput_n) ||
            out.back() != long(throughput_n - 1) * (throughput_n - 1))
            throw std::logic_error("submit gave wrong results");
        best = std::min(best, ns);
    }
    r.us_per_task = best / 1000 / throughput_n;
    co_return r;
}

corun_bench::register_case throughput_case("submit_throughput", [](const std::vector<std::string>&) {
    const throughput_result r = corun::run(submit_many());
    corun_bench::json_line("submit_throughput")
        .add("n", static_cast<long long>(throughput_n))
        .add("workers", static_cast<long long>(r.workers))
        .add("corun_us_per_task", r.us_per_task)
        .print();
    return 0;
});

// --------------------------------------------------------------- sleep

constexpr int sleep_tasks = 5;

struct sleep_result {
    double construct_s = 0;
    double map_s = 0;
};

corun::awaitable<sleep_result> sleep_on_pool() {
    auto ex = co_await corun::this_executor();
    sleep_result r;
    const auto t0 = clock_type::now();
    corun::process_pool pool(ex, {.workers = sleep_tasks});
    r.construct_s = ns_since(t0) / 1e9;
    const corun::map_options one_each{.chunksize = 1};
    auto done = co_await pool.map(sleep_one, corun::range(sleep_tasks), one_each);
    r.map_s = ns_since(t0) / 1e9;
    if (done.size() != static_cast<std::size_t>(sleep_tasks)) throw std::logic_error("sleep lost results");
    co_return r;
}

corun_bench::register_case sleep_case("sleep", [](const std::vector<std::string>&) {
    // Wall time from before the pool is made until it is destroyed (joined,
    // every worker reaped), as Python's `with Pool(5) as p: p.map(...)`.
    const auto t0 = clock_type::now();
    const sleep_result r = corun::run(sleep_on_pool());
    const double wall = ns_since(t0) / 1e9;
    corun_bench::json_line("sleep")
        .add("tasks", static_cast<long long>(sleep_tasks))
        .add("workers", static_cast<long long>(sleep_tasks))
        .add("wall_s", wall)
        .add("construct_s", r.construct_s)
        .add("map_done_s", r.map_s)
        .print();
    return 0;
});

}  // namespace
