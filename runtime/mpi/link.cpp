#include "link.hpp"

#include <dlfcn.h>
#include <mpi.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>

namespace corun::detail::mpi {

namespace {

using clock = std::chrono::steady_clock;

std::string error_text(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
    return std::string(text, static_cast<std::size_t>(length));
}

// The tags. Heartbeats travel under their own, so that a receiver can tell
// them from traffic before they have arrived. A message larger than a piece
// is announced (its size), then sent piece by piece, a few in flight at a
// time: MPI counts are `int`, and a sender's heartbeats must not queue behind
// gigabytes (its receiver would take it for lost), nor a receiver's wait for
// a message from a stopped sender hold back any other.
constexpr int message_tag = 0;
constexpr int heartbeat_tag = 1;
constexpr int announce_tag = 2;
constexpr int piece_tag = 3;
/// Pieces in flight to one rank.
constexpr int piece_window = 4;

/// A message on its way out to one rank: sent whole, or piece by piece.
struct outgoing {
    std::shared_ptr<const std::string> bytes;
    std::size_t posted = 0;  // bytes of it handed to MPI so far
};

/// An MPI send in flight, and the bytes it reads.
struct sending {
    int dest;
    bool piece;
    std::shared_ptr<const std::string> bytes;
};

/// An MPI receive in flight: a whole message, a heartbeat, or a piece of a
/// large message (the last piece carries the message).
struct receiving {
    int source;
    bool heartbeat = false;
    bool carries = true;
    received message;
    MPI_Request request = MPI_REQUEST_NULL;
    bool done = false;
};

/// A large message being received piece by piece from one rank.
struct assembly {
    received message;
    std::size_t filled = 0;
};

}  // namespace

std::size_t piece_size() {
    static const std::size_t size = [] {
        if (const char* s = std::getenv("CORUN_MPI_PIECE"); s && *s)
            return std::clamp<std::size_t>(std::strtoull(s, nullptr, 10), 64, INT_MAX);
        return std::size_t(4) << 20;
    }();
    return size;
}

std::string message(kind k, std::uint32_t pool, std::uint64_t id, std::uint64_t aux,
                    std::string_view payload) {
    std::string m(sizeof(header) + payload.size(), '\0');
    const header h{k, pool, id, aux};
    std::memcpy(m.data(), &h, sizeof h);
    if (!payload.empty()) std::memcpy(m.data() + sizeof h, payload.data(), payload.size());
    return m;
}

header header_of(std::string_view m) {
    header h{};
    if (m.size() >= sizeof h) std::memcpy(&h, m.data(), sizeof h);
    return h;
}

link::link() {
    m_thread = std::thread([this] { run(); });
    std::unique_lock lock(m_lock);
    m_wake.wait(lock, [this] { return m_ready; });
}

link::~link() {
    stop(std::chrono::milliseconds(2000));
}

void link::start(callbacks cb, std::chrono::microseconds heartbeat, std::chrono::microseconds silence) {
    std::lock_guard lock(m_lock);
    m_cb = std::move(cb);
    m_heartbeat = heartbeat;
    m_silence = silence;
    m_started = true;
    m_wake.notify_all();
}

void link::send(int dest, std::shared_ptr<const std::string> bytes) {
    std::lock_guard lock(m_lock);
    m_outbox.emplace_back(dest, std::move(bytes));
    m_wake.notify_all();
}

void link::stop(std::chrono::milliseconds grace) {
    {
        std::lock_guard lock(m_lock);
        if (!m_stopping) {
            m_stopping = true;
            m_stop_deadline = clock::now() + grace;
        }
        m_started = true;
        m_wake.notify_all();
    }
    if (m_thread.joinable()) m_thread.join();
}

void link::abort(int code) {
    std::fflush(nullptr);
    // Only the link's thread calls MPI; from it, at once.
    if (std::this_thread::get_id() == m_thread.get_id()) {
        MPI_Abort(MPI_COMM_WORLD, code);
    } else {
        std::lock_guard lock(m_lock);
        m_abort_code = code;
        m_wake.notify_all();
    }
    // MPI_Abort ends every rank, this one too; should it not, within a bound:
    std::this_thread::sleep_for(std::chrono::seconds(10));
    ::_exit(code);
}

void link::run() {
    // Short sleeps must be short: the default timer slack adds 50 µs to each.
    ::prctl(PR_SET_TIMERSLACK, 1UL);
    // Open MPI reads TCP sockets only every 10 ms unless a blocking call
    // spins in it; a probing thread needs them read whenever it looks
    // (unless the user chose a rate).
    ::setenv("OMPI_MCA_mpi_event_tick_rate", "1", 0);
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    // Errors come back as codes, to be reported with the rank they concern,
    // rather than aborting the job with MPI's generic message.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &m_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &m_size);
    // Open MPI reads its sockets on one progress call in eight, unless some
    // part of it has said it waits on them, as its own blocking calls do:
    // this thread does, so that each probe sees what has arrived. Elsewhere
    // (another MPI), eight probes make one poll.
    int probes = 8;
    using users_increment = void (*)();
    if (auto f =
            reinterpret_cast<users_increment>(::dlsym(RTLD_DEFAULT, "opal_progress_event_users_increment"))) {
        f();
        probes = 1;
    }
    {
        std::unique_lock lock(m_lock);
        m_ready = true;
        m_wake.notify_all();
        m_wake.wait(lock, [this] { return m_started; });
    }

    const std::size_t piece = piece_size();
    const auto ranks = static_cast<std::size_t>(m_size);
    std::vector<MPI_Request> send_requests;
    std::vector<sending> sends;
    std::vector<std::deque<outgoing>> queues(ranks);  // per rank, in order
    std::vector<int> pieces_out(ranks, 0);
    std::deque<receiving> receives;
    std::vector<assembly> assemblies(ranks);
    std::vector<clock::time_point> heard(ranks, clock::now());
    std::vector<char> silent(ranks, 0);
    auto last_activity = clock::now();
    auto last_heartbeat = clock::time_point{};
    std::vector<std::pair<int, std::shared_ptr<const std::string>>> outbox;

    auto fail = [&](int code, int rank) {
        if (m_cb.on_error) m_cb.on_error(rank, error_text(code));
        MPI_Abort(MPI_COMM_WORLD, 1);
    };
    auto post = [&](int dest, int tag, bool is_piece, const std::shared_ptr<const std::string>& bytes,
                    const char* data, std::size_t n) {
        MPI_Request request;
        if (int rc = MPI_Isend(data, static_cast<int>(n), MPI_BYTE, dest, tag, MPI_COMM_WORLD, &request))
            fail(rc, dest);
        send_requests.push_back(request);
        sends.push_back({dest, is_piece, bytes});
    };
    // Hands to MPI what may go to `dest` now, in order: whole messages, and
    // the pieces of a large one while fewer than `piece_window` are in flight.
    auto pump = [&](int dest) {
        auto& q = queues[static_cast<std::size_t>(dest)];
        auto& out = pieces_out[static_cast<std::size_t>(dest)];
        while (!q.empty()) {
            auto& o = q.front();
            const std::size_t n = o.bytes->size();
            if (n <= piece) {
                post(dest, message_tag, false, o.bytes, o.bytes->data(), n);
                q.pop_front();
                continue;
            }
            if (o.posted == 0) {
                auto size = std::make_shared<const std::string>(reinterpret_cast<const char*>(&n), sizeof n);
                post(dest, announce_tag, false, size, size->data(), size->size());
            }
            for (; o.posted < n && out < piece_window; ++out) {
                const std::size_t len = std::min(piece, n - o.posted);
                post(dest, piece_tag, true, o.bytes, o.bytes->data() + o.posted, len);
                o.posted += len;
            }
            if (o.posted < n) return;
            q.pop_front();
        }
    };

    auto last_turn = clock::now();
    for (;;) {
        // A turn that took long (the machine swapping, say) kept this thread
        // deaf: the others were not silent.
        if (const auto gap = clock::now() - last_turn; gap > std::chrono::milliseconds(100))
            for (auto& h : heard) h += gap;
        last_turn = clock::now();
        std::chrono::microseconds heartbeat, silence;
        bool stopping;
        int abort_code;
        {
            std::lock_guard lock(m_lock);
            outbox.swap(m_outbox);
            heartbeat = m_heartbeat;
            silence = m_silence;
            stopping = m_stopping && clock::now() >= m_stop_deadline;
            const bool queued = std::any_of(queues.begin(), queues.end(), [](auto& q) { return !q.empty(); });
            stopping =
                stopping || (m_stopping && m_outbox.empty() && outbox.empty() && sends.empty() && !queued);
            abort_code = m_abort_code;
        }
        if (abort_code >= 0) MPI_Abort(MPI_COMM_WORLD, abort_code);
        if (stopping) break;
        // Heartbeats are not traffic: they must not keep the thread polling fast.
        bool active = !outbox.empty();
        const auto now = clock::now();
        if (heartbeat.count() > 0 && m_rank != 0 && now - last_heartbeat >= heartbeat) {
            auto beat = std::make_shared<const std::string>(message(kind::heartbeat, 0, 0));
            post(0, heartbeat_tag, false, beat, beat->data(), beat->size());
            last_heartbeat = now;
        }
        for (auto& [dest, bytes] : outbox)
            queues[static_cast<std::size_t>(dest)].push_back({std::move(bytes)});
        outbox.clear();
        for (int dest = 0; dest < m_size; ++dest) pump(dest);

        // Match every message that has arrived, in order, and receive it
        // without blocking.
        for (;;) {
            int flag = 0;
            MPI_Message matched;
            MPI_Status status;
            for (int probe = 0; probe < probes && !flag; ++probe)
                if (int rc =
                        MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &matched, &status))
                    fail(rc, -1);
            if (!flag) break;
            int n = 0;
            MPI_Get_count(&status, MPI_BYTE, &n);
            const int source = status.MPI_SOURCE;
            auto& a = assemblies[static_cast<std::size_t>(source)];
            if (status.MPI_TAG == announce_tag) {
                // Tiny, and here already: taken at once, to know where the
                // pieces go.
                std::size_t total = 0;
                if (int rc = MPI_Mrecv(&total, static_cast<int>(sizeof total), MPI_BYTE, &matched,
                                       MPI_STATUS_IGNORE))
                    fail(rc, source);
                a.message.bytes.reset(new char[std::max<std::size_t>(1, total)]);
                a.message.size = total;
                a.filled = 0;
                active = true;
                continue;
            }
            auto& r = receives.emplace_back();
            r.source = source;
            r.heartbeat = status.MPI_TAG == heartbeat_tag;
            char* into = nullptr;
            if (status.MPI_TAG == piece_tag) {
                if (a.filled + static_cast<std::size_t>(n) > a.message.size) fail(MPI_ERR_TRUNCATE, source);
                into = a.message.bytes.get() + a.filled;
                a.filled += static_cast<std::size_t>(n);
                r.carries = a.filled == a.message.size;
                if (r.carries) r.message = std::move(a.message);
            } else {
                r.message.size = static_cast<std::size_t>(n);
                r.message.bytes.reset(new char[std::max(1, n)]);
                into = r.message.bytes.get();
            }
            if (int rc = MPI_Imrecv(into, n, MPI_BYTE, &matched, &r.request)) fail(rc, source);
            active = active || !r.heartbeat;
        }
        for (auto& r : receives) {
            if (r.done) continue;
            int flag = 0;
            if (int rc = MPI_Test(&r.request, &flag, MPI_STATUS_IGNORE)) fail(rc, r.source);
            r.done = flag != 0;
        }
        // Delivered in order from each rank; what one rank has not finished
        // sending holds back nothing from the others. A rank is heard each
        // time a message or a piece from it is complete.
        std::vector<char> blocked(ranks, 0);
        for (auto r = receives.begin(); r != receives.end();) {
            const auto source = static_cast<std::size_t>(r->source);
            if (!r->done || (!r->heartbeat && blocked[source])) {
                if (!r->heartbeat) blocked[source] = 1;
                ++r;
                continue;
            }
            auto message = std::move(r->message);
            const bool deliver = !r->heartbeat && r->carries;
            r = receives.erase(r);
            heard[source] = clock::now();
            if (silent[source]) {
                silent[source] = 0;
                if (m_cb.on_heard_again) m_cb.on_heard_again(static_cast<int>(source));
            }
            if (deliver && m_cb.on_message) m_cb.on_message(static_cast<int>(source), std::move(message));
        }

        if (!send_requests.empty()) {
            int done = 0;
            std::vector<int> indices(send_requests.size());
            std::vector<MPI_Status> statuses(send_requests.size());
            int rc = MPI_Testsome(static_cast<int>(send_requests.size()), send_requests.data(), &done,
                                  indices.data(), statuses.data());
            if (rc != MPI_SUCCESS) {
                int dest = -1;
                for (int i = 0; i < done; ++i)
                    if (statuses[static_cast<std::size_t>(i)].MPI_ERROR != MPI_SUCCESS)
                        dest = sends[static_cast<std::size_t>(indices[static_cast<std::size_t>(i)])].dest;
                fail(rc, dest);
            }
            if (done != MPI_UNDEFINED && done > 0) {
                std::size_t kept = 0;
                for (std::size_t i = 0; i < send_requests.size(); ++i) {
                    if (send_requests[i] == MPI_REQUEST_NULL) {
                        if (sends[i].piece) --pieces_out[static_cast<std::size_t>(sends[i].dest)];
                        continue;
                    }
                    send_requests[kept] = send_requests[i];
                    sends[kept] = std::move(sends[i]);
                    ++kept;
                }
                send_requests.resize(kept);
                sends.resize(kept);
                for (int dest = 0; dest < m_size; ++dest) pump(dest);
            }
        }

        if (m_rank == 0 && silence.count() > 0) {
            const auto t = clock::now();
            for (int r = 1; r < m_size; ++r) {
                auto i = static_cast<std::size_t>(r);
                if (!silent[i] && t - heard[i] > silence) {
                    silent[i] = 1;
                    if (m_cb.on_silent) m_cb.on_silent(r);
                }
            }
        }

        // Sleep between polls: a microsecond (in practice some 25 µs, the
        // machine's wake-up time) while bytes are moving and for a while
        // after traffic, as an answer is likely soon; then longer: 1 ms, and
        // 2 ms after a second without traffic. Transfers with a rank gone
        // silent do not count: they may never complete.
        if (active) last_activity = clock::now();
        const auto idle = clock::now() - last_activity;
        const auto live = [&](int rank) { return !silent[static_cast<std::size_t>(rank)]; };
        const bool moving =
            std::any_of(sends.begin(), sends.end(), [&](auto& x) { return live(x.dest); }) ||
            std::any_of(receives.begin(), receives.end(), [&](auto& x) { return live(x.source); });
        auto pause = std::chrono::microseconds(2000);
        if (moving || idle < std::chrono::milliseconds(3))
            pause = std::chrono::microseconds(1);
        else if (idle < std::chrono::milliseconds(20))
            pause = std::chrono::microseconds(200);
        else if (idle < std::chrono::seconds(1))
            pause = std::chrono::microseconds(1000);
        std::unique_lock lock(m_lock);
        m_wake.wait_for(lock, pause, [this] { return !m_outbox.empty() || m_stopping || m_abort_code >= 0; });
    }
    MPI_Finalize();
}

}  // namespace corun::detail::mpi
