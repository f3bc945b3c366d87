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

struct CodeRef {
  std::string module;    // "" = the main executable
  std::uint64_t offset = 0;
  std::string build_id;  // hex; empty when the module has none

  template <class A>
  void serialize(A& ar) {
    ar(module, offset, build_id);
  }
};

/// The identity of the code at `addr`. Throws mp::ValueError if no loaded module holds it.
CodeRef code_ref_of(const void* addr);

/// The address `ref` names in this process. Throws mp::SerializationError if the module
/// is not loaded here or is another build.
const void* resolve_code_ref(const CodeRef& ref);

/// The build-id of the main executable, hex.
const std::string& main_build_id();

}  // namespace mp::detail
