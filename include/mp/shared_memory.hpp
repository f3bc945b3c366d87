// mp/shared_memory.hpp — SharedMemory and ShareableList: named POSIX shared memory
// (Python's multiprocessing.shared_memory).
//
// @code
//   mp::SharedMemory shm({.name = "shm", .create = true, .size = 4096});
//   mp::Process p([] {
//     mp::SharedMemory other("shm");              // attach by name (or pass `shm` itself)
//     other.buf()[0] = std::byte{1};
//   });
//   p.start(); p.join();
//   std::to_integer<int>(shm.buf()[0]);            // 1
//   shm.close();                                   // this process is done with it
//   shm.unlink();                                  // and the name is removed
//
//   mp::ShareableList<int, double, std::string> sl(1, 2.5, std::string("hello"));
//   sl.set<2>("hi");  sl.get<0>();  sl.size();     // 3
//   mp::ShareableList<int, double, std::string> same({.name = sl.shm().name()});
// @endcode
//
// A segment is a file in /dev/shm (shm_open): unlike mp's other shared objects, which
// live in anonymous memory that the kernel frees by itself, it has a name that any
// process can open, and it stays until someone unlinks it. As in Python, the creator is
// expected to unlink() it when done; when it does not (it forgot, or it was SIGKILLed),
// the resource tracker does: a segment created with `track = true` (the default) is
// unlinked once every process of the program (the main process and all its
// descendants) is gone, however they ended, and the tracker then prints one line on
// stderr naming the segments that nobody unlinked (src/resource_tracker.cpp). Attaching
// never registers: a process that only attached never unlinks anything. A segment
// created with `track = false` is the caller's to unlink, as a file would be.
//
// Both types are cheap copyable handles (copies share one mapping). Passed as a Process
// argument under any start method, or sent over a Unix-socket Connection, a
// SharedMemory travels as its descriptor, so the receiver maps the same memory even if
// the name was unlinked in between; sent where descriptors cannot go (inside a Queue
// item), it travels as its name and the receiver attaches by name (FileNotFoundError if
// it is gone), as in Python. Either way the receiver has only attached.
//
// buf() is a span into the mapping: reads and writes are not synchronized (use an
// mp::Lock), and the span is valid until close() or until the last copy of the handle
// is destroyed, whichever comes first.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/archive.hpp"
#include "mp/detail/codec.hpp"
#include "mp/detail/type_tag.hpp"
#include "mp/errors.hpp"

namespace mp {

/// Keyword arguments of SharedMemory (Python's SharedMemory(name, create, size, track)).
struct SharedMemoryOptions {
  /// The segment's name, with or without a leading '/'. Empty when creating: a new
  /// unique name of the form "psm_" + 8 hex digits, as CPython makes them.
  std::string name;
  /// true: create a new segment (mp::FileExistsError if the name is taken); false:
  /// attach to an existing one (mp::FileNotFoundError if there is none).
  bool create = false;
  /// Bytes; required and non-zero when creating. Ignored when attaching: the
  /// segment's actual size is used, as in Python.
  std::size_t size = 0;
  /// Only when creating: the resource tracker unlinks the segment once every process
  /// of the program is gone, if nobody unlinked it before. false: the segment outlives
  /// the program until someone calls unlink() (or removes /dev/shm/NAME).
  bool track = true;
};

namespace detail {
class SharedMemoryState;
}

/// Python's multiprocessing.shared_memory.SharedMemory: a named segment of shared
/// memory, mapped in this process. A moved-from handle is empty: its members raise
/// mp::ValueError (closed() is true, close() does nothing). Thread-safe: any member
/// may be called from several threads, close() included (a span that buf() returned
/// before a close() dangles after it).
class SharedMemory {
 public:
  /// Creates (`.create = true`) or attaches to a segment. Throws mp::ValueError (size
  /// 0 on create, a name that is empty on attach, holds a '/' or is longer than 255),
  /// mp::FileExistsError, mp::FileNotFoundError, mp::OSError (any other failure of
  /// shm_open, ftruncate, mmap, or of starting the resource tracker).
  explicit SharedMemory(SharedMemoryOptions options);
  /// Attaches to the existing segment `name` (Python's SharedMemory(name)). (A
  /// template only so that a braced `{.name = ...}` never picks it.)
  template <class S>
    requires std::is_convertible_v<const S&, std::string_view>
  explicit SharedMemory(const S& name)
      : SharedMemory(SharedMemoryOptions{.name = std::string(std::string_view(name))}) {}
  /// An empty handle, filled by load() (how a handle arrives in another process).
  explicit SharedMemory(detail::for_load_t) noexcept;

  /// The mapped bytes, all of size(). Throws mp::ValueError once closed.
  std::span<std::byte> buf() const;
  /// The name, without a leading '/' (also after close()).
  const std::string& name() const;
  /// The segment's size in bytes (also after close()).
  std::size_t size() const;
  /// Unmaps the segment and closes its descriptor in this process, for every copy of
  /// this handle: buf() then raises mp::ValueError and spans taken before dangle. The
  /// segment itself and its name stay (see unlink()). Idempotent; never throws.
  void close() noexcept;
  /// true once close() was called on this handle or a copy.
  bool closed() const noexcept;
  /// Removes the name (shm_unlink), so no one can attach any more; the memory stays
  /// mapped wherever it is, and is freed when the last mapping goes. The resource
  /// tracker forgets the segment. Works after close(), as in Python. Throws
  /// mp::FileNotFoundError if the name is already gone, mp::OSError otherwise.
  void unlink();

  /// How the handle travels (to children, over Unix-socket Connections, in queues).
  /// Throws mp::ValueError for a closed handle.
  void save(detail::OutputArchive& ar) const;
  /// The receiving side: attaches, never registers with the resource tracker.
  void load(detail::InputArchive& ar);

 private:
  detail::SharedMemoryState& state() const;
  std::shared_ptr<detail::SharedMemoryState> state_;
};

/// Keyword arguments of ShareableList.
struct ShareableListOptions {
  /// Creating: the segment's name ("" = a generated unique one). Attaching (the
  /// constructor that takes only options): the name of an existing ShareableList.
  std::string name;
  /// Creating only: see SharedMemoryOptions::track.
  bool track = true;
};

namespace detail {

/// What a ShareableList slot may hold, and how it is written in the segment.
template <class T>
struct SlSlot {
  static constexpr bool arithmetic = std::is_arithmetic_v<T>;
  static constexpr bool string = std::is_same_v<T, std::string>;
  static constexpr bool bytes = std::is_same_v<T, std::vector<std::byte>>;
  static constexpr bool supported = arithmetic || string || bytes;
  /// The type code stored in the header: kind << 16 | size. Independent of the
  /// compiler, so two programs built differently agree on it.
  static constexpr std::uint32_t code() {
    if constexpr (std::is_same_v<T, bool>) {
      return 1u << 16 | 1u;
    } else if constexpr (std::is_floating_point_v<T>) {
      return 4u << 16 | sizeof(T);
    } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
      return 2u << 16 | sizeof(T);
    } else if constexpr (std::is_integral_v<T>) {
      return 3u << 16 | sizeof(T);
    } else if constexpr (string) {
      return 5u << 16;
    } else {
      return 6u << 16;
    }
  }
  /// What set<I>() takes for this slot.
  using arg_type =
      std::conditional_t<string, std::string_view, std::conditional_t<bytes, std::span<const std::byte>, T>>;
};

/// One slot's place in the segment, as read from (and checked against) the header.
struct SlLayout {
  std::size_t offset = 0;    // of the value, or of the length word of a string/bytes slot
  std::size_t capacity = 0;  // string/bytes: bytes available after the length word
};

/// The non-template half of ShareableList (src/shared_memory.cpp): header writing and
/// checking. `codes` are the slots' type codes, `capacities` the string/bytes slots'
/// capacities (0 for arithmetic ones), `sizes` the arithmetic slots' sizes.
struct SlFormat {
  static constexpr std::uint32_t kMagic = 0x4c53504d;  // "MPSL"
  /// The segment size needed and each slot's layout.
  static std::size_t plan(std::span<const std::uint32_t> codes, std::span<const std::size_t> capacities,
                          std::span<SlLayout> out);
  /// Writes the header into a new segment; the magic is written last (release).
  static void write_header(std::span<std::byte> seg, std::span<const std::uint32_t> codes,
                           std::span<const SlLayout> layout);
  /// Checks a segment's header against the expected codes and fills `out`. Throws
  /// mp::SerializationError naming the first mismatch (count, a slot's type) or a
  /// corrupt header.
  static void check(std::span<const std::byte> seg, std::span<const std::uint32_t> codes, std::span<SlLayout> out,
                    const std::string& name, std::span<const std::string_view> type_names);
  /// A string/bytes slot's stored length, checked against its capacity.
  static std::size_t stored_length(const std::byte* at, std::size_t capacity, std::size_t index);
  /// Python's slot size for a string or bytes value: a multiple of 8, at least one
  /// byte more than the value.
  static constexpr std::size_t capacity_for(std::size_t length) { return 8 * (length / 8 + 1); }
};

}  // namespace detail

/// Python's multiprocessing.shared_memory.ShareableList: a fixed number of typed slots
/// in one shared memory segment. Each slot holds an arithmetic type, a std::string or
/// a std::vector<std::byte> (Python's bytes); string and bytes slots get their storage
/// at creation (8 * (len / 8 + 1) bytes, as in Python) and a longer value is refused.
///
/// @code
///   mp::ShareableList<int, double, std::string> sl(1, 2.5, std::string("hello"));
///   mp::ShareableList<int, double, std::string> named({.name = "my_list"}, 1, 2.5, "x");
///   mp::ShareableList<int, double, std::string> attached({.name = "my_list"});
///   attached.set<0>(7);  named.get<0>();   // 7
///   named.shm().close();  named.shm().unlink();
/// @endcode
///
/// The segment starts with a header (magic, count, each slot's type code, offset and
/// capacity): attaching with other types raises mp::SerializationError instead of
/// reading garbage. get/set of an arithmetic slot is one atomic load/store (no torn
/// values); a string or bytes slot is not synchronized (as in Python): guard writers
/// with an mp::Lock if several processes write the same slot. A handle, like
/// SharedMemory; every call on a closed list raises mp::ValueError.
template <class... Ts>
class ShareableList {
  static_assert((detail::SlSlot<Ts>::supported && ...),
                "mp::ShareableList<Ts...>: each slot must be an arithmetic type (int, double, bool, char...), "
                "std::string, or std::vector<std::byte> (bytes); slots have a fixed size chosen at creation, so "
                "other types (containers, structs) cannot be stored — use mp::Array, or a Queue to send them");
  static_assert(sizeof...(Ts) > 0, "mp::ShareableList<>: a list needs at least one slot");

  static constexpr std::size_t N = sizeof...(Ts);
  static constexpr std::uint32_t kCodes[N] = {detail::SlSlot<Ts>::code()...};

 public:
  /// Creates a list holding `values`, with a generated name, tracked. (A template
  /// only so that a braced `{.name = ...}` never picks it.)
  template <class... Us>
    requires(sizeof...(Us) == N && (std::is_convertible_v<const Us&, Ts> && ...))
  explicit ShareableList(const Us&... values) : ShareableList(ShareableListOptions{}, static_cast<Ts>(values)...) {}
  /// Creates a list holding `values`, named `options.name` (mp::FileExistsError if
  /// taken).
  ShareableList(ShareableListOptions options, const Ts&... values) : shm_(detail::for_load) {
    const std::size_t capacities[N] = {capacity_of(values)...};
    const std::size_t bytes = detail::SlFormat::plan(kCodes, capacities, layout_);
    shm_ = SharedMemory({.name = std::move(options.name), .create = true, .size = bytes, .track = options.track});
    try {
      init_values(std::index_sequence_for<Ts...>{}, values...);
      detail::SlFormat::write_header(shm_.buf(), kCodes, layout_);
    } catch (...) {  // a half-made list is not left behind
      shm_.unlink();
      throw;
    }
  }
  /// Attaches to the existing list `options.name` (Python's ShareableList(name=...)).
  /// Throws mp::FileNotFoundError, or mp::SerializationError if it holds other types.
  explicit ShareableList(ShareableListOptions options) : shm_(SharedMemory(std::move(options.name))) { check(); }
  /// An empty handle, filled by load().
  explicit ShareableList(detail::for_load_t) noexcept : shm_(detail::for_load) {}

  /// The value of slot I.
  template <std::size_t I>
  auto get() const {
    using T = std::tuple_element_t<I, std::tuple<Ts...>>;
    const std::byte* at = shm_.buf().data() + layout_[I].offset;
    if constexpr (detail::SlSlot<T>::arithmetic) {
      return load_arith<T>(at);
    } else {
      const std::size_t n = detail::SlFormat::stored_length(at, layout_[I].capacity, I);
      const std::byte* p = at + sizeof(std::uint64_t);
      if constexpr (detail::SlSlot<T>::string) {
        return std::string(reinterpret_cast<const char*>(p), n);
      } else {
        return std::vector<std::byte>(p, p + n);
      }
    }
  }

  /// Stores `value` in slot I. A string or bytes value longer than the slot's storage
  /// raises mp::ValueError (the slot keeps its old value).
  template <std::size_t I>
  void set(typename detail::SlSlot<std::tuple_element_t<I, std::tuple<Ts...>>>::arg_type value) {
    using T = std::tuple_element_t<I, std::tuple<Ts...>>;
    std::byte* at = shm_.buf().data() + layout_[I].offset;
    if constexpr (detail::SlSlot<T>::arithmetic) {
      store_arith<T>(at, value);
    } else {
      const auto bytes = std::as_bytes(std::span(value.data(), value.size()));
      if (bytes.size() > layout_[I].capacity) {
        throw ValueError("ShareableList.set<" + std::to_string(I) + ">: a value of " + std::to_string(bytes.size()) +
                         " bytes exceeds the slot's storage of " + std::to_string(layout_[I].capacity) +
                         " bytes (fixed when the list was created)");
      }
      if (!bytes.empty()) std::memcpy(at + sizeof(std::uint64_t), bytes.data(), bytes.size());
      std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(at))
          .store(bytes.size(), std::memory_order_release);
    }
  }

  /// The number of slots (Python's len()).
  static constexpr std::size_t size() noexcept { return N; }
  /// The segment (Python's sl.shm): shm().name(), shm().close(), shm().unlink().
  SharedMemory& shm() noexcept { return shm_; }
  const SharedMemory& shm() const noexcept { return shm_; }

  void save(detail::OutputArchive& ar) const { shm_.save(ar); }
  void load(detail::InputArchive& ar) {
    shm_.load(ar);
    check();
  }

 private:
  template <class T>
  static std::size_t capacity_of(const T& v) {
    if constexpr (detail::SlSlot<T>::arithmetic) {
      return 0;
    } else {
      return detail::SlFormat::capacity_for(v.size());
    }
  }

  template <std::size_t... I>
  void init_values(std::index_sequence<I...>, const Ts&... values) {
    (set<I>(arg_of(values)), ...);
  }
  template <class T>
  static auto arg_of(const T& v) {
    if constexpr (detail::SlSlot<T>::string) {
      return std::string_view(v);
    } else if constexpr (detail::SlSlot<T>::bytes) {
      return std::span<const std::byte>(v);
    } else {
      return v;
    }
  }

  // Arithmetic slots are aligned to 16 bytes: one atomic access when the type allows
  // it (never a torn value), a plain copy otherwise (long double).
  template <class T>
  static T load_arith(const std::byte* at) {
    if constexpr (std::is_same_v<T, bool>) {  // any non-zero byte is true, never an invalid bool
      return load_arith<std::uint8_t>(at) != 0;
    } else if constexpr (std::atomic_ref<T>::is_always_lock_free) {
      return std::atomic_ref<T>(*const_cast<T*>(reinterpret_cast<const T*>(at))).load(std::memory_order_acquire);
    } else {
      T v;
      std::memcpy(&v, at, sizeof(T));
      return v;
    }
  }
  template <class T>
  static void store_arith(std::byte* at, T v) {
    if constexpr (std::atomic_ref<T>::is_always_lock_free) {
      std::atomic_ref<T>(*reinterpret_cast<T*>(at)).store(v, std::memory_order_release);
    } else {
      std::memcpy(at, &v, sizeof(T));
    }
  }

  void check() {
    static constexpr std::string_view kNames[N] = {detail::type_name<Ts>()...};
    detail::SlFormat::check(shm_.buf(), kCodes, layout_, shm_.name(), kNames);
  }

  SharedMemory shm_;
  detail::SlLayout layout_[N] = {};
};

}  // namespace mp
