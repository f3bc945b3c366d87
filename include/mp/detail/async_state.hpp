// mp/detail/async_state.hpp — the parent-side state of submitted work: one result
// (apply, submit), a whole map's result, or a stream of results (imap), filled in by the
// pool's result thread and waited on by the caller. Shared by mp::Pool,
// mp::ProcessPoolExecutor and their thread-backed twins.
//
// Each part of a job (a task, or a map's chunk) is settled once: the first of "its result
// arrived" and "it failed" wins, a late second one is ignored (a worker that dies right
// after sending its result is reported dead too). Callbacks run once, outside the lock,
// in the thread that settled the job.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

#include "mp/detail/futex.hpp"
#include "mp/detail/job_memory.hpp"
#include "mp/detail/pool_core.hpp"
#include "mp/errors.hpp"

namespace mp::detail {

template <class F>
struct callback_arg;
template <class R, class A>
struct callback_arg<R (*)(A)> {
  using type = std::decay_t<A>;
};
template <class C, class R, class A>
struct callback_arg<R (C::*)(A)> {
  using type = std::decay_t<A>;
};
template <class C, class R, class A>
struct callback_arg<R (C::*)(A) const> {
  using type = std::decay_t<A>;
};
template <class F>
  requires requires { &F::operator(); }
struct callback_arg<F> : callback_arg<decltype(&F::operator())> {};

/// A result callback whose argument type is known only when it is called: it checks
/// that type against the result's (at submission, see accepts()).
class AnyCallback {
 public:
  AnyCallback() = default;
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, AnyCallback>)
  AnyCallback(F f)  // NOLINT: implicit, for `.callback = f`
      : type_(&typeid(typename callback_arg<std::decay_t<F>>::type)),
        fn_([f = std::move(f)](const void* value) mutable {
          using A = typename callback_arg<std::decay_t<F>>::type;
          f(*static_cast<const A*>(value));
        }) {}

  explicit operator bool() const noexcept { return static_cast<bool>(fn_); }
  template <class T>
  bool accepts() const noexcept {
    return !fn_ || *type_ == typeid(T);
  }
  template <class T>
  void operator()(const T& value) const {
    fn_(&value);
  }

 private:
  const std::type_info* type_ = nullptr;
  std::function<void(const void*)> fn_;
};

using ErrorCallback = std::function<void(std::exception_ptr)>;

/// One eventual value of type T (or an error), with its callbacks.
///
/// Small on purpose (~90 bytes with a number): a burst of submissions keeps one per task
/// alive until its result is taken, and every page of them is memory the kernel must
/// hand over and clear (job_memory.hpp). So the waiters sleep on a futex word rather than
/// a condition variable, and the callbacks live in a block of their own, made only for
/// jobs that have some.
template <class T>
class AsyncState : public Job {
 public:
  AsyncState(AnyCallback callback = {}, ErrorCallback error_callback = {}) {
    if (callback || error_callback) {
      extras_ = std::make_unique<Extras>();
      extras_->callback = std::move(callback);
      extras_->error_callback = std::move(error_callback);
    }
  }

  /// Single-part jobs: the part's result is a T.
  void deliver(std::uint32_t, InputArchive& ar) override {
    T value = make_for_load<T>();
    load_value(ar, value);
    set_value(std::move(value));
  }
  void fail(std::uint32_t, std::exception_ptr error) override { set_error(std::move(error)); }
  void fail_all(std::exception_ptr error) override { set_error(std::move(error)); }
  bool finished() const override {
    std::lock_guard g(mu_);
    return done_;
  }

  /// Settles the job (the first call wins): runs the matching callback, then wakes the
  /// waiters — as Python's AsyncResult does, so that a callback's effects are visible
  /// once get() or wait() returns — then runs the on_done() functions.
  void set_value(T value) {
    {
      std::lock_guard g(mu_);
      if (done_) return;
      value_.emplace(std::move(value));
      done_ = true;
    }
    publish();
  }
  void set_error(std::exception_ptr error) {
    {
      std::lock_guard g(mu_);
      if (done_) return;
      error_ = std::move(error);
      done_ = true;
    }
    publish();
  }

  /// Blocks until settled or `deadline`; true if settled.
  bool wait_until(const Deadline& deadline) const {
    for (;;) {
      std::uint32_t s = state_.load(std::memory_order_acquire);
      if (s == kPublished) return true;
      if (s == kPending && !state_.compare_exchange_strong(s, kWaited, std::memory_order_acquire)) continue;
      if (!futex_wait(state_, kWaited, deadline)) return state_.load(std::memory_order_acquire) == kPublished;
    }
  }
  bool ready() const { return state_.load(std::memory_order_acquire) == kPublished; }
  /// Precondition: ready().
  std::exception_ptr error() const {
    std::lock_guard g(mu_);
    return error_;
  }
  /// The value, or the error rethrown. Precondition: ready().
  const T& value() const {
    std::lock_guard g(mu_);
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }
  T take_value() {
    std::lock_guard g(mu_);
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }

  /// Runs `fn` once this job is settled (at once if it is).
  void on_done(std::function<void()> fn) {
    {
      std::lock_guard g(mu_);
      if (state_.load(std::memory_order_relaxed) != kPublished) {
        if (!extras_) extras_ = std::make_unique<Extras>();
        extras_->done_callbacks.push_back(std::move(fn));
        return;
      }
    }
    fn();
  }

 protected:
  mutable std::mutex mu_;

 private:
  struct Extras {
    AnyCallback callback;
    ErrorCallback error_callback;
    std::vector<std::function<void()>> done_callbacks;  // guarded by mu_
  };
  // state_: pending, pending with a waiter asleep (publish() must wake), published.
  static constexpr std::uint32_t kPending = 0, kWaited = 1, kPublished = 2;

  void publish() {
    // extras_ is not null here only if it was made by the constructor (callbacks, which
    // never change) or by on_done() (under mu_, read again below under mu_).
    Extras* extras = nullptr;
    {
      std::lock_guard g(mu_);
      extras = extras_.get();
    }
    if (extras) {
      try {
        if (error_) {
          if (extras->error_callback) extras->error_callback(error_);
        } else if (extras->callback) {
          extras->callback(*value_);
        }
      } catch (...) {
        // A callback that throws must not take the pool's result thread down with it.
      }
    }
    std::vector<std::function<void()>> done_callbacks;
    std::uint32_t before = kPending;
    {
      std::lock_guard g(mu_);
      before = state_.exchange(kPublished, std::memory_order_acq_rel);
      if (extras_) done_callbacks.swap(extras_->done_callbacks);
    }
    if (before == kWaited) futex_wake(state_, INT32_MAX);
    for (auto& fn : done_callbacks) fn();
  }

  mutable std::atomic<std::uint32_t> state_{kPending};
  bool done_ = false;  // settled (the first of value and error won); mu_
  std::optional<T> value_;
  std::exception_ptr error_;
  std::unique_ptr<Extras> extras_;  // callbacks, when there are any
};

/// A map's result: chunk i holds items [offsets[i], offsets[i+1]). The first failing chunk
/// fails the whole map, as in Python.
template <class R>
class MapState : public AsyncState<std::vector<R>> {
 public:
  MapState(std::size_t items, std::size_t chunksize, AnyCallback callback, ErrorCallback error_callback)
      : AsyncState<std::vector<R>>(std::move(callback), std::move(error_callback)),
        chunksize_(chunksize),
        chunks_(chunksize == 0 ? 0 : (items + chunksize - 1) / chunksize),
        arrived_(chunks_, false) {
    resize_for_fill(results_, items);  // a big one is mapped in one call (codec.hpp)
    if (chunks_ == 0) this->set_value({});
  }

  std::size_t chunks() const noexcept { return chunks_; }

  void deliver(std::uint32_t index, InputArchive& ar) override {
    if constexpr (std::is_arithmetic_v<R> && !std::is_same_v<R, bool>) {
      // Numbers are read straight into their place (the wire form of std::vector<R>:
      // a length, then the elements' bytes).
      cereal::size_type n = 0;
      ar(cereal::make_size_tag(n));
      bool complete = false;
      {
        std::lock_guard g(this->mu_);
        const auto [at, expected] = place(index, n);
        if (expected == 0) return;
        ar.loadBinary(results_.data() + at, expected * sizeof(R));
        arrived_[index] = true;
        complete = ++count_ == chunks_;
      }
      if (complete) this->set_value(std::move(results_));
    } else {
      std::vector<R> part;
      load_value(ar, part);
      deliver_values(index, std::move(part));
    }
  }
  /// Chunk `index`'s results, computed in this process (thread pools).
  void deliver_values(std::uint32_t index, std::vector<R> part) {
    bool complete = false;
    {
      std::lock_guard g(this->mu_);
      const auto [at, n] = place(index, part.size());
      if (n == 0) return;
      std::move(part.begin(), part.end(), results_.begin() + static_cast<std::ptrdiff_t>(at));
      arrived_[index] = true;
      complete = ++count_ == chunks_;
    }
    if (complete) this->set_value(std::move(results_));
  }
  void fail(std::uint32_t, std::exception_ptr error) override { this->set_error(std::move(error)); }

 private:
  // Where chunk `index` goes and how many results it holds; {0, 0} if it has arrived
  // already (or there is no such chunk). Throws if it came with `count` results instead.
  // With mu_ held.
  std::pair<std::size_t, std::size_t> place(std::uint32_t index, std::size_t count) const {
    if (index >= chunks_ || arrived_[index]) return {0, 0};
    const std::size_t at = std::size_t{index} * chunksize_;
    const std::size_t n = std::min(chunksize_, results_.size() - at);
    if (count != n) throw SerializationError("a map chunk came back with the wrong number of results");
    return {at, n};
  }

  std::size_t chunksize_;
  std::size_t chunks_;
  std::vector<bool> arrived_;
  std::size_t count_ = 0;
  std::vector<R> results_;
};

/// imap / imap_unordered: results handed out one by one as they come.
template <class R>
class StreamState : public Job {
 public:
  StreamState(std::size_t chunks, bool ordered) : chunks_(chunks), ordered_(ordered), settled_(chunks, false) {}

  void deliver(std::uint32_t index, InputArchive& ar) override {
    std::vector<R> part;
    load_value(ar, part);
    settle(index, std::move(part));
  }
  /// Chunk `index`'s results, computed in this process (thread pools).
  void deliver_values(std::uint32_t index, std::vector<R> part) { settle(index, std::move(part)); }
  void fail(std::uint32_t index, std::exception_ptr error) override { settle(index, std::move(error)); }
  void fail_all(std::exception_ptr error) override {
    for (std::size_t i = 0; i < chunks_; ++i) settle(static_cast<std::uint32_t>(i), error);  // settled ones are skipped
  }
  bool finished() const override {
    std::lock_guard g(mu_);
    return count_ == chunks_;
  }

  /// The next result, nullopt after the last; rethrows a failed chunk's error where its
  /// results would have been (ordered) or when it arrives (unordered). mp::TimeoutError
  /// at `deadline`.
  std::optional<R> next(const Deadline& deadline) {
    std::unique_lock g(mu_);
    for (;;) {
      if (!current_.empty()) {
        R r = std::move(current_.front());
        current_.pop_front();
        return r;
      }
      if (taken_ == chunks_) return std::nullopt;
      // Ordered: the next chunk by index; unordered: the oldest arrival.
      auto it = ordered_ ? arrived_.find(taken_) : arrived_.begin();
      if (it != arrived_.end()) {
        auto part = std::move(it->second);
        arrived_.erase(it);
        ++taken_;
        if (auto* e = std::get_if<std::exception_ptr>(&part)) std::rethrow_exception(*e);
        auto& v = std::get<std::vector<R>>(part);
        current_.assign(std::make_move_iterator(v.begin()), std::make_move_iterator(v.end()));
        continue;
      }
      if (!deadline) {
        cv_.wait(g);
      } else if (cv_.wait_until(g, *deadline) == std::cv_status::timeout) {
        throw TimeoutError("imap: no result within the timeout");
      }
    }
  }

 private:
  void settle(std::uint32_t index, std::variant<std::vector<R>, std::exception_ptr> part) {
    {
      std::lock_guard g(mu_);
      if (index >= chunks_ || settled_[index]) return;
      settled_[index] = true;
      ++count_;
      // Unordered: keyed by arrival, so that begin() is the oldest.
      arrived_.emplace(ordered_ ? index : static_cast<std::uint32_t>(count_ - 1 + chunks_), std::move(part));
    }
    cv_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::size_t chunks_;
  bool ordered_;
  std::vector<bool> settled_;
  std::size_t count_ = 0;
  std::size_t taken_ = 0;
  std::map<std::size_t, std::variant<std::vector<R>, std::exception_ptr>> arrived_;
  std::deque<R> current_;
};

}  // namespace mp::detail
