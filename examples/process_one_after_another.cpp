// process_one_after_another — twin of seed S0-1 (000:18-40).
//
// Shows: choosing a start method once with mp::set_start_method (here spawn, so the
// tour shows a non-default method at work), then one child per item, each started and
// joined before the next one starts. Each child sleeps 1 s, then prints
// `PID-<its own pid>:  <item>`, so the order is always A, B, C, D and the whole run
// takes about 4 s.
//
// Where this follows real Python rather than the seed (EXAMPLES.md note 1): the seed
// calls set_start_method twice ('spawn', then 'fork'); CPython raises
// "RuntimeError: context has already been set" on the second call. The twin sets the
// method once, and shows that a second call is refused (mp::ValueError).
// Under spawn the target is a plain function and its argument a std::string, which is
// what can cross to a freshly exec'd child.
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <string>
#include <thread>

namespace {

void func(const std::string& message) {
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // print('PID-{}: '.format(multiprocessing.current_process().pid), message)
  const pid_t pid = *mp::current_process().pid();
  std::printf("PID-%d:  %s\n", static_cast<int>(pid), message.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::set_start_method(mp::StartMethod::spawn);
  try {
    mp::set_start_method(mp::StartMethod::fork);  // the seed's second call
  } catch (const mp::ValueError& e) {
    std::printf("second set_start_method refused, as in Python: %s\n", e.what());
  }
  std::printf("start method: %s\n", std::string(mp::to_string(mp::get_start_method())).c_str());
  std::fflush(stdout);

  const auto t0 = std::chrono::steady_clock::now();
  for (const char* item : {"A", "B", "C", "D"}) {
    mp::Process p(func, item);
    p.start();
    p.join();  // blocks until this child ends, so the next one starts after it
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
  std::printf("4 children, one after another: %.2f s\n", took.count());
  std::fflush(stdout);
}
