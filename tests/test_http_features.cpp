// The HTTP client against real servers: nginx compressing with gzip, and
// openssl s_server asking for a client certificate.
#include "corun/http/client.hpp"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "child_server.hpp"
#include "http_support.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;
namespace http = corun::http;

namespace {

/// A JSON document of about `n` bytes, compressible as real JSON is.
std::string json_document(std::size_t n) {
    std::string s = "[";
    for (std::size_t i = 0; s.size() < n; ++i) {
        if (i) s += ',';
        s += "{\"id\":";
        s += std::to_string(i);
        s += ",\"name\":\"item ";
        s += std::to_string(i * 7919 % 1000);
        s += "\",\"tags\":[\"a\",\"b\"],\"ok\":";
        s += i % 3 ? "true}" : "false}";
    }
    return s + "]";
}

/// Debian's nginx on loopback with `gzip on`, serving /data.json.
class gzip_nginx {
public:
    explicit gzip_nginx(const std::string& json) {
        // nginx started as root serves as `nobody`, which must read the files.
        ::chmod(m_dir.path().c_str(), 0755);
        auto root = m_dir.path() / "www";
        std::filesystem::create_directories(root);
        std::filesystem::create_directories(m_dir.path() / "tmp");
        std::ofstream(root / "data.json", std::ios::binary) << json;
        auto conf = m_dir.path() / "nginx.conf";
        m_server = child_server::on_free_port([&](std::uint16_t port) {
            std::ofstream(conf) << "worker_processes 1;\ndaemon off;\npid nginx.pid;\nlock_file nginx.lock;\n"
                                   "error_log error.log warn;\nevents { worker_connections 256; }\n"
                                   "http {\n access_log off;\n client_body_temp_path tmp;\n"
                                   " types { application/json json; }\n"
                                   " gzip on;\n gzip_types application/json;\n gzip_min_length 0;\n"
                                   " server {\n  listen 127.0.0.1:"
                                << port << ";\n  root " << root.string() << ";\n }\n}\n";
            return std::vector<std::string>{
                "/usr/sbin/nginx", "-p", m_dir.path().string() + "/",          "-c",
                conf.string(),     "-e", (m_dir.path() / "error.log").string()};
        });
        m_url = "http://127.0.0.1:" + std::to_string(m_server->port()) + "/data.json";
    }
    const std::string& url() const noexcept { return m_url; }

private:
    temp_dir m_dir;
    std::unique_ptr<child_server> m_server;
    std::string m_url;
};

}  // namespace

TEST_CASE("a gzip-encoded body from nginx is decoded, whole and streamed, and decompress = false leaves it",
          "[http_features]") {
    const std::string json = json_document(64 * 1024);
    gzip_nginx nginx(json);
    block_on_within(30s, [&]() -> awaitable<void> {
        http::client client{co_await corun::this_executor()};
        http::response r = co_await client.get(nginx.url());
        CHECK(r.status == 200);
        CHECK(r.header("content-encoding") == std::optional<std::string_view>("gzip"));
        CHECK(r.body.size() == json.size());
        CHECK((r.body == json));

        std::string method = "GET";
        http::streamed_response st = co_await client.stream(method, nginx.url());
        std::string streamed;
        for (;;) {
            std::string piece = co_await st.read_chunk(1000);
            if (piece.empty()) break;
            CHECK(piece.size() <= 1000);
            streamed += piece;
        }
        CHECK((streamed == json));

        // Off for one request: nothing is asked for, so nginx sends it plain.
        http::response plain = co_await client.get(nginx.url(), {}, {.decompress = false});
        CHECK(!plain.header("content-encoding"));
        CHECK((plain.body == json));

        // Off, but asked for by the caller: the encoded bytes come back as sent.
        const http::fields ask_gzip{{"Accept-Encoding", "gzip"}};
        http::response raw = co_await client.get(nginx.url(), ask_gzip, {.decompress = false});
        CHECK(raw.header("content-encoding") == std::optional<std::string_view>("gzip"));
        REQUIRE(raw.body.size() > 2);
        CHECK(static_cast<unsigned char>(raw.body[0]) == 0x1f);
        CHECK(static_cast<unsigned char>(raw.body[1]) == 0x8b);
        CHECK(raw.body.size() < json.size() / 3);
    }());
}

TEST_CASE("a body that decodes beyond max_body_size fails with kind too_large", "[http_features]") {
    const std::string json = json_document(256 * 1024);
    gzip_nginx nginx(json);
    auto e = thrown_within<http::error>(30s, get_once({.max_body_size = 64 * 1024}, nginx.url()));
    INFO(e.what());
    CHECK(e.kind() == http::error_kind::too_large);
    CHECK(contains(e.what(), "decoded"));
}

namespace {

/// openssl s_server on loopback asking for a client certificate from the test
/// CA (-Verify), answering GET with a status page (-www).
class cert_asking_server {
public:
    explicit cert_asking_server(bool tls13) {
        m_server = child_server::on_free_port([&](std::uint16_t port) {
            return std::vector<std::string>{"openssl",
                                            "s_server",
                                            "-accept",
                                            "127.0.0.1:" + std::to_string(port),
                                            "-cert",
                                            cert_path("server.pem"),
                                            "-key",
                                            cert_path("server.key"),
                                            "-CAfile",
                                            cert_path("ca.pem"),
                                            "-Verify",
                                            "1",
                                            "-www",
                                            "-quiet",
                                            "-naccept",
                                            "1000",
                                            tls13 ? "-tls1_3" : "-tls1_2"};
        });
        m_url = "https://127.0.0.1:" + std::to_string(m_server->port()) + "/";
    }
    const std::string& url() const noexcept { return m_url; }

private:
    std::unique_ptr<child_server> m_server;
    std::string m_url;
};

http::client_options with_cert(bool give_cert) {
    http::client_options o{.timeout = 10s, .ca_file = cert_path("ca.pem")};
    if (give_cert) {
        o.cert_file = cert_path("client.pem");
        o.key_file = cert_path("client.key");
    }
    return o;
}

}  // namespace

TEST_CASE("a client certificate is presented to a server that asks for one, and its absence is kind tls",
          "[http_features]") {
    const bool tls13 = GENERATE(true, false);
    CAPTURE(tls13);
    cert_asking_server server(tls13);

    http::response r = block_on_within(30s, get_once(with_cert(true), server.url()));
    CHECK(r.status == 200);
    CHECK(r.tls_verified);
    // s_server's status page shows the certificate it was given.
    CHECK(contains(r.body, "corun test client"));

    // TLS 1.3 checks it after the handshake, with a "certificate required"
    // alert on the first read (racing the request: tried a few times); TLS
    // 1.2 in the handshake, a plain handshake_failure alert. Both are tls.
    for (int i = 0; i < 3; ++i) {
        auto e = thrown_within<http::error>(30s, get_once(with_cert(false), server.url()));
        INFO(e.what());
        CHECK(e.kind() == http::error_kind::tls);
        if (tls13) CHECK(contains(e.what(), "certificate required"));
    }
}

TEST_CASE("a key that does not match the certificate, or a missing file, is kind tls naming it",
          "[http_features]") {
    cert_asking_server server(true);
    auto options = with_cert(true);
    options.key_file = cert_path("server.key");
    auto e = thrown_within<http::error>(30s, get_once(options, server.url()));
    INFO(e.what());
    CHECK(e.kind() == http::error_kind::tls);
    CHECK(contains(e.what(), "server.key"));

    options = with_cert(true);
    options.cert_file = cert_path("no-such.pem");
    e = thrown_within<http::error>(30s, get_once(options, server.url()));
    CHECK(e.kind() == http::error_kind::tls);
    CHECK(contains(e.what(), "no-such.pem"));
}

TEST_CASE("system_ca = false trusts ca_file alone", "[http_features]") {
    cert_asking_server server(true);
    auto options = with_cert(true);
    options.system_ca = false;
    http::response r = block_on_within(30s, get_once(options, server.url()));
    CHECK(r.status == 200);

    // Without the test CA nothing is trusted: the system store is not read.
    options.ca_file = cert_path("self-signed.pem");
    auto e = thrown_within<http::error>(30s, get_once(options, server.url()));
    INFO(e.what());
    CHECK(e.kind() == http::error_kind::tls);
    CHECK(contains(e.what(), "certificate verification failed"));
}
