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

#include <algorithm>
#include <cereal/cereal.hpp>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mp/errors.hpp"

namespace mp::detail {

/// A block of the value being saved that the message refers to rather than copies: its
/// bytes belong at `at` in the output (OutputArchive with references).
struct BlockRef {
  std::size_t at;
  const std::byte* data;
  std::size_t size;
};

class OutputArchive : public cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision> {
 public:
  /// Blocks of at least this many bytes are referred to, when the archive may (`refs`).
  static constexpr std::size_t kRefBytes = std::size_t{64} << 10;

  /// `refs`: large blocks (a big vector's elements) are not copied into `out` but noted
  /// there, for a writer that copies them once to where they go (a queue's ring); they
  /// must then outlive the message's use.
  explicit OutputArchive(std::vector<std::byte>& out, std::vector<int>* fds = nullptr,
                         std::vector<BlockRef>* refs = nullptr)
      : cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision>(this), out_(out), fds_(fds), refs_(refs) {}

  void saveBinary(const void* data, std::size_t size) {
    if (refs_ && size >= kRefBytes) {
      refs_->push_back({out_.size(), static_cast<const std::byte*>(data), size});
      return;
    }
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
  std::vector<BlockRef>* refs_;
};

class InputArchive : public cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit InputArchive(std::span<const std::byte> in, std::span<const int> fds = {})
      : cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision>(this), in_(in), left_(in.size()), fds_(fds) {}
  /// A message of `size` bytes that arrives in pieces: `next(ctx)` returns the next one
  /// (a queue's item streaming through its ring), so it is decoded as it comes.
  using NextPiece = std::span<const std::byte> (*)(void*);
  InputArchive(std::size_t size, NextPiece next, void* ctx)
      : cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision>(this), left_(size), next_(next), ctx_(ctx) {}

  void loadBinary(void* data, std::size_t size) {
    if (size <= in_.size() - pos_) [[likely]] {  // all in the current piece
      if (size) std::memcpy(data, in_.data() + pos_, size);
      pos_ += size;
      left_ -= size;
      return;
    }
    check_left(size);
    auto* out = static_cast<std::byte*>(data);
    while (size) {
      const auto piece = current();
      const std::size_t n = std::min(size, piece.size());
      std::memcpy(out, piece.data(), n);
      out += n;
      size -= n;
      consume(n);
    }
  }
  /// Appends `n` bytes of the message to `v`, piece by piece: the destination is written
  /// once (resize would zero-fill it first). For vectors of char, unsigned char, std::byte.
  template <class T>
    requires(std::is_same_v<T, char> || std::is_same_v<T, unsigned char> || std::is_same_v<T, std::byte>)
  void loadAppend(std::vector<T>& v, std::size_t n) {
    check_left(n);
    while (n) {
      const auto piece = current();
      const std::size_t k = std::min(n, piece.size());
      const auto* p = reinterpret_cast<const T*>(piece.data());  // char types may view any bytes
      v.insert(v.end(), p, p + k);
      n -= k;
      consume(k);
    }
  }
  /// Bytes of the message not read yet.
  std::size_t remaining() const noexcept { return left_; }
  /// The descriptors that arrived with the message (owned by the caller).
  std::span<const int> fds() const noexcept { return fds_; }

 private:
  void check_left(std::size_t size) const {
    if (size > left_) {
      throw SerializationError("truncated message: needs " + std::to_string(size) + " more bytes, " +
                               std::to_string(left_) + " left");
    }
  }
  // The unread part of the current piece, the next piece once it is used up.
  std::span<const std::byte> current() {
    if (pos_ == in_.size()) {
      in_ = next_ ? next_(ctx_) : std::span<const std::byte>{};
      pos_ = 0;
      if (in_.empty()) throw SerializationError("truncated message: the stream ended early");
    }
    return in_.subspan(pos_);
  }
  void consume(std::size_t n) {
    pos_ += n;
    left_ -= n;
  }

  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  std::size_t left_;  // in the whole message, from pos_ on
  NextPiece next_ = nullptr;
  void* ctx_ = nullptr;
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
