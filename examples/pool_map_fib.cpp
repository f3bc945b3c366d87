// pool_map_fib — twin of seed S1-2 (001:110-113).
//
// Shows: the work of S1-1's hasmultiprocess() (fib(35) in 2 processes, see
// fib_speedup.cpp) done through a pool: mp::Pool(2).map(fib, [35] * 2) sends one fib(35)
// to each of 2 worker processes and returns the results in order, as Python's map does.
// The program prints the list, `[9227465, 9227465]`, and the time it took with the
// seed's `COST: <seconds>` format.
//
// Where this differs from the seed: the seed prints nothing (its result is dropped); a
// twin may print the list or the time (EXAMPLES.md, S1-2), and this one prints both.
// fib is S1-1's, defined as in fib_speedup.cpp (noinline, its input read from a
// volatile, so the work is really done); compiled C++ computes fib(35) in tens of
// milliseconds where CPython takes seconds, so the time is small. The seed has no
// `if __name__ == '__main__'` guard, so it only works under fork (EXAMPLES.md note 2):
// the pool uses fork, the default. freeze_support() is called first, as in every twin.
// The pool is closed and joined at the end (the seed leaves that to interpreter exit).
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <vector>

// S1-1's fib (fib_speedup.cpp). noinline, and its input is volatile (g_n below): the
// compiler can neither inline fib nor fold it into a constant, so it really does the work.
[[gnu::noinline]] long fib(long n) {
  if (n <= 2) return 1;
  return fib(n - 1) + fib(n - 2);
}

namespace {

volatile long g_n = 35;  // volatile: the input is not a compile-time constant

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Pool pool(2);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<long> results = pool.map(fib, std::vector<long>(2, static_cast<long>(g_n)));  // pool.map(fib, [35] * 2)
  const std::chrono::duration<double> cost = std::chrono::steady_clock::now() - start;

  std::printf("pool.map(fib, [%ld] * 2) -> [", static_cast<long>(g_n));
  for (std::size_t i = 0; i < results.size(); ++i) std::printf("%s%ld", i ? ", " : "", results[i]);
  std::printf("]\n");
  std::printf("COST: %.6f\n", cost.count());
  std::fflush(stdout);
  pool.close();
  pool.join();
}
