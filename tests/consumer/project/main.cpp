// Proves corun works from outside its tree: the squares of 0..4 via gather.
#include <corun/corun.hpp>

#include <iostream>
#include <ranges>

corun::awaitable<long> square(long x) {
    co_return x* x;
}

corun::awaitable<int> app() {
    auto squares = co_await corun::gather(corun::range(5) | std::views::transform(square));
    std::cout << "consumer:";
    for (long s : squares) std::cout << ' ' << s;
    std::cout << '\n';
    co_return 0;
}

int main() {
    return corun::run(app());
}
