// mp/detail/shared_mapping.hpp — memory shared between processes, reachable from every
// copy of a handle.
//
// An anonymous memfd, mapped MAP_SHARED. It has no name, so nothing can be left in
// /dev/shm: the kernel frees it when the last descriptor and the last mapping are gone,
// whoever exits and however. A child gets it by inheritance (fork) or as a descriptor
// passed along (spawn, forkserver, SCM_RIGHTS), and maps it again.
//
// One mapping per memory file and process: attaching a memfd this process has mapped
// already (a queue handle sent to a thread of the same process, or back to its creator)
// hands out the existing mapping. Besides saving an mmap and its page faults per
// received handle, this keeps every word at one address in a process, which is what
// ThreadSanitizer needs to see the locks' and atomics' ordering: it tracks them by
// address, so two views of one word would be two unrelated words to it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <utility>

#include "mp/detail/archive.hpp"
#include "mp/detail/sys.hpp"

namespace mp::detail {

class SharedMapping {
 public:
  /// A new zero-filled mapping of `size` bytes. `name` shows in /proc/PID/maps.
  static std::shared_ptr<SharedMapping> create(std::size_t size, const char* name);
  /// Maps the memfd `fd` (duplicated; the caller keeps its own), or returns this
  /// process's mapping of the same file if it has one (same device and inode).
  static std::shared_ptr<SharedMapping> attach(int fd);

  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  ~SharedMapping();

  void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  int fd() const noexcept { return fd_.get(); }

  /// Writes the mapping as a descriptor that travels with the message (throws
  /// mp::ValueError where descriptors cannot travel).
  void save(OutputArchive& ar, const char* what) const;
  /// Reads a mapping written by save().
  static std::shared_ptr<SharedMapping> load(InputArchive& ar);

 private:
  using FileId = std::pair<dev_t, ino_t>;  // names the memory file within the system
  static std::shared_ptr<SharedMapping> map(UniqueFd fd, std::size_t size, FileId id);
  SharedMapping(UniqueFd fd, void* data, std::size_t size)
      : fd_(std::move(fd)), data_(data), size_(size) {}
  UniqueFd fd_;
  void* data_;
  std::size_t size_;
};

}  // namespace mp::detail
