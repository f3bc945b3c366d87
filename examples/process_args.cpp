// process_args — twin of seed S2-1 (002:15-28).
//
// Shows: passing arguments to the target. worker(sec=2, name="Baron") prints
// `I'm Baron` and `I'm working...` three times, 2 s apart (about 6 s), and the parent
// joins it.
//
// Where this differs from the seed: C++ has no keyword arguments, so the seed's
// Process(target=worker, args=(2,), kwargs={"name": "Baron"}) becomes
// mp::Process(worker, 2, "Baron"): every argument is positional, in the order of the
// parameters (the string literal is stored as a std::string). The seed has no
// `if __name__ == '__main__'` guard and so only works under fork (EXAMPLES.md note 2);
// the twin uses fork (the default) too, and calls freeze_support() like every twin.
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <string>
#include <thread>

namespace {

void worker(int sec, const std::string& name) {
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(sec));
    std::printf("I'm %s\n", name.c_str());
    std::printf("I'm working...\n");
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Process p(worker, 2, "Baron");  // args=(2,), kwargs={"name": "Baron"}
  p.start();
  p.join();
}
