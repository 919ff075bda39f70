// Which code a process runs: every loaded module and its build id, so that
// rank 0 can refuse a host whose binaries differ (a task names its code by
// module and offset, which must mean the same thing everywhere).
#include <elf.h>
#include <link.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "link.hpp"

namespace corun::detail::mpi {

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out += digits[p[i] >> 4];
        out += digits[p[i] & 15];
    }
    return out;
}

/// The GNU build id note of a loaded module, as hex; empty if it has none.
std::string build_id(const dl_phdr_info* info) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        const auto* p = reinterpret_cast<const unsigned char*>(info->dlpi_addr + ph.p_vaddr);
        const auto* end = p + ph.p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const auto* note = reinterpret_cast<const ElfW(Nhdr)*>(p);
            const auto* name = p + sizeof(ElfW(Nhdr));
            const auto* desc = name + ((note->n_namesz + 3) & ~3u);
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 &&
                std::string_view(reinterpret_cast<const char*>(name), 3) == "GNU")
                return hex(desc, note->n_descsz);
            p = desc + ((note->n_descsz + 3) & ~3u);
        }
    }
    return {};
}

/// A module without a build id: the FNV-1a hash of its file.
std::string file_hash(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return "unreadable";
    std::uint64_t h = 1469598103934665603ull;
    char buffer[1 << 16];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        for (std::streamsize i = 0; i < in.gcount(); ++i)
            h = (h ^ static_cast<unsigned char>(buffer[i])) * 1099511628211ull;
        if (!in) break;
    }
    char out[32];
    std::snprintf(out, sizeof out, "fnv:%016llx", static_cast<unsigned long long>(h));
    return out;
}

std::map<std::string, std::string> parse(const std::string& list) {
    std::map<std::string, std::string> out;
    std::istringstream in(list);
    std::string line;
    while (std::getline(in, line)) {
        const auto space = line.rfind(' ');
        if (space != std::string::npos) out[line.substr(0, space)] = line.substr(space + 1);
    }
    return out;
}

}  // namespace

std::string module_list() {
    std::string out;
    dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* data) {
            std::string path = info->dlpi_name ? info->dlpi_name : "";
            if (path.empty()) {
                char exe[4096];
                const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
                path = n > 0 ? std::string(exe, static_cast<std::size_t>(n)) : "(executable)";
            }
            // The vDSO is the kernel's; MPI's own plugins are opened on demand
            // and differ with the transports a host uses.
            if (path.starts_with("linux-vdso") || path.find("/openmpi/") != std::string::npos ||
                path.find("/pmix/") != std::string::npos)
                return 0;
            std::string id = build_id(info);
            if (id.empty()) id = file_hash(path);
            *static_cast<std::string*>(data) += path + " " + id + "\n";
            return 0;
        },
        &out);
    return out;
}

std::string module_difference(const std::string& ours, const std::string& theirs) {
    const auto a = parse(ours), b = parse(theirs);
    std::string out;
    for (const auto& [path, id] : a) {
        auto it = b.find(path);
        if (it == b.end())
            out += "  " + path + " is loaded here but not there\n";
        else if (it->second != id)
            out += "  " + path + " differs (build id " + id + " here, " + it->second + " there)\n";
    }
    for (const auto& [path, id] : b)
        if (!a.count(path)) out += "  " + path + " is loaded there but not here\n";
    return out;
}

}  // namespace corun::detail::mpi
