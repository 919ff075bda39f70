// Must not compile, in each of its forms (-DCALL_submit, CALL_map,
// CALL_starmap, CALL_imap, CALL_imap_unordered, CALL_stage): a process-pool call with a lambda that captures
// a std::string, which cannot be sent to a worker. Each must fail with the one short message naming the
// callable's type.
#include <corun/pipeline.hpp>
#include <corun/process_pool.hpp>
#include <corun/range.hpp>

#include <string>
#include <tuple>
#include <vector>

corun::awaitable<void> use(corun::process_pool& pool, std::string text) {
    auto f = [text](long x) { return text.size() + x; };
#if defined(CALL_submit)
    co_await pool.submit(f, 1L);
#elif defined(CALL_map)
    co_await pool.map(f, corun::range(4));
#elif defined(CALL_starmap)
    std::vector<std::tuple<long> > args{{1}, {2}};
    co_await pool.starmap(f, args);
#elif defined(CALL_imap)
    auto s = pool.imap(f, corun::range(4));
    co_await s.next();
#elif defined(CALL_imap_unordered)
    auto s = pool.imap_unordered(f, corun::range(4));
    co_await s.next();
#elif defined(CALL_stage)
    corun::pipeline p(corun::range(4), corun::stage("f", pool, f));
    co_await p.collect();
#endif
}
