// Test helpers about processes, descriptors and memory, read from /proc.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace corun_test {

/// A task's own exception type with state, to register with
/// `corun::register_exception` (its cereal save/load keep the line).
struct parse_error : std::runtime_error {
    int line = 0;
    explicit parse_error(const std::string& what = "", int l = 0) : std::runtime_error(what), line(l) {}
    template <class A>
    void save(A& a) const {
        a(std::string(what()), line);
    }
    template <class A>
    void load(A& a) {
        std::string w;
        int l = 0;
        a(w, l);
        *this = parse_error(w, l);
    }
};

/// Running, that is: a process that exited but was not reaped yet (an orphan
/// waiting for init) is dead.
inline bool alive(int pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return false;
    return line.substr(line.rfind(')') + 2, 1) != "Z";
}

/// The children of `parent`; only those that are zombies (exited, never reaped) if asked.
inline std::vector<int> children_of(pid_t parent, bool zombies_only = false) {
    std::vector<int> out;
    const std::string me = std::to_string(parent);
    DIR* d = opendir("/proc");
    while (dirent* e = readdir(d)) {
        std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
        std::string line;
        if (!std::getline(stat, line)) continue;
        std::istringstream rest(line.substr(line.rfind(')') + 2));
        std::string state, ppid;
        rest >> state >> ppid;
        if (ppid == me && (!zombies_only || state == "Z")) out.push_back(std::atoi(e->d_name));
    }
    closedir(d);
    return out;
}

inline std::vector<int> children_of_this_process(bool zombies_only = false) {
    return children_of(getpid(), zombies_only);
}

/// Live processes whose command line contains `token` (a marker a test
/// gives the processes it has a task start, to find them again).
inline std::vector<int> processes_with(const std::string& token) {
    std::vector<int> out;
    DIR* d = opendir("/proc");
    while (dirent* e = readdir(d)) {
        const int pid = std::atoi(e->d_name);
        if (pid <= 0 || pid == getpid()) continue;
        // Read with plain read(2): a process that exits meanwhile makes the
        // read fail (ESRCH), which a std::ifstream would throw from.
        std::string cmdline;
        int fd = ::open((std::string("/proc/") + e->d_name + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        char buf[4096];
        for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) cmdline.append(buf, static_cast<std::size_t>(n));
        ::close(fd);
        if (cmdline.find(token) != std::string::npos && alive(pid)) out.push_back(pid);
    }
    closedir(d);
    return out;
}

/// Waits up to `limit` for `done()`; true if it came.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

/// In a task: the worker's end of its channel to the pool, the one socket a
/// worker holds (what a test writes junk to).
inline int worker_channel() {
    for (int fd = 0; fd < 4096; ++fd) {
        char link[64] = {};
        const std::string path = "/proc/self/fd/" + std::to_string(fd);
        if (::readlink(path.c_str(), link, sizeof link - 1) > 0 && std::string(link).starts_with("socket:"))
            return fd;
    }
    return -1;
}

inline int open_fds() {
    int n = 0;
    DIR* d = opendir("/proc/self/fd");
    while (dirent* e = readdir(d))
        if (e->d_name[0] != '.') ++n;
    closedir(d);
    return n - 1;  // the directory being read
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM …).
inline long status_kib(const std::string& field) {
    std::ifstream status("/proc/self/status");
    std::string key;
    long value = 0;
    while (status >> key) {
        if (key == field + ":") {
            status >> value;
            return value;
        }
        status.ignore(1 << 10, '\n');
    }
    return 0;
}

/// Resets VmHWM to the current resident size.
inline void reset_peak_rss() {
    std::ofstream("/proc/self/clear_refs") << "5";
}

}  // namespace corun_test
