// src/synchronize.cpp — the futex algorithms behind mp/synchronize.hpp.
//
// Lock: the word holds the holder's pid (0 = free) and a waiters bit, as in Drepper's
// "Futexes are tricky" mutex #3: acquire is one compare-and-swap when free; a waiter sets
// the bit and sleeps; release swaps in 0 and makes the futex call only when the bit was
// set. Sleeps last at most 20 ms, after which the waiter checks that the holder still
// exists (holder_gone) and takes a dead holder's lock over with a compare-and-swap from
// the exact word it saw, so one waiter alone inherits it.
//
// Semaphore and Event: a value word and a count of sleepers; the releaser makes the futex
// call only when somebody sleeps. Both sides use sequentially consistent operations on
// the two words (a sleeper counts itself, then re-checks the value; a releaser changes
// the value, then reads the count), so one of them always sees the other.
//
// Condition: a sequence word. A waiter (holding the lock) registers, reads the sequence,
// releases the lock and sleeps while the sequence is unchanged; notify (holding the lock)
// bumps the sequence and wakes n sleepers. A waiter that registered but has not yet gone
// to sleep sees the new sequence and returns at once, so no wake-up is lost.
//
// Barrier: a robust mutex around the counters and a sequence word to sleep on; every end
// of a round (passed, broken, reset) bumps the sequence, and a bit per round records
// whether it ended broken, so a waiter that wakes late still learns its own round's fate.
#include "mp/synchronize.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <pthread.h>
#include <string>
#include <thread>

#include "mp/detail/code_identity.hpp"

namespace mp::detail {

namespace {

using namespace std::chrono_literals;

std::atomic<pid_t> g_pid{0};

void on_fork_child() {
  g_pid.store(static_cast<pid_t>(::getpid()), std::memory_order_relaxed);
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}

[[maybe_unused]] const int g_atfork = [] {
  ::pthread_atfork(nullptr, nullptr, on_fork_child);
  return 0;
}();

// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), and its
// state letter. Returns false if the process does not exist.
bool read_proc_stat(pid_t pid, char& state, std::uint64_t& start_time) {
  char path[40];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[512];
  const auto n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p) return false;
  p += 2;  // ") " then field 3, the state
  state = *p;
  // Fields 4..21, then 22 = starttime.
  int field = 3;
  while (*p && field < 22) {
    if (*p++ == ' ') ++field;
  }
  start_time = std::strtoull(p, nullptr, 10);
  return true;
}

constexpr auto kHolderCheckPeriod = 20ms;
constexpr int kLockSpins = 100;

// Stores only what changes: the line is contended, and the same process taking the
// lock again (the common case) finds its stamp already there.
void on_acquired(LockState& s, bool died) {
  const auto stamp = self_stamp();
  if (s.stamp.load(std::memory_order_relaxed) != stamp) s.stamp.store(stamp, std::memory_order_relaxed);
  if (s.recursive) {
    s.owner_tid.store(static_cast<std::uint32_t>(self_tid()), std::memory_order_relaxed);
    s.count.store(1, std::memory_order_relaxed);
  }
  if (died || s.holder_died.load(std::memory_order_relaxed)) s.holder_died.store(died ? 1 : 0, std::memory_order_relaxed);
}

bool deadline_passed(const Deadline& deadline) {
  return deadline && std::chrono::steady_clock::now() >= *deadline;
}

}  // namespace

std::uint64_t self_stamp() noexcept {
  static std::atomic<std::uint64_t> cached{0};
  static std::atomic<std::uint32_t> cached_generation{0};
  const auto generation = g_fork_generation.load(std::memory_order_relaxed);
  if (cached_generation.load(std::memory_order_acquire) == generation) return cached.load(std::memory_order_relaxed);
  char state = 0;
  std::uint64_t start = 0;
  const pid_t pid = self_pid();
  read_proc_stat(pid, state, start);
  const std::uint64_t stamp = (start << 22) | static_cast<std::uint64_t>(pid);
  cached.store(stamp, std::memory_order_relaxed);
  cached_generation.store(generation, std::memory_order_release);
  return stamp;
}

// Whether the process that holds a lock (its pid from the lock word, its stamp as the
// holder wrote it) is gone: no such process, a zombie, or a pid reused by a younger one.
bool holder_gone(pid_t pid, std::uint64_t stamp) {
  if (pid <= 0) return false;
  char state = 0;
  std::uint64_t start = 0;
  if (!read_proc_stat(pid, state, start)) return true;
  if (state == 'Z' || state == 'X' || state == 'x') return true;
  const bool stamp_is_this_pid = (stamp & ((std::uint64_t{1} << 22) - 1)) == static_cast<std::uint64_t>(pid);
  return stamp_is_this_pid && (stamp >> 22) != start;
}

pid_t self_pid() noexcept {
  pid_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = static_cast<pid_t>(::getpid());
    g_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

pid_t self_tid() noexcept { return self_identity().tid; }

void refresh_self_identity() noexcept {
  SelfIdentity& me = t_self_identity;
  me.pid = self_pid();
  me.tid = static_cast<pid_t>(::syscall(SYS_gettid));
  me.stamp = self_stamp();
  me.generation = fork_generation();
}

void throw_bad_shared_state(const char* what) {
  throw SerializationError(std::string("a ") + what + " in the message does not describe a valid shared " + what);
}

void LockState::init(bool recursive_lock) noexcept {
  recursive = recursive_lock ? 1 : 0;
  magic = kLockMagic;
}

bool lock_held_by_caller(const LockState& s) noexcept {
  const auto word = s.word.load(std::memory_order_relaxed);
  if (static_cast<pid_t>(word & LockState::kPidMask) != self_pid()) return false;
  return !s.recursive || static_cast<pid_t>(s.owner_tid.load(std::memory_order_relaxed)) == self_tid();
}

bool lock_acquire(LockState& s, const Deadline& deadline) {
  const auto me = static_cast<std::uint32_t>(self_pid());
  if (s.recursive && lock_held_by_caller(s)) {
    s.count.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  std::uint32_t expected = 0;
  if (s.word.compare_exchange_strong(expected, me, std::memory_order_acquire, std::memory_order_relaxed)) {
    on_acquired(s, false);
    return true;
  }
  if (deadline_passed(deadline)) return false;  // try_lock / acquire(false)
  for (int i = 0; i < kLockSpins; ++i) {
    cpu_relax();
    expected = 0;
    if (s.word.load(std::memory_order_relaxed) == 0 &&
        s.word.compare_exchange_strong(expected, me, std::memory_order_acquire, std::memory_order_relaxed)) {
      on_acquired(s, false);
      return true;
    }
  }
  // Slow path: from here on this process may sleep, so it takes the lock with the
  // waiters bit set (others may sleep too; a spurious wake-up costs less than a lost one).
  // The holder is looked at after a first full sleep period: reading /proc costs more
  // than most waits last.
  auto last_check = std::chrono::steady_clock::now();
  for (;;) {
    auto word = s.word.load(std::memory_order_relaxed);
    if (word == 0) {
      if (s.word.compare_exchange_strong(word, me | LockState::kWaiters, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
        on_acquired(s, false);
        return true;
      }
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_check >= kHolderCheckPeriod) {
      last_check = now;
      const auto holder = static_cast<pid_t>(word & LockState::kPidMask);
      if (holder_gone(holder, s.stamp.load(std::memory_order_relaxed))) {
        if (s.word.compare_exchange_strong(word, me | LockState::kWaiters, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
          on_acquired(s, true);
          return true;
        }
        continue;
      }
    }
    if (deadline_passed(deadline)) return false;
    if (!(word & LockState::kWaiters)) {
      if (!s.word.compare_exchange_strong(word, word | LockState::kWaiters, std::memory_order_relaxed)) continue;
      word |= LockState::kWaiters;
    }
    futex_wait(s.word, word, deadline, kHolderCheckPeriod);
  }
}

void lock_release(LockState& s) {
  if (s.recursive) {
    if (!lock_held_by_caller(s)) throw ValueError("cannot release an RLock this thread does not hold");
    const auto depth = s.count.load(std::memory_order_relaxed);  // only the holder touches it
    if (depth > 1) {
      s.count.store(depth - 1, std::memory_order_relaxed);
      return;
    }
    s.owner_tid.store(0, std::memory_order_relaxed);
  }
  if (s.holder_died.load(std::memory_order_relaxed)) s.holder_died.store(0, std::memory_order_relaxed);
  auto word = s.word.load(std::memory_order_relaxed);
  do {
    if (word == 0) throw ValueError("cannot release a Lock that nobody holds");
  } while (!s.word.compare_exchange_weak(word, 0, std::memory_order_release, std::memory_order_relaxed));
  if (word & LockState::kWaiters) futex_wake(s.word, 1);
}

std::uint32_t lock_release_all(LockState& s) {
  if (!lock_held_by_caller(s)) throw ValueError("cannot wait on a Condition whose lock this thread does not hold");
  std::uint32_t depth = 1;
  if (s.recursive) {
    depth = s.count.load(std::memory_order_relaxed);
    s.count.store(1, std::memory_order_relaxed);
  }
  lock_release(s);
  return depth;
}

void lock_reacquire(LockState& s, std::uint32_t depth) {
  lock_acquire(s, std::nullopt);
  if (s.recursive) s.count.store(depth, std::memory_order_relaxed);
}

bool semaphore_acquire(SemaphoreState& s, const Deadline& deadline) {
  auto try_take = [&s] {
    auto v = s.value.load(std::memory_order_relaxed);
    while (v > 0) {
      if (s.value.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
    }
    return false;
  };
  if (try_take()) return true;
  if (deadline_passed(deadline)) return false;
  for (int i = 0; i < kLockSpins; ++i) {
    cpu_relax();
    if (try_take()) return true;
  }
  for (;;) {
    if (deadline_passed(deadline)) return try_take();
    s.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (s.value.load(std::memory_order_seq_cst) == 0) futex_wait(s.value, 0, deadline);
    s.sleepers.fetch_sub(1, std::memory_order_relaxed);
    if (try_take()) return true;
  }
}

void semaphore_release(SemaphoreState& s, std::uint32_t n) {
  if (n == 0) return;
  auto v = s.value.load(std::memory_order_relaxed);
  do {
    if (s.max != 0 && (v > s.max || n > s.max - v)) {
      throw ValueError("BoundedSemaphore released too many times");
    }
    if (n > UINT32_MAX - v) throw ValueError("Semaphore value would overflow");
  } while (!s.value.compare_exchange_weak(v, v + n, std::memory_order_seq_cst, std::memory_order_relaxed));
  if (s.sleepers.load(std::memory_order_seq_cst) != 0) futex_wake(s.value, n > INT_MAX ? INT_MAX : static_cast<int>(n));
}

}  // namespace mp::detail

namespace mp {

using detail::Deadline;

detail::LockBase::LockBase(bool recursive)
    : ref_(SharedRef<LockState>::create(recursive ? "mp-rlock" : "mp-lock",
                                        [recursive](LockState& s) { s.init(recursive); })) {}

Semaphore::Semaphore(std::uint32_t value, std::uint32_t max)
    : ref_(detail::SharedRef<detail::SemaphoreState>::create("mp-semaphore", [&](detail::SemaphoreState& s) {
        s.value.store(value, std::memory_order_relaxed);
        s.max = max;
        s.magic = detail::kSemaphoreMagic;
      })) {}

Event::Event()
    : ref_(detail::SharedRef<detail::EventState>::create("mp-event",
                                                         [](detail::EventState& s) { s.magic = detail::kEventMagic; })) {}

void Event::set() {
  auto& s = state();
  s.flag.store(1, std::memory_order_seq_cst);
  if (s.sleepers.load(std::memory_order_seq_cst) != 0) detail::futex_wake(s.flag, INT_MAX);
}

bool Event::wait_until(const Deadline& deadline) {
  auto& s = state();
  while (s.flag.load(std::memory_order_acquire) == 0) {
    if (deadline && std::chrono::steady_clock::now() >= *deadline) return false;
    s.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (s.flag.load(std::memory_order_seq_cst) == 0) detail::futex_wait(s.flag, 0, deadline);
    s.sleepers.fetch_sub(1, std::memory_order_relaxed);
  }
  return true;
}

Condition::Condition(const detail::LockBase& lock)
    : ref_(detail::SharedRef<detail::ConditionState>::create(
          "mp-condition", [](detail::ConditionState& s) { s.magic = detail::kConditionMagic; })),
      lock_(lock) {}

bool Condition::wait_until(const Deadline& deadline) {
  auto& s = state();
  auto& lock = lock_.state();
  if (!detail::lock_held_by_caller(lock)) throw ValueError("Condition.wait: the lock is not held by the caller");
  s.waiters.fetch_add(1, std::memory_order_relaxed);
  const auto seq = s.seq.load(std::memory_order_relaxed);
  const auto depth = detail::lock_release_all(lock);
  bool notified = true;
  while (s.seq.load(std::memory_order_acquire) == seq) {
    if (!detail::futex_wait(s.seq, seq, deadline)) {
      notified = s.seq.load(std::memory_order_acquire) != seq;
      break;
    }
  }
  detail::lock_reacquire(lock, depth);
  s.waiters.fetch_sub(1, std::memory_order_relaxed);
  return notified;
}

void Condition::notify(std::uint32_t n) {
  auto& s = state();
  if (!detail::lock_held_by_caller(lock_.state())) throw ValueError("Condition.notify: the lock is not held by the caller");
  if (n == 0 || s.waiters.load(std::memory_order_relaxed) == 0) return;
  s.seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake(s.seq, n > INT_MAX ? INT_MAX : static_cast<int>(n));
}

namespace {

// Locks a barrier's mutex; a holder that died left the counters consistent (every
// update under the mutex is a few plain stores), so the state is just marked consistent.
class BarrierGuard {
 public:
  explicit BarrierGuard(detail::BarrierState& s) : s_(s) {
    if (s_.mu.lock() == detail::RobustMutex::Result::owner_died) s_.mu.consistent();
  }
  ~BarrierGuard() { s_.mu.unlock(); }
  BarrierGuard(const BarrierGuard&) = delete;
  BarrierGuard& operator=(const BarrierGuard&) = delete;

 private:
  detail::BarrierState& s_;
};

std::uint64_t round_bit(std::uint64_t round) { return std::uint64_t{1} << (round % 64); }

// Ends the current round as broken (under the mutex).
void break_round(detail::BarrierState& s) {
  s.broken = 1;
  s.broken_rounds |= round_bit(s.round);
  s.seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake(s.seq, INT_MAX);
}

}  // namespace

Barrier::Barrier(std::uint32_t parties, BarrierOptions options) : action_(options.action) {
  if (parties == 0) throw ValueError("Barrier: parties must be at least 1");
  ref_ = detail::SharedRef<detail::BarrierState>::create("mp-barrier", [&](detail::BarrierState& s) {
    s.mu.init();
    s.parties = parties;
    s.default_timeout_ns = options.timeout ? options.timeout->count() : -1;
    s.magic = detail::kBarrierMagic;
  });
}

std::size_t Barrier::wait() {
  const auto ns = state().default_timeout_ns;
  return wait_until(ns < 0 ? Deadline{} : detail::deadline_in(std::chrono::nanoseconds(ns)));
}

std::size_t Barrier::wait_until(const Deadline& deadline) {
  auto& s = state();
  std::uint64_t my_round = 0;
  std::uint32_t seq = 0;
  std::size_t index = 0;
  {
    BarrierGuard g(s);
    if (s.broken) throw BrokenBarrierError("Barrier.wait: the barrier is broken");
    index = s.count++;
    my_round = s.round;
    if (s.count == s.parties) {
      if (action_) {
        try {
          action_();
        } catch (...) {
          break_round(s);
          throw;
        }
      }
      s.count = 0;
      s.broken_rounds &= ~round_bit(s.round);
      ++s.round;
      s.broken_rounds &= ~round_bit(s.round);
      s.seq.fetch_add(1, std::memory_order_release);
      detail::futex_wake(s.seq, INT_MAX);
      return index;
    }
    seq = s.seq.load(std::memory_order_relaxed);
  }
  for (;;) {
    const bool in_time = detail::futex_wait(s.seq, seq, deadline);
    BarrierGuard g(s);
    if (s.round != my_round) {
      if (s.broken_rounds & round_bit(my_round)) throw BrokenBarrierError("Barrier.wait: the barrier was reset");
      return index;
    }
    if (s.broken) throw BrokenBarrierError("Barrier.wait: the barrier is broken");
    seq = s.seq.load(std::memory_order_relaxed);
    if (!in_time) {
      break_round(s);
      throw BrokenBarrierError("Barrier.wait: timed out, the barrier is now broken");
    }
  }
}

void Barrier::abort() {
  auto& s = state();
  BarrierGuard g(s);
  break_round(s);
}

void Barrier::reset() {
  auto& s = state();
  BarrierGuard g(s);
  if (s.count > 0 || s.broken) s.broken_rounds |= round_bit(s.round);
  ++s.round;
  s.broken_rounds &= ~round_bit(s.round);
  s.count = 0;
  s.broken = 0;
  s.seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake(s.seq, INT_MAX);
}

std::uint32_t Barrier::n_waiting() const {
  auto& s = state();
  BarrierGuard g(s);
  return s.broken ? 0 : s.count;
}

bool Barrier::broken() const {
  auto& s = state();
  BarrierGuard g(s);
  return s.broken != 0;
}

void Barrier::save_action(detail::OutputArchive& ar) const {
  const bool has_action = action_ != nullptr;
  ar(has_action);
  if (has_action) ar(detail::code_ref_of(reinterpret_cast<const void*>(action_)));
}

void Barrier::load_action(detail::InputArchive& ar) {
  bool has_action = false;
  ar(has_action);
  action_ = nullptr;
  if (has_action) {
    detail::CodeRef ref;
    ar(ref);
    action_ = reinterpret_cast<void (*)()>(const_cast<void*>(detail::resolve_code_ref(ref)));
  }
}

}  // namespace mp
