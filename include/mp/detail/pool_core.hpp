// mp/detail/pool_core.hpp — the machinery under mp::Pool and mp::ProcessPoolExecutor:
// worker processes fed by shared-memory queues, a result thread, a supervisor thread.
//
// Design (CPython's pool.py, rebuilt on mp's own parts):
//  - Tasks go to the workers through one shared-memory queue (shm_queue.hpp) and results
//    come back through another; put() writes into the ring itself, so there is no task
//    handler thread. A task message is [TaskHeader][runner][callable][input], where the
//    runner is the code identity of a function template instance that knows the
//    callable's and input's types (as a Process target does, callable.hpp): the worker
//    rebuilds and runs anything the caller could ship. A map chunk is one message that
//    carries many items, so chunks of ints move as memory, not one message per item.
//  - A result thread takes results and hands them to their job (apply, map, imap...),
//    which runs the callbacks (in this thread, as Python's result handler does).
//  - A supervisor thread polls the workers' sentinels (pidfds). Every worker has a slot
//    in shared memory saying which task it runs, written while the worker still holds the
//    queue's reader lock (so a task is never taken without being claimed); when a
//    worker dies, its task alone fails, with the signal or exit code, and a new worker
//    takes its place. Per-task time limits and memory caps are enforced from there too.
//  - Workers are daemons: they die with the process that owns the pool (PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <type_traits>
#include <vector>

#include "mp/context.hpp"
#include "mp/detail/callable.hpp"
#include "mp/detail/codec.hpp"
#include "mp/detail/code_identity.hpp"

namespace mp::detail {

/// The first bytes of a task message.
struct TaskHeader {
  std::uint64_t job = 0;    // 0: "stop" (a worker that takes it exits)
  std::uint32_t index = 0;  // which part of the job (a map's chunk)
  std::uint32_t flags = 0;
};

/// The first bytes of a result message; the payload follows (the result, or an error).
struct ResultHeader {
  std::uint64_t job = 0;
  std::uint32_t index = 0;
  std::uint32_t status = 0;  // ResultStatus
};

enum class ResultStatus : std::uint32_t { ok = 0, raised = 1 };

/// Reads a task's callable and input from `in`, runs it, writes its result to `out`.
using TaskRunner = void (*)(InputArchive& in, OutputArchive& out);

/// The void result of a task (travels as nothing).
struct Unit {
  template <class A>
  void serialize(A&) {}
};
template <class R>
using result_t = std::conditional_t<std::is_void_v<R>, Unit, R>;

/// Calls f with a stored tuple of arguments; a void result becomes Unit.
template <class F, class Tuple>
auto invoke_stored(F& f, Tuple& args) {
  return std::apply(
      [&f](auto&... a) {
        if constexpr (std::is_invocable_v<F&, decltype(a)...>) {
          using R = std::invoke_result_t<F&, decltype(a)...>;
          if constexpr (std::is_void_v<R>) {
            std::invoke(f, a...);
            return Unit{};
          } else {
            return std::invoke(f, a...);
          }
        } else {
          using R = std::invoke_result_t<F&, decltype(as_call_arg(a))...>;
          if constexpr (std::is_void_v<R>) {
            std::invoke(f, as_call_arg(a)...);
            return Unit{};
          } else {
            return std::invoke(f, as_call_arg(a)...);
          }
        }
      },
      args);
}

/// f(args...) for one task (apply, submit).
template <class F, class Args>
struct ApplyRunner {
  static void run(InputArchive& in, OutputArchive& out) {
    F f = load_callable<F>(in);
    Args args = tuple_for_load<Args>::make();
    load_value(in, args);
    auto r = invoke_stored(f, args);
    save_value(out, r);
  }
};

/// f(x) for every x of a chunk (map, imap); with Star, f(args...) for every tuple.
template <class F, class In, bool Star>
struct ChunkRunner {
  static void run(InputArchive& in, OutputArchive& out) {
    F f = load_callable<F>(in);
    std::vector<In> items;
    load_value(in, items);
    using R = decltype(call(f, items[0]));
    std::vector<R> results;
    results.reserve(items.size());
    for (auto& x : items) results.push_back(call(f, x));
    save_value(out, results);
  }
  static auto call(F& f, In& x) {
    if constexpr (Star) {
      return invoke_stored(f, x);
    } else {
      auto args = std::forward_as_tuple(x);
      return invoke_stored(f, args);
    }
  }
};

/// The code identity of `runner`, serialized once per runner.
const std::vector<std::byte>& runner_identity(TaskRunner runner);

/// A submitted job, seen from the result thread: parts arrive (or fail) by index.
class Job {
 public:
  virtual ~Job() = default;
  /// A part's result, to be read from `ar`. May throw (the part then fails with it).
  virtual void deliver(std::uint32_t index, InputArchive& ar) = 0;
  /// A part failed (its task raised, its worker died, the pool ended).
  virtual void fail(std::uint32_t index, std::exception_ptr error) = 0;
  /// Every part arrived or failed: the pool forgets the job.
  virtual bool finished() const = 0;
  /// Fails every part not settled yet (terminate, a broken pool, tasks that could not be
  /// sent).
  virtual void fail_all(std::exception_ptr error) = 0;
};

/// An initializer with its arguments, run once in every worker before its first task.
using InitializerPtr = std::shared_ptr<Target>;

enum class DeathError { process_error, broken_process_pool };

struct PoolConfig {
  std::size_t processes = 0;
  InitializerPtr initializer;
  std::size_t maxtasksperchild = 0;
  std::optional<StartMethod> start_method;
  std::optional<std::chrono::nanoseconds> task_timeout;
  std::size_t max_memory_per_child = 0;  // bytes of RSS; 0 = no cap
  DeathError death_error = DeathError::process_error;
  const char* what = "Pool";             // for messages
  /// Tasks can be withdrawn until a worker takes them (executors' Future::cancel): a
  /// table in shared memory where a worker claims each task before running it.
  bool cancellable = false;
  /// Called (in the result thread) after every task settles: (tasks settled, tasks sent).
  std::function<void(std::size_t, std::size_t)> on_progress;
};

struct PoolShared;

/// The process pool proper. Thread-safe. Created by Pool and ProcessPoolExecutor.
class PoolCore {
 public:
  /// Starts the workers and the two threads. Throws what starting a process throws.
  explicit PoolCore(PoolConfig config);
  ~PoolCore();
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  /// Registers a job with `parts` parts; returns its id. Throws mp::ValueError once the
  /// pool is closed.
  std::uint64_t add_job(std::shared_ptr<Job> job);
  /// Sends one task message (built by build_task). Blocks while the task ring is full.
  void put_task(std::span<const std::byte> message);
  /// Forgets a job whose tasks could not all be sent (the caller fails it).
  void drop_job(std::uint64_t id);

  /// No more tasks; workers exit once the queued ones are done.
  void close();
  /// After close(): waits until every worker has exited and every job finished.
  /// After terminate(): waits until every worker is gone.
  void join();
  /// Stops at once: workers killed, unfinished jobs failed.
  void terminate();

  /// cancellable pools: withdraws job `id`'s task if no worker has taken it yet (the
  /// worker will skip it). False if it runs or ran.
  bool try_cancel(std::uint64_t id);
  /// cancellable pools: a worker has taken job `id`'s task (it runs or ran).
  bool taken(std::uint64_t id) const;

  bool closed() const noexcept;
  std::size_t processes() const noexcept;
  /// Pids of the live workers (tests kill them).
  std::vector<pid_t> worker_pids() const;

 private:
  std::unique_ptr<PoolShared> s_;
};

/// A slice of a map's input, written in the wire form of std::vector<In> (what
/// ChunkRunner reads) straight from the caller's items: no intermediate vector.
template <class In>
struct ChunkView {
  std::span<const In> items;
  void write_to(OutputArchive& ar) const {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(items.size())));
    if constexpr (std::is_arithmetic_v<In> && !std::is_same_v<In, bool>) {
      ar.saveBinary(items.data(), items.size_bytes());
    } else {
      for (const auto& x : items) save_value(ar, x);
    }
  }
};

/// A range's items as a contiguous span: the range itself when it is contiguous (no
/// copy), else a vector made from it (the second member, which keeps the span valid).
template <class In, class Range>
std::pair<std::span<const In>, std::vector<In>> contiguous_view(Range& items) {
  if constexpr (std::ranges::contiguous_range<Range> && std::ranges::sized_range<Range> &&
                std::is_same_v<std::remove_cv_t<std::ranges::range_value_t<Range>>, In>) {
    return {std::span<const In>(std::ranges::data(items), std::ranges::size(items)), {}};
  } else {
    std::vector<In> v(std::ranges::begin(items), std::ranges::end(items));
    std::span<const In> s(v.data(), v.size());
    return {s, std::move(v)};  // moving a vector keeps its buffer: the span stays valid
  }
}

/// Builds a task message: header, runner identity, callable, input.
template <class F, class Input>
void build_task(std::vector<std::byte>& buf, std::uint64_t job, std::uint32_t index, TaskRunner runner, const F& f,
                const Input& input) {
  buf.clear();
  OutputArchive ar(buf);
  const TaskHeader h{job, index, 0};
  ar.saveBinary(&h, sizeof h);
  const auto& id = runner_identity(runner);
  ar.saveBinary(id.data(), id.size());
  save_callable(ar, f);
  if constexpr (requires { input.write_to(ar); }) {
    input.write_to(ar);
  } else {
    save_value(ar, input);
  }
}

/// Throws the error a result message carries (mp::RemoteError).
[[noreturn]] void throw_remote_error(InputArchive& ar);

}  // namespace mp::detail
