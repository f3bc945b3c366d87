// executor_as_completed — twin of seed S0-4 (000:77-90).
//
// Shows: concurrent.futures on processes. An mp::ProcessPoolExecutor with 3 workers
// gets 10 tasks through submit(), each square(n) for n in 0..9, sleeping 1 s before it
// returns n * n; mp::as_completed() yields their Futures as they finish, and each
// result() is printed, one per line, in completion order: about 4 s in all (4 rounds of
// at most 3 tasks).
//
// Where this follows real Python rather than the seed: the seed's output listing is
// sorted, but as_completed() gives completion order, and tasks that finish in the same
// second finish in no fixed order, so the lines are the 10 squares in an order that
// varies from run to run (EXAMPLES.md, S0-4). Python's `with ProcessPoolExecutor(...) as
// executor:` block is a C++ scope: the executor's destructor calls shutdown(wait=True),
// as leaving the block does.
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <thread>
#include <vector>

namespace {

int square(int n) {
  std::this_thread::sleep_for(std::chrono::seconds(1));
  return n * n;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  {
    mp::ProcessPoolExecutor executor(3);  // ProcessPoolExecutor(max_workers=3)
    std::vector<mp::Future<int>> tasks;
    for (int num = 0; num < 10; ++num) tasks.push_back(executor.submit(square, num));
    for (mp::Future<int>& future : mp::as_completed(tasks)) {
      std::printf("%d\n", future.result());
      std::fflush(stdout);
    }
  }  // the end of the `with` block: shutdown(wait=True)
}
