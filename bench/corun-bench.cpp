// corun-bench CASE --json — one JSON object per line for each measurement.
#include <cstdio>
#include <string>
#include <vector>

#include "bench.hpp"

#ifdef CORUN_BENCH_MPI
#include <corun/mpi_pool.hpp>
#endif

namespace corun_bench {
std::map<std::string, case_fn>& cases() {
    static std::map<std::string, case_fn> all;
    return all;
}
}  // namespace corun_bench

int main(int argc, char** argv) {
#ifdef CORUN_BENCH_MPI
    // Started by mpirun, the ranks other than 0 serve rank 0's mpi_pool from
    // here on and never return; alone, nothing changes.
    corun::mpi_session mpi(argc, argv);
#endif
    auto& cases = corun_bench::cases();
    if (argc < 2 || !cases.count(argv[1])) {
        std::fprintf(stderr, "usage: corun-bench CASE [--json]\ncases:");
        for (auto& [name, f] : cases) std::fprintf(stderr, " %s", name.c_str());
        std::fprintf(stderr, "\n");
        return 2;
    }
    // Output is JSON lines whether or not --json is given: the flag is the
    // documented contract, kept for the tools that pass it.
    std::vector<std::string> args(argv + 2, argv + argc);
    return cases[argv[1]](args);
}
