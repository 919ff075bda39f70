#include "corun/mpi_pool.hpp"

#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "../abandon.hpp"
#include "../failure.hpp"
#include "link.hpp"

namespace corun {

namespace detail {

namespace {

using clock = std::chrono::steady_clock;

std::string host_name() {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    return name;
}

/// Did mpirun or srun start this process? Without them, MPI is not started
/// at all: the program runs alone, its pools local.
bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
        if (std::getenv(v)) return true;
    return false;
}

/// A task handed to a host's local process pool on behalf of another: its
/// answer goes to `done`.
class forward_task final : public pool_task {
public:
    // What is relayed travels as bytes: the local workers answer inline.
    forward_task() { inline_answer = true; }
    std::function<void(std::exception_ptr, std::string_view)> done;
    void complete(std::exception_ptr error, std::string_view result, wire::segment_view) override {
        auto d = std::move(done);
        delete this;
        d(std::move(error), result);
    }
};

std::string encode_options(const process_pool_options& o) {
    std::string out;
    wire::writer w(out);
    const code_address init = o.initializer ? encode_address(as_code_pointer(o.initializer)) : code_address{};
    w.pod(init);
    for (std::uint64_t v :
         {std::uint64_t(o.workers), std::uint64_t(o.max_tasks_per_child), std::uint64_t(o.memory_limit),
          std::uint64_t(o.prefix_output), std::uint64_t(o.prefetch), o.max_frame_size})
        w.pod(v);
    return out;
}

process_pool_options decode_options(std::string_view bytes) {
    wire::reader r(bytes);
    process_pool_options o;
    const auto init = r.pod<code_address>();
    if (init.module || init.offset)
        o.initializer = reinterpret_cast<void (*)()>(const_cast<void*>(decode_address(init)));
    o.workers = r.pod<std::uint64_t>();
    o.max_tasks_per_child = r.pod<std::uint64_t>();
    o.memory_limit = r.pod<std::uint64_t>();
    o.prefix_output = r.pod<std::uint64_t>() != 0;
    o.prefetch = r.pod<std::uint64_t>();
    o.max_frame_size = r.pod<std::uint64_t>();
    return o;
}

/// A crashed worker's error, naming the host and the rank it ran under.
std::exception_ptr named_crash(std::exception_ptr e, int rank) {
    if (!e) return e;
    try {
        std::rethrow_exception(e);
    } catch (const worker_crashed& c) {
        if (c.rank() >= 0) return e;
        const std::string host = host_name();
        return std::make_exception_ptr(worker_crashed(
            c.pid(), c.signal(), c.exit_code(),
            std::string(c.what()) + " (on host " + host + ", rank " + std::to_string(rank) + ")", host,
            rank));
    } catch (...) {
        return e;
    }
}

/// Why a host's pool closed itself (its workers could not start), if `e` says so.
std::optional<std::string> closed_because(const std::exception_ptr& e) {
    if (!e) return std::nullopt;
    try {
        std::rethrow_exception(e);
    } catch (const pool_closed& c) {
        return c.reason();
    } catch (...) {
        return std::nullopt;
    }
}

std::string_view payload_of(std::string_view m) {
    return m.substr(sizeof(mpi::header));
}

}  // namespace

/// What the session knows, shared by the pools of rank 0.
struct session_state {
    mpi_options options;
    std::unique_ptr<mpi::link> net;  // none without MPI
    int rank = 0, size = 1;

    mutable std::mutex lock;
    std::condition_variable changed;
    std::vector<mpi_host> hosts;
    std::vector<char> silent;
    /// Answers awaited by a blocked caller: (kind, pool, rank) → message.
    std::map<std::tuple<std::uint32_t, std::uint32_t, int>, std::string> replies;
    std::map<std::uint32_t, std::weak_ptr<mpi_pool_core>> pools;
    std::uint32_t next_pool = 1;

    /// Waits for the reply of `k` about `pool` from `rank`, at most `bound`.
    std::optional<std::string> wait_reply(mpi::kind k, std::uint32_t pool, int rank, clock::duration bound) {
        std::unique_lock l(lock);
        const auto key = std::make_tuple(std::uint32_t(k), pool, rank);
        const bool got = changed.wait_for(
            l, bound, [&] { return replies.count(key) || silent[static_cast<std::size_t>(rank)]; });
        if (!got || !replies.count(key)) return std::nullopt;
        auto m = std::move(replies[key]);
        replies.erase(key);
        return m;
    }

    std::string describe(int rank) const {
        std::lock_guard l(lock);
        const auto& h = hosts[static_cast<std::size_t>(rank)];
        return "host " + (h.name.empty() ? std::string("?") : h.name) + " (rank " + std::to_string(rank) +
               ")";
    }

    void on_message(int source, mpi::received m);
    void on_silent(int rank);
    void on_heard_again(int rank);
};

session_state* g_session = nullptr;

// ---------------------------------------------------------------------------
// Rank 0: the pool's core.

class mpi_pool_core : public std::enable_shared_from_this<mpi_pool_core>, public abandonable {
public:
    mpi_pool_core(executor ex, mpi_pool_options options, session_state* s)
        : m_ex(std::move(ex)), m_options(options), m_session(s) {}

    struct host {
        int rank;
        std::string name;
        int pid;
        std::size_t workers;
        std::size_t credit;
        bool lost = false;
        bool gone = false;
        std::unordered_map<std::uint64_t, pool_task*> inflight;  // null: cancelled, answer awaited
    };

    void start() {
        abandon_with_loop(m_ex, weak_from_this());
        const bool remote = m_session && m_session->net && m_session->size > 1;
        std::vector<int> ranks;
        if (remote) {
            std::lock_guard l(m_session->lock);
            m_pool = m_session->next_pool++;
            m_session->pools[m_pool] = weak_from_this();
            for (int r = 1; r < m_session->size; ++r)
                if (!m_session->hosts[static_cast<std::size_t>(r)].lost) ranks.push_back(r);
        }
        if (m_options.local_workers || ranks.empty()) {
            m_local = std::make_unique<process_pool>(m_ex, m_options.pool);
            add_host(0, host_name(), ::getpid(), m_local->workers());
        }
        if (ranks.empty()) return;
        const std::string options = encode_options(m_options.pool);
        for (int r : ranks) m_session->net->send(r, mpi::message(mpi::open_pool, m_pool, 0, 0, options));
        std::string refused;
        for (int r : ranks) {
            auto reply = m_session->wait_reply(mpi::pool_ready, m_pool, r, std::chrono::seconds(60));
            const auto error = reply ? payload_of(*reply) : std::string_view();
            if (!reply || !error.empty()) {
                refused +=
                    m_session->describe(r) + (reply ? ": " + std::string(error) : " did not answer") + "; ";
                // Should it answer late, its pool goes at once.
                m_session->net->send(r, mpi::message(mpi::close_pool, m_pool, 0, 1));
                continue;
            }
            std::lock_guard l(m_session->lock);
            const auto& h = m_session->hosts[static_cast<std::size_t>(r)];
            add_host(r, h.name, h.pid, mpi::header_of(*reply).aux);
        }
        if (!refused.empty()) {
            shutdown();
            throw std::runtime_error("corun: mpi_pool: a host could not start its workers: " + refused);
        }
    }

    const executor& get_executor() const { return m_ex; }

    void abandon_tasks() override {
        if (m_finished) return;
        m_closed = true;
        std::vector<pool_task*> tasks(m_queue.begin(), m_queue.end());
        m_queue.clear();
        for (auto& h : m_hosts)
            for (auto& [id, t] : h.inflight)
                if (t) tasks.push_back(std::exchange(t, nullptr));
        for (pool_task* t : tasks) t->abandon();
    }

    std::size_t workers() const {
        std::size_t n = 0;
        for (const auto& h : m_hosts)
            if (!h.lost) n += h.workers;
        return n;
    }

    std::vector<mpi_host> hosts() const {
        std::vector<mpi_host> out;
        for (const auto& h : m_hosts) out.push_back({h.rank, h.name, h.pid, h.lost});
        return out;
    }

    void submit(pool_task* t) {
        if (m_closed) return t->complete(std::make_exception_ptr(pool_closed(m_close_reason)), {});
        const std::uint64_t size = t->frame->size() - sizeof(mpi::header);
        if (size > m_options.pool.max_frame_size)
            return t->complete(std::make_exception_ptr(value_too_large("a task (its function and arguments)",
                                                                       size, m_options.pool.max_frame_size)),
                               {});
        if (!usable()) return t->complete(std::make_exception_ptr(pool_closed(m_close_reason)), {});
        t->id = m_next_id++;
        m_queue.push_back(t);
        dispatch();
    }

    void cancel(pool_task* t) {
        if (auto q = std::find(m_queue.begin(), m_queue.end(), t); q != m_queue.end()) {
            m_queue.erase(q);
            return t->complete(task_cancelled(), {});
        }
        for (auto& h : m_hosts) {
            auto it = h.inflight.find(t->id);
            if (it == h.inflight.end() || it->second != t) continue;
            it->second = nullptr;
            if (h.rank == 0) {
                if (auto f = m_local_tasks.find(t->id); f != m_local_tasks.end())
                    m_local->cancel_task(f->second);  // answers at once, through local_answer
            } else {
                m_session->net->send(h.rank, mpi::message(mpi::cancel, m_pool, t->id));
            }
            t->complete(task_cancelled(), {});
            return;
        }
    }

    /// A message from an agent about this pool, on the pool's executor.
    void on_message(int rank, const mpi::received& received) {
        const std::string_view m = received.view();
        const auto h = mpi::header_of(m);
        if (h.kind == mpi::pool_gone) {
            if (auto* ho = find_host(rank)) ho->gone = true;
            return check_join();
        }
        std::exception_ptr error;
        if (h.kind == mpi::failure) error = decode_failure(payload_of(m), 0);
        answer(rank, h.id, error, payload_of(m));
    }

    /// The agent `rank` stopped answering: what it held runs elsewhere.
    void on_host_lost(int rank) { drop_host(rank, {}); }

    /// The host of `rank` takes no more work; what it held runs elsewhere.
    /// Its pool is told to stop, for when it hears (a stopped host resumed).
    void drop_host(int rank, const std::string& why) {
        auto* h = find_host(rank);
        if (!h || h->lost) return;
        if (!why.empty())
            std::fprintf(stderr, "corun: mpi_pool: host %s (rank %d) leaves the pool: %s\n", h->name.c_str(),
                         rank, why.c_str());
        h->lost = true;
        h->credit = 0;
        std::vector<pool_task*> back;
        for (auto& [id, t] : h->inflight)
            if (t) back.push_back(t);
        h->inflight.clear();
        std::sort(back.begin(), back.end(), [](auto* a, auto* b) { return a->id < b->id; });
        for (auto* t : back) {
            // Its send to the lost host may still be in flight: a copy.
            t->frame = std::make_shared<std::string>(*t->frame);
        }
        m_queue.insert(m_queue.begin(), back.begin(), back.end());
        if (rank == 0) {
            if (m_local) m_local->terminate();
        } else {
            m_session->net->send(rank, mpi::message(mpi::close_pool, m_pool, 0, 1));
        }
        if (!usable()) {
            if (m_close_reason.empty())
                m_close_reason = "every host of the pool is lost" + (why.empty() ? "" : " (" + why + ")");
            m_closed = true;
            auto queued = std::move(m_queue);
            m_queue.clear();
            for (auto* t : queued) t->complete(std::make_exception_ptr(pool_closed(m_close_reason)), {});
        }
        dispatch();
        check_join();
    }

    void close(const std::string& reason) {
        if (m_closed) return;
        m_closed = true;
        m_close_reason = reason;
        check_join();
    }

    void terminate() {
        close("terminate() was called");
        auto queued = std::move(m_queue);
        m_queue.clear();
        for (auto* t : queued) t->complete(task_cancelled(), {});
        for (auto& h : m_hosts) {
            for (auto& [id, t] : h.inflight)
                if (t) std::exchange(t, nullptr)->complete(task_cancelled(), {});
            if (h.rank != 0 && !h.lost)
                m_session->net->send(h.rank, mpi::message(mpi::close_pool, m_pool, 0, 1));
        }
        m_hosts_closing = true;
        if (m_local) m_local->terminate();
        close_local();
        check_join();
    }

    void join(join_waiters::handler h) {
        close("close() was called");
        if (m_finished) return h.post(nullptr);
        m_join_waiters.add(std::move(h));
        check_join();
    }

    /// The destructor's: fails what is left, stops every host's workers and
    /// waits (bounded) for the agents to say so.
    void shutdown() {
        if (!m_closed) m_close_reason = "the pool was destroyed";
        m_closed = true;
        auto queued = std::move(m_queue);
        m_queue.clear();
        for (auto* t : queued) t->complete(task_cancelled(), {});
        std::vector<int> waiting;
        for (auto& h : m_hosts) {
            for (auto& [id, t] : h.inflight)
                if (t) std::exchange(t, nullptr)->complete(task_cancelled(), {});
            if (h.rank == 0 || h.lost || h.gone) continue;
            if (!m_hosts_closing) m_session->net->send(h.rank, mpi::message(mpi::close_pool, m_pool, 0, 1));
            waiting.push_back(h.rank);
        }
        m_local.reset();
        for (int r : waiting) m_session->wait_reply(mpi::pool_gone, m_pool, r, std::chrono::seconds(5));
        if (m_session) {
            std::lock_guard l(m_session->lock);
            m_session->pools.erase(m_pool);
            for (auto it = m_session->replies.begin(); it != m_session->replies.end();)
                it = std::get<1>(it->first) == m_pool ? m_session->replies.erase(it) : std::next(it);
        }
        m_finished = true;
    }

private:
    void add_host(int rank, std::string name, int pid, std::size_t workers) {
        // Enough work at a host for each worker to have the next task at hand.
        const std::size_t credit = 2 * workers + 2;
        m_hosts.push_back({rank, std::move(name), pid, workers, credit, false, false, {}});
    }

    host* find_host(int rank) {
        for (auto& h : m_hosts)
            if (h.rank == rank) return &h;
        return nullptr;
    }

    bool usable() const {
        return std::any_of(m_hosts.begin(), m_hosts.end(), [](const host& h) { return !h.lost; });
    }

    /// A task's answer from the host of `rank` (0: rank 0's own workers).
    void answer(int rank, std::uint64_t id, std::exception_ptr error, std::string_view bytes) {
        auto* h = find_host(rank);
        if (!h) return;
        auto it = h->inflight.find(id);
        if (it == h->inflight.end()) return;  // from a lost host, or already failed
        pool_task* t = it->second;
        h->inflight.erase(it);
        if (auto why = closed_because(error); why && !m_closed) {
            // That host's pool gave up (its workers cannot start): the task
            // runs elsewhere and the host gets no more.
            if (t) m_queue.push_front(t);
            drop_host(rank, "its pool closed itself: " + *why);
            return;
        }
        if (!h->lost) ++h->credit;
        if (t) t->complete(named_crash(std::move(error), rank), bytes);
        if (rank == 0) {
            // From inside the local pool's core: the next tasks go to it
            // later, not from within its own answer.
            asio::post(m_ex, [self = shared_from_this()] {
                self->dispatch();
                self->check_join();
            });
        } else {
            dispatch();
            check_join();
        }
    }

    void dispatch() {
        while (!m_queue.empty()) {
            // The host with the most room; ties in turn, so that tasks
            // submitted one at a time still reach every host.
            host* best = nullptr;
            for (std::size_t i = 0; i < m_hosts.size(); ++i) {
                auto& h = m_hosts[(m_turn + i) % m_hosts.size()];
                if (!h.lost && h.credit > 0 && (!best || h.credit > best->credit)) best = &h;
            }
            if (!best) return;
            ++m_turn;
            pool_task* t = m_queue.front();
            m_queue.pop_front();
            --best->credit;
            best->inflight[t->id] = t;
            if (best->rank == 0) {
                auto* f = new forward_task;
                f->frame = t->frame;
                f->batch = true;
                const auto id = t->id;
                f->done = [self = weak_from_this(), id](std::exception_ptr e, std::string_view r) {
                    if (auto s = self.lock()) s->local_answer(id, std::move(e), r);
                };
                m_local_tasks[id] = f;
                m_local->submit_task(f);
            } else {
                const mpi::header head{mpi::task, m_pool, t->id, 0};
                std::memcpy(t->frame->data(), &head, sizeof head);
                m_session->net->send(best->rank, t->frame);
            }
        }
    }

    void local_answer(std::uint64_t id, std::exception_ptr e, std::string_view r) {
        m_local_tasks.erase(id);
        // As on an agent: a pool that gave up is not the task's fault.
        if (e && !m_closed)
            if (auto why = m_local->closed_reason(); !why.empty())
                e = std::make_exception_ptr(pool_closed(why));
        answer(0, id, std::move(e), r);
    }

    void close_local() {
        if (!m_local || m_local_joining) return;
        m_local_joining = true;
        m_local->join([self = weak_from_this()](std::exception_ptr) {
            if (auto s = self.lock()) {
                if (auto* h = s->find_host(0)) h->gone = true;
                s->check_join();
            }
        });
    }

    void check_join() {
        if (!m_closed || m_finished || !m_queue.empty()) return;
        for (const auto& h : m_hosts)
            if (!h.inflight.empty()) return;
        if (!m_hosts_closing) {
            m_hosts_closing = true;
            for (auto& h : m_hosts)
                if (h.rank != 0 && !h.lost)
                    m_session->net->send(h.rank, mpi::message(mpi::close_pool, m_pool, 0, 0));
            close_local();
        }
        for (const auto& h : m_hosts)
            if (!h.gone && !h.lost) return;
        m_finished = true;
        m_join_waiters.complete_all();
    }

    executor m_ex;
    mpi_pool_options m_options;
    session_state* m_session;
    std::uint32_t m_pool = 0;
    std::vector<host> m_hosts;
    std::unique_ptr<process_pool> m_local;
    std::unordered_map<std::uint64_t, forward_task*> m_local_tasks;
    std::deque<pool_task*> m_queue;
    std::uint64_t m_next_id = 1;
    std::size_t m_turn = 0;
    join_waiters m_join_waiters;
    std::string m_close_reason;
    bool m_closed = false, m_finished = false, m_hosts_closing = false, m_local_joining = false;
};

void core_submit(mpi_pool_core& core, pool_task* task) {
    asio::dispatch(core.get_executor(), [c = core.shared_from_this(), task] { c->submit(task); });
}

void core_cancel(mpi_pool_core& core, pool_task* task) {
    core.cancel(task);
}

std::size_t core_workers(const mpi_pool_core& core) noexcept {
    return core.workers();
}
void core_close(mpi_pool_core& core) {
    core.close("close() was called");
}
void core_terminate(mpi_pool_core& core) {
    core.terminate();
}
void core_join(mpi_pool_core& core, join_waiters::handler handler) {
    core.join(std::move(handler));
}

// ---------------------------------------------------------------------------
// Rank 0: routing what the link receives.

void session_state::on_message(int source, mpi::received received) {
    const auto h = mpi::header_of(received.view());
    std::unique_lock l(lock);
    // A pool that has gone (or gave up waiting) wants nothing more.
    if (h.kind != mpi::hello && !pools.count(h.pool)) return;
    if (h.kind == mpi::hello || h.kind == mpi::pool_ready || h.kind == mpi::pool_gone) {
        // Awaited by a blocked caller (pool_gone by a destructor too).
        replies[{h.kind, h.pool, source}] = std::string(received.view());
        changed.notify_all();
        if (h.kind != mpi::pool_gone) return;
    }
    // Posted under the lock: a pool's destructor unregisters it under the
    // lock, so nothing is posted to its executor once it has gone.
    auto it = pools.find(h.pool);
    if (it == pools.end()) return;
    auto core = it->second.lock();
    if (!core) return;
    asio::post(core->get_executor(),
               [core, source, m = std::move(received)] { core->on_message(source, m); });
}

void session_state::on_silent(int rank) {
    std::fprintf(stderr, "corun: %s has not answered for %lld ms: it is lost, its tasks go to other hosts\n",
                 describe(rank).c_str(), static_cast<long long>(options.heartbeat_timeout.count()));
    std::lock_guard l(lock);
    hosts[static_cast<std::size_t>(rank)].lost = true;
    silent[static_cast<std::size_t>(rank)] = 1;
    for (auto& [id, weak] : pools)
        if (auto c = weak.lock()) asio::post(c->get_executor(), [c, rank] { c->on_host_lost(rank); });
    changed.notify_all();
}

void session_state::on_heard_again(int rank) {
    std::lock_guard l(lock);
    silent[static_cast<std::size_t>(rank)] = 0;
    changed.notify_all();
}

// ---------------------------------------------------------------------------
// Ranks other than 0: the host agent.

class agent {
public:
    agent(asio::io_context& io, session_state& s) : m_io(io), m_session(s), m_guard(io.get_executor()) {}

    void handle(const mpi::received& received) {
        const std::string_view m = received.view();
        const auto h = mpi::header_of(m);
        switch (h.kind) {
            case mpi::welcome:
                m_session.net->set_heartbeat(std::chrono::microseconds(h.aux));
                return;
            case mpi::open_pool:
                return open(h.pool, payload_of(m));
            case mpi::task:
                return run(h.pool, h.id, m);
            case mpi::cancel:
                if (auto p = m_pools.find(h.pool); p != m_pools.end())
                    if (auto t = p->second.tasks.find(h.id); t != p->second.tasks.end())
                        p->second.pool->cancel_task(t->second);
                return;
            case mpi::close_pool:
                return close(h.pool, h.aux != 0);
            case mpi::shutdown:
                return stop();
            default:
                return;
        }
    }

private:
    struct hosted {
        std::unordered_map<std::uint64_t, forward_task*> tasks;
        bool closing = false;                // rank 0 closed it
        std::unique_ptr<process_pool> pool;  // destroyed first: it completes the tasks
    };

    void reply(std::string m) { m_session.net->send(0, std::move(m)); }

    void open(std::uint32_t pool, std::string_view options) {
        try {
            auto& p = m_pools[pool];
            p.pool = std::make_unique<process_pool>(m_io.get_executor(), decode_options(options));
            reply(mpi::message(mpi::pool_ready, pool, 0, p.pool->workers()));
        } catch (const std::exception& e) {
            m_pools.erase(pool);
            const std::string why = e.what();
            reply(mpi::message(mpi::pool_ready, pool, 0, 0, why.empty() ? "failed" : why));
        }
    }

    void run(std::uint32_t pool, std::uint64_t id, std::string_view frame) {
        auto p = m_pools.find(pool);
        if (p == m_pools.end()) return;
        auto* f = new forward_task;
        // Copied here, on the agent's loop: the link's thread never spends
        // seconds filling fresh memory (its heartbeats would stop).
        f->frame = std::make_shared<std::string>(frame);
        f->batch = true;
        f->done = [this, pool, id](std::exception_ptr e, std::string_view r) {
            auto q = m_pools.find(pool);
            if (q != m_pools.end()) q->second.tasks.erase(id);
            if (!e) return reply(mpi::message(mpi::result, pool, id, 0, r));
            // This host's pool gave up (its workers cannot start): the task
            // is not at fault, and rank 0 runs it elsewhere.
            if (q != m_pools.end() && !q->second.closing)
                if (auto why = q->second.pool->closed_reason(); !why.empty())
                    e = std::make_exception_ptr(pool_closed(why));
            std::string payload;
            encode_failure(payload, named_crash(std::move(e), m_session.rank));
            reply(mpi::message(mpi::failure, pool, id, 0, payload));
        };
        p->second.tasks[id] = f;
        p->second.pool->submit_task(f);
    }

    void close(std::uint32_t pool, bool terminate) {
        auto p = m_pools.find(pool);
        if (p == m_pools.end()) return reply(mpi::message(mpi::pool_gone, pool, 0));
        p->second.closing = true;
        if (terminate) p->second.pool->terminate();
        p->second.pool->join([this, pool](std::exception_ptr) {
            asio::post(m_io, [this, pool] {
                m_pools.erase(pool);
                reply(mpi::message(mpi::pool_gone, pool, 0));
            });
        });
    }

    void stop() {
        // Each pool's destructor stops and reaps its workers, and completes
        // its tasks, whose answers look for their pool: it is gone by then.
        auto pools = std::move(m_pools);
        m_pools.clear();
        for (auto& [id, p] : pools) p.pool.reset();
        m_guard.reset();
        m_io.stop();
    }

    asio::io_context& m_io;
    session_state& m_session;
    asio::executor_work_guard<asio::io_context::executor_type> m_guard;
    std::map<std::uint32_t, hosted> m_pools;
};

[[noreturn]] void run_agent(session_state& s) {
    asio::io_context io{1};
    agent a(io, s);
    mpi::link::callbacks cb;
    cb.on_message = [&io, &a](int, mpi::received m) {
        asio::post(io, [&a, m = std::move(m)] { a.handle(m); });
    };
    cb.on_error = [&s](int, const std::string& what) {
        std::fprintf(stderr, "corun: host agent rank %d on %s lost contact with rank 0: %s\n", s.rank,
                     host_name().c_str(), what.c_str());
    };
    s.net->start(std::move(cb), {}, {});
    std::string hello;
    {
        wire::writer w(hello);
        wire::put(w, host_name());
        wire::put(w, static_cast<std::int32_t>(::getpid()));
        wire::put(w, mpi::module_list());
    }
    s.net->send(0, mpi::message(mpi::hello, 0, 0, 0, hello));
    io.run();
    s.net->stop(std::chrono::milliseconds(5000));
    std::fflush(nullptr);
    std::exit(0);
}

}  // namespace detail

// ---------------------------------------------------------------------------
// The session.

mpi_session::mpi_session(int& /*argc*/, char**& /*argv*/, mpi_options options) {
    // MPI starts once per process: not again after MPI_Finalize.
    static bool made = false;
    if (made) throw std::logic_error("corun: only one mpi_session may be made in a process");
    made = true;
    auto s = std::make_unique<detail::session_state>();
    s->options = options;
    if (!detail::launched_by_mpi()) {
        s->hosts.push_back({0, detail::host_name(), ::getpid(), false});
        s->silent.assign(1, 0);
        detail::g_session = s.release();
        return;
    }
    s->net = std::make_unique<detail::mpi::link>();
    s->rank = s->net->rank();
    s->size = s->net->size();
    s->hosts.resize(static_cast<std::size_t>(s->size));
    s->silent.assign(static_cast<std::size_t>(s->size), 0);
    s->hosts[0] = {0, detail::host_name(), ::getpid(), false};
    detail::g_session = s.get();
    if (s->rank != 0) {
        for (int r = 0; r < s->size; ++r) s->hosts[static_cast<std::size_t>(r)].rank = r;
        detail::run_agent(*s.release());
    }

    detail::session_state* state = s.get();
    detail::mpi::link::callbacks cb;
    cb.on_message = [state](int source, detail::mpi::received m) { state->on_message(source, std::move(m)); };
    cb.on_silent = [state](int rank) { state->on_silent(rank); };
    cb.on_heard_again = [state](int rank) { state->on_heard_again(rank); };
    cb.on_error = [state](int rank, const std::string& what) {
        std::fprintf(stderr, "corun: lost %s: %s; ending the job\n",
                     rank > 0 ? state->describe(rank).c_str() : "a host", what.c_str());
    };
    // Silence is judged only once every agent has said hello (set_silence below).
    s->net->start(std::move(cb), {}, {});

    const std::string ours = detail::mpi::module_list();
    std::string refused;
    for (int r = 1; r < s->size; ++r) {
        auto m = s->wait_reply(detail::mpi::hello, 0, r, std::chrono::seconds(120));
        if (!m) {
            refused += "  rank " + std::to_string(r) + " never said hello\n";
            continue;
        }
        detail::wire::reader rd(detail::payload_of(*m));
        auto name = detail::wire::get<std::string>(rd);
        const auto pid = detail::wire::get<std::int32_t>(rd);
        const auto modules = detail::wire::get<std::string>(rd);
        {
            std::lock_guard l(s->lock);
            s->hosts[static_cast<std::size_t>(r)] = {r, name, pid, false};
        }
        if (auto diff = detail::mpi::module_difference(ours, modules); !diff.empty())
            refused += "  host " + name + " (rank " + std::to_string(r) +
                       ") runs other binaries than rank 0 on " + s->hosts[0].name + ":\n" + diff;
    }
    if (!refused.empty()) {
        std::fprintf(stderr,
                     "corun: mpi_session: hosts refused; every rank must run the same program and libraries "
                     "(one binary, same paths):\n%s",
                     refused.c_str());
        s->net->abort(1);
    }
    const auto interval = std::chrono::duration_cast<std::chrono::microseconds>(options.heartbeat_interval);
    for (int r = 1; r < s->size; ++r)
        s->net->send(r, detail::mpi::message(detail::mpi::welcome, 0, 0,
                                             static_cast<std::uint64_t>(interval.count())));
    s->net->set_silence(std::chrono::duration_cast<std::chrono::microseconds>(options.heartbeat_timeout));
    s.release();
}

mpi_session::~mpi_session() {
    auto* s = detail::g_session;
    if (!s) return;
    if (s->net) {
        std::string still_silent;
        {
            std::lock_guard l(s->lock);
            for (int r = 1; r < s->size; ++r)
                if (s->silent[static_cast<std::size_t>(r)])
                    still_silent += " " + s->hosts[static_cast<std::size_t>(r)].name + " (rank " +
                                    std::to_string(r) + ")";
        }
        if (!still_silent.empty()) {
            std::fprintf(stderr,
                         "corun: mpi_session: host%s still not answering at the end; MPI cannot finish with "
                         "it, so the job is aborted\n",
                         still_silent.c_str());
            s->net->abort(3);
        }
        for (int r = 1; r < s->size; ++r) s->net->send(r, detail::mpi::message(detail::mpi::shutdown, 0, 0));
        s->net->stop(std::chrono::milliseconds(5000));
    }
    detail::g_session = nullptr;
    delete s;
}

int mpi_session::rank() const noexcept {
    return detail::g_session ? detail::g_session->rank : 0;
}
int mpi_session::size() const noexcept {
    return detail::g_session ? detail::g_session->size : 1;
}
std::vector<mpi_host> mpi_session::hosts() const {
    std::lock_guard l(detail::g_session->lock);
    return detail::g_session->hosts;
}

// ---------------------------------------------------------------------------
// The pool.

mpi_pool::mpi_pool(executor ex) : mpi_pool(std::move(ex), mpi_pool_options{}) {}

mpi_pool::mpi_pool(executor ex, mpi_pool_options options)
    : frame_pool(ex, std::make_shared<detail::mpi_pool_core>(ex, options, detail::g_session)) {
    m_core->start();
}

mpi_pool::~mpi_pool() {
    m_core->shutdown();
}

std::vector<mpi_host> mpi_pool::hosts() const {
    return m_core->hosts();
}

}  // namespace corun
