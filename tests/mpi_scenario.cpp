// Faults that end or change a whole MPI job, one per run (tests/mpi/check-faults
// launches each and judges the outcome from outside):
//   stop-agent  SIGSTOP rank 2's agent during a map: its tasks finish elsewhere
//               within the heartbeat time; prints "stop-agent ok ..."
//   kill-agent  kill -9 rank 1's agent during a map: the job must end, fast
//   serve       make a pool, map once, exit (the other program of a job whose
//               binaries differ, and a plain run)
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <corun/corun.hpp>
#include <corun/mpi_pool.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

long nap(long ms) {
    usleep(static_cast<useconds_t>(ms) * 1000);
    return ms;
}

int pid_of_rank(const corun::mpi_session& mpi, int rank) {
    for (const auto& h : mpi.hosts())
        if (h.rank == rank) return h.pid;
    return 0;
}

corun::awaitable<void> pause(clock_type::duration d) {
    boost::asio::steady_timer t(co_await corun::this_executor(), d);
    co_await t.async_wait(corun::use_awaitable);
}

corun::awaitable<int> stop_agent(const corun::mpi_session& mpi, std::chrono::milliseconds heartbeat_timeout) {
    corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 1}}};
    const int victim = pid_of_rank(mpi, 2);
    const auto start = clock_type::now();
    std::vector<long> items(24, 200);
    bool stopped = false;
    auto stop_soon = [&]() -> corun::awaitable<void> {
        co_await pause(300ms);
        ::kill(victim, SIGSTOP);
        stopped = true;
    };
    auto [results, ignored] = co_await corun::gather(pool.map(nap, items, {.chunksize = 1}), stop_soon());
    (void)ignored;
    const double took = std::chrono::duration<double>(clock_type::now() - start).count();
    bool lost = false;
    for (const auto& h : pool.hosts())
        if (h.rank == 2) lost = h.lost;
    ::kill(victim, SIGCONT);
    co_await pause(1s);  // its heartbeats again, so that MPI can finish with it
    bool all = results.size() == items.size();
    for (long r : results) all = all && r == 200;
    std::printf("stop-agent %s: %zu results in %.2f s, rank 2 lost: %s (heartbeat timeout %lld ms)\n",
                all && lost && stopped ? "ok" : "FAILED", results.size(), took, lost ? "yes" : "no",
                static_cast<long long>(heartbeat_timeout.count()));
    co_return all&& lost ? 0 : 1;
}

corun::awaitable<int> kill_agent(const corun::mpi_session& mpi) {
    corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 1}}};
    const int victim = pid_of_rank(mpi, 1);
    auto kill_soon = [&]() -> corun::awaitable<void> {
        co_await pause(300ms);
        std::printf("kill-agent: killing rank 1 (pid %d) with SIGKILL\n", victim);
        std::fflush(stdout);
        ::kill(victim, SIGKILL);
    };
    co_await corun::gather(pool.map(nap, std::vector<long>(200, 100), {.chunksize = 1}), kill_soon());
    std::printf("kill-agent: the job went on after losing an agent\n");
    co_return 1;
}

corun::awaitable<int> serve() {
    corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 1}}};
    const auto r = co_await pool.map(nap, std::vector<long>(6, 1), {.chunksize = 1});
    std::printf("serve: %zu results from %zu hosts\n", r.size(), pool.hosts().size());
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "serve";
    const auto timeout = std::chrono::milliseconds(1500);
    corun::mpi_session mpi(argc, argv, {.heartbeat_interval = 100ms, .heartbeat_timeout = timeout});
    if (mode == "stop-agent") return corun::run(stop_agent(mpi, timeout));
    if (mode == "kill-agent") return corun::run(kill_agent(mpi));
    return corun::run(serve());
}
