// mp/synchronize.hpp — Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and
// Barrier between processes (Python's multiprocessing.synchronize).
//
// @code
//   mp::Lock lock;
//   mp::Process p([](mp::Lock l) { std::lock_guard g(l); /* ... */ }, lock);
//   p.start();
//   if (lock.acquire(100ms)) { ... lock.release(); }
//
//   mp::Event ready;          ready.set();  ready.wait(1s);
//   mp::Semaphore slots(2);   slots.acquire(); ... slots.release();
//   mp::Condition cv;         { std::lock_guard g(cv); cv.wait_for([&] { return done(); }, 1s); }
//   mp::Barrier b(3);         std::size_t i = b.wait();   // i in [0, 3), distinct per party
// @endcode
//
// Every object here is a cheap copyable handle to one shared object (as Python's names
// are references): a copy, a copy passed as a Process argument under any start method, or
// one sent over a Unix-socket Connection reaches the same object. Thread- and
// process-safe, every member. The state lives in anonymous shared memory
// (detail/sync_core.hpp): nothing is ever left in /dev/shm.
//
// Waiting sleeps on a futex after a short spin; timeouts use the steady clock.
//
// When a process dies (SIGKILL included):
//  - holding a Lock or RLock: the lock is not lost. A waiter notices within ~20 ms and
//    takes it over; right after that acquisition holder_died() is true (until the next
//    release), and the new holder must assume the data the lock guards is half-written
//    (the spirit of EOWNERDEAD).
//  - waiting on a Semaphore, Condition or Event: nothing is corrupted, the others go on.
//    (A process killed holding a Semaphore's unit does not give it back: a semaphore
//    has no owner.)
//  - as a Barrier party that never arrives: the others wait until their timeout, which
//    breaks the barrier (mp::BrokenBarrierError for all), as in Python — give Barrier a
//    timeout when parties may die.
#pragma once

#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "mp/detail/codec.hpp"
#include "mp/detail/sync_core.hpp"
#include "mp/errors.hpp"

namespace mp {

namespace detail {

inline Deadline deadline_in(std::chrono::nanoseconds timeout) {
  return std::chrono::steady_clock::now() + (timeout < std::chrono::nanoseconds(0) ? std::chrono::nanoseconds(0) : timeout);
}

/// What Lock and RLock share (and what Condition and Value/Array's locks take).
class LockBase {
 public:
  /// Blocks until the lock is acquired; returns true. Process-safe.
  bool acquire() { return lock_acquire(state(), std::nullopt); }
  /// acquire(false) never blocks (Python's block=False): true if acquired.
  bool acquire(bool block) { return lock_acquire(state(), block ? Deadline{} : Deadline{std::chrono::steady_clock::now()}); }
  /// Waits at most `timeout`; false if the lock was not acquired by then.
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return lock_acquire(state(), deadline_in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }
  /// Releases. Lock: any thread or process may release it (as in Python), but releasing
  /// a Lock nobody holds throws mp::ValueError. RLock: only the holding thread may, once
  /// per acquire (mp::ValueError otherwise).
  void release() { lock_release(state()); }

  /// For std::lock_guard / std::unique_lock / std::scoped_lock.
  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() { return acquire(false); }

  /// True right after an acquisition that took the lock over from a holder that died
  /// holding it; false again after the next release. Whatever the lock guards may be
  /// half-written then.
  bool holder_died() const noexcept { return state().holder_died.load(std::memory_order_relaxed) != 0; }

  /// The lock travels as its shared memory's descriptor (Process arguments, sockets).
  template <class A>
  void save(A& ar) const {
    ref_.save(ar, "Lock");
  }
  template <class A>
  void load(A& ar) {
    ref_ = SharedRef<LockState>::load(ar, kLockMagic, "Lock");
  }

  /// Internal: the shared state (Condition, Value and Array use it).
  LockState& state() const {
    if (!ref_) throw ValueError("this lock handle is empty (moved from)");
    return *ref_;
  }
  const SharedRef<LockState>& ref() const noexcept { return ref_; }

 protected:
  explicit LockBase(bool recursive);
  explicit LockBase(SharedRef<LockState> ref) : ref_(std::move(ref)) {}
  explicit LockBase(for_load_t) {}

 private:
  SharedRef<LockState> ref_;
};

}  // namespace detail

/// multiprocessing.Lock: a non-recursive lock. A thread that acquires it twice blocks
/// (deadlocks) like Python's. See holder_died() for a holder that dies.
class Lock : public detail::LockBase {
 public:
  Lock() : LockBase(false) {}
  explicit Lock(detail::for_load_t t) : LockBase(t) {}
};

/// multiprocessing.RLock: re-entrant for the thread that holds it; released when
/// release() was called as many times as acquire().
class RLock : public detail::LockBase {
 public:
  RLock() : LockBase(true) {}
  explicit RLock(detail::for_load_t t) : LockBase(t) {}
  /// Internal: an RLock whose state lives inside another object's mapping (Value, Array).
  explicit RLock(detail::SharedRef<detail::LockState> ref) : LockBase(std::move(ref)) {}
};

/// multiprocessing.Semaphore: a counter; acquire() takes one (blocking at zero),
/// release() gives one back. Process-safe.
class Semaphore {
 public:
  explicit Semaphore(std::uint32_t value = 1) : Semaphore(value, 0) {}
  explicit Semaphore(detail::for_load_t) {}

  /// Blocks until a unit is free; returns true.
  bool acquire() { return detail::semaphore_acquire(state(), std::nullopt); }
  /// acquire(false) never blocks.
  bool acquire(bool block) {
    return detail::semaphore_acquire(state(), block ? detail::Deadline{} : detail::Deadline{std::chrono::steady_clock::now()});
  }
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return detail::semaphore_acquire(state(), detail::deadline_in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }
  /// Gives back `n` units, waking as many waiters. BoundedSemaphore: mp::ValueError if
  /// that would exceed the initial value (nothing is released then).
  void release(std::uint32_t n = 1) { detail::semaphore_release(state(), n); }
  /// The current value (a snapshot).
  std::uint32_t get_value() const { return state().value.load(std::memory_order_relaxed); }

  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() { return acquire(false); }

  template <class A>
  void save(A& ar) const {
    ref_.save(ar, "Semaphore");
  }
  template <class A>
  void load(A& ar) {
    ref_ = detail::SharedRef<detail::SemaphoreState>::load(ar, detail::kSemaphoreMagic, "Semaphore");
  }

 protected:
  Semaphore(std::uint32_t value, std::uint32_t max);
  detail::SemaphoreState& state() const {
    if (!ref_) throw ValueError("this semaphore handle is empty (moved from)");
    return *ref_;
  }

 private:
  detail::SharedRef<detail::SemaphoreState> ref_;
};

/// multiprocessing.BoundedSemaphore: release() beyond the initial value raises
/// mp::ValueError.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::uint32_t value = 1) : Semaphore(value, value) {}
  explicit BoundedSemaphore(detail::for_load_t t) : Semaphore(t) {}
};

/// multiprocessing.Event: a flag that waiters block on until it is set.
class Event {
 public:
  Event();
  explicit Event(detail::for_load_t) {}

  bool is_set() const { return state().flag.load(std::memory_order_acquire) != 0; }
  /// Sets the flag and wakes every waiter.
  void set();
  void clear() { state().flag.store(0, std::memory_order_release); }
  /// Blocks until the flag is set; returns true.
  bool wait() { return wait_until(std::nullopt); }
  /// Returns the flag after waiting at most `timeout` for it.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(detail::deadline_in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }

  template <class A>
  void save(A& ar) const {
    ref_.save(ar, "Event");
  }
  template <class A>
  void load(A& ar) {
    ref_ = detail::SharedRef<detail::EventState>::load(ar, detail::kEventMagic, "Event");
  }

 private:
  bool wait_until(const detail::Deadline& deadline);
  detail::EventState& state() const {
    if (!ref_) throw ValueError("this event handle is empty (moved from)");
    return *ref_;
  }
  detail::SharedRef<detail::EventState> ref_;
};

/// multiprocessing.Condition: waiters sleep until notified, releasing the lock while
/// they sleep. The lock is a new RLock unless one is given (a Lock or an RLock, shared
/// with whoever else holds that handle).
///
/// wait() and notify() must be called with the lock held (mp::ValueError otherwise).
/// A notify(n) wakes at least min(n, waiters) waiters that were waiting when it was
/// called (a waiter that had not yet gone to sleep may wake too); no wake-up is lost.
class Condition {
 public:
  Condition() : Condition(RLock()) {}
  explicit Condition(const detail::LockBase& lock);
  explicit Condition(detail::for_load_t) : lock_(detail::for_load) {}

  bool acquire() { return lock_.acquire(); }
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return lock_.acquire(timeout);
  }
  void release() { lock_.release(); }
  void lock() { lock_.acquire(); }
  void unlock() { lock_.release(); }
  bool try_lock() { return lock_.try_lock(); }

  /// Releases the lock, sleeps until notified, re-acquires. Returns true.
  bool wait() { return wait_until(std::nullopt); }
  /// false if `timeout` passed without a notification (the lock is held again either way).
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(detail::deadline_in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }
  /// Waits until pred() is true; returns it.
  template <class Pred>
  bool wait_for(Pred pred) {
    bool result = pred();
    while (!result) {
      wait();
      result = pred();
    }
    return result;
  }
  /// Waits until pred() is true or `timeout` passed; returns pred()'s last value.
  template <class Pred, class Rep, class Period>
  bool wait_for(Pred pred, std::chrono::duration<Rep, Period> timeout) {
    const auto deadline = detail::deadline_in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
    bool result = pred();
    while (!result) {
      if (std::chrono::steady_clock::now() >= *deadline) break;
      wait_until(deadline);
      result = pred();
    }
    return result;
  }
  /// Wakes up to `n` waiters.
  void notify(std::uint32_t n = 1);
  void notify_all() { notify(UINT32_MAX); }

  template <class A>
  void save(A& ar) const {
    ref_.save(ar, "Condition");
    lock_.save(ar);
  }
  template <class A>
  void load(A& ar) {
    ref_ = detail::SharedRef<detail::ConditionState>::load(ar, detail::kConditionMagic, "Condition");
    lock_.load(ar);
  }

 private:
  /// The lock, whichever kind it is (Lock and RLock differ only in shared state).
  class AnyLock : public detail::LockBase {
   public:
    explicit AnyLock(const detail::LockBase& l) : LockBase(l.ref()) {}
    explicit AnyLock(detail::for_load_t t) : LockBase(t) {}
  };
  bool wait_until(const detail::Deadline& deadline);
  detail::ConditionState& state() const {
    if (!ref_) throw ValueError("this condition handle is empty (moved from)");
    return *ref_;
  }
  detail::SharedRef<detail::ConditionState> ref_;
  AnyLock lock_;
};

/// Keyword arguments of Barrier.
struct BarrierOptions {
  /// Run by one of the parties (the last to arrive) when all have arrived, before any is
  /// released. A plain function (or a captureless lambda) so that it can travel to
  /// children under every start method. If it throws, the barrier breaks.
  void (*action)() = nullptr;
  /// The default timeout of wait(); none if empty.
  std::optional<std::chrono::nanoseconds> timeout{};
};

/// multiprocessing.Barrier: `parties` processes (or threads) wait until all have called
/// wait(), then all go on. Reusable: the next round begins at once.
class Barrier {
 public:
  explicit Barrier(std::uint32_t parties, BarrierOptions options = {});
  explicit Barrier(detail::for_load_t) {}

  /// Blocks until every party has arrived; returns this party's arrival index, distinct
  /// per party of the round, in [0, parties). Throws mp::BrokenBarrierError if the
  /// barrier is or becomes broken (abort(), reset() while waiting, the action threw, or a
  /// party's wait timed out). A wait that times out breaks the barrier and throws it too.
  std::size_t wait();
  template <class Rep, class Period>
  std::size_t wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(detail::deadline_in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }
  /// Breaks the barrier: waiters and later wait() calls throw until reset().
  void abort();
  /// Back to a fresh round; parties waiting now get mp::BrokenBarrierError.
  void reset();
  std::uint32_t parties() const { return state().parties; }
  /// Parties waiting in the current round.
  std::uint32_t n_waiting() const;
  bool broken() const;

  template <class A>
  void save(A& ar) const {
    ref_.save(ar, "Barrier");
    save_action(ar);
  }
  template <class A>
  void load(A& ar) {
    ref_ = detail::SharedRef<detail::BarrierState>::load(ar, detail::kBarrierMagic, "Barrier");
    load_action(ar);
  }

 private:
  std::size_t wait_until(const detail::Deadline& deadline);
  void save_action(detail::OutputArchive& ar) const;
  void load_action(detail::InputArchive& ar);
  detail::BarrierState& state() const {
    if (!ref_) throw ValueError("this barrier handle is empty (moved from)");
    return *ref_;
  }
  detail::SharedRef<detail::BarrierState> ref_;
  void (*action_)() = nullptr;
};

}  // namespace mp
