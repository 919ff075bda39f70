// A real HTTP proxy for the tests: Debian's tinyproxy (package tinyproxy-bin,
// installed by scripts/install-deps), run as a child process on a loopback
// port of its own.
#pragma once

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "child_server.hpp"

namespace corun_test {

/// A tinyproxy listening on 127.0.0.1, allowing CONNECT to every port.
///
/// Its configuration and log live in a temporary directory. The process is
/// started in the constructor, which returns once it accepts connections (or
/// throws, saying why: tinyproxy missing, a configuration it refused …), and
/// is stopped and reaped in the destructor (see `child_server`).
class tinyproxy {
public:
    struct options {
        /// With a user, the proxy demands Basic authentication (tinyproxy's
        /// BasicAuth). tinyproxy's configuration takes letters, digits, '.',
        /// '_' and '-' only.
        std::string user = {};
        std::string password = {};
    };

    tinyproxy() : tinyproxy(options{}) {}
    explicit tinyproxy(options opts) : m_options(std::move(opts)) {
        for (const std::string* s : {&m_options.user, &m_options.password}) {
            for (char c : *s) {
                if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
                    throw std::invalid_argument(
                        "tinyproxy takes only letters, digits, '.', '_' and '-' in BasicAuth, not '" + *s +
                        "'");
            }
        }
        const std::string conf = (m_dir.path() / "tinyproxy.conf").string();
        m_server = child_server::on_free_port(
            [&](std::uint16_t port) {
                write_config(conf, port);
                return std::vector<std::string>{"tinyproxy", "-d", "-c", conf};
            },
            (m_dir.path() / "output.txt").string());
    }

    std::uint16_t port() const noexcept { return m_server->port(); }
    /// "http://127.0.0.1:PORT"
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
    /// The same with credentials in it: "http://user:password@127.0.0.1:PORT".
    std::string url_with(std::string_view user, std::string_view password) const {
        return "http://" + std::string(user) + ":" + std::string(password) +
               "@127.0.0.1:" + std::to_string(port());
    }

    /// Everything tinyproxy has logged so far.
    std::string log() const {
        std::ifstream in(log_path());
        std::ostringstream all;
        all << in.rdbuf();
        return all.str();
    }
    /// Requests it has read ("GET http://…", "CONNECT host:port" …), whatever
    /// it answered: tinyproxy logs each before it acts on it.
    std::size_t requests() const { return count_lines("]: Request (file descriptor "); }
    /// The CONNECT requests among them.
    std::size_t tunnels() const { return count_lines("): CONNECT "); }

private:
    std::filesystem::path log_path() const { return m_dir.path() / "tinyproxy.log"; }

    std::size_t count_lines(std::string_view marker) const {
        std::istringstream lines(log());
        std::size_t n = 0;
        for (std::string line; std::getline(lines, line);)
            if (line.find("]: Request (file descriptor ") != std::string::npos &&
                line.find(marker) != std::string::npos)
                ++n;
        return n;
    }

    void write_config(const std::string& path, std::uint16_t port) const {
        std::filesystem::remove(log_path());
        std::ofstream conf(path, std::ios::trunc);
        conf << "Port " << port << "\n"
             << "Listen 127.0.0.1\n"
             << "Allow 127.0.0.1\n"
             << "Timeout 30\n"
             << "MaxClients 32\n"
             << "LogLevel Info\n"
             << "LogFile \"" << log_path().string() << "\"\n"
             << "DisableViaHeader Yes\n";
        // No ConnectPort line: CONNECT is allowed to every port.
        if (!m_options.user.empty())
            conf << "BasicAuth " << m_options.user << " " << m_options.password << "\n";
        if (!conf) throw std::runtime_error("cannot write " + path);
    }

    options m_options;
    temp_dir m_dir;  // outlives the server, which writes its log there
    std::unique_ptr<child_server> m_server;
};

}  // namespace corun_test
