// mp/context.hpp — start methods, contexts, and the process-wide helpers.
//
// @code
//   mp::set_start_method(mp::StartMethod::spawn);            // once, at the top of main
//   auto ctx = mp::get_context(mp::StartMethod::forkserver); // or per object
//   mp::Process p = ctx.Process(worker, 1, "x");
//   std::cout << mp::cpu_count();
// @endcode
//
// The default start method on Linux is fork: the fastest, and the only one that runs
// any callable. mp's own state is fork-aware (its locks are taken around fork), so
// fork is safe as far as mp is concerned; a program that runs threads of its own picks
// forkserver or spawn. A Context only carries a start method: everything it makes
// behaves as the same object made with that start method.
#pragma once

#include <string_view>
#include <utility>
#include <vector>

#include "mp/process.hpp"

namespace mp {

class Context {
 public:
  explicit Context(StartMethod method) noexcept : method_(method) {}
  StartMethod start_method() const noexcept { return method_; }
  std::string_view name() const noexcept { return to_string(method_); }

  /// ctx.Process(f, args...): an mp::Process that starts with this context's method.
  template <class F, class... A>
    requires(!std::is_same_v<std::remove_cvref_t<F>, ProcessOptions>)
  ::mp::Process Process(F&& target, A&&... args) const {
    return ::mp::Process(ProcessOptions{.start_method = method_}, std::forward<F>(target),
                         std::forward<A>(args)...);
  }
  template <class F, class... A>
  ::mp::Process Process(ProcessOptions options, F&& target, A&&... args) const {
    options.start_method = method_;
    return ::mp::Process(std::move(options), std::forward<F>(target), std::forward<A>(args)...);
  }

 private:
  StartMethod method_;
};

/// A context whose start method is known at compile time: a target that cannot cross
/// to a spawn/forkserver child is a compile error there, not an exception at start().
/// @code
///   auto p = mp::get_context<mp::StartMethod::spawn>().Process(worker, 1);  // checked now
/// @endcode
template <StartMethod M>
class StaticContext {
 public:
  static constexpr StartMethod start_method() noexcept { return M; }
  operator Context() const noexcept { return Context(M); }  // NOLINT: a StaticContext is a Context

  template <class F, class... A>
    requires(!std::is_same_v<std::remove_cvref_t<F>, ProcessOptions>)
  ::mp::Process Process(F&& target, A&&... args) const {
    return Process(ProcessOptions{}, std::forward<F>(target), std::forward<A>(args)...);
  }
  template <class F, class... A>
  ::mp::Process Process(ProcessOptions options, F&& target, A&&... args) const {
    static_assert(M == StartMethod::fork || detail::Shippable<F, A...>,
                  "mp: this target cannot cross to a spawn/forkserver child: use a function, a captureless "
                  "lambda or a function object with a cereal `serialize` member, and serializable arguments "
                  "(or the fork start method)");
    options.start_method = M;
    return ::mp::Process(std::move(options), std::forward<F>(target), std::forward<A>(args)...);
  }
};

template <StartMethod M>
constexpr StaticContext<M> get_context() noexcept {
  return {};
}

/// Sets the program's start method. Throws mp::ValueError if it was set before and
/// `force` is false (as Python's "context has already been set").
void set_start_method(StartMethod method, bool force = false);

/// The program's start method (fork unless set).
StartMethod get_start_method();

/// Every start method this platform has: fork, spawn, forkserver.
std::vector<StartMethod> get_all_start_methods();

/// A context for `method`, or for the program's start method.
Context get_context(StartMethod method);
Context get_context();


/// The number of CPUs this process may use: its CPU affinity mask, further limited by
/// a cgroup v2 CPU quota (cpu.max) when one is set. At least 1.
int cpu_count();

}  // namespace mp
