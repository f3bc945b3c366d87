// mp/sharedctypes.hpp — Value, RawValue, Array and RawArray: plain data in shared memory
// (Python's multiprocessing.sharedctypes).
//
// @code
//   mp::Value<int> counter(0);
//   mp::Process p([](mp::Value<int> c) {
//     for (int i = 0; i < 1000; ++i) {
//       std::lock_guard g(c.get_lock());   // += on shared memory is not atomic: lock it
//       c.value() += 1;
//     }
//   }, counter);
//   p.start(); p.join();
//
//   mp::Array<double> a(10);                  // 10 zeros
//   mp::Array<int> b({1, 2, 3});              // from values
//   b[0] = 7;  b.size();  for (int x : b.span()) ...
//   mp::RawArray<char> raw(4096);             // no lock
// @endcode
//
// Python's typecodes map to C++ types (Linux, x86-64/aarch64): 'c' char, 'b' signed
// char, 'B' unsigned char, 'h' short, 'H' unsigned short, 'i' int, 'I' unsigned int,
// 'l' long, 'L' unsigned long, 'q' long long, 'Q' unsigned long long, 'f' float,
// 'd' double ('u' wchar_t). Any trivially copyable T works, structs included.
//
// Each object is a cheap copyable handle to one block of shared memory (an anonymous
// memfd: nothing is left in /dev/shm); copies, and copies passed as Process arguments
// under any start method, see the same memory. value() and operator[] are references
// into that memory: reading and writing them is not synchronized — hold get_lock() (an
// RLock, as in Python, stored in the same block) around read-modify-write sequences.
// A lock whose holder died is handed over (get_lock().holder_died(), synchronize.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "mp/detail/codec.hpp"
#include "mp/detail/sync_core.hpp"
#include "mp/detail/type_tag.hpp"
#include "mp/errors.hpp"
#include "mp/synchronize.hpp"

namespace mp {

/// Keyword arguments of Value and Array.
struct SharedOptions {
  /// Python's lock=True: the object carries an RLock (get_lock()). false: no lock.
  bool lock = true;
};

namespace detail {

template <class T>
inline constexpr bool shareable_ctype_v =
    std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T> && !std::is_reference_v<T>;

/// What Value and Array share: a header (the optional lock, T's type tag, the element
/// count) followed by the elements, in one shared mapping.
template <class T>
class SharedBlock {
  static_assert(shareable_ctype_v<T>,
                "mp::Value/Array<T>: T must be trivially copyable and hold no pointers (its bytes are shared "
                "between processes, where addresses mean nothing)");

  struct Header {
    LockState lock;
    std::uint64_t type_tag = 0;
    std::uint64_t count = 0;
    std::uint32_t has_lock = 0;
    std::uint32_t magic = 0;
  };
  static constexpr std::uint32_t kMagic = 0x4d505643;  // "MPVC"
  static constexpr std::size_t kDataOffset = (sizeof(Header) + alignof(T) - 1) / alignof(T) * alignof(T);

 public:
  SharedBlock() = default;
  /// `count` zero-filled elements (value-initialized T).
  SharedBlock(std::size_t count, bool with_lock, const char* what) {
    if (count > (std::size_t{1} << 40) / sizeof(T)) throw ValueError(std::string(what) + ": too many elements");
    const std::size_t bytes = kDataOffset + (count == 0 ? 1 : count) * sizeof(T);
    ref_ = SharedRef<Header>::create(
        what,
        [&](Header& h) {
          h.lock.init(true);
          h.type_tag = type_tag<T>();
          h.count = count;
          h.has_lock = with_lock ? 1 : 0;
          h.magic = kMagic;
        },
        bytes);
    T* d = data();
    for (std::size_t i = 0; i < count; ++i) new (d + i) T();
  }

  T* data() const noexcept { return reinterpret_cast<T*>(reinterpret_cast<std::byte*>(ref_.get()) + kDataOffset); }
  std::size_t size() const noexcept { return ref_ ? static_cast<std::size_t>(ref_->count) : 0; }
  bool has_lock() const noexcept { return ref_ && ref_->has_lock != 0; }
  SharedRef<LockState> lock_ref() const { return SharedRef<LockState>(ref_.mapping(), &ref_->lock); }
  explicit operator bool() const noexcept { return static_cast<bool>(ref_); }

  void save(OutputArchive& ar, const char* what) const { ref_.save(ar, what); }
  void load(InputArchive& ar, const char* what) {
    auto ref = SharedRef<Header>::load(ar, kMagic, what);
    if (ref->type_tag != type_tag<T>()) {
      throw SerializationError(std::string(what) + ": the shared block holds another type than " +
                               std::string(type_name<T>()));
    }
    if (ref.mapping()->size() < kDataOffset || (ref.mapping()->size() - kDataOffset) / sizeof(T) < ref->count) {
      throw SerializationError(std::string(what) + ": the shared block is smaller than its element count");
    }
    ref_ = std::move(ref);
  }

 private:
  SharedRef<Header> ref_;
};

}  // namespace detail

/// multiprocessing.Value: one T in shared memory, with an RLock (unless lock = false).
template <class T>
class Value {
 public:
  explicit Value(const T& initial = T{}, SharedOptions options = {}) : block_(1, options.lock, "mp-value") {
    std::memcpy(static_cast<void*>(block_.data()), &initial, sizeof(T));
    init_lock();
  }
  explicit Value(detail::for_load_t) {}

  /// The shared value, by reference (not synchronized; see get_lock()).
  T& value() const { return *checked().data(); }
  /// The object's RLock. Throws mp::ValueError if it was made with lock = false.
  RLock& get_lock() const {
    if (!lock_) throw ValueError("this Value was created with lock = false: it has no lock");
    return *lock_;
  }
  /// Python's get_obj(): the value itself.
  T& get_obj() const { return value(); }

  template <class A>
  void save(A& ar) const {
    checked().save(ar, "Value");
  }
  template <class A>
  void load(A& ar) {
    block_.load(ar, "Value");
    if (block_.size() != 1) throw SerializationError("Value: the shared block holds an Array");
    init_lock();
  }

 private:
  void init_lock() {
    if (block_.has_lock()) lock_.emplace(block_.lock_ref());
  }
  const detail::SharedBlock<T>& checked() const {
    if (!block_) throw ValueError("this Value handle is empty (moved from)");
    return block_;
  }
  detail::SharedBlock<T> block_;
  mutable std::optional<RLock> lock_;  // a handle: locking it changes shared memory, not this object
};

/// multiprocessing.RawValue: a Value without a lock.
template <class T>
class RawValue : public Value<T> {
 public:
  explicit RawValue(const T& initial = T{}) : Value<T>(initial, SharedOptions{.lock = false}) {}
  explicit RawValue(detail::for_load_t t) : Value<T>(t) {}
};

/// multiprocessing.Array: a fixed number of T in shared memory, with an RLock (unless
/// lock = false). `Array<int> a(10)` holds 10 zeros; `Array<int> b({1, 2, 3})` those values.
template <class T>
class Array {
 public:
  explicit Array(std::size_t size, SharedOptions options = {}) : block_(size, options.lock, "mp-array") { init_lock(); }
  Array(std::initializer_list<T> values, SharedOptions options = {})
      : Array(std::span<const T>(values.begin(), values.size()), options) {}
  explicit Array(std::span<const T> values, SharedOptions options = {}) : block_(values.size(), options.lock, "mp-array") {
    if (!values.empty()) std::memcpy(static_cast<void*>(block_.data()), values.data(), values.size_bytes());
    init_lock();
  }
  explicit Array(detail::for_load_t) {}

  /// Element i, by reference; unchecked (at() checks).
  T& operator[](std::size_t i) const noexcept { return block_.data()[i]; }
  /// Element i; std::out_of_range past the end.
  T& at(std::size_t i) const {
    if (i >= size()) throw std::out_of_range("mp::Array::at: index " + std::to_string(i) + " >= size " + std::to_string(size()));
    return checked().data()[i];
  }
  std::size_t size() const noexcept { return block_.size(); }
  /// All elements, in shared memory.
  std::span<T> span() const { return {checked().data(), size()}; }
  T* begin() const { return span().data(); }
  T* end() const { return span().data() + size(); }
  /// The object's RLock. Throws mp::ValueError if it was made with lock = false.
  RLock& get_lock() const {
    if (!lock_) throw ValueError("this Array was created with lock = false: it has no lock");
    return *lock_;
  }

  template <class A>
  void save(A& ar) const {
    checked().save(ar, "Array");
  }
  template <class A>
  void load(A& ar) {
    block_.load(ar, "Array");
    init_lock();
  }

 private:
  void init_lock() {
    if (block_.has_lock()) lock_.emplace(block_.lock_ref());
  }
  const detail::SharedBlock<T>& checked() const {
    if (!block_) throw ValueError("this Array handle is empty (moved from)");
    return block_;
  }
  detail::SharedBlock<T> block_;
  mutable std::optional<RLock> lock_;  // a handle: locking it changes shared memory, not this object
};

/// multiprocessing.RawArray: an Array without a lock.
template <class T>
class RawArray : public Array<T> {
 public:
  explicit RawArray(std::size_t size) : Array<T>(size, SharedOptions{.lock = false}) {}
  RawArray(std::initializer_list<T> values) : Array<T>(values, SharedOptions{.lock = false}) {}
  explicit RawArray(std::span<const T> values) : Array<T>(values, SharedOptions{.lock = false}) {}
  explicit RawArray(detail::for_load_t t) : Array<T>(t) {}
};

}  // namespace mp
