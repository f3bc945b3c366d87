// src/queues.cpp — the shared-memory byte ring behind Queue, SimpleQueue and
// JoinableQueue. Design, waiting policy and crash semantics: shm_queue.hpp.
//
// Positions are u64 byte counts since creation (they never wrap); a position's place in
// the ring is pos & (capacity - 1). Lock order: the writer lock, then the reader lock
// (only the recovery paths take both).
#include "mp/detail/shm_queue.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <new>
#include <string>

#include "mp/detail/biased_lock.hpp"
#include "mp/detail/sys.hpp"
#include "mp/errors.hpp"

namespace mp::detail {

namespace {
constexpr std::uint32_t kMagic = 0x4d505155;  // "MPQU"
constexpr std::uint32_t kVersion = 4;
constexpr std::size_t kHeaderBytes = 8;
constexpr std::size_t kAborts = 64;
constexpr auto kLookAround = std::chrono::milliseconds(50);
constexpr auto kUnfencedSlice = std::chrono::milliseconds(1);
// A streamed item moves through the ring in pieces of at most this size: each side works
// on one while the other works on the next (64 KiB - 1 MiB measured alike here; a whole
// 4 MiB ring at once made bulk_transfer 2.2 GB/s, 256 KiB pieces 3.5-4.5).
constexpr std::size_t kStreamPiece = std::size_t{256} << 10;

std::size_t round8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }
}  // namespace

struct Abort {
  std::uint64_t start;   // the record that was cut short
  std::uint64_t resume;  // where the stream goes on
};

struct alignas(64) QueueShared {
  // Set once at creation.
  std::uint32_t magic;
  std::uint32_t version;
  std::uint64_t type_tag;
  std::uint64_t capacity;
  std::uint64_t maxsize;
  std::uint32_t joinable;  // put() counts a task (JoinableQueue)
  char type_name[96];

  // The writer's lines: its lock; what the reader watches (tail, written per item, and
  // what is written rarely); what only a sleeping reader touches; the writer's own.
  alignas(64) BiasedLock wlock;
  alignas(64) std::atomic<std::uint64_t> tail;  // the reader spins on this line: only tail
  std::atomic<std::uint64_t> puts;               // and puts are written on it per item
  alignas(64) std::atomic<std::uint32_t> data_seq;  // bumped when a sleeping reader must wake
  std::atomic<std::uint32_t> readers_waiting;       // sleepers on data_seq
  std::atomic<std::int32_t> writer_cpu;          // written when it changes
  // The writer's item in progress (guarded by wlock; read by whoever repairs it):
  // where it starts and ends, and `puts` before it, so a repair sets the count exactly.
  alignas(64) std::uint64_t w_start;
  std::uint64_t w_end;
  std::uint64_t w_puts;
  std::uint32_t w_active;
  // The lighter note of a put of a whole record (put_whole): the count its item makes,
  // and where its record ends. Written count first, so a half note never matches `puts`.
  std::uint64_t w_mark_puts;
  std::uint64_t w_mark_end;

  // The reader's lines, likewise.
  alignas(64) BiasedLock rlock;
  alignas(64) std::atomic<std::uint64_t> head;
  std::atomic<std::uint64_t> gets;                   // items taken (or dropped)
  std::uint64_t r_taken_end;   // the last take's new head and count (finish_take)
  std::uint64_t r_taken_gets;
  alignas(64) std::atomic<std::uint32_t> space_seq;  // bumped when a sleeping writer must wake
  std::atomic<std::uint32_t> writers_waiting;        // sleepers on space_seq
  std::atomic<std::int32_t> reader_cpu;              // written when it changes
  // The reader's streamed item in progress (guarded by rlock).
  alignas(64) std::uint64_t r_start;
  std::uint64_t r_end;
  std::uint32_t r_active;

  alignas(64) std::atomic<std::int64_t> unfinished;              // JoinableQueue tasks
  std::atomic<std::uint32_t> unfinished_seq;
  std::atomic<std::uint32_t> joiners_waiting;

  // Streamed records cut short, newest last (guarded by wlock for writing).
  std::atomic<std::uint32_t> abort_count;
  Abort aborts[kAborts];
};

namespace {

// ---- ring access ------------------------------------------------------------------

void ring_write(std::byte* ring, std::uint64_t cap, std::uint64_t pos, const std::byte* src, std::size_t n) {
  const std::size_t at = pos & (cap - 1);
  const std::size_t first = std::min<std::size_t>(n, cap - at);
  std::memcpy(ring + at, src, first);
  if (n > first) std::memcpy(ring, src + first, n - first);
}

void ring_read(const std::byte* ring, std::uint64_t cap, std::uint64_t pos, std::byte* dst, std::size_t n) {
  const std::size_t at = pos & (cap - 1);
  const std::size_t first = std::min<std::size_t>(n, cap - at);
  std::memcpy(dst, ring + at, first);
  if (n > first) std::memcpy(dst + first, ring, n - first);
}

// ---- item counts: `puts` is written only by the writer-lock holder, `gets` only by the
// reader-lock holder, so neither needs a read-modify-write; qsize() = puts - gets. Each
// side notes beforehand what it is about to set (w_puts, r_taken_*), so that whoever
// repairs after its death sets the counts exactly, wherever it was killed.

// Keeps the compiler from moving the bookkeeping stores across each other: what a kill
// leaves behind is what program order says (the CPU commits a thread's stores in order).
inline void keep_order() { std::atomic_signal_fence(std::memory_order_seq_cst); }

// ---- waking and waiting -------------------------------------------------------------

// Publishing is one store; the sequence word is bumped and the futex called only when
// somebody sleeps. The light fence pairs with the sleeper's heavy one (futex.hpp): either
// the sleeper sees the new position before it sleeps, or the waker sees the sleeper. A
// full fence here would make every put() and get() wait for its stores to reach the
// other CPU (measured: over half of an item's cost); the sleeper pays instead, ~1-2 us
// per sleep, which only happens after spinning or on a shared CPU.
void publish_tail(QueueShared* q, std::uint64_t tail) {
  q->tail.store(tail, std::memory_order_release);
  fence_light();
  if (q->readers_waiting.load(std::memory_order_relaxed)) {
    q->data_seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(q->data_seq, INT_MAX);
  }
}

void publish_head(QueueShared* q, std::uint64_t head) {
  q->head.store(head, std::memory_order_release);
  fence_light();
  if (q->writers_waiting.load(std::memory_order_relaxed)) {
    q->space_seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(q->space_seq, INT_MAX);
  }
}

// The reader's last step for a record: count it taken and move the head past it. Noted
// first in r_taken_*, so a reader killed between the two is completed by the next one
// (complete_dead_take): an item is never handed out twice nor counted twice.
// `streamed`: the record was read in pieces; r_active is cleared once the note is made.
// `gets`: the count with this item, when the caller knows it (try_get_fast).
void finish_take(QueueShared* q, std::uint64_t end, bool streamed = false, std::uint64_t gets = 0) {
  if (gets == 0) gets = q->gets.load(std::memory_order_relaxed) + 1;
  q->r_taken_gets = gets;
  keep_order();
  q->r_taken_end = end;  // the note counts from here (complete_dead_take looks at it)
  keep_order();
  if (streamed) {
    q->r_active = 0;
    keep_order();
  }
  q->gets.store(gets, std::memory_order_release);
  publish_head(q, end);
}

// With rlock held after its holder died: finishes a take it had noted but not done.
void complete_dead_take(QueueShared* q) {
  if (q->r_active || q->r_taken_end <= q->head.load(std::memory_order_relaxed)) return;
  q->gets.store(q->r_taken_gets, std::memory_order_release);
  publish_head(q, q->r_taken_end);
}

void note_cpu(std::atomic<std::int32_t>& where) {
  const int cpu = current_cpu();
  if (where.load(std::memory_order_relaxed) != cpu) where.store(cpu, std::memory_order_relaxed);
}

// Waits until ready() or the deadline (false). Spins first when `peer_cpu` is another
// CPU, then sleeps on `seq` in slices of at most `slice`, calling look_around() after each
// (it may repair state after a death; returns true to stop waiting early).
// `slices`: sleep at most kLookAround at a time (for waits that must notice a dead peer);
// otherwise sleep until woken or the deadline (no timer armed when there is none).
template <class Ready, class LookAround>
bool wait_on(std::atomic<std::uint32_t>& seq, std::atomic<std::uint32_t>& waiting, const std::atomic<std::int32_t>& peer_cpu,
             const Deadline& deadline, Ready&& ready, LookAround&& look_around, bool slices = true) {
  if (spin_until(ready, peer_cpu.load(std::memory_order_relaxed))) return true;
  for (;;) {
    waiting.fetch_add(1, std::memory_order_seq_cst);
    // Without membarrier a waker's light fence may hide its store from this check: then
    // sleep in short slices (a missed wake-up costs at most one slice).
    const bool fenced = fence_heavy();
    const std::uint32_t s = seq.load(std::memory_order_seq_cst);
    std::optional<std::chrono::nanoseconds> slice;
    if (slices) slice = kLookAround;
    if (!fenced) slice = kUnfencedSlice;
    bool in_time = true;
    if (!ready()) in_time = futex_wait(seq, s, deadline, slice);
    waiting.fetch_sub(1, std::memory_order_seq_cst);
    if (ready()) return true;
    if (look_around()) return true;
    if (!in_time) return false;
  }
}

// A side waits for the other only while it holds its own lock, so at most one process
// sleeps on each sequence word (repairs included). When a lock's holder is found dead,
// its sleeper count goes with it; left raised, every later publish would make a futex
// call for nobody (a pool worker killed while idle would tax every task after it).
void forget_dead_reader_wait(QueueShared* q) { q->readers_waiting.store(0, std::memory_order_relaxed); }
void forget_dead_writer_wait(QueueShared* q) { q->writers_waiting.store(0, std::memory_order_relaxed); }

bool is_aborted(const QueueShared* q, std::uint64_t start, std::uint64_t* resume) {
  const std::uint32_t n = q->abort_count.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < std::min<std::uint32_t>(n, kAborts); ++i) {
    const Abort& a = q->aborts[(n - 1 - i) % kAborts];
    if (a.start == start) {
      *resume = a.resume;
      return true;
    }
  }
  return false;
}

void record_abort(QueueShared* q, std::uint64_t start, std::uint64_t resume) {
  const std::uint32_t n = q->abort_count.load(std::memory_order_relaxed);
  q->aborts[n % kAborts] = {start, resume};
  q->abort_count.store(n + 1, std::memory_order_release);
  // A reader in the middle of that record may be asleep waiting for the rest of it.
  q->data_seq.fetch_add(1, std::memory_order_seq_cst);
  futex_wake(q->data_seq, INT_MAX);
}

// Called with wlock held, after the previous holder died or gave up in the middle of a
// record: makes the stream parseable again.
void repair_writer(QueueShared* q) {
  if (!q->w_active) {
    // A put of a whole record killed between counting it and publishing it (put_whole).
    if (q->puts.load(std::memory_order_relaxed) == q->w_mark_puts &&
        q->tail.load(std::memory_order_acquire) != q->w_mark_end)
      q->puts.store(q->w_mark_puts - 1, std::memory_order_release);
    return;
  }
  const std::uint64_t tail = q->tail.load(std::memory_order_acquire);
  if (tail == q->w_start) {
    q->puts.store(q->w_puts, std::memory_order_release);  // nothing of it was published
  } else {
    if (tail < q->w_end) record_abort(q, q->w_start, tail);  // the reader drops it and counts it out
    q->puts.store(q->w_puts + 1, std::memory_order_release);
  }
  keep_order();
  q->w_active = 0;
}

// The writer's first step for a streamed item (published in parts): notes where it goes
// and the count before it, then counts it. Undone by repair_writer if it never completes.
// (An item published whole takes put_whole's lighter note.)
void begin_put(QueueShared* q, std::uint64_t tail, std::size_t rec) {
  const std::uint64_t puts = q->puts.load(std::memory_order_relaxed);
  q->w_start = tail;
  q->w_end = tail + rec;
  q->w_puts = puts;
  keep_order();
  q->w_active = 1;
  keep_order();
  q->puts.store(puts + 1, std::memory_order_release);
}

void end_put(QueueShared* q) {
  keep_order();
  q->w_active = 0;
}

// For a reader waiting on the rest of a streamed record: if nobody holds the writer
// lock, the record's writer gave up (the abort is recorded) or died (repaired here).
// Returns true: the caller looks at the stream again.
bool repair_writer_if_gone(QueueShared* q) {
  BiasedLock::Hold hold;
  if (const auto r = q->wlock.try_lock(hold); r != BiasedLock::Result::busy) {
    if (r == BiasedLock::Result::owner_died) forget_dead_writer_wait(q);
    repair_writer(q);
    q->wlock.consistent(hold);
    q->wlock.unlock(hold);
  }
  return true;
}

// Acquires a lock; a dead previous holder's state is repaired with `repair`.
// Returns false on timeout (or busy with try_only).
template <class Repair>
bool take_lock(BiasedLock& m, BiasedLock::Hold& hold, const Deadline& deadline, bool try_only, Repair&& repair) {
  auto r = try_only ? m.try_lock(hold) : m.lock(hold, deadline);
  if (r == BiasedLock::Result::timed_out || r == BiasedLock::Result::busy) return false;
  if (r == BiasedLock::Result::owner_died) {
    try {
      repair();
    } catch (...) {
      m.consistent(hold);
      m.unlock(hold);
      throw;
    }
    m.consistent(hold);
  }
  return true;
}

struct Unlock {
  BiasedLock& m;
  const BiasedLock::Hold& hold;
  ~Unlock() { m.unlock(hold); }
};

}  // namespace

// Called with rlock held, when the previous reader died in the middle of a streamed
// record: skips what is left of it. Returns once the record is skipped.
static void repair_reader(QueueShared* q) {
  if (!q->r_active) return;
  const std::uint64_t start = q->r_start, end = q->r_end;
  std::uint64_t head = q->head.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint32_t aborts_before = q->abort_count.load(std::memory_order_acquire);
    const std::uint64_t tail = q->tail.load(std::memory_order_acquire);
    std::uint64_t resume = 0;
    if (is_aborted(q, start, &resume)) {
      head = std::max(head, resume);
      break;
    }
    if (tail >= end) {
      head = end;
      break;
    }
    if (tail > head) {
      head = tail;
      publish_head(q, head);  // the writer may be waiting for room
    }
    // The record's writer is alive and streaming: wait for more of it (or its death).
    wait_on(
        q->data_seq, q->readers_waiting, q->writer_cpu, std::nullopt,
        [&] {
          return q->tail.load(std::memory_order_acquire) > head ||
                 q->abort_count.load(std::memory_order_acquire) != aborts_before;
        },
        [q] { return repair_writer_if_gone(q); });
  }
  finish_take(q, head, true);
}

// All a reader's death can leave to repair (called with rlock held, owner_died).
static void repair_dead_reader(QueueShared* q) {
  forget_dead_reader_wait(q);
  complete_dead_take(q);
  repair_reader(q);
}

ShmQueue::ShmQueue(std::shared_ptr<SharedMapping> mapping)
    : mapping_(std::move(mapping)),
      q_(static_cast<QueueShared*>(mapping_->data())),
      ring_(static_cast<std::byte*>(mapping_->data()) + sizeof(QueueShared)),
      cap_(q_->capacity),
      maxsize_(q_->maxsize) {
  fence_register();  // before this process publishes anything with a light fence
}

std::shared_ptr<ShmQueue> ShmQueue::create(std::uint64_t type_tag, std::string_view type_name, std::size_t maxsize,
                                           std::size_t capacity, bool joinable) {
  std::size_t cap = 4096;
  while (cap < capacity) cap <<= 1;
  auto mapping = SharedMapping::create(sizeof(QueueShared) + cap, "mp-queue");
  auto* q = new (mapping->data()) QueueShared();
  q->magic = kMagic;
  q->version = kVersion;
  q->type_tag = type_tag;
  q->capacity = cap;
  q->maxsize = maxsize;
  q->joinable = joinable;
  std::strncpy(q->type_name, std::string(type_name).c_str(), sizeof q->type_name - 1);
  q->wlock.init();
  q->rlock.init();
  q->writer_cpu = -1;
  q->reader_cpu = -1;
  return std::shared_ptr<ShmQueue>(new ShmQueue(std::move(mapping)));
}

std::shared_ptr<ShmQueue> ShmQueue::attach(std::shared_ptr<SharedMapping> mapping, std::uint64_t type_tag,
                                           std::string_view type_name) {
  if (mapping->size() < sizeof(QueueShared)) throw SerializationError("this shared memory is not an mp queue");
  auto* q = static_cast<QueueShared*>(mapping->data());
  if (q->magic != kMagic || q->version != kVersion || mapping->size() != sizeof(QueueShared) + q->capacity) {
    throw SerializationError("this shared memory is not an mp queue");
  }
  if (q->type_tag != type_tag) {
    throw SerializationError("type mismatch: this queue holds " + std::string(q->type_name, strnlen(q->type_name, sizeof q->type_name)) +
                             ", not " + std::string(type_name));
  }
  return std::shared_ptr<ShmQueue>(new ShmQueue(std::move(mapping)));
}

// map_ahead found ring offsets up to `end` not mapped in this process yet: maps them
// and a stretch ahead (as long as what is mapped already, from 64 KiB to 2 MiB) with one
// call, rather than one page fault per 4 KiB. Called with the side's lock held; the two
// sides of one handle share the record (map_mu_).
void ShmQueue::map_more(std::size_t end) {
  constexpr std::size_t kMinAhead = std::size_t{64} << 10, kMaxAhead = std::size_t{2} << 20;
  const std::size_t cap = cap_;
  std::lock_guard g(map_mu_);
  std::size_t mapped = mapped_.load(std::memory_order_relaxed);
  if (mapped_generation_.load(std::memory_order_relaxed) != fork_generation()) {
    mapped = 0;  // a fork child: the parent's page tables for this mapping were not copied
    mapped_generation_.store(fork_generation(), std::memory_order_relaxed);
  }
  if (end <= mapped) return;
  const std::size_t ahead = std::clamp(mapped, kMinAhead, kMaxAhead);
  const std::size_t to = std::min(cap, std::max(end, mapped + ahead));
  prefault(ring_ + mapped, to - mapped);
  mapped_.store(to, std::memory_order_relaxed);
}

std::size_t ShmQueue::qsize() const noexcept {
  const std::uint64_t gets = q_->gets.load(std::memory_order_acquire);
  const std::uint64_t puts = q_->puts.load(std::memory_order_acquire);
  return puts > gets ? static_cast<std::size_t>(puts - gets) : 0;
}

std::size_t ShmQueue::maxsize() const noexcept { return q_->maxsize; }

bool ShmQueue::full() const noexcept { return q_->maxsize && qsize() >= q_->maxsize; }

// Writes a record that fits the ring whole at `tail` (room checked, wlock held) and
// publishes it with one store, so a kill can only fall between counting it and
// publishing it: the note (w_mark_*) tells repair_writer which count and which end. Two
// stores, not begin_put's five: the writer's stores queue behind the ones to the lines
// the reader is reading.
template <class WritePayload>
void ShmQueue::put_whole(std::uint64_t tail, std::uint64_t puts, std::size_t rec, std::uint64_t length,
                         WritePayload&& write_payload) {
  QueueShared* q = q_;
  q->w_mark_puts = puts;
  keep_order();
  q->w_mark_end = tail + rec;
  keep_order();
  map_ahead(tail, rec);
  ring_write(ring_, cap_, tail, reinterpret_cast<const std::byte*>(&length), kHeaderBytes);
  write_payload(tail + kHeaderBytes);
  if (q->joinable) q->unfinished.fetch_add(1, std::memory_order_acq_rel);
  // Counted right before it is published (the count never runs behind the items
  // published, or qsize() could see more taken than put): `puts` shares the tail's line,
  // and a store to it earlier would fetch that line from a spinning reader, which takes
  // it back before the tail's store: two cross-CPU trips on every item instead of one.
  q->puts.store(puts, std::memory_order_release);
  publish_tail(q, tail + rec);
}

// The common put, inline and without waiting: this thread holds the writer lock's bias,
// the item fits in the ring whole and there is room for it now. Otherwise it changes
// nothing and returns false, and put_slow() does the whole work (waits, repairs, streams).
inline bool ShmQueue::try_put_fast(std::span<const std::byte> payload) {
  QueueShared* q = q_;
  const std::size_t rec = kHeaderBytes + round8(payload.size());
  if (rec > cap_) return false;
  BiasedLock::Hold hold;
  if (!q->wlock.try_lock_biased(hold)) return false;
  // The tail and the count as this thread's last fast put left them, when nobody has put
  // since (the same bias word; put_slow clears it). Read from the shared line instead,
  // they would cost a cross-CPU trip per item: a consumer spinning on that line takes it
  // over (some CPUs hand a modified line to a reader for good), and the put would fetch
  // it back only to learn what it wrote itself.
  std::uint64_t* kept = q->wlock.kept(hold);  // {bias word, tail, puts}
  std::uint64_t tail = kept[1], puts = kept[2];
  if (kept[0] != hold.bias) [[unlikely]] {
    tail = q->tail.load(std::memory_order_relaxed);
    puts = q->puts.load(std::memory_order_relaxed);
  }
  // Both caches are safe under-estimates of the room (head and gets only grow): reload
  // only when they show too little.
  if (maxsize_) {
    if (puts - gets_cache_ >= maxsize_) {
      gets_cache_ = q->gets.load(std::memory_order_acquire);
      if (puts - gets_cache_ >= maxsize_) return q->wlock.unlock(hold), false;
    }
  }
  if (tail + rec - head_cache_ > cap_) {
    head_cache_ = q->head.load(std::memory_order_acquire);
    if (tail + rec - head_cache_ > cap_) return q->wlock.unlock(hold), false;
  }
  note_cpu(q->writer_cpu);
  put_whole(tail, puts + 1, rec, payload.size(),
            [&](std::uint64_t at) { ring_write(ring_, cap_, at, payload.data(), payload.size()); });
  kept[0] = hold.bias;
  kept[1] = tail + rec;
  kept[2] = puts + 1;
  q->wlock.unlock(hold);
  return true;
}

bool ShmQueue::put(std::span<const std::byte> payload, const Deadline& deadline) {
  if (try_put_fast(payload)) [[likely]]
    return true;
  return put_slow({&payload, 1}, deadline);
}

bool ShmQueue::put(std::span<const std::byte> bytes, std::span<const BlockRef> refs, const Deadline& deadline) {
  if (refs.empty()) return put(bytes, deadline);
  std::vector<std::span<const std::byte>> pieces;  // a large item's: one allocation is nothing beside it
  pieces.reserve(2 * refs.size() + 1);
  std::size_t at = 0;
  for (const BlockRef& r : refs) {
    pieces.emplace_back(bytes.data() + at, r.at - at);
    pieces.emplace_back(r.data, r.size);
    at = r.at;
  }
  pieces.emplace_back(bytes.data() + at, bytes.size() - at);
  return put_slow(pieces, deadline);
}

namespace {
// An item's bytes given as pieces one after the other, copied into the ring in order.
class PieceReader {
 public:
  explicit PieceReader(std::span<const std::span<const std::byte>> pieces) : pieces_(pieces) {}
  // Copies the next n bytes (there are that many left) to ring position `pos`.
  void to_ring(std::byte* ring, std::uint64_t cap, std::uint64_t pos, std::size_t n) {
    while (n) {
      while (off_ == pieces_[index_].size()) {
        ++index_;
        off_ = 0;
      }
      const std::size_t k = std::min(n, pieces_[index_].size() - off_);
      ring_write(ring, cap, pos, pieces_[index_].data() + off_, k);
      off_ += k;
      pos += k;
      n -= k;
    }
  }

 private:
  std::span<const std::span<const std::byte>> pieces_;
  std::size_t index_ = 0;
  std::size_t off_ = 0;
};
}  // namespace

bool ShmQueue::put_slow(std::span<const std::span<const std::byte>> pieces, const Deadline& deadline) {
  QueueShared* q = q_;
  const std::uint64_t cap = cap_;
  BiasedLock::Hold hold;
  if (!take_lock(q->wlock, hold, deadline, false, [q] { forget_dead_writer_wait(q), repair_writer(q); })) [[unlikely]]
    return false;
  Unlock unlock{q->wlock, hold};
  if (hold.slot >= 0) q->wlock.kept(hold)[0] = 0;  // what this put does, the fast path's note does not know
  note_cpu(q->writer_cpu);

  // A reader that died in the middle of a streamed record stops the ring from draining:
  // while waiting for room, look at the reader lock now and then.
  bool dropped_by_dead_reader = false;
  auto check_reader = [&] {
    BiasedLock::Hold rhold;
    auto r = q->rlock.try_lock(rhold);
    if (r == BiasedLock::Result::busy) return false;
    if (r == BiasedLock::Result::owner_died) {
      forget_dead_reader_wait(q);
      complete_dead_take(q);
      if (q->r_active && q->w_active && q->r_start == q->w_start) {
        // It was reading our own record: the item went with it. Drop what is published.
        finish_take(q, q->tail.load(std::memory_order_relaxed), true);
        end_put(q);
        dropped_by_dead_reader = true;
      } else if (q->r_active) {
        // An older record, fully published (its writer is done): skip it.
        std::uint64_t resume = 0;
        finish_take(q, is_aborted(q, q->r_start, &resume) ? std::max(resume, q->head.load()) : q->r_end, true);
      }
      q->rlock.consistent(rhold);
    }
    q->rlock.unlock(rhold);
    return true;
  };

  // Room for one more item (maxsize).
  if (q->maxsize) {
    const std::uint64_t puts = q->puts.load(std::memory_order_relaxed);
    auto has_room = [&] { return puts - q->gets.load(std::memory_order_acquire) < q->maxsize; };
    if (!wait_on(q->space_seq, q->writers_waiting, q->reader_cpu, deadline, has_room,
                 [&] { check_reader(); return false; }))
      return false;
  }

  std::uint64_t length = 0;
  for (const auto& piece : pieces) length += piece.size();
  const std::size_t rec = kHeaderBytes + round8(static_cast<std::size_t>(length));
  std::uint64_t tail = q->tail.load(std::memory_order_relaxed);
  PieceReader payload(pieces);

  if (rec <= cap) {
    // Published at once, when all of it fits.
    // The head seen last time is a safe under-estimate: reload it only when short of room.
    auto fits = [&] {
      if (tail + rec - head_cache_ <= cap) return true;
      head_cache_ = q->head.load(std::memory_order_acquire);
      return tail + rec - head_cache_ <= cap;
    };
    if (!fits() && !wait_on(q->space_seq, q->writers_waiting, q->reader_cpu, deadline, fits,
                            [&] { check_reader(); return false; }))
      return false;
    put_whole(tail, q->puts.load(std::memory_order_relaxed) + 1, rec, length,
              [&](std::uint64_t at) { payload.to_ring(ring_, cap, at, static_cast<std::size_t>(length)); });
    return true;
  }

  begin_put(q, tail, rec);
  // Streamed: header and payload go out as room frees up.
  const auto* header = reinterpret_cast<const std::byte*>(&length);
  std::size_t sent = 0;  // bytes of the record published so far
  const std::size_t meaningful = kHeaderBytes + static_cast<std::size_t>(length);
  while (sent < rec) {
    std::uint64_t room = cap - (tail - q->head.load(std::memory_order_acquire));
    if (room == 0) {
      auto has_room = [&] { return tail - q->head.load(std::memory_order_acquire) < cap; };
      bool ok = wait_on(q->space_seq, q->writers_waiting, q->reader_cpu, deadline, has_room,
                        [&] { return check_reader() && dropped_by_dead_reader; });
      if (dropped_by_dead_reader) return true;  // the item went with the dead reader
      if (!ok) {
        // Gave up in the middle: the reader drops what was published.
        repair_writer(q);  // nothing published: uncounted; else the reader drops the part
        return false;
      }
      continue;
    }
    // Published a stretch at a time, so the reader copies one out while the next goes
    // in (a whole ring at once would have the two sides take turns instead).
    std::size_t chunk = std::min<std::size_t>({room, rec - sent, kStreamPiece});
    map_ahead(tail, chunk);
    // Copy the chunk: the header, payload and padding parts it covers.
    std::size_t done = 0;
    while (done < chunk) {
      const std::size_t i = sent + done;
      std::size_t n;
      if (i < kHeaderBytes) {
        n = std::min(chunk - done, kHeaderBytes - i);
        ring_write(ring_, cap, tail + done, header + i, n);
      } else if (i < meaningful) {
        n = std::min(chunk - done, meaningful - i);
        payload.to_ring(ring_, cap, tail + done, n);
      } else {
        n = chunk - done;  // padding: its bytes are never read
      }
      done += n;
    }
    tail += chunk;
    sent += chunk;
    if (sent == rec && q->joinable) q->unfinished.fetch_add(1, std::memory_order_acq_rel);
    publish_tail(q, tail);
  }
  end_put(q);
  return true;
}

// A streamed item being read: [head, payload_end) not yet handed out.
struct ShmQueue::Stream {
  ShmQueue* self;
  std::uint64_t head;
  std::uint64_t payload_end;
  std::size_t pending = 0;  // the piece handed out last, its room not yet freed
  std::uint64_t resume = 0;  // where the stream goes on, once found aborted

  void release() {
    if (!pending) return;
    head += pending;
    pending = 0;
    publish_head(self->q_, head);
  }
};

// The common get, inline and without waiting: this thread holds the reader lock's bias,
// an item is there, published whole and contiguous in the ring. Otherwise it changes
// nothing and returns false, and get_slow() does the whole work.
inline bool ShmQueue::try_get_fast(ConsumeFn fn, void* ctx) {
  QueueShared* q = q_;
  BiasedLock::Hold hold;
  if (!q->rlock.try_lock_biased(hold)) return false;
  // The head and the count as this thread's last fast get left them, when nobody has
  // taken since (as try_put_fast's): the shared line is then only written here, never
  // read, and a producer that reads the head (to learn of room) costs no trip per item.
  std::uint64_t* kept = q->rlock.kept(hold);  // {bias word, head, gets}
  std::uint64_t head = kept[1], gets = kept[2];
  if (kept[0] != hold.bias) [[unlikely]] {
    head = q->head.load(std::memory_order_relaxed);
    gets = q->gets.load(std::memory_order_relaxed);
  }
  if (tail_cache_ < head + kHeaderBytes) {
    tail_cache_ = q->tail.load(std::memory_order_acquire);
    if (tail_cache_ < head + kHeaderBytes) return q->rlock.unlock(hold), false;
  }
  const std::size_t at = (head + kHeaderBytes) & (cap_ - 1);  // a header never wraps (8-byte records)
  std::uint64_t length;
  std::memcpy(&length, ring_ + (head & (cap_ - 1)), kHeaderBytes);  // may fault its page once
  const std::size_t rec = kHeaderBytes + round8(static_cast<std::size_t>(length));
  if (rec > cap_ || at + length > cap_) return q->rlock.unlock(hold), false;
  note_cpu(q->reader_cpu);
  map_ahead(head, rec);
  struct Take {  // taken even if consume throws; then the lock is released
    QueueShared* q;
    BiasedLock::Hold& hold;
    std::uint64_t* kept;
    std::uint64_t end;
    std::uint64_t gets;
    ~Take() {
      finish_take(q, end, false, gets);
      kept[0] = hold.bias;
      kept[1] = end;
      kept[2] = gets;
      q->rlock.unlock(hold);
    }
  } take{q, hold, kept, head + rec, gets + 1};
  ItemBytes item(std::span<const std::byte>(ring_ + at, length));
  fn(ctx, item);
  return true;
}

bool ShmQueue::get_impl(ConsumeFn fn, void* ctx, const Deadline& deadline, bool try_lock_only) {
  if (try_get_fast(fn, ctx)) [[likely]]
    return true;
  return get_slow(fn, ctx, deadline, try_lock_only);
}

bool ShmQueue::get_slow(ConsumeFn fn, void* ctx, const Deadline& deadline, bool try_lock_only) {
  QueueShared* q = q_;
  const std::uint64_t cap = cap_;
  BiasedLock::Hold hold;
  if (!take_lock(q->rlock, hold, deadline, try_lock_only, [q] { repair_dead_reader(q); })) [[unlikely]]
    return false;
  Unlock unlock{q->rlock, hold};
  if (hold.slot >= 0) q->rlock.kept(hold)[0] = 0;  // what this get does, the fast path's note does not know
  note_cpu(q->reader_cpu);

  for (;;) {
    std::uint64_t head = q->head.load(std::memory_order_relaxed);
    // The tail seen last time (by this handle) is a safe under-estimate once it is past
    // the head; reload it only when it shows too little.
    auto has_header = [&] {
      if (tail_cache_ >= head + kHeaderBytes) return true;
      // The record's line, asked for alongside the tail's: a waiting reader then gets
      // both lines in one cross-CPU round trip instead of two in a row (the tail's, then
      // the record's). A hint only: the record is read after the tail, as it must be.
      __builtin_prefetch(ring_ + (head & (cap - 1)));
      tail_cache_ = q->tail.load(std::memory_order_acquire);
      return tail_cache_ >= head + kHeaderBytes;
    };
    if (try_lock_only && !has_header()) return false;
    if (!wait_on(q->data_seq, q->readers_waiting, q->writer_cpu, deadline, has_header, [] { return false; }, false))
      return false;

    std::uint64_t length = 0;
    ring_read(ring_, cap, head, reinterpret_cast<std::byte*>(&length), kHeaderBytes);  // may fault its page once
    const std::size_t rec = kHeaderBytes + round8(static_cast<std::size_t>(length));
    const std::uint64_t start = head;
    map_ahead(head, std::min<std::size_t>(rec, cap));

    if (rec <= cap) {
      // Published whole: it is all there.
      std::span<const std::byte> bytes;
      const std::size_t at = (head + kHeaderBytes) & (cap - 1);
      if (at + length <= cap) {
        bytes = std::span<const std::byte>(ring_ + at, length);
      } else {
        scratch_.resize(length);
        ring_read(ring_, cap, head + kHeaderBytes, scratch_.data(), length);
        bytes = scratch_;
      }
      struct Take {  // taken even if consume throws
        QueueShared* q;
        std::uint64_t end;
        ~Take() { finish_take(q, end); }
      } take{q, start + rec};
      ItemBytes item(bytes);
      fn(ctx, item);
      return true;
    }

    // Streamed: the consumer takes it piece by piece as it arrives (pull_stream), the
    // room of each piece freed for the writer when it asks for the next.
    q->r_start = start;
    q->r_end = start + rec;
    keep_order();
    q->r_active = 1;
    head += kHeaderBytes;
    publish_head(q, head);
    Stream stream{this, head, head + length};
    ItemBytes item(length, &ShmQueue::pull_stream, &stream);
    try {
      fn(ctx, item);
    } catch (const ItemAborted&) {
      // Its writer gave up in the middle: the item is dropped, take the next one.
      finish_take(q, std::max(stream.resume, stream.head), true);
      continue;
    } catch (...) {
      stream.release();
      repair_reader(q);  // the item is taken all the same: skip what is left of it
      throw;
    }
    stream.release();
    repair_reader(q);  // what the consumer left of it, and the padding
    return true;
  }
}

std::span<const std::byte> ShmQueue::pull_stream(void* p) {
  Stream& st = *static_cast<Stream*>(p);
  ShmQueue& self = *st.self;
  QueueShared* q = self.q_;
  st.release();
  if (st.head >= st.payload_end) return {};
  for (;;) {
    const std::uint32_t aborts_before = q->abort_count.load(std::memory_order_acquire);
    const std::uint64_t tail = q->tail.load(std::memory_order_acquire);
    if (is_aborted(q, q->r_start, &st.resume)) throw ItemAborted{};
    if (tail > st.head) {
      const std::size_t at = st.head & (self.cap_ - 1);
      const std::size_t n = static_cast<std::size_t>(
          std::min<std::uint64_t>({tail - st.head, st.payload_end - st.head, self.cap_ - at, kStreamPiece}));
      self.map_ahead(st.head, n);
      st.pending = n;
      return {self.ring_ + at, n};
    }
    wait_on(
        q->data_seq, q->readers_waiting, q->writer_cpu, std::nullopt,
        [&] {
          return q->tail.load(std::memory_order_acquire) > st.head ||
                 q->abort_count.load(std::memory_order_acquire) != aborts_before;
        },
        [q] { return repair_writer_if_gone(q); });
  }
}

std::span<const std::byte> ItemBytes::contiguous(std::vector<std::byte>& buf) {
  if (!pull_) return std::exchange(piece_, {});
  buf.resize(size_);
  return {buf.data(), copy_to(buf.data())};
}

std::size_t ItemBytes::copy_to(std::byte* dst) {
  std::size_t got = 0;
  for (auto piece = next(); !piece.empty(); piece = next()) {
    std::memcpy(dst + got, piece.data(), piece.size());
    got += piece.size();
  }
  return got;
}

void ShmQueue::task_done() {
  auto before = q_->unfinished.fetch_sub(1, std::memory_order_acq_rel);
  if (before <= 0) {
    q_->unfinished.fetch_add(1, std::memory_order_acq_rel);
    throw ValueError("task_done() called too many times");
  }
  if (before == 1) {
    q_->unfinished_seq.fetch_add(1, std::memory_order_seq_cst);
    if (q_->joiners_waiting.load(std::memory_order_seq_cst)) futex_wake(q_->unfinished_seq, INT_MAX);
  }
}

bool ShmQueue::join(const Deadline& deadline) {
  std::atomic<std::int32_t> no_cpu{-1};
  return wait_on(
      q_->unfinished_seq, q_->joiners_waiting, no_cpu, deadline,
      [&] { return q_->unfinished.load(std::memory_order_acquire) <= 0; }, [] { return false; });
}

}  // namespace mp::detail
