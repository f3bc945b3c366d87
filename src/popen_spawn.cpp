// src/popen_spawn.cpp — the spawn start method (CPython's popen_spawn_posix.py).
//
// The child is a fresh exec of the running executable (/proc/self/exe), so it shares
// nothing with the parent but what it is told: the payload (spawn.cpp) in a sealed
// memfd on descriptor 3, and the descriptors that travel with it on 4, 5, ... Every
// other descriptor is closed, signal dispositions and mask are reset. posix_spawn
// (clone with CLONE_VFORK underneath) keeps the cost independent of the parent's size.
// argv: ARGV0 --mp-spawn NFDS PARENT_PID DAEMON; main() hands it to freeze_support().
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "mp/detail/sys.hpp"
#include "process_internal.hpp"

extern char** environ;

namespace mp::detail {
namespace {

// posix_spawn's attributes and file actions as owners, so every path frees them.
struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() {
    ::posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setsigdefault(&attr, &all);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  ~SpawnAttr() { ::posix_spawnattr_destroy(&attr); }
};

struct FileActions {
  posix_spawn_file_actions_t fa;
  FileActions() { ::posix_spawn_file_actions_init(&fa); }
  ~FileActions() { ::posix_spawn_file_actions_destroy(&fa); }
};

}  // namespace

pid_t spawn_self(const std::vector<std::string>& args, const std::vector<int>& fds_from_3) {
  // Move every descriptor above the targets first, so that one dup2 cannot overwrite
  // another's source.
  const int first_free = 3 + static_cast<int>(fds_from_3.size());
  std::vector<UniqueFd> lifted;
  for (int fd : fds_from_3) lifted.emplace_back(sys("fcntl", [&] { return ::fcntl(fd, F_DUPFD_CLOEXEC, first_free); }));
  FileActions fa;
  for (std::size_t i = 0; i < lifted.size(); ++i) {
    ::posix_spawn_file_actions_adddup2(&fa.fa, lifted[i].get(), 3 + static_cast<int>(i));
  }
  ::posix_spawn_file_actions_addclosefrom_np(&fa.fa, first_free);
  SpawnAttr attr;
  std::vector<char*> argv;
  std::string argv0 = program_argv0();
  argv.push_back(argv0.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, "/proc/self/exe", &fa.fa, &attr.attr, argv.data(), environ);
  if (rc != 0) throw_os_error("posix_spawn", rc);
  return pid;
}

std::unique_ptr<Popen> launch_spawn(Process& process) {
  std::vector<int> fds;
  std::vector<std::byte> payload = make_child_payload(process, fds);
  UniqueFd mem(sys("memfd_create", [] { return ::memfd_create("mp-spawn-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING); }));
  write_all(mem.get(), payload.data(), payload.size());
  ::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
  std::vector<int> to_child{mem.get()};
  to_child.insert(to_child.end(), fds.begin(), fds.end());
  const pid_t pid =
      spawn_self({"--mp-spawn", std::to_string(fds.size()), std::to_string(::getpid()), process.daemon() ? "1" : "0"},
                 to_child);
  int pidfd = -1;
  try {
    pidfd = pidfd_open(pid);
  } catch (...) {
    ::kill(pid, SIGKILL);
    int st;
    ::waitpid(pid, &st, 0);
    throw;
  }
  return std::make_unique<ChildPopen>(pid, pidfd);
}

}  // namespace mp::detail
