// tests/futures_test.cpp — ProcessPoolExecutor, ThreadPoolExecutor, Future, as_completed,
// wait: the API, cancellation, a worker's death under every start method.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <list>
#include <mp/futures.hpp>
#include <mp/mp.hpp>
#include <set>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using mp_test::StartMethodTest;

namespace {
int square(int x) { return x * x; }
int slow_square(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10 * (10 - x)));
  return x * x;
}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int boom(int) { throw std::out_of_range("boom"); }
int kill_self(int) {
  ::raise(SIGKILL);
  return 0;
}
}  // namespace

TEST(ProcessPoolExecutor, SubmitResultAndAsCompleted) {
  mp::ProcessPoolExecutor ex(3);
  std::vector<mp::Future<int>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(ex.submit(slow_square, i));
  std::multiset<int> got;
  for (auto& f : mp::as_completed(fs, 20s)) {
    EXPECT_TRUE(f.done());
    got.insert(f.result());
  }
  EXPECT_EQ(got, (std::multiset<int>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81}));
  EXPECT_EQ(fs[3].result(1s), 9);
  EXPECT_EQ(fs[3].exception(), nullptr);
  ex.shutdown();
  EXPECT_THROW(ex.submit(square, 1), mp::ValueError);
}

TEST(ProcessPoolExecutor, ErrorsAndTimeouts) {
  mp::ProcessPoolExecutor ex(1);
  auto bad = ex.submit(boom, 1);
  EXPECT_THROW(bad.result(), mp::RemoteError);
  try {
    std::rethrow_exception(bad.exception());
  } catch (const mp::RemoteError& e) {
    EXPECT_EQ(e.type_name(), "std::out_of_range");
  }
  auto slow = ex.submit(sleep_ms, 300);
  EXPECT_THROW(slow.result(10ms), mp::TimeoutError);
  EXPECT_EQ(slow.result(), 300);
}

TEST(ProcessPoolExecutor, CancelWithdrawsOnlyWhatHasNotStarted) {
  mp::ProcessPoolExecutor ex(1);
  auto running = ex.submit(sleep_ms, 300);
  auto queued = ex.submit(square, 5);
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(running.running());
  EXPECT_FALSE(running.cancel());
  EXPECT_TRUE(queued.cancel());
  EXPECT_TRUE(queued.cancelled());
  EXPECT_TRUE(queued.done());
  EXPECT_THROW(queued.result(), mp::CancelledError);
  EXPECT_EQ(running.result(), 300);
  EXPECT_EQ(ex.submit(square, 6).result(), 36);  // the cancelled task was skipped, not run
}

TEST(ProcessPoolExecutor, ShutdownCancelFutures) {
  mp::ProcessPoolExecutor ex(1);
  auto running = ex.submit(sleep_ms, 200);
  std::vector<mp::Future<int>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(ex.submit(square, i));
  std::this_thread::sleep_for(50ms);
  ex.shutdown(true, true);
  EXPECT_EQ(running.result(), 200);
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
}

TEST(ProcessPoolExecutor, MapInOrderWithChunks) {
  mp::ProcessPoolExecutor ex(2);
  std::vector<int> in{1, 2, 3, 4, 5, 6, 7};
  for (std::size_t chunk : {1u, 3u}) {
    std::vector<int> out;
    for (int y : ex.map(square, in, 10s, chunk)) out.push_back(y);
    EXPECT_EQ(out, (std::vector<int>{1, 4, 9, 16, 25, 36, 49}));
  }
  auto it = ex.map(sleep_ms, std::vector<int>{500}, 50ms);
  EXPECT_THROW(for (int x : it) (void)x, mp::TimeoutError);
}

int fail_on_seven(int x) {
  if (x == 7) throw std::out_of_range("seven");
  return x;
}

TEST(ProcessPoolExecutor, ChunkedMapRaisesAtTheFailedChunkAfterTheEarlierResults) {
  mp::ProcessPoolExecutor ex(2);
  std::list<int> in;  // not contiguous: copied once, then chunked
  for (int i = 0; i < 20; ++i) in.push_back(i);
  std::vector<int> out;
  try {
    for (int y : ex.map(fail_on_seven, in, 10s, 4)) out.push_back(y);
    ADD_FAILURE() << "no error";
  } catch (const mp::RemoteError& e) {
    EXPECT_EQ(e.type_name(), "std::out_of_range");
  }
  EXPECT_EQ(out, (std::vector<int>{0, 1, 2, 3}));  // chunk 4..7 failed as a whole
}

TEST(ProcessPoolExecutor, ShutdownWithCancelFuturesWithdrawsQueuedChunks) {
  mp::ProcessPoolExecutor ex(1);
  auto busy = ex.submit(sleep_ms, 300);
  std::vector<int> in(100, 1);
  auto results = ex.map(square, in, std::nullopt, 10);
  std::this_thread::sleep_for(50ms);
  ex.shutdown(true, true);
  EXPECT_EQ(busy.result(), 300);
  EXPECT_THROW(for (int y : results) (void)y, mp::CancelledError);
}

TEST(Futures, WaitReturnWhen) {
  mp::ProcessPoolExecutor ex(2);
  std::vector<mp::Future<int>> fs{ex.submit(sleep_ms, 10), ex.submit(sleep_ms, 800)};
  auto [done, not_done] = mp::wait(fs, 5s, mp::FIRST_COMPLETED);
  EXPECT_EQ(done.size(), 1u);
  EXPECT_EQ(not_done.size(), 1u);
  auto all = mp::wait(fs);
  EXPECT_EQ(all.done.size(), 2u);
  std::vector<mp::Future<int>> gs{ex.submit(boom, 0), ex.submit(sleep_ms, 800)};
  auto first_error = mp::wait(gs, 5s, mp::FIRST_EXCEPTION);
  EXPECT_EQ(first_error.done.size(), 1u);
  auto timed = mp::wait(std::vector<mp::Future<int>>{ex.submit(sleep_ms, 500)}, 10ms);
  EXPECT_EQ(timed.not_done.size(), 1u);
}

TEST(Futures, AsCompletedTimesOut) {
  mp::ProcessPoolExecutor ex(1);
  std::vector<mp::Future<int>> fs{ex.submit(sleep_ms, 500)};
  EXPECT_THROW(
      {
        for (auto& f : mp::as_completed(fs, 20ms)) (void)f;
      },
      mp::TimeoutError);
}

TEST(Futures, AddDoneCallback) {
  mp::ProcessPoolExecutor ex(1);
  auto f = ex.submit(square, 4);
  std::atomic<int> seen{0};
  f.add_done_callback([&](mp::Future<int> g) { seen = g.result(); });
  f.result();
  for (int i = 0; i < 100 && seen == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(seen.load(), 16);
  std::atomic<int> late{0};
  f.add_done_callback([&](mp::Future<int> g) { late = g.result(); });  // already done: at once
  EXPECT_EQ(late.load(), 16);
}

class ExecutorDeathTest : public StartMethodTest {};
MP_INSTANTIATE_FOR_START_METHODS(ExecutorDeathTest);

TEST_P(ExecutorDeathTest, ADeadWorkerBreaksOnlyItsFuture) {
  mp::ProcessPoolExecutor ex({.max_workers = 2, .mp_context = ctx()});
  std::vector<mp::Future<int>> others;
  for (int i = 0; i < 10; ++i) others.push_back(ex.submit(square, i));
  auto doomed = ex.submit(kill_self, 0);
  EXPECT_THROW(doomed.result(10s), mp::BrokenProcessPool);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(others[static_cast<std::size_t>(i)].result(10s), i * i);
  EXPECT_EQ(ex.submit(square, 9).result(10s), 81) << "the executor stays usable";
  ex.shutdown();
}

TEST(ThreadPoolExecutor, AnyCallableAndItsOwnExceptions) {
  mp::ThreadPoolExecutor ex(4);
  int base = 10;
  auto f = ex.submit([&base](int x) { return base + x; }, 5);
  EXPECT_EQ(f.result(), 15);
  auto g = ex.submit([] { throw std::logic_error("mine"); });
  EXPECT_THROW(g.result(), std::logic_error);
  std::vector<mp::Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(ex.submit(square, i));
  int n = 0;
  for (auto& d : mp::as_completed(fs)) n += d.done();
  EXPECT_EQ(n, 20);
  std::vector<int> out;
  for (int y : ex.map([](int x) { return -x; }, std::vector<int>{1, 2, 3})) out.push_back(y);
  EXPECT_EQ(out, (std::vector<int>{-1, -2, -3}));
}

TEST(ThreadPoolExecutor, CancelAndShutdown) {
  mp::ThreadPoolExecutor ex(1);
  auto running = ex.submit(sleep_ms, 200);
  auto queued = ex.submit(square, 3);
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(running.running());
  EXPECT_FALSE(running.cancel());
  EXPECT_TRUE(queued.cancel());
  EXPECT_THROW(queued.result(), mp::CancelledError);
  ex.shutdown();
  EXPECT_EQ(running.result(), 200);
  EXPECT_THROW(ex.submit(square, 1), mp::ValueError);
}
