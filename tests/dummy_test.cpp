// tests/dummy_test.cpp — the pool suite run against both mp::Pool and mp::dummy::Pool
// (TYPED_TEST), and the rest of mp::dummy.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mp/dummy.hpp>
#include <mp/mp.hpp>
#include <numeric>
#include <ranges>
#include <set>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
int fail_on_two(int x) {
  if (x == 2) throw std::runtime_error("two");
  return x;
}
}  // namespace

template <class P>
class AnyPoolTest : public ::testing::Test {};
using PoolTypes = ::testing::Types<mp::Pool, mp::dummy::Pool>;
class PoolNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, mp::Pool> ? "processes" : "threads";
  }
};
TYPED_TEST_SUITE(AnyPoolTest, PoolTypes, PoolNames);

TYPED_TEST(AnyPoolTest, ApplyMapStarmap) {
  TypeParam pool(2);
  EXPECT_EQ(pool.apply(square, 3), 9);
  EXPECT_EQ(pool.apply_async(add, 1, 2).get(), 3);
  std::vector<int> in(100);
  std::iota(in.begin(), in.end(), 0);
  auto out = pool.map(square, in, 7);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], i * i);
  EXPECT_EQ(pool.starmap(add, std::vector<std::tuple<int, int>>{{1, 1}, {2, 2}}), (std::vector<int>{2, 4}));
  pool.close();
  pool.join();
}

TYPED_TEST(AnyPoolTest, ImapOrderAndUnorderedCompleteness) {
  TypeParam pool(2);
  std::vector<int> got;
  for (int x : pool.imap(square, std::views::iota(0, 50))) got.push_back(x);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(got[static_cast<std::size_t>(i)], i * i);
  std::set<int> un;
  for (int x : pool.imap_unordered(square, std::views::iota(0, 50), 4)) un.insert(x);
  EXPECT_EQ(un.size(), 50u);
}

TYPED_TEST(AnyPoolTest, CallbacksAndErrors) {
  TypeParam pool(2);
  std::atomic<int> ok{0}, bad{0};
  std::vector<mp::AsyncResult<int>> rs;
  for (int i = 0; i < 5; ++i)
    rs.push_back(pool.apply_async({.callback = [&](int) { ++ok; }, .error_callback = [&](std::exception_ptr) { ++bad; }},
                                  fail_on_two, i));
  for (auto& r : rs) r.wait();  // callbacks have run
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(bad.load(), 1);
  EXPECT_THROW(rs[2].get(), std::exception);
  EXPECT_FALSE(rs[2].successful());
  EXPECT_THROW(pool.map(fail_on_two, std::vector<int>{1, 2, 3}), std::exception);
}

TYPED_TEST(AnyPoolTest, MisuseAfterClose) {
  TypeParam pool(1);
  pool.close();
  EXPECT_THROW(pool.apply_async(square, 1), mp::ValueError);
  pool.join();
}

TEST(DummyPool, RunsCapturingLambdasAndRethrowsTheOriginalException) {
  mp::dummy::Pool pool(3);
  int offset = 100;
  auto out = pool.map([&](int x) { return x + offset; }, std::vector<int>{1, 2});
  EXPECT_EQ(out, (std::vector<int>{101, 102}));
  EXPECT_THROW(pool.apply(fail_on_two, 2), std::runtime_error);
}

TEST(DummyProcess, IsAThread) {
  std::atomic<bool> ran{false};
  mp::dummy::Process t([&](int v) { ran = v == 7; }, 7);
  EXPECT_FALSE(t.is_alive());
  t.start();
  EXPECT_TRUE(t.join(5s));
  EXPECT_TRUE(ran);
  EXPECT_EQ(t.exitcode(), 0);
  EXPECT_THROW(t.start(), mp::ValueError);
}

TEST(DummyQueue, PutGetTimeoutsJoin) {
  mp::dummy::Queue<std::unique_ptr<int>> q(1);  // move-only items: nothing is serialized
  q.put(std::make_unique<int>(5));
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put(std::make_unique<int>(6), 10ms), mp::Full);
  EXPECT_EQ(*q.get(), 5);
  EXPECT_THROW(q.get(10ms), mp::Empty);
  q.task_done();
  q.join();
  EXPECT_THROW(q.task_done(), mp::ValueError);
  q.put(std::make_unique<int>(7));  // get_into, as mp::Queue's
  std::unique_ptr<int> into;
  q.get_into(into);
  EXPECT_EQ(*into, 7);
  EXPECT_THROW(q.get_into(into, 10ms), mp::Empty);
  EXPECT_EQ(*into, 7);
}
