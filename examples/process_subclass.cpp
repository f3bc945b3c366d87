// process_subclass — twin of seed S4-4 (004:93-108).
//
// Shows: a Process subclass built through its constructor, with run() overridden, and
// children that are never joined explicitly. 10 children print 0..9, one number each,
// in any order; main returns without join(), and the children are joined at exit, as
// Python does for non-daemonic children (EXAMPLES.md note 7). Each Process object is
// destroyed at the end of its loop turn while its child may still run: that is fine,
// the child is still reaped and joined at exit.
//
// This twin uses fork, the default start method: a forked child runs its own copy of
// the object, so the subclass needs nothing else (no serialize, no registration);
// compare process_subclass_clock (S2-4), which runs a subclass under forkserver.
//
// Where this differs from the seed: Python's __init__ calls Process.__init__ and then
// sets self.i; in C++ the base is constructed first, then the member.
#include <cstdio>
#include <mp/mp.hpp>

namespace {

class MyProcess : public mp::Process {
 public:
  explicit MyProcess(int i) : i_(i) {}

  void run() override {
    std::printf("%d\n", i_);  // do something
    std::fflush(stdout);
  }

 private:
  int i_;
};

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  for (int i = 0; i < 10; ++i) {
    MyProcess p(i);
    p.start();
  }
}
