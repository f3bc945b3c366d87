// bench/fib_speedup.cpp — workload 9 of the peers: naive recursive fib(n) twice in a
// row (serial) vs once in each of 2 worker processes (parallel); median of 3 of each;
// speedup = serial / parallel (2 is ideal on 2 cores). n = 40 as the `c` peer
// (MP_BENCH_FIB_N overrides).
//
//   mp       2 mp::Process children started with fork, each sending its result back
//            through a POSIX pipe (start and join included). The pipe is a plain pipe(2)
//            made before start(), inherited by the fork child, whose target is a lambda
//            capturing the write end (as the `c` peer).
//   mp_pool  mp::Pool(2).map(fib, {n, n}) (default chunksize: 1, one call per worker),
//            pool start and shutdown included: construct, map, close(), join() are timed
//            together, as the Process impl times start and join.
#include <unistd.h>

#include <string>
#include <vector>

#include "common.hpp"
#include "mp/context.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"

namespace bench {
namespace {

// noipa: keep the compiler from proving fib() pure and reusing one result for the
// second call (or for the children's calls after fork), as c_peers.c does.
MP_BENCH_NOIPA long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

constexpr int kReps = 3;

/// Both fib(n) in 2 mp::Process children, results through pipes; start and join included.
/// Returns the seconds; `got` the children's results.
double parallel_processes(const mp::Context& ctx, int n, long got[2]) {
  const std::uint64_t t0 = now_ns();
  int read_end[2] = {-1, -1};
  std::vector<mp::Process> ps;
  ps.reserve(2);
  for (int k = 0; k < 2; ++k) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw Failure("pipe2 failed");
    const int w = fds[1];
    ps.push_back(ctx.Process([w, n] {
      const long v = fib(n);
      if (!write_full(w, &v, sizeof v)) ::_exit(3);
    }));
    ps.back().start();
    ::close(w);
    read_end[k] = fds[0];
  }
  bool ok = true;
  for (int k = 0; k < 2; ++k) {
    ok = read_full(read_end[k], &got[k], sizeof got[k]) && ok;
    ::close(read_end[k]);
  }
  for (auto& p : ps) p.join();
  const double dt = static_cast<double>(now_ns() - t0) / 1e9;
  if (!ok) throw Failure("a child sent no result");
  for (auto& p : ps)
    if (p.exitcode() != 0) throw Failure("a fib child ended with exitcode " + std::to_string(p.exitcode().value_or(-999)));
  return dt;
}

/// Both fib(n) through mp::Pool(2).map; pool construction, close() and join() included.
double parallel_pool(int n, long got[2]) {
  const std::uint64_t t0 = now_ns();
  mp::Pool pool(2);  // the default start method: fork
  const std::vector<long> out = pool.map(fib, std::vector<int>{n, n});
  pool.close();
  pool.join();
  const double dt = static_cast<double>(now_ns() - t0) / 1e9;
  if (out.size() != 2) throw Failure("Pool.map returned " + std::to_string(out.size()) + " results");
  got[0] = out[0];
  got[1] = out[1];
  return dt;
}

void run(const std::string& impl) {
  const bool pool = impl == "mp_pool";
  if (impl != "mp" && !pool) throw Failure("unknown impl " + impl);
  const int n = static_cast<int>(env_long("MP_BENCH_FIB_N", 40));
  volatile int vn = n;  // read once per call: no common subexpression across calls either
  const mp::Context ctx = mp::get_context(mp::StartMethod::fork);

  std::vector<double> ser, par;
  for (int r = 0; r < kReps; ++r) {
    const std::uint64_t t0 = now_ns();
    const long a = fib(vn);
    const long b = fib(vn);
    ser.push_back(static_cast<double>(now_ns() - t0) / 1e9);
    if (a != b) throw Failure("serial fib results differ");

    long got[2] = {0, 0};
    par.push_back(pool ? parallel_pool(vn, got) : parallel_processes(ctx, n, got));
    if (got[0] != a || got[1] != a) throw Failure("wrong fib from a child");
  }

  const double s = median(ser), p = median(par);
  auto params = [&] {
    return Params()
        .add("n", n)
        .add("calls", 2)
        .add("reps", kReps)
        .add("stat", "median")
        .add("parallel", pool ? "mp::Pool(2).map(fib, {n, n}) (fork), pool start, close and join included"
                              : "2 x mp.Process (fork), result via pipe")
        .add("start_method", "fork");
  };
  emit("fib_speedup", impl, "serial_s", s, params());
  emit("fib_speedup", impl, "parallel_s", p, params());
  emit("fib_speedup", impl, "speedup_x", s / p, params());
}

}  // namespace

Workload fib_speedup_workload() { return {"fib_speedup", {"mp", "mp_pool"}, "speedup_x", run}; }

}  // namespace bench
