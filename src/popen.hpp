// src/popen.hpp — the start-method strategies (CPython's popen_fork / popen_spawn_posix
// / popen_forkserver): each launches a child for a Process and then answers the same
// small protocol about it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>

namespace mp {
class Process;
}

namespace mp::detail {

class Popen {
 public:
  virtual ~Popen() = default;
  virtual pid_t pid() const noexcept = 0;
  /// Readable (POLLIN) once the child has ended.
  virtual int sentinel() const noexcept = 0;
  /// The exit code once the child has ended (reaping it), else empty. Never blocks.
  /// Callers serialise calls (ProcessState's mutex).
  virtual std::optional<int> poll() = 0;
  /// Delivers `sig` unless the child has already ended. Never targets a recycled pid.
  virtual void send_signal(int sig) = 0;
};

/// Python's exit code from a waitpid status: the exit status, or -N for signal N.
int exitcode_from_wait_status(int status) noexcept;

std::unique_ptr<Popen> launch_fork(Process& process);
std::unique_ptr<Popen> launch_spawn(Process& process);
std::unique_ptr<Popen> launch_forkserver(Process& process);

/// A child of this process, watched through a pidfd (fork and spawn).
class ChildPopen final : public Popen {
 public:
  ChildPopen(pid_t pid, int pidfd) noexcept : pid_(pid), pidfd_(pidfd) {}
  ~ChildPopen() override;
  pid_t pid() const noexcept override { return pid_; }
  int sentinel() const noexcept override { return pidfd_; }
  std::optional<int> poll() override;
  void send_signal(int sig) override;

 private:
  pid_t pid_;
  int pidfd_;
  std::optional<int> exitcode_;
};

/// pidfd_open(2); throws mp::OSError.
int pidfd_open(pid_t pid);

/// Sends `sig` through a pidfd; a process that has already ended is not an error.
void pidfd_send_signal(int pidfd, int sig);

}  // namespace mp::detail
