// bench/pool_map_trivial.cpp — workload 4 of the peers: map f(x) = x * x over 1,000,000
// ints with 2 worker processes, median of 3 maps, in tasks/s (higher is better). Pool
// start (construct + a first map of 2 items, as the peers' make_pool) is the separate
// `pool_start_ms` line and is not in tasks_per_s. Each map is timed from the call to the
// last result in the parent's hands (a std::vector, as Python's list); the result's size
// and last value ((N - 1)^2) are checked. The pool is shut down after the measurement
// (close() + join() / shutdown(true)), untimed.
//
//   mp_pool_map      mp::Pool(2).map(sq, v): default chunksize (N / (4 * 2) = 125,000,
//                    Python's), as cpython_pool_map
//   mp_executor_map  mp::ProcessPoolExecutor(2).map(sq, v, std::nullopt, 1000): chunksize
//                    1000, as cpython_executor_map; the results (an iterator over futures)
//                    collected into a vector, as list(map(...))
//
// v is a std::vector<int> of 0 .. 999,999; sq(int) returns std::int64_t, because
// 999,999^2 does not fit an int (Python's ints do not overflow and the peers check the
// last value exactly). Default start method (fork).
// Peers: cpython_pool_map, cpython_executor_map, loky_map, billiard_pool_map.
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "mp/futures.hpp"
#include "mp/pool.hpp"

namespace bench {
namespace {

constexpr int kTasks = 1'000'000;
constexpr int kReps = 3;
constexpr std::size_t kWorkers = 2;
constexpr std::size_t kExecutorChunk = 1000;

std::int64_t sq(int x) { return std::int64_t{x} * x; }

/// What one impl measured.
struct Result {
  double start_ms = 0;
  std::vector<double> rates;  // tasks/s, one per map
};

/// Checks one map's output: N results, the last one (N - 1)^2.
void check(const std::vector<std::int64_t>& out, const char* what) {
  constexpr std::int64_t last = std::int64_t{kTasks - 1} * (kTasks - 1);
  if (out.size() != static_cast<std::size_t>(kTasks) || out.back() != last) {
    throw Failure(std::string(what) + ": wrong result (size " + std::to_string(out.size()) + ")");
  }
}

double seconds_since(std::uint64_t t0) { return static_cast<double>(now_ns() - t0) / 1e9; }

Result pool_map(const std::vector<int>& xs) {
  Result r;
  std::uint64_t t0 = now_ns();
  mp::Pool pool(kWorkers);
  const auto first = pool.map(sq, std::vector<int>{0, 1});
  r.start_ms = seconds_since(t0) * 1e3;
  if (first != std::vector<std::int64_t>{0, 1}) throw Failure("the first map of 2 items returned a wrong result");
  for (int i = 0; i < kReps; ++i) {
    t0 = now_ns();
    const std::vector<std::int64_t> out = pool.map(sq, xs);
    const double dt = seconds_since(t0);
    check(out, "Pool.map");
    r.rates.push_back(kTasks / dt);
  }
  pool.close();
  pool.join();
  return r;
}

/// list(ex.map(...)): the executor's results, in order, in a vector.
template <class It>
std::vector<std::int64_t> collect(It&& results) {
  std::vector<std::int64_t> out;
  for (std::int64_t v : results) out.push_back(v);
  return out;
}

Result executor_map(const std::vector<int>& xs) {
  Result r;
  std::uint64_t t0 = now_ns();
  mp::ProcessPoolExecutor ex(kWorkers);
  const auto first = collect(ex.map(sq, std::vector<int>{0, 1}));
  r.start_ms = seconds_since(t0) * 1e3;
  if (first != std::vector<std::int64_t>{0, 1}) throw Failure("the first map of 2 items returned a wrong result");
  for (int i = 0; i < kReps; ++i) {
    t0 = now_ns();
    const std::vector<std::int64_t> out = collect(ex.map(sq, xs, std::nullopt, kExecutorChunk));
    const double dt = seconds_since(t0);
    check(out, "ProcessPoolExecutor.map");
    r.rates.push_back(kTasks / dt);
  }
  ex.shutdown(true);
  return r;
}

void run(const std::string& impl) {
  std::vector<int> xs(kTasks);
  std::iota(xs.begin(), xs.end(), 0);
  Result r;
  Params map_params;
  map_params.add("tasks", kTasks).add("workers", kWorkers);
  if (impl == "mp_pool_map") {
    r = pool_map(xs);
    map_params.add("chunksize", "default (" + std::to_string(mp::detail::default_chunksize(kTasks, kWorkers)) + ")");
  } else if (impl == "mp_executor_map") {
    r = executor_map(xs);
    map_params.add("chunksize", kExecutorChunk);
  } else {
    throw Failure("unknown impl " + impl);
  }
  const std::string method(mp::to_string(mp::get_start_method()));
  map_params.add("reps", kReps)
      .add("stat", "median")
      .add("best", *std::max_element(r.rates.begin(), r.rates.end()))
      .add("task", "std::int64_t sq(int x) over std::vector<int> 0 .. 999,999")
      .add("start_method", method);
  emit("pool_map_trivial", impl, "tasks_per_s", median(r.rates), std::move(map_params));
  emit("pool_map_trivial", impl, "pool_start_ms", r.start_ms,
       Params()
           .add("workers", kWorkers)
           .add("note", "construct pool + first map of 2 items")
           .add("start_method", method));
}

}  // namespace

Workload pool_map_trivial_workload() {
  return {"pool_map_trivial", {"mp_pool_map", "mp_executor_map"}, "tasks_per_s", run};
}

}  // namespace bench
