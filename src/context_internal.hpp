// src/context_internal.hpp — the program's start method as the child learns it.
#pragma once

#include <utility>

#include "mp/process.hpp"

namespace mp::detail {

/// The program's start method and whether set_start_method() chose it.
std::pair<StartMethod, bool> start_method_state() noexcept;
/// In a spawn/forkserver child: take the parent's setting.
void inherit_start_method(StartMethod method, bool was_set) noexcept;

}  // namespace mp::detail
