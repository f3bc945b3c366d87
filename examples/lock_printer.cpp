// lock_printer — twin of seed S4-6 (004:136-151).
//
// Shows: an mp::Lock shared by four children, each printing its item (`chinese`,
// `english`, `spanish`, `japanese`) with the lock held, so only one prints at a time
// and every item comes out as a whole line. The lines come in any order. There is no
// join(): the children are joined when main returns, as Python joins non-daemonic
// children at exit (EXAMPLES.md note 7).
//
// Where this differs from the seed: Python's try/finally around print() becomes a
// plain acquire(), print, release(): printf cannot throw. Code that can throw takes the
// lock with `std::lock_guard guard(lock);` instead (Python's `with lock:`). The Lock is
// a handle: the copy each child gets is the same lock.
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

void printer(const std::string& item, mp::Lock lock) {
  lock.acquire();
  std::printf("%s\n", item.c_str());
  std::fflush(stdout);
  lock.release();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Lock lock;
  for (const char* item : {"chinese", "english", "spanish", "japanese"}) {
    mp::Process p(printer, item, lock);
    p.start();
  }
  // No join(): the children are joined when main returns.
}
