// mpi_pool on 3 ranks over TCP (tests/mpi/launch starts it with mpirun): every
// call and token, ordering, cancellation, typed errors, large values, a
// worker killed on another rank, and imap over 1 000 000 items.
#define CATCH_CONFIG_RUNNER
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "corun/corun.hpp"
#include "corun/mpi_pool.hpp"
#include "corun/remote_exception.hpp"
#include "process_support.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

namespace {

/// The rank whose agent (or rank 0 itself) runs this worker: workers inherit
/// their rank's environment.
int rank_here() {
    const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
    return r ? std::atoi(r) : 0;
}

int rank_after(long ms) {
    usleep(static_cast<useconds_t>(ms) * 1000);
    return rank_here();
}

int die_on_rank(int rank) {
    if (rank_here() == rank) ::kill(::getpid(), SIGKILL);
    usleep(20'000);
    return rank_here();
}

struct custom_error {
    int code;
};

long fails(long x) {
    if (x == 3) throw std::invalid_argument("three is not allowed");
    if (x == 4) throw custom_error{4};
    if (x == 5) throw parse_error("bad line", 17);
    return x;
}

std::string reversed(std::string s) {
    std::reverse(s.begin(), s.end());
    return s;
}

std::string make_string(std::size_t n) {
    return std::string(n, 'r');
}

corun::mpi_pool_options two_each{.pool = {.workers = 2}};

}  // namespace

TEST_CASE("the session has three ranks, and every rank's workers take tasks", "[mpi_pool]") {
    block_on([]() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), two_each};
        REQUIRE(pool.hosts().size() == 3);
        CHECK(pool.workers() == 6);
        const auto ranks = co_await pool.map(rank_after, std::vector<long>(60, 20), {.chunksize = 1});
        CHECK(std::set<int>(ranks.begin(), ranks.end()) == std::set<int>{0, 1, 2});
    }());
}

TEST_CASE("submit, map, starmap and lambdas give the process pool's results, in order", "[mpi_pool]") {
    block_on([]() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), two_each};
        CHECK(co_await pool.submit(square, 9L) == 81);
        CHECK(co_await pool.submit(add, 2L, 3L) == 5);
        const double scale = 2.5;
        CHECK(co_await pool.submit([scale](double x) { return x * scale; }, 2.0) == 5.0);
        CHECK(co_await pool.submit(reversed, "abc") == "cba");
        std::vector<std::pair<long, long>> pairs{{1, 2}, {3, 4}, {5, 6}};
        const std::vector<long> sums{3, 7, 11};
        CHECK(co_await pool.starmap(add, pairs) == sums);
        co_await pool.submit([] {});
        const std::vector<std::size_t> chunks{0, 1, 7, 1000};
        for (std::size_t chunk : chunks) {
            const auto sq = co_await pool.map(square, corun::range(500), {.chunksize = chunk});
            REQUIRE(sq.size() == 500);
            for (long i = 0; i < 500; ++i) REQUIRE(sq[static_cast<std::size_t>(i)] == i * i);
        }
        auto ordered = pool.imap(square, corun::range(300), {.chunksize = 7});
        long expect = 0;
        while (auto v = co_await ordered.next()) {
            REQUIRE(*v == expect * expect);
            ++expect;
        }
        CHECK(expect == 300);
        auto unordered = pool.imap_unordered(rank_after, std::vector<long>{600, 1, 1, 1, 1, 1});
        std::vector<int> seen;
        while (auto v = co_await unordered.next()) seen.push_back(*v);
        CHECK(seen.size() == 6);
    }());
}

TEST_CASE("callback, use_future and deferred tokens work", "[mpi_pool]") {
    std::vector<long> results;
    std::exception_ptr error;
    block_on([&]() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), two_each};
        for (long i = 0; i < 12; ++i)
            pool.submit(square, i, [&](std::exception_ptr e, long r) {
                if (e) error = e;
                results.push_back(r);
            });
        pool.submit(fails, 3L, [&](std::exception_ptr e, long) { error = e; });
        auto op = pool.submit(square, 7L, boost::asio::deferred);
        const long d = co_await std::move(op)(corun::use_awaitable);
        CHECK(d == 49);
        pool.close();
        co_await pool.join();
    }());
    std::sort(results.begin(), results.end());
    REQUIRE(results.size() == 12);
    for (long i = 0; i < 12; ++i) CHECK(results[static_cast<std::size_t>(i)] == i * i);
    CHECK_THROWS_AS(std::rethrow_exception(error), std::invalid_argument);

    boost::asio::io_context loop;
    corun::mpi_pool pool{loop.get_executor(), two_each};
    std::future<long> f = pool.submit(square, 12L, boost::asio::use_future);
    loop.run_for(5s);
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    CHECK(f.get() == 144);
}

TEST_CASE("exceptions come back typed from every rank", "[mpi_pool]") {
    block_on([]() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), two_each};
        // Several of each, so that every rank sends some.
        for (int i = 0; i < 6; ++i) {
            CHECK_THROWS_MATCHES(co_await pool.submit(fails, 3L), std::invalid_argument,
                                 Catch::Message("three is not allowed"));
            try {
                co_await pool.submit(fails, 4L);
                FAIL("no exception");
            } catch (const corun::remote_error& e) {
                CHECK(e.type_name().find("custom_error") != std::string::npos);
                CHECK(e.pid() > 0);
                CHECK(e.pid() != getpid());
            }
            try {
                co_await pool.submit(fails, 5L);
                FAIL("no exception");
            } catch (const parse_error& e) {
                CHECK(e.line == 17);
                CHECK(std::string(e.what()) == "bad line");
            }
        }
        // One failing item among many: its error, whichever rank ran it.
        std::vector<long> items(40, 1);
        items[20] = 3;
        CHECK_THROWS_AS(co_await pool.map(fails, items, {.chunksize = 1}), std::invalid_argument);
        CHECK(co_await pool.submit(square, 5L) == 25);
    }());
}

TEST_CASE("cancelling a task running on another rank kills it there; the pool goes on", "[mpi_pool]") {
    block_on_within(60s, []() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 1}}};
        // Six endless tasks: one on each worker of every rank, and three queued.
        for (int i = 0; i < 6; ++i)
            CHECK_THROWS_AS(co_await corun::with_timeout(300ms, pool.submit([] { spin_forever(); })),
                            corun::timeout_error);
        const auto start = std::chrono::steady_clock::now();
        const auto ranks = co_await pool.map(rank_after, std::vector<long>(30, 10), {.chunksize = 1});
        CHECK(std::set<int>(ranks.begin(), ranks.end()) == std::set<int>{0, 1, 2});
        CHECK(std::chrono::steady_clock::now() - start < 20s);
    }());
}

TEST_CASE("values from empty to tens of MiB cross both ways, in and out of the large-message path",
          "[mpi_pool]") {
    block_on_within(120s, []() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), two_each};
        std::vector<std::string> inputs;
        const std::vector<std::size_t> sizes{0, 1, 65536, std::size_t(3) << 20, (std::size_t(20) << 20) + 13};
        for (std::size_t n : sizes)
            for (int copy = 0; copy < 3; ++copy) {
                std::string s(n, '\0');
                for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + n + copy) % 26);
                inputs.push_back(std::move(s));
            }
        const auto out = co_await pool.map(reversed, inputs, {.chunksize = 1});
        REQUIRE(out.size() == inputs.size());
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            std::string back = out[i];
            std::reverse(back.begin(), back.end());
            REQUIRE(back == inputs[i]);
        }
        const auto big = co_await pool.map(make_string, std::vector<std::size_t>(6, std::size_t(9) << 20),
                                           {.chunksize = 1});
        for (const auto& s : big) REQUIRE(s == std::string(std::size_t(9) << 20, 'r'));
    }());
}

TEST_CASE("max_frame_size holds for tasks and results on every rank", "[mpi_pool]") {
    block_on([]() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(),
                             {.pool = {.workers = 1, .max_frame_size = 1 << 20}}};
        CHECK_THROWS_AS(co_await pool.submit(reversed, std::string(2 << 20, 'x')), corun::value_too_large);
        for (int i = 0; i < 6; ++i)
            CHECK_THROWS_AS(co_await pool.submit(make_string, std::size_t(2) << 20), corun::value_too_large);
        CHECK(co_await pool.submit(make_string, std::size_t(100)) == std::string(100, 'r'));
    }());
}

TEST_CASE("kill -9 of a worker on another rank fails its task with worker_crashed naming the rank",
          "[mpi_pool]") {
    block_on_within(60s, []() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), two_each};
        std::optional<corun::worker_crashed> crash;
        for (int i = 0; i < 60 && !crash; ++i) {
            try {
                const int r = co_await pool.submit(die_on_rank, 1);
                CHECK(r != 1);
            } catch (const corun::worker_crashed& e) {
                crash.emplace(e);
            }
        }
        REQUIRE(crash.has_value());
        CHECK(crash->rank() == 1);
        CHECK(!crash->host().empty());
        CHECK(crash->pid() > 0);
        CHECK(crash->signal() == SIGKILL);
        CHECK(std::string(crash->what()).find("rank 1") != std::string::npos);
        // On rank 0's own host too.
        try {
            for (int i = 0; i < 60; ++i) co_await pool.submit(die_on_rank, 0);
            FAIL("no task reached rank 0");
        } catch (const corun::worker_crashed& e) {
            CHECK(e.rank() == 0);
            CHECK(!e.host().empty());
        }
        // The rest of a map completes even where a worker dies.
        const auto ranks = co_await pool.map(rank_after, std::vector<long>(30, 10), {.chunksize = 1});
        CHECK(std::set<int>(ranks.begin(), ranks.end()) == std::set<int>{0, 1, 2});
    }());
}

void no_start_on_rank_2() {
    if (rank_here() == 2) throw std::runtime_error("this host cannot start workers");
}

TEST_CASE("a host whose workers cannot start leaves the pool; its tasks run elsewhere", "[mpi_pool]") {
    block_on_within(60s, []() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(),
                             {.pool = {.workers = 1, .initializer = no_start_on_rank_2}}};
        const auto ranks = co_await pool.map(rank_after, std::vector<long>(40, 5), {.chunksize = 1});
        CHECK(ranks.size() == 40);
        CHECK(std::set<int>(ranks.begin(), ranks.end()) == std::set<int>{0, 1});
        for (int i = 0; i < 20; ++i) CHECK(co_await pool.submit(rank_after, 1L) != 2);
        for (const auto& h : pool.hosts()) CHECK(h.lost == (h.rank == 2));
        CHECK(pool.workers() == 2);
    }());
}

TEST_CASE("imap over 1 000 000 items keeps rank 0's memory flat", "[mpi_pool]") {
    long count = 0, sum = 0, start = 0, peak = 0;
    block_on_within(120s, [&]() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), two_each};
        reset_peak_rss();
        start = status_kib("VmHWM");
        auto stream =
            pool.imap([](std::int64_t x) { return x & 1; }, corun::range(1'000'000), {.chunksize = 2000});
        while (auto v = co_await stream.next()) {
            sum += *v;
            ++count;
        }
        peak = status_kib("VmHWM");
    }());
    CHECK(count == 1'000'000);
    CHECK(sum == 500'000);
#ifndef __SANITIZE_ADDRESS__  // its quarantine keeps freed memory resident by design
    CHECK(peak - start < 64 * 1024);
#endif
}

TEST_CASE("terminate aborts running tasks on every rank, and join completes", "[mpi_pool]") {
    block_on_within(60s, []() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 1}}};
        std::vector<std::exception_ptr> errors;
        for (int i = 0; i < 6; ++i)
            pool.submit([] { spin_forever(); }, [&](std::exception_ptr e) { errors.push_back(e); });
        co_await sleep_for(300ms);
        pool.terminate();
        co_await pool.join();
        REQUIRE(errors.size() == 6);
        for (auto& e : errors) CHECK_THROWS_AS(std::rethrow_exception(e), boost::system::system_error);
        CHECK_THROWS_AS(co_await pool.submit(square, 2L), corun::pool_closed);
    }());
}

TEST_CASE(
    "an event loop destroyed with tasks pending on every rank takes their coroutine and the pool with it",
    "[mpi_pool]") {
    bool destroyed = false;
    const auto start = std::chrono::steady_clock::now();
    {
        boost::asio::io_context loop;
        struct on_exit {
            bool& flag;
            ~on_exit() { flag = true; }
        };
        boost::asio::co_spawn(
            loop,
            [&]() -> awaitable<void> {
                on_exit mark{destroyed};
                corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 1}}};
                // One task on each rank and more queued, then one awaited.
                for (int i = 0; i < 5; ++i) pool.submit(rank_after, 20'000L, [](std::exception_ptr, int) {});
                co_await pool.submit(rank_after, 20'000L);
            },
            boost::asio::detached);
        loop.run_for(1s);
    }
    CHECK(destroyed);
    CHECK(std::chrono::steady_clock::now() - start < 15s);
    block_on([]() -> awaitable<void> {
        corun::mpi_pool pool{co_await corun::this_executor(), {.pool = {.workers = 1}}};
        const auto ranks = co_await pool.map(rank_after, std::vector<long>(30, 10), {.chunksize = 1});
        CHECK(std::set<int>(ranks.begin(), ranks.end()) == std::set<int>{0, 1, 2});
    }());
}

int main(int argc, char** argv) {
    // Registered before the session: the host agents never get past it.
    corun::register_exception<parse_error>();
    corun::mpi_session mpi(argc, argv, {.heartbeat_interval = 200ms, .heartbeat_timeout = 10s});
    if (mpi.size() != 3) {
        std::fprintf(stderr, "run this suite with 3 ranks (tests/mpi/launch)\n");
        return 1;
    }
    return Catch::Session().run(argc, argv);
}
