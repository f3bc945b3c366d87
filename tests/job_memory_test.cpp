// tests/job_memory_test.cpp — the memory of submitted work's bookkeeping
// (mp/detail/job_memory.hpp): blocks are distinct, aligned and reused; threads allocate
// and free each other's blocks; a child forked while another thread allocates can
// allocate (the lock is not inherited held); shared states made there work.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "mp/detail/job_memory.hpp"

namespace {

using mp::detail::job_memory;

TEST(JobMemory, BlocksAreDistinctAlignedAndWritable) {
  auto* r = job_memory();
  struct Block {
    void* p;
    std::size_t size, align;
  };
  std::vector<Block> blocks;
  std::set<std::uintptr_t> starts;
  for (std::size_t i = 0; i < 20000; ++i) {
    const std::size_t size = 1 + (i * 37) % 1200, align = std::size_t{1} << (i % 7);  // 1..64
    void* p = r->allocate(size, align);
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u);
    std::memset(p, static_cast<int>(i & 0xff), size);
    EXPECT_TRUE(starts.insert(reinterpret_cast<std::uintptr_t>(p)).second) << "block given twice";
    blocks.push_back({p, size, align});
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) {  // nobody wrote over another's block
    const auto* bytes = static_cast<const unsigned char*>(blocks[i].p);
    ASSERT_EQ(bytes[0], i & 0xff);
    ASSERT_EQ(bytes[blocks[i].size - 1], i & 0xff);
  }
  for (const Block& b : blocks) r->deallocate(b.p, b.size, b.align);
  void* big = r->allocate(1 << 20, 64);  // past the pooled sizes: the heap
  std::memset(big, 1, 1 << 20);
  r->deallocate(big, 1 << 20, 64);
}

TEST(JobMemory, FreedBlocksAreReused) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "under ASan job memory is the plain heap, whose freed blocks ASan keeps in quarantine";
#endif
  // Rounds of 1000 blocks made and freed: the memory stays at the peak, it does not grow
  // with the number of rounds.
  auto* r = job_memory();
  std::set<void*> seen;
  for (int round = 0; round < 100; ++round) {
    std::vector<void*> blocks;
    for (int i = 0; i < 1000; ++i) {
      blocks.push_back(r->allocate(96, 16));
      seen.insert(blocks.back());
    }
    for (void* p : blocks) r->deallocate(p, 96, 16);
  }
  EXPECT_LE(seen.size(), 3000u);
}

TEST(JobMemory, ThreadsFreeEachOthersBlocks) {
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::vector<std::shared_ptr<std::uint64_t>>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) made[t].push_back(mp::detail::make_job_shared<std::uint64_t>(t * kEach + i));
    });
  }
  for (auto& th : threads) th.join();
  threads.clear();
  std::atomic<std::uint64_t> sum{0};
  for (int t = 0; t < kThreads; ++t) {  // each thread drops another's
    threads.emplace_back([&, t] {
      std::uint64_t s = 0;
      for (auto& p : made[(t + 1) % kThreads]) s += *p;
      made[(t + 1) % kThreads].clear();
      sum += s;
    });
  }
  for (auto& th : threads) th.join();
  const std::uint64_t n = std::uint64_t{kThreads} * kEach;
  EXPECT_EQ(sum.load(), n * (n - 1) / 2);
}

TEST(JobMemory, AChildForkedWhileAThreadAllocatesCanAllocate) {
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      void* p = job_memory()->allocate(64, 8);
      job_memory()->deallocate(p, 64, 8);
    }
  });
  int status = 0;
  for (int i = 0; i < 50 && status == 0; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      alarm(10);  // a lock inherited held would hang here: the parent sees SIGALRM
      auto p = mp::detail::make_job_shared<int>(7);
      ::_exit(*p == 7 ? 0 : 1);
    }
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) status = -1;
  }
  stop = true;
  busy.join();
  EXPECT_EQ(status, 0) << "wait status " << status;
}

}  // namespace
