// src/spawn.cpp — what a spawn or forkserver child is told, and how it starts
// (CPython's spawn.py): the payload that describes a Process, the registry of Process
// subclasses, and freeze_support(), the child's entry point in main().
//
// The payload is a cereal archive (archive.hpp):
//   magic, main executable's build-id, the program's start method,
//   whether the tree's resource tracker link travels + the indexes of its descriptors,
//   name, daemon, identity, parent pid and name,
//   subclass name ("" = plain Process) + the members its `serialize` lists,
//   whether a target follows + the target (callable.hpp).
// A child that finds another build of the executable, or a payload it cannot read,
// says so on stderr and exits with code 1 before running anything.
//
// A spawned program that forgets freeze_support() would run main() again and start
// children of its own, each of which would do the same: a fork bomb. A constructor
// that runs before main() notices the child's marker in argv; if main() then starts a
// process, or returns, before freeze_support() ran, the child says what is missing
// and exits non-zero.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <typeindex>

#include "context_internal.hpp"
#include "mp/context.hpp"
#include "mp/detail/sys.hpp"
#include "process_internal.hpp"
#include "resource_tracker.hpp"

namespace mp::detail {
namespace {

constexpr std::uint32_t kPayloadMagic = 0x4d504348;  // "MPCH"
constexpr const char* kSpawnFlag = "--mp-spawn";
constexpr const char* kForkserverFlag = "--mp-forkserver";

struct ProcessType {
  std::string name;
  ProcessFactory factory;
  ProcessSaver saver;
};

struct TypeRegistry {
  std::mutex mu;
  std::map<std::type_index, ProcessType> by_type;
  std::map<std::string, ProcessType, std::less<>> by_name;
};

TypeRegistry& types() {
  static auto* r = new TypeRegistry;
  return *r;
}

const char* g_argv0 = nullptr;
bool g_child_pending = false;  // started as a child, freeze_support() not yet run

[[noreturn]] void die_missing_freeze_support() {
  std::fprintf(stderr,
               "mp: this program was started as a spawn/forkserver child, but main() did not call "
               "mp::freeze_support(argc, argv) before doing anything else.\n"
               "mp: add `mp::freeze_support(argc, argv);` as the first line of main(); "
               "the child exits instead of running main() again (which would start children forever).\n");
  std::fflush(stderr);
  ::_exit(70);
}

void at_exit_check_freeze_support() {
  if (g_child_pending) die_missing_freeze_support();
}

// glibc passes (argc, argv, envp) to the constructors of the executable and libraries.
__attribute__((constructor)) void detect_child_marker(int argc, char** argv, char**) {
  if (argc >= 1 && argv) g_argv0 = argv[0];
  if (argc >= 2 && argv && argv[1] &&
      (std::strcmp(argv[1], kSpawnFlag) == 0 || std::strcmp(argv[1], kForkserverFlag) == 0)) {
    g_child_pending = true;
    std::atexit(at_exit_check_freeze_support);
  }
}

[[noreturn]] void child_failed(const char* what) {
  std::fprintf(stderr, "mp: the child process could not start: %s\n", what);
  std::fflush(stderr);
  ::_exit(1);
}

std::vector<std::byte> read_whole_fd(int fd) {
  struct stat st {};
  sys("fstat", [&] { return ::fstat(fd, &st); });
  std::vector<std::byte> buf(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < buf.size()) {
    auto n = sys("pread", [&] { return ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got)); });
    if (n == 0) throw SerializationError("the payload ended early");
    got += static_cast<std::size_t>(n);
  }
  return buf;
}

}  // namespace

void register_process_type(const std::type_info& type, std::string_view name, ProcessFactory factory,
                           ProcessSaver saver) {
  auto& r = types();
  std::lock_guard g(r.mu);
  ProcessType t{std::string(name), factory, saver};
  r.by_type.emplace(std::type_index(type), t);
  r.by_name.emplace(t.name, t);
}

const char* program_argv0() noexcept { return g_argv0 ? g_argv0 : "mp-child"; }

void check_freeze_support_ran() {
  if (g_child_pending) die_missing_freeze_support();
}

std::vector<std::byte> make_child_payload(Process& p, std::vector<int>& fds) {
  const std::string method(to_string(p.start_method()));
  const ProcessType* type = nullptr;
  {
    auto& r = types();
    std::lock_guard g(r.mu);
    if (typeid(p) != typeid(Process)) {
      auto it = r.by_type.find(std::type_index(typeid(p)));
      if (it == r.by_type.end()) {
        const std::string name = demangle(typeid(p).name());
        throw ValueError("cannot start " + p.name() + " with the " + method + " start method: the Process subclass " +
                         name + " is not registered; add MP_REGISTER_PROCESS(" + name +
                         ") at namespace scope (the fork start method needs nothing)");
      }
      type = &it->second;
    }
  }
  auto& target = ProcessAccess::target(p);
  if (target && target->unshippable()) {
    throw ValueError("cannot start " + p.name() + " with the " + method + " start method: " +
                     target->unshippable());
  }
  std::vector<std::byte> out;
  OutputArchive ar(out, &fds);
  auto [program_method, method_set] = start_method_state();
  ar(kPayloadMagic, main_build_id(), static_cast<std::uint8_t>(program_method), method_set);
  // The tree's resource tracker (resource_tracker.cpp), so the child belongs to it.
  const auto link = resource_tracker::link();
  const bool linked = link.tree >= 0 && link.state >= 0;
  ar(linked);
  if (linked) {
    // Indexes into the descriptors; the spare end travels only while no tracker runs.
    const auto index_of = [&fds](int fd) {
      if (fd < 0) return std::int32_t{-1};
      fds.push_back(fd);
      return static_cast<std::int32_t>(fds.size() - 1);
    };
    const std::int32_t tree = index_of(link.tree), spare = index_of(link.spare), state = index_of(link.state);
    ar(tree, spare, state);
  }
  ar(p.name(), p.daemon(), ProcessAccess::identity(p));
  ar(static_cast<std::int32_t>(::getpid()), current_process().name());
  ar(type ? type->name : std::string());
  if (type) type->saver(p, ar);
  const bool has_target = target != nullptr;
  ar(has_target);
  if (has_target) target->save(ar);
  return out;
}

[[noreturn]] void run_child_payload(std::span<const std::byte> payload, std::span<const int> fds) {
  std::unique_ptr<Process> self;
  ChildOrigin origin;
  try {
    InputArchive ar(payload, fds);
    std::uint32_t magic = 0;
    std::string build_id;
    std::uint8_t program_method = 0;
    bool method_set = false;
    ar(magic, build_id, program_method, method_set);
    if (magic != kPayloadMagic) throw SerializationError("this is not an mp child payload");
    if (build_id != main_build_id()) {
      throw SerializationError("the executable on disk is another build than the parent's (build-id " + build_id +
                               " expected, " + main_build_id() + " found)");
    }
    if (program_method > static_cast<std::uint8_t>(StartMethod::forkserver)) {
      throw SerializationError("corrupt payload: unknown start method");
    }
    inherit_start_method(static_cast<StartMethod>(program_method), method_set);
    bool linked = false;
    ar(linked);
    if (linked) {
      std::int32_t tree = -1, spare = -1, state = -1;
      ar(tree, spare, state);
      const auto fd_at = [&fds](std::int32_t index, bool optional) {
        if (optional && index == -1) return -1;
        if (index < 0 || static_cast<std::size_t>(index) >= fds.size()) {
          throw SerializationError("corrupt payload: no descriptor for the resource tracker");
        }
        return fds[static_cast<std::size_t>(index)];
      };
      resource_tracker::adopt({fd_at(tree, false), fd_at(spare, true), fd_at(state, false)});
    }
    std::string name;
    bool daemon = false;
    std::vector<int> identity;
    std::int32_t parent_pid = 0;
    std::string subclass;
    ar(name, daemon, identity);
    ar(parent_pid, origin.parent_name);
    origin.parent_pid = parent_pid;
    ar(subclass);
    if (subclass.empty()) {
      self = std::make_unique<Process>();
    } else {
      ProcessFactory factory = nullptr;
      {
        auto& r = types();
        std::lock_guard g(r.mu);
        auto it = r.by_name.find(subclass);
        if (it == r.by_name.end()) throw SerializationError("the Process subclass " + subclass + " is not registered here");
        factory = it->second.factory;
      }
      self = factory(ar);
    }
    auto& options = ProcessAccess::options(*self);
    options.name = std::move(name);
    options.daemon = daemon;
    ProcessAccess::identity(*self) = std::move(identity);
    bool has_target = false;
    ar(has_target);
    if (has_target) ProcessAccess::target(*self) = load_target(ar);
    if (ar.remaining() != 0) throw SerializationError("corrupt payload: bytes left over");
  } catch (const std::exception& e) {
    child_failed(e.what());
  }
  run_as_child(*self, origin);
}

std::unique_ptr<Target> load_target(InputArchive& ar) {
  CodeRef loader_ref;
  ar(loader_ref);
  auto loader = reinterpret_cast<TargetLoader>(const_cast<void*>(resolve_code_ref(loader_ref)));
  return loader(ar);
}

}  // namespace mp::detail

namespace mp {

void freeze_support(int argc, char** argv) {
  using namespace detail;
  if (argc < 2 || !argv || !argv[1]) return;
  if (std::strcmp(argv[1], kSpawnFlag) == 0) {
    g_child_pending = false;
    // argv: --mp-spawn NFDS PARENT_PID DAEMON; the payload is on fd 3, the fds that
    // travel with it on 4, 5, ...
    if (argc < 5) child_failed("malformed command line");
    const int nfds = std::atoi(argv[2]);
    const pid_t parent = static_cast<pid_t>(std::atol(argv[3]));
    child_common_setup(std::strcmp(argv[4], "1") == 0, parent);
    std::vector<std::byte> payload;
    try {
      payload = read_whole_fd(3);
    } catch (const std::exception& e) {
      child_failed(e.what());
    }
    ::close(3);
    std::vector<int> fds;
    for (int i = 0; i < nfds; ++i) fds.push_back(4 + i);
    run_child_payload(payload, fds);
  }
  if (std::strcmp(argv[1], kForkserverFlag) == 0) {
    g_child_pending = false;
    forkserver_main(3);
  }
}

}  // namespace mp
