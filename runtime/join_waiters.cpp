#include "corun/detail/join_waiters.hpp"

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

namespace corun::detail {

namespace {
std::exception_ptr join_cancelled() {
    return std::make_exception_ptr(
        boost::system::system_error(asio::error::operation_aborted, "corun: join cancelled"));
}
}  // namespace

join_waiters::~join_waiters() {
    complete_all(join_cancelled());
}

void join_waiters::add(handler h) {
    const std::uint64_t id = ++m_next;
    auto slot = h.slot();
    m_waiting.emplace(id, std::move(h));
    // The slot keeps its handler after the wait ends (until the awaiting
    // coroutine's next operation replaces it): it must not outlive us.
    if (slot.is_connected())
        slot.assign([alive = std::weak_ptr<join_waiters*>(m_alive), id](asio::cancellation_type) {
            if (auto self = alive.lock()) (*self)->cancel(id);
        });
}

void join_waiters::complete_all(std::exception_ptr error) {
    auto waiting = std::move(m_waiting);
    m_waiting.clear();
    for (auto& [id, h] : waiting) {
        auto slot = h.slot();
        if (slot.is_connected()) slot.clear();
        h.post(error);
    }
}

void join_waiters::cancel(std::uint64_t id) {
    auto it = m_waiting.find(id);
    if (it == m_waiting.end()) return;
    auto h = std::move(it->second);
    m_waiting.erase(it);
    // Runs inside the slot's own handler: leave the slot as it is.
    h.post(join_cancelled());
}

}  // namespace corun::detail
