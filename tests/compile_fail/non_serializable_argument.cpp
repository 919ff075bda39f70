// Must not compile: a process-pool task argument that cannot be serialized.
#include <corun/process_pool.hpp>

#include <memory>

struct holds_a_pointer {
    std::unique_ptr<int> value;  // neither trivially copyable nor cereal-serializable
};

int use(holds_a_pointer h) {
    return *h.value;
}

corun::awaitable<int> submit_it(corun::process_pool& pool) {
    co_return co_await pool.submit(use, holds_a_pointer{std::make_unique<int>(1)});
}
