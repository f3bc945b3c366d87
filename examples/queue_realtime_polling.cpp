// queue_realtime_polling — twin of seed S3-8 (003:158-177).
//
// Shows: reading a child's results while it runs. The child puts `Data i from worker`
// into an mp::Queue every second, 5 times. Meanwhile the parent polls: while the child
// is alive (is_alive()) or the queue is not empty (empty()), it takes every item there
// is (get()) and prints `Main process got: Data i from worker`, then sleeps 0.5 s.
// Each line appears about when its item was put, in order; then the parent joins.
//
// Nothing is lost at the end: the loop goes on after the child has ended for as long
// as the queue is not empty, and in mp an item is in the queue once put() returns
// (there is no feeder thread; in Python the child's exit waits for its feeder thread,
// so there too the last item is in the pipe before is_alive() turns false). With a
// single consumer, !empty() means get() will not block. Nothing differs from the seed.
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <string>
#include <thread>

namespace {

void worker(mp::Queue<std::string> queue) {
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    queue.put("Data " + std::to_string(i) + " from worker");
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Queue<std::string> q;
  mp::Process p(worker, q);
  p.start();

  while (p.is_alive() || !q.empty()) {
    while (!q.empty()) {
      const std::string data = q.get();
      std::printf("Main process got: %s\n", data.c_str());
      std::fflush(stdout);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }

  p.join();
}
