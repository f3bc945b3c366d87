// mp/queues.hpp — Queue, SimpleQueue and JoinableQueue: Python's process-safe FIFO
// queues, in shared memory.
//
// @code
//   mp::Queue<std::string> q(4);                 // maxsize 4; mp::Queue<T> q; is unbounded
//   mp::Process producer([](mp::Queue<std::string> q) { q.put("Data from worker"); }, q);
//   producer.start();
//   std::string s = q.get();                     // blocks until an item arrives
//   q.get(1s);                                   // mp::Empty after 1 s
//   q.put_nowait("x");                           // mp::Full if the queue is full
//   q.get_into(s);                               // into s, reusing its buffer
//   producer.join();
//
//   mp::JoinableQueue<int> jq;                   // consumers call task_done() per item,
//   jq.put(1); jq.get(); jq.task_done(); jq.join();   // join() waits for all of them
// @endcode
//
// A queue is a handle: copies (including a copy passed to a Process under any start
// method, or sent over a Unix-socket Connection) reach the same queue. Its items live in
// a shared-memory ring (shm_queue.hpp: design, waiting, what a SIGKILL mid-put or
// mid-get does to the item in flight). The memory has no name: nothing can be left in
// /dev/shm, the kernel frees it when the last process using it is gone.
//
// Differences from Python, all in the caller's favour: put() serializes and writes the
// item itself (no feeder thread), so a value that cannot be serialized raises in put()
// and later items are unaffected, and an item is in the queue when put() returns —
// nothing is lost when the producer exits right after. join_thread() and
// cancel_join_thread() therefore have nothing to wait for. An "unbounded" queue
// (maxsize 0) is bounded by its ring (default 4 MiB, `capacity_bytes`): put() blocks
// while the ring is full, as Python's blocks on a full pipe. Items of any size pass,
// also larger than the ring: they stream through it, from the value's own memory into
// the value get() returns, with no whole copy held on either side.
//
// T is any serializable type (codec.hpp). Descriptor-carrying handles (a Connection, a
// Queue) cannot travel inside a queue's items: pass them as Process arguments instead.
//
// Thread- and process-safe: any number of producers and consumers, threads or processes.
#pragma once

#include <chrono>
#include <cstring>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "mp/detail/codec.hpp"
#include "mp/detail/shm_queue.hpp"
#include "mp/errors.hpp"

namespace mp {

/// Keyword arguments of the queues.
struct QueueOptions {
  std::size_t maxsize = 0;                       ///< items; 0 = no limit but the ring
  std::size_t capacity_bytes = std::size_t{4} << 20;  ///< the ring (memory is used as touched)
};

namespace detail {

/// What Queue, SimpleQueue and JoinableQueue share.
template <class T>
class QueueBase {
 public:
  static_assert(serializable_v<T>, "mp::Queue<T>: T must be serializable (see mp/detail/codec.hpp)");

  /// Puts `item`, blocking while the queue is full. Throws mp::ValueError once this
  /// handle is closed; whatever serialization throws (mp::SerializationError...).
  void put(const T& item) { put_impl(item, std::nullopt, "put"); }
  /// Waits at most `timeout` for room; mp::Full after it.
  template <class Rep, class Period>
  void put(const T& item, std::chrono::duration<Rep, Period> timeout) {
    put_impl(item, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), "put");
  }
  /// Never waits: mp::Full if there is no room now.
  void put_nowait(const T& item) { put_impl(item, std::chrono::nanoseconds(0), "put_nowait"); }

  /// Takes the oldest item, blocking until there is one.
  T get() { return get_impl(std::nullopt, false); }
  /// Waits at most `timeout`; mp::Empty after it.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return get_impl(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), false);
  }
  /// Never waits: mp::Empty if there is no item now (or another consumer is taking one).
  T get_nowait() { return get_impl(std::chrono::nanoseconds(0), true); }

  /// get() into a value the caller already has, reusing what it owns: a vector or a
  /// string with room enough is filled in place, with no allocation and no fresh pages
  /// to fault in (for a large item those cost more than the copy itself). The
  /// counterpart of Connection::recv_bytes_into for a consumer that takes item after
  /// item into one buffer. On mp::Empty `out` is untouched; if decoding throws (as in
  /// get(), the item is taken all the same), `out` is valid but unspecified.
  void get_into(T& out) { get_into_impl(out, std::nullopt, false); }
  /// Waits at most `timeout`; mp::Empty after it.
  template <class Rep, class Period>
  void get_into(T& out, std::chrono::duration<Rep, Period> timeout) {
    get_into_impl(out, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), false);
  }

  /// The number of items (approximate while others put and get, as in Python).
  std::size_t qsize() const { return shared().qsize(); }
  bool empty() const { return shared().empty(); }
  bool full() const { return shared().full(); }

  /// This handle will put no more: put() on it raises mp::ValueError. Other handles are
  /// not affected.
  void close() noexcept { closed_ = true; }
  /// No feeder thread: every put() has already reached the queue. Returns at once.
  void join_thread() const noexcept {}
  void cancel_join_thread() const noexcept {}

  /// The queue travels as its shared memory's descriptor (to children, over sockets).
  template <class A>
  void save(A& ar) const {
    shared().mapping().save(ar, "Queue");
  }
  template <class A>
  void load(A& ar) {
    q_ = ShmQueue::attach(SharedMapping::load(ar), type_tag<T>(), type_name<T>());
    closed_ = false;
  }

 protected:
  QueueBase(std::size_t maxsize, std::size_t capacity, bool joinable)
      : q_(ShmQueue::create(type_tag<T>(), type_name<T>(), maxsize, capacity, joinable)) {}
  explicit QueueBase(for_load_t) {}  // an empty handle, filled by load()

  ShmQueue& shared() const {
    if (!q_) throw ValueError("this queue handle is empty (moved from)");
    return *q_;
  }

 private:
  void put_impl(const T& item, std::optional<std::chrono::nanoseconds> timeout, const char* what) {
    if (closed_) throw ValueError(std::string("Queue.") + what + ": this handle is closed");
    if constexpr (bitwise_v<T>) {  // its bytes, straight into the ring
      if (!shared().put(std::as_bytes(std::span<const T, 1>(&item, 1)), deadline_after(timeout))) {
        throw Full(std::string("Queue.") + what + ": the queue is full");
      }
      return;
    }
    auto& buf = scratch();
    auto& refs = scratch_refs();
    buf.clear();
    refs.clear();
    OutputArchive ar(buf, nullptr, &refs);  // large blocks are referred to, copied once into the ring
    save_value(ar, item);  // may throw: nothing is in the queue then
    if (!shared().put(buf, refs, deadline_after(timeout)))
      throw Full(std::string("Queue.") + what + ": the queue is full");
  }

  T get_impl(std::optional<std::chrono::nanoseconds> timeout, bool nowait) {
    if (closed_) throw ValueError("Queue.get: this handle is closed");
    std::optional<T> out;
    const bool got = shared().get_pieces(
        [&](ItemBytes& item) {
          T value = make_for_load<T>();
          decode(item, value);
          out.emplace(std::move(value));
        },
        deadline_after(timeout), nowait);
    if (!got) throw Empty("Queue.get: the queue is empty");
    return std::move(*out);
  }

  void get_into_impl(T& out, std::optional<std::chrono::nanoseconds> timeout, bool nowait) {
    if (closed_) throw ValueError("Queue.get_into: this handle is closed");
    if (!shared().get_pieces([&](ItemBytes& item) { decode(item, out); }, deadline_after(timeout), nowait))
      throw Empty("Queue.get_into: the queue is empty");
  }

  // The item is decoded as it arrives: a large one streams through the ring straight
  // into the value's own memory (ItemBytes), with no copy of the whole in between.
  static void decode(ItemBytes& item, T& value) {
    if constexpr (bitwise_v<T>) {  // its bytes, straight from the ring
      if (item.size() != sizeof(T)) throw SerializationError("corrupt queue item: wrong size");
      if (const auto bytes = item.whole(); bytes.size() == sizeof(T)) [[likely]]
        std::memcpy(static_cast<void*>(&value), bytes.data(), sizeof(T));  // inline: one move for a word
      else
        item.copy_to(reinterpret_cast<std::byte*>(&value));
    } else {
      InputArchive ar(item.size(), [](void* p) { return static_cast<ItemBytes*>(p)->next(); }, &item);
      load_value(ar, value);
      if (ar.remaining() != 0) throw SerializationError("corrupt queue item: bytes left over");
    }
  }

  static std::vector<std::byte>& scratch() {
    thread_local std::vector<std::byte> buf;
    return buf;
  }
  static std::vector<BlockRef>& scratch_refs() {
    thread_local std::vector<BlockRef> refs;
    return refs;
  }

  std::shared_ptr<ShmQueue> q_;
  bool closed_ = false;
};

}  // namespace detail

/// Python's multiprocessing.Queue(maxsize).
template <class T>
class Queue : public detail::QueueBase<T> {
 public:
  explicit Queue(std::size_t maxsize = 0) : Queue(QueueOptions{.maxsize = maxsize}) {}
  explicit Queue(QueueOptions options) : detail::QueueBase<T>(options.maxsize, options.capacity_bytes, false) {}
  explicit Queue(detail::for_load_t t) : detail::QueueBase<T>(t) {}
};

/// Python's multiprocessing.SimpleQueue: put, get, empty, close.
template <class T>
class SimpleQueue : public detail::QueueBase<T> {
 public:
  SimpleQueue() : detail::QueueBase<T>(0, QueueOptions{}.capacity_bytes, false) {}
  explicit SimpleQueue(detail::for_load_t t) : detail::QueueBase<T>(t) {}
};

/// Python's multiprocessing.JoinableQueue: a Queue whose consumers call task_done() for
/// every item they took, and whose join() waits until every item put was done.
template <class T>
class JoinableQueue : public detail::QueueBase<T> {
 public:
  explicit JoinableQueue(std::size_t maxsize = 0) : JoinableQueue(QueueOptions{.maxsize = maxsize}) {}
  explicit JoinableQueue(QueueOptions options) : detail::QueueBase<T>(options.maxsize, options.capacity_bytes, true) {}
  explicit JoinableQueue(detail::for_load_t t) : detail::QueueBase<T>(t) {}

  /// Marks one item taken by get() as done. Throws mp::ValueError if called more times
  /// than items were put. Process-safe.
  void task_done() { this->shared().task_done(); }
  /// Blocks until every item put has been marked done.
  void join() { this->shared().join(std::nullopt); }
  /// false if the time ran out first.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return this->shared().join(detail::deadline_after(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }
};

}  // namespace mp
