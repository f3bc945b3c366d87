// bench/shared_value_locked_incr.cpp — workload 8 of the peers: 2 processes each do
// 500,000 locked increments of one shared int, in increments/s (higher is better).
//
//   mp_value  mp::Value<int> (its RLock in the same shared block, as Python's Value('i')):
//             { std::lock_guard g(v.get_lock()); v.value() += 1; } 500,000 times in
//             each of 2 daemon mp::Process children (fork)
//
// Protocol, as cpython_value: each child releases an mp::Semaphore(0) ("ready") and waits
// on an mp::Event ("go"); the parent acquires the semaphore twice, takes t0 and sets the
// event; each child writes its end time (CLOCK_MONOTONIC, system-wide) into an
// mp::RawArray<std::uint64_t>(2) after its last increment; the time is from t0 to the
// later end. params.exact: the final value is 1,000,000 (in every rep). As the C peers,
// 5 repetitions (2 new children each, the value reset to 0), median; cpython_value runs
// once.
// Peers: cpython_value, c_pthread_robust_mutex_shm (process-shared robust pthread mutex,
// median of 5), c_atomic_shm (the limit: atomic fetch_add, median of 5).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common.hpp"
#include "mp/context.hpp"
#include "mp/process.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"

namespace bench {
namespace {

constexpr int kPerProcess = 500'000;
constexpr int kProcesses = 2;
constexpr int kReps = 5;

void incr(mp::Value<int> v, mp::Semaphore ready, mp::Event go, mp::RawArray<std::uint64_t> ends, int idx) {
  ready.release();
  go.wait();
  for (int i = 0; i < kPerProcess; ++i) {
    std::lock_guard g(v.get_lock());
    v.value() += 1;
  }
  ends[static_cast<std::size_t>(idx)] = now_ns();
}

void run(const std::string& impl) {
  if (impl != "mp_value") throw Failure("unknown impl " + impl);
  mp::Value<int> v(0);
  mp::Semaphore ready(0);
  mp::Event go;
  mp::RawArray<std::uint64_t> ends(kProcesses);
  const mp::ProcessOptions options{.name = "incr", .daemon = true, .start_method = {}};

  std::vector<double> rates, seconds;
  bool exact = true;
  int final_value = 0;
  for (int r = 0; r < kReps; ++r) {
    v.value() = 0;
    go.clear();
    ends[0] = ends[1] = 0;
    Child a(mp::Process(options, incr, v, ready, go, ends, 0));
    Child b(mp::Process(options, incr, v, ready, go, ends, 1));
    for (int k = 0; k < kProcesses; ++k)
      if (!ready.acquire(std::chrono::seconds(30))) throw Failure("the children did not start within 30 s");
    const std::uint64_t t0 = now_ns();
    go.set();
    a.finish(std::chrono::seconds(60));
    b.finish(std::chrono::seconds(60));
    const std::uint64_t end = std::max(ends[0], ends[1]);
    if (ends[0] == 0 || ends[1] == 0 || end < t0) throw Failure("a child wrote no end time");
    const double dt = static_cast<double>(end - t0) / 1e9;
    seconds.push_back(dt);
    rates.push_back(kProcesses * kPerProcess / dt);
    final_value = v.value();
    exact = exact && final_value == kProcesses * kPerProcess;
  }
  emit("shared_value_locked_incr", impl, "incr_per_s", median(rates),
       Params()
           .add("processes", kProcesses)
           .add("increments_per_process", kPerProcess)
           .add("reps", kReps)
           .add("stat", "median")
           .add("final_value", final_value)
           .add("exact", exact)
           .add("seconds", median(seconds))
           .add("best", *std::max_element(rates.begin(), rates.end()))
           .add("lock", "mp::Value<int>'s get_lock() (an mp::RLock), std::lock_guard")
           .add("go", "mp::Semaphore ready (x2), then mp::Event go")
           .add("start_method", std::string(mp::to_string(mp::get_start_method()))));
  if (!exact) throw Reported("final value " + std::to_string(final_value) + " != 1000000");
}

}  // namespace

Workload shared_value_locked_incr_workload() {
  return {"shared_value_locked_incr", {"mp_value"}, "incr_per_s", run};
}

}  // namespace bench
