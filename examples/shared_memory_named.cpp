// shared_memory_named — twin of seed S0-7 (000:150-168).
//
// Shows: named shared memory. The parent creates a 4096-byte block named `shm`
// (/dev/shm/shm); the child attaches to it by name and writes the bytes 1..5; the
// parent prints the first ten bytes, `1 2 3 4 5 0 0 0 0 0 ` with no newline, then
// close()s its mapping and unlink()s the name.
//
// The seed has the `if __name__ == '__main__'` guard, so in Python it works under
// every start method; this twin uses spawn (a compile-time context), so the child is
// a fresh exec of this program that finds the block by its name alone, as the
// seed's child does. The child only attaches: it never registers the block with the
// resource tracker, and its exit unlinks nothing (CPython up to 3.12 registered it
// there too). Had the parent been killed before its unlink(), the tracker would have
// removed /dev/shm/shm once the program's last process was gone. The seed's heading
// says "Manager", but no Manager is used, and its Lock import is unused (EXAMPLES.md
// note 8): the twin has neither.
#include <cstddef>
#include <cstdio>
#include <mp/mp.hpp>
#include <vector>

namespace {

void func(std::vector<int> args) {
  mp::SharedMemory shm("shm");  // attach by name
  auto buf = shm.buf();
  for (std::size_t i = 0; i < args.size(); ++i) buf[i] = static_cast<std::byte>(args[i]);
}  // the handle closes its mapping here (Python's garbage collector does it there)

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  constexpr auto ctx = mp::get_context<mp::StartMethod::spawn>();
  mp::SharedMemory shm({.name = "shm", .create = true, .size = 4096});

  mp::Process p = ctx.Process(func, std::vector<int>{1, 2, 3, 4, 5});
  p.start();
  p.join();

  for (std::byte item : shm.buf().first(10)) std::printf("%d ", std::to_integer<int>(item));  // 1 2 3 4 5 0 0 0 0 0
  std::fflush(stdout);

  shm.close();   // this process's mapping
  shm.unlink();  // the name: the block is freed once no process maps it
}
