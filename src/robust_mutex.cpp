// src/robust_mutex.cpp — process-shared robust pthread mutexes (see robust_mutex.hpp).
#include "mp/detail/robust_mutex.hpp"

#include <cerrno>
#include <ctime>

#include "mp/detail/sys.hpp"

namespace mp::detail {
namespace {

RobustMutex::Result result_of(int rc, const char* call) {
  switch (rc) {
    case 0: return RobustMutex::Result::acquired;
    case EOWNERDEAD: return RobustMutex::Result::owner_died;
    case ETIMEDOUT: return RobustMutex::Result::timed_out;
    case EBUSY: return RobustMutex::Result::busy;
    default: throw_os_error(call, rc);
  }
}

}  // namespace

void RobustMutex::init() {
  pthread_mutexattr_t a;
  ::pthread_mutexattr_init(&a);
  ::pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  int rc = ::pthread_mutex_init(&m_, &a);
  ::pthread_mutexattr_destroy(&a);
  if (rc) throw_os_error("pthread_mutex_init", rc);
}

RobustMutex::Result RobustMutex::lock(const Deadline& deadline) {
  if (!deadline) return result_of(::pthread_mutex_lock(&m_), "pthread_mutex_lock");
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer models neither pthread_mutex_clocklock nor a timedlock that inherits
  // a dead holder's lock: its builds poll with trylock, which it models fully.
  for (;;) {
    const Result r = try_lock();
    if (r != Result::busy) return r;
    if (std::chrono::steady_clock::now() >= *deadline) return Result::timed_out;
    struct timespec pause {0, 200'000};
    ::nanosleep(&pause, nullptr);
  }
#else
  // The deadline is on the steady clock; pthread_mutex_clocklock takes CLOCK_MONOTONIC.
  auto left = *deadline - std::chrono::steady_clock::now();
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  if (ns < 0) ns = 0;
  long long total = static_cast<long long>(now.tv_nsec) + ns % 1'000'000'000;
  timespec abs{now.tv_sec + static_cast<time_t>(ns / 1'000'000'000 + total / 1'000'000'000),
               static_cast<long>(total % 1'000'000'000)};
  return result_of(::pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &abs), "pthread_mutex_clocklock");
#endif
}

RobustMutex::Result RobustMutex::try_lock() { return result_of(::pthread_mutex_trylock(&m_), "pthread_mutex_trylock"); }

void RobustMutex::consistent() { ::pthread_mutex_consistent(&m_); }

void RobustMutex::unlock() { ::pthread_mutex_unlock(&m_); }

}  // namespace mp::detail
