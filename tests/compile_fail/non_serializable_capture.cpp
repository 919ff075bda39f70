// Must not compile: a lambda whose capture cannot be sent to a worker.
#include <corun/process_pool.hpp>

#include <string>

corun::awaitable<std::size_t> submit_it(corun::process_pool& pool, std::string text) {
    co_return co_await pool.submit([text] { return text.size(); });
}
