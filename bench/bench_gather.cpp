// gather: corun::gather over 100 000 trivial awaitables against Asio's own
// range make_parallel_group over the same coroutines, in the same run.
#include <corun/corun.hpp>

#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <stdexcept>

#include "bench.hpp"

namespace {

constexpr int n = 100'000;

corun::awaitable<int> trivial(int i) {
    co_return i;
}

corun::awaitable<long> with_corun() {
    auto out = co_await corun::gather(
        corun::range(n) | std::views::transform([](std::int64_t i) { return trivial(static_cast<int>(i)); }));
    co_return static_cast<long>(out.size());
}

corun::awaitable<long> with_asio_group() {
    namespace asio = boost::asio;
    auto ex = co_await corun::this_executor();
    using op_type = decltype(asio::co_spawn(ex, trivial(0), asio::deferred));
    std::vector<op_type> ops;
    ops.reserve(n);
    for (int i = 0; i < n; ++i) ops.push_back(asio::co_spawn(ex, trivial(i), asio::deferred));
    auto [order, errors, values] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                       .async_wait(asio::experimental::wait_for_all(), corun::use_awaitable);
    co_return static_cast<long>(values.size());
}

double ns_per_op(corun::awaitable<long> (*make)()) {
    return corun_bench::best_ns(7,
                                [&] {
                                    if (corun::run(make()) != n)
                                        throw std::logic_error("gather lost results");
                                }) /
           n;
}

corun_bench::register_case gather_case("gather", [](const std::vector<std::string>&) {
    // Interleave so both see the same machine state; keep each side's best.
    double corun_ns = 1e300, asio_ns = 1e300;
    for (int round = 0; round < 3; ++round) {
        corun_ns = std::min(corun_ns, ns_per_op(with_corun));
        asio_ns = std::min(asio_ns, ns_per_op(with_asio_group));
    }
    corun_bench::json_line("gather")
        .add("n", static_cast<long long>(n))
        .add("corun_ns_per_op", corun_ns)
        .add("asio_group_ns_per_op", asio_ns)
        .add("ratio_vs_asio", corun_ns / asio_ns)
        .print();
    return 0;
});

}  // namespace
