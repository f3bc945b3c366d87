// bench/process_start_join.cpp — workload 6 of the peers: Process(target=noop)
// .start(); .join(), timed together; 3 warm-up starts, then 200 (fork) / 100
// (forkserver) / 50 (spawn) timed ones, as CPython's peers; median in ms.
// Peers: cpython_fork/_spawn/_forkserver, c_fork_waitpid, c_posix_spawn.
#include <string>
#include <vector>

#include "common.hpp"
#include "mp/context.hpp"
#include "mp/process.hpp"

namespace bench {
namespace {

void noop() {}

struct Method {
  const char* impl;
  mp::StartMethod method;
  int reps;
};
constexpr Method kMethods[] = {
    {"mp_fork", mp::StartMethod::fork, 200},
    {"mp_spawn", mp::StartMethod::spawn, 50},
    {"mp_forkserver", mp::StartMethod::forkserver, 100},
};
constexpr int kWarmup = 3;

void run(const std::string& impl) {
  const Method* m = nullptr;
  for (const auto& x : kMethods)
    if (impl == x.impl) m = &x;
  if (!m) throw Failure("unknown impl " + impl);

  const mp::Context ctx = mp::get_context(m->method);
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(m->reps));
  for (int i = 0; i < kWarmup + m->reps; ++i) {
    const std::uint64_t t0 = now_ns();
    std::optional<int> code;
    {
      mp::Process p = ctx.Process(noop);
      p.start();
      p.join();
      code = p.exitcode();
    }
    const std::uint64_t dt = now_ns() - t0;
    if (code != 0) throw Failure("exitcode " + (code ? std::to_string(*code) : std::string("none")));
    if (i >= kWarmup) ms.push_back(static_cast<double>(dt) / 1e6);
  }
  emit("process_start_join", impl, "ms", median(ms),
       Params()
           .add("reps", m->reps)
           .add("warmup", kWarmup)
           .add("start_method", std::string(mp::to_string(m->method)))
           .add("p10_ms", sorted_at(ms, 1, 10))
           .add("stat", "median")
           .add("child", "mp::Process(noop), noop a plain function"));
}

}  // namespace

Workload process_start_join_workload() {
  return {"process_start_join", {"mp_fork", "mp_spawn", "mp_forkserver"}, "ms", run};
}

}  // namespace bench
