// src/biased_lock.cpp — the biased robust lock. Design and the reasoning behind its
// fences: biased_lock.hpp.
#include "mp/detail/biased_lock.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <thread>

#include "mp/detail/sync_core.hpp"

namespace mp::detail {

namespace {
using namespace std::chrono_literals;

constexpr int kLeaveSpins = 2000;
constexpr auto kOwnerCheckPeriod = 20ms;

// The revoker's side of the asymmetric fence: a barrier on every CPU that runs a thread
// of a registered process, so an owner's `busy` store before its light fence is visible
// now, and its re-read of the bias word after it sees the revocation. Issued whatever this
// process's own registration (the command needs none). Returns false without membarrier.
bool heavy_fence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

}  // namespace

void BiasedLock::init() {
  m_.init();
  epoch_ = 0;
  streak_pid_ = streak_tid_ = 0;
  streak_ = 0;
  bias_.store(0, std::memory_order_relaxed);
  for (Slot& s : slots_) {
    s.busy.store(0, std::memory_order_relaxed);
    s.waiters.store(0, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_relaxed);
    s.tid.store(0, std::memory_order_relaxed);
    s.stamp.store(0, std::memory_order_relaxed);
    for (auto& w : s.kept) w = 0;
  }
}

void BiasedLock::wake_revokers(Slot& s) { futex_wake(s.busy, INT_MAX); }

BiasedLock::Result BiasedLock::lock_slow(Hold& hold, const Deadline& deadline, bool try_only) {
  hold = Hold{};
  const Result r = try_only ? m_.try_lock() : m_.lock(deadline);
  if (r == Result::timed_out || r == Result::busy) return r;
  hold.m_died = r == Result::owner_died;
  bool bias_owner_died = false;
  if (const Result f = finish_revocation(hold, deadline, try_only, bias_owner_died); f != Result::acquired) return f;
  maybe_grant();
  return hold.m_died || bias_owner_died ? Result::owner_died : Result::acquired;
}

// Called holding m: makes sure no bias owner is inside. Returns acquired once so (the
// bias word is then 0); timed_out/busy after giving m back when the owner stays inside
// past the deadline (or at all, for try_only).
BiasedLock::Result BiasedLock::finish_revocation(Hold& hold, const Deadline& deadline, bool try_only,
                                                 bool& owner_died) {
  const std::uint64_t b = bias_.load(std::memory_order_relaxed);
  if (b == 0) return Result::acquired;
  const auto index = static_cast<int>(b & kSlotMask) - 1;
  if (index < 0 || index >= kSlots) {  // not a word this code writes: no bias to honour
    bias_.store(0, std::memory_order_relaxed);
    return Result::acquired;
  }
  Slot& s = slots_[index];
  if (!(b & kRevoked)) {
    bias_.store(b | kRevoked, std::memory_order_relaxed);
    // Without membarrier, an owner that fences with a compiler barrier only may still
    // hold its `busy` store in its store buffer: give it far longer than that takes.
    if (!heavy_fence()) std::this_thread::sleep_for(1ms);
  }
  auto left = [&] { return s.busy.load(std::memory_order_acquire) == 0; };
  bool gone = false;
  if (!try_only)
    for (int i = 0; i < kLeaveSpins && !left(); ++i) cpu_relax();
  // Still inside (after the spin): killed there, most likely, as a live owner's stay is
  // one put or get. One look now rather than after a first sleep (and so try_lock, too,
  // takes over from an owner killed inside).
  if (!left() && holder_gone(s.pid.load(std::memory_order_relaxed), s.stamp.load(std::memory_order_relaxed)))
    gone = true;
  if (!try_only) {
    while (!gone && !left()) {
      s.waiters.fetch_add(1, std::memory_order_seq_cst);
      const bool fenced = heavy_fence();
      bool in_time = true;
      if (s.busy.load(std::memory_order_seq_cst) != 0)
        in_time = futex_wait(s.busy, 1, deadline, fenced ? kOwnerCheckPeriod : std::chrono::milliseconds(1));
      s.waiters.fetch_sub(1, std::memory_order_seq_cst);
      if (left()) break;
      if (holder_gone(s.pid.load(std::memory_order_relaxed), s.stamp.load(std::memory_order_relaxed))) {
        gone = true;
        break;
      }
      if (!in_time) break;
    }
  }
  if (gone) {
    // It died inside (or between its `busy` store and its second look): the state it
    // guarded may be half-changed. Its slot is free for another thread.
    s.busy.store(0, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_relaxed);
    owner_died = true;
  } else if (!left()) {
    // Still inside: give m back. A dead previous holder of m had nothing to repair: with
    // the bias owner inside it cannot have been inside too, only revoking.
    if (hold.m_died) m_.consistent();
    m_.unlock();
    hold = Hold{};
    return try_only ? Result::busy : Result::timed_out;
  }
  bias_.store(0, std::memory_order_relaxed);
  return Result::acquired;
}

// Called holding m, with no bias: counts the caller's acquisitions in a row and, at the
// kGrantAfter-th, grants it the bias if a slot is free (its own, a never used one, or one
// of a process that is gone).
void BiasedLock::maybe_grant() {
  const pid_t pid = self_pid(), tid = self_tid();
  if (streak_pid_ == pid && streak_tid_ == tid) {
    if (streak_ < UINT32_MAX) ++streak_;
  } else {
    streak_pid_ = pid;
    streak_tid_ = tid;
    streak_ = 1;
  }
  if (streak_ != kGrantAfter) return;
  const std::uint64_t stamp = self_stamp();
  int chosen = -1;
  for (int i = 0; i < kSlots && chosen < 0; ++i) {
    const Slot& s = slots_[i];
    if (s.pid.load(std::memory_order_relaxed) == pid && s.tid.load(std::memory_order_relaxed) == tid &&
        s.stamp.load(std::memory_order_relaxed) == stamp)
      chosen = i;
  }
  for (int i = 0; i < kSlots && chosen < 0; ++i)
    if (slots_[i].pid.load(std::memory_order_relaxed) == 0) chosen = i;
  for (int i = 0; i < kSlots && chosen < 0; ++i)
    if (holder_gone(slots_[i].pid.load(std::memory_order_relaxed), slots_[i].stamp.load(std::memory_order_relaxed)))
      chosen = i;
  if (chosen < 0) return;
  fence_register();  // the owner's light fence is a compiler barrier only once registered
  Slot& s = slots_[chosen];
  s.busy.store(0, std::memory_order_relaxed);
  s.waiters.store(0, std::memory_order_relaxed);  // revokers wait holding m, which we hold
  s.pid.store(pid, std::memory_order_relaxed);
  s.tid.store(tid, std::memory_order_relaxed);
  s.stamp.store(stamp, std::memory_order_relaxed);
  for (auto& w : s.kept) w = 0;
  ++epoch_;
  bias_.store(epoch_ << 8 | static_cast<std::uint64_t>(chosen + 1), std::memory_order_release);
}

void BiasedLock::consistent(const Hold& hold) {
  if (hold.m_died) m_.consistent();
}

void BiasedLock::unlock_slow() { m_.unlock(); }

}  // namespace mp::detail
