// mp/process.hpp — a child process running a callable: Python's multiprocessing.Process.
//
// @code
//   void worker(int sec, std::string name) { ... }
//
//   int main(int argc, char** argv) {
//     mp::freeze_support(argc, argv);              // first line of main (spawn, forkserver)
//     mp::Process p(worker, 2, "Baron");           // Process(target=worker, args=(2, "Baron"))
//     mp::Process q({.name = "clock", .daemon = true}, worker, 1, "x");
//     p.start();
//     p.join();                                    // or p.join(1s): true once it ended
//     std::cout << *p.exitcode();                  // 0; -N when killed by signal N
//   }
//
//   struct ClockProcess : mp::Process {            // a subclass overriding run()
//     int interval = 2;
//     void run() override { ... }
//     template <class A> void serialize(A& ar) { ar(interval); }   // for spawn/forkserver
//   };
//   MP_REGISTER_PROCESS(ClockProcess);             // for spawn/forkserver only
// @endcode
//
// Start methods (see context.hpp): `fork` (the default) runs any callable, captures
// included, and a subclass needs nothing. `spawn` and `forkserver` start a fresh
// image of the same executable, so the target must be a function, a captureless
// lambda or a function object with a cereal `serialize` member, its arguments must be
// serializable, and a subclass must be registered with MP_REGISTER_PROCESS; anything
// else is refused by start() with mp::ValueError saying why.
//
// How a child ends is never lost: a normal return gives exitcode 0, std::exit(n)
// gives n, an exception escaping the target prints "Process NAME:", the stack of the
// throw and "Type: message" on stderr and gives 1, death by signal N gives -N.
// Daemon children die with their parent, even when it is SIGKILLed (the kernel's
// parent-death signal: note it fires when the *thread* that started the child ends,
// so start daemons from a thread that lives as long as they should). Non-daemon
// children are joined when main returns, daemons are terminated then; no zombies.
//
// Thread-safety: one Process object is used from one thread at a time; different
// Process objects may be used from different threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mp/detail/callable.hpp"
#include "mp/errors.hpp"

namespace mp {

/// How a child process is started (Python's start methods).
enum class StartMethod {
  fork,        ///< fork(): the child is a copy of the parent; any callable runs.
  spawn,       ///< exec of the running executable; the target crosses serialized.
  forkserver,  ///< a single-threaded server (itself exec'd) forks the children.
};

/// "fork", "spawn" or "forkserver".
std::string_view to_string(StartMethod m) noexcept;

/// Python's keyword arguments of Process(...).
/// (Every member has a default initializer, so `{.daemon = true}` compiles cleanly
/// under -Wextra.)
struct ProcessOptions {
  std::string name{};                         ///< "" = "Process-N"
  bool daemon = false;                        ///< killed with its parent; cannot have children
  std::optional<StartMethod> start_method{};  ///< unset = the program's (get_start_method())
};

namespace detail {
class ProcessState;
struct ProcessAccess;
struct SelfTag {};
}  // namespace detail

class Process {
 public:
  /// A process whose run() is overridden by a subclass.
  Process();
  explicit Process(ProcessOptions options);

  /// Process(target=f, args=(args...)): start() runs f(args...) in the child.
  /// Arguments are copied (string literals as std::string) when the Process is built.
  template <class F, class... A>
    requires(!std::is_same_v<std::remove_cvref_t<F>, ProcessOptions> &&
             detail::callable_with_stored_v<std::decay_t<F>, detail::stored_arg_t<A>...>)
  explicit Process(F&& target, A&&... args)
      : Process(ProcessOptions{}, std::forward<F>(target), std::forward<A>(args)...) {}

  template <class F, class... A>
    requires detail::callable_with_stored_v<std::decay_t<F>, detail::stored_arg_t<A>...>
  Process(ProcessOptions options, F&& target, A&&... args) : Process(std::move(options)) {
    target_ = detail::make_target(std::forward<F>(target), std::forward<A>(args)...);
  }

  /// A Process may be moved (into a std::vector, say); the moved-from object is empty.
  /// A moved-from object may only be destroyed or assigned to.
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  /// Does not wait for the child: a non-daemon child still running is joined when main
  /// returns, a daemon one is terminated then (as Python does).
  virtual ~Process();

  /// The child's work. The default calls the target; a subclass overrides it.
  virtual void run();

  /// Starts the child. Throws mp::ValueError on a second start, from a daemon process,
  /// on a closed object, or when the target cannot cross to a spawn/forkserver child
  /// (the message says why); mp::ProcessError / mp::OSError if the system refuses.
  void start();

  /// Waits for the child to end. Returns true once it has ended, false on timeout.
  /// Throws mp::ValueError before start() or on a closed object.
  bool join();
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }

  /// True between start() and the child's end. Does not wait for the child (under
  /// forkserver, a child that has just ended is reported by the server within
  /// microseconds; if the server is dead, after at most 2 s, with exit code 255).
  bool is_alive();
  /// The child's pid; empty before start(). For current_process(), this process's pid.
  std::optional<pid_t> pid() const;
  std::optional<pid_t> ident() const { return pid(); }
  const std::string& name() const noexcept { return options_.name; }
  void set_name(std::string name) { options_.name = std::move(name); }
  bool daemon() const noexcept { return options_.daemon; }
  /// Throws mp::ValueError after start().
  void set_daemon(bool daemon);
  /// The start method this Process uses (its option, else the program's).
  StartMethod start_method() const;

  /// Empty while the child runs or before start(); then its exit status: the code it
  /// exited with, or -N if signal N killed it. Never blocks.
  std::optional<int> exitcode();

  /// Sends SIGTERM / SIGKILL. Does nothing once the child has ended.
  void terminate();
  void kill();

  /// Releases the child's resources (sentinel, ...). Throws mp::ValueError while the
  /// child runs. Afterwards every call but name() and exitcode() throws mp::ValueError.
  void close();

  /// A descriptor that becomes readable (poll/epoll/select) when the child ends.
  /// Owned by this Process; valid until close(). Throws mp::ValueError before start().
  int sentinel() const;

 private:
  friend struct detail::ProcessAccess;
  explicit Process(detail::SelfTag);  // the main process's own object
  bool join_for(std::optional<std::chrono::nanoseconds> timeout);
  void release_child() noexcept;
  void check_not_closed(const char* what) const;
  void ensure_started(const char* what) const;

  ProcessOptions options_;
  std::unique_ptr<detail::Target> target_;
  std::shared_ptr<detail::ProcessState> state_;
  std::vector<int> identity_;  // Python's _identity: names "Process-1:2"
  bool closed_ = false;
};

/// The parent of the calling process, as seen from a child.
class ParentProcess {
 public:
  ParentProcess(pid_t pid, std::string name) : pid_(pid), name_(std::move(name)) {}
  pid_t pid() const noexcept { return pid_; }
  const std::string& name() const noexcept { return name_; }
  /// True while the parent runs. Never blocks.
  bool is_alive() const;
  /// A descriptor readable once the parent has ended (a pidfd, opened on first use
  /// and kept for the life of the program).
  int sentinel() const;

 private:
  pid_t pid_;
  std::string name_;
};

/// The calling process: the child's own Process object in a child (subclass included),
/// an object named "MainProcess" in the main process.
Process& current_process();

/// The parent of a child process; empty in the main process.
std::optional<ParentProcess> parent_process();

/// The started children of this process that are still alive and whose Process object
/// still exists; ended ones are reaped. (A child whose Process object was destroyed is
/// still joined at exit, but has no object to point to, so it is not listed.)
std::vector<Process*> active_children();

/// Runs the child when the program was started as a spawn or forkserver child (and
/// never returns then); does nothing otherwise. Call it first thing in main.
void freeze_support(int argc, char** argv);

namespace detail {

/// Registers a Process subclass for spawn/forkserver (use MP_REGISTER_PROCESS).
using ProcessFactory = std::unique_ptr<Process> (*)(InputArchive&);
using ProcessSaver = void (*)(const Process&, OutputArchive&);
void register_process_type(const std::type_info& type, std::string_view name, ProcessFactory factory,
                           ProcessSaver saver);

template <class T>
struct ProcessTypeRegistrar {
  static_assert(std::is_base_of_v<Process, T>, "MP_REGISTER_PROCESS: the type must derive from mp::Process");
  static_assert(std::is_default_constructible_v<T>,
                "MP_REGISTER_PROCESS: the type needs a default constructor (spawn/forkserver build it in the child)");
  ProcessTypeRegistrar() {
    register_process_type(
        typeid(T), type_name<T>(),
        [](InputArchive& ar) -> std::unique_ptr<Process> {
          auto p = std::make_unique<T>();
          if constexpr (cereal_serializable_v<T>) load_value(ar, *p);
          return p;
        },
        [](const Process& p, OutputArchive& ar) {
          if constexpr (cereal_serializable_v<T>) save_value(ar, static_cast<const T&>(p));
        });
  }
};

}  // namespace detail
}  // namespace mp

#define MP_DETAIL_CONCAT2(a, b) a##b
#define MP_DETAIL_CONCAT(a, b) MP_DETAIL_CONCAT2(a, b)

/// Makes a Process subclass startable under spawn and forkserver: the child builds it
/// with its default constructor, then loads the members its cereal `serialize` lists.
/// Use once, at namespace scope, in the program that starts it.
#define MP_REGISTER_PROCESS(T)                                                 \
  static const ::mp::detail::ProcessTypeRegistrar<T> MP_DETAIL_CONCAT(        \
      mp_detail_process_registrar_, __COUNTER__) {}
