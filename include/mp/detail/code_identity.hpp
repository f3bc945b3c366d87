// mp/detail/code_identity.hpp — naming a function so that another process running
// the same binary finds it, whatever its address-space layout.
//
// A function is named by the loaded module that holds it (its path, "" for the main
// executable) and its offset from that module's load address, and the module's GNU
// build-id travels along: a child that finds another build of the module refuses to
// call into it instead of jumping to a wrong address.
#pragma once

#include <cstdint>
#include <string>

namespace mp::detail {

/// The build-id of the main executable, hex, and a 64-bit hash of it.
const std::string& main_build_id();
std::uint64_t main_build_hash();

struct CodeRef {
  std::string module;    // "" = the main executable
  std::uint64_t offset = 0;
  std::string build_id;  // hex; empty when the module has none (unused for the main executable)

  // On the wire a function of the main executable is 17 bytes and no string (pools send
  // two per task): a tag, the offset, and a hash of the build-id, checked on load.
  template <class A>
  void save(A& ar) const {
    if (module.empty()) {
      ar(std::uint8_t{0}, offset, main_build_hash());
    } else {
      ar(std::uint8_t{1}, module, offset, build_id);
    }
  }
  template <class A>
  void load(A& ar) {
    std::uint8_t kind = 0;
    ar(kind);
    if (kind == 0) {
      std::uint64_t hash = 0;
      ar(offset, hash);
      module.clear();
      build_id.clear();
      check_main_build_hash(hash);
    } else if (kind == 1) {
      ar(module, offset, build_id);
    } else {
      throw_bad_code_ref();
    }
  }

 private:
  static void check_main_build_hash(std::uint64_t hash);
  [[noreturn]] static void throw_bad_code_ref();
};

/// The identity of the code at `addr`. Throws mp::ValueError if no loaded module holds it.
CodeRef code_ref_of(const void* addr);

/// The address `ref` names in this process. Throws mp::SerializationError if the module
/// is not loaded here or is another build.
const void* resolve_code_ref(const CodeRef& ref);

}  // namespace mp::detail
