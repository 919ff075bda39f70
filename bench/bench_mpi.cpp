// mpi_pool cases, for a corun-bench started by mpirun (bench/compare runs it
// on 3 ranks over TCP): rank 0 measures, the other ranks are host agents.
//   mpi_submit   one submit round trip through an agent, beside the local
//                process pool's in the same run
//   mpi_map      map(square) over 100 000 small items on every host
//   mpi_cpu_map  map of 1 ms CPU tasks over every host, beside a local
//                process_pool with as many workers
//   mpi_idle     CPU used by each rank while a pool waits for work
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <corun/corun.hpp>
#include <corun/mpi_pool.hpp>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

long square(long x) {
    return x * x;
}

/// One millisecond of CPU work.
long spin_1ms(long x) {
    const auto end = clock_type::now() + std::chrono::milliseconds(1);
    while (clock_type::now() < end) {
    }
    return x;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

template <class Pool>
corun::awaitable<double> submit_median_us(Pool& pool) {
    std::vector<double> us;
    for (int i = 0; i < 2200; ++i) {
        const auto t0 = clock_type::now();
        if (co_await pool.submit(square, 3L) != 9) throw std::logic_error("submit gave a wrong result");
        if (i >= 200) us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    }
    co_return median(std::move(us));
}

template <class Pool, class F>
corun::awaitable<double> items_per_s(Pool& pool, F f, long n, int repeats) {
    double best = 0;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = clock_type::now();
        const auto out = co_await pool.map(f, corun::range(n));
        const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
        if (static_cast<long>(out.size()) != n || out.back() != f(n - 1))
            throw std::logic_error("map gave wrong results");
        best = std::max(best, static_cast<double>(n) / s);
    }
    co_return best;
}

/// CPU time (user + system) of a process so far, in seconds.
double cpu_seconds(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string skip;
    for (int i = 0; i < 11; ++i) fields >> skip;  // state … cmajflt
    double user = 0, system = 0;
    fields >> user >> system;
    return (user + system) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

int ranks(const corun::mpi_pool& pool) {
    return static_cast<int>(pool.hosts().size());
}

corun_bench::register_case submit_case("mpi_submit", [](const std::vector<std::string>&) {
    return corun::run([]() -> corun::awaitable<int> {
        auto ex = co_await corun::this_executor();
        // Only agents work: every task crosses MPI.
        corun::mpi_pool remote{ex, {.pool = {.workers = 1}, .local_workers = false}};
        corun::process_pool local{ex, {.workers = 1}};
        const double local_us = co_await submit_median_us(local);
        const double mpi_us = co_await submit_median_us(remote);
        corun_bench::json_line("mpi_submit")
            .add("ranks", static_cast<long long>(ranks(remote) + 1))
            .add("mpi_median_us", mpi_us)
            .add("local_median_us", local_us)
            .print();
        co_return 0;
    }());
});

corun_bench::register_case map_case("mpi_map", [](const std::vector<std::string>&) {
    return corun::run([]() -> corun::awaitable<int> {
        corun::mpi_pool pool{co_await corun::this_executor()};
        const long n = 100'000;
        const double rate = co_await items_per_s(pool, square, n, 5);
        corun_bench::json_line("mpi_map")
            .add("ranks", static_cast<long long>(ranks(pool)))
            .add("workers", static_cast<long long>(pool.workers()))
            .add("items", static_cast<long long>(n))
            .add("items_per_s", rate)
            .print();
        co_return 0;
    }());
});

corun_bench::register_case cpu_map_case("mpi_cpu_map", [](const std::vector<std::string>&) {
    return corun::run([]() -> corun::awaitable<int> {
        auto ex = co_await corun::this_executor();
        const long n = 3000;
        double mpi_rate = 0, local_rate = 0;
        std::size_t workers = 0;
        // Alternately, twice each: the better of each counts.
        for (int round = 0; round < 2; ++round) {
            {
                corun::mpi_pool pool{ex};
                workers = pool.workers();
                mpi_rate = std::max(mpi_rate, co_await items_per_s(pool, spin_1ms, n, 1));
            }
            corun::process_pool local{ex, {.workers = workers}};
            local_rate = std::max(local_rate, co_await items_per_s(local, spin_1ms, n, 1));
        }
        corun_bench::json_line("mpi_cpu_map")
            .add("workers", static_cast<long long>(workers))
            .add("tasks", static_cast<long long>(n))
            .add("mpi_tasks_per_s", mpi_rate)
            .add("local_tasks_per_s", local_rate)
            .add("ratio", mpi_rate / local_rate)
            .print();
        co_return 0;
    }());
});

corun_bench::register_case idle_case("mpi_idle", [](const std::vector<std::string>&) {
    return corun::run([]() -> corun::awaitable<int> {
        corun::mpi_pool pool{co_await corun::this_executor()};
        co_await pool.map(square, corun::range(1000));  // then nothing to do
        const auto hosts = pool.hosts();
        std::vector<double> before;
        for (const auto& h : hosts) before.push_back(cpu_seconds(h.pid));
        const auto t0 = clock_type::now();
        std::this_thread::sleep_for(std::chrono::seconds(5));
        const double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
        double worst = 0, sum = 0;
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            const double share = 100 * (cpu_seconds(hosts[i].pid) - before[i]) / wall;
            worst = std::max(worst, share);
            sum += share;
        }
        corun_bench::json_line("mpi_idle")
            .add("ranks", static_cast<long long>(hosts.size()))
            .add("seconds", wall)
            .add("worst_rank_percent_of_core", worst)
            .add("mean_rank_percent_of_core", sum / static_cast<double>(hosts.size()))
            .print();
        co_return 0;
    }());
});

}  // namespace
