// src/traceback.cpp — the stack of an exception that escapes a child's target.
//
// C++ keeps no stack in an exception, and by the time the child's bootstrap catches it
// the stack of the throw is gone. So while a child runs its target, mp records the
// stack at every throw: it interposes __cxa_throw (the C++ runtime's entry for every
// `throw`), takes a backtrace() when the calling thread asked for it, and hands over to
// the runtime's own __cxa_throw. Outside a child's target the cost of a throw is one
// thread-local test. Frames are named with dladdr() (the executable is linked with
// -rdynamic so its functions have names) and demangled; each also shows module+offset,
// which `addr2line -e MODULE OFFSET` turns into a file and line.
#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

#include "mp/errors.hpp"
#include "process_internal.hpp"

namespace mp::detail {
namespace {

constexpr int kMaxFrames = 48;
thread_local bool t_capture = false;
thread_local int t_depth = 0;
thread_local void* t_frames[kMaxFrames];

std::string describe_frame(void* pc) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "0x%lx", reinterpret_cast<unsigned long>(pc));
  std::string line = std::string("  at ") + buf;
  Dl_info info{};
  if (dladdr(pc, &info)) {
    if (info.dli_sname) {
      line += " in " + demangle(info.dli_sname);
      std::snprintf(buf, sizeof buf, "+0x%lx",
                    static_cast<unsigned long>(static_cast<char*>(pc) - static_cast<char*>(info.dli_saddr)));
      line += buf;
    }
    if (info.dli_fname) {
      // One byte back: the return address may already belong to the next line.
      std::snprintf(buf, sizeof buf, "+0x%lx",
                    static_cast<unsigned long>(static_cast<char*>(pc) - static_cast<char*>(info.dli_fbase) - 1));
      line += std::string(" (") + info.dli_fname + buf + ")";
    }
  }
  return line;
}

}  // namespace

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  std::free(d);
  return out;
}

ExceptionText describe_current_exception() {
  try {
    throw;
  } catch (const RemoteError& e) {
    return {e.type_name(), e.what()};
  } catch (const std::exception& e) {
    return {demangle(typeid(e).name()), e.what()};
  } catch (...) {
    auto* t = abi::__cxa_current_exception_type();
    return {t ? demangle(t->name()) : "unknown exception", "(not a std::exception)"};
  }
}

extern const int throw_hook_linked;

void set_capture_throw_stacks(bool on) noexcept {
  // Reading it pulls throw_hook.o into every program that runs a child.
  if (!throw_hook_linked) return;
  t_capture = on;
  if (on) t_depth = 0;
}

void record_throw_stack() noexcept {
  if (!t_capture) return;
  t_capture = false;  // backtrace() itself must not recurse into here
  t_depth = ::backtrace(t_frames, kMaxFrames);
  t_capture = true;
}

std::string recorded_throw_stack(const char* stop_a, const char* stop_b) {
  std::string text;
  // Frame 0 is record_throw_stack, frame 1 the __cxa_throw hook.
  for (int i = 2; i < t_depth; ++i) {
    std::string frame = describe_frame(t_frames[i]);
    if (frame.find(stop_a) != std::string::npos || frame.find(stop_b) != std::string::npos) break;
    text += frame + "\n";
  }
  return text;
}

void report_child_exception(const std::string& process_name) noexcept {
  std::string text = "Process " + process_name + ":\n";
  if (t_depth > 1) {
    text += "Traceback (innermost call first, at the throw):\n";
    // Frame 0 is record_throw_stack, frame 1 the __cxa_throw hook.
    // The frames from the bootstrap down to main() are mp's and the parent's: cut there.
    for (int i = 2; i < t_depth; ++i) {
      std::string frame = describe_frame(t_frames[i]);
      if (frame.find(" in mp::detail::run_as_child(") != std::string::npos) break;
      text += frame + "\n";
    }
  }
  try {
    throw;
  } catch (const std::exception& e) {
    text += demangle(typeid(e).name()) + ": " + e.what() + "\n";
  } catch (...) {
    auto* type = abi::__cxa_current_exception_type();
    text += (type ? demangle(type->name()) : std::string("unknown exception")) + "\n";
  }
  flush_stdio();
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace mp::detail
