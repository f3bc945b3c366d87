// mp/detail/robust_mutex.hpp — a mutex in shared memory that survives the death of its
// holder.
//
// A process-shared, robust pthread mutex: when the holder dies (SIGKILL included), the
// kernel releases it and the next locker is told so (EOWNERDEAD), repairs what the dead
// holder may have left half-done, and marks it consistent. Timed locks use
// CLOCK_MONOTONIC. Placed (not constructed) in shared memory by init().
#pragma once

#include <pthread.h>

#include "mp/detail/futex.hpp"

namespace mp::detail {

class RobustMutex {
 public:
  enum class Result { acquired, owner_died, timed_out, busy };

  /// Initialises the mutex in place (once, by the creator of the shared memory).
  void init();
  /// Blocks until acquired or `deadline`. owner_died: acquired, but the previous holder
  /// died holding it; the caller repairs the protected state, then calls consistent().
  Result lock(const Deadline& deadline = std::nullopt);
  /// Never blocks: busy if another holder has it.
  Result try_lock();
  /// After owner_died, once the protected state is repaired.
  void consistent();
  void unlock();

 private:
  pthread_mutex_t m_;
};

}  // namespace mp::detail
