// tests/queues_test.cpp — Queue, SimpleQueue, JoinableQueue: the API, every start
// method, items larger than the ring, MPMC stress with exactly-once checks, and
// processes SIGKILLed in the middle of put and get.
#include <atomic>
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <mp/mp.hpp>
#include <numeric>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "test_util.hpp"

using namespace std::chrono_literals;
using mp_test::StartMethodTest;

namespace {

// What is in /dev/shm, but the shared-memory tests' own segments (mpt_*), which tests
// running at the same time (ctest -j) create and remove.
std::set<std::string> dev_shm() {
  std::set<std::string> names;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d))
      if (std::string_view(e->d_name).substr(0, 4) != "mpt_") names.insert(e->d_name);
    closedir(d);
  }
  return names;
}

struct Unserializable {
  int x = 0;
  template <class A>
  void save(A&) const {
    throw std::runtime_error("this item refuses to be serialized");
  }
  template <class A>
  void load(A&) {}
};

// A big item whose content can be checked: `n` bytes of a pattern seeded by `id`.
std::string pattern(int id, std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (id * 7 + static_cast<int>(i)) % 26);
  return s;
}
bool intact(const std::pair<int, std::string>& item) { return item.second == pattern(item.first, item.second.size()); }

void put_range(mp::Queue<int> q, int from, int to) {
  for (int i = from; i < to; ++i) q.put(i);
}

void produce_tagged(mp::Queue<std::pair<int, int>> q, int producer, int n) {
  for (int i = 0; i < n; ++i) q.put({producer, i});
}

// Takes items until it gets {-1, -1}; reports what it took.
void consume_tagged(mp::Queue<std::pair<int, int>> q, mp::Queue<std::vector<std::pair<int, int>>> report) {
  std::vector<std::pair<int, int>> got;
  for (;;) {
    auto item = q.get();
    if (item.first < 0) break;
    got.push_back(item);
  }
  report.put(got);
}

void child_to_child_producer(mp::Queue<std::string> q) { q.put("Data from producer"); }
void child_to_child_consumer(mp::Queue<std::string> q, mp::Queue<std::string> out) {
  out.put("Consumer got: " + q.get());
}

void put_big_forever(mp::Queue<std::pair<int, std::string>> q, std::size_t size) {
  for (int id = 0;; ++id) q.put({id, pattern(id, size)});
}

void get_slowly_forever(mp::Queue<std::pair<int, std::string>> q) {
  for (;;) {
    auto item = q.get();
    if (!intact(item)) std::_Exit(3);
  }
}

void put_counting_forever(mp::Queue<std::uint64_t> q) {
  for (std::uint64_t i = 0;; ++i) q.put(i);
}

void get_forever(mp::Queue<std::uint64_t> q) {
  for (;;) q.get();
}

void joinable_worker(mp::JoinableQueue<int> jq, mp::Queue<int> results) {
  for (;;) {
    int x = jq.get();
    if (x < 0) {
      jq.task_done();
      return;
    }
    results.put(x * x);
    jq.task_done();
  }
}

}  // namespace

TEST(Queue, PutThenGetKeepsOrder) {
  mp::Queue<int> q;
  for (int i = 0; i < 1000; ++i) q.put(i);
  EXPECT_EQ(q.qsize(), 1000u);
  EXPECT_FALSE(q.empty());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(q.get(), i);
  EXPECT_TRUE(q.empty());
}

TEST(Queue, CopiesOfAHandleReachTheSameQueue) {
  mp::Queue<std::string> q;
  auto copy = q;
  copy.put("shared");
  EXPECT_EQ(q.get(), "shared");
}

TEST(Queue, GetTimesOutWithEmpty) {
  mp::Queue<int> q;
  EXPECT_THROW(q.get_nowait(), mp::Empty);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(q.get(50ms), mp::Empty);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
}

TEST(Queue, MaxsizeMakesPutWaitAndRaiseFull) {
  mp::Queue<int> q(2);
  q.put(1);
  q.put_nowait(2);
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait(3), mp::Full);
  EXPECT_THROW(q.put(3, 30ms), mp::Full);
  EXPECT_EQ(q.get(), 1);
  q.put_nowait(3);
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.get(), 3);
}

TEST(Queue, ABadItemRaisesInPutAndLeavesTheQueueAlone) {
  mp::Queue<std::vector<Unserializable>> q;
  q.put({});
  EXPECT_THROW(q.put(std::vector<Unserializable>(1)), std::runtime_error);
  q.put({});
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_TRUE(q.get().empty());
  EXPECT_TRUE(q.get().empty());
}

TEST(Queue, AClosedHandleRefusesToPut) {
  mp::Queue<int> q;
  auto other = q;
  q.close();
  EXPECT_THROW(q.put(1), mp::ValueError);
  other.put(1);  // other handles are not affected
  EXPECT_EQ(other.get(), 1);
  q.join_thread();
  q.cancel_join_thread();
}

TEST(Queue, ItemsLargerThanTheRingStreamThrough) {
  mp::Queue<std::pair<int, std::string>> q(mp::QueueOptions{.capacity_bytes = 4096});
  std::thread producer([q]() mutable {
    for (int id = 0; id < 20; ++id) q.put({id, pattern(id, 100'000 + static_cast<std::size_t>(id))});
  });
  for (int id = 0; id < 20; ++id) {
    auto item = q.get();
    EXPECT_EQ(item.first, id);
    EXPECT_EQ(item.second.size(), 100'000u + static_cast<std::size_t>(id));
    EXPECT_TRUE(intact(item));
  }
  producer.join();
}

// An item that refuses to be loaded (its load() throws before reading its bytes).
struct Refusing {
  bool refuse = false;
  std::vector<unsigned char> bytes;
  template <class A>
  void save(A& ar) const {
    ar(refuse, bytes);
  }
  template <class A>
  void load(A& ar) {
    ar(refuse);
    if (refuse) throw std::runtime_error("this item refuses to be loaded");
    ar(bytes);
  }
};

std::vector<unsigned char> byte_pattern(std::size_t n, unsigned seed) {
  std::vector<unsigned char> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>((i * 31 + seed) >> 3);
  return v;
}

// Large items are decoded as they stream (straight into the vector) and written from the
// value's own memory: whole and in order through rings smaller and larger than them, and
// a consumer whose decoding throws in the middle of a streamed item takes it all the
// same (the rest is skipped while its writer is still streaming it): the next is whole.
TEST(Queue, LargeItemsStreamIntoTheirValuesAndADecodingErrorSkipsTheRest) {
  for (std::size_t ring : {std::size_t{16} << 10, std::size_t{4} << 20}) {
    mp::Queue<Refusing> q(mp::QueueOptions{.capacity_bytes = ring});
    std::thread producer([q]() mutable {
      for (unsigned i = 0; i < 6; ++i) q.put(Refusing{i % 3 == 1, byte_pattern((std::size_t{1} << 20) + i, i)});
    });
    for (unsigned i = 0; i < 6; ++i) {
      if (i % 3 == 1) {
        EXPECT_THROW(q.get(10s), std::runtime_error) << "ring " << ring << ", item " << i;
        continue;
      }
      const Refusing item = q.get(10s);
      EXPECT_EQ(item.bytes, byte_pattern((std::size_t{1} << 20) + i, i)) << "ring " << ring << ", item " << i;
    }
    producer.join();
    EXPECT_EQ(q.qsize(), 0u);
  }
}

TEST(Queue, GetIntoFillsTheCallersValueInPlace) {
  for (std::size_t ring : {std::size_t{16} << 10, std::size_t{4} << 20}) {  // streamed, then whole
    mp::Queue<std::vector<unsigned char>> q(mp::QueueOptions{.capacity_bytes = ring});
    const std::size_t sizes[] = {std::size_t{1} << 20, std::size_t{300} << 10, (std::size_t{1} << 20) - 3, 0};
    std::thread producer([q, &sizes]() mutable {
      unsigned seed = 0;
      for (std::size_t n : sizes) {
        std::vector<unsigned char> v(n);
        for (auto& b : v) b = static_cast<unsigned char>(seed++ * 7 + 1);
        q.put(v);
      }
    });
    std::vector<unsigned char> into;
    const unsigned char* buffer = nullptr;
    unsigned seed = 0;
    for (std::size_t n : sizes) {
      q.get_into(into, 10s);
      ASSERT_EQ(into.size(), n) << "ring " << ring;
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_EQ(into[i], static_cast<unsigned char>(seed++ * 7 + 1)) << "ring " << ring << ", byte " << i;
      if (!buffer) buffer = into.data();
      // No item is larger than the first: its buffer serves them all.
      EXPECT_EQ(into.data(), buffer) << "ring " << ring << ": get_into allocated anew";
    }
    producer.join();
    // Empty: mp::Empty, and the value is left as it was.
    into.assign(5, 9);
    EXPECT_THROW(q.get_into(into, 10ms), mp::Empty);
    EXPECT_EQ(into, std::vector<unsigned char>(5, 9));
  }
  mp::Queue<std::int64_t> numbers;  // a bitwise item is copied straight into the value
  numbers.put(-42);
  std::int64_t x = 0;
  numbers.get_into(x);
  EXPECT_EQ(x, -42);
  mp::Queue<std::string> strings;  // any type: a string, a struct's members...
  strings.put("hello");
  std::string s(100, 'z');
  strings.get_into(s);
  EXPECT_EQ(s, "hello");
  strings.close();
  EXPECT_THROW(strings.get_into(s), mp::ValueError);
}

// A plain struct travels as its bytes: whole (one move) when it fits in the ring, in
// pieces when it is larger (copied piece by piece into the value), and the two kinds
// interleave.
TEST(Queue, BitwiseItemsSmallerAndLargerThanTheRingArriveIntact) {
  struct Block {
    std::uint64_t words[4096];  // 32 KiB: twice the ring below
  };
  struct Pair {
    std::int32_t a;
    double b;
  };
  mp::Queue<Block> blocks(mp::QueueOptions{.capacity_bytes = 16 << 10});
  mp::Queue<Pair> pairs(mp::QueueOptions{.capacity_bytes = 16 << 10});
  std::thread producer([blocks, pairs]() mutable {
    auto block = std::make_unique<Block>();
    for (std::uint64_t i = 0; i < 20; ++i) {
      for (std::uint64_t w = 0; w < 4096; ++w) block->words[w] = i * 10'000 + w;
      blocks.put(*block);
      pairs.put(Pair{static_cast<std::int32_t>(i), static_cast<double>(i) / 4});
    }
  });
  auto block = std::make_unique<Block>();
  for (std::uint64_t i = 0; i < 20; ++i) {
    blocks.get_into(*block);
    std::uint64_t wrong = 0;
    for (std::uint64_t w = 0; w < 4096; ++w) wrong += block->words[w] != i * 10'000 + w;
    EXPECT_EQ(wrong, 0u) << "block " << i;
    const Pair p = pairs.get();
    EXPECT_EQ(p.a, static_cast<std::int32_t>(i));
    EXPECT_EQ(p.b, static_cast<double>(i) / 4);
  }
  producer.join();
}

TEST(Queue, SmallAndLargeItemsInterleave) {
  mp::Queue<std::string> q(mp::QueueOptions{.capacity_bytes = 8192});
  std::thread producer([q]() mutable {
    for (int i = 0; i < 200; ++i) q.put(i % 10 == 0 ? std::string(50'000, 'x') : std::to_string(i));
  });
  for (int i = 0; i < 200; ++i) EXPECT_EQ(q.get(), i % 10 == 0 ? std::string(50'000, 'x') : std::to_string(i));
  producer.join();
}

TEST(Queue, ThreadsAsManyProducersAndConsumers) {
  mp::Queue<std::pair<int, int>> q(mp::QueueOptions{.maxsize = 100, .capacity_bytes = 4096});
  constexpr int kProducers = 3, kPer = 5000;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p)
    producers.emplace_back([q, p]() mutable {
      for (int i = 0; i < kPer; ++i) q.put({p, i});
    });
  std::vector<std::vector<std::pair<int, int>>> got(2);
  std::vector<std::thread> consumers;
  for (int c = 0; c < 2; ++c)
    consumers.emplace_back([q, &got, c]() mutable {
      for (;;) {
        auto item = q.get();
        if (item.first < 0) return;
        got[static_cast<std::size_t>(c)].push_back(item);
      }
    });
  for (auto& t : producers) t.join();
  q.put({-1, 0});
  q.put({-1, 0});
  for (auto& t : consumers) t.join();
  std::vector<std::pair<int, int>> all;
  for (auto& g : got) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kProducers * kPer));
  for (int p = 0; p < kProducers; ++p)
    for (int i = 0; i < kPer; ++i) EXPECT_EQ(all[static_cast<std::size_t>(p * kPer + i)], std::make_pair(p, i));
}

TEST(JoinableQueue, TaskDoneAndJoin) {
  mp::JoinableQueue<int> jq;
  jq.put(1);
  jq.put(2);
  EXPECT_FALSE(jq.join(20ms));
  jq.get();
  jq.task_done();
  EXPECT_FALSE(jq.join(20ms));
  jq.get();
  jq.task_done();
  EXPECT_TRUE(jq.join(1s));
  EXPECT_THROW(jq.task_done(), mp::ValueError);
}

TEST(SimpleQueue, PutGetEmpty) {
  mp::SimpleQueue<std::string> q;
  EXPECT_TRUE(q.empty());
  q.put("x");
  EXPECT_FALSE(q.empty());
  EXPECT_EQ(q.get(), "x");
}

// ---- across processes ---------------------------------------------------------------

class QueueProcessTest : public StartMethodTest {
 protected:
  void SetUp() override { shm_before_ = dev_shm(); }
  void TearDown() override {
    StartMethodTest::TearDown();
    EXPECT_EQ(dev_shm(), shm_before_) << "a queue left something in /dev/shm";
  }
  std::set<std::string> shm_before_;
};
MP_INSTANTIATE_FOR_START_METHODS(QueueProcessTest);

TEST_P(QueueProcessTest, AChildPutsAndTheParentGets) {
  mp::Queue<int> q(10);
  auto p = ctx().Process(put_range, q, 0, 1000);
  p.start();
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(q.get(5s), i);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(QueueProcessTest, ItemsPutBeforeAProducerExitsAreAllDelivered) {
  mp::Queue<int> q;
  auto p = ctx().Process(put_range, q, 0, 5000);
  p.start();
  p.join();  // joined before anything is read: nothing may be lost
  EXPECT_EQ(q.qsize(), 5000u);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(q.get_nowait(), i);
}

TEST_P(QueueProcessTest, ChildToChild) {
  mp::Queue<std::string> q, out;
  auto producer = ctx().Process(child_to_child_producer, q);
  auto consumer = ctx().Process(child_to_child_consumer, q, out);
  producer.start();
  consumer.start();
  EXPECT_EQ(out.get(10s), "Consumer got: Data from producer");
  producer.join();
  consumer.join();
}

TEST_P(QueueProcessTest, ManyProducersAndConsumersDeliverEachItemExactlyOnce) {
  constexpr int kProducers = 3, kConsumers = 2, kPer = 4000;
  mp::Queue<std::pair<int, int>> q(mp::QueueOptions{.maxsize = 256, .capacity_bytes = 8192});
  mp::Queue<std::vector<std::pair<int, int>>> reports;
  std::vector<mp::Process> ps;
  for (int c = 0; c < kConsumers; ++c) ps.push_back(ctx().Process(consume_tagged, q, reports));
  for (int p = 0; p < kProducers; ++p) ps.push_back(ctx().Process(produce_tagged, q, p, kPer));
  for (auto& p : ps) p.start();
  for (int p = kConsumers; p < kConsumers + kProducers; ++p) ps[static_cast<std::size_t>(p)].join();
  for (int c = 0; c < kConsumers; ++c) q.put({-1, -1});
  std::vector<std::pair<int, int>> all;
  for (int c = 0; c < kConsumers; ++c) {
    auto r = reports.get(30s);
    all.insert(all.end(), r.begin(), r.end());
  }
  for (auto& p : ps) p.join();
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kProducers * kPer));
  for (int p = 0; p < kProducers; ++p)
    for (int i = 0; i < kPer; ++i) ASSERT_EQ(all[static_cast<std::size_t>(p * kPer + i)], std::make_pair(p, i));
}

TEST_P(QueueProcessTest, JoinableQueueAcrossProcesses) {
  mp::JoinableQueue<int> jq;
  mp::Queue<int> results;
  auto p = ctx().Process(joinable_worker, jq, results);
  p.start();
  for (int i = 1; i <= 10; ++i) jq.put(i);
  jq.put(-1);
  EXPECT_TRUE(jq.join(10s));
  int sum = 0;
  for (int i = 0; i < 10; ++i) sum += results.get(5s);
  EXPECT_EQ(sum, 385);
  p.join();
}

// A producer SIGKILLed at a random point while streaming items larger than the ring:
// the consumer gets only whole items, never hangs, and the queue keeps working.
TEST_P(QueueProcessTest, AProducerKilledMidPutDoesNotWedgeTheQueue) {
  for (int round = 0; round < 3; ++round) {
    mp::Queue<std::pair<int, std::string>> q(mp::QueueOptions{.capacity_bytes = 16384});
    auto p = ctx().Process(put_big_forever, q, std::size_t{100'000});
    p.start();
    int taken = 0;
    for (int i = 0; i < 3; ++i) {
      auto item = q.get(10s);
      ASSERT_TRUE(intact(item));
      ++taken;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(300 * round));
    p.kill();
    p.join();
    try {
      for (;;) {
        auto item = q.get(500ms);
        EXPECT_TRUE(intact(item)) << "a torn item came out of the queue";
      }
    } catch (const mp::Empty&) {
    }
    q.put({7, pattern(7, 5000)});  // fits the ring: no consumer runs meanwhile
    auto after = q.get(5s);
    EXPECT_EQ(after.first, 7);
    EXPECT_TRUE(intact(after));
  }
}

// A producer or a consumer of small items, alone on its side (so on the locks' biased
// fast path) and never waiting (the ring is never full for the producer, never empty for
// the consumer), SIGKILLed at an arbitrary instruction of put() or get(), round after
// round: the next users find every item left exactly once and in order, and the count
// exact once both sides were repaired (three puts after the drain count 3, and 0 once
// taken). A kill between "counted" and "published" (or "taken") that the repair does not
// see would leave the count one off for good: 4 or 2 there. The window is a few
// instructions of a hundred, hence the many rounds.
TEST(Queue, CountsStayExactWhenAProducerOrAConsumerIsKilledAnywhere) {
  constexpr int kRounds = 300;
  constexpr std::uint64_t kPrefill = 20'000;  // a few milliseconds of get()s
  std::uint64_t seed = 12345;
  auto next_random = [&seed] { return (seed = seed * 6364136223846793005u + 1442695040888963407u) >> 33; };
  mp::Queue<std::uint64_t> q(mp::QueueOptions{.maxsize = 0, .capacity_bytes = std::size_t{4} << 20});
  for (int round = 0; round < kRounds; ++round) {
    const bool kill_consumer = round % 2 == 0;
    if (kill_consumer)
      for (std::uint64_t i = 0; i < kPrefill; ++i) q.put(i);
    mp::Process victim = kill_consumer ? mp::Process(get_forever, q) : mp::Process(put_counting_forever, q);
    victim.start();
    // Once it is at work (it took or put an item), a moment later.
    const auto started = std::chrono::steady_clock::now();
    while ((kill_consumer ? q.qsize() == kPrefill : q.qsize() == 0) && std::chrono::steady_clock::now() - started < 5s)
      std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(next_random() % 1000));
    victim.kill();
    victim.join();

    // Take what is left. The first get() waits out (and repairs) a consumer killed inside
    // its lock; after it this thread is the only user, so get_nowait()'s Empty is true.
    std::vector<std::uint64_t> left;
    try {
      left.push_back(q.get(100ms));
      for (;;) left.push_back(q.get_nowait());
    } catch (const mp::Empty&) {
    }
    for (std::size_t i = 1; i < left.size(); ++i)
      ASSERT_EQ(left[i], left[i - 1] + 1) << "round " << round << ": an item came out twice, or was lost";
    if (kill_consumer && !left.empty()) ASSERT_EQ(left.back(), kPrefill - 1) << "round " << round;
    if (!kill_consumer && !left.empty()) ASSERT_EQ(left.front(), 0u) << "round " << round;
    // (Until a put() repairs after it, a producer killed inside put() may still count
    // for one: qsize() is only exact once both sides were repaired.)
    for (std::uint64_t i = 0; i < 3; ++i) q.put(i);
    ASSERT_EQ(q.qsize(), 3u) << "round " << round;
    for (std::uint64_t i = 0; i < 3; ++i) ASSERT_EQ(q.get(1s), i);
    ASSERT_EQ(q.qsize(), 0u) << "round " << round;
  }
}

// A consumer SIGKILLed while taking a streamed item (its producer is stopped in the
// middle of that item, so the consumer is caught mid-get): the producer is not blocked,
// and the next consumer gets whole items.
TEST_P(QueueProcessTest, AConsumerKilledMidGetDoesNotWedgeTheQueue) {
  mp::Queue<std::pair<int, std::string>> q(mp::QueueOptions{.capacity_bytes = 16384});
  auto consumer = ctx().Process(get_slowly_forever, q);
  auto producer = ctx().Process(put_big_forever, q, std::size_t{100'000});
  consumer.start();
  producer.start();
  std::this_thread::sleep_for(100ms);
  ::kill(*producer.pid(), SIGSTOP);
  std::this_thread::sleep_for(50ms);
  consumer.kill();
  consumer.join();
  EXPECT_EQ(consumer.exitcode(), -SIGKILL) << "the consumer saw a torn item (exit 3)";
  ::kill(*producer.pid(), SIGCONT);
  int last = -1;
  for (int i = 0; i < 5; ++i) {
    auto item = q.get(10s);
    EXPECT_TRUE(intact(item));
    EXPECT_GT(item.first, last);
    last = item.first;
  }
  producer.kill();
  producer.join();
}

TEST(Queue, TravelsOverAConnection) {
  auto [a, b] = mp::Pipe();
  mp::Queue<std::string> q;
  a.send(q);
  auto q2 = b.recv<mp::Queue<std::string>>();
  q2.put("through the socket");
  EXPECT_EQ(q.get(1s), "through the socket");
  a.send(q);
  EXPECT_THROW(b.recv<mp::Queue<int>>(), mp::SerializationError) << "a queue of another type is refused";
}

// A thread that holds a lock's bias keeps what it last left of the ring's state in its
// slot and skips reading the shared word: the producer its tail and count, the consumer
// its head and count (shm_queue: try_put_fast, try_get_fast). Whatever else moves them
// in between — a streamed put or get by the same thread, through another handle of the
// same queue (an object of its own), or another thread's put or get, which revokes the
// bias — must make the next fast one read them again: every item arrives once, whole,
// and in order per producer and consumer.
TEST(Queue, TheSameThreadThroughOtherHandlesAndPathsKeepsEveryItem) {
  mp::Queue<std::string> q(mp::QueueOptions{.capacity_bytes = 16 << 10});
  auto [a, b] = mp::Pipe();
  a.send(q);
  // A handle of its own (its own caches of the other side's position), on the same
  // mapping: a process maps a queue's memory once (shared_mapping.hpp).
  auto other = b.recv<mp::Queue<std::string>>();
  constexpr int kItems = 3000, kSecond = kItems / 10;
  auto item = [](int producer, int i) {
    // Every 97th item is larger than the ring: it streams through put_slow and get_slow.
    const std::size_t n = i % 97 == 0 ? std::size_t{40} << 10 : 8 + static_cast<std::size_t>(i % 13);
    return std::to_string(producer) + ":" + std::to_string(i) + ":" + std::string(n, static_cast<char>('a' + i % 26));
  };
  // The first half with one producer and one consumer thread (each keeps its bias), then
  // a second of each joins in.
  std::atomic<bool> halfway{false};
  std::atomic<bool> stuck{false};  // a put that found no room for 10 s (a broken ring)
  std::thread main_producer([&, q, other]() mutable {
    try {
      for (int i = 0; i < kItems; ++i) {
        ((i / 7) % 3 == 2 ? other : q).put(item(0, i), 10s);
        if (i == kItems / 2) halfway = true;
      }
    } catch (const mp::Full&) {
      stuck = true;
    }
    halfway = true;
  });
  std::thread second_producer([&, q]() mutable {
    while (!halfway) std::this_thread::sleep_for(1ms);
    try {
      for (int i = 0; i < kSecond; ++i) {
        q.put(item(1, i), 10s);
        std::this_thread::sleep_for(std::chrono::microseconds(i % 5 == 0 ? 200 : 0));
      }
    } catch (const mp::Full&) {
      stuck = true;
    }
  });
  // What each consumer took: (producer, index) in the order taken; an item not made by
  // item() is a failure.
  struct Taken {
    std::vector<std::pair<int, int>> items;
    std::string wrong;
  };
  std::atomic<int> left{kItems + kSecond};
  auto consume = [&](Taken& t, mp::Queue<std::string> h1, mp::Queue<std::string> h2, bool second) {
    try {
      auto progress = std::chrono::steady_clock::now();
      for (int n = 0; left.load() > 0; ++n) {
        if (second && !halfway) {
          std::this_thread::sleep_for(1ms);
          continue;
        }
        std::string got;
        try {
          got = ((n / 5) % 3 == 1 ? h2 : h1).get(50ms);  // short: the other may take the last one
        } catch (const mp::Empty&) {
          if (std::chrono::steady_clock::now() - progress > 10s) throw;
          continue;
        }
        progress = std::chrono::steady_clock::now();
        --left;
        const auto c1 = got.find(':'), c2 = got.find(':', c1 + 1);
        const int producer = std::stoi(got.substr(0, c1)), i = std::stoi(got.substr(c1 + 1, c2 - c1 - 1));
        if (got != item(producer, i)) t.wrong = "not an item: " + got.substr(0, 40);
        t.items.emplace_back(producer, i);
        if (second) std::this_thread::sleep_for(std::chrono::microseconds(300));
      }
    } catch (const std::exception& e) {
      t.wrong = std::string("gave up: ") + e.what();
    }
  };
  Taken first, second;
  std::thread second_consumer([&, q, other] { consume(second, other, q, true); });
  consume(first, q, other, false);
  main_producer.join();
  second_producer.join();
  second_consumer.join();
  ASSERT_EQ(first.wrong, "");
  ASSERT_EQ(second.wrong, "");
  EXPECT_FALSE(stuck);
  std::vector<std::pair<int, int>> all;
  for (const Taken* t : {&first, &second}) {
    int last[2] = {-1, -1};
    for (auto [p, i] : t->items) {
      EXPECT_LT(last[p], i) << "out of order for one consumer: producer " << p << ", item " << i;
      last[p] = i;
      all.emplace_back(p, i);
    }
  }
  std::sort(all.begin(), all.end());
  std::vector<std::pair<int, int>> expected;
  for (int i = 0; i < kItems; ++i) expected.emplace_back(0, i);
  for (int i = 0; i < kSecond; ++i) expected.emplace_back(1, i);
  EXPECT_EQ(all, expected) << "every item taken exactly once";
  EXPECT_GT(second.items.size(), 0u);
  EXPECT_EQ(q.qsize(), 0u);
}
