// The client's DNS cache: a host name is resolved once per dns_cache_ttl.
// This program counts the calls to getaddrinfo by defining it: the library's
// calls reach this definition first, which forwards to the C library's.
#include <dlfcn.h>
#include <netdb.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "corun/http/client.hpp"
#include "http_support.hpp"
#include "httpbin.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
namespace http = corun::http;

namespace {
std::atomic<int> lookups{0};
}  // namespace

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
    using real_t = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
    static const auto real = reinterpret_cast<real_t>(::dlsym(RTLD_NEXT, "getaddrinfo"));
    if (node && std::string(node) == "localhost") ++lookups;
    return real(node, service, hints, res);
}

namespace {

/// `n` GETs of `url` on one client, each on a new connection (the pool keeps
/// none: idle_timeout 0), `pause` apart.
awaitable<void> gets(http::client_options options, std::string url, int n, std::chrono::milliseconds pause) {
    http::client client{co_await corun::this_executor(), options};
    for (int i = 0; i < n; ++i) {
        if (i > 0) co_await sleep_for(pause);
        http::response r = co_await client.get(url);
        CHECK(r.status == 200);
    }
}

}  // namespace

TEST_CASE("a host name is resolved once per dns_cache_ttl, and on every connection with 0", "[http_dns]") {
    httpbin::background_server server({});
    const std::string url = "http://localhost:" + std::to_string(server.port()) + "/get";

    lookups = 0;
    block_on_within(30s, gets({.timeout = 10s, .idle_timeout = 0ms}, url, 3, 10ms));
    CHECK(server.connections_accepted() == 3);
    CHECK(lookups == 1);

    lookups = 0;
    block_on_within(30s, gets({.timeout = 10s, .dns_cache_ttl = 0ms, .idle_timeout = 0ms}, url, 3, 10ms));
    CHECK(lookups == 3);

    // Past the TTL it is resolved again.
    lookups = 0;
    block_on_within(30s, gets({.timeout = 10s, .dns_cache_ttl = 200ms, .idle_timeout = 0ms}, url, 2, 400ms));
    CHECK(lookups == 2);
}

TEST_CASE("addresses none of which connects are resolved again", "[http_dns]") {
    std::uint16_t port = 0;
    {
        httpbin::background_server gone({});
        port = gone.port();
    }
    const std::string url = "http://localhost:" + std::to_string(port) + "/get";
    lookups = 0;
    block_on_within(30s, [&]() -> awaitable<void> {
        http::client client{co_await corun::this_executor(), {.timeout = 10s}};
        for (int i = 0; i < 2; ++i) {
            try {
                co_await client.get(url);
                FAIL("a request to a closed port succeeded");
            } catch (const http::error& e) {
                CHECK(e.kind() == http::error_kind::connect);
            }
        }
    }());
    CHECK(lookups == 2);
}
