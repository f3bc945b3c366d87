// src/resource_tracker.cpp — the resource tracker (CPython's resource_tracker.py): one
// process per program tree that unlinks the named shared memory the tree created and
// left behind, once every process of the tree is gone, however they ended.
//
// Design
//  - The tracker holds one end of a SOCK_SEQPACKET socket pair; every process of the
//    tree holds the other end (fork children inherit it, spawn and forkserver children
//    receive it with their payload: spawn.cpp). A process that creates a segment with
//    track = true sends "R m NAME"; unlink() sends "U m NAME" first, whoever calls it.
//    When the last process holding the tree's end is gone — normal exit, exception,
//    SIGKILL, OOM — the kernel closes its descriptors and the tracker reads EOF: it
//    shm_unlinks what is still registered and exits. Nothing needs to run in a dying
//    process, which is what makes SIGKILL safe; the delay is the kernel's (well under
//    a millisecond), far inside the 1 s the issue asks for.
//  - The link comes before the tracker. The socket pair is made before a process's
//    first child, with a page of shared memory (TreeState), and travels to every
//    process of the tree with the tracker's end kept aside ("spare"); the tracker is
//    started at the tree's first tracked creation, by whichever process makes it: that
//    process claims the start in the shared page (a compare-and-swap of its
//    self_stamp()), launches the tracker on its spare end and publishes the tracker's
//    pid; a process that finds the start claimed waits for the pid (a futex on the
//    page), and takes the claim over if the claimer died. Requests are sent only once
//    the tracker runs. So a program that starts processes but creates no tracked
//    segment never starts a tracker (a Pool's start pays a socket pair, not a process),
//    and every process of the tree still holds the tracker's connection from its birth.
//    Once a process has seen the tracker running it closes its spare end, so that the
//    socket shows the tracker's death; a tracker whose pid (with its start time) is
//    gone counts as dead too, for the processes that still hold a spare.
//  - The tracker is a fresh exec of the program (/proc/self/exe --mp-resource-tracker,
//    via spawn_self), caught by a constructor below before any of the program's own
//    static initializers or main() run. A fresh exec rather than a bare fork: it holds
//    none of the parent's memory (a forked tracker would pin, copy-on-write, every page
//    the program had at that moment, for the program's whole life), it may allocate
//    freely (no async-signal-safety rules in a multithreaded parent), and posix_spawn
//    costs the same whatever the parent's size. The exec'd process forks once and its
//    first half exits at once (the starter reaps it), so the tracker is nobody's child
//    in the tree: it never shows in waitpid(), active_children() or the tests'
//    expect_no_children_left(), and a program's `while (wait(nullptr) > 0)` cannot
//    hang on it. The tracker reports its pid and start stamp on the socket: the
//    starter knows it started. Cost: one exec of the program per tree (a few ms,
//    once), paid by the process that makes the tree's first tracked segment. (The
//    launcher is reaped at once, by that process itself, not by a helper thread: a
//    thread starting or ending while the next fork happens can leave a sanitizer's or
//    allocator's lock held in the child. Seen under ASan.)
//  - The tracker puts itself in its own process group (setpgid, not setsid: it stays
//    in the session) and ignores SIGINT, SIGTERM, SIGHUP, SIGQUIT and job control: a
//    Ctrl-C, a `kill -9 -PGID` of the program's job or a `killall` of its name kills
//    the tree but not its tracker, which then cleans up. PR_SET_PDEATHSIG is not set:
//    it must outlive the tree. It holds only its socket end and stderr (stdin and
//    stdout are /dev/null, cwd is /), so it keeps no pipe or mount of the program's
//    open, and it exits as soon as the tree is gone: it never outlives it.
//
// When the tracker starts — the hazard CPython has
//  A tracker whose connection some process of the tree lacks may unlink under it. In
//  CPython, under fork, a child that creates a segment while its parent has no tracker
//  starts a tracker of its own; the parent attaches; the child exits; its tracker sees
//  EOF and unlinks the segment the parent still uses. mp avoids that with the link made
//  before the first child of a process (Process::start calls before_child()): the
//  child that creates the tree's first segment starts the tree's tracker, whose
//  connection the parent already holds, so only the end of the whole tree triggers
//  cleanup. To cost nothing in programs that never use named shared memory, the link
//  is made only when the program links SharedMemory (shared_memory.cpp calls want() at
//  static initialization). What remains:
//  - A child made by mp::os::fork() or a raw fork() of a process that had no link
//    yet (no Process started, nothing tracked created) starts its own on its first
//    tracked creation: the segments it creates are then unlinked when *its* subtree is
//    gone. Start a Process or create a tracked segment before forking by hand.
//  - A child whose parent could not make a link (out of descriptors) is its own root,
//    likewise.
//  - A process killed while it starts the tracker may leave a second tracker reading
//    the same socket once another process takes the claim over: each then removes what
//    it read, which together is still everything registered (a "U" read by the other
//    one only makes an unlink find nothing).
//  - If the tracker itself is killed (SIGKILL by hand), a process that registers next
//    finds it gone (EPIPE, or its pid gone), warns and starts a new one for itself
//    and its future children; what the old one held may leak, as in CPython.
//  - unlink() unregisters before it unlinks, so a process of the tree that re-creates
//    the name right after cannot have its registration erased by a late "U". A process
//    killed between those two steps, or between shm_open and "R", leaks that one
//    segment (the windows are a few system calls wide).
//  - The tracker unlinks by name: a tracked name that another program unlinked and
//    re-created in between would be removed. Generated names are random ("psm_" + 8 hex
//    digits, as CPython's); chosen names are the caller's to keep unique.
//  - A process that only attached never registers, so its exit never unlinks anything,
//    whatever its start method (CPython <= 3.12 registered attachments too, and
//    unlinked them when such a process ended).
//
// Warning policy
//  At the end, the tracker prints one line on stderr naming the segments *it* removed:
//  created with track = true, never unlinked by any process of the tree (a forgotten
//  unlink(), or a crash). A segment that was unlinked — by its creator, by another
//  process of the tree, or even by another program (shm_unlink then finds nothing) — is
//  never reported, so there is no false "leaked" warning; a clean program prints
//  nothing.
//
// Protocol: one SOCK_SEQPACKET message per request, [op 'R'|'U'][kind 'm'][name], the
// name 1 to 255 bytes without '/' or NUL. One message is one atomic send, so writers
// never interleave. Malformed messages are ignored.
#include "resource_tracker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <set>
#include <string>

#include "mp/detail/futex.hpp"
#include "mp/detail/sync_core.hpp"
#include "mp/detail/sys.hpp"
#include "mp/errors.hpp"
#include "process_internal.hpp"

namespace mp::detail::resource_tracker {
namespace {

constexpr const char* kTrackerFlag = "--mp-resource-tracker";
constexpr std::size_t kMaxName = 255;
constexpr char kShm = 'm';

// The tracker's first message, on the tree's side of the socket: who it is (its pid and
// self_stamp(), so that the tree can tell it is gone, pid reuse included).
struct Hello {
  std::uint32_t magic;
  std::int32_t pid;
  std::uint64_t stamp;
};
constexpr std::uint32_t kHelloMagic = 0x4d505254;  // "MPRT"

// ---- the tracker process ---------------------------------------------------------

bool valid_name(const char* p, std::size_t n) {
  if (n == 0 || n > kMaxName) return false;
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] == '/' || p[i] == '\0') return false;
  return true;
}

void ignore_tree_signals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2}) {
    ::signal(sig, SIG_IGN);
  }
}

[[noreturn]] void serve(int fd) {
  ::setpgid(0, 0);
  const Hello hello{kHelloMagic, static_cast<std::int32_t>(::getpid()), self_stamp()};
  ::send(fd, &hello, sizeof hello, MSG_NOSIGNAL);
  ::prctl(PR_SET_NAME, "mp-res-tracker");
  if (::chdir("/") != 0) {
    // stays where it was: it only keeps a mount busy a little longer
  }
  const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(devnull, STDOUT_FILENO);
    ::close(devnull);
  }

  std::set<std::string> segments;
  char buf[2 + kMaxName + 1];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;  // every process of the tree is gone
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    const auto len = static_cast<std::size_t>(n);
    if (len < 3 || buf[1] != kShm || !valid_name(buf + 2, len - 2)) continue;
    std::string name(buf + 2, len - 2);
    if (buf[0] == 'R') {
      segments.insert(std::move(name));
    } else if (buf[0] == 'U') {
      segments.erase(name);
    }
  }

  std::string removed;
  std::size_t count = 0;
  for (const std::string& name : segments) {
    if (::shm_unlink(("/" + name).c_str()) == 0) {
      removed += (count++ ? ", " : " ") + name;
    }
  }
  if (count) {
    const std::string line = "mp resource_tracker: " + std::to_string(count) +
                             " shared memory segment(s) created with track=true were never unlinked; removed them at "
                             "shutdown:" +
                             removed + "\n";
    if (::write(STDERR_FILENO, line.data(), line.size()) < 0) {
      // stderr is gone with the program: nothing else to tell
    }
  }
  ::_exit(0);
}

// The exec'd program, before any static initializer of the program or main(): fd 3 is
// the tracker's end of the socket. Priority 101 runs before every constructor of
// default priority in the executable (a shared libmp runs before the executable's
// anyway).
__attribute__((constructor(101))) void run_if_tracker(int argc, char** argv, char**) {
  if (argc < 2 || !argv || !argv[1] || std::strcmp(argv[1], kTrackerFlag) != 0) return;
  const int fd = 3;
  // Out of the tree's process group and deaf to its signals before the tracker exists:
  // a `kill -9 -PGID` of the tree right after the report must not catch the tracker.
  ::setpgid(0, 0);
  ignore_tree_signals();
  const pid_t pid = ::fork();
  if (pid < 0) ::_exit(1);
  if (pid == 0) serve(fd);
  ::_exit(0);
}

// ---- the client in every process of the tree ------------------------------------

// What the processes of one tree share, in a page of an anonymous memfd (fork children
// inherit the mapping; spawn and forkserver children map the descriptor they receive).
struct TreeState {
  std::atomic<std::uint64_t> claim{0};    // self_stamp() of the process starting the tracker
  std::atomic<std::uint32_t> tracker{0};  // the tracker's pid once it runs (a futex word)
  std::atomic<std::uint64_t> tracker_stamp{0};
};
static_assert(sizeof(TreeState) <= 4096);

constexpr auto kClaimWait = std::chrono::seconds(10);  // for a tracker another process starts

std::mutex g_mu;                 // guards the four below; held across fork (atfork)
int g_fd = -1;                   // the tree's end of the socket, CLOEXEC
int g_spare = -1;                // the tracker's end, kept until a tracker reads it
int g_state_fd = -1;             // the memfd of `g_state`
TreeState* g_state = nullptr;    // mapped
std::atomic<bool> g_wanted{false};

void atfork_prepare() { g_mu.lock(); }
void atfork_release() { g_mu.unlock(); }

[[maybe_unused]] const int g_atfork_registered = [] {
  ::pthread_atfork(atfork_prepare, atfork_release, atfork_release);
  return 0;
}();

void close_link_locked() noexcept {
  for (int* fd : {&g_fd, &g_spare, &g_state_fd}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  if (g_state) ::munmap(g_state, sizeof(TreeState));
  g_state = nullptr;
}

TreeState* map_state(int fd) {
  void* p = ::mmap(nullptr, sizeof(TreeState), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw_os_error("mmap (resource tracker state)", errno);
  return static_cast<TreeState*>(p);
}

// Gives this process a new tree link — a socket pair and a shared state page, no tracker
// yet — unless it has one. A few system calls: what a Process start pays. Called with
// g_mu held.
void ensure_link_locked() {
  if (g_fd >= 0) return;
  int sv[2];
  sys("socketpair", [&] { return ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv); });
  UniqueFd mine(sv[0]), theirs(sv[1]);
  UniqueFd mem(sys("memfd_create", [] { return ::memfd_create("mp-resource-tracker", MFD_CLOEXEC); }));
  sys("ftruncate", [&] { return ::ftruncate(mem.get(), sizeof(TreeState)); });
  g_state = new (map_state(mem.get())) TreeState;
  g_fd = mine.release();
  g_spare = theirs.release();
  g_state_fd = mem.release();
}

// This process won the claim: launches the tracker on the spare end and waits for its
// hello (a few ms, once per tree). Called with g_mu held.
void launch_locked() {
  auto give_up = [](const std::string& why) {
    g_state->claim.store(0, std::memory_order_release);
    futex_wake(g_state->tracker, INT32_MAX);
    throw ProcessError("could not start the resource tracker (a new start of /proc/self/exe): " + why +
                       "; segments created with .track = false need none");
  };
  pid_t first = 0;
  try {
    first = spawn_self({kTrackerFlag}, {g_spare});
  } catch (const std::exception& e) {
    give_up(e.what());
  }
  int status = 0;
  const pid_t reaped = sys_nothrow([&] { return ::waitpid(first, &status, 0); });
  if (reaped == first && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    give_up("it ended with wait status " + std::to_string(status));
  }
  // The tracker's hello comes on the tree's end, which nobody else of the tree reads.
  pollfd pfd{g_fd, POLLIN, 0};
  sys_nothrow([&] { return ::poll(&pfd, 1, 5000); });
  Hello hello{};
  const auto n = sys_nothrow([&] { return ::recv(g_fd, &hello, sizeof hello, MSG_DONTWAIT); });
  if (n != static_cast<ssize_t>(sizeof hello) || hello.magic != kHelloMagic) give_up("it did not report");
  g_state->tracker_stamp.store(hello.stamp, std::memory_order_relaxed);
  g_state->tracker.store(static_cast<std::uint32_t>(hello.pid), std::memory_order_release);
  futex_wake(g_state->tracker, INT32_MAX);
}

// Returns once the tree has a tracker: started by this process if nobody has claimed
// the start, or by the process that has (waited for, up to kClaimWait; a claimer that
// died is taken over). Then this process lets go of its spare end, so that a tracker
// that dies is seen as a closed socket. Called with g_mu held, with a link.
void ensure_tracker_locked() {
  const auto deadline = std::chrono::steady_clock::now() + kClaimWait;
  while (g_state->tracker.load(std::memory_order_acquire) == 0) {
    std::uint64_t claim = g_state->claim.load(std::memory_order_acquire);
    if (claim == 0) {
      if (g_state->claim.compare_exchange_strong(claim, self_stamp(), std::memory_order_acq_rel)) launch_locked();
      continue;
    }
    const auto claimer = static_cast<pid_t>(claim & ((std::uint64_t{1} << 22) - 1));
    if (holder_gone(claimer, claim)) {
      g_state->claim.compare_exchange_strong(claim, 0, std::memory_order_acq_rel);
      continue;
    }
    if (!futex_wait(g_state->tracker, 0, deadline, std::chrono::milliseconds(20))) {
      throw ProcessError("the resource tracker that process " + std::to_string(claimer) +
                         " of this tree is starting did not start within 10 s");
    }
  }
  if (g_spare >= 0) {
    ::close(g_spare);
    g_spare = -1;
  }
}

// Whether the tree's tracker is gone (killed by hand: it ignores the tree's signals).
bool tracker_gone_locked() {
  const auto pid = static_cast<pid_t>(g_state->tracker.load(std::memory_order_acquire));
  return pid > 0 && holder_gone(pid, g_state->tracker_stamp.load(std::memory_order_relaxed));
}

// Sends one request. false if the tracker is gone (EPIPE).
bool send_locked(char op, const std::string& name) {
  char buf[2 + kMaxName];
  buf[0] = op;
  buf[1] = kShm;
  std::memcpy(buf + 2, name.data(), name.size());
  const auto n = sys_nothrow([&] { return ::send(g_fd, buf, 2 + name.size(), MSG_NOSIGNAL); });
  if (n >= 0) return true;
  if (n == -EPIPE || n == -ECONNRESET || n == -ENOTCONN) return false;
  throw_os_error("send (resource tracker)", static_cast<int>(-n));
}

}  // namespace

void want() noexcept { g_wanted.store(true, std::memory_order_relaxed); }

void before_child() noexcept {
  if (!g_wanted.load(std::memory_order_relaxed)) return;
  std::lock_guard g(g_mu);
  try {
    ensure_link_locked();
    if (g_spare >= 0 && g_state->tracker.load(std::memory_order_acquire) != 0) {
      ::close(g_spare);  // a tracker runs: the spare end only hides its death
      g_spare = -1;
    }
  } catch (...) {
    // The child starts unlinked; its first register_segment() makes a link of its own.
  }
}

Link link() noexcept {
  std::lock_guard g(g_mu);
  return {g_fd, g_spare, g_state_fd};
}

int fd() noexcept {
  std::lock_guard g(g_mu);
  return g_fd;
}

void adopt(const Link& link) noexcept {
  std::lock_guard g(g_mu);
  if (link.tree < 0 || link.state < 0) return;
  TreeState* state = nullptr;
  try {
    state = map_state(link.state);
  } catch (...) {
    return;  // unlinked: the first register_segment() makes a link of its own
  }
  close_link_locked();
  for (int fd : {link.tree, link.spare, link.state}) {
    if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // an exec'd grandchild must not keep the tree alive
  }
  g_fd = link.tree;
  g_spare = link.spare;
  g_state_fd = link.state;
  g_state = state;
}

void register_segment(const std::string& name) {
  if (!valid_name(name.data(), name.size())) throw ValueError("resource tracker: invalid name '" + name + "'");
  std::lock_guard g(g_mu);
  ensure_link_locked();
  ensure_tracker_locked();
  if (!tracker_gone_locked() && send_locked('R', name)) return;
  // The tracker was killed: start another for this process (and its future children).
  const std::string warning =
      "mp resource_tracker: the tracker process died unexpectedly; starting a new one (segments registered with "
      "the old one may leak)\n";
  if (::write(STDERR_FILENO, warning.data(), warning.size()) < 0) {
    // no stderr: the warning is lost, the relaunch goes on
  }
  close_link_locked();
  ensure_link_locked();
  ensure_tracker_locked();
  if (!send_locked('R', name)) throw ProcessError("the resource tracker died right after it started");
}

void unregister_segment(const std::string& name) noexcept {
  if (!valid_name(name.data(), name.size())) return;
  std::lock_guard g(g_mu);
  if (g_fd < 0 || !g_state || g_state->tracker.load(std::memory_order_acquire) == 0) return;
  try {
    send_locked('U', name);
  } catch (...) {
  }
}

bool claim_start_for_test() {
  std::lock_guard g(g_mu);
  ensure_link_locked();
  std::uint64_t expected = 0;
  return g_state->claim.compare_exchange_strong(expected, self_stamp(), std::memory_order_acq_rel);
}

pid_t pid() noexcept {
  std::lock_guard g(g_mu);
  return g_state ? static_cast<pid_t>(g_state->tracker.load(std::memory_order_acquire)) : 0;
}

}  // namespace mp::detail::resource_tracker
