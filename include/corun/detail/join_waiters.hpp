// The coroutines waiting in a pool's `join()`, each cancellable on its own.
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <memory>

#include "corun/awaitable.hpp"
#include "corun/detail/erased_handler.hpp"

namespace corun::detail {

/// Waiters for one event (a pool having finished). A waiter whose operation is
/// cancelled leaves at once with `operation_aborted`; the others stay. Used
/// on one strand only.
class CORUN_API join_waiters {
public:
    using handler = erased_handler<std::exception_ptr>;

    join_waiters() = default;
    join_waiters(const join_waiters&) = delete;
    join_waiters& operator=(const join_waiters&) = delete;
    /// Waiters still there fail with `operation_aborted`.
    ~join_waiters();

    void add(handler h);
    /// Completes every waiter with `error` (none: success).
    void complete_all(std::exception_ptr error = nullptr);
    bool empty() const noexcept { return m_waiting.empty(); }

private:
    void cancel(std::uint64_t id);

    std::map<std::uint64_t, handler> m_waiting;
    std::uint64_t m_next = 0;
    std::shared_ptr<join_waiters*> m_alive = std::make_shared<join_waiters*>(this);
};

}  // namespace corun::detail
