// mp/detail/biased_lock.hpp — a process-shared, robust lock whose steady user takes and
// releases it without any atomic read-modify-write: the writer and reader locks of
// mp's queues.
//
// Why. A queue's put() is a copy into the ring and a store of the new tail. A robust
// pthread mutex around it costs a compare-and-swap to lock and an exchange to unlock, and
// each drains the store buffer, whose stores (ring bytes, the tail) are to lines the
// consumer on the other CPU is reading: a cross-CPU round trip per item. Measured in
// queue_throughput: 65% of the producer's time was the mutex.
//
// How. A robust mutex `m` is everybody's way in. On top of it the lock may be *biased*
// towards one thread that has been its only user for a while (kGrantAfter acquisitions
// in a row). That thread enters with a plain store of 1 to its slot's `busy` word, a
// light fence and a re-read of the bias word (futex.hpp: asymmetric fences), and leaves
// with a release store of 0. Anybody else takes `m`, marks the bias revoked, runs the
// heavy fence (membarrier: every CPU's store buffer drained) and waits until the owner's
// `busy` is 0. Either the owner sees the revocation (and goes through `m` like the
// others) or the revoker sees it inside (and waits for it to leave): never both in.
// Users that alternate never hold the bias, so they pay `m` as before and never the
// heavy fence more than once per grant.
//
// A slot belongs to one thread (pid, tid, start-time stamp) for as long as its process
// lives: a thread that lost the bias may still be between its first read of the bias
// word and its `busy` store, so a slot is never handed to another live thread (whose
// `busy` that late store would overwrite). Slots of gone processes are reused; with
// every slot taken by a live thread, the lock simply grants no bias.
//
// Death. A holder through `m` that dies: the robust mutex reports it (owner_died). The
// bias owner dying inside (`busy` left 1): the revoker looks at its process every 20 ms
// while it waits (/proc: gone, zombie, pid reused) and takes over with owner_died. A bias
// owner dying outside: its bias is revoked like a live one's.
//
// Without membarrier (old kernel, seccomp) the owner's light fence is a full fence, so the
// lock stays correct, only the fast path costs a fence.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "mp/detail/futex.hpp"
#include "mp/detail/robust_mutex.hpp"
#include "mp/detail/self_identity.hpp"

namespace mp::detail {

class BiasedLock {
 public:
  using Result = RobustMutex::Result;

  /// How the caller holds the lock; filled by lock()/try_lock(), handed back to
  /// consistent()/unlock(). Lives on the caller's stack: nothing per handle is shared.
  struct Hold {
    int slot = -1;         // >= 0: entered through the bias of this slot; -1: through m
    bool m_died = false;   // m reported its previous holder dead (m needs consistent())
    // Entered through the bias: the bias word then, never 0. The same word at two holds
    // of one thread means nobody else held the lock in between (anybody else revokes the
    // bias first, and a new grant has a new epoch), so what the thread saw of the guarded
    // state the last time is still true.
    std::uint64_t bias = 0;
  };

  /// Initialises the lock in place (once, by the creator of the shared memory).
  void init();
  /// Blocks until acquired or `deadline` (timed_out). owner_died: acquired, but the
  /// previous holder died holding it; repair the protected state, then consistent().
  Result lock(Hold& hold, const Deadline& deadline = std::nullopt) {
    if (try_fast(hold)) return Result::acquired;
    return lock_slow(hold, deadline, false);
  }
  /// Never waits for another holder: busy if somebody holds it.
  Result try_lock(Hold& hold) {
    if (try_fast(hold)) return Result::acquired;
    return lock_slow(hold, std::nullopt, true);
  }
  /// Takes the lock only if the calling thread holds its bias now (no waiting, nothing
  /// to repair): the steady user's fast path. false: nothing was taken, use lock().
  bool try_lock_biased(Hold& hold) { return try_fast(hold); }
  /// Entered through the bias (hold.slot >= 0): words the owner thread keeps for itself
  /// between holds, in its slot's line (which only it writes while it holds the bias, so
  /// they cost no cross-CPU traffic). Nobody else reads or writes them; a grant zeroes
  /// them. Their meaning is the owner's: storing hold.bias in one tells, at a later hold,
  /// whether the others are still what this thread left under the same grant.
  std::uint64_t* kept(const Hold& hold) { return slots_[hold.slot].kept; }
  /// After owner_died, once the protected state is repaired.
  void consistent(const Hold& hold);
  void unlock(const Hold& hold) {
    if (hold.slot < 0) return unlock_slow();
    leave(slots_[hold.slot]);
  }

  static constexpr int kSlots = 8;
  static constexpr std::uint32_t kGrantAfter = 16;  // acquisitions in a row by one thread

 private:
  static constexpr std::uint64_t kSlotMask = 0x0f;
  static constexpr std::uint64_t kRevoked = 0x10;

  struct alignas(64) Slot {
    std::atomic<std::uint32_t> busy;     // 1 while its thread is inside through the bias
    std::atomic<std::uint32_t> waiters;  // revokers sleeping on busy
    std::atomic<std::int32_t> pid;       // 0: free
    std::atomic<std::int32_t> tid;
    std::atomic<std::uint64_t> stamp;    // self_stamp() of pid
    std::uint64_t kept[3];               // the owner's own (kept())
  };

  Result lock_slow(Hold& hold, const Deadline& deadline, bool try_only);
  void unlock_slow();
  void wake_revokers(Slot& s);

  // The bias owner leaves: `busy` back to 0, and a revoker asleep on it is woken. The
  // light fence pairs with the sleeper's heavy one: it sees busy 0 or we see it counted.
  void leave(Slot& s) {
    s.busy.store(0, std::memory_order_release);
    fence_light();
    if (s.waiters.load(std::memory_order_relaxed)) [[unlikely]]
      wake_revokers(s);
  }

  // The bias owner's way in (inline: it is every put and get of a steady queue user).
  // The slot's stamp holds its process's pid, so tid + stamp name one live thread.
  bool try_fast(Hold& hold) {
    const std::uint64_t b = bias_.load(std::memory_order_relaxed);
    const std::uint64_t index = (b & kSlotMask) - 1;  // b == 0 wraps: no slot
    if ((b & kRevoked) || index >= static_cast<std::uint64_t>(kSlots)) return false;
    Slot& s = slots_[index];
    const SelfIdentity& me = self_identity();
    if (s.tid.load(std::memory_order_relaxed) != me.tid || s.stamp.load(std::memory_order_relaxed) != me.stamp)
      return false;
    s.busy.store(1, std::memory_order_relaxed);
    fence_light();  // pairs with the revoker's heavy fence: see above
    if (bias_.load(std::memory_order_acquire) != b) [[unlikely]] {
      leave(s);  // revoked meanwhile: go through m like everybody
      return false;
    }
    hold.slot = static_cast<int>(index);
    hold.m_died = false;
    hold.bias = b;
    return true;
  }
  Result finish_revocation(Hold& hold, const Deadline& deadline, bool try_only, bool& owner_died);
  void maybe_grant();

  RobustMutex m_;
  // Guarded by m_.
  std::uint64_t epoch_;
  std::int32_t streak_pid_;
  std::int32_t streak_tid_;
  std::uint32_t streak_;
  // 0: no bias. Else epoch << 8 | kRevoked if revoked | slot + 1. Written under m_ only,
  // read by the owner's fast path.
  alignas(64) std::atomic<std::uint64_t> bias_;
  Slot slots_[kSlots];
};

}  // namespace mp::detail
