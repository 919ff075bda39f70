// Compile cost: a program that includes only corun/process_pool.hpp (and run.hpp to run it).
#include <corun/process_pool.hpp>
#include <corun/run.hpp>

long square(long x) {
    return x * x;
}

corun::awaitable<int> app() {
    corun::process_pool pool{co_await corun::this_executor()};
    const long nine = co_await pool.submit(square, 3L);
    co_return nine == 9 ? 0 : 1;
}

int main() {
    return corun::run(app());
}
