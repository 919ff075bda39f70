// Faults that end or change a whole MPI job, one per run (tests/mpi/check-faults
// launches each and judges the outcome from outside):
//   stop-agent  SIGSTOP rank 2's agent during a map: its tasks finish elsewhere
//               within the heartbeat time; prints "stop-agent ok ..."
//   kill-agent  kill -9 rank 1's agent during a map: the job must end, fast
//   stop-mid-transfer  SIGSTOP rank 1's agent while it sends a large result
//   large       two large results: no host is taken for lost
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
#include <filesystem>
#include <fstream>
#include <sstream>
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

/// Processes whose parent is `pid`.
int children_of(int pid) {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
        const std::string name = e.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;  // not a process
        std::ifstream stat(e.path() / "stat");
        std::string text((std::istreambuf_iterator<char>(stat)), {});
        const auto close = text.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream fields(text.substr(close + 2));
        std::string state;
        int parent = 0;
        fields >> state >> parent;
        n += parent == pid;
    }
    return n;
}

long rss_kib() {
    std::ifstream status("/proc/self/status");
    std::string key;
    long value = 0;
    while (status >> key)
        if (key == "VmRSS:") return status >> value, value;
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
    // Resumed, it hears its pool is closed: its fork server and workers go.
    int children = -1;
    for (int i = 0; i < 50 && children != 0; ++i) {
        co_await pause(100ms);
        children = children_of(victim);
    }
    bool all = results.size() == items.size();
    for (long r : results) all = all && r == 200;
    const bool ok = all && lost && stopped && children == 0;
    std::printf(
        "stop-agent %s: %zu results in %.2f s, rank 2 lost: %s (heartbeat timeout %lld ms), "
        "its processes once resumed: %d\n",
        ok ? "ok" : "FAILED", results.size(), took, lost ? "yes" : "no",
        static_cast<long long>(heartbeat_timeout.count()), children);
    co_return ok ? 0 : 1;
}

/// A value of `mib` MiB whose first byte names the rank that made it.
std::string made_by_rank(long mib) {
    std::string s(static_cast<std::size_t>(mib) << 20, 'v');
    const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
    s[0] = r ? r[0] : '?';
    return s;
}

/// Rank 1's agent is stopped while it sends a large result: it is found lost
/// within the heartbeat time, the task is made again elsewhere, and small
/// tasks meanwhile run on rank 2.
corun::awaitable<int> stop_mid_transfer(const corun::mpi_session& mpi,
                                        std::chrono::milliseconds heartbeat_timeout) {
    corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 2}, .local_workers = false}};
    const int victim = pid_of_rank(mpi, 1);
    const long start_rss = rss_kib();
    const auto start = clock_type::now();
    std::string big;
    int small_on_2 = 0;
    auto fetch = [&]() -> corun::awaitable<void> { big = co_await pool.submit(made_by_rank, 256L); };
    auto stop_mid_way = [&]() -> corun::awaitable<void> {
        // Rank 0's memory grows as the pieces arrive: the transfer is under way.
        while (rss_kib() - start_rss < 16 * 1024 && clock_type::now() - start < 60s) co_await pause(1ms);
        ::kill(victim, SIGSTOP);
        for (int i = 0; i < 4; ++i)
            if (co_await pool.submit(nap, 1L) == 1) ++small_on_2;
        co_await pause(heartbeat_timeout + 1500ms);  // past the heartbeat timeout
        ::kill(victim, SIGCONT);
    };
    co_await corun::gather(fetch(), stop_mid_way());
    const double took = std::chrono::duration<double>(clock_type::now() - start).count();
    bool lost = false;
    for (const auto& h : pool.hosts())
        if (h.rank == 1) lost = h.lost;
    const bool ok = lost && big.size() == std::size_t(256) << 20 && big[0] == '2' && small_on_2 == 4;
    std::printf(
        "stop-mid-transfer %s: rank 1 lost: %s, 256 MiB result made by rank %c, %d small tasks meanwhile, "
        "%.1f s\n",
        ok ? "ok" : "FAILED", lost ? "yes" : "no", big.empty() ? '-' : big[0], small_on_2, took);
    co_return ok ? 0 : 1;
}

/// Two large results in a row: every host stays in the pool.
corun::awaitable<int> large(const corun::mpi_session&) {
    corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 1}, .local_workers = false}};
    std::size_t total = 0;
    for (int i = 0; i < 2; ++i) total += (co_await pool.submit(made_by_rank, 128L)).size();
    int lost = 0;
    for (const auto& h : pool.hosts()) lost += h.lost;
    std::printf("large %s: %zu MiB received, %d hosts lost\n",
                total == std::size_t(256) << 20 && !lost ? "ok" : "FAILED", total >> 20, lost);
    co_return total == std::size_t(256) << 20 && !lost ? 0 : 1;
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
    // Short for the cases that wait for a host to be found lost; longer where
    // large transfers run on a machine that may be loaded (no host is lost).
    const auto timeout =
        std::chrono::milliseconds(mode == "stop-agent" || mode == "kill-agent" ? 1500 : 4000);
    corun::mpi_session mpi(argc, argv, {.heartbeat_interval = 100ms, .heartbeat_timeout = timeout});
    if (mode == "stop-agent") return corun::run(stop_agent(mpi, timeout));
    if (mode == "kill-agent") return corun::run(kill_agent(mpi));
    if (mode == "stop-mid-transfer") return corun::run(stop_mid_transfer(mpi, timeout));
    if (mode == "large") return corun::run(large(mpi));
    return corun::run(serve());
}
