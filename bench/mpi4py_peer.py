#!/usr/bin/env python3
"""mpi4py's MPIPoolExecutor.map over `square`, the MPI peer of corun's pool map:
the closest Python pool that sends its tasks over MPI.

usage: mpirun -np 3 --oversubscribe --bind-to none --mca btl tcp,self \\
           python3 -m mpi4py.futures bench/mpi4py_peer.py [--items 100000]

Rank 0 runs this script; the other ranks are the pool's workers (mpi4py's
shared pool: `-m mpi4py.futures` keeps them serving tasks until rank 0 ends).
The Python must be one that imports mpi4py (Debian: python3-mpi4py).

Timed, after a warm-up map that starts the workers and imports this module in
them: `executor.map(square, range(N))` with chunksize=1, mpi4py's default (one
MPI message each way per item, so this is mostly per-task overhead), then with
corun's default chunk size, ceil(N / (4 * workers)) (bulk throughput). Results
are checked. One JSON line is printed on stdout.
"""

import argparse
import json
import time

from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor


def square(x):
    return x * x


def timed_map(executor, n, chunksize):
    """Seconds taken by one map of `square` over range(n), results checked."""
    t0 = time.perf_counter()
    out = list(executor.map(square, range(n), chunksize=chunksize))
    seconds = time.perf_counter() - t0
    if len(out) != n or any(v != i * i for i, v in enumerate(out)):
        raise SystemExit("mpi4py map: wrong results")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    n = args.items

    # Under `-m mpi4py.futures` every other rank is a worker; run plainly, the
    # executor would try to spawn workers instead, which is not what is measured.
    workers = MPI.COMM_WORLD.Get_size() - 1
    if workers < 1:
        raise SystemExit("run under mpirun -np 3 ... python3 -m mpi4py.futures (at least 2 ranks)")

    with MPIPoolExecutor() as executor:
        executor.bootup()
        timed_map(executor, 1000, 10)  # warm-up: workers up, this module imported there

        seconds = timed_map(executor, n, 1)
        parts = 4 * workers
        chunksize = max(1, (n + parts - 1) // parts)
        # The chunked map is short: best of three, as the other pool peers do.
        chunked = min(timed_map(executor, n, chunksize) for _ in range(3))

    print(json.dumps({"case": "mpi4py map", "items": n, "workers": workers,
                      "seconds": seconds, "items_per_s": n / seconds,
                      "chunksize": chunksize, "chunked_seconds": chunked,
                      "chunked_items_per_s": n / chunked}), flush=True)


if __name__ == "__main__":
    main()
