// active_children — twin of seed S4-3 (004:60-78).
//
// Shows: several children at once, cpu_count() and active_children(). The parent
// prints `Parent process <pid>.`, then `Child Process will start.` before starting
// each of 5 children; child i sleeps i s, then prints
// `Run child process test<i> (<pid>)...`. The parent prints `CPU number: N`, then
// `Child process name:Process-k id:<pid>` for each child still alive, in no
// particular order; Process-1 (which sleeps 0 s) has usually exited already, and its
// line may come before the parent's. There is no join(): the children are joined when
// main returns (about 4 s), as Python joins non-daemonic children at exit
// (EXAMPLES.md note 7).
//
// Where this differs from the seed: the seed rebinds `p` on each turn of the loop and
// Python's active_children() still lists the earlier children, because the module
// keeps their Process objects alive. mp::active_children() returns pointers to the
// Process objects, so it lists only children whose Process object still exists: the
// twin keeps them in a vector. (A child whose object is gone is still reaped and
// joined at exit.)
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

void run_proc(const std::string& name, int num) {
  std::this_thread::sleep_for(std::chrono::seconds(num));
  std::printf("Run child process %s (%d)...\n", name.c_str(), mp::os::getpid());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  std::printf("Parent process %d.\n", mp::os::getpid());
  std::fflush(stdout);
  std::vector<mp::Process> children;
  for (int i = 0; i < 5; ++i) {
    mp::Process& p = children.emplace_back(run_proc, "test" + std::to_string(i), i);
    std::printf("Child Process will start.\n");
    std::fflush(stdout);
    p.start();
  }
  std::printf("CPU number: %d\n", mp::cpu_count());
  std::fflush(stdout);
  for (mp::Process* p : mp::active_children()) {
    std::printf("Child process name:%s id:%d\n", p->name().c_str(), p->pid().value_or(0));
    std::fflush(stdout);
  }
  // No join(): the children still running are joined when main returns.
}
