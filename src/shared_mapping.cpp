// src/shared_mapping.cpp — memfd-backed shared memory (see shared_mapping.hpp).
#include "mp/detail/shared_mapping.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <string>

#include "mp/errors.hpp"

namespace mp::detail {

std::shared_ptr<SharedMapping> SharedMapping::create(std::size_t size, const char* name) {
  UniqueFd fd(static_cast<int>(sys("memfd_create", [&] { return ::memfd_create(name, MFD_CLOEXEC); })));
  sys("ftruncate", [&] { return ::ftruncate(fd.get(), static_cast<off_t>(size)); });
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) throw_os_error("mmap", errno);
  return std::shared_ptr<SharedMapping>(new SharedMapping(std::move(fd), p, size));
}

std::shared_ptr<SharedMapping> SharedMapping::attach(int fd_in) {
  UniqueFd fd(sys("fcntl", [&] { return ::fcntl(fd_in, F_DUPFD_CLOEXEC, 0); }));
  struct stat st {};
  sys("fstat", [&] { return ::fstat(fd.get(), &st); });
  if (st.st_size <= 0) throw SerializationError("a shared object's memory is empty or not a memory file");
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) throw_os_error("mmap", errno);
  return std::shared_ptr<SharedMapping>(new SharedMapping(std::move(fd), p, size));
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
