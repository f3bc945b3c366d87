// src/throw_hook.cpp — the __cxa_throw interposer (see traceback.cpp for why).
//
// Kept alone in this file: <cxxabi.h> declares __cxa_throw too, and the two
// declarations must never meet. Defined in the program (mp is linked into it), this
// __cxa_throw is the one every `throw` calls; it records the stack when the thread
// asked for it and hands over to the next definition (the C++ runtime's, or a
// sanitizer's interceptor, which then calls the runtime's).
#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <typeinfo>

namespace mp::detail {
void record_throw_stack() noexcept;
// Referenced from traceback.cpp so that this file is always linked in, even when a
// library earlier on the link line (a sanitizer runtime) already defines __cxa_throw.
extern const int throw_hook_linked = 1;
}  // namespace mp::detail

extern "C" {

[[noreturn]] void __cxa_throw(void* object, std::type_info* type, void (*destructor)(void*)) {
  using real_fn = void (*)(void*, std::type_info*, void (*)(void*));
  // Looked up once, without a local static (whose init guard, held by another thread at
  // a fork, would hang the child's first throw): racing threads find the same address.
  static std::atomic<real_fn> cached{nullptr};  // constant-initialized: no guard
  real_fn real = cached.load(std::memory_order_relaxed);
  if (!real) {
    real = reinterpret_cast<real_fn>(::dlsym(RTLD_NEXT, "__cxa_throw"));
    cached.store(real, std::memory_order_relaxed);
  }
  mp::detail::record_throw_stack();
  real(object, type, destructor);
  std::abort();  // the runtime's __cxa_throw never returns
}

}  // extern "C"
