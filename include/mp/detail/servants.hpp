// mp/detail/servants.hpp — the objects a manager's server holds for its proxies: a
// dict, a list, a value, an array (templates: their types travel with the program), and
// the method numbers of the untyped ones (namespace, queues, locks and their kin:
// src/servants.cpp).
//
// Each servant guards itself with its own mutex; a method that blocks (a queue's get,
// a lock's acquire) waits in slices of kWaitSlice and gives up when the client has
// hung up or the server is stopping (CallContext::cancelled), so a client that dies
// mid-call never leaves a server thread behind.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/manager_core.hpp"
#include "mp/errors.hpp"

namespace mp::detail {

/// "'key'" for a key that prints (strings, numbers), "a key" otherwise.
template <class K>
std::string describe_key(const K& key) {
  if constexpr (std::is_convertible_v<const K&, std::string_view>) {
    return "'" + std::string(std::string_view(key)) + "'";
  } else if constexpr (std::is_arithmetic_v<K>) {
    return std::to_string(key);
  } else {
    return "a key";
  }
}

/// Python's index rules: negative counts from the end; outside [0, size) raises
/// mp::IndexError naming `what`.
inline std::size_t resolve_index(std::int64_t i, std::size_t size, const char* what) {
  const auto n = static_cast<std::int64_t>(size);
  const std::int64_t j = i < 0 ? i + n : i;
  if (j < 0 || j >= n) throw IndexError(std::string(what) + " index " + std::to_string(i) + " out of range (size " + std::to_string(size) + ")");
  return static_cast<std::size_t>(j);
}

/// A std::map in the server (manager.dict<K, V>()).
template <class K, class V>
class DictServant final : public Servant {
 public:
  enum Method : std::uint32_t {
    set = 1, get, get_or, contains, size, pop, pop_or, erase, keys, values, items, copy, clear, update, setdefault
  };
  explicit DictServant(std::map<K, V> init = {}) : map_(std::move(init)) {}
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    auto [init] = read_args<std::map<K, V>>(ar);
    return std::make_shared<DictServant>(std::move(init));
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<DictServant>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext&) override {
    switch (method) {
      case set: {
        auto [k, v] = read_args<K, V>(in);
        std::lock_guard g(mu_);
        map_.insert_or_assign(std::move(k), std::move(v));
        return;
      }
      case get: {
        auto [k] = read_args<K>(in);
        std::lock_guard g(mu_);
        return save_value(out, at(k));
      }
      case get_or: {
        auto [k, d] = read_args<K, V>(in);
        std::lock_guard g(mu_);
        auto it = map_.find(k);
        return save_value(out, it == map_.end() ? d : it->second);
      }
      case contains: {
        auto [k] = read_args<K>(in);
        std::lock_guard g(mu_);
        return save_value(out, map_.contains(k));
      }
      case size: {
        read_args<>(in);
        std::lock_guard g(mu_);
        return save_value(out, static_cast<std::uint64_t>(map_.size()));
      }
      case pop: {
        auto [k] = read_args<K>(in);
        std::lock_guard g(mu_);
        V v = std::move(at(k));
        map_.erase(k);
        return save_value(out, v);
      }
      case pop_or: {
        auto [k, d] = read_args<K, V>(in);
        std::lock_guard g(mu_);
        auto it = map_.find(k);
        if (it == map_.end()) return save_value(out, d);
        V v = std::move(it->second);
        map_.erase(it);
        return save_value(out, v);
      }
      case erase: {
        auto [k] = read_args<K>(in);
        std::lock_guard g(mu_);
        if (map_.erase(k) == 0) throw KeyError(describe_key(k));
        return;
      }
      case keys: case values: case items: case copy: {
        read_args<>(in);
        std::lock_guard g(mu_);
        if (method == copy) return save_value(out, map_);
        if (method == items) return save_value(out, std::vector<std::pair<K, V>>(map_.begin(), map_.end()));
        if (method == keys) {
          std::vector<K> ks;
          ks.reserve(map_.size());
          for (const auto& kv : map_) ks.push_back(kv.first);
          return save_value(out, ks);
        }
        std::vector<V> vs;
        vs.reserve(map_.size());
        for (const auto& kv : map_) vs.push_back(kv.second);
        return save_value(out, vs);
      }
      case clear: {
        read_args<>(in);
        std::lock_guard g(mu_);
        map_.clear();
        return;
      }
      case update: {
        auto [other] = read_args<std::map<K, V>>(in);
        std::lock_guard g(mu_);
        for (auto& kv : other) map_.insert_or_assign(kv.first, std::move(kv.second));
        return;
      }
      case setdefault: {
        auto [k, d] = read_args<K, V>(in);
        std::lock_guard g(mu_);
        return save_value(out, map_.try_emplace(std::move(k), std::move(d)).first->second);
      }
      default:
        throw ValueError("dict has no method number " + std::to_string(method));
    }
  }

 private:
  V& at(const K& k) {
    auto it = map_.find(k);
    if (it == map_.end()) throw KeyError(describe_key(k));
    return it->second;
  }
  std::mutex mu_;
  std::map<K, V> map_;
};

/// A std::vector in the server (manager.list<T>()).
template <class T>
class ListServant final : public Servant {
 public:
  enum Method : std::uint32_t {
    append = 1, extend, insert, get, set, pop, size, copy, clear, remove, index, count
  };
  explicit ListServant(std::vector<T> init = {}) : v_(std::move(init)) {}
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    auto [init] = read_args<std::vector<T>>(ar);
    return std::make_shared<ListServant>(std::move(init));
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<ListServant>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext&) override {
    switch (method) {
      case append: {
        auto [x] = read_args<T>(in);
        std::lock_guard g(mu_);
        v_.push_back(std::move(x));
        return;
      }
      case extend: {
        auto [xs] = read_args<std::vector<T>>(in);
        std::lock_guard g(mu_);
        v_.insert(v_.end(), std::make_move_iterator(xs.begin()), std::make_move_iterator(xs.end()));
        return;
      }
      case insert: {
        // Python's insert clamps the index instead of raising.
        auto [i, x] = read_args<std::int64_t, T>(in);
        std::lock_guard g(mu_);
        const auto n = static_cast<std::int64_t>(v_.size());
        const std::int64_t j = std::clamp<std::int64_t>(i < 0 ? i + n : i, 0, n);
        v_.insert(v_.begin() + j, std::move(x));
        return;
      }
      case get: {
        auto [i] = read_args<std::int64_t>(in);
        std::lock_guard g(mu_);
        return save_value(out, v_[resolve_index(i, v_.size(), "list")]);
      }
      case set: {
        auto [i, x] = read_args<std::int64_t, T>(in);
        std::lock_guard g(mu_);
        v_[resolve_index(i, v_.size(), "list assignment")] = std::move(x);
        return;
      }
      case pop: {
        auto [i] = read_args<std::int64_t>(in);
        std::lock_guard g(mu_);
        if (v_.empty()) throw IndexError("pop from empty list");
        const std::size_t j = resolve_index(i, v_.size(), "pop");
        T x = std::move(v_[j]);
        v_.erase(v_.begin() + static_cast<std::ptrdiff_t>(j));
        return save_value(out, x);
      }
      case size: {
        read_args<>(in);
        std::lock_guard g(mu_);
        return save_value(out, static_cast<std::uint64_t>(v_.size()));
      }
      case copy: {
        read_args<>(in);
        std::lock_guard g(mu_);
        return save_value(out, v_);
      }
      case clear: {
        read_args<>(in);
        std::lock_guard g(mu_);
        v_.clear();
        return;
      }
      case remove: case index: case count: {
        auto [x] = read_args<T>(in);
        if constexpr (std::equality_comparable<T>) {
          std::lock_guard g(mu_);
          if (method == count) return save_value(out, static_cast<std::uint64_t>(std::count(v_.begin(), v_.end(), x)));
          auto it = std::find(v_.begin(), v_.end(), x);
          if (it == v_.end()) throw ValueError(method == remove ? "list.remove(x): x not in list" : "list.index(x): x not in list");
          if (method == index) return save_value(out, static_cast<std::uint64_t>(it - v_.begin()));
          v_.erase(it);
          return;
        } else {
          throw ValueError("list items of this type cannot be compared (no operator==)");
        }
      }
      default:
        throw ValueError("list has no method number " + std::to_string(method));
    }
  }

 private:
  std::mutex mu_;
  std::vector<T> v_;
};

/// One value in the server (manager.Value<T>(x)).
template <class T>
class ValueServant final : public Servant {
 public:
  enum Method : std::uint32_t { get = 1, set };
  explicit ValueServant(T init) : v_(std::move(init)) {}
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    auto [init] = read_args<T>(ar);
    return std::make_shared<ValueServant>(std::move(init));
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<ValueServant>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext&) override {
    if (method == get) {
      read_args<>(in);
      std::lock_guard g(mu_);
      return save_value(out, v_);
    }
    if (method == set) {
      auto [x] = read_args<T>(in);
      std::lock_guard g(mu_);
      v_ = std::move(x);
      return;
    }
    throw ValueError("value has no method number " + std::to_string(method));
  }

 private:
  std::mutex mu_;
  T v_;
};

/// A fixed-size array in the server (manager.Array<T>(n) or from values).
template <class T>
class ArrayServant final : public Servant {
 public:
  enum Method : std::uint32_t { get = 1, set, size, copy };
  explicit ArrayServant(std::vector<T> init) : v_(std::move(init)) {}
  static std::shared_ptr<Servant> make(InputArchive& ar) {
    auto [init] = read_args<std::vector<T>>(ar);
    return std::make_shared<ArrayServant>(std::move(init));
  }
  std::uint64_t interface_tag() const noexcept override { return type_tag<ArrayServant>(); }

  void call(std::uint32_t method, InputArchive& in, OutputArchive& out, CallContext&) override {
    switch (method) {
      case get: {
        auto [i] = read_args<std::int64_t>(in);
        std::lock_guard g(mu_);
        return save_value(out, v_[resolve_index(i, v_.size(), "array")]);
      }
      case set: {
        auto [i, x] = read_args<std::int64_t, T>(in);
        std::lock_guard g(mu_);
        v_[resolve_index(i, v_.size(), "array assignment")] = std::move(x);
        return;
      }
      case size: {
        read_args<>(in);
        return save_value(out, static_cast<std::uint64_t>(v_.size()));  // never changes
      }
      case copy: {
        read_args<>(in);
        std::lock_guard g(mu_);
        return save_value(out, v_);
      }
      default:
        throw ValueError("array has no method number " + std::to_string(method));
    }
  }

 private:
  std::mutex mu_;
  std::vector<T> v_;
};

// ---- untyped servants (src/servants.cpp): their method numbers ----------------------

/// Timeouts on the wire: empty = wait forever; zero = do not block.
using WireTimeout = std::optional<std::chrono::nanoseconds>;

struct NamespaceMethods {
  enum : std::uint32_t { set = 1, get, contains, erase, names };
};
struct QueueMethods {
  // put(item bytes, timeout), get(timeout) -> item bytes
  enum : std::uint32_t { put = 1, get, qsize, empty, full, task_done, join };
};
struct LockMethods {
  // acquire(timeout) -> bool; release(); holder_died() -> bool; locked() -> bool
  enum : std::uint32_t { acquire = 1, release, holder_died, locked };
};
struct SemaphoreMethods {
  enum : std::uint32_t { acquire = 1, release, get_value };
};
struct EventMethods {
  enum : std::uint32_t { set = 1, clear, is_set, wait };
};
struct ConditionMethods {
  // acquire/release as a lock; wait(timeout) -> bool; notify(n)
  enum : std::uint32_t { acquire = 1, release, wait, notify };
};
struct BarrierMethods {
  enum : std::uint32_t { wait = 1, abort, reset, parties, n_waiting, broken };
};

/// The servant types of src/servants.cpp (their tags name them on the wire).
struct NamespaceServantTag;
struct QueueServantTag;
struct LockServantTag;
struct SemaphoreServantTag;
struct EventServantTag;
struct ConditionServantTag;
struct BarrierServantTag;

/// Records the untyped servants in the registry (the server calls it before serving).
void register_builtin_servants() noexcept;

}  // namespace mp::detail
