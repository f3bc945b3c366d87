// mp/detail/archive.hpp — cereal archives over bytes in memory, hardened for input
// that crosses a process boundary.
//
// The output archive appends to a std::vector<std::byte>. The input archive reads a
// span and never trusts it: every read is bounds-checked, a length field larger than
// the bytes that remain is refused before anything is allocated, and a bool must be 0
// or 1. Every such failure throws mp::SerializationError, so corrupt input is an
// exception, never undefined behaviour.
//
// Handles that own descriptors (a Connection passed to a child, ...) ride beside the
// bytes: an archive may carry a list of descriptors that the transport (fork,
// SCM_RIGHTS, spawn's inherited descriptors) moves along with the message.
#pragma once

#include <cereal/cereal.hpp>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mp/errors.hpp"

namespace mp::detail {

class OutputArchive : public cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit OutputArchive(std::vector<std::byte>& out, std::vector<int>* fds = nullptr)
      : cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision>(this), out_(out), fds_(fds) {}

  void saveBinary(const void* data, std::size_t size) {
    if (size >= 4096) {  // one pass over the bytes (resize would zero-fill them first)
      const auto* p = static_cast<const std::byte*>(data);
      out_.insert(out_.end(), p, p + size);
      return;
    }
    // resize + memcpy rather than insert: GCC 12 at -O3 reports false array-bounds
    // warnings on vector::insert of small objects (GCC bug 107852).
    const std::size_t at = out_.size();
    out_.resize(at + size);
    if (size) std::memcpy(out_.data() + at, data, size);
  }
  /// Descriptors to send along with the bytes, or nullptr where none can travel.
  std::vector<int>* fds() const noexcept { return fds_; }

 private:
  std::vector<std::byte>& out_;
  std::vector<int>* fds_;
};

class InputArchive : public cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit InputArchive(std::span<const std::byte> in, std::span<const int> fds = {})
      : cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision>(this), in_(in), fds_(fds) {}

  void loadBinary(void* data, std::size_t size) {
    if (size > remaining()) {
      throw SerializationError("truncated message: needs " + std::to_string(size) + " more bytes, " +
                               std::to_string(remaining()) + " left");
    }
    if (size) std::memcpy(data, in_.data() + pos_, size);
    pos_ += size;
  }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }
  /// The descriptors that arrived with the message (owned by the caller).
  std::span<const int> fds() const noexcept { return fds_; }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  std::span<const int> fds_;
};

// ---- the archive's primitives, in the shape cereal expects -------------------

template <class T>
  requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const T& t) {
  ar.saveBinary(std::addressof(t), sizeof(t));
}

template <class T>
  requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, T& t) {
  if constexpr (std::is_same_v<T, bool>) {
    unsigned char b = 0;
    ar.loadBinary(&b, 1);
    if (b > 1) throw SerializationError("corrupt message: a bool holds " + std::to_string(b));
    t = b != 0;
  } else {
    ar.loadBinary(std::addressof(t), sizeof(t));
  }
}

template <class Archive, class T>
  requires(std::is_same_v<Archive, OutputArchive> || std::is_same_v<Archive, InputArchive>)
void CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const cereal::SizeTag<T>& t) {
  ar(t.size);
}

// A length field may not promise more elements than there are bytes left: this is
// what keeps a corrupt length from turning into a giant allocation.
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::SizeTag<T>& t) {
  ar(t.size);
  if (static_cast<std::uint64_t>(t.size) > ar.remaining()) {
    throw SerializationError("corrupt message: a length of " + std::to_string(t.size) + " with only " +
                             std::to_string(ar.remaining()) + " bytes left");
  }
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const cereal::BinaryData<T>& bd) {
  ar.saveBinary(bd.data, static_cast<std::size_t>(bd.size));
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

}  // namespace mp::detail

CEREAL_REGISTER_ARCHIVE(mp::detail::OutputArchive)
CEREAL_REGISTER_ARCHIVE(mp::detail::InputArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(mp::detail::InputArchive, mp::detail::OutputArchive)
