// sync_primitives — twin of the prose in seed S1 (001:143), which says that
// multiprocessing's Lock, Condition, Event, RLock and Semaphore work like threading's
// and are used alike, with no code of its own.
//
// Shows: each of them between processes, one short scene each, every output line fixed:
//  - Event: three children wait() on `go`. Before the parent sets it none has got past
//    wait() (and the parent's own wait(timeout) returns False); after set() all have.
//  - Lock: four children each add 1 to a shared counter 10000 times, with a Lock held
//    around each `+= 1`: the total is exactly 40000. A Lock is not re-entrant: its
//    holder's second acquire(timeout) times out.
//  - RLock: two children each run transfer(), which holds an RLock and calls withdraw()
//    and deposit(), each of which takes it again: re-entered, not deadlocked.
//  - Semaphore(2): five children run a section guarded by the semaphore, each noting
//    how many are inside when it enters: never more than two.
//  - Condition: a producer child hands the squares 1..25 to a consumer child through a
//    one-item slot, each waiting on the Condition for its turn; the consumer prints
//    them in order.
//
// Every object is a handle: the copy a child gets is the same lock, event, ... The
// children start with fork (the default); the same code runs under spawn or
// forkserver. The shared counters and slots are mp::RawValue / mp::RawArray (Python's
// RawValue / RawArray: no lock of their own), guarded by the primitive being shown.
//
// Where this differs from Python: `with lock:` is `std::lock_guard guard(lock);`
// (Lock, RLock, Semaphore and Condition have lock()/unlock(): a Semaphore's are its
// acquire()/release(), a Condition's take and release its lock).
// Condition.wait_for(predicate) has Python's name and meaning.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

const char* py_bool(bool b) { return b ? "True" : "False"; }

// Event: a start signal.
void starter(mp::Event go, mp::RawArray<int> passed, int i) {
  go.wait();
  passed[i] = 1;
}

// Lock: mutual exclusion around a read-modify-write of shared memory.
void adder(mp::Lock lock, mp::RawValue<int> counter) {
  for (int i = 0; i < 10000; ++i) {
    std::lock_guard guard(lock);
    counter.value() += 1;
  }
}

// RLock: a function that holds the lock may call others that take it too.
void withdraw(mp::RLock& lock, mp::RawArray<int>& accounts, int amount) {
  std::lock_guard guard(lock);  // re-entered when called from transfer()
  accounts[0] -= amount;
}

void deposit(mp::RLock& lock, mp::RawArray<int>& accounts, int amount) {
  std::lock_guard guard(lock);  // re-entered when called from transfer()
  accounts[1] += amount;
}

void transfer(mp::RLock lock, mp::RawArray<int> accounts, int amount) {
  std::lock_guard guard(lock);  // nobody sees the money gone from one account only
  withdraw(lock, accounts, amount);
  deposit(lock, accounts, amount);
}

// Semaphore: at most N at a time. inside[0] counts the children inside, inside[1] the
// most ever seen; the Lock guards both.
void limited(mp::Semaphore slots, mp::Lock lock, mp::RawArray<int> inside) {
  std::lock_guard slot(slots);  // acquire() ... release()
  {
    std::lock_guard guard(lock);
    inside[0] += 1;
    inside[1] = std::max(inside[1], inside[0]);
  }
  std::this_thread::sleep_for(50ms);  // the work
  std::lock_guard guard(lock);
  inside[0] -= 1;
}

// Condition: a one-item slot. slot[0] is the item, slot[1] whether it is full.
void producer(mp::Condition cv, mp::RawArray<int> slot) {
  for (int i = 1; i <= 5; ++i) {
    std::lock_guard guard(cv);
    cv.wait_for([&] { return slot[1] == 0; });  // wait until the slot is empty
    slot[0] = i * i;
    slot[1] = 1;
    cv.notify();
  }
}

void consumer(mp::Condition cv, mp::RawArray<int> slot) {
  for (int i = 0; i < 5; ++i) {
    int item = 0;
    {
      std::lock_guard guard(cv);
      cv.wait_for([&] { return slot[1] == 1; });  // wait until the slot is full
      item = slot[0];
      slot[1] = 0;
      cv.notify();
    }
    std::printf("Condition: the consumer got %d\n", item);
    std::fflush(stdout);
  }
}

int sum(const mp::RawArray<int>& a) {
  int total = 0;
  for (int x : a) total += x;
  return total;
}

void join_all(std::vector<mp::Process>& children) {
  for (mp::Process& p : children) p.join();
  children.clear();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  std::vector<mp::Process> children;

  {  // Event
    mp::Event go;
    mp::RawArray<int> passed(3);
    for (int i = 0; i < 3; ++i) children.emplace_back(starter, go, passed, i).start();
    const bool early = go.wait(50ms);
    std::printf("Event: before set(): go.wait(timeout=0.05) -> %s, children past go.wait(): %d of 3\n",
                py_bool(early), sum(passed));
    go.set();
    join_all(children);
    std::printf("Event: after set(): go.is_set() -> %s, children past go.wait(): %d of 3\n", py_bool(go.is_set()),
                sum(passed));
    std::fflush(stdout);
  }

  {  // Lock
    mp::Lock lock;
    mp::RawValue<int> counter(0);
    for (int i = 0; i < 4; ++i) children.emplace_back(adder, lock, counter).start();
    join_all(children);
    std::printf("Lock: 4 children x 10000 locked increments: counter = %d\n", counter.value());
    lock.acquire();
    const bool again = lock.acquire(100ms);
    std::printf("Lock: its holder's second acquire(timeout=0.1) -> %s (a Lock is not re-entrant)\n", py_bool(again));
    lock.release();
    std::fflush(stdout);
  }

  {  // RLock
    mp::RLock lock;
    mp::RawArray<int> accounts({100, 0});
    children.emplace_back(transfer, lock, accounts, 30).start();
    children.emplace_back(transfer, lock, accounts, 20).start();
    join_all(children);
    std::printf("RLock: two transfers (30, 20), each re-entering it: accounts = [%d, %d]\n", accounts[0], accounts[1]);
    std::fflush(stdout);
  }

  {  // Semaphore
    mp::Semaphore slots(2);
    mp::Lock lock;
    mp::RawArray<int> inside(2);
    for (int i = 0; i < 5; ++i) children.emplace_back(limited, slots, lock, inside).start();
    join_all(children);
    if (inside[1] > 2) {
      std::printf("Semaphore(2): %d children were inside at once!\n", inside[1]);
      return 1;
    }
    std::printf("Semaphore(2): 5 children took turns, never more than 2 inside at once; get_value() -> %u\n",
                slots.get_value());
    std::fflush(stdout);
  }

  {  // Condition
    mp::Condition cv;  // its lock: a new RLock
    mp::RawArray<int> slot(2);
    children.emplace_back(consumer, cv, slot).start();
    children.emplace_back(producer, cv, slot).start();
    join_all(children);
  }
}
