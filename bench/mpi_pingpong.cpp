// mpi-pingpong — the floor of any message round trip over MPI, for bench/compare:
// rank 0 sends a message of --bytes bytes to rank 1 with a blocking MPI_Send, rank 1
// sends it back, and rank 0 times each round trip after a warm-up (connection set-up
// and first-touch costs are not what is measured). No runtime, no polling: what corun's
// scale-out layer adds per message is measured against this.
//
// usage: mpirun -np 2 [--mca btl tcp,self] mpi-pingpong [--bytes 8] [--iterations 10000]
//                                                      [--warmup 1000]
// Rank 0 prints one JSON line: the median round trip (round_trip_us), the mean and the
// minimum, and the payload moved per second both ways at the median. Ranks above 1 idle.

// Only the C API is used: skip the deprecated C++ bindings, whose headers warn under -Wextra.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

namespace {

struct options {
    long bytes = 8;
    long iterations = 10000;
    long warmup = 1000;
};

bool parse(int argc, char** argv, options& o) {
    for (int i = 1; i < argc; ++i) {
        long* target = nullptr;
        if (std::strcmp(argv[i], "--bytes") == 0) target = &o.bytes;
        if (std::strcmp(argv[i], "--iterations") == 0) target = &o.iterations;
        if (std::strcmp(argv[i], "--warmup") == 0) target = &o.warmup;
        if (target == nullptr || i + 1 == argc) return false;
        char* end = nullptr;
        *target = std::strtol(argv[++i], &end, 10);
        if (*end != '\0' || *target < 0) return false;
    }
    return o.bytes <= (1L << 30) && o.iterations > 0;
}

}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0;
    int size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    options o;
    // Every rank parses the same arguments, so all agree on the counts without a message.
    if (!parse(argc, argv, o) || size < 2) {
        if (rank == 0) {
            std::fprintf(stderr,
                         "usage: mpirun -np 2 mpi-pingpong [--bytes N] [--iterations N] [--warmup N]\n");
        }
        MPI_Finalize();
        return 2;
    }

    std::vector<char> buffer(static_cast<std::size_t>(std::max(o.bytes, 1L)), 'x');
    const int count = static_cast<int>(o.bytes);
    std::vector<double> round_trips_us;
    round_trips_us.reserve(static_cast<std::size_t>(o.iterations));

    MPI_Barrier(MPI_COMM_WORLD);
    for (long i = 0; i < o.warmup + o.iterations; ++i) {
        if (rank == 0) {
            const auto t0 = std::chrono::steady_clock::now();
            MPI_Send(buffer.data(), count, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buffer.data(), count, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            const auto t1 = std::chrono::steady_clock::now();
            if (i >= o.warmup)
                round_trips_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        } else if (rank == 1) {
            MPI_Recv(buffer.data(), count, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buffer.data(), count, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
    }

    if (rank == 0) {
        // The median resists the odd descheduled round trip on a shared machine; the mean does not.
        const double mean =
            std::accumulate(round_trips_us.begin(), round_trips_us.end(), 0.0) / round_trips_us.size();
        std::sort(round_trips_us.begin(), round_trips_us.end());
        const std::size_t n = round_trips_us.size();
        const double median =
            n % 2 ? round_trips_us[n / 2] : (round_trips_us[n / 2 - 1] + round_trips_us[n / 2]) / 2;
        // Bytes moved per second, counting both directions of a round trip.
        const double gb_per_s = 2.0 * static_cast<double>(o.bytes) / (median * 1e3);
        std::printf(
            "{\"case\":\"mpi ping-pong\",\"bytes\":%ld,\"round_trip_us\":%.3f,\"mean_us\":%.3f,"
            "\"min_us\":%.3f,\"gb_per_s\":%.4f,\"iterations\":%ld,\"warmup\":%ld,\"ranks\":%d}\n",
            o.bytes, median, mean, round_trips_us.front(), gb_per_s, o.iterations, o.warmup, size);
        std::fflush(stdout);
    }
    MPI_Finalize();
    return 0;
}
