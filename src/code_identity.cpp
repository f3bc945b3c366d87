// src/code_identity.cpp — naming code across processes (see code_identity.hpp).
//
// dladdr() finds the module that holds an address and its load address; the module is
// then named by its path as the dynamic loader knows it ("" for the main executable),
// which is the same in a child that exec'd the same executable. The GNU build-id note
// of the module guards against a rebuilt binary.
#include "mp/detail/code_identity.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>

#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "mp/errors.hpp"

namespace mp::detail {
namespace {

struct ModuleInfo {
  std::uintptr_t base = 0;
  std::string build_id;
  bool found = false;
};

std::string hex(const unsigned char* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

std::string build_id_of(const dl_phdr_info* info) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    auto p = reinterpret_cast<const unsigned char*>(info->dlpi_addr + ph.p_vaddr);
    auto end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      auto nh = reinterpret_cast<const ElfW(Nhdr)*>(p);
      auto name = p + sizeof(ElfW(Nhdr));
      auto desc = name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        return hex(desc, nh->n_descsz);
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return {};
}

// The caches below are shared by every thread, and a process may fork from any of them
// (a pool's supervisor starts replacement workers while the caller's thread names its
// next task's function): a child inheriting one of these locks held, or a local
// static half-initialized, would wait for ever for a thread it does not have. So the
// locks and caches are namespace-scope objects (built before main, no init guard), the
// two computed-once values are settled before every fork, and every fork waits until
// neither lock is held (pthread_atfork below). Neither lock is taken while holding the
// other.
std::mutex g_module_mu;  // guards g_modules
std::unordered_map<std::string, ModuleInfo> g_modules;
std::mutex g_ref_mu;  // guards g_refs
std::unordered_map<const void*, CodeRef> g_refs;

// The module whose loader name is `name` ("" = main executable).
ModuleInfo find_module(const std::string& name) {
  std::lock_guard g(g_module_mu);
  auto& cache = g_modules;
  if (auto it = cache.find(name); it != cache.end()) return it->second;
  struct Search {
    const std::string* name;
    ModuleInfo info;
    bool first = true;
  } search{&name, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto* s = static_cast<Search*>(data);
        const bool is_main = s->first;  // the main executable is always reported first
        s->first = false;
        const std::string mod = is_main ? std::string() : std::string(info->dlpi_name ? info->dlpi_name : "");
        if (mod != *s->name) return 0;
        s->info = {info->dlpi_addr, build_id_of(info), true};
        return 1;
      },
      &search);
  if (search.info.found) cache.emplace(name, search.info);
  return search.info;
}

}  // namespace

CodeRef code_ref_of_uncached(const void* addr);

const std::string& main_build_id() {
  static const std::string id = find_module("").build_id;
  return id;
}

std::uint64_t main_build_hash() {
  static const std::uint64_t hash = [] {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : main_build_id()) h = (h ^ c) * 1099511628211ull;
    return h;
  }();
  return hash;
}

void CodeRef::check_main_build_hash(std::uint64_t hash) {
  if (hash != main_build_hash()) {
    throw SerializationError("a function of another build of the main executable cannot be called here");
  }
}

void CodeRef::throw_bad_code_ref() { throw SerializationError("corrupt function identity"); }

// Pools name the same few functions for every task: dladdr() (a walk over the loaded
// modules' symbols) is paid once per address. Modules are never unloaded under a live
// function pointer, so an entry stays true.
CodeRef code_ref_of(const void* addr) {
  {
    std::lock_guard g(g_ref_mu);
    if (auto it = g_refs.find(addr); it != g_refs.end()) return it->second;
  }
  CodeRef ref = code_ref_of_uncached(addr);  // takes g_module_mu: not under g_ref_mu
  std::lock_guard g(g_ref_mu);
  g_refs.emplace(addr, ref);
  return ref;
}

CodeRef code_ref_of_uncached(const void* addr) {
  Dl_info info{};
  link_map* map = nullptr;
  if (!dladdr1(addr, &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) || !map) {
    throw ValueError("this function lives in no loaded module, so a child process cannot find it");
  }
  // The main executable's link_map has an empty name.
  std::string module = map->l_name ? map->l_name : "";
  ModuleInfo m = find_module(module);
  if (!m.found) throw ValueError("cannot identify the module of a function for a child process: " + module);
  CodeRef ref;
  ref.module = module;
  ref.offset = reinterpret_cast<std::uintptr_t>(addr) - m.base;
  ref.build_id = m.build_id;
  return ref;
}

namespace {
std::uintptr_t main_base() {
  static const std::uintptr_t base = find_module("").base;
  return base;
}

void before_fork() {
  (void)main_build_hash();  // settled now, not half-done in another thread at the fork
  (void)main_base();
  g_ref_mu.lock();
  g_module_mu.lock();
}
void after_fork() {
  g_module_mu.unlock();
  g_ref_mu.unlock();
}
[[maybe_unused]] const int g_atfork_registered = [] {
  ::pthread_atfork(before_fork, after_fork, after_fork);
  return 0;
}();
}  // namespace

const void* resolve_code_ref(const CodeRef& ref) {
  if (ref.module.empty()) {  // the main executable: its build was checked when the ref was read
    return reinterpret_cast<const void*>(main_base() + ref.offset);
  }
  ModuleInfo m = find_module(ref.module);
  if (!m.found) {
    throw SerializationError("the child cannot find module '" + ref.module + "' that holds the target");
  }
  if (m.build_id != ref.build_id) {
    throw SerializationError("module '" + (ref.module.empty() ? std::string("<main executable>") : ref.module) +
                             "' in the child is another build than in the parent");
  }
  return reinterpret_cast<const void*>(m.base + ref.offset);
}

}  // namespace mp::detail
