// mp/detail/codec.hpp — the typed wire: how one value becomes bytes and back.
//
// A message is  [u64 type tag][payload].  The tag (type_tag.hpp) makes a decode<T>
// of bytes that hold another type throw mp::SerializationError. The payload is:
//   - for arithmetic types (not bool) and plain aggregates of trivially copyable
//     members (`struct Point { int x; double y; };`): the object's bytes (one memcpy
//     each way), also inside containers;
//   - for everything else: a cereal archive (archive.hpp). Contiguous ranges of
//     arithmetic values (std::vector<double>, std::string, std::array<int, N>) are one
//     memcpy inside it.
// The serializable types are API.md's list: arithmetic types, enums, std::string,
// vector, array, map, unordered_map, set, unordered_set, deque, list, pair, tuple,
// optional, variant, chrono durations, and any type with a cereal `serialize` member
// (or save/load pair).
//
// Decoding never trusts its input: wrong tag, short input, trailing bytes, a length
// larger than the message, an invalid bool or variant index all throw
// mp::SerializationError. A plain aggregate decoded bitwise takes whatever bits arrive:
// give it a `serialize` member if some bit patterns are invalid for it (a bool member).
#pragma once

#include <cereal/types/array.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mp/detail/archive.hpp"
#include "mp/detail/sys.hpp"
#include "mp/detail/type_tag.hpp"
#include "mp/errors.hpp"

namespace mp::detail {

// Bytes travel as one block (cereal's own vector code copies only arithmetic elements in
// one go, and std::byte is an enum). The bytes on the wire are the same either way:
// the size, then one byte per element.
inline void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const std::vector<std::byte>& v) {
  ar(cereal::make_size_tag(static_cast<cereal::size_type>(v.size())));
  ar.saveBinary(v.data(), v.size());
}

/// v emptied, with room for n elements about to be appended: a large new buffer is
/// mapped in one call, with huge pages where allowed, before anything touches it
/// (sys.hpp: prefault; first touches of fresh pages cost more than the copy on a VM).
template <class T>
void reserve_for_fill(std::vector<T>& v, std::size_t n) {
  constexpr std::size_t kPrefaultBytes = std::size_t{1} << 20;
  v.clear();
  if (n > v.capacity()) {
    std::vector<T>().swap(v);
    v.reserve(n);
    if (n * sizeof(T) >= kPrefaultBytes) prefault(v.data(), n * sizeof(T), true);
  }
}

/// v.resize(n) for a vector about to be filled whole, its buffer prepared as above (the
/// zero-fill then writes pages already mapped).
template <class T>
void resize_for_fill(std::vector<T>& v, std::size_t n) {
  reserve_for_fill(v, n);
  v.resize(n);
}

inline void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, std::vector<std::byte>& v) {
  cereal::size_type n = 0;
  ar(cereal::make_size_tag(n));  // refused if larger than the bytes left
  reserve_for_fill(v, static_cast<std::size_t>(n));
  ar.loadAppend(v, static_cast<std::size_t>(n));
}

// Vectors of numbers: as cereal's own (the same bytes on the wire: the length, then the
// elements' bytes), with the buffer prepared by resize_for_fill.
template <class T>
  requires(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, std::vector<T>& v) {
  cereal::size_type n = 0;
  ar(cereal::make_size_tag(n));  // refused if larger than the bytes left
  if (n > ar.remaining() / sizeof(T)) {
    throw SerializationError("corrupt message: " + std::to_string(n) + " elements of " + std::to_string(sizeof(T)) +
                             " bytes with only " + std::to_string(ar.remaining()) + " bytes left");
  }
  if constexpr (std::is_same_v<T, char> || std::is_same_v<T, unsigned char>) {
    reserve_for_fill(v, static_cast<std::size_t>(n));  // bytes: appended as they come
    ar.loadAppend(v, static_cast<std::size_t>(n));
  } else {
    resize_for_fill(v, static_cast<std::size_t>(n));
    ar.loadBinary(v.data(), v.size() * sizeof(T));
  }
}

template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};

/// A plain aggregate of trivially copyable members that declares no cereal functions
/// (`struct Point { int x; double y; };`): it travels as its bytes, at the top level
/// and inside containers alike.
template <class T>
inline constexpr bool plain_aggregate_v =
    std::is_class_v<T> && std::is_aggregate_v<T> && std::is_trivially_copyable_v<T> && !is_std_array<T>::value &&
    !cereal::traits::has_member_serialize<T, OutputArchive>::value &&
    !cereal::traits::has_member_versioned_serialize<T, OutputArchive>::value &&
    !cereal::traits::has_member_save<T, OutputArchive>::value &&
    !cereal::traits::has_member_versioned_save<T, OutputArchive>::value &&
    !cereal::traits::has_non_member_serialize<T, OutputArchive>::value &&
    !cereal::traits::has_non_member_versioned_serialize<T, OutputArchive>::value;

template <class T>
  requires plain_aggregate_v<T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const T& t) {
  ar.saveBinary(std::addressof(t), sizeof(T));
}

template <class T>
  requires plain_aggregate_v<T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, T& t) {
  ar.loadBinary(std::addressof(t), sizeof(T));
}

/// True when cereal knows how to write T through mp's archive.
template <class T>
inline constexpr bool cereal_serializable_v =
    cereal::traits::is_output_serializable<T, OutputArchive>::value &&
    cereal::traits::is_input_serializable<T, InputArchive>::value;

/// True when T travels as its raw bytes.
template <class T>
inline constexpr bool bitwise_v = (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) || plain_aggregate_v<T>;

/// True when a T can cross a process boundary.
template <class T>
inline constexpr bool serializable_v = bitwise_v<T> || cereal_serializable_v<T>;

template <class T>
concept Serializable = serializable_v<std::remove_cvref_t<T>>;

/// Handles that own shared resources (a Queue) are not default-constructed before a
/// load overwrites them (that would create a resource for nothing): they take this tag.
struct for_load_t {};
inline constexpr for_load_t for_load{};

/// A T ready to be loaded into.
template <class T>
T make_for_load() {
  if constexpr (std::is_constructible_v<T, for_load_t>) {
    return T(for_load);
  } else {
    return T{};
  }
}

template <class Tuple>
struct tuple_for_load;
template <class... Ts>
struct tuple_for_load<std::tuple<Ts...>> {
  static std::tuple<Ts...> make() { return std::tuple<Ts...>(make_for_load<Ts>()...); }
};

/// Appends the payload of `value` (no tag) to `ar`.
template <class T>
void save_value(OutputArchive& ar, const T& value) {
  static_assert(serializable_v<T>,
                "mp: this type cannot cross a process boundary: give it a cereal "
                "`template <class A> void serialize(A& ar)` member");
  if constexpr (bitwise_v<T>) {
    ar.saveBinary(&value, sizeof(T));
  } else {
    ar(value);
  }
}

/// Reads the payload of a T (no tag) from `ar`. Throws mp::SerializationError.
template <class T>
void load_value(InputArchive& ar, T& value) {
  static_assert(serializable_v<T>, "mp: this type cannot cross a process boundary");
  if constexpr (bitwise_v<T>) {
    ar.loadBinary(&value, sizeof(T));
  } else {
    try {
      ar(value);
    } catch (const SerializationError&) {
      throw;
    } catch (const cereal::Exception& e) {
      throw SerializationError(std::string("corrupt message: ") + e.what());
    } catch (const std::bad_alloc&) {
      throw SerializationError("corrupt message: it asks for more memory than there is");
    } catch (const std::length_error& e) {
      throw SerializationError(std::string("corrupt message: ") + e.what());
    }
  }
}

/// Appends one tagged message holding `value` to `out`. Descriptors held by mp
/// handles inside `value` are appended to `*fds` (if `fds` is null, such handles
/// refuse to be written).
template <class T>
void encode(const T& value, std::vector<std::byte>& out, std::vector<int>* fds = nullptr) {
  constexpr std::uint64_t tag = type_tag<T>();
  const std::size_t at = out.size();
  if constexpr (bitwise_v<T>) {
    out.resize(at + sizeof tag + sizeof(T));
    std::memcpy(out.data() + at, &tag, sizeof tag);
    std::memcpy(out.data() + at + sizeof tag, &value, sizeof(T));
  } else {
    out.resize(at + sizeof tag);
    std::memcpy(out.data() + at, &tag, sizeof tag);
    OutputArchive ar(out, fds);
    save_value(ar, value);
  }
}

/// One tagged message as a fresh byte vector.
template <class T>
std::vector<std::byte> encode(const T& value) {
  std::vector<std::byte> out;
  encode(value, out);
  return out;
}

/// Checks the tag at the front of `in` against T. Throws mp::SerializationError.
template <class T>
void check_tag(std::span<const std::byte> in) {
  std::uint64_t tag = 0;
  if (in.size() < sizeof tag) {
    throw SerializationError("truncated message: " + std::to_string(in.size()) +
                             " bytes is too short to hold a type tag");
  }
  std::memcpy(&tag, in.data(), sizeof tag);
  if (tag != type_tag<T>()) {
    throw SerializationError("type mismatch: expected a message holding " + std::string(type_name<T>()) +
                             ", got one holding another type");
  }
}

/// Decodes one tagged message that must hold exactly a T.
/// Throws mp::SerializationError on a type mismatch or corrupt input.
template <class T>
T decode(std::span<const std::byte> in, std::span<const int> fds = {}) {
  check_tag<T>(in);
  auto body = in.subspan(sizeof(std::uint64_t));
  if constexpr (bitwise_v<T>) {
    if (body.size() != sizeof(T)) {
      throw SerializationError("corrupt message: " + std::to_string(body.size()) + " bytes for a " +
                               std::string(type_name<T>()) + " of " + std::to_string(sizeof(T)));
    }
    T value;
    std::memcpy(&value, body.data(), sizeof(T));
    return value;
  } else {
    InputArchive ar(body, fds);
    T value = make_for_load<T>();
    load_value(ar, value);
    if (ar.remaining() != 0) {
      throw SerializationError("corrupt message: " + std::to_string(ar.remaining()) + " bytes left over after a " +
                               std::string(type_name<T>()));
    }
    return value;
  }
}

}  // namespace mp::detail
