// queue_child_to_child — twin of seed S3-6 (003:101-119).
//
// Shows: two children talking through one mp::Queue, the parent only starting and
// joining them. The producer puts "Data from producer"; the consumer's get() waits
// for it and prints `Consumer got: Data from producer`.
//
// This twin starts both children with the forkserver start method (a runtime context,
// mp::get_context(mp::StartMethod::forkserver)): they are forked by a small server
// process rather than by this one, so the queue reaches each of them as a descriptor
// passed along, not by inheritance. The targets are plain functions taking the queue
// by value (a queue is a handle: every copy is the same queue). The seed has the
// `if __name__ == '__main__'` guard, so in Python it works under forkserver as well.
// Otherwise nothing differs from the seed.
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

void producer(mp::Queue<std::string> queue) { queue.put("Data from producer"); }

void consumer(mp::Queue<std::string> queue) {
  const std::string data = queue.get();
  std::printf("Consumer got: %s\n", data.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  const mp::Context ctx = mp::get_context(mp::StartMethod::forkserver);
  mp::Queue<std::string> q;

  mp::Process p1 = ctx.Process(producer, q);
  mp::Process p2 = ctx.Process(consumer, q);

  p1.start();
  p2.start();
  p1.join();
  p2.join();
}
