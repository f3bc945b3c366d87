// mp/detail/type_tag.hpp — a stable name and 64-bit tag for every C++ type.
//
// Every message on mp's wire starts with the tag of the type it holds, so that a
// recv<T>() of another type is refused instead of reading garbage. The tag is the
// FNV-1a hash of the compiler's spelling of the type, which is the same in every
// process running the same binary (and in every binary built by the same compiler),
// whatever the address-space layout.
#pragma once

#include <cstdint>
#include <string_view>

namespace mp::detail {

/// The compiler's spelling of T, e.g. "std::vector<int>".
template <class T>
constexpr std::string_view type_name() {
  std::string_view p = __PRETTY_FUNCTION__;
  // GCC:   "... type_name() [with T = int; std::string_view = ...]"
  // Clang: "... type_name() [T = int]"
  auto begin = p.find("T = ");
  if (begin == std::string_view::npos) return p;
  begin += 4;
  auto end = p.find("; std::string_view", begin);
  if (end == std::string_view::npos) end = p.rfind(']');
  return p.substr(begin, end - begin);
}

constexpr std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// The tag written in front of every message holding a T.
template <class T>
constexpr std::uint64_t type_tag() {
  return fnv1a64(type_name<T>());
}

}  // namespace mp::detail
