// tests/context_test.cpp — start methods, contexts, cpu_count and the os helpers.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mp/mp.hpp>

#include "test_util.hpp"

TEST(Context, AllThreeStartMethodsExistAndForkIsTheDefault) {
  auto all = mp::get_all_start_methods();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0], mp::StartMethod::fork);
  EXPECT_EQ(mp::to_string(mp::StartMethod::spawn), "spawn");
  EXPECT_EQ(mp::to_string(mp::StartMethod::forkserver), "forkserver");
  EXPECT_EQ(mp::get_context().start_method(), mp::get_start_method());
  EXPECT_EQ(mp::get_context(mp::StartMethod::spawn).name(), "spawn");
}

TEST(Context, ContextProcessUsesItsMethod) {
  auto p = mp::get_context(mp::StartMethod::forkserver).Process([] {});
  EXPECT_EQ(p.start_method(), mp::StartMethod::forkserver);
  auto q = mp::Process([] {});
  EXPECT_EQ(q.start_method(), mp::get_start_method());
}

// set_start_method changes global state: run it in a child so other tests keep fork.
TEST(Context, SetStartMethodTwiceRaisesUnlessForced) {
  mp::Process p(mp::ProcessOptions{.start_method = mp::StartMethod::fork}, [] {
    mp::set_start_method(mp::StartMethod::spawn);
    if (mp::get_start_method() != mp::StartMethod::spawn) std::exit(2);
    try {
      mp::set_start_method(mp::StartMethod::forkserver);
      std::exit(3);
    } catch (const mp::ValueError&) {
    }
    mp::set_start_method(mp::StartMethod::forkserver, true);
    if (mp::get_start_method() != mp::StartMethod::forkserver) std::exit(4);
    // A child started now uses forkserver and inherits the setting.
    mp::Process child([] { std::exit(mp::get_start_method() == mp::StartMethod::forkserver ? 0 : 5); });
    child.start();
    child.join();
    std::exit(child.exitcode().value_or(6));
  });
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  mp_test::expect_no_children_left();
}

TEST(Context, CpuCountFollowsTheAffinityMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const int n = mp::cpu_count();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, CPU_COUNT(&set));
  // In a child pinned to one CPU, cpu_count() is 1.
  mp::Process p([] {
    cpu_set_t one;
    CPU_ZERO(&one);
    cpu_set_t cur;
    sched_getaffinity(0, sizeof cur, &cur);
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &cur)) {
        CPU_SET(c, &one);
        break;
      }
    sched_setaffinity(0, sizeof one, &one);
    std::exit(mp::cpu_count());
  });
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 1);
}

TEST(Os, ForkGetpidGetppid) {
  EXPECT_EQ(mp::os::getpid(), ::getpid());
  EXPECT_EQ(mp::os::getppid(), ::getppid());
  const pid_t parent = mp::os::getpid();
  pid_t pid = mp::os::fork();
  if (pid == 0) {
    // The child forgets the parent's children: active_children() is its own (none).
    ::_exit(mp::os::getppid() == parent && mp::active_children().empty() ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

namespace {
void takes_int(int) {}
void takes_string(std::string) {}
struct NotSerializable {
  int* p;
  NotSerializable() = default;
  explicit NotSerializable(int*) {}
  virtual ~NotSerializable() = default;  // not a plain aggregate, no serialize
};
}  // namespace

TEST(StaticContext, ShippabilityIsKnownAtCompileTime) {
  int captured = 1;
  auto capturing = [captured] { (void)captured; };
  auto captureless = [](int) {};
  static_assert(mp::detail::Shippable<void (*)(int), int>);
  static_assert(mp::detail::Shippable<decltype(captureless), int>);
  static_assert(mp::detail::Shippable<decltype(&takes_string), const char (&)[6]>);  // stored as std::string
  static_assert(!mp::detail::Shippable<decltype(capturing)>);
  static_assert(!mp::detail::Shippable<void (*)(NotSerializable), NotSerializable>);
  // get_context<M>() checks at compile time; fork takes anything.
  auto p = mp::get_context<mp::StartMethod::spawn>().Process(takes_int, 5);
  auto q = mp::get_context<mp::StartMethod::fork>().Process(capturing);
  EXPECT_EQ(p.start_method(), mp::StartMethod::spawn);
  EXPECT_EQ(q.start_method(), mp::StartMethod::fork);
  mp::Context c = mp::get_context<mp::StartMethod::forkserver>();
  EXPECT_EQ(c.start_method(), mp::StartMethod::forkserver);
}
