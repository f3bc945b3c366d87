// process_start_join_pids — twin of seed S4-2 (004:39-54).
//
// Shows: start() and join() with pids. The order is fixed: `Parent process <pid>.`,
// `Child Process will start.`, `Run child process test (<child pid>)...`,
// `Child Process end.` — join() waits for the child, so the end line comes last.
//
// Where this differs from the seed: nothing but the language.
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

void run_proc(const std::string& name) {
  std::printf("Run child process %s (%d)...\n", name.c_str(), mp::os::getpid());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  std::printf("Parent process %d.\n", mp::os::getpid());
  mp::Process p(run_proc, "test");
  std::printf("Child Process will start.\n");
  std::fflush(stdout);
  p.start();  // start the process
  p.join();   // wait for it: without join the end line could come before the child's
  std::printf("Child Process end.\n");
  std::fflush(stdout);
}
