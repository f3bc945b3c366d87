// src/thread_workers.cpp — see mp/detail/thread_workers.hpp.
#include "mp/detail/thread_workers.hpp"

#include "mp/context.hpp"
#include "mp/errors.hpp"

namespace mp::detail {

ThreadWorkers::ThreadWorkers(std::size_t n, std::function<void()> initializer, std::string what)
    : initializer_(std::move(initializer)), what_(std::move(what)) {
  if (n == 0) n = static_cast<std::size_t>(cpu_count());
  threads_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
}

ThreadWorkers::~ThreadWorkers() {
  close();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void ThreadWorkers::submit(Task task) {
  {
    std::lock_guard g(mu_);
    if (closed_) throw ValueError(what_ + " is not running: no task can be submitted after close() or shutdown()");
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ThreadWorkers::close() {
  {
    std::lock_guard g(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

void ThreadWorkers::join() {
  {
    std::lock_guard g(mu_);
    if (!closed_) throw ValueError(what_ + ".join: call close() or terminate() first");
  }
  const auto me = std::this_thread::get_id();
  for (auto& t : threads_) {
    if (t.get_id() == me) throw ValueError(what_ + ".join: cannot be called from one of its own tasks");
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void ThreadWorkers::terminate() {
  std::deque<Task> dropped;
  {
    std::lock_guard g(mu_);
    closed_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  for (auto& t : dropped)
    if (t.abandon) t.abandon();
}

bool ThreadWorkers::closed() const {
  std::lock_guard g(mu_);
  return closed_;
}

void ThreadWorkers::loop() {
  if (initializer_) {
    try {
      initializer_();
    } catch (...) {
      terminate();  // as in Python's ThreadPoolExecutor: a failed initializer breaks the pool
      return;
    }
  }
  for (;;) {
    Task task;
    {
      std::unique_lock g(mu_);
      cv_.wait(g, [&] { return closed_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closed and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task.run();
  }
}

}  // namespace mp::detail
