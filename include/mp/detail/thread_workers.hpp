// mp/detail/thread_workers.hpp — a fixed set of threads taking tasks from a queue: the
// engine of mp::ThreadPoolExecutor and mp::dummy::Pool.
//
// A task is a pair: `run` (called by a worker thread) and `abandon` (called instead when
// the task is dropped by terminate(), so that whoever waits on it is told). Exceptions
// escaping `run` are the caller's business: wrap them into the task's own state.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mp::detail {

class ThreadWorkers {
 public:
  struct Task {
    std::function<void()> run;
    std::function<void()> abandon;
  };

  /// Starts `n` threads (0 = cpu_count()); each runs `initializer` first (if set). An
  /// initializer that throws closes the workers and abandons every queued task.
  ThreadWorkers(std::size_t n, std::function<void()> initializer, std::string what);
  /// Runs what is queued, then stops the threads (close + join).
  ~ThreadWorkers();
  ThreadWorkers(const ThreadWorkers&) = delete;
  ThreadWorkers& operator=(const ThreadWorkers&) = delete;

  /// Queues a task. Throws mp::ValueError after close() or terminate().
  void submit(Task task);
  std::size_t size() const noexcept { return threads_.size(); }

  /// No more tasks; the threads exit once the queue is empty.
  void close();
  /// Waits for the threads. Must follow close() or terminate(); not from a task.
  void join();
  /// Drops every queued task (calling its abandon()) and closes; running tasks finish.
  void terminate();
  bool closed() const;

 private:
  void loop();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool closed_ = false;
  std::function<void()> initializer_;
  std::string what_;
  std::vector<std::thread> threads_;
};

}  // namespace mp::detail
