// make-test-certs OUTDIR: the TLS test suite's certificates, made at build time.
//   ca.pem                          the test CA
//   server.pem, server.key          signed by it, for localhost and 127.0.0.1
//   wrong-host.pem, wrong-host.key  signed by it, for wrong-host.invalid only
//   expired.pem, expired.key        signed by it, right names, validity over
//   self-signed.pem, self-signed.key  right names, signed by nobody anyone trusts
#include <chrono>
#include <exception>
#include <iostream>
#include <string>

#include "certs.hpp"

namespace {

using namespace std::chrono_literals;
namespace certs = httpbin::certs;

void write(const std::string& dir, const std::string& name, const certs::identity& id) {
    certs::write_file(dir + "/" + name + ".pem", id.cert_pem);
    certs::write_file(dir + "/" + name + ".key", id.key_pem);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make-test-certs OUTDIR\n";
        return 2;
    }
    const std::string dir = argv[1];
    try {
        constexpr std::chrono::seconds ten_years = 24h * 3650;
        const certs::cert_options localhost{
            .common_name = "localhost", .dns_names = {"localhost"}, .ip_addresses = {"127.0.0.1"}};

        auto ca = certs::make_self_signed(
            {.common_name = "corun test CA", .is_ca = true, .not_before = -24h, .not_after = ten_years});
        certs::write_file(dir + "/ca.pem", ca.cert_pem);

        write(dir, "server", certs::make_signed(localhost, ca));
        write(dir, "wrong-host",
              certs::make_signed({.common_name = "wrong-host.invalid", .dns_names = {"wrong-host.invalid"}},
                                 ca));
        auto expired = localhost;
        expired.not_before = -48h;
        expired.not_after = -24h;
        write(dir, "expired", certs::make_signed(expired, ca));
        write(dir, "self-signed", certs::make_self_signed(localhost));
        write(dir, "client",
              certs::make_signed({.common_name = "corun test client", .dns_names = {"client.invalid"}}, ca));
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "make-test-certs: " << e.what() << "\n";
        return 1;
    }
}
