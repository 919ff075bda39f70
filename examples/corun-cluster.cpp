// corun-cluster: the notebook's `square` over every core of every host.
//
//   corun-cluster [N]                          one host: a local process pool
//   mpirun -np 3 --bind-to none corun-cluster  rank 0 and two host agents
//   srun --mpi=pmix -n 3 corun-cluster         the same under Slurm
//
// Each task prints where it ran; rank 0 prints the hosts, then the sum.
#include <unistd.h>

#include <corun/corun.hpp>
#include <corun/mpi_pool.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

long square(long x) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::printf("x: %ld host: %s pid: %d\n", x, host, static_cast<int>(::getpid()));
    std::fflush(stdout);
    return x * x;
}

corun::awaitable<int> app(long n) {
    corun::mpi_pool pool{co_await corun::this_executor()};
    for (const auto& h : pool.hosts())
        std::printf("host: %s rank: %d pid: %d\n", h.name.c_str(), h.rank, h.pid);
    std::printf("workers: %zu\n", pool.workers());
    std::fflush(stdout);
    auto squares = co_await pool.map(square, corun::range(n), {.chunksize = 1});
    long sum = 0;
    for (long s : squares) sum += s;
    std::printf("sum of squares below %ld: %ld\n", n, sum);
    co_return sum == (n - 1) * n*(2 * n - 1) / 6 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    corun::mpi_session mpi(argc, argv);
    const long n = argc > 1 ? std::atol(argv[1]) : 12;
    return corun::run(app(n));
}
