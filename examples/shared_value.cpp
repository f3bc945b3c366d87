// shared_value — twin of seed S3-4 (003:58-68).
//
// Shows: an mp::Value, one int in shared memory. The parent makes it with 0
// (Python's Value('i', 0)), the child sets it to 100, and after join() the parent
// prints `100`: the child wrote the parent's memory, not a copy of it.
//
// This twin uses the spawn start method, through a compile-time context: the child is
// a fresh start of this program, with nothing inherited, and the Value, a handle,
// reaches it as its shared memory's descriptor (under fork it is simply inherited;
// either way both processes see the same int). The seed has the
// `if __name__ == '__main__'` guard, so in Python it works under spawn as well.
//
// Where this differs from the seed: Python's `val.value` is an attribute, mp's
// value() returns a reference to the shared int (`val.value() = 100`). Neither is
// synchronized; a read-modify-write such as `+= 1` needs get_lock() held, in Python too.
#include <cstdio>
#include <mp/mp.hpp>

namespace {

void worker(mp::Value<int> val) { val.value() = 100; }

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  constexpr auto ctx = mp::get_context<mp::StartMethod::spawn>();
  mp::Value<int> shared_value(0);  // Value('i', 0)
  mp::Process p = ctx.Process(worker, shared_value);
  p.start();
  p.join();
  std::printf("%d\n", shared_value.value());
  std::fflush(stdout);
}
