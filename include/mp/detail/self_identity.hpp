// mp/detail/self_identity.hpp — who the caller is: its process id, thread id and a stamp
// that tells its process from a later one given the same pid; cached per thread and
// refreshed after a fork. Cheap enough for a lock's fast path (biased_lock.hpp), which
// checks "is the bias mine?" on every acquisition.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace mp::detail {

/// Bumped in every fork child (a pthread_atfork handler, src/synchronize.cpp): per-process
/// caches (the ids below; which pages of a shared mapping this process has mapped)
/// compare it to know they were inherited. Starts at 1: 0 means "never cached".
inline std::atomic<std::uint32_t> g_fork_generation{1};
inline std::uint32_t fork_generation() noexcept { return g_fork_generation.load(std::memory_order_relaxed); }

/// The calling process's id and the calling thread's id, cached (fork-aware).
pid_t self_pid() noexcept;
pid_t self_tid() noexcept;
/// The calling process's start time (clock ticks since boot) << 22 | its pid, cached:
/// with a pid, it tells that process from a later one given the same pid (pid_max is at
/// most 2^22, so the pid is the low 22 bits).
std::uint64_t self_stamp() noexcept;

/// All three at once, from a thread-local cache: one generation compare when warm.
struct SelfIdentity {
  std::uint32_t generation = 0;  // fork_generation() when filled; 0: not yet
  pid_t pid = 0;
  pid_t tid = 0;
  std::uint64_t stamp = 0;
};
inline thread_local SelfIdentity t_self_identity;
void refresh_self_identity() noexcept;
inline const SelfIdentity& self_identity() noexcept {
  if (t_self_identity.generation != fork_generation()) [[unlikely]]
    refresh_self_identity();
  return t_self_identity;
}

}  // namespace mp::detail
