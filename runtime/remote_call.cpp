#include "corun/detail/remote_call.hpp"

#include <link.h>

#include <functional>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

namespace corun::detail {

namespace {

std::uint64_t hash_name(std::string_view name) {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
    return h;
}

/// A loaded module as both directions see it: the main program is named by
/// the empty string (its path depends on how it was started), a shared object
/// by its path; its base is where its first loadable segment maps.
struct module_info {
    std::uint64_t name_hash;
    std::uintptr_t base;
};

/// The first module for which `pred(module, phdr_info)` holds.
bool find_module(const std::function<bool(const module_info&, const dl_phdr_info&)>& pred, module_info& out) {
    struct walk {
        const std::function<bool(const module_info&, const dl_phdr_info&)>* pred;
        module_info* out;
        bool first = true;
        bool found = false;
    } w{&pred, &out};
    dl_iterate_phdr(
        [](dl_phdr_info* i, std::size_t, void* p) {
            auto* w = static_cast<walk*>(p);
            const std::string_view name = w->first ? std::string_view() : std::string_view(i->dlpi_name);
            w->first = false;
            for (int k = 0; k < i->dlpi_phnum; ++k) {
                if (i->dlpi_phdr[k].p_type != PT_LOAD) continue;
                const module_info m{hash_name(name),
                                    i->dlpi_addr + i->dlpi_phdr[k].p_vaddr - i->dlpi_phdr[k].p_offset};
                if (!(*w->pred)(m, *i)) return 0;
                *w->out = m;
                w->found = true;
                return 1;
            }
            return 0;
        },
        &w);
    return w.found;
}

bool contains(const dl_phdr_info& i, std::uintptr_t address) {
    for (int k = 0; k < i.dlpi_phnum; ++k) {
        const auto& h = i.dlpi_phdr[k];
        const std::uintptr_t start = i.dlpi_addr + h.p_vaddr;
        if (h.p_type == PT_LOAD && address >= start && address < start + h.p_memsz) return true;
    }
    return false;
}

struct module_cache {
    std::mutex lock;
    std::unordered_map<const void*, code_address> encoded;
    std::unordered_map<std::uint64_t, std::uintptr_t> bases;
};

module_cache& cache() {
    static module_cache c;
    return c;
}

}  // namespace

code_address encode_address(const void* code) {
    auto& c = cache();
    std::lock_guard guard(c.lock);
    if (auto it = c.encoded.find(code); it != c.encoded.end()) return it->second;
    const auto address = reinterpret_cast<std::uintptr_t>(code);
    module_info m{};
    if (!find_module([&](const module_info&, const dl_phdr_info& i) { return contains(i, address); }, m))
        throw std::runtime_error("corun: cannot locate the module of a function sent to a worker");
    const code_address a{m.name_hash, address - m.base};
    c.encoded.emplace(code, a);
    return a;
}

const void* decode_address(code_address where) {
    auto& c = cache();
    std::lock_guard guard(c.lock);
    auto it = c.bases.find(where.module);
    if (it == c.bases.end()) {
        module_info m{};
        if (!find_module(
                [&](const module_info& mi, const dl_phdr_info&) { return mi.name_hash == where.module; }, m))
            throw std::runtime_error("corun: a task names code in a module this worker has not loaded");
        it = c.bases.emplace(where.module, m.base).first;
    }
    return reinterpret_cast<const void*>(it->second + where.offset);
}

void run_task(wire::reader& in, wire::writer& out) {
    const auto invoker = in.pod<code_address>();
    reinterpret_cast<invoker_fn>(const_cast<void*>(decode_address(invoker)))(in, out);
}

}  // namespace corun::detail
