// mp/detail/callable.hpp — a process target (a callable and its arguments) that can
// run here, after fork, or be written down and rebuilt in a freshly exec'd child.
//
// What crosses an exec (spawn, forkserver), as with pickle:
//   - a function pointer: sent as its code identity (code_identity.hpp);
//   - a captureless lambda or other empty, default-constructible function object:
//     nothing is sent but the identity of the code that rebuilds it (its type is
//     baked into that code);
//   - a function object with a cereal `serialize` member: its members are sent.
// Arguments are stored decayed (string literals as std::string) and must be
// serializable. What cannot cross is known at compile time: Target::unshippable()
// names the reason, and Process::start() raises it as mp::ValueError under
// spawn/forkserver, while fork runs anything.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mp/detail/codec.hpp"
#include "mp/detail/code_identity.hpp"
#include "mp/detail/type_tag.hpp"

namespace mp::detail {

/// How an argument is stored: decayed, with C strings kept as std::string.
template <class A>
using stored_arg_t = std::conditional_t<std::is_convertible_v<A, const char*> &&
                                            std::is_pointer_v<std::decay_t<A>>,
                                        std::string, std::decay_t<A>>;

/// How a stored argument is made from what the caller passed. A move-only handle passed
/// as an lvalue (a Connection) specializes this to give the child its own duplicate.
template <class T>
struct child_copy {
  static T make(const T& v) { return v; }
};

template <class A>
stored_arg_t<A> store_arg(A&& a) {
  using S = stored_arg_t<A>;
  if constexpr (std::is_lvalue_reference_v<A> && std::is_same_v<S, std::decay_t<A>> &&
                !std::is_copy_constructible_v<S>) {
    return child_copy<S>::make(a);
  } else {
    return S(std::forward<A>(a));
  }
}

/// A move-only argument is handed to the target as an rvalue, anything else as an
/// lvalue: so `void f(std::string&)`, `void f(Connection)` and `void f(Connection&)`
/// all work.
template <class T>
decltype(auto) as_call_arg(T& stored) {
  if constexpr (std::is_copy_constructible_v<T>) {
    return static_cast<T&>(stored);
  } else {
    return static_cast<T&&>(stored);
  }
}

template <class F, class... S>
inline constexpr bool callable_with_stored_v =
    std::is_invocable_v<F&, S&...> ||
    std::is_invocable_v<F&, decltype(as_call_arg(std::declval<S&>()))...>;

template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

template <class F>
inline constexpr bool is_stateless_v =
    std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F>;

/// Why a callable of type F cannot be rebuilt in an exec'd child, or nullptr.
template <class F>
constexpr const char* callable_unshippable_reason() {
  if constexpr (is_function_pointer_v<F> || is_stateless_v<F> || cereal_serializable_v<F>) {
    return nullptr;
  } else if constexpr (std::is_class_v<F> && !std::is_empty_v<F>) {
    return "the target holds state (a lambda with captures, a std::function, or a function object "
           "without a cereal `serialize` member), which cannot be rebuilt in a freshly exec'd child. "
           "Pass the state as arguments to a plain function or captureless lambda, give the function "
           "object a `serialize` member, or use the fork start method";
  } else {
    return "the target is neither a function, a captureless lambda nor a serializable function object";
  }
}

template <class Tuple>
struct args_serializable;
template <class... A>
struct args_serializable<std::tuple<A...>> : std::bool_constant<(serializable_v<A> && ...)> {};

/// True when f(args...) can be rebuilt in a freshly exec'd child (spawn, forkserver).
template <class F, class... A>
concept Shippable = callable_unshippable_reason<std::decay_t<F>>() == nullptr &&
                    args_serializable<std::tuple<stored_arg_t<A>...>>::value;

/// Writes a shippable callable: a function pointer as its code identity, a stateless
/// function object as nothing (its type says it all), another as its cereal members.
template <class F>
void save_callable(OutputArchive& ar, const F& f) {
  static_assert(callable_unshippable_reason<F>() == nullptr);
  if constexpr (is_function_pointer_v<F>) {
    ar(code_ref_of(reinterpret_cast<const void*>(f)));
  } else if constexpr (!is_stateless_v<F>) {
    save_value(ar, f);
  }
}

/// Reads what save_callable<F>() wrote. Throws mp::SerializationError.
template <class F>
F load_callable(InputArchive& ar) {
  if constexpr (is_function_pointer_v<F>) {
    CodeRef ref;
    ar(ref);
    return reinterpret_cast<F>(const_cast<void*>(resolve_code_ref(ref)));
  } else if constexpr (is_stateless_v<F>) {
    return F{};
  } else {
    F f = make_for_load<F>();
    load_value(ar, f);
    return f;
  }
}

/// A type-erased target: a callable with its arguments.
class Target {
 public:
  virtual ~Target() = default;
  /// Calls the callable with the stored arguments (as lvalues).
  virtual void call() = 0;
  /// Why this target cannot cross an exec, or nullptr when it can.
  virtual const char* unshippable() const noexcept = 0;
  /// Writes the target (code identity of its loader, callable, arguments).
  /// Precondition: unshippable() == nullptr.
  virtual void save(OutputArchive& ar) const = 0;
};

using TargetLoader = std::unique_ptr<Target> (*)(InputArchive&);

template <class F, class Args>
class TargetImpl final : public Target {
 public:
  TargetImpl(F f, Args args) : f_(std::move(f)), args_(std::move(args)) {}

  void call() override {
    std::apply(
        [this](auto&... a) {
          if constexpr (std::is_invocable_v<F&, decltype(a)...>) {
            std::invoke(f_, a...);
          } else {
            std::invoke(f_, as_call_arg(a)...);
          }
        },
        args_);
  }

  const char* unshippable() const noexcept override {
    if constexpr (callable_unshippable_reason<F>() != nullptr) {
      return callable_unshippable_reason<F>();
    } else if constexpr (!args_serializable<Args>::value) {
      return "an argument of the target is not serializable (give its type a cereal `serialize` "
             "member), so it cannot reach a freshly exec'd child; the fork start method takes any value";
    } else {
      return nullptr;
    }
  }

  void save(OutputArchive& ar) const override {
    if constexpr (callable_unshippable_reason<F>() == nullptr && args_serializable<Args>::value) {
      ar(code_ref_of(reinterpret_cast<const void*>(&TargetImpl::load)));
      save_callable(ar, f_);
      save_value(ar, args_);
    } else {
      throw ValueError(unshippable());
    }
  }

  /// Rebuilds a target written by save(); its address is what save() sends.
  static std::unique_ptr<Target> load(InputArchive& ar) {
    if constexpr (callable_unshippable_reason<F>() == nullptr && args_serializable<Args>::value) {
      F f = load_callable<F>(ar);
      Args args = tuple_for_load<Args>::make();
      load_value(ar, args);
      return std::make_unique<TargetImpl>(std::move(f), std::move(args));
    } else {
      throw SerializationError("this target cannot be rebuilt in a child");
    }
  }

 private:
  F f_;
  Args args_;
};

template <class F, class... A>
std::unique_ptr<Target> make_target(F&& f, A&&... args) {
  using Fn = std::decay_t<F>;
  using Args = std::tuple<stored_arg_t<A>...>;
  static_assert(callable_with_stored_v<Fn, stored_arg_t<A>...>,
                "mp::Process: the target cannot be called with these arguments");
  return std::make_unique<TargetImpl<Fn, Args>>(Fn(std::forward<F>(f)), Args(store_arg<A>(std::forward<A>(args))...));
}

/// Reads a target written by Target::save().
std::unique_ptr<Target> load_target(InputArchive& ar);

}  // namespace mp::detail
