// Compile cost: a program that includes only corun/gather.hpp (and run.hpp to run it).
#include <corun/gather.hpp>
#include <corun/run.hpp>

corun::awaitable<int> one(int x) {
    co_return x;
}

corun::awaitable<int> app() {
    auto [a, b] = co_await corun::gather(one(1), one(2));
    co_return a + b - 3;
}

int main() {
    return corun::run(app());
}
