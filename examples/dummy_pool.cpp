// dummy_pool — twin of seed S1's prose on multiprocessing.dummy (001:119); it has no code
// of its own.
//
// Shows: `from multiprocessing.dummy import Pool`: the Pool interface on threads, so a
// program switches between processes and threads by changing one name. One function
// template, demo<Pool>(), runs the same code with Pool = mp::Pool (worker processes) and
// with Pool = mp::dummy::Pool (threads of this process):
//   pool.map(fib, [20, 21, 22, 23])   the same results, in order, either way;
//   pool.apply(getpid)                ran in another process, or in this one;
//   pool.apply(fails)                 what a task's exception becomes: mp::RemoteError
//                                     (its type name and message, from the worker) for
//                                     processes, the std::runtime_error itself for threads.
// Then what only threads allow, since nothing leaves the process: a lambda that captures
// a local variable as the task (mp::Pool refuses one at compile time: a task travels to a
// running worker, as Python pickles it).
//
// Where this differs from Python: with the GIL, Python's threads cannot speed up
// CPU-bound work, hence the seed's advice to use processes when in doubt; C++ threads run
// in parallel, so mp::dummy::Pool speeds up CPU-bound work too. Processes remain the way
// to isolate tasks: a thread that crashes takes the whole program with it.
#include <cstdio>
#include <mp/mp.hpp>
#include <stdexcept>
#include <string>
#include <vector>

// S1-1's fib (fib_speedup.cpp).
[[gnu::noinline]] long fib(long n) {
  if (n <= 2) return 1;
  return fib(n - 1) + fib(n - 2);
}

namespace {

int getpid_task() { return mp::os::getpid(); }

int fails() { throw std::runtime_error("no result"); }

template <class T>
std::string py_list(const std::vector<T>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

template <class Pool>
void demo() {
  Pool pool(2);
  std::printf("  pool.map(fib, [20, 21, 22, 23]) -> %s\n",
              py_list(pool.map(fib, std::vector<long>{20, 21, 22, 23})).c_str());
  const int pid = pool.apply(getpid_task);
  std::printf("  pool.apply(getpid) == os.getpid(): %s\n", pid == mp::os::getpid() ? "True" : "False");
  try {
    pool.apply(fails);
  } catch (const mp::RemoteError& e) {
    std::printf("  pool.apply(fails) raised mp::RemoteError: %s\n", e.what());
  } catch (const std::runtime_error& e) {
    std::printf("  pool.apply(fails) raised std::runtime_error: %s\n", e.what());
  }
  std::fflush(stdout);
  pool.close();
  pool.join();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  std::printf("from multiprocessing import Pool: mp::Pool, worker processes\n");
  std::fflush(stdout);
  demo<mp::Pool>();

  std::printf("from multiprocessing.dummy import Pool: mp::dummy::Pool, threads\n");
  std::fflush(stdout);
  demo<mp::dummy::Pool>();

  // Threads only: the task may capture (nothing is serialized).
  const int scale = 10;
  mp::dummy::Pool pool(2);
  const auto ys = pool.map([&](int x) { return x * scale; }, std::vector<int>{1, 2, 3});
  std::printf("mp::dummy::Pool only: a capturing lambda, x * scale for [1, 2, 3] -> %s\n", py_list(ys).c_str());
  std::fflush(stdout);
  pool.close();
  pool.join();
}
