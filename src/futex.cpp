// src/futex.cpp — the futex system call, wrapped once.
#include "mp/detail/futex.hpp"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "mp/detail/sys.hpp"

namespace mp::detail {

bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, const Deadline& deadline,
                std::optional<std::chrono::nanoseconds> max_slice) {
  timespec ts{};
  timespec* tsp = nullptr;
  std::optional<std::chrono::nanoseconds> left = max_slice;
  if (deadline) {
    auto until = *deadline - std::chrono::steady_clock::now();
    if (until <= std::chrono::nanoseconds(0)) return false;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(until);
    if (!left || ns < *left) left = ns;
  }
  if (left) {
    ts.tv_sec = static_cast<time_t>(left->count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(left->count() % 1'000'000'000);
    tsp = &ts;
  }
  // FUTEX_WAIT takes a relative timeout.
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, tsp, nullptr, 0);
  if (r == -1 && errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT) throw_os_error("futex(FUTEX_WAIT)", errno);
  if (deadline && std::chrono::steady_clock::now() >= *deadline) return false;
  return true;
}

void futex_wake(std::atomic<std::uint32_t>& word, int n) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, n, nullptr, nullptr, 0);
}

int current_cpu_slow() noexcept { return ::sched_getcpu(); }

void fence_register() noexcept {
  // No local static (its init guard, held by another thread at a fork, would hang the
  // child): registering again is harmless, so racing threads may both do it.
  if (g_membarrier_registered.load(std::memory_order_relaxed)) return;
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0) {
    g_membarrier_registered.store(true, std::memory_order_relaxed);
  }
}

bool fence_heavy() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!fence_membarrier_available()) return false;
  return ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

}  // namespace mp::detail
