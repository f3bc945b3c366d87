// src/servants.cpp — the untyped objects a manager's server holds: a Namespace, a queue
// (of encoded items: the proxy checks their type), a lock, a semaphore, an event, a
// condition and a barrier. In-process state under one std::mutex each; blocking methods
// wait in slices and give up when their client hangs up (wait_ready).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mp/detail/servants.hpp"

namespace mp::detail {
namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::byte>;

/// Waits on `cv` until ready() holds (true) or the timeout passes (false). Looks at the
/// client between slices and throws ClientGone when it has hung up.
template <class Ready>
bool wait_ready(std::unique_lock<std::mutex>& lk, std::condition_variable& cv, CallContext& ctx, const WireTimeout& timeout,
                Ready ready) {
  if (ready()) return true;
  if (timeout && *timeout <= std::chrono::nanoseconds(0)) return false;
  const auto deadline = timeout ? Clock::now() + *timeout : Clock::time_point::max();
  for (;;) {
    const auto now = Clock::now();
    const auto slice_end = deadline - now > kWaitSlice ? now + kWaitSlice : deadline;
    if (cv.wait_until(lk, slice_end, ready)) return true;
    if (Clock::now() >= deadline) return false;
    lk.unlock();
    const bool gone = ctx.cancelled();  // polls a socket: not under the servant's lock
    lk.lock();
    if (gone) throw ClientGone{};
  }
}

/// A lock held by a client connection (one client thread): Lock, RLock, a Condition's.
/// Every member is called with the servant's mutex held.
struct ClientLock {
  std::uint64_t owner = 0;  // a connection id; 0 = free
  std::uint32_t depth = 0;

  /// Takes the lock for `me`, waiting as wait_ready does; false when the timeout passed.
  bool acquire(std::unique_lock<std::mutex>& lk, std::condition_variable& cv, CallContext& ctx, const WireTimeout& timeout,
               std::uint64_t me, bool recursive) {
    if (recursive && owner == me) {
      ++depth;
      return true;
    }
    if (!wait_ready(lk, cv, ctx, timeout, [&] { return owner == 0; })) return false;
    owner = me;
    depth = 1;
    return true;
  }
  /// Undoes one acquire; true when that freed the lock.
  bool release_once(bool recursive) {
    if (recursive && --depth != 0) return false;
    owner = 0;
    depth = 0;
    return true;
  }
  /// Frees the lock if `connection` holds it; true if it did.
  bool drop(std::uint64_t connection) {
    if (owner != connection || owner == 0) return false;
    owner = 0;
    depth = 0;
    return true;
  }
};

class NamespaceServant final : public Servant {
 public:
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    read_args<>(ar);
    return std::make_shared<NamespaceServant>();
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<NamespaceServantTag>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext&) override {
    using M = NamespaceMethods;
    switch (method) {
      case M::set: {
        auto [name, value] = read_args<std::string, Bytes>(in);
        std::lock_guard g(mu_);
        attrs_.insert_or_assign(std::move(name), std::move(value));
        return;
      }
      case M::get: {
        auto [name] = read_args<std::string>(in);
        std::lock_guard g(mu_);
        auto it = attrs_.find(name);
        if (it == attrs_.end()) throw AttributeError("'Namespace' object has no attribute '" + name + "'");
        return save_value(out, it->second);
      }
      case M::contains: {
        auto [name] = read_args<std::string>(in);
        std::lock_guard g(mu_);
        return save_value(out, attrs_.contains(name));
      }
      case M::erase: {
        auto [name] = read_args<std::string>(in);
        std::lock_guard g(mu_);
        if (attrs_.erase(name) == 0) throw AttributeError("'Namespace' object has no attribute '" + name + "'");
        return;
      }
      case M::names: {
        read_args<>(in);
        std::lock_guard g(mu_);
        std::vector<std::string> names;
        for (const auto& kv : attrs_) names.push_back(kv.first);
        return save_value(out, names);
      }
      default:
        throw ValueError("Namespace has no method number " + std::to_string(method));
    }
  }

 private:
  std::mutex mu_;
  std::map<std::string, Bytes> attrs_;
};

/// Python's queue.Queue in the server: manager.Queue<T>() and manager.JoinableQueue<T>().
class QueueServant final : public Servant {
 public:
  explicit QueueServant(std::uint64_t maxsize) : maxsize_(maxsize) {}
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    auto [maxsize] = read_args<std::uint64_t>(ar);
    return std::make_shared<QueueServant>(maxsize);
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<QueueServantTag>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext& ctx) override {
    using M = QueueMethods;
    switch (method) {
      case M::put: {
        auto [item, timeout] = read_args<Bytes, WireTimeout>(in);
        std::unique_lock lk(mu_);
        if (!wait_ready(lk, changed_, ctx, timeout, [&] { return maxsize_ == 0 || items_.size() < maxsize_; })) {
          throw Full("the queue is full");
        }
        items_.push_back(std::move(item));
        ++unfinished_;
        changed_.notify_all();
        return;
      }
      case M::get: {
        auto [timeout] = read_args<WireTimeout>(in);
        std::unique_lock lk(mu_);
        if (!wait_ready(lk, changed_, ctx, timeout, [&] { return !items_.empty(); })) throw Empty("the queue is empty");
        Bytes item = std::move(items_.front());
        items_.pop_front();
        changed_.notify_all();
        return save_value(out, item);
      }
      case M::qsize: case M::empty: case M::full: {
        read_args<>(in);
        std::lock_guard g(mu_);
        if (method == M::qsize) return save_value(out, static_cast<std::uint64_t>(items_.size()));
        if (method == M::empty) return save_value(out, items_.empty());
        return save_value(out, maxsize_ != 0 && items_.size() >= maxsize_);
      }
      case M::task_done: {
        read_args<>(in);
        std::lock_guard g(mu_);
        if (unfinished_ == 0) throw ValueError("task_done() called too many times");
        if (--unfinished_ == 0) changed_.notify_all();
        return;
      }
      case M::join: {
        auto [timeout] = read_args<WireTimeout>(in);
        std::unique_lock lk(mu_);
        return save_value(out, wait_ready(lk, changed_, ctx, timeout, [&] { return unfinished_ == 0; }));
      }
      default:
        throw ValueError("Queue has no method number " + std::to_string(method));
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Bytes> items_;
  const std::uint64_t maxsize_;
  std::uint64_t unfinished_ = 0;
};

/// Lock and RLock. The holder is a client connection (one client thread). A client
/// whose connection closes while it holds the lock — it died, or its thread ended —
/// loses it: the next acquirer gets it with holder_died() true until it releases.
class LockServant final : public Servant {
 public:
  explicit LockServant(bool recursive) : recursive_(recursive) {}
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    auto [recursive] = read_args<bool>(ar);
    return std::make_shared<LockServant>(recursive);
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<LockServantTag>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext& ctx) override {
    using M = LockMethods;
    const std::uint64_t me = ctx.connection_id();
    switch (method) {
      case M::acquire: {
        auto [timeout] = read_args<WireTimeout>(in);
        ctx.watch_disconnect();
        std::unique_lock lk(mu_);
        return save_value(out, lock_.acquire(lk, changed_, ctx, timeout, me, recursive_));
      }
      case M::release: {
        read_args<>(in);
        std::lock_guard g(mu_);
        if (lock_.owner == 0) throw ValueError("release of an unlocked lock");
        if (recursive_ && lock_.owner != me) throw ValueError("cannot release an RLock held by another thread or process");
        if (lock_.release_once(recursive_)) {
          holder_died_ = false;
          changed_.notify_all();
        }
        return;
      }
      case M::holder_died: case M::locked: {
        read_args<>(in);
        std::lock_guard g(mu_);
        return save_value(out, method == M::holder_died ? holder_died_ : lock_.owner != 0);
      }
      default:
        throw ValueError("Lock has no method number " + std::to_string(method));
    }
  }

  void disconnected(std::uint64_t connection_id) override {
    std::lock_guard g(mu_);
    if (!lock_.drop(connection_id)) return;
    holder_died_ = true;
    changed_.notify_all();
  }

 private:
  const bool recursive_;
  std::mutex mu_;
  std::condition_variable changed_;
  ClientLock lock_;
  bool holder_died_ = false;
};

/// Semaphore and BoundedSemaphore (bound 0 = unbounded).
class SemaphoreServant final : public Servant {
 public:
  SemaphoreServant(std::uint64_t value, std::uint64_t bound) : value_(value), bound_(bound) {}
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    auto [value, bound] = read_args<std::uint64_t, std::uint64_t>(ar);
    if (bound != 0 && value > bound) throw ValueError("a bounded semaphore's initial value exceeds its bound");
    return std::make_shared<SemaphoreServant>(value, bound);
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<SemaphoreServantTag>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext& ctx) override {
    using M = SemaphoreMethods;
    switch (method) {
      case M::acquire: {
        auto [timeout] = read_args<WireTimeout>(in);
        std::unique_lock lk(mu_);
        if (!wait_ready(lk, changed_, ctx, timeout, [&] { return value_ > 0; })) return save_value(out, false);
        --value_;
        return save_value(out, true);
      }
      case M::release: {
        auto [n] = read_args<std::uint64_t>(in);
        std::lock_guard g(mu_);
        if (bound_ != 0 && value_ + n > bound_) throw ValueError("semaphore released too many times");
        value_ += n;
        changed_.notify_all();
        return;
      }
      case M::get_value: {
        read_args<>(in);
        std::lock_guard g(mu_);
        return save_value(out, value_);
      }
      default:
        throw ValueError("Semaphore has no method number " + std::to_string(method));
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::uint64_t value_;
  const std::uint64_t bound_;
};

class EventServant final : public Servant {
 public:
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    read_args<>(ar);
    return std::make_shared<EventServant>();
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<EventServantTag>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext& ctx) override {
    using M = EventMethods;
    if (method == M::wait) {
      auto [timeout] = read_args<WireTimeout>(in);
      std::unique_lock lk(mu_);
      return save_value(out, wait_ready(lk, changed_, ctx, timeout, [&] { return flag_; }));
    }
    read_args<>(in);
    std::lock_guard g(mu_);
    switch (method) {
      case M::set:
        flag_ = true;
        changed_.notify_all();
        return;
      case M::clear:
        flag_ = false;
        return;
      case M::is_set:
        return save_value(out, flag_);
      default:
        throw ValueError("Event has no method number " + std::to_string(method));
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool flag_ = false;
};

/// A condition variable with its own recursive lock (Python's manager.Condition()).
class ConditionServant final : public Servant {
 public:
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    read_args<>(ar);
    return std::make_shared<ConditionServant>();
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<ConditionServantTag>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext& ctx) override {
    using M = ConditionMethods;
    const std::uint64_t me = ctx.connection_id();
    switch (method) {
      case M::acquire: {
        auto [timeout] = read_args<WireTimeout>(in);
        ctx.watch_disconnect();
        std::unique_lock lk(mu_);
        return save_value(out, lock_.acquire(lk, changed_, ctx, timeout, me, true));
      }
      case M::release: {
        read_args<>(in);
        std::lock_guard g(mu_);
        if (lock_.owner != me) throw ValueError("cannot release an un-acquired condition lock");
        if (lock_.release_once(true)) changed_.notify_all();
        return;
      }
      case M::wait: {
        auto [timeout] = read_args<WireTimeout>(in);
        std::unique_lock lk(mu_);
        if (lock_.owner != me) throw ValueError("cannot wait on an un-acquired condition lock");
        const std::uint32_t saved = lock_.depth;
        lock_.drop(me);
        waiters_.push_back(false);
        auto mine = std::prev(waiters_.end());
        changed_.notify_all();
        bool notified = false;
        try {
          notified = wait_ready(lk, changed_, ctx, timeout, [&] { return *mine; });
        } catch (...) {
          waiters_.erase(mine);
          throw;
        }
        waiters_.erase(mine);
        // Take the lock back, as long as it takes (Python's wait does the same).
        lock_.acquire(lk, changed_, ctx, std::nullopt, me, true);
        lock_.depth = saved;
        return save_value(out, notified);
      }
      case M::notify: {
        auto [n] = read_args<std::uint64_t>(in);
        std::lock_guard g(mu_);
        if (lock_.owner != me) throw ValueError("cannot notify on an un-acquired condition lock");
        for (auto it = waiters_.begin(); it != waiters_.end() && n > 0; ++it) {
          if (!*it) {
            *it = true;
            --n;
          }
        }
        changed_.notify_all();
        return;
      }
      default:
        throw ValueError("Condition has no method number " + std::to_string(method));
    }
  }

  void disconnected(std::uint64_t connection_id) override {
    std::lock_guard g(mu_);
    if (lock_.drop(connection_id)) changed_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  ClientLock lock_;
  std::list<bool> waiters_;  // true once notified; in the order they started waiting
};

/// Python's threading.Barrier, without an action. A wait that times out, or whose
/// client hangs up, breaks the barrier for every party.
class BarrierServant final : public Servant {
 public:
  BarrierServant(std::uint64_t parties, WireTimeout timeout) : parties_(parties), default_timeout_(timeout) {}
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    auto [parties, timeout] = read_args<std::uint64_t, WireTimeout>(ar);
    if (parties == 0) throw ValueError("a barrier needs at least one party");
    return std::make_shared<BarrierServant>(parties, timeout);
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<BarrierServantTag>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext& ctx) override {
    using M = BarrierMethods;
    if (method == M::wait) {
      auto [timeout] = read_args<WireTimeout>(in);
      std::unique_lock lk(mu_);
      if (broken_) throw BrokenBarrierError("the barrier is broken");
      auto round = round_;
      const std::uint64_t index = count_++;
      if (count_ == parties_) {
        round->passed = true;
        next_round();
        changed_.notify_all();
        return save_value(out, index);
      }
      bool passed_or_broken = false;
      try {
        passed_or_broken = wait_ready(lk, changed_, ctx, timeout ? timeout : default_timeout_,
                                      [&] { return round->passed || round->broken; });
      } catch (const ClientGone&) {
        break_round();
        throw;
      }
      if (!passed_or_broken) {
        break_round();
        throw BrokenBarrierError("a barrier wait timed out: the barrier is broken");
      }
      if (round->broken) throw BrokenBarrierError("the barrier was broken while waiting");
      return save_value(out, index);
    }
    read_args<>(in);
    std::lock_guard g(mu_);
    switch (method) {
      case M::abort:
        break_round();
        return;
      case M::reset:
        round_->broken = true;  // those waiting now raise
        next_round();
        broken_ = false;
        changed_.notify_all();
        return;
      case M::parties:
        return save_value(out, parties_);
      case M::n_waiting:
        return save_value(out, count_);
      case M::broken:
        return save_value(out, broken_);
      default:
        throw ValueError("Barrier has no method number " + std::to_string(method));
    }
  }

 private:
  struct Round {
    bool passed = false;
    bool broken = false;
  };
  void next_round() {
    round_ = std::make_shared<Round>();
    count_ = 0;
  }
  void break_round() {  // with mu_ held
    broken_ = true;
    round_->broken = true;
    next_round();
    changed_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable changed_;
  const std::uint64_t parties_;
  const WireTimeout default_timeout_;
  std::shared_ptr<Round> round_ = std::make_shared<Round>();
  std::uint64_t count_ = 0;
  bool broken_ = false;
};

template <class S>
std::shared_ptr<Servant> make_servant(InputArchive& ar) {
  return S::make(ar);
}

}  // namespace

void register_builtin_servants() noexcept {
  static const bool done = [] {
    register_servant_type(type_tag<NamespaceServantTag>(), &make_servant<NamespaceServant>);
    register_servant_type(type_tag<QueueServantTag>(), &make_servant<QueueServant>);
    register_servant_type(type_tag<LockServantTag>(), &make_servant<LockServant>);
    register_servant_type(type_tag<SemaphoreServantTag>(), &make_servant<SemaphoreServant>);
    register_servant_type(type_tag<EventServantTag>(), &make_servant<EventServant>);
    register_servant_type(type_tag<ConditionServantTag>(), &make_servant<ConditionServant>);
    register_servant_type(type_tag<BarrierServantTag>(), &make_servant<BarrierServant>);
    return true;
  }();
  (void)done;
}

}  // namespace mp::detail
