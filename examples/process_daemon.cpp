// process_daemon — twin of seed S2-3 (002:68-86).
//
// Shows: a process's name, pid, is_alive() and the daemon flag. The child (named
// "定义名字", "a name of our choosing", as in the seed) would print the time 3 times,
// 2 s apart, but it is a daemon: the parent prints `Name 定义名字`, `pid <n>` and
// `alive True`, then main returns, and the daemon child is terminated before it has
// printed anything. The program ends at once.
//
// Where this follows real Python rather than the seed (EXAMPLES.md note 7): the seed
// says a daemon is "not used with join"; in fact join() works on a daemon. What the
// flag does is that the daemon is killed when its parent exits, which is what the twin
// shows. daemon must be set before start(), as in Python (mp::ValueError after).
// The last line, in parentheses, is the twin's own narration, not the seed's.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mp/mp.hpp>
#include <optional>
#include <thread>

namespace {

void fun() {
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const std::time_t now = std::time(nullptr);
    std::printf("%s", std::ctime(&now));  // print(ctime())
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  // Process(target=fun, name="定义名字")
  mp::Process p({.name = "定义名字"}, fun);
  p.set_daemon(true);  // p.daemon = True: the child dies when the parent ends

  p.start();

  std::printf("Name %s\n", p.name().c_str());
  std::printf("pid %d\n", p.pid().value_or(0));
  std::printf("alive %s\n", p.is_alive() ? "True" : "False");
  std::printf("(main returns now: the daemon child is terminated before its first line)\n");
  std::fflush(stdout);
  // No join(): at exit mp terminates daemonic children, as Python does.
}
