// mp/detail/futex.hpp — waiting on a 32-bit word in shared memory (Linux futex), and the
// spin-then-sleep policy of mp's shared-memory objects.
//
// futex_wait sleeps only while the word still holds `expected`, so a wake-up between
// the caller's check and the sleep is never lost. Words live in MAP_SHARED memory, so
// the process-shared (non-PRIVATE) futex operations are used.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#if defined(__has_include)
#if __has_include(<sys/rseq.h>) && (defined(__x86_64__) || defined(__aarch64__))
#include <sys/rseq.h>
#if defined(RSEQ_SIG) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define MP_HAVE_RSEQ_CPU_ID 1
#endif
#endif
#endif

namespace mp::detail {

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

inline Deadline deadline_after(std::optional<std::chrono::nanoseconds> timeout) {
  if (!timeout) return std::nullopt;
  return std::chrono::steady_clock::now() + *timeout;
}

/// Sleeps while `*word == expected`, until woken or `deadline`. Returns false once the
/// deadline has passed (true otherwise: woken, value changed, or interrupted — the
/// caller re-checks its condition). `max_slice` bounds one sleep (for callers that must
/// look around periodically).
bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, const Deadline& deadline,
                std::optional<std::chrono::nanoseconds> max_slice = std::nullopt);

/// Wakes up to `n` sleepers on `word`.
void futex_wake(std::atomic<std::uint32_t>& word, int n = 1);

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Asymmetric fences, for a "publish, then is anybody asleep?" fast path whose other
/// side (going to sleep) is rare. The fast side writes, calls fence_light() and reads;
/// the sleeper writes, calls fence_heavy() and reads; as with two full fences, at least
/// one of them sees the other's write. fence_light() costs nothing at run time (a
/// compiler barrier) when fence_heavy() can force a barrier on every CPU that runs a
/// process of the program: membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), ~1-2 us, to which
/// every process that calls fence_light() must have subscribed beforehand with
/// fence_register() (fork children inherit the subscription; exec drops it). Without
/// membarrier (old kernel, seccomp), fence_light() is a full fence and fence_heavy()
/// returns false: a sleeper in such a process must not trust it (sleep in short slices).
void fence_register() noexcept;
bool fence_heavy() noexcept;
/// Set once per process image by fence_register(); a fork child inherits both the flag
/// and the kernel's subscription, an exec'd one starts again from false.
inline std::atomic<bool> g_membarrier_registered{false};
inline bool fence_membarrier_available() noexcept { return g_membarrier_registered.load(std::memory_order_relaxed); }
inline void fence_light() noexcept {
  if (fence_membarrier_available()) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

/// The CPU the caller runs on: one load from the thread's rseq area where glibc
/// registered one (glibc >= 2.35), else sched_getcpu() (vDSO). Queues note it on every
/// put and get for the spin policy below, so it must cost next to nothing.
int current_cpu_slow() noexcept;
inline int current_cpu() noexcept {
#if defined(MP_HAVE_RSEQ_CPU_ID)
  if (__rseq_size >= 8) {  // registered: cpu_id (the second u32) is kept current by the kernel
    const auto* area = static_cast<const char*>(__builtin_thread_pointer()) + __rseq_offset;
    const auto cpu = static_cast<int>(reinterpret_cast<const volatile std::uint32_t*>(area)[1]);
    if (cpu >= 0) return cpu;  // a thread whose own registration failed reads -1 or -2
  }
#endif
  return current_cpu_slow();
}

/// Spins until `ready()` or the spin budget runs out; returns ready(). The budget is
/// spent only while `peer_cpu` (the CPU the other side last ran on) differs from the
/// caller's: on the same CPU, spinning only keeps the peer from running, so the caller
/// gives up at once and sleeps.
template <class Ready>
bool spin_until(Ready&& ready, int peer_cpu) {
  constexpr int kSpins = 4000;  // ~20-60 us of `pause`: longer than a cross-CPU wake-up
  if (ready()) return true;
  if (peer_cpu < 0 || peer_cpu == current_cpu()) return false;
  for (int i = 0; i < kSpins; ++i) {
    cpu_relax();
    if (ready()) return true;
  }
  return false;
}

}  // namespace mp::detail
