#include "corun/detail/child_group.hpp"

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>
#include <cassert>
#include <stdexcept>

namespace corun::detail {

child_group::~child_group() {
    assert(m_pending == 0 && "a child outlived its awaiting coroutine");
}

std::size_t child_group::open() {
    std::size_t id;
    if (m_free.empty()) {
        id = m_children.size();
        m_children.emplace_back();
    } else {
        id = m_free.back();
        m_free.pop_back();
    }
    m_children[id].running = true;
    ++m_pending;
    return id;
}

void child_group::close(std::size_t id) {
    child& c = m_children[id];
    c.signal.slot().clear();
    c.running = false;
    m_free.push_back(id);
    --m_pending;
}

void child_group::cancel_all(asio::cancellation_type type) {
    m_stopping = true;
    for (child& c : m_children) {
        if (c.running) c.signal.emit(type);
    }
}

void child_group::notify() {
    if (!m_waiter) {
        m_notified = true;
        return;
    }
    m_waiter.slot().clear();
    // Posted, never called inline: the caller is a child's completion, and the
    // resumed coroutine may destroy this group on its way out.
    m_waiter.post();
}

void child_group::start_wait(erased_handler<> handler) {
    if (m_waiter) throw std::logic_error("corun: two coroutines awaited the same stream at once");
    if (std::exchange(m_notified, false)) {
        handler.post();
        return;
    }
    auto slot = handler.slot();
    if (slot.is_connected()) {
        slot.assign([this](asio::cancellation_type type) {
            m_outside_cancel = true;
            cancel_all(type);
        });
    }
    m_waiter = std::move(handler);
}

void throw_cancelled() {
    throw boost::system::system_error(asio::error::operation_aborted, "corun: cancelled");
}

}  // namespace corun::detail
