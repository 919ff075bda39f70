// A subproject user's own test: corun's loopback httpbin (httpbin_dep), fetched
// with corun's client. Prints "httpbin: ok" when the body is the seeded one.
#include <corun/corun.hpp>

#include <iostream>

#include "httpbin.hpp"

corun::awaitable<int> app(std::string url) {
    const corun::http::response r = co_await corun::http::fetch(url);
    const bool ok = r.status == 200 && r.body == httpbin::seeded_bytes(64, 7);
    std::cout << "httpbin: " << (ok ? "ok" : "wrong answer") << '\n';
    co_return ok ? 0 : 1;
}

int main() {
    httpbin::background_server server({});
    return corun::run(app(server.base_url() + "/bytes/64?seed=7"));
}
