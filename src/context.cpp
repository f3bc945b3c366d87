// src/context.cpp — the program's start method (CPython's context.py). A Context only
// carries a start method; every object it makes forwards to the ordinary constructors.
#include "mp/context.hpp"

#include <atomic>

#include "context_internal.hpp"

namespace mp {
namespace {
std::atomic<StartMethod> g_method{StartMethod::fork};
std::atomic<bool> g_method_set{false};
}  // namespace

void set_start_method(StartMethod method, bool force) {
  if (g_method_set.load() && !force) {
    throw ValueError("context has already been set: set_start_method() was called before (pass force = true to change it)");
  }
  g_method = method;
  g_method_set = true;
}

StartMethod get_start_method() { return g_method.load(); }

std::vector<StartMethod> get_all_start_methods() {
  return {StartMethod::fork, StartMethod::spawn, StartMethod::forkserver};
}

Context get_context(StartMethod method) { return Context(method); }
Context get_context() { return Context(get_start_method()); }

namespace detail {
std::pair<StartMethod, bool> start_method_state() noexcept { return {g_method.load(), g_method_set.load()}; }
void inherit_start_method(StartMethod method, bool was_set) noexcept {
  g_method = method;
  g_method_set = was_set;
}
}  // namespace detail

}  // namespace mp
