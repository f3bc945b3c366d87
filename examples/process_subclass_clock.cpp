// process_subclass_clock — twin of seed S2-4 (002:95-115).
//
// Shows: a Process subclass. ClockProcess keeps its own member (the interval), its
// constructor runs the base constructor, and it overrides run(); start() runs run() in
// the child, join() waits for it. The child prints `The time is <ctime>` 5 times, 2 s
// apart (about 10 s).
//
// This twin uses the forkserver start method, so the tour shows a subclass crossing to
// a child that did not inherit the parent's memory: a subclass then needs a default
// constructor, a cereal `serialize` member listing the members the child needs, and
// MP_REGISTER_PROCESS at namespace scope (under fork, the default, none of that is
// needed; see process_subclass, the twin of S4-4).
//
// Where this differs from the seed: Python's __init__ sets self.value and then calls
// super().__init__(); in C++ the base is constructed first. The seed has no main guard
// (EXAMPLES.md note 2) and so would only run under fork; the twin calls
// freeze_support() first, which is what makes forkserver work.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mp/mp.hpp>
#include <thread>

namespace {

class ClockProcess : public mp::Process {
 public:
  ClockProcess() = default;  // the forkserver child builds it so, then loads `value`
  explicit ClockProcess(int value) : value_(value) {}

  void run() override {
    for (int i = 0; i < 5; ++i) {
      const std::time_t now = std::time(nullptr);
      std::printf("The time is %s", std::ctime(&now));  // ctime() ends with '\n'
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::seconds(value_));
    }
  }

  template <class A>
  void serialize(A& ar) {
    ar(value_);
  }

 private:
  int value_ = 0;
};

}  // namespace

MP_REGISTER_PROCESS(ClockProcess);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  mp::set_start_method(mp::StartMethod::forkserver);

  ClockProcess p(2);  // create the process object
  p.start();
  p.join();
}
