// queue_child_to_parent — twin of seed S3-2 (003:25-35).
//
// Shows: an mp::Queue from child to parent. The child puts "Data from worker", the
// parent's get() waits for it and prints `Data from worker`, then joins.
//
// This twin uses the spawn start method, through a compile-time context
// (mp::get_context<mp::StartMethod::spawn>(): a target that could not cross to a
// freshly exec'd child would be a compile error there). The child is a new start of
// this program; the Queue, a handle, reaches it as its shared memory's descriptor and
// is the same queue there. The seed has the `if __name__ == '__main__'` guard, so in
// Python it works under spawn as well; freeze_support() plays that guard's part here.
// Otherwise nothing differs from the seed.
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

void worker(mp::Queue<std::string> q) { q.put("Data from worker"); }

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  constexpr auto ctx = mp::get_context<mp::StartMethod::spawn>();
  mp::Queue<std::string> q;
  mp::Process p = ctx.Process(worker, q);
  p.start();
  std::printf("%s\n", q.get().c_str());
  std::fflush(stdout);
  p.join();
}
