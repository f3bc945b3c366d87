// src/popen_fork.cpp — the fork start method (CPython's popen_fork.py), and the
// pidfd-watched child that fork and spawn share.
//
// The child is a copy of the parent at the moment of start(): it runs the Process
// object it finds in its own copy of memory, so any callable runs, captures included,
// and nothing is serialized. stdio is flushed before the fork so that buffered output
// is not written twice. A daemon child asks the kernel for SIGKILL when its parent
// dies and then checks that the parent has not already gone (the race where the
// parent died between fork and prctl).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mp/detail/sys.hpp"
#include "process_internal.hpp"

namespace mp::detail {

int exitcode_from_wait_status(int status) noexcept {
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 255;
}

int pidfd_open(pid_t pid) {
  return static_cast<int>(sys("pidfd_open", [&] { return ::syscall(SYS_pidfd_open, pid, 0); }));
}

ChildPopen::~ChildPopen() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

std::optional<int> ChildPopen::poll() {
  if (exitcode_) return exitcode_;
  int status = 0;
  pid_t r = sys_nothrow([&] { return ::waitpid(pid_, &status, WNOHANG); });
  if (r == pid_) {
    exitcode_ = exitcode_from_wait_status(status);
  } else if (r == -ECHILD) {
    // Somebody else reaped it (SIGCHLD set to SIG_IGN, or a waitpid(-1) of the
    // program's own): the child is gone and its status with it.
    exitcode_ = 255;
  }
  return exitcode_;
}

void pidfd_send_signal(int pidfd, int sig) {
  // Through the pidfd: a pid that was reaped and recycled is never signalled.
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == -1 && errno != ESRCH) {
    throw_os_error("pidfd_send_signal", errno);
  }
}

void ChildPopen::send_signal(int sig) {
  if (!exitcode_) pidfd_send_signal(pidfd_, sig);
}

/// In a fresh child: die with the parent if asked, and leave the terminal's input alone.
void child_common_setup(bool daemon, pid_t expected_parent) noexcept {
  if (daemon) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != expected_parent) ::_exit(1);
  }
  // As Python does: a child does not compete with its parent for the terminal's input.
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull >= 0) {
    ::dup2(devnull, STDIN_FILENO);
    ::close(devnull);
  }
}

std::unique_ptr<Popen> launch_fork(Process& process) {
  const pid_t parent = ::getpid();
  ChildOrigin origin{parent, current_process().name()};
  const bool daemon = process.daemon();
  flush_stdio();
  pid_t pid = sys("fork", [] { return ::fork(); });
  if (pid == 0) {
    child_common_setup(daemon, parent);
    run_as_child(process, origin);
  }
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
