// tests/synchronize_test.cpp — Lock, RLock, Semaphore, BoundedSemaphore, Event,
// Condition, Barrier: the API on threads, then every start method, holders SIGKILLed while
// holding, waiters killed while waiting, no lost wake-ups.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mp/mp.hpp>
#include <mp/sharedctypes.hpp>
#include <mp/synchronize.hpp>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using mp_test::StartMethodTest;

namespace {

template <class F>
auto elapsed(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::steady_clock::now() - t0;
}

// --- child targets (plain functions: they travel under spawn and forkserver) ---

void hold_forever(mp::Lock lock, mp::Event held) {
  lock.acquire();
  held.set();
  for (;;) ::pause();
}

void hold_rlock_forever(mp::RLock lock, mp::Event held) {
  lock.acquire();
  lock.acquire();  // twice deep: the heir must get it once deep
  held.set();
  for (;;) ::pause();
}

void hold_value_lock_forever(mp::Value<int> v, mp::Event held) {
  v.get_lock().acquire();
  v.value() = -1;  // "half-written"
  held.set();
  for (;;) ::pause();
}

void release_lock(mp::Lock lock) { lock.release(); }

void increment_locked(mp::Value<long> v, int n) {
  for (int i = 0; i < n; ++i) {
    std::lock_guard g(v.get_lock());
    v.value() += 1;
  }
}

void increment_unlocked(mp::RawValue<long> v, int n) {
  for (int i = 0; i < n; ++i) {
    auto& x = v.value();
    x = x + 1;  // a plain read-modify-write of shared memory: updates can be lost
  }
}

// Takes a unit of `slots`, records how many are inside at once, gives it back.
void use_slot(mp::Semaphore slots, mp::Value<int> inside, mp::Value<int> most, int rounds) {
  for (int r = 0; r < rounds; ++r) {
    slots.acquire();
    {
      std::lock_guard g(inside.get_lock());
      int now = ++inside.value();
      if (now > most.value()) most.value() = now;
    }
    std::this_thread::sleep_for(1ms);
    {
      std::lock_guard g(inside.get_lock());
      --inside.value();
    }
    slots.release();
  }
}

void block_on_semaphore(mp::Semaphore s, mp::Event started) {
  started.set();
  s.acquire();
  std::_Exit(9);  // must not get here: the test kills it while it waits
}

void wait_event_then_report(mp::Event e, mp::Queue<int> out) {
  out.put(e.wait(10s) ? 1 : 0);
}

// Takes `n` items one by one from a shared counter guarded by `cv`, waiting for each.
void consume_items(mp::Condition cv, mp::Value<int> items, mp::Value<int> taken, int n) {
  for (int i = 0; i < n; ++i) {
    std::lock_guard g(cv);
    if (!cv.wait_for([&] { return items.value() > 0; }, 10s)) std::_Exit(4);  // a lost wake-up
    --items.value();
    ++taken.value();
  }
}

void barrier_party(mp::Barrier b, mp::Queue<int> indices, int rounds) {
  for (int r = 0; r < rounds; ++r) indices.put(static_cast<int>(b.wait(10s)));
}

void barrier_party_expect_broken(mp::Barrier b, mp::Queue<int> out) {
  try {
    b.wait(10s);
    out.put(0);
  } catch (const mp::BrokenBarrierError&) {
    out.put(1);
  }
}

}  // namespace

// --- Lock and RLock, one process ---

TEST(Lock, AcquireReleaseAndTryLock) {
  mp::Lock l;
  EXPECT_TRUE(l.acquire());
  EXPECT_FALSE(l.try_lock());
  EXPECT_FALSE(l.acquire(false));
  l.release();
  EXPECT_TRUE(l.try_lock());
  l.unlock();
  { std::lock_guard g(l); EXPECT_FALSE(l.try_lock()); }
  EXPECT_TRUE(l.try_lock());
  l.release();
  EXPECT_FALSE(l.holder_died());
}

TEST(Lock, ReleasingAnUnheldLockIsMisuse) {
  mp::Lock l;
  EXPECT_THROW(l.release(), mp::ValueError);
  l.acquire();
  l.release();
  EXPECT_THROW(l.release(), mp::ValueError);
}

TEST(Lock, TimedAcquireGivesUpAfterTheTimeout) {
  mp::Lock l;
  l.acquire();
  bool got = true;
  std::thread t([&] {
    auto d = elapsed([&] { got = l.acquire(100ms); });
    EXPECT_GE(d, 100ms);
    EXPECT_LT(d, 2s);
  });
  t.join();
  EXPECT_FALSE(got);
  l.release();
}

TEST(Lock, AnotherThreadMayReleaseIt) {  // Python's Lock is a semaphore, not an owned mutex
  mp::Lock l;
  l.acquire();
  std::thread([&] { l.release(); }).join();
  EXPECT_TRUE(l.try_lock());
  l.release();
}

TEST(Lock, ThreadsCountExactlyUnderIt) {
  mp::Lock l;
  long n = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        std::lock_guard g(l);
        ++n;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(n, 80000);
}

TEST(RLock, ReentersForItsHolderOnly) {
  mp::RLock r;
  r.acquire();
  r.acquire();
  bool other = true;
  std::thread([&] { other = r.acquire(false); }).join();
  EXPECT_FALSE(other);
  std::thread([&] { EXPECT_THROW(r.release(), mp::ValueError); }).join();
  r.release();
  std::thread([&] { other = r.acquire(false); }).join();
  EXPECT_FALSE(other) << "released once of twice: still held";
  r.release();
  std::thread([&] {
    other = r.acquire(false);
    if (other) r.release();
  }).join();
  EXPECT_TRUE(other);
  EXPECT_THROW(r.release(), mp::ValueError);
}

// --- Semaphore, Event, Condition, Barrier on threads ---

TEST(Semaphore, CountsAndTimesOut) {
  mp::Semaphore s(2);
  EXPECT_EQ(s.get_value(), 2u);
  EXPECT_TRUE(s.acquire());
  EXPECT_TRUE(s.acquire(10ms));
  EXPECT_FALSE(s.acquire(false));
  auto d = elapsed([&] { EXPECT_FALSE(s.acquire(50ms)); });
  EXPECT_GE(d, 50ms);
  s.release(2);
  EXPECT_EQ(s.get_value(), 2u);
  s.release();  // an unbounded semaphore may grow
  EXPECT_EQ(s.get_value(), 3u);
}

TEST(Semaphore, ReleaseWakesASleeper) {
  mp::Semaphore s(0);
  std::thread t([&] { EXPECT_TRUE(s.acquire(10s)); });
  std::this_thread::sleep_for(50ms);
  s.release();
  t.join();
  EXPECT_EQ(s.get_value(), 0u);
}

TEST(BoundedSemaphore, OverReleaseIsMisuse) {
  mp::BoundedSemaphore s(2);
  EXPECT_THROW(s.release(), mp::ValueError);
  s.acquire();
  EXPECT_THROW(s.release(2), mp::ValueError);
  s.release();
  EXPECT_EQ(s.get_value(), 2u);
}

TEST(Event, SetClearWait) {
  mp::Event e;
  EXPECT_FALSE(e.is_set());
  EXPECT_FALSE(e.wait(20ms));
  std::thread t([&] { EXPECT_TRUE(e.wait(10s)); });
  std::this_thread::sleep_for(20ms);
  e.set();
  t.join();
  EXPECT_TRUE(e.is_set());
  EXPECT_TRUE(e.wait());
  e.clear();
  EXPECT_FALSE(e.is_set());
}

TEST(Condition, WaitAndNotifyNeedTheLock) {
  mp::Condition c;
  EXPECT_THROW(c.wait(1ms), mp::ValueError);
  EXPECT_THROW(c.notify(), mp::ValueError);
  std::lock_guard g(c);
  EXPECT_FALSE(c.wait(20ms));
  c.notify_all();  // nobody waits: nothing happens
}

TEST(Condition, WaitReleasesARecursiveLockAllTheWay) {
  mp::RLock r;
  mp::Condition c(r);
  r.acquire();
  r.acquire();
  std::atomic<bool> notified{false};
  std::thread t([&] {
    std::lock_guard g(c);  // possible only if wait() released both levels
    notified = true;
    c.notify();
  });
  EXPECT_TRUE(c.wait(10s));
  EXPECT_TRUE(notified);
  r.release();
  r.release();  // the depth was restored: two releases, no more
  EXPECT_THROW(r.release(), mp::ValueError);
  t.join();
}

TEST(Condition, NotifyWakesNWaitersAndNotifyAllTheRest) {
  mp::Condition c(mp::Lock{});
  std::atomic<int> woken{0};
  std::vector<std::thread> ts;
  std::atomic<int> waiting{0};
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      std::lock_guard g(c);
      ++waiting;
      if (c.wait(10s)) ++woken;
    });
  while (waiting < 4) std::this_thread::sleep_for(1ms);
  {
    std::lock_guard g(c);  // every waiter is inside wait() once it let go of the lock
    c.notify(1);
  }
  std::this_thread::sleep_for(100ms);
  EXPECT_GE(woken.load(), 1);
  {
    std::lock_guard g(c);
    c.notify_all();
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(woken.load(), 4);
}

namespace {
std::atomic<int> g_barrier_actions{0};
void count_action() { ++g_barrier_actions; }
void throwing_action() { throw std::runtime_error("action failed"); }
}  // namespace

TEST(Barrier, IndicesAreDistinctAndTheActionRunsOncePerRound) {
  g_barrier_actions = 0;
  mp::Barrier b(3, {.action = count_action});
  EXPECT_EQ(b.parties(), 3u);
  std::mutex mu;
  std::vector<std::multiset<std::size_t>> per_round(5);
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&] {
      for (int r = 0; r < 5; ++r) {
        auto i = b.wait(10s);
        std::lock_guard g(mu);
        per_round[static_cast<std::size_t>(r)].insert(i);
      }
    });
  for (auto& t : ts) t.join();
  for (auto& s : per_round) EXPECT_EQ(s, (std::multiset<std::size_t>{0, 1, 2}));
  EXPECT_EQ(g_barrier_actions.load(), 5);
  EXPECT_EQ(b.n_waiting(), 0u);
}

TEST(Barrier, AbortBreaksItUntilReset) {
  mp::Barrier b(2);
  std::thread t([&] { EXPECT_THROW(b.wait(10s), mp::BrokenBarrierError); });
  while (b.n_waiting() < 1) std::this_thread::sleep_for(1ms);
  b.abort();
  t.join();
  EXPECT_TRUE(b.broken());
  EXPECT_THROW(b.wait(1s), mp::BrokenBarrierError);
  b.reset();
  EXPECT_FALSE(b.broken());
  std::thread t2([&] { b.wait(10s); });
  b.wait(10s);
  t2.join();
}

TEST(Barrier, ResetBreaksTheWaitersOfTheRoundOnly) {
  mp::Barrier b(2);
  std::thread t([&] { EXPECT_THROW(b.wait(10s), mp::BrokenBarrierError); });
  while (b.n_waiting() < 1) std::this_thread::sleep_for(1ms);
  b.reset();
  t.join();
  EXPECT_FALSE(b.broken());
  std::thread t2([&] { b.wait(10s); });
  EXPECT_NO_THROW(b.wait(10s));
  t2.join();
}

TEST(Barrier, ATimeoutBreaksItForEveryone) {
  mp::Barrier b(3, {.timeout = 100ms});
  std::thread t([&] { EXPECT_THROW(b.wait(10s), mp::BrokenBarrierError); });
  while (b.n_waiting() < 1) std::this_thread::sleep_for(1ms);
  EXPECT_THROW(b.wait(), mp::BrokenBarrierError);  // the default timeout
  t.join();
  EXPECT_TRUE(b.broken());
}

TEST(Barrier, AThrowingActionBreaksIt) {
  mp::Barrier b(2, {.action = throwing_action});
  int threw = 0;
  std::mutex mu;
  auto party = [&] {
    try {
      b.wait(10s);
    } catch (const std::exception&) {
      std::lock_guard g(mu);
      ++threw;
    }
  };
  std::thread t(party);
  party();
  t.join();
  EXPECT_EQ(threw, 2);
  EXPECT_TRUE(b.broken());
}

TEST(Barrier, ZeroPartiesIsMisuse) { EXPECT_THROW(mp::Barrier(0), mp::ValueError); }

// --- across processes, every start method ---

class SyncProcessTest : public StartMethodTest {};
MP_INSTANTIATE_FOR_START_METHODS(SyncProcessTest);

TEST_P(SyncProcessTest, LockedIncrementsFromSeveralProcessesAreExact) {
  mp::Value<long> v(0);
  std::vector<mp::Process> ps;
  for (int i = 0; i < 3; ++i) ps.push_back(ctx().Process(increment_locked, v, 3000));
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
  for (auto& p : ps) EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(v.value(), 9000);
}

// Why the lock exists: without it, updates may be lost. Not asserted as a race (it may
// not happen on a given run), only that nothing is invented.
TEST_P(SyncProcessTest, UnlockedIncrementsNeverExceedTheTotal) {
  mp::RawValue<long> v(0);
  std::vector<mp::Process> ps;
  for (int i = 0; i < 2; ++i) ps.push_back(ctx().Process(increment_unlocked, v, 100000));
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
  EXPECT_GT(v.value(), 0);
  EXPECT_LE(v.value(), 200000);
}

TEST_P(SyncProcessTest, AHolderKilledWhileHoldingHandsTheLockOver) {
  mp::Lock lock;
  mp::Event held;
  auto p = ctx().Process(hold_forever, lock, held);
  p.start();
  ASSERT_TRUE(held.wait(10s));
  EXPECT_FALSE(lock.acquire(50ms));
  p.kill();  // not joined yet: the holder is a zombie while we acquire
  EXPECT_TRUE(lock.acquire(5s));
  EXPECT_TRUE(lock.holder_died());
  lock.release();
  EXPECT_FALSE(lock.holder_died());
  EXPECT_TRUE(lock.try_lock());
  lock.release();
  p.join();
}

TEST_P(SyncProcessTest, AWaiterNoticesTheHolderDyingWhileItWaits) {
  mp::Lock lock;
  mp::Event held;
  auto p = ctx().Process(hold_forever, lock, held);
  p.start();
  ASSERT_TRUE(held.wait(10s));
  std::thread killer([&] {
    std::this_thread::sleep_for(100ms);
    p.kill();
  });
  bool got = false;
  auto d = elapsed([&] { got = lock.acquire(10s); });
  killer.join();
  EXPECT_TRUE(got);
  EXPECT_LT(d, 2s);
  EXPECT_TRUE(lock.holder_died());
  lock.release();
  p.join();
}

TEST_P(SyncProcessTest, AnRLockHeldDeepByADeadHolderIsHandedOverOnceDeep) {
  mp::RLock lock;
  mp::Event held;
  auto p = ctx().Process(hold_rlock_forever, lock, held);
  p.start();
  ASSERT_TRUE(held.wait(10s));
  p.kill();
  p.join();
  ASSERT_TRUE(lock.acquire(5s));
  EXPECT_TRUE(lock.holder_died());
  lock.release();
  EXPECT_THROW(lock.release(), mp::ValueError);
}

TEST_P(SyncProcessTest, TheLockOfAValueSurvivesItsHolder) {
  mp::Value<int> v(5);
  mp::Event held;
  auto p = ctx().Process(hold_value_lock_forever, v, held);
  p.start();
  ASSERT_TRUE(held.wait(10s));
  p.kill();
  p.join();
  std::lock_guard g(v.get_lock());
  EXPECT_TRUE(v.get_lock().holder_died());
  EXPECT_EQ(v.value(), -1);  // what the dead holder left: the new holder must repair it
}

TEST_P(SyncProcessTest, AnotherProcessMayReleaseALock) {
  mp::Lock lock;
  lock.acquire();
  auto p = ctx().Process(release_lock, lock);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_TRUE(lock.acquire(1s));
  lock.release();
}

TEST_P(SyncProcessTest, ASemaphoreBoundsHowManyAreInside) {
  mp::Semaphore slots(2);
  mp::Value<int> inside(0), most(0);
  std::vector<mp::Process> ps;
  for (int i = 0; i < 4; ++i) ps.push_back(ctx().Process(use_slot, slots, inside, most, 20));
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
  for (auto& p : ps) EXPECT_EQ(p.exitcode(), 0);
  EXPECT_LE(most.value(), 2);
  EXPECT_GE(most.value(), 1);
  EXPECT_EQ(slots.get_value(), 2u);
}

TEST_P(SyncProcessTest, AWaiterKilledOnASemaphoreLeavesItWorking) {
  mp::Semaphore s(0);
  mp::Event started;
  auto p = ctx().Process(block_on_semaphore, s, started);
  p.start();
  ASSERT_TRUE(started.wait(10s));
  std::this_thread::sleep_for(50ms);
  p.kill();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGKILL);
  s.release();
  EXPECT_EQ(s.get_value(), 1u);
  EXPECT_TRUE(s.acquire(1s));
  EXPECT_FALSE(s.acquire(false));
}

TEST_P(SyncProcessTest, AnEventWakesAChild) {
  mp::Event e;
  mp::Queue<int> out;
  auto p = ctx().Process(wait_event_then_report, e, out);
  p.start();
  std::this_thread::sleep_for(50ms);
  e.set();
  EXPECT_EQ(out.get(10s), 1);
  p.join();
}

TEST_P(SyncProcessTest, ConditionLosesNoWakeUps) {
  mp::Condition cv;
  mp::Value<int> items(0), taken(0);
  constexpr int kConsumers = 3, kEach = 200;
  std::vector<mp::Process> ps;
  for (int i = 0; i < kConsumers; ++i) ps.push_back(ctx().Process(consume_items, cv, items, taken, kEach));
  for (auto& p : ps) p.start();
  for (int i = 0; i < kConsumers * kEach; ++i) {
    std::lock_guard g(cv);
    ++items.value();
    cv.notify();
  }
  for (auto& p : ps) p.join();
  for (auto& p : ps) EXPECT_EQ(p.exitcode(), 0) << "exit 4: a consumer timed out waiting (a lost wake-up)";
  EXPECT_EQ(taken.value(), kConsumers * kEach);
  EXPECT_EQ(items.value(), 0);
}

TEST_P(SyncProcessTest, BarrierIndicesAcrossProcesses) {
  mp::Barrier b(3);
  mp::Queue<int> indices;
  constexpr int kRounds = 4;
  auto p1 = ctx().Process(barrier_party, b, indices, kRounds);
  auto p2 = ctx().Process(barrier_party, b, indices, kRounds);
  p1.start();
  p2.start();
  std::multiset<int> all;
  for (int r = 0; r < kRounds; ++r) all.insert(static_cast<int>(b.wait(10s)));
  p1.join();
  p2.join();
  for (int i = 0; i < 2 * kRounds; ++i) all.insert(indices.get(5s));
  EXPECT_EQ(all, (std::multiset<int>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}));
}

TEST_P(SyncProcessTest, ABarrierPartyThatDiesBreaksTheOthersTimedWait) {
  mp::Barrier b(3);
  mp::Queue<int> out;
  mp::Event never;
  auto waiter = ctx().Process(barrier_party_expect_broken, b, out);
  auto dead = ctx().Process(wait_event_then_report, never, out);  // the party that never arrives
  waiter.start();
  dead.start();
  dead.kill();
  dead.join();
  EXPECT_THROW(b.wait(300ms), mp::BrokenBarrierError);
  EXPECT_EQ(out.get(10s), 1);
  waiter.join();
  EXPECT_TRUE(b.broken());
}
