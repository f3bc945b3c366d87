// process_minimal — twin of seed S3-1 (003:9-17).
//
// Shows: the smallest possible process: a target function, start(), join(). The child
// prints `Worker process running`.
//
// Where this differs from the seed: nothing; freeze_support() is called first, as in
// every twin (the seed's `if __name__ == '__main__'` guard has no C++ counterpart:
// freeze_support() is what keeps a spawn/forkserver child from running main()).
#include <cstdio>
#include <mp/mp.hpp>

namespace {

void worker() {
  std::printf("Worker process running\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Process p(worker);
  p.start();
  p.join();
}
