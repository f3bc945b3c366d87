// tests/biased_lock_test.cpp — the queues' biased robust lock (mp/detail/biased_lock.hpp):
// the bias is granted to a steady user and used; mutual exclusion holds while the bias
// moves between processes; an owner SIGKILLed inside is found dead, one killed outside
// is not; try_lock and deadlines while the owner is inside.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <new>
#include <thread>

#include "mp/detail/biased_lock.hpp"
#include "mp/detail/shared_mapping.hpp"

using namespace std::chrono_literals;
using mp::detail::BiasedLock;

namespace {

struct Shared {
  BiasedLock lock;
  std::uint64_t counter = 0;              // guarded by lock, deliberately not atomic
  std::atomic<std::uint64_t> fast_holds{0};
};

struct Fixture {
  std::shared_ptr<mp::detail::SharedMapping> mapping = mp::detail::SharedMapping::create(sizeof(Shared), "mpt-biased");
  Shared* s = new (mapping->data()) Shared();
  Fixture() { s->lock.init(); }
};

// Takes and releases the lock until the bias is granted; returns whether it was.
bool become_owner(BiasedLock& lock) {
  for (std::uint32_t i = 0; i < 4 * BiasedLock::kGrantAfter; ++i) {
    BiasedLock::Hold h;
    if (lock.lock(h) != BiasedLock::Result::acquired) return false;
    const bool fast = h.slot >= 0;
    lock.unlock(h);
    if (fast) return true;
  }
  return false;
}

int wait_status(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// A child that becomes the owner, writes 'o' (or 'x' if it could not), and then runs `then`.
template <class Then>
pid_t owner_child(Shared* s, int report_fd, Then&& then) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const char c = become_owner(s->lock) ? 'o' : 'x';
    if (::write(report_fd, &c, 1) != 1) ::_exit(3);
    then();
    ::_exit(0);
  }
  return pid;
}

char read_byte(int fd) {
  char c = 0;
  return ::read(fd, &c, 1) == 1 ? c : '?';
}

TEST(BiasedLock, ASteadyUserIsGrantedTheBiasAndUsesIt) {
  Fixture f;
  EXPECT_TRUE(become_owner(f.s->lock));
  BiasedLock::Hold h;
  ASSERT_EQ(f.s->lock.lock(h), BiasedLock::Result::acquired);
  EXPECT_GE(h.slot, 0);
  // A thread of the same process is somebody else: it revokes the bias and waits.
  std::atomic<bool> got{false};
  std::thread other([&] {
    BiasedLock::Hold h2;
    EXPECT_EQ(f.s->lock.lock(h2), BiasedLock::Result::acquired);
    EXPECT_LT(h2.slot, 0);
    got = true;
    f.s->lock.unlock(h2);
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(got.load());
  f.s->lock.unlock(h);
  other.join();
  EXPECT_TRUE(got.load());
}

TEST(BiasedLock, ExcludesWhileTheBiasMovesBetweenProcesses) {
  Fixture f;
  constexpr int kProcs = 3, kBursts = 200, kBurst = 40;
  pid_t pids[kProcs];
  for (int p = 0; p < kProcs; ++p) {
    pids[p] = ::fork();
    if (pids[p] == 0) {
      for (int b = 0; b < kBursts; ++b) {
        for (int i = 0; i < kBurst; ++i) {  // bursts: long enough to be granted the bias
          BiasedLock::Hold h;
          if (f.s->lock.lock(h) != BiasedLock::Result::acquired) ::_exit(2);
          const std::uint64_t v = f.s->counter;
          for (int k = 0; k < 1000; ++k) asm volatile("" ::: "memory");  // widen the window
          f.s->counter = v + 1;
          if (h.slot >= 0) f.s->fast_holds.fetch_add(1, std::memory_order_relaxed);
          f.s->lock.unlock(h);
        }
        if (b % 8 == p) std::this_thread::sleep_for(50us);  // let another have a streak
      }
      ::_exit(0);
    }
  }
  for (pid_t pid : pids) {
    const int status = wait_status(pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(f.s->counter, std::uint64_t{kProcs} * kBursts * kBurst);
  EXPECT_GT(f.s->fast_holds.load(), 0u);  // the bias was really used
}

TEST(BiasedLock, AnOwnerKilledInsideIsFoundDead) {
  Fixture f;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = owner_child(f.s, fds[1], [&] {
    BiasedLock::Hold h;
    f.s->lock.lock(h);  // through the bias: only `busy` says it is inside
    const char c = h.slot >= 0 ? 'i' : 'x';
    if (::write(fds[1], &c, 1) != 1) ::_exit(3);
    ::pause();
  });
  EXPECT_EQ(read_byte(fds[0]), 'o');
  EXPECT_EQ(read_byte(fds[0]), 'i');
  ::kill(pid, SIGKILL);
  wait_status(pid);
  const auto t0 = std::chrono::steady_clock::now();
  BiasedLock::Hold h;
  EXPECT_EQ(f.s->lock.lock(h), BiasedLock::Result::owner_died);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  f.s->lock.consistent(h);
  f.s->lock.unlock(h);
  EXPECT_EQ(f.s->lock.lock(h), BiasedLock::Result::acquired);  // repaired: an ordinary lock again
  f.s->lock.unlock(h);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(BiasedLock, AnOwnerKilledOutsideLosesItsBiasQuietly) {
  Fixture f;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = owner_child(f.s, fds[1], [] { ::pause(); });
  EXPECT_EQ(read_byte(fds[0]), 'o');
  ::kill(pid, SIGKILL);
  wait_status(pid);
  BiasedLock::Hold h;
  EXPECT_EQ(f.s->lock.lock(h), BiasedLock::Result::acquired);
  f.s->lock.unlock(h);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(BiasedLock, AHolderThroughTheMutexKilledInsideIsFoundDead) {
  Fixture f;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    BiasedLock::Hold h;
    f.s->lock.lock(h);  // the first acquisition: no bias yet
    const char c = h.slot < 0 ? 'm' : 'x';
    if (::write(fds[1], &c, 1) != 1) ::_exit(3);
    ::pause();
  }
  EXPECT_EQ(read_byte(fds[0]), 'm');
  ::kill(pid, SIGKILL);
  wait_status(pid);
  BiasedLock::Hold h;
  EXPECT_EQ(f.s->lock.lock(h), BiasedLock::Result::owner_died);
  f.s->lock.consistent(h);
  f.s->lock.unlock(h);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(BiasedLock, TryLockAndADeadlineGiveUpWhileTheOwnerIsInside) {
  Fixture f;
  int up[2], down[2];
  ASSERT_EQ(::pipe(up), 0);
  ASSERT_EQ(::pipe(down), 0);
  const pid_t pid = owner_child(f.s, up[1], [&] {
    BiasedLock::Hold h;
    f.s->lock.lock(h);
    const char c = h.slot >= 0 ? 'i' : 'x';
    if (::write(up[1], &c, 1) != 1) ::_exit(3);
    read_byte(down[0]);  // until the parent says so
    f.s->lock.unlock(h);
  });
  EXPECT_EQ(read_byte(up[0]), 'o');
  EXPECT_EQ(read_byte(up[0]), 'i');
  BiasedLock::Hold h;
  EXPECT_EQ(f.s->lock.try_lock(h), BiasedLock::Result::busy);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(f.s->lock.lock(h, std::chrono::steady_clock::now() + 100ms), BiasedLock::Result::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 90ms);
  ASSERT_EQ(::write(down[1], "g", 1), 1);
  EXPECT_EQ(f.s->lock.lock(h, std::chrono::steady_clock::now() + 10s), BiasedLock::Result::acquired);
  f.s->lock.unlock(h);
  const int status = wait_status(pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (int fd : {up[0], up[1], down[0], down[1]}) ::close(fd);
}

}  // namespace
