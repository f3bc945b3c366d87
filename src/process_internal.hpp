// src/process_internal.hpp — what process.cpp shares with the start-method strategies
// and the child-side bootstrap.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mp/process.hpp"
#include "popen.hpp"

namespace mp::detail {

/// One started child (or, with no popen, the calling process itself). Shared by the
/// Process object and the table of children, so a child whose Process object is gone
/// is still reaped and joined at exit.
class ProcessState {
 public:
  std::mutex mu;                 // serialises popen->poll()
  std::unique_ptr<Popen> popen;  // null for the calling process's own state
  bool daemon = false;
  Process* owner = nullptr;      // guarded by the children table's mutex

  bool is_self() const noexcept { return popen == nullptr; }
  std::optional<int> poll() {
    std::lock_guard g(mu);
    return popen ? popen->poll() : std::nullopt;
  }
};

/// Private access to Process for the library's own files.
struct ProcessAccess {
  static std::unique_ptr<Target>& target(Process& p) { return p.target_; }
  static ProcessOptions& options(Process& p) { return p.options_; }
  static std::vector<int>& identity(Process& p) { return p.identity_; }
  static std::shared_ptr<ProcessState>& state(Process& p) { return p.state_; }
  static Process* make_main() { return new Process(SelfTag{}); }
};

/// What a child learns about where it came from.
struct ChildOrigin {
  pid_t parent_pid = 0;
  std::string parent_name;
};

/// Runs `self` as the calling process's own work and ends the process with its exit
/// code (Python's Process._bootstrap). Never returns.
[[noreturn]] void run_as_child(Process& self, const ChildOrigin& origin);

/// Flushes stdio, joins this process's own children, and _exits with `code`.
[[noreturn]] void exit_child(int code);

/// Runs `hook` in a child process when its target has ended, before it exits (Python's
/// util._exit_function runs its finalizers there): managers give back the references
/// the child holds. Each hook is added once; there is room for 4, and the library uses
/// one (a fifth would be ignored: raise the count before adding more users).
void add_child_exit_hook(void (*hook)()) noexcept;

/// The serialized description of `p` for a spawn/forkserver child; descriptors that
/// must travel with it are appended to `fds`. Throws mp::ValueError when `p` cannot
/// cross (unregistered subclass, unshippable target).
std::vector<std::byte> make_child_payload(Process& p, std::vector<int>& fds);

/// Rebuilds the Process described by `payload` and runs it. Never returns.
[[noreturn]] void run_child_payload(std::span<const std::byte> payload, std::span<const int> fds);

/// First thing in a new child: a daemon asks for SIGKILL when its parent (expected to be
/// `expected_parent`) dies; stdin becomes /dev/null.
void child_common_setup(bool daemon, pid_t expected_parent) noexcept;

/// Flushes C and C++ stdio before a fork, so buffered output is not written twice.
void flush_stdio() noexcept;

/// In a new child: mp forgets the parent's children, counters and forkserver.
void reset_after_fork_in_child() noexcept;

/// In a new child: close the parent's forkserver connection (the child starts its own).
void forget_forkserver_after_fork() noexcept;

/// Exits with a message when this is a spawned child whose main() did not call
/// freeze_support() before starting a process (the fork-bomb guard).
void check_freeze_support_ran();

/// posix_spawn of /proc/self/exe with `args` after argv[0]; `fds_from_3` become the
/// child's descriptors 3, 4, ...; every other descriptor is closed. Returns the pid.
pid_t spawn_self(const std::vector<std::string>& args, const std::vector<int>& fds_from_3);

/// The argv[0] of this program, for exec'd children.
const char* program_argv0() noexcept;

/// The forkserver's pid, or 0 if this process has not started one (tests skip it when
/// they look for leftover children).
pid_t forkserver_pid() noexcept;

/// Serves fork requests on `control_fd` until every client has gone. Never returns.
[[noreturn]] void forkserver_main(int control_fd);

/// Writes "Process NAME:", the stack of the throw and "Type: message" to stderr.
void report_child_exception(const std::string& process_name) noexcept;

/// The readable name of a mangled C++ name (the name itself if it is not one).
std::string demangle(const char* mangled);

/// The type name and message of the exception being handled (call inside a catch): an
/// mp::RemoteError gives its original type, anything else its demangled dynamic type.
struct ExceptionText {
  std::string type;
  std::string message;
};
ExceptionText describe_current_exception();

/// While true on this thread, every throw records its stack (for report_child_exception).
void set_capture_throw_stacks(bool on) noexcept;
/// The stack recorded at the last throw in this thread (while capturing), one frame per
/// line, innermost first, cut at the first frame whose name contains `stop_a` or `stop_b`
/// (the library's own frames below the user's code). Empty if none was recorded.
std::string recorded_throw_stack(const char* stop_a, const char* stop_b);

}  // namespace mp::detail
