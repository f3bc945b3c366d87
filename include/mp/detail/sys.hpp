// mp/detail/sys.hpp — the one place that reads errno, and an owner for descriptors.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

namespace mp::detail {

/// Throws mp::OSError naming `call` and strerror(err).
[[noreturn]] void throw_os_error(const char* call, int err);

/// Runs `fn` until it does not fail with EINTR; a result of -1 throws mp::OSError
/// naming `call`. Returns the result otherwise.
template <class Fn>
auto sys(const char* call, Fn&& fn) {
  for (;;) {
    auto r = fn();
    if (r != -1) return r;
    if (errno != EINTR) throw_os_error(call, errno);
  }
}

/// Like sys(), but returns -errno instead of throwing (for callers that branch on it).
template <class Fn>
auto sys_nothrow(Fn&& fn) {
  for (;;) {
    auto r = fn();
    if (r != -1) return r;
    if (errno != EINTR) return static_cast<decltype(r)>(-errno);
  }
}

/// A move-only owner of a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/// Writes all of `size` bytes, retrying short writes and EINTR. Throws mp::OSError.
void write_all(int fd, const void* data, std::size_t size);
/// Reads exactly `size` bytes. Returns false on EOF before the first byte; throws
/// mp::OSError on error and mp::EOFError on EOF in the middle.
bool read_exact(int fd, void* data, std::size_t size);

/// Maps the pages of [p, p + n) in now, with one system call, where first touches would
/// take one page fault per 4 KiB page: a fault costs ~20 us on the VMs mp is measured
/// on, a page mapped by MADV_POPULATE_WRITE 1-4 us. For memory that is about to be
/// written whole (a big result, a stretch of a queue's ring). `huge`: private anonymous
/// memory of whole 2 MiB stretches also asks for transparent huge pages (where the
/// system allows them on request). Best effort, never throws: without
/// MADV_POPULATE_WRITE (Linux < 5.14) the pages just fault in as they are touched.
void prefault(void* p, std::size_t n, bool huge = false) noexcept;

}  // namespace mp::detail
