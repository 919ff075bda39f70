#include "corun/http/client.hpp"

#include <algorithm>
#include <cctype>
#include <string>

#include "http_support.hpp"
#include "httpbin.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
namespace http = corun::http;

namespace {

/// An HTTPS httpbin serving the test certificate `name` (`name`.pem, `name`.key).
httpbin::options serving(const std::string& name) {
    return {.tls = true, .cert_file = cert_path(name + ".pem"), .key_file = cert_path(name + ".key")};
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

/// What the error says after naming its URL: "<kind> error for <url>: <detail>".
std::string detail_of(const http::error& e) {
    std::string what = e.what();
    auto at = what.find(e.url());
    return lower(at == std::string::npos ? what : what.substr(at + e.url().size()));
}

http::error tls_error(const std::string& url, http::client_options options) {
    http::error e = thrown_within<http::error>(10s, get_once(std::move(options), url));
    INFO(e.what());
    CHECK(kind_name(e) == "tls");
    CHECK(e.url() == url);
    return e;
}

http::response get_ok(const std::string& url, http::client_options options) {
    http::response r = block_on_within(10s, get_once(std::move(options), url));
    CHECK(r.status == 200);
    CHECK(r.url == url);
    return r;
}

/// The same server, by name instead of by address.
std::string by_name(const httpbin::background_server& server, const std::string& path) {
    return "https://localhost:" + std::to_string(server.port()) + path;
}

}  // namespace

TEST_CASE("a certificate from a trusted CA verifies, by address and by name", "[http_tls]") {
    httpbin::background_server server{serving("server")};
    const http::client_options trusting{.ca_file = cert_path("ca.pem")};
    http::response r = get_ok(server.base_url() + "/get", trusting);
    CHECK(r.tls_verified);
    r = get_ok(by_name(server, "/get"), trusting);
    CHECK(r.tls_verified);
}

TEST_CASE("an untrusted self-signed certificate is rejected by default", "[http_tls]") {
    httpbin::background_server server{serving("self-signed")};
    const std::string url = server.base_url() + "/get";
    // Neither the system's store nor the test CA vouches for it.
    for (const std::string& ca : {std::string(), cert_path("ca.pem")}) {
        CAPTURE(ca);
        http::error e = tls_error(url, {.ca_file = ca});
        INFO(e.what());
        CHECK(contains(detail_of(e), "self-signed"));
    }
}

TEST_CASE("a certificate for another host name is rejected by default", "[http_tls]") {
    httpbin::background_server server{serving("wrong-host")};
    // Trusting the CA that signed it leaves the name as the only fault.
    const http::client_options trusting{.ca_file = cert_path("ca.pem")};

    http::error e = tls_error(server.base_url() + "/get", trusting);
    INFO(e.what());
    CHECK(contains(detail_of(e), "mismatch"));
    CHECK(contains(detail_of(e), "ip address"));

    e = tls_error(by_name(server, "/get"), trusting);
    INFO(e.what());
    CHECK(contains(detail_of(e), "mismatch"));
    CHECK(contains(detail_of(e), "hostname"));

    // And with nobody trusting it, it is rejected all the same.
    tls_error(server.base_url() + "/get", {});
}

TEST_CASE("an expired certificate is rejected by default", "[http_tls]") {
    httpbin::background_server server{serving("expired")};
    const std::string url = server.base_url() + "/get";
    http::error e = tls_error(url, {.ca_file = cert_path("ca.pem")});
    INFO(e.what());
    CHECK(contains(detail_of(e), "expired"));
    tls_error(url, {});
}

TEST_CASE("a self-signed certificate is accepted when ca_file names it", "[http_tls]") {
    httpbin::background_server server{serving("self-signed")};
    http::response r = get_ok(server.base_url() + "/get", {.ca_file = cert_path("self-signed.pem")});
    CHECK(r.tls_verified);
}

TEST_CASE("insecure accepts any certificate and reports it unverified", "[http_tls]") {
    const std::string name = GENERATE(as<std::string>{}, "self-signed", "wrong-host", "expired");
    CAPTURE(name);
    httpbin::background_server server{serving(name)};
    http::response r = get_ok(server.base_url() + "/get", {.insecure = true});
    CHECK_FALSE(r.tls_verified);
    r = get_ok(by_name(server, "/get"), {.ca_file = cert_path("ca.pem"), .insecure = true});
    CHECK_FALSE(r.tls_verified);
}

TEST_CASE("tls_verified is true only for a verified HTTPS response", "[http_tls]") {
    httpbin::background_server https{serving("server")};
    httpbin::background_server plain{{}};
    CHECK(get_ok(https.base_url() + "/get", {.ca_file = cert_path("ca.pem")}).tls_verified);
    // insecure turns the requirement off, not the check.
    CHECK(get_ok(https.base_url() + "/get", {.ca_file = cert_path("ca.pem"), .insecure = true}).tls_verified);
    CHECK_FALSE(get_ok(plain.base_url() + "/get", {}).tls_verified);
    CHECK_FALSE(get_ok(plain.base_url() + "/get", {.ca_file = cert_path("ca.pem")}).tls_verified);
}

TEST_CASE("a ca_file that cannot be read fails with kind tls, naming it", "[http_tls]") {
    httpbin::background_server server{serving("server")};
    const std::string missing = cert_path("no-such-ca.pem");
    http::error e = tls_error(server.base_url() + "/get", {.ca_file = missing});
    INFO(e.what());
    CHECK(contains(e.what(), missing));
}

TEST_CASE("https to a plain HTTP server fails with kind tls", "[http_tls]") {
    httpbin::background_server plain{{}};
    const std::string url = "https://127.0.0.1:" + std::to_string(plain.port()) + "/get";
    tls_error(url, {});
}
