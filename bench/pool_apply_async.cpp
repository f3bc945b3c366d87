// bench/pool_apply_async.cpp — workload 5 of the peers: 100,000 tasks f(x) = x * x
// submitted one by one to 2 worker processes, then every result collected, in tasks/s
// (higher is better). Timed from the first submit to the last result, the pool already
// started (construct + a first map of 2 items, as the peers' make_pool; its time is
// params.pool_start_ms); the sum of the results is checked. One run, as the peers. The
// pool is shut down after the measurement (close() + join() / shutdown(true)), untimed.
//
//   mp_pool_apply_async  mp::Pool(2): apply_async(sq, i) for i in 0 .. 99,999, then
//                        .get() on every AsyncResult, in order
//   mp_executor_submit   mp::ProcessPoolExecutor(2): submit(sq, i), then .result() on
//                        every Future, in order
//
// sq(int) returns std::int64_t, as in pool_map_trivial.cpp. Default start method (fork).
// Peers: cpython_pool_apply_async, cpython_executor_submit, loky_submit,
// billiard_apply_async, mpi4py_futures_submit (50,000 tasks).
#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"
#include "mp/futures.hpp"
#include "mp/pool.hpp"

namespace bench {
namespace {

constexpr int kTasks = 100'000;
constexpr std::size_t kWorkers = 2;

std::int64_t sq(int x) { return std::int64_t{x} * x; }

double seconds_since(std::uint64_t t0) { return static_cast<double>(now_ns() - t0) / 1e9; }

/// What one impl measured.
struct Result {
  double start_ms = 0;
  double seconds = 0;
  std::int64_t total = 0;  // the sum of the results
};

void run(const std::string& impl) {
  Result r;
  std::uint64_t t0 = now_ns();
  if (impl == "mp_pool_apply_async") {
    mp::Pool pool(kWorkers);
    const auto first = pool.map(sq, std::vector<int>{0, 1});
    const double start_ms = seconds_since(t0) * 1e3;
    if (first != std::vector<std::int64_t>{0, 1}) throw Failure("the first map of 2 items returned a wrong result");
    t0 = now_ns();
    std::vector<mp::AsyncResult<std::int64_t>> rs;
    rs.reserve(kTasks);
    for (int i = 0; i < kTasks; ++i) rs.push_back(pool.apply_async(sq, i));
    for (const auto& x : rs) r.total += x.get();
    r.seconds = seconds_since(t0);
    r.start_ms = start_ms;
    pool.close();
    pool.join();
  } else if (impl == "mp_executor_submit") {
    mp::ProcessPoolExecutor ex(kWorkers);
    std::vector<std::int64_t> first;
    for (std::int64_t v : ex.map(sq, std::vector<int>{0, 1})) first.push_back(v);
    const double start_ms = seconds_since(t0) * 1e3;
    if (first != std::vector<std::int64_t>{0, 1}) throw Failure("the first map of 2 items returned a wrong result");
    t0 = now_ns();
    std::vector<mp::Future<std::int64_t>> fs;
    fs.reserve(kTasks);
    for (int i = 0; i < kTasks; ++i) fs.push_back(ex.submit(sq, i));
    for (const auto& f : fs) r.total += f.result();
    r.seconds = seconds_since(t0);
    r.start_ms = start_ms;
    ex.shutdown(true);
  } else {
    throw Failure("unknown impl " + impl);
  }
  std::int64_t expect = 0;
  for (std::int64_t i = 0; i < kTasks; ++i) expect += i * i;
  if (r.total != expect) throw Failure("wrong sum of results: " + std::to_string(r.total));
  emit("pool_apply_async", impl, "tasks_per_s", kTasks / r.seconds,
       Params()
           .add("tasks", kTasks)
           .add("workers", kWorkers)
           .add("seconds", r.seconds)
           .add("pool_start_ms", r.start_ms)
           .add("task", "std::int64_t sq(int x)")
           .add("start_method", std::string(mp::to_string(mp::get_start_method()))));
}

}  // namespace

Workload pool_apply_async_workload() {
  return {"pool_apply_async", {"mp_pool_apply_async", "mp_executor_submit"}, "tasks_per_s", run};
}

}  // namespace bench
