// process_join_blocks — twin of seed S2-2 (002:41-59).
//
// Shows: parent and child run at the same time, and join() blocks. The child sleeps
// 5 s, then prints one line (the seed's "子进程执行事件", "the child process does its
// work"). Meanwhile the parent sleeps 1 s and prints `==========rrrrr========`, then
// join() blocks until the child has ended, and only then does the parent print its
// `=================================` line. The order is fixed: rrrrr, the child's
// line, =====. About 5 s.
//
// Where this differs from the seed: nothing but the language. The seed has no main
// guard (EXAMPLES.md note 2); the twin runs under fork, the default, as the seed must.
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <thread>

namespace {

void fun() {
  std::this_thread::sleep_for(std::chrono::seconds(5));
  std::printf("子进程执行事件 (the child process does its work)\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Process p(fun);  // create the process object
  p.start();           // start the process
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::printf("==========rrrrr========\n");
  std::fflush(stdout);
  p.join();  // reap the process: blocks until the child has ended
  std::printf("=================================\n");
  std::fflush(stdout);
}
