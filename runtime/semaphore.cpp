#include "corun/semaphore.hpp"

#include <boost/asio/error.hpp>

namespace corun {

namespace {
void complete(detail::erased_handler<boost::system::error_code>& h, boost::system::error_code ec) {
    h.slot().clear();
    h.post(ec);
}
}  // namespace

semaphore::~semaphore() {
    for (auto& h : m_waiters) complete(h, asio::error::operation_aborted);
}

bool semaphore::try_acquire() noexcept {
    if (m_available == 0 || !m_waiters.empty()) return false;
    --m_available;
    return true;
}

void semaphore::release(std::size_t n) {
    m_available += n;
    while (m_available > 0 && !m_waiters.empty()) {
        --m_available;
        handler_type h = std::move(m_waiters.front());
        m_waiters.pop_front();
        complete(h, {});
    }
}

void semaphore::start_acquire(handler_type handler) {
    if (try_acquire()) {
        handler.post({});
        return;
    }
    auto slot = handler.slot();
    m_waiters.push_back(std::move(handler));
    if (slot.is_connected()) {
        auto it = std::prev(m_waiters.end());
        slot.assign([this, it](asio::cancellation_type) {
            handler_type h = std::move(*it);
            m_waiters.erase(it);
            complete(h, asio::error::operation_aborted);
        });
    }
}

}  // namespace corun
