// src/process.cpp — the life cycle of a Process (CPython's process.py): starting through
// a start-method strategy, joining, the table of children, current_process, and the
// child-side bootstrap that turns how the target ended into an exit code.
//
// Hazards, and what this file does about them:
//  - fork while another thread holds the children table's mutex would leave the child
//    with a locked mutex: the mutex is taken around every fork (pthread_atfork).
//  - a Process object may be destroyed while its child runs: the child's state is
//    shared with the table, which reaps it later and joins it at exit.
//  - a forked child inherits the parent's table, counter and atexit handler: the child
//    forgets them first thing, so it never joins or kills its siblings.
#include "mp/process.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdio_ext.h>
#include <mutex>

#include "mp/context.hpp"
#include "mp/detail/sys.hpp"
#include "process_internal.hpp"
#include "resource_tracker.hpp"

namespace mp {
namespace detail {
namespace {

struct ChildrenTable {
  std::mutex mu;
  std::vector<std::shared_ptr<ProcessState>> list;
};

// Leaked on purpose: the atexit handler and late destructors still use it.
ChildrenTable& children() {
  static auto* table = new ChildrenTable;
  return *table;
}

std::atomic<int> g_counter{0};
Process* g_current = nullptr;             // null: the main process object
std::optional<ChildOrigin> g_origin;      // set in children
std::once_flag g_atexit_once;

void remove_from_table(const std::shared_ptr<ProcessState>& s) {
  auto& t = children();
  std::lock_guard g(t.mu);
  std::erase(t.list, s);
}

// Python's _cleanup(): reap children that ended and whose Process object is gone.
void reap_orphans() {
  auto& t = children();
  std::lock_guard g(t.mu);
  std::erase_if(t.list, [](const std::shared_ptr<ProcessState>& s) { return !s->owner && s->poll(); });
}

// Python's _exit_function(): terminate daemonic children, then join every child.
void join_children_at_exit() {
  std::vector<std::shared_ptr<ProcessState>> list;
  {
    auto& t = children();
    std::lock_guard g(t.mu);
    list.swap(t.list);
  }
  for (auto& s : list)
    if (s->daemon && !s->poll()) s->popen->send_signal(SIGTERM);
  for (auto& s : list) {
    while (!s->poll()) {
      pollfd pfd{s->popen->sentinel(), POLLIN, 0};
      ::poll(&pfd, 1, 100);
    }
  }
}

void atfork_prepare() { children().mu.lock(); }
void atfork_parent() { children().mu.unlock(); }
void atfork_child() {
  children().mu.unlock();
  reset_after_fork_in_child();
}

[[maybe_unused]] const int g_atfork_registered = [] {
  ::pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
  return 0;
}();

std::string join_identity(const std::vector<int>& id) {
  std::string s;
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (i) s += ':';
    s += std::to_string(id[i]);
  }
  return s;
}

}  // namespace

void reset_after_fork_in_child() noexcept {
  // The table's entries are the parent's children: drop them without touching them.
  auto& t = children();
  for (auto& s : t.list) s->owner = nullptr;
  t.list.clear();  // closes this process's copies of their sentinels
  g_counter = 0;
  forget_forkserver_after_fork();
}

// As Python flushes sys.stdout and sys.stderr before a fork. Only when something is
// buffered: a flush takes the FILE's lock, which writes to a page the fork then copies.
// (std::cout and std::cerr are synchronised with stdio, so they buffer nothing.)
void flush_stdio() noexcept {
  if (::__fpending(stdout)) std::fflush(stdout);
  if (::__fpending(stderr)) std::fflush(stderr);
}

namespace {
std::atomic<void (*)()> g_child_exit_hooks[4];
}  // namespace

void add_child_exit_hook(void (*hook)()) noexcept {
  for (auto& slot : g_child_exit_hooks) {
    void (*expected)() = nullptr;
    if (slot.load() == hook || slot.compare_exchange_strong(expected, hook)) return;
  }
}

[[noreturn]] void exit_child(int code) {
  for (auto& slot : g_child_exit_hooks) {
    if (auto hook = slot.load()) {
      try {
        hook();
      } catch (...) {
      }
    }
  }
  flush_stdio();
  try {
    join_children_at_exit();
  } catch (...) {
  }
  flush_stdio();
  ::_exit(code);
}

[[noreturn]] void run_as_child(Process& self, const ChildOrigin& origin) {
  // In the child, the Process object stands for the calling process itself.
  ProcessAccess::state(self) = std::make_shared<ProcessState>();
  g_current = &self;
  g_origin = origin;
  int code = 0;
  try {
    set_capture_throw_stacks(true);
    self.run();
    set_capture_throw_stacks(false);
  } catch (...) {
    set_capture_throw_stacks(false);
    report_child_exception(self.name());
    code = 1;
  }
  exit_child(code);
}

}  // namespace detail

// ---- Process ---------------------------------------------------------------------

Process::Process() : Process(ProcessOptions{}) {}

Process::Process(ProcessOptions options) : options_(std::move(options)) {
  identity_ = current_process().identity_;
  identity_.push_back(++detail::g_counter);
  if (options_.name.empty()) options_.name = "Process-" + detail::join_identity(identity_);
}

Process::Process(detail::SelfTag) : state_(std::make_shared<detail::ProcessState>()) {
  options_.name = "MainProcess";
}

Process::Process(Process&& other) noexcept
    : options_(std::move(other.options_)),
      target_(std::move(other.target_)),
      state_(std::move(other.state_)),
      identity_(std::move(other.identity_)),
      closed_(other.closed_) {
  if (state_ && !state_->is_self()) {
    std::lock_guard g(detail::children().mu);
    if (state_->owner == &other) state_->owner = this;
  }
}

Process& Process::operator=(Process&& other) noexcept {
  if (this == &other) return *this;
  release_child();
  options_ = std::move(other.options_);
  target_ = std::move(other.target_);
  state_ = std::move(other.state_);
  identity_ = std::move(other.identity_);
  closed_ = other.closed_;
  if (state_ && !state_->is_self()) {
    std::lock_guard g(detail::children().mu);
    if (state_->owner == &other) state_->owner = this;
  }
  return *this;
}

Process::~Process() { release_child(); }

// This object no longer stands for its child; the table keeps the child until it is
// reaped (and joins it at exit if it still runs then).
void Process::release_child() noexcept {
  if (!state_ || state_->is_self()) return;
  auto& t = detail::children();
  std::lock_guard g(t.mu);
  if (state_->owner == this) state_->owner = nullptr;
  try {
    if (state_->poll()) std::erase(t.list, state_);
  } catch (...) {
  }
  state_.reset();
}

void Process::run() {
  if (target_) target_->call();
}

std::string_view to_string(StartMethod m) noexcept {
  switch (m) {
    case StartMethod::fork: return "fork";
    case StartMethod::spawn: return "spawn";
    case StartMethod::forkserver: return "forkserver";
  }
  return "unknown";
}

StartMethod Process::start_method() const { return options_.start_method.value_or(get_start_method()); }

void Process::check_not_closed(const char* what) const {
  if (closed_) throw ValueError(std::string("process object is closed: cannot ") + what + " " + options_.name);
}

void Process::ensure_started(const char* what) const {
  check_not_closed(what);
  if (!state_) throw ValueError(std::string("can only ") + what + " a started process (" + options_.name + ")");
}

void Process::start() {
  detail::check_freeze_support_ran();
  check_not_closed("start");
  if (state_) {
    throw ValueError(state_->is_self() ? "cannot start the current process"
                                       : "cannot start a process twice (" + options_.name + ")");
  }
  if (current_process().daemon()) throw ValueError("daemonic processes are not allowed to have children");
  const StartMethod method = start_method();
  detail::reap_orphans();
  std::call_once(detail::g_atexit_once, [] { std::atexit(detail::join_children_at_exit); });

  detail::resource_tracker::before_child();  // the child is born holding the tree's tracker
  auto state = std::make_shared<detail::ProcessState>();
  state->daemon = options_.daemon;
  switch (method) {
    case StartMethod::fork: state->popen = detail::launch_fork(*this); break;
    case StartMethod::spawn: state->popen = detail::launch_spawn(*this); break;
    case StartMethod::forkserver: state->popen = detail::launch_forkserver(*this); break;
  }
  // As CPython's start(): the parent no longer needs the target and its arguments; a
  // Connection among them is closed here, so only the child holds its descriptor.
  target_.reset();
  state->owner = this;
  state_ = state;
  auto& t = detail::children();
  std::lock_guard g(t.mu);
  t.list.push_back(std::move(state));
}

bool Process::join() { return join_for(std::nullopt); }

bool Process::join_for(std::optional<std::chrono::nanoseconds> timeout) {
  ensure_started("join");
  if (state_->is_self()) throw ValueError("can only join a child process, not the current one");
  using clock = std::chrono::steady_clock;
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  for (;;) {
    if (state_->poll()) {
      detail::remove_from_table(state_);
      return true;
    }
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout) {
      auto left = deadline - clock::now();
      if (left <= clock::duration::zero()) return false;
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      tsp = &ts;
    }
    pollfd pfd{state_->popen->sentinel(), POLLIN, 0};
    int r = ::ppoll(&pfd, 1, tsp, nullptr);
    if (r < 0 && errno != EINTR) detail::throw_os_error("ppoll", errno);
  }
}

bool Process::is_alive() {
  check_not_closed("query");
  if (!state_) return false;
  if (state_->is_self()) return true;
  return !state_->poll();
}

std::optional<pid_t> Process::pid() const {
  if (!state_) return std::nullopt;
  if (state_->is_self()) return ::getpid();
  return state_->popen->pid();
}

void Process::set_daemon(bool daemon) {
  if (state_) throw ValueError("process has already started: cannot change daemon of " + options_.name);
  options_.daemon = daemon;
}

std::optional<int> Process::exitcode() {
  if (!state_ || state_->is_self()) return std::nullopt;
  return state_->poll();
}

void Process::terminate() {
  ensure_started("terminate");
  if (!state_->is_self()) state_->popen->send_signal(SIGTERM);
}

void Process::kill() {
  ensure_started("kill");
  if (!state_->is_self()) state_->popen->send_signal(SIGKILL);
}

void Process::close() {
  if (closed_) return;
  if (state_ && !state_->is_self()) {
    if (!state_->poll()) {
      throw ValueError("Cannot close a process while it is still running (" + options_.name +
                       "). You should first call join() or terminate().");
    }
    detail::remove_from_table(state_);
  }
  closed_ = true;
}

int Process::sentinel() const {
  ensure_started("get the sentinel of");
  if (state_->is_self()) throw ValueError("the current process has no sentinel");
  return state_->popen->sentinel();
}

// ---- module functions ----------------------------------------------------------

Process& current_process() {
  if (detail::g_current) return *detail::g_current;
  static auto* main_process = detail::ProcessAccess::make_main();
  return *main_process;
}

std::optional<ParentProcess> parent_process() {
  if (!detail::g_origin) return std::nullopt;
  return ParentProcess(detail::g_origin->parent_pid, detail::g_origin->parent_name);
}

std::vector<Process*> active_children() {
  auto& t = detail::children();
  std::lock_guard g(t.mu);
  std::erase_if(t.list, [](const std::shared_ptr<detail::ProcessState>& s) { return s->poll().has_value(); });
  std::vector<Process*> out;
  for (auto& s : t.list)
    if (s->owner) out.push_back(s->owner);
  return out;
}

bool ParentProcess::is_alive() const {
  pollfd pfd{sentinel(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) == 0;
}

int ParentProcess::sentinel() const {
  static std::mutex mu;
  static int fd = -1;
  static pid_t for_pid = 0;
  std::lock_guard g(mu);
  if (fd < 0 || for_pid != pid_) {
    if (fd >= 0) ::close(fd);
    fd = detail::pidfd_open(pid_);
    for_pid = pid_;
  }
  return fd;
}

}  // namespace mp
