// lock_holder_died — an extra twin, of no seed row: a process that dies holding an
// mp::Lock, and what mp calls holder_died() (synchronize.hpp).
//
// Shows: a child takes a Lock that guards a pair of numbers meant to stay equal, adds 1
// to the first, and is SIGKILLed (Process.kill()) before it updates the second or
// releases the lock. While it lives, the parent's acquire(False) fails. Once it is
// dead, the parent's acquire(timeout) gets the lock all the same: a waiter checks every
// ~20 ms whether the holder still exists and takes over the lock of a dead one. Right
// after that acquisition holder_died() is True, which tells the parent that what the
// lock guards may be half-written: the pair is [1, 0]. The parent repairs it and
// releases the lock, and holder_died() is False again.
//
// Where this differs from Python: CPython's Lock is a POSIX semaphore, which has no
// owner: when its holder is killed it stays locked for good, acquire(timeout=1) returns
// False and acquire() blocks forever (checked with CPython 3.11). mp hands the lock
// over and says so, in the spirit of a robust mutex's EOWNERDEAD; Python has no
// holder_died().
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <mp/mp.hpp>

namespace {

using namespace std::chrono_literals;

const char* py_bool(bool b) { return b ? "True" : "False"; }

void holder(mp::Lock lock, mp::RawArray<int> pair, mp::Event holding) {
  lock.acquire();
  pair[0] += 1;  // the first half of the update...
  holding.set();
  for (;;) ::pause();  // ...and killed here
  // (never reached: pair[1] += 1; lock.release();)
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Lock lock;
  mp::RawArray<int> pair(2);
  mp::Event holding;
  mp::Process p(holder, lock, pair, holding);
  p.start();
  holding.wait();
  std::printf("child holds the lock: parent's acquire(False) -> %s\n", py_bool(lock.acquire(false)));

  p.kill();
  p.join();
  std::printf("child killed: exitcode %d (-SIGKILL = %d)\n", *p.exitcode(), -SIGKILL);

  const bool got = lock.acquire(2s);
  std::printf("parent: acquire(timeout=2) -> %s, holder_died() -> %s\n", py_bool(got), py_bool(lock.holder_died()));
  if (!got) return 1;
  if (lock.holder_died()) {
    std::printf("parent: the pair may be half-written: [%d, %d]; repairing it\n", pair[0], pair[1]);
    pair[1] = pair[0];
  }
  lock.release();
  std::printf("parent: released: holder_died() -> %s, pair = [%d, %d]\n", py_bool(lock.holder_died()), pair[0],
              pair[1]);
  std::fflush(stdout);
}
