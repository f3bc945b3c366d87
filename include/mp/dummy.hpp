// mp/dummy.hpp — multiprocessing.dummy: the same interface on threads.
//
// @code
//   mp::dummy::Pool pool(4);                       // threads, not processes
//   auto ys = pool.map([&](int x) { return x * scale; }, xs);   // captures are fine here
//   mp::dummy::Process t([] { std::puts("Test"); });
//   t.start(); t.join();
//   mp::dummy::Queue<std::string> q;  q.put("hi");  q.get();
// @endcode
//
// Switching a program between threads and processes is a one-line change: the names and
// members are those of mp::Process, mp::Pool, mp::Queue... Differences, all because
// nothing leaves the process: any callable and any argument type works (captures
// included, nothing is serialized), results are moved, not copied through memory, and a
// task's exception is rethrown as itself (not wrapped in mp::RemoteError). A thread that
// crashes takes the whole process with it: use processes for isolation.
//
// Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier, Value and Array
// are mp's own (synchronize.hpp, sharedctypes.hpp): they work between threads as well.
#pragma once

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
#include <cstdio>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/async_state.hpp"
#include "mp/detail/thread_workers.hpp"
#include "mp/errors.hpp"
#include "mp/pool.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"

namespace mp::dummy {

using mp::AsyncOptions;
using mp::AsyncResult;
using mp::Barrier;
using mp::BoundedSemaphore;
using mp::Condition;
using mp::Event;
using mp::IMapIterator;
using mp::Lock;
using mp::RLock;
using mp::Semaphore;
template <class T>
using Value = mp::Value<T>;
template <class T>
using Array = mp::Array<T>;

/// A thread with Process's interface (Python's DummyProcess).
class Process {
 public:
  template <class F, class... A>
  explicit Process(F&& target, A&&... args)
      : target_([f = std::decay_t<F>(std::forward<F>(target)),
                 a = std::make_tuple(std::decay_t<A>(std::forward<A>(args))...)]() mutable { std::apply(f, a); }) {}
  template <class F, class... A>
  Process(ProcessOptions options, F&& target, A&&... args) : Process(std::forward<F>(target), std::forward<A>(args)...) {
    name_ = std::move(options.name);
    daemon_ = options.daemon;
  }
  Process(Process&&) = delete;
  /// Joins a thread that was started and not joined (a daemon one is detached).
  ~Process();

  /// Starts the thread. mp::ValueError if already started.
  void start();
  /// Waits for the thread. mp::ValueError before start().
  void join();
  /// false if the thread still runs after `timeout`.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_until(std::chrono::steady_clock::now() + timeout);
  }
  bool is_alive() const;
  const std::string& name() const noexcept { return name_; }
  bool daemon() const noexcept { return daemon_; }
  /// nullopt while it runs (or before start), 0 after; 1 if the target threw.
  std::optional<int> exitcode() const;

 private:
  bool join_until(std::chrono::steady_clock::time_point deadline);
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    bool started = false, finished = false, failed = false;
  };
  std::function<void()> target_;
  std::string name_ = "Thread";
  bool daemon_ = false;
  std::shared_ptr<Shared> s_ = std::make_shared<Shared>();
  std::thread thread_;
};

/// A FIFO between threads (Python's queue.Queue): any T, nothing serialized.
template <class T>
class Queue {
 public:
  explicit Queue(std::size_t maxsize = 0) : s_(std::make_shared<State>()) { s_->maxsize = maxsize; }

  void put(T item) { put_until(std::move(item), std::nullopt); }
  template <class Rep, class Period>
  void put(T item, std::chrono::duration<Rep, Period> timeout) {
    put_until(std::move(item), std::chrono::steady_clock::now() + timeout);
  }
  void put_nowait(T item) { put_until(std::move(item), std::chrono::steady_clock::now()); }
  T get() { return get_until(std::nullopt); }
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return get_until(std::chrono::steady_clock::now() + timeout);
  }
  T get_nowait() { return get_until(std::chrono::steady_clock::now()); }
  /// As mp::Queue's: the item is moved into `out` (between threads there is no copy to spare).
  void get_into(T& out) { out = get(); }
  template <class Rep, class Period>
  void get_into(T& out, std::chrono::duration<Rep, Period> timeout) {
    out = get(timeout);
  }
  std::size_t qsize() const {
    std::lock_guard g(s_->mu);
    return s_->items.size();
  }
  bool empty() const { return qsize() == 0; }
  bool full() const {
    std::lock_guard g(s_->mu);
    return s_->maxsize && s_->items.size() >= s_->maxsize;
  }
  void task_done() {
    std::lock_guard g(s_->mu);
    if (s_->unfinished == 0) throw ValueError("task_done() called too many times");
    if (--s_->unfinished == 0) s_->cv.notify_all();
  }
  void join() {
    std::unique_lock g(s_->mu);
    s_->cv.wait(g, [&] { return s_->unfinished == 0; });
  }
  void close() noexcept {}
  void join_thread() const noexcept {}
  void cancel_join_thread() const noexcept {}

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<T> items;
    std::size_t maxsize = 0;
    std::size_t unfinished = 0;
  };
  void put_until(T item, std::optional<std::chrono::steady_clock::time_point> deadline) {
    std::unique_lock g(s_->mu);
    auto room = [&] { return !s_->maxsize || s_->items.size() < s_->maxsize; };
    if (!deadline) {
      s_->cv.wait(g, room);
    } else if (!s_->cv.wait_until(g, *deadline, room)) {
      throw Full("Queue.put: the queue is full");
    }
    s_->items.push_back(std::move(item));
    ++s_->unfinished;
    s_->cv.notify_all();
  }
  T get_until(std::optional<std::chrono::steady_clock::time_point> deadline) {
    std::unique_lock g(s_->mu);
    auto any = [&] { return !s_->items.empty(); };
    if (!deadline) {
      s_->cv.wait(g, any);
    } else if (!s_->cv.wait_until(g, *deadline, any)) {
      throw Empty("Queue.get: the queue is empty");
    }
    T item = std::move(s_->items.front());
    s_->items.pop_front();
    s_->cv.notify_all();
    return item;
  }
  std::shared_ptr<State> s_;
};
template <class T>
using JoinableQueue = Queue<T>;
template <class T>
using SimpleQueue = Queue<T>;

/// multiprocessing.dummy.Pool (ThreadPool) keyword arguments.
struct PoolOptions {
  std::size_t processes = 0;             ///< threads; 0 = mp::cpu_count()
  std::function<void()> initializer{};  ///< run once per thread
};

/// Pool's interface on threads (see mp::Pool for every member's contract).
class Pool {
 public:
  explicit Pool(std::size_t processes = 0) : Pool(PoolOptions{.processes = processes}) {}
  explicit Pool(PoolOptions options)
      : workers_(std::make_unique<detail::ThreadWorkers>(options.processes, std::move(options.initializer), "Pool")) {}
  /// Not closed: terminate(); then join.
  ~Pool() {
    if (!workers_) return;
    if (!workers_->closed()) workers_->terminate();
    try {
      workers_->join();
    } catch (...) {
    }
  }
  Pool(Pool&&) noexcept = default;

  template <class F, class... A>
  auto apply(F&& f, A&&... args) {
    return apply_async(std::forward<F>(f), std::forward<A>(args)...).take();
  }
  template <class F, class... A>
    requires(!std::is_same_v<std::decay_t<F>, AsyncOptions>)
  auto apply_async(F&& f, A&&... args) {
    return apply_async(AsyncOptions{}, std::forward<F>(f), std::forward<A>(args)...);
  }
  template <class F, class... A>
  auto apply_async(AsyncOptions options, F&& f, A&&... args) {
    using R = std::invoke_result_t<std::decay_t<F>&, std::decay_t<A>&...>;
    using T = detail::result_t<R>;
    if (!options.callback.template accepts<T>()) throw ValueError("Pool: the callback's parameter type is not the task's result type");
    auto state = detail::make_job_shared<detail::AsyncState<T>>(std::move(options.callback), std::move(options.error_callback));
    auto run = [state, fn = std::decay_t<F>(std::forward<F>(f)),
                args = std::make_tuple(std::decay_t<A>(std::forward<A>(args))...)]() mutable {
      try {
        state->set_value(detail::invoke_stored(fn, args));
      } catch (...) {
        state->set_error(std::current_exception());
      }
    };
    submit(std::move(run), state);
    return AsyncResult<T>(std::move(state));
  }

  template <class F, class Range>
  auto map(F&& f, Range&& items, std::size_t chunksize = 0) {
    return map_async(std::forward<F>(f), std::forward<Range>(items), AsyncOptions{.chunksize = chunksize}).take();
  }
  template <class F, class Range>
  auto map_async(F&& f, Range&& items, AsyncOptions options = {}) {
    return submit_map<false>(std::forward<F>(f), std::forward<Range>(items), std::move(options));
  }
  template <class F, class Range>
  auto starmap(F&& f, Range&& tuples, std::size_t chunksize = 0) {
    return starmap_async(std::forward<F>(f), std::forward<Range>(tuples), AsyncOptions{.chunksize = chunksize}).take();
  }
  template <class F, class Range>
  auto starmap_async(F&& f, Range&& tuples, AsyncOptions options = {}) {
    return submit_map<true>(std::forward<F>(f), std::forward<Range>(tuples), std::move(options));
  }
  template <class F, class Range>
  auto imap(F&& f, Range&& items, std::size_t chunksize = 1) {
    return submit_stream(std::forward<F>(f), std::forward<Range>(items), chunksize, true);
  }
  template <class F, class Range>
  auto imap_unordered(F&& f, Range&& items, std::size_t chunksize = 1) {
    return submit_stream(std::forward<F>(f), std::forward<Range>(items), chunksize, false);
  }

  void close() { workers_->close(); }
  void join() { workers_->join(); }
  /// Drops the tasks not started (they fail with mp::ProcessError); running ones finish
  /// (a thread cannot be killed).
  void terminate() {
    workers_->terminate();
    workers_->join();
  }
  std::size_t processes() const { return workers_->size(); }

 private:
  template <class Run>
  void submit(Run run, std::shared_ptr<detail::Job> job) {
    auto abandon = [job] {
      job->fail_all(std::make_exception_ptr(ProcessError("the pool was terminated before this task ran")));
    };
    workers_->submit({std::move(run), std::move(abandon)});
  }

  template <class Fn, class In, bool Star>
  static auto call(Fn& f, In& x) {
    if constexpr (Star) {
      return detail::invoke_stored(f, x);
    } else {
      auto args = std::forward_as_tuple(x);
      return detail::invoke_stored(f, args);
    }
  }

  template <bool Star, class F, class Range>
  auto submit_map(F&& f, Range&& items, AsyncOptions options) {
    using In = std::ranges::range_value_t<Range>;
    using Fn = std::decay_t<F>;
    using R = decltype(call<Fn, In, Star>(std::declval<Fn&>(), std::declval<In&>()));
    if (!options.callback.template accepts<std::vector<R>>()) {
      throw ValueError("Pool: the callback's parameter type is not the map's result type");
    }
    auto all = std::make_shared<std::vector<In>>(std::ranges::begin(items), std::ranges::end(items));
    const std::size_t chunksize = options.chunksize ? options.chunksize : detail::default_chunksize(all->size(), processes());
    auto state = detail::make_job_shared<detail::MapState<R>>(all->size(), chunksize, std::move(options.callback),
                                                       std::move(options.error_callback));
    auto fn = std::make_shared<Fn>(std::forward<F>(f));
    for (std::size_t c = 0; c < state->chunks(); ++c) {
      submit(
          [state, fn, all, c, chunksize] {
            try {
              std::vector<R> out;
              const std::size_t end = std::min(all->size(), (c + 1) * chunksize);
              for (std::size_t i = c * chunksize; i < end; ++i) out.push_back(call<Fn, In, Star>(*fn, (*all)[i]));
              state->deliver_values(static_cast<std::uint32_t>(c), std::move(out));
            } catch (...) {
              state->fail(static_cast<std::uint32_t>(c), std::current_exception());
            }
          },
          state);
    }
    return AsyncResult<std::vector<R>>(std::move(state));
  }

  template <class F, class Range>
  auto submit_stream(F&& f, Range&& items, std::size_t chunksize, bool ordered) {
    using In = std::ranges::range_value_t<Range>;
    using Fn = std::decay_t<F>;
    using R = decltype(call<Fn, In, false>(std::declval<Fn&>(), std::declval<In&>()));
    if (chunksize == 0) throw ValueError("imap: chunksize must be at least 1");
    auto all = std::make_shared<std::vector<In>>(std::ranges::begin(items), std::ranges::end(items));
    const std::size_t chunks = (all->size() + chunksize - 1) / chunksize;
    auto state = detail::make_job_shared<detail::StreamState<R>>(chunks, ordered);
    auto fn = std::make_shared<Fn>(std::forward<F>(f));
    for (std::size_t c = 0; c < chunks; ++c) {
      submit(
          [state, fn, all, c, chunksize] {
            try {
              std::vector<R> out;
              const std::size_t end = std::min(all->size(), (c + 1) * chunksize);
              for (std::size_t i = c * chunksize; i < end; ++i) out.push_back(call<Fn, In, false>(*fn, (*all)[i]));
              state->deliver_values(static_cast<std::uint32_t>(c), std::move(out));
            } catch (...) {
              state->fail(static_cast<std::uint32_t>(c), std::current_exception());
            }
          },
          state);
    }
    return IMapIterator<R>(std::move(state), all->size());
  }

  std::unique_ptr<detail::ThreadWorkers> workers_;
};

}  // namespace mp::dummy
