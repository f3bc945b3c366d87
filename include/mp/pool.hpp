// mp/pool.hpp — Pool: Python's multiprocessing.Pool, on worker processes that never
// hang their caller.
//
// @code
//   int square(int x) { return x * x; }
//
//   mp::Pool pool(4);                                    // or mp::Pool pool({.processes = 4, ...});
//   int y = pool.apply(square, 7);                       // 49, computed in a worker
//   auto r = pool.apply_async(square, 8);  r.get();      // 64; r.get(1s) raises mp::TimeoutError
//   std::vector<int> ys = pool.map(square, std::vector<int>{1, 2, 3});
//   for (int v : pool.imap_unordered(square, std::views::iota(0, 100))) { ... }
//   pool.close();
//   pool.join();
// @endcode
//
// What a task may be: as for a spawn target (callable.hpp) — a function, a captureless
// lambda, or a function object with a cereal `serialize` member — and its arguments and
// result must be serializable. The task travels to an already running worker, so this
// holds under every start method, fork included (Python pickles tasks the same way).
//
// Guarantees beyond Python's:
//  - A task that throws fails alone: get() raises mp::RemoteError with the original
//    type name, message and the stack at the throw; the worker lives on.
//  - A worker that dies (SIGKILL, segfault, abort, std::exit, the OOM killer) is noticed
//    at once through its sentinel: the task it was running fails with mp::ProcessError
//    naming the signal or exit code, a new worker takes its place, every other task
//    completes, and close()/join() return. Nothing ever waits for ever on a dead worker.
//  - `.task_timeout`: a task running longer is stopped by killing its worker (a task
//    cannot be interrupted otherwise) and fails with mp::TimeoutError.
//  - `.max_memory_per_child`: a worker whose resident memory exceeds it after a task is
//    retired and replaced (between tasks, so no task is lost).
//  - The workers die with the process that owns the pool, even by SIGKILL (they are
//    daemons; as with every daemon, they are tied to the *thread* that started them —
//    keep the thread that constructs the pool alive as long as the pool, or its initial
//    workers die and are replaced).
//  - terminate() fails every unfinished task (Python's would leave get() waiting).
//
// Lifetime: the destructor of a pool that was not closed terminates it, as leaving
// Python's `with Pool() as p:` block does; a closed pool is joined. Callbacks run in the
// pool's result thread: keep them short, and do not call join() or terminate() from one.
//
// Thread-safe: any thread may submit. With threads of your own running, prefer the
// forkserver or spawn start method (`.context`): replacement workers are forked from
// the pool's supervisor thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/context.hpp"
#include "mp/detail/async_state.hpp"
#include "mp/detail/callable.hpp"
#include "mp/detail/pool_core.hpp"
#include "mp/errors.hpp"

namespace mp {

/// A pool's initializer and its arguments: `.initializer = init` or
/// `.initializer = {init, arg1, arg2}`. Run once in every worker before its first task;
/// shippable like a task. If it throws, the pool is broken: its tasks fail with
/// mp::ProcessError instead of workers being restarted for ever.
class Initializer {
 public:
  Initializer() = default;
  template <class F, class... A>
    requires(!std::is_same_v<std::decay_t<F>, Initializer>)
  Initializer(F&& f, A&&... args)  // NOLINT: implicit, for `.initializer = f`
      : target_(detail::make_target(std::forward<F>(f), std::forward<A>(args)...)) {}
  const detail::InitializerPtr& target() const noexcept { return target_; }

 private:
  detail::InitializerPtr target_;
};

/// Python's Pool(...) keyword arguments, and mp's own.
struct PoolOptions {
  std::size_t processes = 0;        ///< 0 = mp::cpu_count()
  Initializer initializer{};
  std::size_t maxtasksperchild = 0;  ///< 0 = workers live as long as the pool
  std::optional<Context> context{};  ///< start method; unset = the program's
  std::optional<std::chrono::nanoseconds> task_timeout{};  ///< per task; unset = none
  std::size_t max_memory_per_child = 0;                    ///< bytes of RSS; 0 = no cap
  /// Called after every task (a map chunk is one task) with (tasks done, tasks sent), in
  /// the pool's result thread. mp::progress() (progress.hpp) draws a bar instead.
  std::function<void(std::size_t done, std::size_t total)> on_progress{};
};

/// Keyword arguments of apply_async / map_async / starmap_async.
struct AsyncOptions {
  std::size_t chunksize = 0;                  ///< map family; 0 = Python's default
  detail::AnyCallback callback{};             ///< gets the result (the vector for maps)
  detail::ErrorCallback error_callback{};     ///< gets the error
};

/// The eventual result of apply_async / map_async (Python's AsyncResult / MapResult).
template <class T>
class AsyncResult {
 public:
  explicit AsyncResult(std::shared_ptr<detail::AsyncState<T>> s) : s_(std::move(s)) {}

  /// Blocks until the result arrives; returns it or throws the task's error
  /// (mp::RemoteError, mp::ProcessError...).
  T get() const {
    s_->wait_until(std::nullopt);
    return s_->value();
  }
  /// mp::TimeoutError if it did not arrive within `timeout`.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait(timeout)) throw TimeoutError("AsyncResult.get: no result within the timeout");
    return s_->value();
  }
  void wait() const { s_->wait_until(std::nullopt); }
  /// true if the result is there.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return s_->wait_until(std::chrono::steady_clock::now() + timeout);
  }
  bool ready() const { return s_->ready(); }
  /// Internal (the blocking apply/map, whose AsyncResult nobody else sees, and which have
  /// no callback): waits, then moves the result out instead of copying it.
  T take() {
    s_->wait_until(std::nullopt);
    return s_->take_value();
  }
  /// Whether the task succeeded; mp::ValueError if it is not ready yet.
  bool successful() const {
    if (!ready()) throw ValueError("AsyncResult.successful: the result is not ready");
    return s_->error() == nullptr;
  }

 private:
  std::shared_ptr<detail::AsyncState<T>> s_;
};

/// The results of imap / imap_unordered, as they come: a range (for (R x : it)) and
/// next(timeout).
template <class R>
class IMapIterator {
 public:
  explicit IMapIterator(std::shared_ptr<detail::StreamState<R>> s, std::size_t size)
      : s_(std::move(s)), size_(size) {}

  /// How many results there will be in all (mp::progress uses it).
  std::size_t size() const noexcept { return size_; }

  /// The next result; nullopt after the last. Rethrows a failed task's error.
  std::optional<R> next() { return s_->next(std::nullopt); }
  /// mp::TimeoutError if none arrives within `timeout`.
  template <class Rep, class Period>
  std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
    return s_->next(std::chrono::steady_clock::now() + timeout);
  }

  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(IMapIterator* owner) : owner_(owner) { ++*this; }
    const R& operator*() const { return *current_; }
    iterator& operator++() {
      current_ = owner_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !current_; }

   private:
    IMapIterator* owner_ = nullptr;
    std::optional<R> current_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::shared_ptr<detail::StreamState<R>> s_;
  std::size_t size_;
};

namespace detail {

template <class F, class... A>
using apply_result_t = result_t<std::invoke_result_t<std::decay_t<F>&, stored_arg_t<A>&...>>;
template <class F, class In>
using map_result_t = result_t<std::invoke_result_t<std::decay_t<F>&, In&>>;
template <class F, class Tuple>
using starmap_result_t = decltype(invoke_stored(std::declval<std::decay_t<F>&>(), std::declval<Tuple&>()));

template <class F>
constexpr void check_task_callable() {
  static_assert(callable_unshippable_reason<std::decay_t<F>>() == nullptr,
                "mp::Pool: a task must be a function, a captureless lambda or a function object with a cereal "
                "`serialize` member (it travels to a running worker, as Python pickles it)");
}

/// Python's default chunksize for map: len / (4 * workers), rounded up.
inline std::size_t default_chunksize(std::size_t items, std::size_t workers) {
  if (items == 0) return 1;
  const std::size_t d = workers * 4;
  return items / d + (items % d ? 1 : 0);
}

}  // namespace detail

class Pool {
 public:
  /// Starts `processes` workers (0 = mp::cpu_count()). mp::ValueError for a negative
  /// count is impossible here; what starting a process throws propagates.
  explicit Pool(std::size_t processes = 0) : Pool(PoolOptions{.processes = processes}) {}
  explicit Pool(PoolOptions options);
  /// Not closed: terminate(). Closed: join().
  ~Pool();
  Pool(Pool&&) noexcept = default;
  Pool& operator=(Pool&&) = delete;

  /// f(args...) in a worker; blocks for the result (throws its error).
  template <class F, class... A>
  auto apply(F&& f, A&&... args) {
    return apply_async(std::forward<F>(f), std::forward<A>(args)...).take();
  }

  /// Submits f(args...); never blocks for the result. Serialization errors of the
  /// arguments raise here.
  template <class F, class... A>
    requires(!std::is_same_v<std::decay_t<F>, AsyncOptions>)
  AsyncResult<detail::apply_result_t<F, A...>> apply_async(F&& f, A&&... args) {
    return apply_async(AsyncOptions{}, std::forward<F>(f), std::forward<A>(args)...);
  }
  template <class F, class... A>
  AsyncResult<detail::apply_result_t<F, A...>> apply_async(AsyncOptions options, F&& f, A&&... args) {
    detail::check_task_callable<F>();
    using R = detail::apply_result_t<F, A...>;
    using Fn = std::decay_t<F>;
    using Args = std::tuple<detail::stored_arg_t<A>...>;
    check_callback<R>(options);
    auto state = detail::make_job_shared<detail::AsyncState<R>>(std::move(options.callback), std::move(options.error_callback));
    const auto job = core().add_job(state);
    auto& buf = scratch();
    try {
      detail::build_task(buf, job, 0, &detail::ApplyRunner<Fn, Args>::run, static_cast<const Fn&>(f),
                         Args(detail::store_arg<A>(std::forward<A>(args))...));
      core().put_task(buf);
    } catch (...) {
      core().drop_job(job);
      throw;
    }
    return AsyncResult<R>(std::move(state));
  }

  /// [f(x) for x in items], in order; blocks. `chunksize` items travel per task (0 =
  /// Python's default: items / (4 * processes), rounded up).
  template <class F, class Range>
  auto map(F&& f, Range&& items, std::size_t chunksize = 0) {
    return map_async(std::forward<F>(f), std::forward<Range>(items), AsyncOptions{.chunksize = chunksize}).take();
  }
  template <class F, class Range>
  auto map_async(F&& f, Range&& items, AsyncOptions options = {}) {
    using In = std::ranges::range_value_t<Range>;
    using Fn = std::decay_t<F>;
    using R = detail::map_result_t<F, In>;
    return submit_chunks<R, detail::ChunkRunner<Fn, In, false>, In>(static_cast<const Fn&>(f), items, std::move(options));
  }

  /// [f(args...) for args in tuples], in order; blocks.
  template <class F, class Range>
  auto starmap(F&& f, Range&& tuples, std::size_t chunksize = 0) {
    return starmap_async(std::forward<F>(f), std::forward<Range>(tuples), AsyncOptions{.chunksize = chunksize}).take();
  }
  template <class F, class Range>
  auto starmap_async(F&& f, Range&& tuples, AsyncOptions options = {}) {
    using In = std::ranges::range_value_t<Range>;
    using Fn = std::decay_t<F>;
    using R = detail::starmap_result_t<F, In>;
    return submit_chunks<R, detail::ChunkRunner<Fn, In, true>, In>(static_cast<const Fn&>(f), tuples, std::move(options));
  }

  /// Results of f over `items` in order, each as soon as it and those before it are
  /// done. The items are read and sent at once (as Python's task handler does).
  template <class F, class Range>
  auto imap(F&& f, Range&& items, std::size_t chunksize = 1) {
    return submit_stream<true>(std::forward<F>(f), std::forward<Range>(items), chunksize);
  }
  /// Results of f over `items` in the order they complete.
  template <class F, class Range>
  auto imap_unordered(F&& f, Range&& items, std::size_t chunksize = 1) {
    return submit_stream<false>(std::forward<F>(f), std::forward<Range>(items), chunksize);
  }

  /// No more submissions; workers exit once every queued task is done.
  void close();
  /// Waits for the workers to exit. mp::ValueError unless close() or terminate() came first.
  void join();
  /// Stops the workers now; unfinished tasks fail with mp::ProcessError.
  void terminate();

  std::size_t processes() const { return core().processes(); }
  /// The pids of the current workers (a worker that died is replaced by a new pid).
  std::vector<pid_t> worker_pids() const { return core().worker_pids(); }

 private:
  detail::PoolCore& core() const {
    if (!core_) throw ValueError("this Pool was moved from");
    return *core_;
  }
  static std::vector<std::byte>& scratch() {
    thread_local std::vector<std::byte> buf;
    return buf;
  }
  template <class T>
  static void check_callback(const AsyncOptions& o) {
    if (!o.callback.template accepts<T>()) {
      throw ValueError("Pool: the callback's parameter type is not the task's result type");
    }
  }

  template <class R, class Runner, class In, class Fn, class Range>
  AsyncResult<std::vector<R>> submit_chunks(const Fn& f, Range& items, AsyncOptions options) {
    detail::check_task_callable<Fn>();
    check_callback<std::vector<R>>(options);
    auto [all, storage] = detail::contiguous_view<In>(items);
    const std::size_t chunksize =
        options.chunksize ? options.chunksize : detail::default_chunksize(all.size(), core().processes());
    auto state = detail::make_job_shared<detail::MapState<R>>(all.size(), chunksize, std::move(options.callback),
                                                       std::move(options.error_callback));
    if (state->chunks() == 0) return AsyncResult<std::vector<R>>(std::move(state));
    send_chunks<Runner>(state, f, all, chunksize);
    return AsyncResult<std::vector<R>>(std::move(state));
  }

  template <bool Ordered, class F, class Range>
  auto submit_stream(F&& f, Range&& items, std::size_t chunksize) {
    using In = std::ranges::range_value_t<Range>;
    using Fn = std::decay_t<F>;
    using R = detail::map_result_t<F, In>;
    detail::check_task_callable<Fn>();
    if (chunksize == 0) throw ValueError("imap: chunksize must be at least 1");
    auto [all, storage] = detail::contiguous_view<In>(items);
    auto state = detail::make_job_shared<detail::StreamState<R>>((all.size() + chunksize - 1) / chunksize, Ordered);
    if (!all.empty()) send_chunks<detail::ChunkRunner<Fn, In, false>>(state, static_cast<const Fn&>(f), all, chunksize);
    return IMapIterator<R>(std::move(state), all.size());
  }

  template <class Runner, class Fn, class In>
  void send_chunks(std::shared_ptr<detail::Job> state, const Fn& f, std::span<const In> all, std::size_t chunksize) {
    const auto job = core().add_job(state);
    auto& buf = scratch();
    std::uint32_t index = 0;
    try {
      for (std::size_t at = 0; at < all.size(); at += chunksize, ++index) {
        const std::size_t n = std::min(chunksize, all.size() - at);
        detail::build_task(buf, job, index, &Runner::run, f, detail::ChunkView<In>{all.subspan(at, n)});
        core().put_task(buf);
      }
    } catch (...) {
      // The chunks already sent run; every other one fails with this error.
      state->fail_all(std::current_exception());
      if (index == 0) core().drop_job(job);
      throw;
    }
  }

  std::unique_ptr<detail::PoolCore> core_;
};

}  // namespace mp
