#include "corun/process_pool.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "corun/range.hpp"
#include "corun/timeout.hpp"
#include "process_support.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

namespace {

int pid_of(long) {
    return static_cast<int>(getpid());
}

struct custom_error {
    int code;
};

long fails(long x) {
    if (x == 3) throw std::invalid_argument("three is not allowed");
    if (x == 4) throw custom_error{4};
    return x;
}

long sleep_then(long ms) {
    usleep(static_cast<useconds_t>(ms) * 1000);
    return ms;
}

/// The pool replaces a dead worker asynchronously: wait (a little) for it.
awaitable<std::vector<int>> full_crew(corun::process_pool& pool) {
    for (int i = 0; i < 200 && pool.worker_pids().size() < pool.workers(); ++i) co_await sleep_for(5ms);
    co_return pool.worker_pids();
}

struct point {
    double x, y;
};
struct labelled {
    std::string name;
    std::vector<int> values;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(name, values);
    }
};

}  // namespace

TEST_CASE("map returns f of every item in input order, for every chunking", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 3}};
        for (long n : {0L, 1L, 2L, 7L, 100L, 1001L}) {
            for (std::size_t chunk : {0UL, 1UL, 3UL, 64UL}) {
                auto out = co_await pool.map(square, corun::range(n), {.chunksize = chunk});
                REQUIRE(out.size() == static_cast<std::size_t>(n));
                for (long i = 0; i < n; ++i) REQUIRE(out[i] == i * i);
            }
        }
    }());
}

TEST_CASE("map spreads work over distinct worker processes", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        auto pids = co_await pool.map(pid_of, corun::range(4), {.chunksize = 1});
        std::set<int> distinct(pids.begin(), pids.end());
        CHECK_FALSE(distinct.count(getpid()));
        CHECK(distinct.size() <= 2);
        auto workers = pool.worker_pids();
        CHECK(workers.size() == 2);
        for (int p : distinct) CHECK(std::find(workers.begin(), workers.end(), p) != workers.end());
    }());
}

TEST_CASE("submit, starmap, lambdas and serializable values cross the process boundary", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const long nine = co_await pool.submit(square, 9L);
        CHECK(nine == 81);
        const long five = co_await pool.submit(add, 2L, 3L);
        CHECK(five == 5);
        const double scale = 2.5;
        const double scaled =
            co_await pool.submit([scale](point p) { return p.x * scale + p.y; }, point{2, 1});
        CHECK(scaled == 6.0);
        const std::string twice =
            co_await pool.submit([](std::string s) { return s + s; }, std::string("ab"));
        CHECK(twice == "abab");
        labelled l{std::string("n"), {1, 2, 3}};
        const std::string sum = co_await pool.submit(
            [](labelled v) {
                int s = 0;
                for (int x : v.values) s += x;
                return v.name + std::to_string(s);
            },
            l);
        CHECK(sum == "n6");
        std::vector<std::pair<long, long>> pairs{{1, 2}, {3, 4}, {5, 6}};
        const std::vector<long> sums = co_await pool.starmap(add, pairs);
        CHECK(sums == std::vector<long>{3, 7, 11});
        co_await pool.submit([] {});
        const auto nothing = co_await pool.map([](long) {}, corun::range(5));
        CHECK(nothing.size() == 5);
        const auto words =
            co_await pool.map([](long i) { return std::string(static_cast<std::size_t>(i), 'x'); },
                              corun::range(4), {.chunksize = 3});
        CHECK(words == std::vector<std::string>{"", "x", "xx", "xxx"});
    }());
}

TEST_CASE("a callback token gives apply_async, and use_future works", "[process_pool]") {
    std::vector<long> results;
    std::exception_ptr error;
    block_on([&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        for (long i = 0; i < 5; ++i)
            pool.submit(square, i, [&](std::exception_ptr e, long r) {
                if (e) error = e;
                results.push_back(r);
            });
        pool.submit(fails, 3L, [&](std::exception_ptr e, long) { error = e; });
        pool.close();
        co_await pool.join();
    }());
    std::sort(results.begin(), results.end());
    CHECK(results == std::vector<long>{0, 1, 4, 9, 16});
    CHECK_THROWS_AS(std::rethrow_exception(error), std::invalid_argument);

    boost::asio::io_context loop;
    corun::process_pool pool{loop.get_executor(), {.workers = 1}};
    std::future<long> f = pool.submit(square, 12L, boost::asio::use_future);
    loop.run_for(5s);
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    CHECK(f.get() == 144);
}

TEST_CASE("a task's exception comes back: std types as themselves, others as remote_error",
          "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        CHECK_THROWS_MATCHES(co_await pool.submit(fails, 3L), std::invalid_argument,
                             Catch::Message("three is not allowed"));
        try {
            co_await pool.submit(fails, 4L);
            FAIL("no exception");
        } catch (const corun::remote_error& e) {
            CHECK(e.type_name().find("custom_error") != std::string::npos);
            CHECK(e.pid() != getpid());
        }
        CHECK_THROWS_AS(co_await pool.map(fails, corun::range(4)), std::invalid_argument);
        CHECK(co_await pool.submit(square, 5L) == 25);  // the pool is unharmed
    }());
}

TEST_CASE("kill -9 of a worker in the middle of a map fails it with worker_crashed; the pool goes on",
          "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const auto before = pool.worker_pids();
        auto killer = [&]() -> awaitable<void> {
            co_await sleep_for(100ms);
            ::kill(before[0], SIGKILL);
        };
        try {
            co_await corun::gather(pool.map(sleep_then, std::vector<long>(8, 200), {.chunksize = 1}),
                                   killer());
            FAIL("the map survived its worker");
        } catch (const corun::worker_crashed& e) {
            CHECK(e.pid() == before[0]);
            CHECK(e.signal() == SIGKILL);
        }
        auto again = co_await pool.map(square, corun::range(100));
        CHECK(again[99] == 99 * 99);
        const auto after = co_await full_crew(pool);
        CHECK(after.size() == 2);
        CHECK(std::find(after.begin(), after.end(), before[0]) == after.end());
    }());
}

TEST_CASE("abort() and a null-pointer write in a task crash only that task", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        try {
            co_await pool.submit([] { std::abort(); });
            FAIL("abort went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK(e.signal() == SIGABRT);
        }
        try {
            co_await pool.submit(
                [](int v) {
                    volatile int* null = nullptr;
                    *null = v;
                },
                1);
            FAIL("the segfault went unnoticed");
        } catch (const corun::worker_crashed& e) {
#ifdef __SANITIZE_ADDRESS__
            // The sanitizers report the null store and end the worker their own
            // way (UBSan exits with a code): a crash all the same.
            CHECK((e.signal() != 0 || e.exit_code() > 0));
#else
            CHECK(e.signal() == SIGSEGV);
#endif
        }
        try {
            co_await pool.submit([] { _exit(7); });
            FAIL("the exit went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK(e.exit_code() == 7);
        }
        CHECK(co_await pool.submit(square, 6L) == 36);
    }());
}

TEST_CASE("an endless task cancelled by with_timeout kills its worker, which is replaced", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        const int before = pool.worker_pids().at(0);
        CHECK_THROWS_AS(co_await corun::with_timeout(100ms, pool.submit(spin_forever)), corun::timeout_error);
        CHECK(co_await pool.submit(square, 7L) == 49);
        CHECK(pool.worker_pids().at(0) != before);
        CHECK_FALSE(alive(before));
    }());
}

TEST_CASE("a task is cancelled through || with a timer", "[process_pool]") {
    using namespace boost::asio::experimental::awaitable_operators;
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        auto r = co_await (pool.submit(sleep_then, 5000L) || sleep_for(50ms));
        CHECK(r.index() == 1);
        CHECK(co_await pool.submit(square, 2L) == 4);
    }());
}

TEST_CASE("max_tasks_per_child replaces workers after that many tasks", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1, .max_tasks_per_child = 2}};
        std::vector<int> pids;
        for (int i = 0; i < 6; ++i) pids.push_back(co_await pool.submit(pid_of, 0L));
        CHECK(pids[0] == pids[1]);
        CHECK(pids[2] == pids[3]);
        CHECK(pids[4] == pids[5]);
        CHECK(std::set<int>(pids.begin(), pids.end()).size() == 3);
    }());
}

TEST_CASE("the initializer runs once in each worker", "[process_pool]") {
    static int initialised = 0;
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(),
                                 {.workers = 2, .initializer = [] { initialised += 1; }}};
        auto counts = co_await pool.map([](long) { return initialised; }, corun::range(20), {.chunksize = 1});
        for (int c : counts) CHECK(c == 1);
        CHECK(initialised == 0);  // never in the parent
    }());
}

TEST_CASE("memory_limit turns an oversized allocation into std::bad_alloc", "[process_pool]") {
#ifdef __SANITIZE_ADDRESS__
    WARN("not under AddressSanitizer: its shadow memory needs more address space than any RLIMIT_AS allows");
    return;
#endif
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(),
                                 {.workers = 1, .memory_limit = std::size_t(512) << 20}};
        CHECK_THROWS_AS(co_await pool.submit(allocate_and_touch, std::size_t(1) << 30), std::bad_alloc);
        CHECK(co_await pool.submit(allocate_and_touch, std::size_t(1) << 20) == std::size_t(1) << 20);
    }());
}

TEST_CASE("a truncated frame from a worker is a clear error, and the parent lives", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        try {
            // Half a frame header on the worker's channel, then gone.
            co_await pool.submit([] {
                const char partial[5] = {8, 0, 0, 0, 2};
                (void)!::write(worker_channel(), partial, sizeof partial);
                _exit(0);
            });
            FAIL("the truncated frame went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK_THAT(e.what(), Catch::Contains("truncated frame"));
        }
        // A whole header announcing more than max_frame_size, the worker then
        // waiting for ever: the parent must not wait for the bytes.
        try {
            co_await pool.submit([] {
                const std::uint64_t header[3] = {std::uint64_t(1) << 40, 2, 1};
                (void)!::write(worker_channel(), header, sizeof header);
                pause();
            });
            FAIL("the oversized frame went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK_THAT(e.what(), Catch::Contains("oversized frame"));
        }
        CHECK(co_await pool.submit(square, 8L) == 64);
    }());
}

TEST_CASE("no zombie and no worker is left after the pool is destroyed", "[process_pool]") {
    std::vector<int> pids;
    block_on([&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 3}};
        pids = pool.worker_pids();
        co_await pool.map(square, corun::range(10));
        ::kill(pids[1], SIGKILL);  // one dies unreaped by anyone but the pool
        co_await sleep_for(50ms);
    }());
    REQUIRE(pids.size() == 3);
    for (int p : pids) CHECK_FALSE(alive(p));
    CHECK(children_of_this_process(true).empty());
}

TEST_CASE("workers die within a second when the parent is killed with -9", "[process_pool]") {
    int report[2];
    REQUIRE(::pipe(report) == 0);
    std::fflush(nullptr);
    const pid_t parent = ::fork();
    REQUIRE(parent >= 0);
    if (parent == 0) {
        boost::asio::io_context loop;
        corun::process_pool pool{loop.get_executor(), {.workers = 3}};
        for (int p : pool.worker_pids()) (void)!::write(report[1], &p, sizeof p);
        ::close(report[1]);
        for (;;) pause();
    }
    ::close(report[1]);
    std::vector<int> workers(3);
    std::size_t got = 0;  // the pids come in three writes: read until all are in
    for (ssize_t n = 1; got < sizeof(int) * 3 && n > 0;
         got += static_cast<std::size_t>(std::max<ssize_t>(n, 0)))
        n = ::read(report[0], reinterpret_cast<char*>(workers.data()) + got, sizeof(int) * 3 - got);
    ::close(report[0]);
    if (got != sizeof(int) * 3) {
        ::kill(parent, SIGKILL);  // never leave the stand-in parent behind
        ::waitpid(parent, nullptr, 0);
        FAIL("the stand-in parent reported " << got << " bytes of worker pids");
    }
    for (int p : workers) REQUIRE(alive(p));
    ::kill(parent, SIGKILL);
    ::waitpid(parent, nullptr, 0);
    const auto deadline = std::chrono::steady_clock::now() + 1s;
    bool any_alive = true;
    while (any_alive && std::chrono::steady_clock::now() < deadline) {
        any_alive = false;
        for (int p : workers) any_alive |= alive(p);
        if (any_alive) usleep(10'000);
    }
    CHECK_FALSE(any_alive);
}

TEST_CASE("8 workers printing 10 000 lines each: every line arrives whole", "[process_pool]") {
    char path[] = "/tmp/corun-lines-XXXXXX";
    const int file = ::mkstemp(path);
    REQUIRE(file >= 0);
    std::fflush(stdout);
    const int saved = ::dup(1);
    ::dup2(file, 1);
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 8, .prefix_output = true}};
        co_await pool.map(
            [](long w) {
                for (int i = 0; i < 10'000; ++i)
                    std::printf("line %ld-%d %s\n", w, i, "the quick brown fox jumps over the lazy dog");
                return 0;
            },
            corun::range(8), {.chunksize = 1});
    }());
    std::fflush(stdout);
    ::dup2(saved, 1);
    ::close(saved);
    std::ifstream in(path);
    std::map<long, int> per_source;
    std::string line;
    int bad = 0, total = 0;
    while (std::getline(in, line)) {
        ++total;
        long w;
        int i;
        char rest[64];
        int worker;
        if (std::sscanf(line.c_str(), "[worker %d] line %ld-%d %63[^\n]", &worker, &w, &i, rest) != 4 ||
            std::string(rest) != "the quick brown fox jumps over the lazy dog")
            ++bad;
        else
            ++per_source[w];
    }
    ::close(file);
    ::unlink(path);
    CHECK(bad == 0);
    CHECK(total == 80'000);
    for (long w = 0; w < 8; ++w) CHECK(per_source[w] == 10'000);
}

TEST_CASE("imap streams in order, imap_unordered as they come, both with flat memory", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        auto ordered = pool.imap(square, corun::range(1000), {.chunksize = 7});
        long expect = 0;
        while (auto v = co_await ordered.next()) {
            REQUIRE(*v == expect * expect);
            ++expect;
        }
        CHECK(expect == 1000);

        // A fresh pool: nothing is sent ahead to a worker until its tasks prove short.
        corun::process_pool fresh{co_await corun::this_executor(), {.workers = 2}};
        auto unordered = fresh.imap_unordered(sleep_then, std::vector<long>{300, 1, 1, 1});
        std::vector<long> seen;
        while (auto v = co_await unordered.next()) seen.push_back(*v);
        CHECK(seen.size() == 4);
        CHECK(seen.back() == 300);

        auto failing = pool.imap(fails, corun::range(10));
        for (long i = 0; i < 3; ++i) {
            const std::optional<long> v = co_await failing.next();
            CHECK(v == i);
        }
        CHECK_THROWS_AS(co_await failing.next(), std::invalid_argument);
        co_await failing.close();
    }());
}

TEST_CASE("imap over 10 000 000 items keeps the parent's memory flat", "[process_pool]") {
    long count = 0, sum_check = 0;
    long start = 0, peak = 0;
    block_on_within(120s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        reset_peak_rss();
        start = status_kib("VmHWM");
        auto stream =
            pool.imap([](std::int64_t x) { return x & 1; }, corun::range(10'000'000), {.chunksize = 20'000});
        while (auto v = co_await stream.next()) {
            sum_check += *v;
            ++count;
        }
        peak = status_kib("VmHWM");
    }());
    CHECK(count == 10'000'000);
    CHECK(sum_check == 5'000'000);
#ifndef __SANITIZE_ADDRESS__  // its quarantine keeps 256 MiB of freed memory resident by design
    CHECK(peak - start < 64 * 1024);
#endif
}

TEST_CASE("the fork server killed with -9: tasks fail, and close + join still completes", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const long nine = co_await pool.submit(square, 3L);
        CHECK(nine == 9);
        auto kids = children_of_this_process();
        REQUIRE(kids.size() == 1);  // the fork server; the workers are its children
        ::kill(kids[0], SIGKILL);
        co_await sleep_for(200ms);
        CHECK_THROWS_AS(co_await pool.submit(square, 4L), corun::pool_closed);
        pool.close();
        co_await pool.join();
    }());
}

TEST_CASE("the fork server dying after its workers, before reporting them, still lets join complete",
          "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const long nine = co_await pool.submit(square, 3L);
        CHECK(nine == 9);
        auto kids = children_of_this_process();
        REQUIRE(kids.size() == 1);
        // Stopped, the server cannot report the workers' deaths: the pool sees
        // only their channels close, then the server itself die.
        ::kill(kids[0], SIGSTOP);
        const auto workers = children_of(kids[0]);
        REQUIRE(workers.size() == 2);
        for (int pid : workers) ::kill(pid, SIGKILL);
        co_await sleep_for(200ms);
        ::kill(kids[0], SIGKILL);
        pool.close();
        co_await pool.join();
        CHECK(children_of_this_process().empty());
    }());
}

TEST_CASE("a task that breaks its channel and runs on is killed, its task failed", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        try {
            co_await pool.submit([] {
                const char partial[5] = {8, 0, 0, 0, 2};
                const int channel = worker_channel();
                (void)!::write(channel, partial, sizeof partial);
                ::close(channel);
                for (;;) pause();
            });
            FAIL("the broken channel went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK_THAT(e.what(), Catch::Contains("truncated"));
        }
    }());
}

TEST_CASE("replacing workers leaks no descriptor", "[process_pool]") {
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1, .max_tasks_per_child = 1}};
        co_await pool.submit(square, 1L);
        co_await sleep_for(50ms);
        const int before = open_fds();
        for (long i = 0; i < 100; ++i) co_await pool.submit(square, i);
        co_await sleep_for(100ms);  // the last replaced worker's output pipes close
        const int after = open_fds();
        INFO("descriptors before " << before << ", after 100 replacements " << after);
        CHECK(after - before < 8);
    }());
}

TEST_CASE("an initializer that throws closes the pool instead of respawning forever", "[process_pool]") {
    char path[] = "/tmp/corun-init-XXXXXX";
    const int counter = ::mkstemp(path);
    REQUIRE(counter >= 0);
    static const char* counter_path = path;
    block_on([]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2, .initializer = [] {
                                                                       const int f = ::open(
                                                                           counter_path, O_WRONLY | O_APPEND);
                                                                       (void)!::write(f, "x", 1);
                                                                       ::close(f);
                                                                       throw std::runtime_error("no");
                                                                   }}};
        // Queued when the first worker gave up, the task fails with its crash;
        // submitted after, it finds the pool closed. Either way, it says why.
        try {
            co_await pool.submit(square, 2L);
            FAIL("a task ran without its initializer");
        } catch (const corun::worker_crashed& e) {
            CHECK_THAT(e.what(), Catch::Contains("initializer"));
        } catch (const corun::pool_closed& e) {
            CHECK_THAT(e.reason(), Catch::Contains("initializer"));
        }
        co_await sleep_for(300ms);
        CHECK_THROWS_AS(co_await pool.submit(square, 2L), corun::pool_closed);
    }());
    std::ifstream in(path);
    std::string marks;
    std::getline(in, marks);
    ::close(counter);
    ::unlink(path);
    CHECK(marks.size() <= 3);  // the first two workers, at most one replacement
}

TEST_CASE("terminate aborts queued and running tasks, and join completes", "[process_pool]") {
    int aborted = 0;
    block_on([&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        for (int i = 0; i < 5; ++i)
            pool.submit(sleep_then, 2000L, [&](std::exception_ptr e, long) {
                if (e) ++aborted;
            });
        co_await sleep_for(100ms);
        pool.terminate();
        co_await pool.join();
        co_await sleep_for(10ms);
    }());
    CHECK(aborted == 5);
}

TEST_CASE("the pool reaps every worker itself, leaving nothing to init", "[process_pool]") {
    // As a subreaper, orphans would come to this process: there must be none.
    REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int rounds_with_orphans = 0;
    for (int round = 0; round < 10; ++round) {
        block_on([]() -> awaitable<void> {
            corun::process_pool pool{co_await corun::this_executor(), {.workers = 3}};
            co_await pool.map(square, corun::range(30));
        }());
        if (!children_of_this_process().empty()) ++rounds_with_orphans;
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
    }
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    CHECK(rounds_with_orphans == 0);
}
