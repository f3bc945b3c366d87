// fib_speedup — twin of seed S1-1 (001:57-98).
//
// Shows: a CPU-bound speed-up from processes. A timing wrapper (the seed's @profile
// decorator) prints `COST: <seconds>` twice: first for fib(35) computed twice in this
// process, then for fib(35) computed once in each of 2 child processes running at the
// same time. The twin also prints the speed-up, serial / parallel (about 2 on an idle
// machine with 2 or more CPUs; less on a busy or single-CPU one).
//
// Where this differs from the seed: compiled C++ computes fib(35) in a few tens of
// milliseconds where CPython takes seconds (the seed: 5.35 s vs 3.75 s), so the times
// are small and the speed-up is noisier; pass a larger n (e.g. `fib_speedup 40`) to
// see it more clearly. freeze_support() is called first, as in every twin (EXAMPLES.md
// note 6: in Python it only matters for frozen Windows executables; in mp it is what
// lets a spawn/forkserver child run). The children's fib results are thrown away, as
// in the seed (Process::join() returns no result).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mp/mp.hpp>
#include <vector>

// noinline, and its input is volatile (g_n below): the compiler can neither inline fib
// nor fold it into a constant, so it really does the work.
[[gnu::noinline]] long fib(long n) {
  if (n <= 2) return 1;
  return fib(n - 1) + fib(n - 2);
}

namespace {

volatile long g_n = 35;     // volatile: the input is not a compile-time constant
volatile long g_sink = 0;   // and the results are not dropped

// The seed's @profile decorator: runs f and prints how long it took.
template <class F>
double profile(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  const std::chrono::duration<double> cost = std::chrono::steady_clock::now() - start;
  std::printf("COST: %.6f\n", cost.count());
  std::fflush(stdout);
  return cost.count();
}

void nomultiprocess() {
  g_sink = fib(g_n);
  g_sink = fib(g_n);
}

void hasmultiprocess() {
  std::vector<mp::Process> jobs;
  for (int i = 0; i < 2; ++i) {
    jobs.emplace_back(fib, static_cast<long>(g_n));  // Process(target=fib, args=(35,))
    jobs.back().start();
  }
  for (auto& p : jobs) p.join();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) g_n = std::atol(argv[1]);

  std::printf("fib(%ld) twice, serially:\n", static_cast<long>(g_n));
  std::fflush(stdout);
  const double serial = profile(nomultiprocess);
  std::printf("fib(%ld) in 2 processes at once:\n", static_cast<long>(g_n));
  std::fflush(stdout);
  const double parallel = profile(hasmultiprocess);
  std::printf("speed-up: %.2fx on %d CPU(s)\n", parallel > 0 ? serial / parallel : 0.0, mp::cpu_count());
  std::fflush(stdout);
}
