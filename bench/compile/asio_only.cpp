// Compile cost, the floor: an Asio coroutine on an io_context, without corun.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

boost::asio::awaitable<int> one(int x) {
    co_return x;
}

int main() {
    boost::asio::io_context loop;
    boost::asio::co_spawn(loop, one(1), boost::asio::detached);
    loop.run();
}
