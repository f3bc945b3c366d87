// mp/futures.hpp — concurrent.futures: ProcessPoolExecutor, ThreadPoolExecutor, Future,
// as_completed and wait.
//
// @code
//   int square(int x) { return x * x; }
//
//   mp::ProcessPoolExecutor ex(3);                     // or ex({.max_workers = 3, ...})
//   std::vector<mp::Future<int>> fs;
//   for (int i = 0; i < 10; ++i) fs.push_back(ex.submit(square, i));
//   for (auto& f : mp::as_completed(fs)) std::cout << f.result() << "\n";   // completion order
//   auto [done, not_done] = mp::wait(fs, 1s, mp::FIRST_COMPLETED);
//   for (int y : ex.map(square, std::vector<int>{1, 2, 3})) { ... }       // in order
//   ex.shutdown();
// @endcode
//
// ProcessPoolExecutor runs on the same worker machinery as mp::Pool (pool.hpp: what a
// task may be, exceptions as mp::RemoteError with the remote stack, task_timeout,
// max_memory_per_child). A worker that dies fails only the task it ran, with
// mp::BrokenProcessPool, and is replaced: the executor stays usable (Python's marks
// itself broken for good). ThreadPoolExecutor runs any callable, captures included, on
// threads, and rethrows a task's own exception.
//
// The destructor of an executor calls shutdown(true), as leaving Python's `with` block
// does. Every member is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/context.hpp"
#include "mp/detail/async_state.hpp"
#include "mp/detail/pool_core.hpp"
#include "mp/detail/thread_workers.hpp"
#include "mp/errors.hpp"
#include "mp/pool.hpp"

namespace mp {

namespace detail {

/// A Future's state: an AsyncState that an executor can withdraw before it runs.
template <class R>
class FutureState : public AsyncState<R> {
 public:
  using AsyncState<R>::AsyncState;
  std::function<bool()> withdraw;    // true if the task was withdrawn before it ran
  std::function<bool()> is_taken;    // a worker has taken the task
  std::atomic<bool> cancelled{false};
};

}  // namespace detail

/// The eventual result of an executor's task. A cheap copyable handle.
template <class R>
class Future {
 public:
  Future() = default;
  explicit Future(std::shared_ptr<detail::FutureState<R>> s) : s_(std::move(s)) {}

  /// Blocks until done; returns the result or throws the task's error (mp::RemoteError,
  /// mp::BrokenProcessPool, mp::CancelledError...).
  R result() const {
    s_->wait_until(std::nullopt);
    return s_->value();
  }
  /// mp::TimeoutError if not done within `timeout`.
  template <class Rep, class Period>
  R result(std::chrono::duration<Rep, Period> timeout) const {
    if (!s_->wait_until(std::chrono::steady_clock::now() + timeout)) throw TimeoutError("Future.result: timed out");
    return s_->value();
  }
  /// Blocks until done; the task's error, or null if it succeeded. mp::CancelledError
  /// if it was cancelled.
  std::exception_ptr exception() const {
    s_->wait_until(std::nullopt);
    return error_of_done();
  }
  template <class Rep, class Period>
  std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    if (!s_->wait_until(std::chrono::steady_clock::now() + timeout)) throw TimeoutError("Future.exception: timed out");
    return error_of_done();
  }
  bool done() const { return s_->ready(); }
  bool running() const { return !s_->ready() && s_->is_taken && s_->is_taken(); }
  bool cancelled() const { return s_->cancelled.load(); }
  /// Withdraws the task if it has not started: true then (and the future is cancelled);
  /// false if it runs or is done.
  bool cancel() {
    if (s_->cancelled.load()) return true;
    if (s_->ready() || !s_->withdraw || !s_->withdraw()) return false;
    s_->cancelled = true;
    s_->set_error(std::make_exception_ptr(CancelledError("the future was cancelled")));
    return true;
  }
  /// Calls fn(*this) once done (at once if it is), in the thread that completes it.
  void add_done_callback(std::function<void(Future)> fn) {
    auto self = *this;
    s_->on_done([fn = std::move(fn), self] { fn(self); });
  }

  /// Internal: the shared state.
  const std::shared_ptr<detail::FutureState<R>>& state() const noexcept { return s_; }
  bool operator==(const Future& o) const noexcept { return s_ == o.s_; }

 private:
  std::exception_ptr error_of_done() const {
    if (s_->cancelled.load()) throw CancelledError("the future was cancelled");
    return s_->error();
  }
  std::shared_ptr<detail::FutureState<R>> s_;
};

enum ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };

namespace detail {

/// Where futures report their completion to as_completed / wait: indices, in order.
struct CompletionQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::size_t> done;
  std::size_t failed = 0;
  void push(std::size_t i, bool error) {
    {
      std::lock_guard g(mu);
      done.push_back(i);
      if (error) ++failed;
    }
    cv.notify_all();
  }
};

/// Drops the entries whose future is gone, once the list has doubled since the last
/// time (amortized O(1) per submit; pruning on every submit made 100,000 submits O(n²)).
inline void prune_expired(std::vector<std::pair<std::weak_ptr<void>, std::function<void()>>>& list,
                          std::size_t& pruned_at) {
  if (list.size() < 2 * pruned_at + 64) return;
  std::erase_if(list, [](auto& c) { return c.first.expired(); });
  pruned_at = list.size();
}

template <class R>
void report_completion(const Future<R>& f, const std::shared_ptr<CompletionQueue>& q, std::size_t i) {
  std::weak_ptr<CompletionQueue> weak = q;
  auto state = f.state();
  state->on_done([weak, i, raw = state.get()] {
    if (auto queue = weak.lock()) queue->push(i, raw->error() != nullptr);
  });
}

}  // namespace detail

/// The futures of `fs` as they complete (those already done first). The range yields
/// references into `fs`, which must outlive it. Iterating raises mp::TimeoutError when
/// `timeout` (counted from this call) runs out before all are done.
template <class R>
class AsCompleted {
 public:
  AsCompleted(std::vector<Future<R>>& fs, std::optional<std::chrono::nanoseconds> timeout)
      : fs_(fs), q_(std::make_shared<detail::CompletionQueue>()), deadline_(detail::deadline_after(timeout)) {
    for (std::size_t i = 0; i < fs.size(); ++i) detail::report_completion(fs[i], q_, i);
  }

  class iterator {
   public:
    using value_type = Future<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompleted* owner) : owner_(owner) { ++*this; }
    Future<R>& operator*() const { return owner_->fs_[current_]; }
    iterator& operator++() {
      if (owner_->yielded_ == owner_->fs_.size()) {
        end_ = true;
        return *this;
      }
      std::unique_lock g(owner_->q_->mu);
      auto ready = [&] { return !owner_->q_->done.empty(); };
      if (!owner_->deadline_) {
        owner_->q_->cv.wait(g, ready);
      } else if (!owner_->q_->cv.wait_until(g, *owner_->deadline_, ready)) {
        throw TimeoutError("as_completed: " + std::to_string(owner_->fs_.size() - owner_->yielded_) +
                           " futures unfinished when the timeout ran out");
      }
      current_ = owner_->q_->done.front();
      owner_->q_->done.pop_front();
      ++owner_->yielded_;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return end_; }

   private:
    AsCompleted* owner_ = nullptr;
    std::size_t current_ = 0;
    bool end_ = false;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::vector<Future<R>>& fs_;
  std::shared_ptr<detail::CompletionQueue> q_;
  detail::Deadline deadline_;
  std::size_t yielded_ = 0;
};

template <class R>
AsCompleted<R> as_completed(std::vector<Future<R>>& fs) {
  return AsCompleted<R>(fs, std::nullopt);
}
template <class R, class Rep, class Period>
AsCompleted<R> as_completed(std::vector<Future<R>>& fs, std::chrono::duration<Rep, Period> timeout) {
  return AsCompleted<R>(fs, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
}

template <class R>
struct WaitResult {
  std::vector<Future<R>> done;
  std::vector<Future<R>> not_done;
};

/// Waits until `return_when` holds or `timeout` runs out (never raises for the timeout):
/// the futures split into done and not done.
template <class R>
WaitResult<R> wait(const std::vector<Future<R>>& fs, std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                   ReturnWhen return_when = ALL_COMPLETED) {
  auto q = std::make_shared<detail::CompletionQueue>();
  for (std::size_t i = 0; i < fs.size(); ++i) detail::report_completion(fs[i], q, i);
  const auto deadline = detail::deadline_after(timeout);
  {
    std::unique_lock g(q->mu);
    auto satisfied = [&] {
      if (return_when == FIRST_COMPLETED) return !q->done.empty() || fs.empty();
      if (return_when == FIRST_EXCEPTION && q->failed > 0) return true;
      return q->done.size() == fs.size();
    };
    if (!deadline) {
      q->cv.wait(g, satisfied);
    } else {
      q->cv.wait_until(g, *deadline, satisfied);
    }
  }
  WaitResult<R> out;
  for (auto& f : fs) (f.done() ? out.done : out.not_done).push_back(f);
  return out;
}
template <class R, class Rep, class Period>
WaitResult<R> wait(const std::vector<Future<R>>& fs, std::chrono::duration<Rep, Period> timeout,
                   ReturnWhen return_when = ALL_COMPLETED) {
  return wait(fs, std::optional<std::chrono::nanoseconds>(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)),
              return_when);
}

/// The results of Executor::map, in order. Raises mp::TimeoutError when the map's
/// timeout (counted from the map() call) runs out; rethrows a task's error at its place.
/// With chunksize > 1 each task's future holds a chunk of results, walked in place (as
/// Python's chain of result lists); a failed chunk raises at its first item.
template <class R>
class ResultIterator {
 public:
  ResultIterator(std::vector<Future<R>> fs, detail::Deadline deadline) : singles_(std::move(fs)), deadline_(deadline) {}
  ResultIterator(std::vector<Future<std::vector<R>>> chunks, detail::Deadline deadline)
      : chunks_(std::move(chunks)), deadline_(deadline) {}
  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(ResultIterator* o) : o_(o) { ++*this; }
    const R& operator*() const { return *value_; }
    iterator& operator++() {
      value_ = nullptr;
      if (!o_->chunks_.empty()) {
        while (chunk_ && at_ == chunk_->size()) {
          chunk_ = nullptr;
          at_ = 0;
        }
        if (!chunk_) {
          if (next_ == o_->chunks_.size()) return *this;
          chunk_ = &ready_value(*o_->chunks_[next_++].state());
          if (chunk_->empty()) return ++*this;
        }
        value_ = &(*chunk_)[at_++];
      } else if (next_ < o_->singles_.size()) {
        value_ = &ready_value(*o_->singles_[next_++].state());
      }
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return value_ == nullptr; }

   private:
    template <class T>
    const T& ready_value(const detail::FutureState<T>& s) const {
      if (!s.wait_until(o_->deadline_)) throw TimeoutError("Executor.map: a result did not come within the timeout");
      return s.value();
    }
    ResultIterator* o_ = nullptr;
    std::size_t next_ = 0;
    const std::vector<R>* chunk_ = nullptr;
    std::size_t at_ = 0;
    const R* value_ = nullptr;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::vector<Future<R>> singles_;
  std::vector<Future<std::vector<R>>> chunks_;
  detail::Deadline deadline_;
};

/// ProcessPoolExecutor(...) keyword arguments.
struct ProcessPoolExecutorOptions {
  std::size_t max_workers = 0;                             ///< 0 = mp::cpu_count()
  std::optional<Context> mp_context{};
  Initializer initializer{};                               ///< run once per worker
  std::size_t max_tasks_per_child = 0;                     ///< 0 = no limit
  std::optional<std::chrono::nanoseconds> task_timeout{};  ///< mp::TimeoutError, worker replaced
  std::size_t max_memory_per_child = 0;                    ///< bytes of RSS, checked between tasks
};

class ProcessPoolExecutor {
 public:
  explicit ProcessPoolExecutor(std::size_t max_workers = 0)
      : ProcessPoolExecutor(ProcessPoolExecutorOptions{.max_workers = max_workers}) {}
  explicit ProcessPoolExecutor(ProcessPoolExecutorOptions options);
  /// shutdown(true).
  ~ProcessPoolExecutor();
  ProcessPoolExecutor(ProcessPoolExecutor&&) noexcept = default;
  ProcessPoolExecutor& operator=(ProcessPoolExecutor&&) = delete;

  /// Schedules f(args...) in a worker. mp::ValueError after shutdown(); serialization
  /// errors of the arguments raise here.
  template <class F, class... A>
  Future<detail::apply_result_t<F, A...>> submit(F&& f, A&&... args) {
    detail::check_task_callable<F>();
    using R = detail::apply_result_t<F, A...>;
    using Fn = std::decay_t<F>;
    using Args = std::tuple<detail::stored_arg_t<A>...>;
    return submit_task<R>(&detail::ApplyRunner<Fn, Args>::run, static_cast<const Fn&>(f),
                          Args(detail::store_arg<A>(std::forward<A>(args))...));
  }

  /// f over `items`, results in order. `chunksize` items per task; `timeout` counts
  /// from this call.
  template <class F, class Range>
  auto map(F&& f, Range&& items, std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
           std::size_t chunksize = 1) {
    using In = std::ranges::range_value_t<Range>;
    using R = detail::map_result_t<F, In>;
    using Fn = std::decay_t<F>;
    const auto deadline = detail::deadline_after(timeout);
    if (chunksize <= 1) {
      std::vector<Future<R>> fs;
      for (auto&& x : items) fs.push_back(submit(f, x));
      return ResultIterator<R>(std::move(fs), deadline);
    }
    // One task and one future per chunk, written straight from the caller's items.
    detail::check_task_callable<Fn>();
    auto [all, storage] = detail::contiguous_view<In>(items);
    std::vector<Future<std::vector<R>>> chunks;
    chunks.reserve((all.size() + chunksize - 1) / chunksize);
    for (std::size_t at = 0; at < all.size(); at += chunksize) {
      const auto part = detail::ChunkView<In>{all.subspan(at, std::min(chunksize, all.size() - at))};
      chunks.push_back(submit_task<std::vector<R>>(&detail::ChunkRunner<Fn, In, false>::run,
                                                    static_cast<const Fn&>(f), part));
    }
    return ResultIterator<R>(std::move(chunks), deadline);
  }

  /// No more submissions. cancel_futures: withdraw every task not yet started. wait:
  /// block until every task is done and the workers have exited.
  void shutdown(bool wait = true, bool cancel_futures = false);

 private:
  // One task (runner, callable, input) with its future: cancellable until a worker takes
  // it, tracked for shutdown(cancel_futures).
  template <class R, class Fn, class Input>
  Future<R> submit_task(detail::TaskRunner runner, const Fn& f, const Input& input) {
    auto state = detail::make_job_shared<detail::FutureState<R>>();
    auto& core = this->core();
    const auto job = core.add_job(state);
    std::weak_ptr<detail::PoolCore> weak = core_;
    state->withdraw = [weak, job] {
      auto c = weak.lock();
      if (!c || !c->try_cancel(job)) return false;
      c->drop_job(job);
      return true;
    };
    state->is_taken = [weak, job] {
      auto c = weak.lock();
      return c && c->taken(job);
    };
    thread_local std::vector<std::byte> buf;
    try {
      detail::build_task(buf, job, 0, runner, f, input);
      core.put_task(buf);
    } catch (...) {
      core.drop_job(job);
      throw;
    }
    track(state);
    return Future<R>(std::move(state));
  }
  template <class R>
  void track(const std::shared_ptr<detail::FutureState<R>>& s) {
    std::lock_guard g(*track_mu_);
    detail::prune_expired(cancellers_, cancellers_pruned_at_);
    cancellers_.emplace_back(s, [weak = std::weak_ptr<detail::FutureState<R>>(s)] {
      if (auto st = weak.lock()) Future<R>(st).cancel();
    });
  }
  detail::PoolCore& core() const {
    if (!core_) throw ValueError("this executor was moved from");
    return *core_;
  }

  std::shared_ptr<detail::PoolCore> core_;
  std::unique_ptr<std::mutex> track_mu_ = std::make_unique<std::mutex>();
  std::vector<std::pair<std::weak_ptr<void>, std::function<void()>>> cancellers_;
  std::size_t cancellers_pruned_at_ = 0;
};

/// ThreadPoolExecutor(...) keyword arguments.
struct ThreadPoolExecutorOptions {
  std::size_t max_workers = 0;         ///< 0 = mp::cpu_count()
  std::function<void()> initializer{};  ///< run once per thread; if it throws, the executor is broken
};

class ThreadPoolExecutor {
 public:
  explicit ThreadPoolExecutor(std::size_t max_workers = 0)
      : ThreadPoolExecutor(ThreadPoolExecutorOptions{.max_workers = max_workers}) {}
  explicit ThreadPoolExecutor(ThreadPoolExecutorOptions options)
      : workers_(std::make_unique<detail::ThreadWorkers>(options.max_workers, std::move(options.initializer),
                                                          "ThreadPoolExecutor")) {}
  ~ThreadPoolExecutor() { shutdown(true); }

  /// Schedules f(args...) on a thread: any callable, any arguments (copied). The task's
  /// own exception is rethrown by result().
  template <class F, class... A>
  auto submit(F&& f, A&&... args) {
    using R = std::invoke_result_t<std::decay_t<F>&, std::decay_t<A>&...>;
    using T = detail::result_t<R>;
    auto state = detail::make_job_shared<detail::FutureState<T>>();
    auto started = std::make_shared<std::atomic<int>>(0);  // 0 queued, 1 running, 2 withdrawn
    state->withdraw = [started] {
      int expected = 0;
      return started->compare_exchange_strong(expected, 2);
    };
    state->is_taken = [started] { return started->load() == 1; };
    auto run = [state, started, fn = std::decay_t<F>(std::forward<F>(f)),
                args = std::make_tuple(std::decay_t<A>(std::forward<A>(args))...)]() mutable {
      int expected = 0;
      if (!started->compare_exchange_strong(expected, 1)) return;  // cancelled
      try {
        if constexpr (std::is_void_v<R>) {
          std::apply(fn, args);
          state->set_value(detail::Unit{});
        } else {
          state->set_value(std::apply(fn, args));
        }
      } catch (...) {
        state->set_error(std::current_exception());
      }
    };
    auto abandon = [state] {
      state->set_error(std::make_exception_ptr(BrokenProcessPool("the thread pool stopped before this task ran")));
    };
    workers_->submit({std::move(run), std::move(abandon)});
    {
      std::lock_guard g(mu_);
      detail::prune_expired(cancellers_, cancellers_pruned_at_);
      cancellers_.emplace_back(state, [weak = std::weak_ptr<detail::FutureState<T>>(state)] {
        if (auto st = weak.lock()) Future<T>(st).cancel();
      });
    }
    return Future<T>(std::move(state));
  }

  template <class F, class Range>
  auto map(F&& f, Range&& items, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    using In = std::ranges::range_value_t<Range>;
    using T = detail::result_t<std::invoke_result_t<std::decay_t<F>&, In&>>;
    const auto deadline = detail::deadline_after(timeout);
    std::vector<Future<T>> fs;
    for (auto&& x : items) fs.push_back(submit(f, x));
    return ResultIterator<T>(std::move(fs), deadline);
  }

  void shutdown(bool wait = true, bool cancel_futures = false) {
    if (cancel_futures) {
      std::vector<std::function<void()>> all;
      {
        std::lock_guard g(mu_);
        for (auto& c : cancellers_) all.push_back(c.second);
      }
      for (auto& c : all) c();
    }
    workers_->close();
    if (wait) workers_->join();
  }

 private:
  std::unique_ptr<detail::ThreadWorkers> workers_;
  std::mutex mu_;
  std::vector<std::pair<std::weak_ptr<void>, std::function<void()>>> cancellers_;
  std::size_t cancellers_pruned_at_ = 0;
};

}  // namespace mp
