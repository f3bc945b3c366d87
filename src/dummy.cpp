// src/dummy.cpp — mp::dummy::Process, a thread with Process's interface (dummy.hpp).
#include "mp/dummy.hpp"

namespace mp::dummy {

Process::~Process() {
  if (!thread_.joinable()) return;
  if (daemon_) {
    thread_.detach();  // as a daemon thread: not waited for
  } else {
    thread_.join();
  }
}

void Process::start() {
  {
    std::lock_guard g(s_->mu);
    if (s_->started) throw ValueError("dummy::Process.start: threads can only be started once");
    s_->started = true;
  }
  thread_ = std::thread([s = s_, target = std::move(target_)]() mutable {
    bool failed = false;
    try {
      target();
    } catch (...) {
      failed = true;  // Python's threads print the exception and end; so does this one
      try {
        throw;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "Exception in thread: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "Exception in thread\n");
      }
    }
    std::lock_guard g(s->mu);
    s->finished = true;
    s->failed = failed;
    s->cv.notify_all();
  });
}

void Process::join() {
  {
    std::lock_guard g(s_->mu);
    if (!s_->started) throw ValueError("dummy::Process.join: the thread was not started");
  }
  if (thread_.joinable()) thread_.join();
}

bool Process::join_until(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock g(s_->mu);
  if (!s_->started) throw ValueError("dummy::Process.join: the thread was not started");
  if (!s_->cv.wait_until(g, deadline, [&] { return s_->finished; })) return false;
  g.unlock();
  if (thread_.joinable()) thread_.join();
  return true;
}

bool Process::is_alive() const {
  std::lock_guard g(s_->mu);
  return s_->started && !s_->finished;
}

std::optional<int> Process::exitcode() const {
  std::lock_guard g(s_->mu);
  if (!s_->finished) return std::nullopt;
  return s_->failed ? 1 : 0;
}

}  // namespace mp::dummy
