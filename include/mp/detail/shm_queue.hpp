// mp/detail/shm_queue.hpp — the untyped core of mp's queues: a byte ring in shared
// memory between any number of producer and consumer processes.
//
// Design. A memfd mapping holds a header and a ring of bytes. Producers take the writer
// lock and append one record ([u64 length][payload][padding to 8]); consumers take the
// reader lock and take one record. Both locks are robust and biased (biased_lock.hpp):
// a process that is a side's only user for a while takes and releases its lock with
// plain stores, so a steady producer/consumer pair pays no atomic read-modify-write per
// item. Between the two lock holders the
// ring is single-producer single-consumer: `tail` (bytes published) is written only by
// the writer, `head` (bytes consumed) only by the reader, each with release/acquire, so
// the data path has no other atomic read-modify-write. (Python's Queue has the same two
// locks around a pipe, plus a feeder thread mp does not need: put() writes into the ring
// itself, so an item is in the queue when put() returns, and a bad item fails there.)
//
// Fast path: put() and get() first try the common case inline — the caller holds its
// side's bias, the item fits in the ring whole (and, for get, is contiguous) and there is
// room (an item) right now; per item that is the lock's two plain stores, the record, the
// counts' bookkeeping and one release store, with no call out of the function. Anything
// else (waiting, a repair, a stream, a lock held by another) goes the general way.
// On the fast path each side only writes the shared line it owns (the tail's, the
// head's), never reads it: it keeps what it last wrote there in its bias slot
// (BiasedLock::kept), valid while the bias word is unchanged — nobody else can have held
// the lock meanwhile — and cleared by the general way. A read would cost a cross-CPU trip
// per item whenever the other side had just looked at that line: some CPUs (AMD's here)
// hand a modified line to the reader that asks for it, for good.
//
// A record no larger than the ring is published at once, when there is room for all of
// it. A larger one streams, 256 KiB at a time: the writer publishes a piece, the reader
// hands it to its consumer (ItemBytes: the typed queue decodes it straight into the
// value) and frees the room, while the writer fills the next — items have no size limit,
// neither side holds a copy of the whole, and since each side holds its own lock, the
// streaming writer and reader can never wait on each other in a cycle. The writer copies
// a value's large blocks (a big vector's elements) into the ring from the value itself
// (put with block references), so a large item is copied twice in all: into the ring,
// out of it.
//
// Memory: the ring's pages are mapped into each process ahead of use, a growing stretch
// at a time (map_ahead), rather than faulted in one 4 KiB page at a time on first touch
// (sys.hpp: prefault; on a VM a fault costs more than the item).
//
// Waiting: a side that must wait spins while the other side last ran on another CPU
// (a cross-CPU futex wake-up costs tens of microseconds in a VM) and sleeps on a futex at
// once when it runs on the same CPU (spinning would only keep the peer off the CPU).
// Wakers make the futex call only when somebody sleeps.
//
// Death of a process in the middle (SIGKILL), and what becomes of the item in flight:
//  - a producer dies before publishing anything of its item: the item is lost with the
//    producer, nothing else is affected;
//  - a producer dies (or its put() times out) in the middle of a streamed item: the item
//    is dropped; consumers skip its published part and go on with the next item;
//  - a consumer dies before it took an item out of the ring: another consumer gets it;
//  - a consumer dies in the middle of a streamed item: that item is lost with it, the
//    next consumer skips the rest of it.
// Counts (qsize) are exact once repaired, wherever the kill struck: each side notes what
// it is about to count before it counts it. Until the next put() repairs after it, a
// producer killed inside put() may still count for one item that never came.
// The next process to take the dead one's lock repairs the state (the lock tells it the
// holder died: the robust mutex, or for a bias owner its process found gone in /proc); a waiter on the other side looks at the dead side's lock every
// 50 ms, so it never waits for ever on a process that is gone.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "mp/detail/archive.hpp"
#include "mp/detail/futex.hpp"
#include "mp/detail/self_identity.hpp"
#include "mp/detail/shared_mapping.hpp"

namespace mp::detail {

struct QueueShared;

/// One item's bytes as get() hands them to its consumer: in one piece (an item published
/// whole) or in pieces as its writer streams it through the ring (an item larger than
/// the ring), so a large item can be decoded straight into its destination, with no copy
/// of the whole in between. Valid only during the consumer's call.
class ItemBytes {
 public:
  explicit ItemBytes(std::span<const std::byte> whole) noexcept : size_(whole.size()), piece_(whole) {}
  /// The item's length in bytes.
  std::size_t size() const noexcept { return size_; }
  /// The next piece, empty once all were given. Waits for the writer's next part; if the
  /// writer gave up in the middle (timeout, death), throws ItemAborted, which get() catches
  /// (the item is dropped, get() goes on with the next one): let it pass.
  std::span<const std::byte> next() {
    if (pull_) return pull_(ctx_);
    return std::exchange(piece_, {});
  }
  /// An item published whole: all its bytes, not taken yet (empty otherwise: a streamed
  /// item, or once next() gave them). Inline, for decoders of fixed-size items.
  std::span<const std::byte> whole() const noexcept { return pull_ ? std::span<const std::byte>{} : piece_; }
  /// All of it in one span: the piece itself if it is whole, else gathered into `buf`.
  std::span<const std::byte> contiguous(std::vector<std::byte>& buf);
  /// Copies all of it (the pieces not taken yet) to `dst`, which holds size() bytes;
  /// returns the bytes copied.
  std::size_t copy_to(std::byte* dst);

 private:
  friend class ShmQueue;
  using Pull = std::span<const std::byte> (*)(void*);
  ItemBytes(std::size_t size, Pull pull, void* ctx) noexcept : size_(size), pull_(pull), ctx_(ctx) {}
  std::size_t size_;
  std::span<const std::byte> piece_;
  Pull pull_ = nullptr;
  void* ctx_ = nullptr;
};

/// Thrown by ItemBytes::next() when a streamed item's writer gave up in its middle.
struct ItemAborted {};

class ShmQueue {
 public:
  /// A new queue for items of the type tagged `type_tag` (named `type_name`, for
  /// errors). maxsize: items (0 = no limit); capacity: ring bytes (rounded up to a power
  /// of two); joinable: put() counts a task for task_done()/join().
  static std::shared_ptr<ShmQueue> create(std::uint64_t type_tag, std::string_view type_name, std::size_t maxsize,
                                          std::size_t capacity, bool joinable);
  /// Attaches to a queue found in `mapping`. Throws mp::SerializationError if it is not a
  /// queue of the expected type.
  static std::shared_ptr<ShmQueue> attach(std::shared_ptr<SharedMapping> mapping, std::uint64_t type_tag,
                                          std::string_view type_name);

  /// Appends one item. Blocks while the queue is full (maxsize) or the ring has no room,
  /// until `deadline`; returns false on timeout (nothing was added). Process-safe.
  bool put(std::span<const std::byte> payload, const Deadline& deadline);
  /// As put(), of a value saved with block references (OutputArchive): its item is
  /// `bytes` with each of `refs` in its place, each block copied once, from the value
  /// into the ring.
  bool put(std::span<const std::byte> bytes, std::span<const BlockRef> refs, const Deadline& deadline);

  /// Takes one item and hands its bytes to `consume` (called once, with the lock held;
  /// the bytes may live in the ring and are valid only during the call). Blocks while
  /// the queue is empty, until `deadline`; returns false on timeout. If `consume` throws,
  /// the item is still taken and the exception propagates. `try_lock_only`: give up at
  /// once if another consumer holds the reader lock (get_nowait). Process-safe.
  template <class Consume>
  bool get(Consume&& consume, const Deadline& deadline, bool try_lock_only = false) {
    auto whole = [this, &consume](ItemBytes& item) { consume(item.contiguous(scratch_)); };
    return get_pieces(whole, deadline, try_lock_only);
  }
  /// As get(), but `consume` takes the item as ItemBytes: a large item arrives in pieces
  /// as it streams (decode it as it comes; ItemBytes::next()).
  template <class Consume>
  bool get_pieces(Consume&& consume, const Deadline& deadline, bool try_lock_only = false) {
    return get_impl(
        [](void* ctx, ItemBytes& item) { (*static_cast<std::remove_reference_t<Consume>*>(ctx))(item); }, &consume,
        deadline, try_lock_only);
  }

  /// Items in the queue (approximate while others put and get, as in Python).
  std::size_t qsize() const noexcept;
  std::size_t maxsize() const noexcept;
  bool empty() const noexcept { return qsize() == 0; }
  bool full() const noexcept;

  /// JoinableQueue: every put counts a task; task_done() marks one finished (throws
  /// mp::ValueError if called more times than items were put); join() waits until all
  /// are (false on timeout).
  void task_done();
  bool join(const Deadline& deadline);

  SharedMapping& mapping() const noexcept { return *mapping_; }
  const std::shared_ptr<SharedMapping>& mapping_ptr() const noexcept { return mapping_; }

 private:
  using ConsumeFn = void (*)(void*, ItemBytes&);
  struct Stream;
  static std::span<const std::byte> pull_stream(void* stream);
  explicit ShmQueue(std::shared_ptr<SharedMapping> mapping);
  bool get_impl(ConsumeFn fn, void* ctx, const Deadline& deadline, bool try_lock_only);
  bool try_put_fast(std::span<const std::byte> payload);
  bool put_slow(std::span<const std::span<const std::byte>> pieces, const Deadline& deadline);
  template <class WritePayload>
  void put_whole(std::uint64_t tail, std::uint64_t puts, std::size_t rec, std::uint64_t length,
                 WritePayload&& write_payload);
  bool try_get_fast(ConsumeFn fn, void* ctx);
  bool get_slow(ConsumeFn fn, void* ctx, const Deadline& deadline, bool try_lock_only);

  std::shared_ptr<SharedMapping> mapping_;
  QueueShared* q_;
  std::byte* ring_;
  std::size_t cap_;                 // q_->capacity, kept here (read on every put and get)
  std::size_t maxsize_;             // q_->maxsize, likewise
  std::vector<std::byte> scratch_;  // an item that wraps around the ring's end, or a
                                    // streamed one for get()'s consumer (rlock)
  std::uint64_t head_cache_ = 0;    // the head last seen by a writer here (wlock)
  std::uint64_t tail_cache_ = 0;    // the tail last seen by a reader here (rlock)
  std::uint64_t gets_cache_ = 0;    // the item count taken, last seen by a writer here (wlock)
  // The ring's first mapped_ bytes are mapped in this process (see map_ahead).
  std::mutex map_mu_;                                 // a writer and a reader thread may meet
  std::atomic<std::size_t> mapped_{0};
  std::atomic<std::uint32_t> mapped_generation_{0};  // fork_generation() when mapped_ was set

  // Makes sure ring bytes [pos, pos + n) are mapped here before they are touched; the
  // check is inline (every put and get), the mapping is not.
  void map_ahead(std::uint64_t pos, std::size_t n) {
    const std::size_t at = pos & (cap_ - 1);
    const std::size_t end = at + n > cap_ ? cap_ : at + n;  // a wrap means the end was reached before
    if (end <= mapped_.load(std::memory_order_relaxed) &&
        mapped_generation_.load(std::memory_order_relaxed) == fork_generation()) [[likely]]
      return;
    map_more(end);
  }
  void map_more(std::size_t end);
};

}  // namespace mp::detail
