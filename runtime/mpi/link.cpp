#include "link.hpp"

#include <dlfcn.h>
#include <mpi.h>
#include <sys/prctl.h>
#include <unistd.h>

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

/// The datatype and count that describe `n` bytes: MPI_BYTE × n when `n`
/// fits an `int` count, else one element of a derived type of 1 MiB blocks
/// and a remainder. The same on both sides, so the type signatures match.
struct bytes_type {
    explicit bytes_type(std::size_t n) {
        if (n <= large_message_threshold()) {
            count = static_cast<int>(n);
            return;
        }
        constexpr std::size_t block = std::size_t(1) << 20;
        MPI_Datatype one_block, blocks;
        MPI_Type_contiguous(static_cast<int>(block), MPI_BYTE, &one_block);
        MPI_Type_contiguous(static_cast<int>(n / block), one_block, &blocks);
        const int rest = static_cast<int>(n % block);
        int lengths[2] = {1, rest};
        MPI_Aint offsets[2] = {0, static_cast<MPI_Aint>(n - n % block)};
        MPI_Datatype types[2] = {blocks, MPI_BYTE};
        MPI_Type_create_struct(rest ? 2 : 1, lengths, offsets, types, &type);
        MPI_Type_commit(&type);
        MPI_Type_free(&blocks);
        MPI_Type_free(&one_block);
        count = 1;
        derived = true;
    }
    /// Freeing a datatype in use by a pending operation is allowed: it goes
    /// once the operation completes.
    ~bytes_type() {
        if (derived) MPI_Type_free(&type);
    }
    bytes_type(const bytes_type&) = delete;
    bytes_type& operator=(const bytes_type&) = delete;

    MPI_Datatype type = MPI_BYTE;
    int count = 0;
    bool derived = false;
};

/// Heartbeats travel under their own tag, so that a receiver can tell them
/// from traffic before they have arrived.
constexpr int heartbeat_tag = 1;

struct sending {
    int dest;
    std::shared_ptr<const std::string> bytes;
};

struct receiving {
    int source;
    received message;
    MPI_Request request;
    bool done = false;
};

}  // namespace

std::size_t large_message_threshold() {
    static const std::size_t threshold = [] {
        if (const char* s = std::getenv("CORUN_MPI_LARGE_MESSAGE"); s && *s)
            return std::max<std::size_t>(1, std::strtoull(s, nullptr, 10));
        return std::size_t(INT_MAX);
    }();
    return threshold;
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

    std::vector<MPI_Request> send_requests;
    std::vector<sending> sends;
    std::deque<receiving> receives;
    std::vector<clock::time_point> heard(static_cast<std::size_t>(m_size), clock::now());
    std::vector<char> silent(static_cast<std::size_t>(m_size), 0);
    auto last_activity = clock::now();
    auto last_heartbeat = clock::time_point{};
    std::vector<std::pair<int, std::shared_ptr<const std::string>>> outbox;

    auto fail = [&](int code, int rank) {
        if (m_cb.on_error) m_cb.on_error(rank, error_text(code));
        MPI_Abort(MPI_COMM_WORLD, 1);
    };

    auto last_turn = clock::now();
    for (;;) {
        // A turn that took long (MPI busy with a large message, the machine
        // swapping) kept this thread deaf: the others were not silent.
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
            stopping = stopping || (m_stopping && m_outbox.empty() && outbox.empty() && sends.empty());
            abort_code = m_abort_code;
        }
        if (abort_code >= 0) MPI_Abort(MPI_COMM_WORLD, abort_code);
        if (stopping) break;
        // Heartbeats are not traffic: they must not keep the thread polling fast.
        bool active = !outbox.empty();
        const auto now = clock::now();
        if (heartbeat.count() > 0 && m_rank != 0 && now - last_heartbeat >= heartbeat) {
            outbox.emplace_back(0, std::make_shared<const std::string>(message(kind::heartbeat, 0, 0)));
            last_heartbeat = now;
        }
        for (auto& [dest, bytes] : outbox) {
            bytes_type t(bytes->size());
            MPI_Request request;
            const int tag = header_of(*bytes).kind == kind::heartbeat ? heartbeat_tag : 0;
            if (int rc = MPI_Isend(bytes->data(), t.count, t.type, dest, tag, MPI_COMM_WORLD, &request))
                fail(rc, dest);
            send_requests.push_back(request);
            sends.push_back({dest, std::move(bytes)});
        }
        outbox.clear();

        // Match every message that has arrived, in order; receive without
        // blocking, so that a large one does not stop heartbeats or other ranks.
        for (;;) {
            int flag = 0;
            MPI_Message matched;
            MPI_Status status;
            for (int probe = 0; probe < probes && !flag; ++probe)
                if (int rc =
                        MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &matched, &status))
                    fail(rc, -1);
            if (!flag) break;
            MPI_Count n = 0;
            MPI_Get_elements_x(&status, MPI_BYTE, &n);
            auto& r = receives.emplace_back();
            r.source = status.MPI_SOURCE;
            r.message.size = static_cast<std::size_t>(n);
            r.message.bytes.reset(new char[std::max<std::size_t>(1, r.message.size)]);
            bytes_type t(r.message.size);
            if (int rc = MPI_Imrecv(r.message.bytes.get(), t.count, t.type, &matched, &r.request))
                fail(rc, r.source);
            active = active || status.MPI_TAG != heartbeat_tag;
        }
        for (auto& r : receives) {
            if (r.done) continue;
            int flag = 0;
            if (int rc = MPI_Test(&r.request, &flag, MPI_STATUS_IGNORE)) fail(rc, r.source);
            r.done = flag != 0;
            // Bytes are arriving from it: it is alive.
            heard[static_cast<std::size_t>(r.source)] = clock::now();
        }
        while (!receives.empty() && receives.front().done) {
            auto r = std::move(receives.front());
            receives.pop_front();
            heard[static_cast<std::size_t>(r.source)] = clock::now();
            if (silent[static_cast<std::size_t>(r.source)]) {
                silent[static_cast<std::size_t>(r.source)] = 0;
                if (m_cb.on_heard_again) m_cb.on_heard_again(r.source);
            }
            if (header_of(r.message.view()).kind != kind::heartbeat && m_cb.on_message)
                m_cb.on_message(r.source, std::move(r.message));
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
                    if (send_requests[i] == MPI_REQUEST_NULL) continue;
                    send_requests[kept] = send_requests[i];
                    sends[kept] = std::move(sends[i]);
                    ++kept;
                }
                send_requests.resize(kept);
                sends.resize(kept);
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
        // machine's wake-up time) for a while after traffic, as an answer is
        // likely soon, then longer, never more than 1 ms when idle.
        if (active) last_activity = clock::now();
        const auto idle = clock::now() - last_activity;
        auto pause = std::chrono::microseconds(1000);
        if (!sends.empty() || !receives.empty() || idle < std::chrono::milliseconds(3))
            pause = std::chrono::microseconds(1);
        else if (idle < std::chrono::milliseconds(20))
            pause = std::chrono::microseconds(200);
        std::unique_lock lock(m_lock);
        m_wake.wait_for(lock, pause, [this] { return !m_outbox.empty() || m_stopping || m_abort_code >= 0; });
    }
    MPI_Finalize();
}

}  // namespace corun::detail::mpi
