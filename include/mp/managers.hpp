// mp/managers.hpp — Manager: objects that live in a server process, used from any
// process through proxies (Python's multiprocessing.managers), locally or across
// machines with an authkey.
//
// @code
//   mp::Manager manager;                                   // starts the server process
//   auto d = manager.dict<std::string, int>();
//   mp::Process p([](mp::DictProxy<std::string, int> d) { d.set("data", 42); }, d);
//   p.start(); p.join();
//   std::map<std::string, int> m = d.copy();               // {"data": 42}
//
//   auto l = manager.list<std::string>();   l.append("x");  l.get(0);  l.size();
//   auto ns = manager.Namespace();          ns.set("x", 1); ns.get<int>("x");
//   auto q = manager.Queue<int>();          q.put(1);       q.get(1s);
//   auto lock = manager.Lock();             { std::lock_guard g(lock); ... }
//   manager.shutdown();                                    // or let it go out of scope
//
//   // Across machines (Python's "BaseManager(address, authkey)" client/server).
//   // The server program:
//   mp::BaseManager server({.address = {"0.0.0.0", 50000}, .authkey = "secret"});
//   server.register_object("tasks", mp::Queue<Job>{});
//   server.get_server().serve_forever();                   // until a client's shutdown()
//   // A client program:
//   mp::BaseManager client({.address = {"host", 50000}, .authkey = "secret"});
//   client.connect();
//   auto tasks = client.get<mp::QueueProxy<Job>>("tasks");
//   tasks.put(Job{...});
// @endcode
//
// How it works. The server holds the objects; a proxy is a cheap copyable handle naming
// one of them. Each call is a request and a reply: each thread of a client process
// keeps one connection to each manager, and the server serves each connection with a
// thread of its own, so a call that blocks (a get on an empty queue, an acquire) blocks
// only the calling thread. Over a Unix socket (the default address) the connection's
// requests and replies then travel through two shared-memory queues: a call takes
// about 0.5-5 us on this project's 2-CPU VM (CPython's manager: ~50 us); over TCP, a
// socket round trip. Still, use shared memory (mp::Value, mp::Queue) where every
// nanosecond matters, a manager where sharing containers, many processes or other
// machines matter.
//
// Proxies travel: pass them to a Process under any start method, put them in a queue,
// send them through a Pipe, or store them in a manager dict. The receiver reaches the
// same object (it gets the manager's address and authkey with the proxy: send proxies
// only to processes you would give the key to). Every argument and result is copied
// through the typed wire: `d.get("k")` returns a copy, and changing it changes nothing
// in the server — `d.set("k", v)` does (as in Python).
//
// Lifetime. The server counts the references proxies hold; the last proxy of an object,
// in every process, frees it. A child process gives its references back when its target
// ends (a fork child that used a proxy it inherited took one of its own at first use).
// A process that dies without giving its references back (SIGKILL) leaves its objects
// in the server until the manager shuts down. A named object (register_object) lives
// as long as the server.
//
// Failures. Every call either returns the result or raises:
//   - the error the method raised in the server, as itself where mp has that type
//     (mp::KeyError, mp::IndexError, mp::AttributeError, mp::Empty, mp::Full,
//     mp::ValueError, mp::BrokenBarrierError...), else as mp::RemoteError with the
//     server's stack;
//   - mp::EOFError if the server died during the call, mp::OSError if it cannot be
//     reached (connection refused: it is gone), mp::AuthenticationError for a wrong key,
//     mp::ValueError after this process's shutdown() of that manager.
// No call hangs because the manager died. A client that dies during a call costs the
// others nothing: its server thread notices (within 50 ms) and ends; a lock it held is
// released, and the next acquirer sees holder_died() true (as with mp::Lock). A queue
// item a dying client was being sent is lost with it.
//
// Security: a wrong authkey is refused before anything is deserialized (the handshake
// of listener.hpp); a request is decoded by the hardened archive, so malformed or
// oversized frames get an error reply or close that connection, never crash the server.
// A server makes only the object types its own program uses, named by type, never code
// addresses. Nothing is encrypted: across machines, use a network you trust or a tunnel.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/detail/manager_core.hpp"
#include "mp/detail/servants.hpp"
#include "mp/listener.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"

namespace mp {

namespace detail {

template <class Rep, class Period>
WireTimeout wire_timeout(std::chrono::duration<Rep, Period> timeout) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
}
inline const WireTimeout kNoWait = std::chrono::nanoseconds(0);

/// A handle to an object in a manager's server: every proxy derives from it.
class ProxyBase {
 public:
  /// True for a proxy that names an object (not default-constructed, not moved from).
  explicit operator bool() const noexcept { return ref_ != nullptr; }
  /// The object's number in its server (equal for every proxy of the same object).
  std::uint64_t id() const noexcept { return ref_ ? ref_->id() : 0; }
  /// The tag of the kind of object this proxy speaks to.
  std::uint64_t interface_tag() const noexcept { return expected_tag_; }

  /// Sending a proxy takes a reference for the receiver before the bytes leave.
  template <class A>
  void save(A& ar) const {
    check();
    ref_->incref_for_transfer();
    const auto& ep = ref_->endpoint();
    ar(ep.address, ep.authkey, ref_->id(), ref_->interface_tag());
  }
  template <class A>
  void load(A& ar) {
    connection::Address address;
    std::string authkey;
    std::uint64_t id = 0, tag = 0;
    ar(address, authkey, id, tag);
    if (tag != expected_tag_) throw SerializationError("a proxy of another kind arrived where this one was expected");
    ref_ = std::make_shared<ProxyRef>(std::make_shared<ManagerEndpoint>(std::move(address), std::move(authkey)), id, tag);
  }

 protected:
  explicit ProxyBase(std::uint64_t tag) noexcept : expected_tag_(tag) {}
  ProxyBase(std::uint64_t tag, std::shared_ptr<ManagerEndpoint> ep, std::uint64_t id)
      : ref_(std::make_shared<ProxyRef>(std::move(ep), id, tag)), expected_tag_(tag) {}

  template <class R = void, class... A>
  R call(std::uint32_t method, const A&... args) const {
    check();
    return proxy_call<R>(*ref_, method, args...);
  }

 private:
  void check() const {
    if (!ref_) throw ValueError("this proxy is empty (default-constructed or moved from)");
  }
  std::shared_ptr<ProxyRef> ref_;
  std::uint64_t expected_tag_;
};

}  // namespace detail

/// manager.dict<K, V>(): a std::map in the server. Keys in order (a std::map's).
/// Missing keys raise mp::KeyError.
template <class K, class V>
class DictProxy : public detail::ProxyBase {
  using S = detail::DictServant<K, V>;

 public:
  DictProxy() noexcept : ProxyBase(detail::type_tag<S>()) {}
  DictProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id) : ProxyBase(detail::type_tag<S>(), std::move(ep), id) {}

  void set(const K& key, const V& value) { call(S::set, key, value); }  // d[key] = value
  V get(const K& key) const { return call<V>(S::get, key); }            // d[key]; mp::KeyError
  V get(const K& key, const V& fallback) const { return call<V>(S::get_or, key, fallback); }  // d.get(key, fallback)
  bool contains(const K& key) const { return call<bool>(S::contains, key); }
  std::size_t size() const { return call<std::uint64_t>(S::size); }
  V pop(const K& key) { return call<V>(S::pop, key); }                   // mp::KeyError
  V pop(const K& key, const V& fallback) { return call<V>(S::pop_or, key, fallback); }
  void erase(const K& key) { call(S::erase, key); }                     // del d[key]; mp::KeyError
  std::vector<K> keys() const { return call<std::vector<K>>(S::keys); }
  std::vector<V> values() const { return call<std::vector<V>>(S::values); }
  std::vector<std::pair<K, V>> items() const { return call<std::vector<std::pair<K, V>>>(S::items); }
  std::map<K, V> copy() const { return call<std::map<K, V>>(S::copy); }  // a local snapshot
  void clear() { call(S::clear); }
  void update(const std::map<K, V>& other) { call(S::update, other); }
  V setdefault(const K& key, const V& fallback) { return call<V>(S::setdefault, key, fallback); }
};

/// manager.list<T>(): a std::vector in the server. Indexes follow Python: negative
/// counts from the end; out of range raises mp::IndexError.
template <class T>
class ListProxy : public detail::ProxyBase {
  using S = detail::ListServant<T>;

 public:
  ListProxy() noexcept : ProxyBase(detail::type_tag<S>()) {}
  ListProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id) : ProxyBase(detail::type_tag<S>(), std::move(ep), id) {}

  void append(const T& x) { call(S::append, x); }
  void extend(const std::vector<T>& xs) { call(S::extend, xs); }
  void insert(std::int64_t index, const T& x) { call(S::insert, index, x); }
  T get(std::int64_t index) const { return call<T>(S::get, index); }
  void set(std::int64_t index, const T& x) { call(S::set, index, x); }
  T pop(std::int64_t index = -1) { return call<T>(S::pop, index); }
  std::size_t size() const { return call<std::uint64_t>(S::size); }
  std::vector<T> copy() const { return call<std::vector<T>>(S::copy); }
  void clear() { call(S::clear); }
  /// remove/index raise mp::ValueError when x is absent (as Python's).
  void remove(const T& x) { call(S::remove, x); }
  std::size_t index(const T& x) const { return call<std::uint64_t>(S::index, x); }
  std::size_t count(const T& x) const { return call<std::uint64_t>(S::count, x); }
};

/// manager.Namespace(): named attributes of any serializable types. get<T> of a name
/// set with another type raises mp::SerializationError; a missing name mp::AttributeError.
class NamespaceProxy : public detail::ProxyBase {
  using M = detail::NamespaceMethods;

 public:
  NamespaceProxy() noexcept : ProxyBase(detail::type_tag<detail::NamespaceServantTag>()) {}
  NamespaceProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id)
      : ProxyBase(detail::type_tag<detail::NamespaceServantTag>(), std::move(ep), id) {}

  template <class T>
  void set(const std::string& name, const T& value) {
    call(M::set, name, detail::encode(value));
  }
  template <class T>
  T get(const std::string& name) const {
    return detail::decode<T>(call<std::vector<std::byte>>(M::get, name));
  }
  bool contains(const std::string& name) const { return call<bool>(M::contains, name); }
  void erase(const std::string& name) { call(M::erase, name); }  // delattr
  std::vector<std::string> names() const { return call<std::vector<std::string>>(M::names); }
};

/// manager.Value<T>(x): one value in the server.
template <class T>
class ValueProxy : public detail::ProxyBase {
  using S = detail::ValueServant<T>;

 public:
  ValueProxy() noexcept : ProxyBase(detail::type_tag<S>()) {}
  ValueProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id) : ProxyBase(detail::type_tag<S>(), std::move(ep), id) {}

  T get() const { return call<T>(S::get); }
  T value() const { return get(); }  // Python's .value
  void set(const T& x) { call(S::set, x); }
};

/// manager.Array<T>(n): a fixed-size array in the server.
template <class T>
class ArrayProxy : public detail::ProxyBase {
  using S = detail::ArrayServant<T>;

 public:
  ArrayProxy() noexcept : ProxyBase(detail::type_tag<S>()) {}
  ArrayProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id) : ProxyBase(detail::type_tag<S>(), std::move(ep), id) {}

  T get(std::int64_t index) const { return call<T>(S::get, index); }
  void set(std::int64_t index, const T& x) { call(S::set, index, x); }
  std::size_t size() const { return call<std::uint64_t>(S::size); }
  std::vector<T> copy() const { return call<std::vector<T>>(S::copy); }
};

/// manager.Queue<T>(maxsize) and manager.JoinableQueue<T>(): Python's queue.Queue in
/// the server (also a registered mp::Queue). put on a full bounded queue waits;
/// put(x, timeout)/put_nowait raise mp::Full; get(timeout)/get_nowait raise mp::Empty.
template <class T>
class QueueProxy : public detail::ProxyBase {
  using M = detail::QueueMethods;

 public:
  QueueProxy() noexcept : ProxyBase(detail::type_tag<detail::QueueServantTag>()) {}
  QueueProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id)
      : ProxyBase(detail::type_tag<detail::QueueServantTag>(), std::move(ep), id) {}

  void put(const T& x) { call(M::put, detail::encode(x), detail::WireTimeout{}); }
  template <class Rep, class Period>
  void put(const T& x, std::chrono::duration<Rep, Period> timeout) {
    call(M::put, detail::encode(x), detail::wire_timeout(timeout));
  }
  void put_nowait(const T& x) { call(M::put, detail::encode(x), detail::kNoWait); }
  T get() { return detail::decode<T>(call<std::vector<std::byte>>(M::get, detail::WireTimeout{})); }
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return detail::decode<T>(call<std::vector<std::byte>>(M::get, detail::wire_timeout(timeout)));
  }
  T get_nowait() { return detail::decode<T>(call<std::vector<std::byte>>(M::get, detail::kNoWait)); }
  std::size_t qsize() const { return call<std::uint64_t>(M::qsize); }
  bool empty() const { return call<bool>(M::empty); }
  bool full() const { return call<bool>(M::full); }
  /// JoinableQueue: one item taken with get() is done. Too many: mp::ValueError.
  void task_done() { call(M::task_done); }
  /// JoinableQueue: blocks until every item put has been task_done().
  void join() { call<bool>(M::join, detail::WireTimeout{}); }
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return call<bool>(M::join, detail::wire_timeout(timeout));
  }
};
template <class T>
using JoinableQueueProxy = QueueProxy<T>;

namespace detail {

/// The acquire() family of the proxies one can acquire (locks, semaphores, conditions).
template <class Tag, std::uint32_t kAcquire>
class AcquiringProxy : public ProxyBase {
 public:
  /// Blocks until acquired; true.
  bool acquire() { return call<bool>(kAcquire, WireTimeout{}); }
  /// acquire(false): does not wait; false if it could not take it now.
  bool acquire(bool block) { return call<bool>(kAcquire, block ? WireTimeout{} : kNoWait); }
  /// Waits at most `timeout`; false if it ran out.
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return call<bool>(kAcquire, wire_timeout(timeout));
  }
  void lock() { acquire(); }
  bool try_lock() { return acquire(false); }

 protected:
  AcquiringProxy() noexcept : ProxyBase(type_tag<Tag>()) {}
  AcquiringProxy(std::shared_ptr<ManagerEndpoint> ep, std::uint64_t id) : ProxyBase(type_tag<Tag>(), std::move(ep), id) {}
};

}  // namespace detail

/// manager.Lock() and manager.RLock() (Python's AcquirerProxy). The holder is the
/// calling thread. A lock whose holder died (or whose thread ended) while holding it is
/// given to the next acquirer, with holder_died() true until it releases.
class AcquirerProxy : public detail::AcquiringProxy<detail::LockServantTag, detail::LockMethods::acquire> {
  using M = detail::LockMethods;

 public:
  AcquirerProxy() noexcept = default;
  AcquirerProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id) : AcquiringProxy(std::move(ep), id) {}

  /// Releasing an unheld lock, or an RLock held by another thread: mp::ValueError.
  void release() { call(M::release); }
  void unlock() { release(); }
  bool holder_died() const { return call<bool>(M::holder_died); }
  bool locked() const { return call<bool>(M::locked); }
};
using LockProxy = AcquirerProxy;
using RLockProxy = AcquirerProxy;

/// manager.Semaphore(n) and manager.BoundedSemaphore(n).
class SemaphoreProxy : public detail::AcquiringProxy<detail::SemaphoreServantTag, detail::SemaphoreMethods::acquire> {
  using M = detail::SemaphoreMethods;

 public:
  SemaphoreProxy() noexcept = default;
  SemaphoreProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id) : AcquiringProxy(std::move(ep), id) {}

  /// A bounded semaphore released above its bound raises mp::ValueError.
  void release(std::uint64_t n = 1) { call(M::release, n); }
  void unlock() { release(); }
  std::uint64_t get_value() const { return call<std::uint64_t>(M::get_value); }
};
using BoundedSemaphoreProxy = SemaphoreProxy;

/// manager.Event().
class EventProxy : public detail::ProxyBase {
  using M = detail::EventMethods;

 public:
  EventProxy() noexcept : ProxyBase(detail::type_tag<detail::EventServantTag>()) {}
  EventProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id)
      : ProxyBase(detail::type_tag<detail::EventServantTag>(), std::move(ep), id) {}

  void set() { call(M::set); }
  void clear() { call(M::clear); }
  bool is_set() const { return call<bool>(M::is_set); }
  bool wait() { return call<bool>(M::wait, detail::WireTimeout{}); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return call<bool>(M::wait, detail::wire_timeout(timeout));
  }
};

/// manager.Condition(): a condition variable with its own recursive lock, held by the
/// calling thread. wait() must be called with the lock held (else mp::ValueError).
class ConditionProxy : public detail::AcquiringProxy<detail::ConditionServantTag, detail::ConditionMethods::acquire> {
  using M = detail::ConditionMethods;

 public:
  ConditionProxy() noexcept = default;
  ConditionProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id) : AcquiringProxy(std::move(ep), id) {}

  void release() { call(M::release); }
  void unlock() { release(); }
  /// Releases the lock, waits for a notify (or the timeout: false), takes the lock back.
  bool wait() { return call<bool>(M::wait, detail::WireTimeout{}); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return call<bool>(M::wait, detail::wire_timeout(timeout));
  }
  /// Waits until pred() (evaluated here, with the lock held) is true; returns its last value.
  template <class Pred>
  bool wait_for(Pred pred) {
    while (!pred()) wait();
    return true;
  }
  template <class Pred, class Rep, class Period>
  bool wait_for(Pred pred, std::chrono::duration<Rep, Period> timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    bool ok = pred();
    while (!ok) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= left.zero()) break;
      wait(left);
      ok = pred();
    }
    return ok;
  }
  void notify(std::uint64_t n = 1) { call(M::notify, n); }
  void notify_all() { notify(UINT64_MAX); }
};

/// manager.Barrier(parties): Python's threading.Barrier (without an action). A wait that
/// times out, or whose client dies, breaks the barrier (mp::BrokenBarrierError for all).
class BarrierProxy : public detail::ProxyBase {
  using M = detail::BarrierMethods;

 public:
  BarrierProxy() noexcept : ProxyBase(detail::type_tag<detail::BarrierServantTag>()) {}
  BarrierProxy(std::shared_ptr<detail::ManagerEndpoint> ep, std::uint64_t id)
      : ProxyBase(detail::type_tag<detail::BarrierServantTag>(), std::move(ep), id) {}

  /// Returns this party's index, distinct per party in [0, parties).
  std::size_t wait() { return call<std::uint64_t>(M::wait, detail::WireTimeout{}); }
  template <class Rep, class Period>
  std::size_t wait(std::chrono::duration<Rep, Period> timeout) {
    return call<std::uint64_t>(M::wait, detail::wire_timeout(timeout));
  }
  void abort() { call(M::abort); }
  void reset() { call(M::reset); }
  std::size_t parties() const { return call<std::uint64_t>(M::parties); }
  std::size_t n_waiting() const { return call<std::uint64_t>(M::n_waiting); }
  bool broken() const { return call<bool>(M::broken); }
};

namespace detail {

/// A registered mp::Queue or mp::JoinableQueue served to QueueProxy clients. The server
/// process may use the queue directly too; blocking calls wait in slices.
template <class Q, class T>
class SharedQueueServant final : public Servant {
 public:
  explicit SharedQueueServant(Q q) : q_(std::move(q)) {}
  std::uint64_t interface_tag() const noexcept override { return type_tag<QueueServantTag>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext& ctx) override {
    using M = QueueMethods;
    switch (method) {
      case M::put: {
        auto [bytes, timeout] = read_args<std::vector<std::byte>, WireTimeout>(in);
        const T item = decode<T>(bytes);
        sliced(ctx, timeout, [&](std::chrono::nanoseconds t) { q_.put(item, t); });
        return;
      }
      case M::get: {
        auto [timeout] = read_args<WireTimeout>(in);
        T item = make_for_load<T>();
        sliced(ctx, timeout, [&](std::chrono::nanoseconds t) { item = q_.get(t); });
        return save_value(out, encode(item));
      }
      case M::qsize:
        read_args<>(in);
        return save_value(out, static_cast<std::uint64_t>(q_.qsize()));
      case M::empty:
        read_args<>(in);
        return save_value(out, q_.empty());
      case M::full:
        read_args<>(in);
        return save_value(out, q_.full());
      case M::task_done:
        read_args<>(in);
        if constexpr (requires { q_.task_done(); }) {
          q_.task_done();
          return;
        } else {
          throw ValueError("task_done() on a queue that is not a JoinableQueue");
        }
      case M::join: {
        auto [timeout] = read_args<WireTimeout>(in);
        if constexpr (requires { q_.join(); }) {
          const auto deadline = timeout ? std::chrono::steady_clock::now() + *timeout : std::chrono::steady_clock::time_point::max();
          for (;;) {
            const auto left = deadline - std::chrono::steady_clock::now();
            if (q_.join(std::min<std::chrono::nanoseconds>(left, kWaitSlice))) return save_value(out, true);
            if (std::chrono::steady_clock::now() >= deadline) return save_value(out, false);
            if (ctx.cancelled()) throw ClientGone{};
          }
        } else {
          throw ValueError("join() on a queue that is not a JoinableQueue");
        }
      }
      default:
        throw ValueError("Queue has no method number " + std::to_string(method));
    }
  }

 private:
  // Runs op(slice) until it succeeds, raising its mp::Full/mp::Empty at the deadline.
  template <class Op>
  static void sliced(CallContext& ctx, const WireTimeout& timeout, Op op) {
    const auto deadline = timeout ? std::chrono::steady_clock::now() + *timeout : std::chrono::steady_clock::time_point::max();
    for (;;) {
      const auto left = std::max(deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero());
      const bool last = left <= kWaitSlice;
      try {
        op(last ? std::chrono::duration_cast<std::chrono::nanoseconds>(left) : std::chrono::nanoseconds(kWaitSlice));
        return;
      } catch (const Full&) {
        if (last) throw;
      } catch (const Empty&) {
        if (last) throw;
      }
      if (ctx.cancelled()) throw ClientGone{};
    }
  }
  Q q_;
};

/// The servant that serves `object` under register_object.
template <class K, class V>
std::shared_ptr<Servant> servant_for(std::map<K, V> object) {
  return std::make_shared<DictServant<K, V>>(std::move(object));
}
template <class T>
std::shared_ptr<Servant> servant_for(std::vector<T> object) {
  return std::make_shared<ListServant<T>>(std::move(object));
}
template <class T>
std::shared_ptr<Servant> servant_for(mp::Queue<T> object) {
  return std::make_shared<SharedQueueServant<mp::Queue<T>, T>>(std::move(object));
}
template <class T>
std::shared_ptr<Servant> servant_for(mp::JoinableQueue<T> object) {
  return std::make_shared<SharedQueueServant<mp::JoinableQueue<T>, T>>(std::move(object));
}

}  // namespace detail

/// A manager's server running in this process: get_server().serve_forever().
class Server {
 public:
  struct State;
  /// Binds `address` (throws as Listener does: mp::OSError, mp::ValueError).
  Server(connection::Address address, std::optional<std::string> authkey);
  Server(Server&&) noexcept;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  /// Stops a serve_forever() running in another thread and waits until it has returned.
  ~Server();

  /// Serves clients, each on a thread of its own, until shutdown() — from another
  /// thread of this process, or a client's BaseManager::shutdown(). Then ends every
  /// client's connection, waits for their threads and closes the listening socket.
  /// Clients that fail the handshake are refused; the server goes on.
  void serve_forever();
  /// Makes serve_forever() return within ~50 ms. Thread-safe; never throws.
  void shutdown() noexcept;
  /// The address as bound (a TCP port 0 resolved).
  const connection::Address& address() const;
  /// Exposes `servant` under `name`; it lives as long as the server. Throws
  /// mp::ValueError if the name is taken.
  void register_servant(std::string name, std::shared_ptr<detail::Servant> servant);

 private:
  std::shared_ptr<State> s_;
};

/// Python's keyword arguments of BaseManager(...) and Manager().
struct ManagerOptions {
  /// Where the server listens: {host, port} for TCP, a path or "@name" for a Unix
  /// socket. The default: an arbitrary abstract Unix name (this machine only).
  connection::Address address{};
  /// The key clients must prove they hold. start() and get_server() make a random one
  /// when unset (authkey() tells it); connect() then offers none.
  std::optional<std::string> authkey{};
  /// How start() starts the server process (unset: the program's start method).
  std::optional<StartMethod> start_method{};
  /// How long shutdown() waits for the server process before terminating it.
  std::chrono::nanoseconds shutdown_timeout = std::chrono::seconds(1);
};

/// Python's BaseManager: start() a server process, or connect() to a server elsewhere,
/// or run one here with get_server().serve_forever(); then make objects and proxies.
/// Move-only. Not thread-safe itself (make objects from one thread); the proxies are.
class BaseManager {
 public:
  explicit BaseManager(ManagerOptions options = {});
  BaseManager(BaseManager&&) noexcept;
  BaseManager& operator=(BaseManager&&) = delete;
  BaseManager(const BaseManager&) = delete;
  ~BaseManager();  // shutdown() of a server this manager started

  /// Exposes `object` under `name` in the server this manager runs (get_server() or
  /// start(); call before them). Supported: mp::Queue<T>, mp::JoinableQueue<T> (served
  /// to QueueProxy<T>), std::map<K, V> (DictProxy<K, V>), std::vector<T> (ListProxy<T>).
  /// start() can carry named objects only under the fork start method (they live in
  /// this process's memory): elsewhere it raises mp::ValueError.
  template <class T>
  void register_object(std::string name, T object) {
    registrations_.push_back({std::move(name), [object = std::move(object)] { return detail::servant_for(object); }});
  }

  /// Binds the address and returns the server, to serve_forever() in this process.
  Server& get_server();
  /// Starts the server in a child process (a daemon: it dies with this process) and
  /// waits until it listens. Throws mp::ProcessError if it could not start or bind.
  void start();
  /// Connects to a server elsewhere; throws mp::OSError if nobody listens there,
  /// mp::AuthenticationError for a wrong key.
  void connect();
  /// Started here: asks the server to stop, waits up to shutdown_timeout, then
  /// terminates it. Connected: asks the remote server to stop (serve_forever returns).
  /// Afterwards this manager's proxies raise mp::ValueError. Idempotent.
  void shutdown();

  /// The server's address (as bound). Throws mp::ValueError before start/connect/get_server.
  const connection::Address& address() const;
  /// The key (start() may have made it): give it, with address(), to a client.
  const std::optional<std::string>& authkey() const noexcept { return options_.authkey; }
  /// The server process's pid (start() only).
  std::optional<pid_t> pid() const;
  /// How many objects the server holds that proxies made (not the named ones): a
  /// diagnostic of reference counting (Python's _number_of_objects).
  std::size_t object_count() const;

  /// The proxy of the object registered under `name`. Throws mp::KeyError if there is
  /// none, mp::SerializationError if it is of another kind than P speaks to.
  template <class P>
  P get(const std::string& name) const {
    const std::uint64_t tag = P().interface_tag();
    std::vector<std::byte> request;
    detail::OutputArchive ar(request);
    const auto op = detail::ManagerOp::get_named;
    ar.saveBinary(&op, sizeof op);
    detail::save_value(ar, name);
    detail::save_value(ar, tag);
    const auto reply = detail::manager_request(endpoint(), request);
    detail::InputArchive in(reply);
    return P(endpoint_ptr(), std::get<0>(detail::read_args<std::uint64_t>(in)));
  }

  template <class K, class V>
  DictProxy<K, V> dict(const std::map<K, V>& init = {}) {
    return DictProxy<K, V>(endpoint_ptr(), detail::manager_create<detail::DictServant<K, V>>(endpoint(), init));
  }
  template <class T>
  ListProxy<T> list(const std::vector<T>& init = {}) {
    return ListProxy<T>(endpoint_ptr(), detail::manager_create<detail::ListServant<T>>(endpoint(), init));
  }
  NamespaceProxy Namespace() { return NamespaceProxy(endpoint_ptr(), create_builtin<detail::NamespaceServantTag>()); }
  LockProxy Lock() { return LockProxy(endpoint_ptr(), create_builtin<detail::LockServantTag>(false)); }
  RLockProxy RLock() { return RLockProxy(endpoint_ptr(), create_builtin<detail::LockServantTag>(true)); }
  SemaphoreProxy Semaphore(std::uint64_t value = 1) {
    return SemaphoreProxy(endpoint_ptr(), create_builtin<detail::SemaphoreServantTag>(value, std::uint64_t{0}));
  }
  BoundedSemaphoreProxy BoundedSemaphore(std::uint64_t value = 1) {
    return SemaphoreProxy(endpoint_ptr(), create_builtin<detail::SemaphoreServantTag>(value, value));
  }
  ConditionProxy Condition() { return ConditionProxy(endpoint_ptr(), create_builtin<detail::ConditionServantTag>()); }
  EventProxy Event() { return EventProxy(endpoint_ptr(), create_builtin<detail::EventServantTag>()); }
  BarrierProxy Barrier(std::uint64_t parties, detail::WireTimeout timeout = std::nullopt) {
    return BarrierProxy(endpoint_ptr(), create_builtin<detail::BarrierServantTag>(parties, timeout));
  }
  template <class T>
  QueueProxy<T> Queue(std::uint64_t maxsize = 0) {
    return QueueProxy<T>(endpoint_ptr(), create_builtin<detail::QueueServantTag>(maxsize));
  }
  template <class T>
  JoinableQueueProxy<T> JoinableQueue(std::uint64_t maxsize = 0) {
    return Queue<T>(maxsize);
  }
  template <class T>
  ValueProxy<T> Value(const T& value) {
    return ValueProxy<T>(endpoint_ptr(), detail::manager_create<detail::ValueServant<T>>(endpoint(), value));
  }
  /// n copies of T{} (Python's Array(typecode, n)), or the given values.
  template <class T>
  ArrayProxy<T> Array(std::size_t n) {
    return Array<T>(std::vector<T>(n));
  }
  template <class T>
  ArrayProxy<T> Array(const std::vector<T>& values) {
    return ArrayProxy<T>(endpoint_ptr(), detail::manager_create<detail::ArrayServant<T>>(endpoint(), values));
  }

 private:
  template <class Tag, class... A>
  std::uint64_t create_builtin(const A&... args) {
    return detail::manager_create_tagged(endpoint(), detail::type_tag<Tag>(), args...);
  }
  const detail::ManagerEndpoint& endpoint() const { return *endpoint_ptr(); }
  static std::size_t object_count_of(const detail::ManagerEndpoint& ep);
  const std::shared_ptr<detail::ManagerEndpoint>& endpoint_ptr() const;

  struct Registration {
    std::string name;
    std::function<std::shared_ptr<detail::Servant>()> make;
  };
  ManagerOptions options_;
  std::vector<Registration> registrations_;
  std::shared_ptr<detail::ManagerEndpoint> ep_;
  std::unique_ptr<Server> server_;    // get_server()
  std::unique_ptr<Process> process_;  // start()
};

/// mp.Manager(): a BaseManager whose server process starts at once (Python's
/// SyncManager, started). Shut down by shutdown() or its destructor.
class Manager : public BaseManager {
 public:
  explicit Manager(ManagerOptions options = {});
};
using SyncManager = Manager;

}  // namespace mp
