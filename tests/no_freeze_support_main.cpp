// A program that forgets mp::freeze_support(): its spawned child must refuse to run
// main() on (tests/process_crash_test.cpp runs this).
#include <cstdio>
#include <mp/mp.hpp>

void noop() {}

int main() {
  mp::Process p(mp::ProcessOptions{.start_method = mp::StartMethod::spawn}, noop);
  p.start();
  p.join();
  std::printf("child exitcode: %d\n", p.exitcode().value_or(-999));
  return 0;
}
