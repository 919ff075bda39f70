#include "corun/thread_pool.hpp"

#include <algorithm>
#include <thread>

namespace corun {

namespace {
std::size_t thread_count(const thread_pool_options& o) {
    return o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
}
}  // namespace

thread_pool::thread_pool(executor ex) : thread_pool(std::move(ex), thread_pool_options{}) {}

thread_pool::thread_pool(executor ex, thread_pool_options options)
    : m_ex(std::move(ex)), m_threads_count(thread_count(options)), m_threads(m_threads_count) {}

thread_pool::~thread_pool() {
    m_state->closed = true;
    m_threads.join();
}

void thread_pool::start_join(detail::join_waiters::handler handler) {
    m_state->closed = true;
    if (m_state->outstanding == 0) return handler.post(nullptr);
    m_state->joiners.add(std::move(handler));
}

}  // namespace corun
