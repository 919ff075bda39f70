// Compiles only with the defines corun's headers must be compiled with, which
// every way of taking corun (Meson, pkg-config, CMake) must pass on.
#include <corun/run.hpp>

#ifndef BOOST_ASIO_SEPARATE_COMPILATION
#error "corun's BOOST_ASIO_SEPARATE_COMPILATION did not reach this program"
#endif
#ifndef BOOST_ASIO_NO_DEPRECATED
#error "corun's BOOST_ASIO_NO_DEPRECATED did not reach this program"
#endif

corun::awaitable<int> zero() {
    co_return 0;
}

int main() {
    return corun::run(zero());
}
