// src/job_memory.cpp — job_memory(): why and what in mp/detail/job_memory.hpp.
#include "mp/detail/job_memory.hpp"

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>

#include "mp/detail/sys.hpp"

namespace mp::detail {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kPlainHeap = true;  // ASan watches heap blocks, not blocks of a pool
#else
constexpr bool kPlainHeap = false;
#endif

constexpr std::size_t kHuge = std::size_t{2} << 20;
constexpr std::size_t kFirstChunk = std::size_t{256} << 10;  // mapped at the first submit: small
constexpr std::size_t kLargestPooled = 1024;                 // bigger blocks: the heap
constexpr std::size_t kPooledAlign = 16;                     // more aligned ones too
constexpr std::size_t kChunkAlign = 64;

// Where the pool resource's chunks come from: fresh anonymous mappings, populated in one
// call (MADV_POPULATE_WRITE: 1-2 us a page instead of a fault each), the first one small
// (the first submit of a program pays for it) and then doubling up to 2 MiB-aligned
// chunks of 2 MiB that transparent huge pages can back whole. Requests are carved from
// the current chunk; nothing is unmapped (the pool resource above never releases).
class Chunks final : public std::pmr::memory_resource {
 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    align = std::max(align, kChunkAlign);
    std::uintptr_t at = (next_ + align - 1) & ~(std::uintptr_t{align} - 1);
    if (at + bytes > end_) {  // also the first time: end_ == 0
      map_chunk(bytes + align);
      at = (next_ + align - 1) & ~(std::uintptr_t{align} - 1);
    }
    next_ = at + bytes;
    return reinterpret_cast<void*>(at);
  }
  void do_deallocate(void*, std::size_t, std::size_t) override {}
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }

  void map_chunk(std::size_t at_least) {
    std::size_t size = chunk_;
    chunk_ = std::min(chunk_ * 2, kHuge);
    if (at_least > size) size = (at_least + kHuge - 1) & ~(kHuge - 1);
    const bool huge = size % kHuge == 0;
    // A 2 MiB-aligned stretch: over-map by 2 MiB and cut the ends off.
    const std::size_t over = huge ? size + kHuge : size;
    void* p = ::mmap(nullptr, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    auto begin = reinterpret_cast<std::uintptr_t>(p);
    if (huge) {
      const std::uintptr_t aligned = (begin + kHuge - 1) & ~(std::uintptr_t{kHuge} - 1);
      if (aligned > begin) ::munmap(p, aligned - begin);
      const std::uintptr_t tail = aligned + size, over_end = begin + over;
      if (over_end > tail) ::munmap(reinterpret_cast<void*>(tail), over_end - tail);
      begin = aligned;
    }
    prefault(reinterpret_cast<void*>(begin), size, huge);
    next_ = begin;
    end_ = begin + size;
  }

  std::uintptr_t next_ = 0, end_ = 0;
  std::size_t chunk_ = kFirstChunk;
};

class JobMemory final : public std::pmr::memory_resource {
 public:
  std::mutex mu;  // locked across fork (atfork, below)

 private:
  // The pool's block sizes are multiples of 8 but not all of 16 (libstdc++ keeps no
  // stronger alignment than the block size gives), so a pooled request is rounded up to
  // a multiple of 16 — every block size it can land in is then one too, and chunks
  // start 64-aligned. Over-aligned and big requests go to the heap.
  static bool pooled(std::size_t bytes, std::size_t align) noexcept {
    return bytes <= kLargestPooled && align <= kPooledAlign;
  }
  static std::size_t rounded(std::size_t bytes) noexcept { return (bytes + kPooledAlign - 1) & ~(kPooledAlign - 1); }

  void* do_allocate(std::size_t bytes, std::size_t align) override {
    if (!pooled(bytes, align)) return ::operator new(bytes, std::align_val_t(align));
    std::lock_guard g(mu);
    return pool_.allocate(rounded(bytes), kPooledAlign);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    if (!pooled(bytes, align)) return ::operator delete(p, bytes, std::align_val_t(align));
    std::lock_guard g(mu);
    pool_.deallocate(p, rounded(bytes), kPooledAlign);
  }
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }

  Chunks chunks_;
  std::pmr::unsynchronized_pool_resource pool_{
      std::pmr::pool_options{.max_blocks_per_chunk = 4096, .largest_required_pool_block = kLargestPooled},
      &chunks_};
};

// Namespace scope, never destroyed (results may be dropped during static destruction),
// never a guarded local static (a fork in the middle of its initialization would leave
// the guard held in the child).
alignas(JobMemory) std::byte g_storage[sizeof(JobMemory)];
JobMemory* const g_job_memory = [] {
  auto* m = new (g_storage) JobMemory;
  ::pthread_atfork([] { g_job_memory->mu.lock(); }, [] { g_job_memory->mu.unlock(); },
                   [] { g_job_memory->mu.unlock(); });
  return m;
}();

}  // namespace

std::pmr::memory_resource* job_memory() noexcept {
  if constexpr (kPlainHeap) return std::pmr::new_delete_resource();
  return g_job_memory ? g_job_memory : std::pmr::new_delete_resource();  // null: static init order
}

}  // namespace mp::detail
