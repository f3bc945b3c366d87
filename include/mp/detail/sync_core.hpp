// mp/detail/sync_core.hpp — the shared-memory state of mp's locks and their kin, and the
// handle that reaches it from any process.
//
// Every primitive is a small struct of atomics placed in a shared mapping (an anonymous
// memfd, shared_mapping.hpp): nothing has a name, nothing can be left in /dev/shm, and
// the kernel frees the memory when the last process using it is gone. A handle is the
// mapping (shared_ptr) plus the address of the state inside it, so a lock can live in
// its own mapping (mp::Lock) or next to the data it guards (mp::Value's lock).
//
// Locks are futex words holding the holder's *process* id, not pthread mutexes: a
// multiprocessing Lock may be released by another thread or process than the one that
// took it (Python's Lock is a semaphore), which a robust pthread mutex refuses. The
// price is that the kernel does not tell us when a holder dies; a waiter finds it out
// itself by looking at the holder every 20 ms while it waits (/proc/PID/stat: gone or a
// zombie, or a pid reused by a process that started later than the holder), and then
// takes the lock over with one compare-and-swap (so exactly one waiter inherits it) and
// marks it `holder_died` for the new holder.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "mp/detail/archive.hpp"
#include "mp/detail/futex.hpp"
#include "mp/detail/robust_mutex.hpp"
#include "mp/detail/self_identity.hpp"
#include "mp/detail/shared_mapping.hpp"

namespace mp::detail {

/// Whether the process `pid`, whose self_stamp() was `stamp`, is gone: no such process,
/// a zombie, or a pid reused by a younger process. Reads /proc (a few microseconds).
bool holder_gone(pid_t pid, std::uint64_t stamp);

/// Lock and RLock (and the lock of Value/Array): lives in shared memory.
struct LockState {
  static constexpr std::uint32_t kWaiters = 0x80000000u;  // somebody sleeps on `word`
  static constexpr std::uint32_t kPidMask = 0x3fffffffu;

  std::atomic<std::uint32_t> word{0};       // holder pid | kWaiters; 0 = free
  std::atomic<std::uint32_t> owner_tid{0};  // RLock: the holding thread
  std::atomic<std::uint32_t> count{0};      // RLock: recursion depth
  std::atomic<std::uint32_t> holder_died{0};
  std::atomic<std::uint64_t> stamp{0};      // holder's start time << 22 | pid (pid reuse check)
  std::uint32_t recursive = 0;
  std::uint32_t magic = 0;

  void init(bool recursive_lock) noexcept;
};

/// Blocks until acquired or `deadline` (false then). An RLock held by the calling thread
/// is re-entered. A holder found dead is replaced, and holder_died set.
bool lock_acquire(LockState& s, const Deadline& deadline);
/// Throws mp::ValueError: a Lock not held by anybody; an RLock not held by the caller.
void lock_release(LockState& s);
bool lock_held_by_caller(const LockState& s) noexcept;
/// Condition::wait: releases an RLock however deep the caller holds it; returns the depth.
std::uint32_t lock_release_all(LockState& s);
/// Re-acquires (blocking) and restores the depth lock_release_all() returned.
void lock_reacquire(LockState& s, std::uint32_t depth);

struct SemaphoreState {
  std::atomic<std::uint32_t> value{0};
  std::atomic<std::uint32_t> sleepers{0};
  std::uint32_t max = 0;  // BoundedSemaphore's bound; 0 = unbounded
  std::uint32_t magic = 0;
};
bool semaphore_acquire(SemaphoreState& s, const Deadline& deadline);
void semaphore_release(SemaphoreState& s, std::uint32_t n);

struct EventState {
  std::atomic<std::uint32_t> flag{0};
  std::atomic<std::uint32_t> sleepers{0};
  std::uint32_t magic = 0;
};

struct ConditionState {
  std::atomic<std::uint32_t> seq{0};      // bumped by every notify that finds waiters
  std::atomic<std::uint32_t> waiters{0};  // registered under the lock
  std::uint32_t magic = 0;
};

struct BarrierState {
  RobustMutex mu;                          // guards everything below but `seq`
  std::atomic<std::uint32_t> seq{0};       // futex word: bumped when a round ends (passed, broken, reset)
  std::uint32_t parties = 0;
  std::uint32_t count = 0;                 // parties waiting in this round
  std::uint32_t broken = 0;                // the current round is broken (until reset)
  std::uint64_t round = 0;                 // rounds that passed or were reset
  std::uint64_t broken_rounds = 0;         // bit (round % 64): that round ended broken
  std::int64_t default_timeout_ns = -1;    // -1 = none
  std::uint32_t magic = 0;
};

/// A handle to a `State` in a shared mapping: copies reach the same object, from any
/// process it was passed to. Empty after a move, or made for load() (for_load_t).
template <class State>
class SharedRef {
 public:
  SharedRef() = default;
  SharedRef(std::shared_ptr<SharedMapping> mapping, State* state) : mapping_(std::move(mapping)), state_(state) {}

  /// A new mapping holding a default-constructed State (which `init` then fills in).
  template <class Init>
  static SharedRef create(const char* name, Init&& init, std::size_t size = sizeof(State)) {
    auto mapping = SharedMapping::create(size, name);
    auto* state = new (mapping->data()) State();
    init(*state);
    return SharedRef(std::move(mapping), state);
  }

  State& operator*() const noexcept { return *state_; }
  State* operator->() const noexcept { return state_; }
  State* get() const noexcept { return state_; }
  explicit operator bool() const noexcept { return state_ != nullptr; }
  const std::shared_ptr<SharedMapping>& mapping() const noexcept { return mapping_; }

  /// Travels as the mapping's descriptor plus the offset of the state in it.
  void save(OutputArchive& ar, const char* what) const;
  /// Checks that the state fits in the mapping and carries `magic`.
  static SharedRef load(InputArchive& ar, std::uint32_t magic, const char* what);

 private:
  std::shared_ptr<SharedMapping> mapping_;
  State* state_ = nullptr;
};

// Every state carries a magic word so that a descriptor of the wrong kind is refused.
inline constexpr std::uint32_t kLockMagic = 0x4d504c4b;       // "MPLK"
inline constexpr std::uint32_t kSemaphoreMagic = 0x4d505346;  // "MPSF"
inline constexpr std::uint32_t kEventMagic = 0x4d504556;      // "MPEV"
inline constexpr std::uint32_t kConditionMagic = 0x4d50434e;  // "MPCN"
inline constexpr std::uint32_t kBarrierMagic = 0x4d504252;    // "MPBR"

/// Throws mp::SerializationError naming `what` (out of line: keeps <string> out of here).
[[noreturn]] void throw_bad_shared_state(const char* what);

template <class State>
void SharedRef<State>::save(OutputArchive& ar, const char* what) const {
  if (!state_) throw_bad_shared_state(what);
  mapping_->save(ar, what);
  const auto offset = static_cast<std::uint64_t>(reinterpret_cast<const std::byte*>(state_) -
                                                 static_cast<const std::byte*>(mapping_->data()));
  ar(offset);
}

template <class State>
SharedRef<State> SharedRef<State>::load(InputArchive& ar, std::uint32_t magic, const char* what) {
  auto mapping = SharedMapping::load(ar);
  std::uint64_t offset = 0;
  ar(offset);
  if (offset > mapping->size() || mapping->size() - offset < sizeof(State) || offset % alignof(State) != 0) {
    throw_bad_shared_state(what);
  }
  auto* state = reinterpret_cast<State*>(static_cast<std::byte*>(mapping->data()) + offset);
  if (state->magic != magic) throw_bad_shared_state(what);
  return SharedRef(std::move(mapping), state);
}

}  // namespace mp::detail
