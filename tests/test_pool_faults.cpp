// The process pool under the faults real programs hit, each injected for real:
// kill -9, SIGSTOP, `system("… &")`, stalled and closed stdout pipes, SIGCHLD
// ignored, descriptors and processes run out, junk on a worker's channel.
#include "corun/process_pool.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <any>
#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <ios>
#include <optional>
#include <regex>
#include <string>
#include <system_error>
#include <thread>
#include <variant>
#include <vector>

#include "corun/gather.hpp"
#include "corun/range.hpp"
#include "corun/remote_exception.hpp"
#include "corun/timeout.hpp"
#include "process_support.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
using clock_type = std::chrono::steady_clock;

namespace {

long sleep_then(long ms) {
    usleep(static_cast<useconds_t>(ms) * 1000);
    return ms;
}

/// A name no other process has: what a test gives the processes a task
/// starts, to look for them afterwards.
std::string unique_token() {
    static int n = 0;
    return "crn" + std::to_string(getpid() % 100000) + "x" + std::to_string(++n);
}

/// `sleep` with a unique duration: its command line is its token.
std::string unique_sleep() {
    static int n = 0;
    return "sleep 30." + std::to_string(getpid() % 100000) + std::to_string(++n);
}

/// The seconds argument of a unique_sleep, to find it with processes_with.
std::string sleep_token(const std::string& sleep) {
    return sleep.substr(6);
}

/// Forks a child that names itself `token` and waits for ever; returns its pid.
pid_t fork_named(const char* token, bool new_session) {
    const pid_t pid = fork();
    if (pid == 0) {
        if (new_session) setsid();
        prctl(PR_SET_NAME, token);
        for (;;) pause();
    }
    return pid;
}

std::size_t process_count_with(const std::string& token) {
    return processes_with(token).size();
}

/// How long `f()` took.
template <class F>
clock_type::duration timed(F f) {
    const auto start = clock_type::now();
    f();
    return clock_type::now() - start;
}

/// Points this process's stdout at `fd` for its lifetime.
class stdout_redirect {
public:
    explicit stdout_redirect(int fd) : m_saved(::dup(1)) {
        std::fflush(stdout);
        ::dup2(fd, 1);
    }
    ~stdout_redirect() {
        std::fflush(stdout);
        ::dup2(m_saved, 1);
        ::close(m_saved);
    }

private:
    int m_saved;
};

/// Restores a signal's disposition on scope exit.
class signal_guard {
public:
    explicit signal_guard(int sig) : m_sig(sig) { ::sigaction(sig, nullptr, &m_old); }
    ~signal_guard() { ::sigaction(m_sig, &m_old, nullptr); }

private:
    int m_sig;
    struct sigaction m_old {};
};

/// Restores a resource limit on scope exit.
class limit_guard {
public:
    explicit limit_guard(int resource) : m_resource(resource) { ::getrlimit(resource, &m_old); }
    ~limit_guard() { ::setrlimit(m_resource, &m_old); }
    void set_soft(rlim_t soft) {
        rlimit l = m_old;
        l.rlim_cur = soft;
        ::setrlimit(m_resource, &l);
    }

private:
    int m_resource;
    rlimit m_old{};
};

/// The fork server: this process's only child while a pool lives.
pid_t fork_server_of_this_process() {
    auto kids = children_of_this_process();
    REQUIRE(kids.size() == 1);
    return kids[0];
}

void expect_nothing_left() {
    CHECK(eventually([] { return children_of_this_process().empty(); }));
}

}  // namespace

// ---- 2. cancelling a task sent ahead ------------------------------------------

TEST_CASE("a task sent ahead to a busy worker and cancelled never runs, and costs no worker",
          "[pool_faults]") {
    const std::string marker = "/tmp/corun-never-" + unique_token();
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        for (int i = 0; i < 5; ++i) co_await pool.submit(square, 2L);  // short tasks: later ones go ahead
        const int pid = pool.worker_pids().at(0);
        auto busy = pool.submit(sleep_then, 400L);
        auto touch = pool.submit(
            [](std::string path) {
                std::FILE* f = std::fopen(path.c_str(), "w");
                if (f) std::fclose(f);
            },
            marker);
        auto endless = pool.submit([] {
            for (;;) pause();
        });
        auto [a, b, c] =
            co_await corun::gather_settled(std::move(busy), corun::with_timeout(50ms, std::move(touch)),
                                           corun::with_timeout(60ms, std::move(endless)));
        CHECK(a.value() == 400);
        CHECK_THROWS_AS(b.value(), corun::timeout_error);
        CHECK_THROWS_AS(c.value(), corun::timeout_error);
        CHECK(pool.worker_pids() == std::vector<int>{pid});  // nobody was killed
        const long nine = co_await pool.submit(square, 3L);  // the endless one never started
        CHECK(nine == 9);
        co_await sleep_for(100ms);
    }());
    CHECK_FALSE(std::filesystem::exists(marker));
    std::filesystem::remove(marker);
}

TEST_CASE("cancelling a task that has finished, its answer not read yet, kills nothing", "[pool_faults]") {
    std::string first = "pending", second = "pending";
    int pid_before = 0, pid_after = 0;
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        for (int i = 0; i < 5; ++i) co_await pool.submit(square, 2L);
        pid_before = pool.worker_pids().at(0);
        boost::asio::cancellation_signal cancel_first;
        auto outcome = [](std::string& into) {
            return [&into](std::exception_ptr e, long) {
                try {
                    if (e) std::rethrow_exception(e);
                    into = "value";
                } catch (const boost::system::system_error& x) {
                    into = x.code() == boost::asio::error::operation_aborted ? "cancelled" : x.what();
                } catch (const std::exception& x) {
                    into = x.what();
                }
            };
        };
        pool.submit(square, 3L, boost::asio::bind_cancellation_slot(cancel_first.slot(), outcome(first)));
        pool.submit(sleep_then, 300L, outcome(second));  // sent ahead to the same worker, at once
        // The loop looks away while the first finishes and the second starts:
        // the first one's answer waits, unread.
        usleep(50'000);
        cancel_first.emit(boost::asio::cancellation_type::terminal);
        co_await sleep_for(500ms);
        pid_after = pool.worker_pids().at(0);
    }());
    CHECK(first == "cancelled");
    CHECK(second == "value");
    CHECK(pid_after == pid_before);
}

// ---- 9. a crash fails only the task that was running --------------------------

TEST_CASE("kill -9 of a worker fails exactly the task it was running; those sent ahead run elsewhere",
          "[pool_faults]") {
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        for (int i = 0; i < 5; ++i) co_await pool.submit(square, 2L);
        const int pid = pool.worker_pids().at(0);
        std::vector<awaitable<long>> tasks;
        for (int i = 0; i < 12; ++i) tasks.push_back(pool.submit(sleep_then, 100L));
        auto killer = [pid]() -> awaitable<long> {
            co_await sleep_for(50ms);
            ::kill(pid, SIGKILL);
            co_return 0;
        };
        tasks.push_back(killer());
        auto outcomes = co_await corun::gather_settled(std::move(tasks));
        int crashed = 0, done = 0;
        for (std::size_t i = 0; i + 1 < outcomes.size(); ++i) {
            try {
                if (outcomes[i].value() == 100) ++done;
            } catch (const corun::worker_crashed& e) {
                ++crashed;
                CHECK(e.pid() == pid);
            }
        }
        CHECK(crashed == 1);
        CHECK(done == 11);
    }());
}

TEST_CASE("a task that crashes, or is cancelled while running, loses nothing of the tasks before it",
          "[pool_faults]") {
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        for (int i = 0; i < 5; ++i) co_await pool.submit(square, 2L);
        // All three go to the worker at once; the third never ends.
        auto [a, b, c] = co_await corun::gather_settled(pool.submit(square, 3L), pool.submit(square, 4L),
                                                        corun::with_timeout(200ms, pool.submit([] {
                                                            for (;;) pause();
                                                        })));
        CHECK(a.value() == 9);
        CHECK(b.value() == 16);
        CHECK_THROWS_AS(c.value(), corun::timeout_error);
        auto [d, e, f] = co_await corun::gather_settled(pool.submit(square, 5L), pool.submit(square, 6L),
                                                        pool.submit([] { std::abort(); }));
        CHECK(d.value() == 25);
        CHECK(e.value() == 36);
        CHECK_THROWS_AS(f.value(), corun::worker_crashed);
    }());
}

// ---- 3. a worker's death, whatever its descendants hold ----------------------

TEST_CASE("a worker that crashes after system(\"… &\") fails its task at once; the helper dies with it",
          "[pool_faults]") {
    const std::string sleep = unique_sleep();
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        try {
            co_await pool.submit(
                [](std::string cmd) {
                    (void)!std::system((cmd + " &").c_str());
                    std::abort();
                },
                sleep);
            FAIL("the crash went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK(e.signal() == SIGABRT);
        }
        CHECK(eventually([&] { return process_count_with(sleep_token(sleep)) == 0; }, 3s));
        const long four = co_await pool.submit(square, 2L);
        CHECK(four == 4);
    }());
    expect_nothing_left();
}

TEST_CASE("a task that forks and exits: the child holds the channel, the exit is seen, the child is killed",
          "[pool_faults]") {
    const std::string token = unique_token();
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        try {
            co_await pool.submit(
                [](std::string name) {
                    fork_named(name.c_str(), false);
                    _exit(3);
                },
                token);
            FAIL("the exit went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK(e.exit_code() == 3);
        }
        CHECK(eventually([&] { return process_count_with(token) == 0; }, 3s));
    }());
    expect_nothing_left();
}

TEST_CASE("what a task starts dies with its worker: retired by max_tasks_per_child, or escaped with setsid",
          "[pool_faults]") {
    const std::string sleep = unique_sleep();
    const std::string escaped = unique_token();
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1, .max_tasks_per_child = 1}};
        co_await pool.submit([](std::string cmd) { (void)!std::system((cmd + " &").c_str()); }, sleep);
        for (long i = 0; i < 3; ++i) {
            const long sq = co_await pool.submit(square, i);
            CHECK(sq == i * i);
        }
        CHECK(eventually([&] { return process_count_with(sleep_token(sleep)) == 0; }, 3s));

        // A grandchild in a session of its own, orphaned at once: not in the
        // worker's group, it is killed when it is adopted by the fork server.
        co_await pool.submit(
            [](std::string name) {
                if (fork() == 0) {
                    fork_named(name.c_str(), true);
                    _exit(0);
                }
                wait(nullptr);
            },
            escaped);
        co_await pool.submit(square, 1L);
        CHECK(eventually([&] { return process_count_with(escaped) == 0; }, 3s));
    }());
    expect_nothing_left();
}

TEST_CASE("a worker's exit kills what its tasks started, and nothing a live worker's tasks started",
          "[pool_faults]") {
    const std::string helper = unique_sleep();
    const std::string child = unique_token(), grandchild = unique_token();
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const int keeper = co_await pool.submit(
            [](std::string cmd) {
                (void)!std::system((cmd + " &").c_str());
                return static_cast<int>(getpid());
            },
            helper);
        REQUIRE(eventually([&] { return process_count_with(sleep_token(helper)) == 1; }));
        for (int pid : pool.worker_pids())
            if (pid != keeper) ::kill(pid, SIGKILL);  // another worker dies
        co_await sleep_for(300ms);
        CHECK(process_count_with(sleep_token(helper)) == 1);  // its worker lives: so does it

        // A helper in a session of its own with a child of its own, then a crash:
        // both die with the worker, the child adopted only once the helper is gone.
        try {
            co_await pool.submit(
                [](std::string names) {
                    const std::string a = names.substr(0, names.find(' ')),
                                      b = names.substr(names.find(' ') + 1);
                    if (fork() == 0) {
                        setsid();
                        fork_named(b.c_str(), false);
                        prctl(PR_SET_NAME, a.c_str());
                        for (;;) pause();
                    }
                    usleep(100'000);
                    std::abort();
                },
                child + " " + grandchild);
            FAIL("the crash went unnoticed");
        } catch (const corun::worker_crashed&) {
        }
        CHECK(
            eventually([&] { return process_count_with(child) + process_count_with(grandchild) == 0; }, 3s));
        ::kill(keeper, SIGKILL);
        CHECK(eventually([&] { return process_count_with(sleep_token(helper)) == 0; }, 3s));
    }());
    expect_nothing_left();
}

TEST_CASE("a task writing to a descriptor the application opened (a log file) harms no task",
          "[pool_faults]") {
    char path[] = "/tmp/corun-log-XXXXXX";
    const int log_fd = ::mkstemp(path);
    REQUIRE(log_fd >= 0);
    static int logged_to;
    logged_to = log_fd;
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        std::vector<awaitable<long>> tasks;
        for (long k = 0; k < 40; ++k)
            tasks.push_back(pool.submit(
                [](long i) {
                    if (i == 5) (void)!::write(logged_to, "something worth logging\n", 24);
                    return i;
                },
                k));
        auto results = co_await corun::gather(std::move(tasks));
        CHECK(results.size() == 40);
        CHECK(results[39] == 39);
    }());
    ::close(log_fd);
    ::unlink(path);
}

// ---- 4. the output relay -------------------------------------------------------

TEST_CASE("a stdout nobody reads blocks neither the event loop nor destruction, and memory stays bounded",
          "[pool_faults]") {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    long rss_growth_kib = 0;
    clock_type::duration longest_tick{};
    const auto took = timed([&] {
        stdout_redirect redirect(p[1]);
        block_on_within(30s, [&]() -> awaitable<void> {
            corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
            const long start_rss = status_kib("VmRSS");
            auto printing = pool.map(
                [](long) {
                    const std::string line(1023, 'x');
                    for (int i = 0; i < 64 * 1024; ++i) std::printf("%s\n", line.c_str());  // 64 MiB
                    return 0;
                },
                corun::range(2), {.chunksize = 1});
            auto ticker = [&]() -> awaitable<int> {
                for (int i = 0; i < 50; ++i) {
                    const auto before = clock_type::now();
                    co_await sleep_for(10ms);
                    longest_tick = std::max(longest_tick, clock_type::now() - before);
                }
                co_return 0;
            };
            auto [printed, ticked] =
                co_await corun::gather_settled(corun::with_timeout(1500ms, std::move(printing)), ticker());
            CHECK_THROWS_AS(printed.value(), corun::timeout_error);
            CHECK(ticked.value() == 0);
            rss_growth_kib = status_kib("VmRSS") - start_rss;
            const long sq = co_await pool.submit(square, 5L);  // the killed workers were replaced
            CHECK(sq == 25);
        }());
    });
    ::close(p[0]);
    ::close(p[1]);
    CHECK(longest_tick < 1s);           // the loop never stalled
    CHECK(rss_growth_kib < 32 * 1024);  // the relay's backlog is bounded
    CHECK(took < 15s);                  // destruction did not wait for the reader
    expect_nothing_left();
}

TEST_CASE(
    "close and join with a slow reader: every line is written before join returns, the loop runs meanwhile",
    "[pool_faults]") {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    std::atomic<long> lines_read{0}, bytes_read{0};
    std::thread reader([&] {  // a slow but live reader, as `| slow_consumer`
        char buf[4096];
        for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) {
            lines_read += std::count(buf, buf + n, '\n');
            bytes_read += n;
            usleep(500);
        }
    });
    long accounted_at_join = 0;  // read, or waiting in the pipe, when join returned
    clock_type::duration longest_tick{};
    {
        stdout_redirect redirect(p[1]);
        ::close(p[1]);
        block_on_within(60s, [&]() -> awaitable<void> {
            corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
            bool stop = false;
            auto ticker = [&]() -> awaitable<void> {
                while (!stop) {
                    const auto before = clock_type::now();
                    co_await sleep_for(5ms);
                    longest_tick = std::max(longest_tick, clock_type::now() - before);
                }
            };
            auto work = [&]() -> awaitable<void> {
                co_await pool.map(
                    [](long k) {
                        for (int i = 0; i < 5000; ++i)
                            std::printf("task %ld line %04d %s\n", k, i, std::string(80, 'x').c_str());
                        return k;
                    },
                    corun::range(4), {.chunksize = 1});
                pool.close();
                co_await pool.join();
                int in_pipe = 0;
                ::ioctl(p[0], FIONREAD, &in_pipe);
                accounted_at_join = bytes_read + in_pipe + 4096;  // and what the reader holds
                stop = true;
            };
            co_await corun::gather(ticker(), work());
        }());
    }
    reader.join();
    ::close(p[0]);
    CHECK(lines_read == 20'000);
    // Written, that is: read, or in the pipe, when join returned.
    CHECK(accounted_at_join >= bytes_read);
    CHECK(longest_tick < 500ms);
}

TEST_CASE("a closed stdout (prog | head -1) raises no SIGPIPE in the parent", "[pool_faults]") {
    signal_guard keep(SIGPIPE);
    ::signal(SIGPIPE, SIG_DFL);  // as in a program that never touched it
    int p[2];
    REQUIRE(::pipe(p) == 0);
    ::close(p[0]);
    {
        stdout_redirect redirect(p[1]);
        block_on_within(20s, []() -> awaitable<void> {
            corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
            for (int round = 0; round < 3; ++round) {
                auto lines = co_await pool.map(
                    [](long i) {
                        for (int k = 0; k < 1000; ++k) std::printf("line %ld %d\n", i, k);
                        return i;
                    },
                    corun::range(4), {.chunksize = 1});
                CHECK(lines.size() == 4);
            }
        }());
    }
    ::close(p[1]);
    sigset_t pending;
    sigpending(&pending);
    CHECK_FALSE(sigismember(&pending, SIGPIPE));
}

TEST_CASE("a 32 MiB line without a newline arrives whole, in linear time, the loop running meanwhile",
          "[pool_faults]") {
    char path[] = "/tmp/corun-long-line-XXXXXX";
    const int file = ::mkstemp(path);
    REQUIRE(file >= 0);
    clock_type::duration longest_tick{};
    {
        stdout_redirect redirect(file);
        block_on_within(30s, [&]() -> awaitable<void> {
            corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
            auto print = pool.submit([] {
                const std::string chunk(1 << 20, 'y');
                for (int i = 0; i < 32; ++i) std::fwrite(chunk.data(), 1, chunk.size(), stdout);
                std::fputc('\n', stdout);
                std::fflush(stdout);
            });
            auto ticker = [&]() -> awaitable<void> {
                for (int i = 0; i < 20; ++i) {
                    const auto before = clock_type::now();
                    co_await sleep_for(10ms);
                    longest_tick = std::max(longest_tick, clock_type::now() - before);
                }
            };
            co_await corun::gather(std::move(print), ticker());
        }());
    }
    struct stat st {};
    ::fstat(file, &st);
    CHECK(st.st_size == (32 << 20) + 1);
    std::string tail(2, '\0');
    CHECK(::pread(file, tail.data(), 2, st.st_size - 2) == 2);
    CHECK(tail == "y\n");
    ::close(file);
    ::unlink(path);
    CHECK(longest_tick < 1s);
}

// ---- 5. SIGCHLD as the application sets it ------------------------------------

TEST_CASE(
    "with SIGCHLD ignored, or reaped by the application's own handler, crashes are seen and nothing hangs",
    "[pool_faults]") {
    signal_guard keep(SIGCHLD);
    auto crash_and_recover = [] {
        const auto took = timed([] {
            block_on_within(20s, []() -> awaitable<void> {
                corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
                try {
                    co_await pool.submit([] { std::raise(SIGKILL); });
                    FAIL("the crash went unnoticed");
                } catch (const corun::worker_crashed& e) {
                    CHECK(e.signal() == SIGKILL);
                }
                const long nine = co_await pool.submit(square, 3L);
                CHECK(nine == 9);
                pool.close();
                co_await pool.join();
            }());
        });
        CHECK(took < 10s);
        expect_nothing_left();
    };
    SECTION("ignored") {
        ::signal(SIGCHLD, SIG_IGN);
        crash_and_recover();
    }
    SECTION("a handler that reaps every child") {
        struct sigaction sa {};
        sa.sa_handler = [](int) {
            const int saved = errno;
            while (::waitpid(-1, nullptr, WNOHANG) > 0) {
            }
            errno = saved;
        };
        sa.sa_flags = SA_RESTART;
        ::sigaction(SIGCHLD, &sa, nullptr);
        crash_and_recover();
    }
}

// ---- 6. destruction is bounded ------------------------------------------------

TEST_CASE("destruction is bounded: a stopped worker, a stopped fork server, a stuck initializer",
          "[pool_faults]") {
    auto destroy_after = [](corun::process_pool_options options, auto&& fault) {
        clock_type::duration took{};
        block_on_within(20s, [&]() -> awaitable<void> {
            auto pool =
                std::make_unique<corun::process_pool>(co_await corun::this_executor(), std::move(options));
            co_await fault(*pool);
            took = timed([&] { pool.reset(); });
        }());
        CHECK(took < 5s);
        expect_nothing_left();
    };
    SECTION("an idle worker stopped with SIGSTOP") {
        destroy_after({.workers = 2}, [](corun::process_pool& pool) -> awaitable<void> {
            const long four = co_await pool.submit(square, 2L);
            CHECK(four == 4);
            ::kill(pool.worker_pids().at(0), SIGSTOP);
        });
    }
    SECTION("the fork server stopped with SIGSTOP") {
        destroy_after({.workers = 2}, [](corun::process_pool& pool) -> awaitable<void> {
            const long four = co_await pool.submit(square, 2L);
            CHECK(four == 4);
            ::kill(fork_server_of_this_process(), SIGSTOP);
            co_return;
        });
    }
    SECTION("an initializer that never returns") {
        destroy_after({.workers = 2, .initializer = [] { pause(); }},
                      [](corun::process_pool&) -> awaitable<void> { co_await sleep_for(50ms); });
    }
}

TEST_CASE("destruction is bounded while an escaped grandchild prints for ever on a worker's stdout",
          "[pool_faults]") {
    char path[] = "/tmp/corun-printer-XXXXXX";
    const int file = ::mkstemp(path);
    REQUIRE(file >= 0);
    const std::string token = unique_token();
    clock_type::duration took{};
    {
        stdout_redirect redirect(file);
        block_on_within(20s, [&]() -> awaitable<void> {
            auto pool = std::make_unique<corun::process_pool>(co_await corun::this_executor(),
                                                              corun::process_pool_options{.workers = 1});
            co_await pool->submit(
                [](std::string name) {
                    if (fork() == 0) {
                        setsid();
                        prctl(PR_SET_NAME, name.c_str());
                        for (;;) std::printf("still printing\n");
                    }
                },
                token);
            co_await sleep_for(50ms);
            took = timed([&] { pool.reset(); });
        }());
    }
    ::close(file);
    ::unlink(path);
    CHECK(took < 5s);
    CHECK(eventually([&] { return process_count_with(token) == 0; }, 3s));
    expect_nothing_left();
}

namespace {

/// The descriptors a program started with system("… &") now holds.
std::size_t inherited_fds(const std::string& sleep) {
    (void)!std::system((sleep + " &").c_str());
    // The sleep itself, once it has exec'd: not the shell, nor the shell's
    // fork on its way to exec (whose command line may read as empty meanwhile).
    int started = -1;
    REQUIRE(eventually([&] {
        for (const int pid : processes_with(sleep_token(sleep))) {
            std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
            std::string argv0;
            std::getline(in, argv0, '\0');
            if (argv0 == "sleep") started = pid;
        }
        return started != -1;
    }));
    // The fewest of a few looks: just after exec, the dynamic loader holds a
    // library open for a moment (long enough to be seen on a loaded
    // machine); an inherited descriptor is there every time.
    std::size_t fewest = ~std::size_t(0);
    for (int look = 0; look < 5; ++look) {
        std::size_t n = 0;
        std::error_code ec;
        for (std::filesystem::directory_iterator it("/proc/" + std::to_string(started) + "/fd", ec), end;
             !ec && it != end; it.increment(ec))
            ++n;
        if (!ec) fewest = std::min(fewest, n);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(started, SIGKILL);
    return fewest;
}

}  // namespace

TEST_CASE("programs the application starts hold none of the pool's descriptors; a forked copy cannot hang it",
          "[pool_faults]") {
    const std::string without_pool = unique_sleep(), with_pool = unique_sleep();
    pid_t copy = -1;
    clock_type::duration took{};
    block_on_within(20s, [&]() -> awaitable<void> {
        const std::size_t baseline = inherited_fds(without_pool);
        auto pool = std::make_unique<corun::process_pool>(co_await corun::this_executor(),
                                                          corun::process_pool_options{.workers = 2});
        const long four = co_await pool->submit(square, 2L);
        CHECK(four == 4);
        CHECK(inherited_fds(with_pool) == baseline);
        // A fork without exec holds everything, close-on-exec or not.
        copy = ::fork();
        if (copy == 0) {
            for (;;) pause();
        }
        took = timed([&] { pool.reset(); });
    }());
    CHECK(took < 5s);
    ::kill(copy, SIGKILL);
    ::waitpid(copy, nullptr, 0);
    expect_nothing_left();
}

TEST_CASE("join never blocks the event loop, even while a forked copy holds the pool's socket",
          "[pool_faults]") {
    pid_t copy = -1;
    clock_type::duration longest_tick{};
    block_on_within(20s, [&]() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const long four = co_await pool.submit(square, 2L);
        CHECK(four == 4);
        copy = ::fork();
        if (copy == 0) {
            for (;;) pause();
        }
        bool stop = false;
        auto ticker = [&]() -> awaitable<void> {
            while (!stop) {
                const auto before = clock_type::now();
                co_await sleep_for(5ms);
                longest_tick = std::max(longest_tick, clock_type::now() - before);
            }
        };
        auto joining = [&]() -> awaitable<void> {
            pool.close();
            CHECK_THROWS_AS(co_await corun::with_timeout(200ms, pool.join()), corun::timeout_error);
            co_await pool
                .join();  // the server, which never sees the end of its socket, is killed after the grace
            stop = true;
        };
        co_await corun::gather(ticker(), joining());
    }());
    ::kill(copy, SIGKILL);
    ::waitpid(copy, nullptr, 0);
    CHECK(longest_tick < 500ms);
    expect_nothing_left();
}

TEST_CASE("join completes when an idle worker is stopped: it holds no task, and is killed after the grace",
          "[pool_faults]") {
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const long four = co_await pool.submit(square, 2L);
        CHECK(four == 4);
        ::kill(pool.worker_pids().at(1), SIGSTOP);
        pool.close();
        co_await corun::with_timeout(5s, pool.join());
    }());
    expect_nothing_left();
}

TEST_CASE("destruction stays within its bound with stdout unread and the fork server stopped",
          "[pool_faults]") {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    clock_type::duration took{};
    {
        stdout_redirect redirect(p[1]);
        block_on_within(20s, [&]() -> awaitable<void> {
            auto pool = std::make_unique<corun::process_pool>(co_await corun::this_executor(),
                                                              corun::process_pool_options{.workers = 2});
            pool->map(
                [](long) {
                    for (int i = 0; i < 4000; ++i)
                        std::printf("%0511d\n", i);  // 2 MiB each: more than the relay holds
                    return 0;
                },
                corun::range(2), {.chunksize = 1}, [](std::exception_ptr, std::vector<int>) {});
            co_await sleep_for(300ms);
            ::kill(fork_server_of_this_process(), SIGSTOP);
            took = timed([&] { pool.reset(); });
        }());
    }
    ::close(p[0]);
    ::close(p[1]);
    CHECK(took < 2500ms);
    expect_nothing_left();
}

// ---- 7. running out of descriptors and processes --------------------------------

TEST_CASE("out of descriptors at construction: an EMFILE error, and nothing leaks", "[pool_faults]") {
    const int before = open_fds();
    block_on_within(20s, [&]() -> awaitable<void> {
        limit_guard files(RLIMIT_NOFILE);
        files.set_soft(static_cast<rlim_t>(open_fds() + 24));
        try {
            corun::process_pool pool{co_await corun::this_executor(), {.workers = 30}};
            FAIL("30 workers started with 24 descriptors to spare");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::too_many_files_open);
            CHECK_THAT(e.what(), Catch::Contains("EMFILE"));
        }
    }());
    expect_nothing_left();
    CHECK(open_fds() == before);
}

TEST_CASE("out of descriptors while replacing workers: a clear error meanwhile, and the pool recovers",
          "[pool_faults]") {
    block_on_within(30s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const long four = co_await pool.submit(square, 2L);
        CHECK(four == 4);
        std::vector<int> hog;
        {
            // The server stopped, the workers killed: their descriptors come
            // back to us, and are taken before the server can make new ones.
            const pid_t server = fork_server_of_this_process();
            ::kill(server, SIGSTOP);
            for (int pid : pool.worker_pids()) ::kill(pid, SIGKILL);
            for (int i = 0; i < 200 && !pool.worker_pids().empty(); ++i) co_await sleep_for(10ms);
            co_await sleep_for(100ms);  // their output pipes close too
            limit_guard files(RLIMIT_NOFILE);
            files.set_soft(static_cast<rlim_t>(open_fds() + 8));
            for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) hog.push_back(fd);
            ::kill(server, SIGCONT);
            // With no worker left and none to be had, a task fails at once, naming why.
            bool refused = false;
            for (int i = 0; i < 200 && !refused; ++i) {
                try {
                    co_await corun::with_timeout(100ms, pool.submit(square, 3L));
                } catch (const std::system_error& e) {
                    refused = e.code() == std::errc::too_many_files_open;
                    CHECK_THAT(e.what(), Catch::Contains("EMFILE"));
                } catch (const corun::timeout_error&) {
                } catch (const corun::worker_crashed&) {
                }
                co_await sleep_for(10ms);
            }
            CHECK(refused);
            for (int fd : hog) ::close(fd);
        }
        // Descriptors back: the pool makes its workers again on its own.
        long nine = 0;
        for (int i = 0; i < 100 && nine != 9; ++i) {
            try {
                nine = co_await pool.submit(square, 3L);
            } catch (const std::system_error&) {
            }
            if (nine != 9) co_await sleep_for(50ms);
        }
        CHECK(nine == 9);
        for (int i = 0; i < 100 && pool.worker_pids().size() < 2; ++i) co_await sleep_for(20ms);
        CHECK(pool.worker_pids().size() == 2);
    }());
    expect_nothing_left();
}

namespace {

/// Runs `check` in a child process as an unprivileged user (RLIMIT_NPROC does
/// not bind root); returns what it reported: empty when all went well.
std::string as_unprivileged_child(std::string (*check)()) {
    int report[2];
    REQUIRE(::pipe(report) == 0);
    std::fflush(nullptr);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(report[0]);
        std::string verdict;
        if (getuid() == 0 && (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)) {
            verdict = "cannot become nobody";
        } else {
            try {
                verdict = check();
            } catch (const std::exception& e) {
                verdict = std::string("threw: ") + e.what();
            }
        }
        (void)!::write(report[1], verdict.data(), verdict.size());
        _exit(0);
    }
    ::close(report[1]);
    std::string verdict;
    char buf[512];
    pollfd p{report[0], POLLIN, 0};
    while (::poll(&p, 1, 30'000) > 0) {
        const ssize_t n = ::read(report[0], buf, sizeof buf);
        if (n <= 0) break;
        verdict.append(buf, static_cast<std::size_t>(n));
    }
    ::close(report[0]);
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    return verdict;
}

/// Tasks (threads count) of this process's real user.
rlim_t tasks_of_this_user() {
    rlim_t n = 0;
    for (const auto& proc : std::filesystem::directory_iterator("/proc")) {
        if (std::atoi(proc.path().filename().c_str()) <= 0) continue;  // self, thread-self, …
        std::ifstream status(proc.path() / "status");
        std::string key;
        uid_t uid = 0;
        long threads = 0;
        bool mine = false;
        while (status >> key) {
            if (key == "Uid:") {
                status >> uid;
                mine = uid == getuid();
            } else if (key == "Threads:") {
                status >> threads;
            }
            status.ignore(1 << 10, '\n');
        }
        if (mine) n += static_cast<rlim_t>(threads);
    }
    return n;
}

std::string construction_refused(rlim_t spare) {
    rlimit l{};
    ::getrlimit(RLIMIT_NPROC, &l);
    l.rlim_cur = tasks_of_this_user() + spare;
    ::setrlimit(RLIMIT_NPROC, &l);
    std::string verdict;
    try {
        corun::run([]() -> awaitable<void> {
            corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        }());
        verdict = "the pool started with processes refused";
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::resource_unavailable_try_again)
            verdict = std::string("wrong error: ") + e.what();
        else if (std::string(e.what()).find("fork") == std::string::npos ||
                 std::string(e.what()).find("EAGAIN") == std::string::npos)
            verdict = std::string("the message does not name fork and EAGAIN: ") + e.what();
    }
    l.rlim_cur = RLIM_INFINITY == l.rlim_max ? RLIM_INFINITY : l.rlim_max;
    ::setrlimit(RLIMIT_NPROC, &l);
    if (!eventually([] { return children_of_this_process().empty(); }))
        verdict += "; a child process was left behind";
    return verdict;
}

}  // namespace

TEST_CASE("RLIMIT_NPROC at construction: EAGAIN from fork, and no process left", "[pool_faults]") {
    // No room for the fork server, then room for it but none for a worker.
    CHECK(as_unprivileged_child([] { return construction_refused(0); }) == "");
    CHECK(as_unprivileged_child([] { return construction_refused(1); }) == "");
}

TEST_CASE("RLIMIT_NPROC while replacing workers: a clear error meanwhile, and the pool recovers",
          "[pool_faults]") {
    CHECK(as_unprivileged_child([]() -> std::string {
              std::string verdict;
              corun::run([&]() -> awaitable<void> {
                  corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
                  const pid_t server = children_of_this_process().at(0);
                  rlimit any{};
                  ::getrlimit(RLIMIT_NPROC, &any);
                  const rlimit none{0, any.rlim_max};
                  ::prlimit(server, RLIMIT_NPROC, &none, nullptr);  // the fork server may fork no more
                  for (int pid : pool.worker_pids()) ::kill(pid, SIGKILL);
                  bool refused = false;
                  for (int i = 0; i < 200 && !refused; ++i) {
                      try {
                          co_await corun::with_timeout(100ms, pool.submit(square, 3L));
                      } catch (const std::system_error& e) {
                          refused = e.code() == std::errc::resource_unavailable_try_again &&
                                    std::string(e.what()).find("fork") != std::string::npos;
                      } catch (const std::exception&) {
                      }
                      co_await sleep_for(10ms);
                  }
                  if (!refused) verdict += "tasks were not refused with EAGAIN from fork; ";
                  ::prlimit(server, RLIMIT_NPROC, &any, nullptr);
                  long nine = 0;
                  for (int i = 0; i < 100 && nine != 9; ++i) {
                      try {
                          nine = co_await pool.submit(square, 3L);
                      } catch (const std::exception&) {
                      }
                      if (nine != 9) co_await sleep_for(50ms);
                  }
                  if (nine != 9) verdict += "the pool did not recover; ";
              }());
              if (!eventually([] { return children_of_this_process().empty(); }))
                  verdict += "a child process was left behind";
              return verdict;
          }) == "");
}

// ---- 8. the breaker ----------------------------------------------------------

TEST_CASE("tasks that crash their workers, or blast junk on their channel, do not close the pool",
          "[pool_faults]") {
    block_on_within(30s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        for (int i = 0; i < 8; ++i) {
            CHECK_THROWS_AS(co_await pool.submit([] { std::abort(); }), corun::worker_crashed);
            try {
                co_await pool.submit(
                    [](int seed) {
                        std::string junk(64, '\0');
                        for (auto& c : junk) c = static_cast<char>(seed = seed * 1103515245 + 12345);
                        (void)!::write(worker_channel(), junk.data(), junk.size());
                        pause();
                    },
                    i);
                FAIL("the junk went unnoticed");
            } catch (const corun::worker_crashed& e) {
                CHECK_THAT(e.what(), Catch::Contains("malformed") || Catch::Contains("oversized"));
            }
        }
        const long four = co_await pool.submit(square, 2L);
        CHECK(four == 4);
        pool.close();
        try {
            co_await pool.submit(square, 2L);
            FAIL("a closed pool took a task");
        } catch (const corun::pool_closed& e) {
            CHECK(e.reason() == "close() was called");
        }
    }());
}

TEST_CASE("a task exiting with the codes the pool itself uses is that task's crash, nothing more",
          "[pool_faults]") {
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        for (int code : {71, 72}) {
            try {
                co_await pool.submit([](int c) { std::exit(c); }, code);
                FAIL("the exit went unnoticed");
            } catch (const corun::worker_crashed& e) {
                CHECK(e.exit_code() == code);
                CHECK_THAT(e.what(), !Catch::Contains("initializer") && !Catch::Contains("memory"));
            }
        }
        const long nine = co_await pool.submit(square, 3L);
        CHECK(nine == 9);
    }());
}

TEST_CASE("a pool that gives up says why in every later pool_closed", "[pool_faults]") {
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1, .initializer = [] {
                                                                       throw std::runtime_error("no licence");
                                                                   }}};
        CHECK_THROWS_AS(co_await pool.submit(square, 2L), corun::worker_crashed);
        try {
            co_await pool.submit(square, 2L);
            FAIL("a pool whose initializer fails took a task");
        } catch (const corun::pool_closed& e) {
            CHECK_THAT(e.reason(), Catch::Contains("initializer"));
            CHECK_THAT(e.what(), Catch::Contains("initializer"));
        }
    }());
}

TEST_CASE("a task sent to a worker whose initializer fails after the pool gave up fails too: no respawn loop",
          "[pool_faults]") {
    // The first worker's initializer fails at once, the other's a little
    // later: by then the pool has given up, and the task the second worker
    // held (never started) must fail rather than be handed to a new worker.
    static std::string marker;
    marker = "/tmp/corun-first-" + unique_token();
    static std::string runs;
    runs = marker + "-runs";
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(),
                                 {.workers = 2, .initializer = [] {
                                      if (std::FILE* f = std::fopen(runs.c_str(), "a")) {
                                          std::fputc('x', f);
                                          std::fclose(f);
                                      }
                                      const int first =
                                          ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
                                      if (first < 0) usleep(300'000);
                                      throw std::runtime_error("no licence");
                                  }}};
        auto [a, b] = co_await corun::gather_settled(pool.submit(square, 2L), pool.submit(square, 3L));
        for (auto* outcome : {&a, &b}) {
            try {
                (void)outcome->value();
                FAIL("a task ran without its initializer");
            } catch (const corun::worker_crashed& e) {
                CHECK_THAT(e.what(), Catch::Contains("initializer"));
            } catch (const corun::pool_closed& e) {
                CHECK_THAT(e.reason(), Catch::Contains("initializer"));
            }
        }
    }());
    std::ifstream in(runs);
    std::string marks;
    std::getline(in, marks);
    CHECK(marks.size() <= 3);
    std::filesystem::remove(marker);
    std::filesystem::remove(runs);
}

// ---- 10. exceptions ----------------------------------------------------------

namespace {

/// Throws the standard exception numbered `which`.
void throw_standard(int which) {
    namespace fs = std::filesystem;
    switch (which) {
        case 0:
            (void)std::optional<int>().value();
            break;
        case 1:
            (void)std::get<1>(std::variant<int, char>());
            break;
        case 2:
            throw fs::filesystem_error("cannot copy", fs::path("/a b/x"), fs::path("/y"),
                                       std::make_error_code(std::errc::permission_denied));
        case 3:
            throw std::system_error(ENOENT, std::system_category(), "open x");
        case 4:
            throw std::system_error(std::make_error_code(std::errc::timed_out));
        case 5:
            throw std::ios_base::failure("bad stream");
        case 6:
            throw std::future_error(std::future_errc::broken_promise);
        case 7:
            throw std::regex_error(std::regex_constants::error_brack);
        case 8:
            (void)std::any_cast<int>(std::any());
            break;
        case 9:
            throw std::bad_function_call();
        case 10:
            throw parse_error("unexpected token", 42);
        case 11: {
            std::ifstream in("/nonexistent/corun");
            in.exceptions(std::ios::failbit);  // the library throws its own failure type
            break;
        }
        case 12:
            throw std::filesystem::filesystem_error("no path", std::make_error_code(std::errc::io_error));
        case 13:
            throw std::filesystem::filesystem_error("one path", std::filesystem::path("/x"),
                                                    std::make_error_code(std::errc::io_error));
        case 14:
            try {
                throw std::out_of_range("inner");
            } catch (...) {
                std::throw_with_nested(std::runtime_error("outer"));
            }
    }
}

}  // namespace

TEST_CASE("every standard exception comes back as itself, and a registered one of the user's too",
          "[pool_faults]") {
    corun::register_exception<parse_error>();
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        auto thrown = [&](int which) -> awaitable<std::exception_ptr> {
            try {
                co_await pool.submit(throw_standard, which);
            } catch (...) {
                co_return std::current_exception();
            }
            co_return nullptr;
        };
        // The type and message the same throw gives in this process.
        auto describe = [](std::exception_ptr p) -> std::string {
            try {
                std::rethrow_exception(p);
            } catch (const std::exception& e) {
                return std::string(typeid(e).name()) + ": " + e.what();
            } catch (...) {
                return "not a std::exception";
            }
        };
        auto local = [](int which) {
            try {
                throw_standard(which);
            } catch (...) {
                return std::current_exception();
            }
            return std::exception_ptr();
        };
        for (int which : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14}) {
            const std::string remote = describe(co_await thrown(which));
            CHECK(remote == describe(local(which)));
        }
        try {
            std::rethrow_exception(co_await thrown(2));
        } catch (const std::filesystem::filesystem_error& e) {
            CHECK(e.path1() == "/a b/x");
            CHECK(e.path2() == "/y");
            CHECK(e.code() == std::errc::permission_denied);
        }
        try {
            std::rethrow_exception(co_await thrown(3));
        } catch (const std::system_error& e) {
            CHECK(e.code().category() == std::system_category());
            CHECK(e.code().value() == ENOENT);
            CHECK(std::string(e.what()) == "open x: No such file or directory");
        }
        try {
            std::rethrow_exception(co_await thrown(14));
        } catch (const std::runtime_error& e) {
            CHECK(std::string(e.what()) == "outer");
            CHECK_THROWS_WITH(std::rethrow_if_nested(e), "inner");
        }
        // The library's own failure type (std::__ios_failure in libstdc++)
        // comes back as the public one, with the same message.
        try {
            std::rethrow_exception(co_await thrown(11));
        } catch (const std::ios_base::failure& e) {
            CHECK(describe(local(11)).ends_with(std::string(": ") + e.what()));
        }
        try {
            std::rethrow_exception(co_await thrown(10));
        } catch (const parse_error& e) {
            CHECK(std::string(e.what()) == "unexpected token");
            CHECK(e.line == 42);
        }
    }());
}

// ---- 11. frame limits ---------------------------------------------------------

TEST_CASE("values over max_frame_size fail where they are made, naming size and limit", "[pool_faults]") {
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1, .max_frame_size = 1 << 20}};
        const int pid = pool.worker_pids().at(0);
        try {
            co_await pool.submit([](std::size_t n) { return std::string(n, 'r'); }, std::size_t(2) << 20);
            FAIL("a 2 MiB result crossed a 1 MiB limit");
        } catch (const corun::value_too_large& e) {
            CHECK(e.limit() == 1 << 20);
            CHECK(e.size() > (2u << 20));
            CHECK_THAT(e.what(), Catch::Contains("result") && Catch::Contains(std::to_string(1 << 20)));
        }
        try {
            co_await pool.submit([](std::string s) { return s.size(); }, std::string(2 << 20, 'a'));
            FAIL("a 2 MiB argument crossed a 1 MiB limit");
        } catch (const corun::value_too_large& e) {
            CHECK(e.limit() == 1 << 20);
            CHECK_THAT(e.what(), Catch::Contains("task"));
        }
        const std::size_t under =
            co_await pool.submit([](std::string s) { return s.size(); }, std::string(512 << 10, 'a'));
        CHECK(under == 512u << 10);
        CHECK(pool.worker_pids() == std::vector<int>{pid});  // nobody was blamed
    }());
}

TEST_CASE("an exception larger than max_frame_size comes back as value_too_large; the worker goes on",
          "[pool_faults]") {
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1, .max_frame_size = 1 << 20}};
        const int pid = pool.worker_pids().at(0);
        try {
            co_await pool.submit([](std::size_t n) { throw std::runtime_error(std::string(n, 'e')); },
                                 std::size_t(2) << 20);
            FAIL("no exception");
        } catch (const corun::value_too_large& e) {
            CHECK_THAT(e.what(), Catch::Contains("exception"));
            CHECK(e.limit() == 1 << 20);
        }
        CHECK(pool.worker_pids() == std::vector<int>{pid});
    }());
}

TEST_CASE("a forged header announcing 1 GiB costs no memory and no hang", "[pool_faults]") {
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        const long start = status_kib("VmRSS");
        try {
            co_await pool.submit([] {
                const std::uint64_t header[3] = {std::uint64_t(1) << 30, 2, 0};
                (void)!::write(worker_channel(), header, sizeof header);
                return 7;  // and then answer as if nothing happened
            });
            FAIL("the forged header went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK_THAT(e.what(), Catch::Contains("malformed"));
        }
        CHECK(status_kib("VmRSS") - start < 64 * 1024);
        const long four = co_await pool.submit(square, 2L);
        CHECK(four == 4);
    }());
}

// ---- 12. memory_limit ---------------------------------------------------------

TEST_CASE("memory_limit counts what the task allocates, not what the worker inherited", "[pool_faults]") {
#ifdef __SANITIZE_ADDRESS__
    WARN("not under AddressSanitizer: its shadow memory needs more address space than any RLIMIT_AS allows");
    return;
#endif
    // 1 GiB of address space in the parent, inherited by every worker.
    const std::size_t reserved = std::size_t(1) << 30;
    void* held =
        ::mmap(nullptr, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(held != MAP_FAILED);
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(),
                                 {.workers = 1, .memory_limit = std::size_t(512) << 20}};
        const int pid = pool.worker_pids().at(0);
        const std::size_t small = co_await pool.submit(allocate_and_touch, std::size_t(256) << 20);
        CHECK(small == std::size_t(256) << 20);
        CHECK_THROWS_AS(co_await pool.submit(allocate_and_touch, std::size_t(1) << 30), std::bad_alloc);
        CHECK(pool.worker_pids() == std::vector<int>{pid});  // a task's failure, not the worker's
    }());
    ::munmap(held, reserved);
}

// ---- 13. join honours cancellation --------------------------------------------

TEST_CASE("join is cancelled by with_timeout; the pool finishes its work regardless", "[pool_faults]") {
    block_on_within(20s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        auto slow = pool.submit(sleep_then, 600L);
        auto waiting = [&]() -> awaitable<clock_type::duration> {
            const auto start = clock_type::now();
            CHECK_THROWS_AS(co_await corun::with_timeout(100ms, pool.join()), corun::timeout_error);
            co_return clock_type::now() - start;
        };
        auto [value, waited] = co_await corun::gather(std::move(slow), waiting());
        CHECK(value == 600);
        CHECK(waited < 500ms);
        co_await pool.join();
    }());
}
