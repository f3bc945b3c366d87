// src/sys.cpp — errno is read here and nowhere else: failed calls become mp::OSError
// naming the call.
#include "mp/detail/sys.hpp"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

#include "mp/errors.hpp"
#include "mp/os.hpp"
#include "process_internal.hpp"

namespace mp::detail {

void throw_os_error(const char* call, int err) {
  throw OSError(std::string(call) + " failed: " + std::strerror(err), err);
}

void write_all(int fd, const void* data, std::size_t size) {
  auto p = static_cast<const char*>(data);
  while (size) {
    auto n = sys("write", [&] { return ::write(fd, p, size); });
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

bool read_exact(int fd, void* data, std::size_t size) {
  auto p = static_cast<char*>(data);
  std::size_t got = 0;
  while (got < size) {
    auto n = sys("read", [&] { return ::read(fd, p + got, size - got); });
    if (n == 0) {
      if (got == 0) return false;
      throw EOFError("the peer closed the stream in the middle of a message");
    }
    got += static_cast<std::size_t>(n);
  }
  return true;
}

void prefault(void* p, std::size_t n, bool huge) noexcept {
#ifdef MADV_POPULATE_WRITE
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));  // no local static: fork-safe
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const auto first = begin & ~(page - 1);  // populating leaves the contents as they are
  const auto last = (begin + n + page - 1) & ~(page - 1);
  if (last <= first) return;
  if (huge) {
    const auto hfirst = (begin + kHuge - 1) & ~(kHuge - 1);
    const auto hlast = (begin + n) & ~(kHuge - 1);
    if (hlast > hfirst) ::madvise(reinterpret_cast<void*>(hfirst), hlast - hfirst, MADV_HUGEPAGE);
  }
  ::madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_WRITE);
#else
  (void)p, (void)n, (void)huge;
#endif
}

}  // namespace mp::detail

namespace mp::os {

pid_t fork() {
  detail::flush_stdio();
  return detail::sys("fork", [] { return ::fork(); });
}

pid_t getpid() noexcept { return ::getpid(); }
pid_t getppid() noexcept { return ::getppid(); }

}  // namespace mp::os
