// src/shared_mapping.cpp — memfd-backed shared memory (see shared_mapping.hpp).
#include "mp/detail/shared_mapping.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <pthread.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "mp/errors.hpp"

namespace mp::detail {

namespace {

// This process's mappings by memory file (device, inode), as weak entries: an entry whose
// mapping is gone is only dead weight (the file's inode may even be reused: a lookup that
// finds the entry expired maps anew), swept out whenever the map has doubled. A mapping's
// destructor never takes the lock: it could run with the lock held (a mapping that fails
// to enter the map), and a recursive mutex cannot be handed to a fork child.
// Never destroyed (a handle in a static may outlive any other static), and built on first
// use (one may be created before this file's statics).
struct Registry {
  std::mutex mu;  // held across fork (atfork), so a child finds it free
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<SharedMapping>> mappings;
  std::size_t sweep_at = 64;
};
Registry& registry() {
  static Registry* const r = [] {
    auto* created = new Registry;
    ::pthread_atfork([] { registry().mu.lock(); }, [] { registry().mu.unlock(); }, [] { registry().mu.unlock(); });
    return created;
  }();
  return *r;
}

}  // namespace

// Maps `fd` and enters the mapping in the registry (whose lock the caller holds).
std::shared_ptr<SharedMapping> SharedMapping::map(UniqueFd fd, std::size_t size, FileId id) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) throw_os_error("mmap", errno);
  std::shared_ptr<SharedMapping> mapping(new SharedMapping(std::move(fd), p, size));
  Registry& reg = registry();
  if (reg.mappings.size() >= reg.sweep_at) {
    std::erase_if(reg.mappings, [](const auto& entry) { return entry.second.expired(); });
    reg.sweep_at = std::max<std::size_t>(64, 2 * reg.mappings.size());
  }
  reg.mappings[id] = mapping;
  return mapping;
}

std::shared_ptr<SharedMapping> SharedMapping::create(std::size_t size, const char* name) {
  UniqueFd fd(static_cast<int>(sys("memfd_create", [&] { return ::memfd_create(name, MFD_CLOEXEC); })));
  sys("ftruncate", [&] { return ::ftruncate(fd.get(), static_cast<off_t>(size)); });
  struct stat st {};
  sys("fstat", [&] { return ::fstat(fd.get(), &st); });
  std::lock_guard lock(registry().mu);
  return map(std::move(fd), size, {st.st_dev, st.st_ino});
}

std::shared_ptr<SharedMapping> SharedMapping::attach(int fd_in) {
  struct stat st {};
  sys("fstat", [&] { return ::fstat(fd_in, &st); });
  const FileId id{st.st_dev, st.st_ino};
  Registry& reg = registry();
  std::lock_guard lock(reg.mu);
  if (auto it = reg.mappings.find(id); it != reg.mappings.end())
    if (auto mapping = it->second.lock()) return mapping;
  if (st.st_size <= 0) throw SerializationError("a shared object's memory is empty or not a memory file");
  UniqueFd fd(sys("fcntl", [&] { return ::fcntl(fd_in, F_DUPFD_CLOEXEC, 0); }));
  return map(std::move(fd), static_cast<std::size_t>(st.st_size), id);
}

SharedMapping::~SharedMapping() {
  if (data_) ::munmap(data_, size_);
}

void SharedMapping::save(OutputArchive& ar, const char* what) const {
  auto* fds = ar.fds();
  if (!fds) {
    throw ValueError(std::string("a ") + what +
                     " can only travel to a child process (as a Process argument) or over a Unix-socket "
                     "Connection: its shared memory goes along as a descriptor");
  }
  const auto index = static_cast<std::uint32_t>(fds->size());
  fds->push_back(fd_.get());
  ar(index);
}

std::shared_ptr<SharedMapping> SharedMapping::load(InputArchive& ar) {
  std::uint32_t index = 0;
  ar(index);
  if (index >= ar.fds().size()) throw SerializationError("a shared object in the message has no descriptor");
  return attach(ar.fds()[index]);
}

}  // namespace mp::detail
