// src/shared_memory.cpp — SharedMemory and the non-template half of ShareableList
// (shared_memory.hpp). Segments are POSIX shared memory (shm_open: /dev/shm/NAME),
// created O_EXCL with mode 0600 as CPython does; tracked ones are registered with the
// resource tracker (resource_tracker.cpp) right after they exist, and unregistered
// right before they are unlinked.
#include "mp/shared_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>

#include "mp/detail/sys.hpp"
#include "resource_tracker.hpp"

namespace mp {
namespace detail {

// Programs that link SharedMemory start their tracker before their first child.
[[maybe_unused]] const bool g_shared_memory_tracked = (resource_tracker::want(), true);

class SharedMemoryState {
 public:
  SharedMemoryState(std::string name, UniqueFd fd, void* data, std::size_t size)
      : name_(std::move(name)), fd_(std::move(fd)), data_(data), size_(size) {}
  SharedMemoryState(const SharedMemoryState&) = delete;
  SharedMemoryState& operator=(const SharedMemoryState&) = delete;
  ~SharedMemoryState() { close(); }

  const std::string& name() const noexcept { return name_; }
  std::size_t size() const noexcept { return size_; }
  bool closed() const noexcept {
    std::lock_guard g(mu_);
    return data_ == nullptr;
  }
  std::span<std::byte> buf() const {
    std::lock_guard g(mu_);
    if (!data_) throw ValueError("SharedMemory '" + name_ + "' is closed: its buffer is gone");
    return {static_cast<std::byte*>(data_), size_};
  }
  int fd_for_save() const {
    std::lock_guard g(mu_);
    if (!data_) throw ValueError("SharedMemory '" + name_ + "' is closed: it cannot be sent");
    return fd_.get();
  }
  void close() noexcept {
    std::lock_guard g(mu_);
    if (data_) ::munmap(data_, size_);
    data_ = nullptr;
    fd_.reset();
  }

 private:
  mutable std::mutex mu_;
  std::string name_;
  UniqueFd fd_;
  void* data_;
  std::size_t size_;
};

namespace {

// Python's names have no leading '/' (it is added for shm_open); one is accepted.
std::string normalize_name(std::string_view name) {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (name.size() > 255) throw ValueError("SharedMemory: a name has at most 255 characters");
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    throw ValueError("SharedMemory: the name '" + std::string(name) + "' holds a '/' or a NUL after its start");
  }
  return std::string(name);
}

// CPython's: "psm_" + 8 random hex digits.
std::string random_name() {
  unsigned char bytes[4];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const auto n = sys("getrandom", [&] { return ::getrandom(bytes + got, sizeof bytes - got, 0); });
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name = "psm_";
  for (unsigned char b : bytes) {
    name += kHex[b >> 4];
    name += kHex[b & 15];
  }
  return name;
}

// shm_open, with the errors Python raises. Returns -1 only for EEXIST when
// `eexist_ok` (the caller picks another generated name).
int open_segment(const std::string& name, int flags, bool eexist_ok = false) {
  const std::string path = "/" + name;
  const int fd = sys_nothrow([&] { return ::shm_open(path.c_str(), flags | O_CLOEXEC, 0600); });
  if (fd >= 0) return fd;
  if (fd == -ENOENT) throw FileNotFoundError("No shared memory segment named '" + name + "'");
  if (fd == -EEXIST) {
    if (eexist_ok) return -1;
    throw FileExistsError("A shared memory segment named '" + name + "' already exists");
  }
  throw_os_error(("shm_open '" + name + "'").c_str(), -fd);
}

void* map_segment(int fd, std::size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw_os_error("mmap", errno);
  return p;
}

// Maps an open segment at its actual size (Python's attach).
std::shared_ptr<SharedMemoryState> attach_fd(std::string name, UniqueFd fd) {
  struct stat st {};
  sys("fstat", [&] { return ::fstat(fd.get(), &st); });
  if (st.st_size <= 0) throw ValueError("SharedMemory '" + name + "' is empty: there is nothing to map");
  const auto size = static_cast<std::size_t>(st.st_size);
  void* data = map_segment(fd.get(), size);
  return std::make_shared<SharedMemoryState>(std::move(name), std::move(fd), data, size);
}

std::shared_ptr<SharedMemoryState> attach(std::string_view raw_name) {
  std::string name = normalize_name(raw_name);
  if (name.empty()) throw ValueError("SharedMemory: the name can only be empty when creating (create = true)");
  UniqueFd fd(open_segment(name, O_RDWR));
  return attach_fd(std::move(name), std::move(fd));
}

std::shared_ptr<SharedMemoryState> create(const SharedMemoryOptions& options) {
  if (options.size == 0) {
    throw ValueError("SharedMemory: 'size' must be a positive number different from zero when creating");
  }
  std::string name = normalize_name(options.name);
  UniqueFd fd;
  if (name.empty()) {
    for (int attempt = 0; !fd; ++attempt) {
      if (attempt == 100) throw FileExistsError("SharedMemory: no free generated name after 100 attempts");
      name = random_name();
      fd.reset(open_segment(name, O_RDWR | O_CREAT | O_EXCL, /*eexist_ok=*/true));
    }
  } else {
    fd.reset(open_segment(name, O_RDWR | O_CREAT | O_EXCL));
  }
  // From here the name exists: every failure removes it again.
  try {
    sys("ftruncate", [&] { return ::ftruncate(fd.get(), static_cast<off_t>(options.size)); });
    void* data = map_segment(fd.get(), options.size);
    auto state = std::make_shared<SharedMemoryState>(name, std::move(fd), data, options.size);
    if (options.track) resource_tracker::register_segment(name);
    return state;
  } catch (...) {
    ::shm_unlink(("/" + name).c_str());
    throw;
  }
}

}  // namespace
}  // namespace detail

SharedMemory::SharedMemory(SharedMemoryOptions options)
    : state_(options.create ? detail::create(options) : detail::attach(options.name)) {}

SharedMemory::SharedMemory(detail::for_load_t) noexcept {}

detail::SharedMemoryState& SharedMemory::state() const {
  if (!state_) throw ValueError("this SharedMemory handle is empty (moved from)");
  return *state_;
}

std::span<std::byte> SharedMemory::buf() const { return state().buf(); }
const std::string& SharedMemory::name() const { return state().name(); }
std::size_t SharedMemory::size() const { return state().size(); }
bool SharedMemory::closed() const noexcept { return !state_ || state_->closed(); }

void SharedMemory::close() noexcept {
  if (state_) state_->close();
}

void SharedMemory::unlink() {
  const std::string& name = state().name();
  // Forget first: a process of the tree that re-creates the name right after the
  // unlink must not have its registration erased by this one (resource_tracker.cpp).
  detail::resource_tracker::unregister_segment(name);
  const std::string path = "/" + name;
  const int r = detail::sys_nothrow([&] { return ::shm_unlink(path.c_str()); });
  if (r == -ENOENT) throw FileNotFoundError("No shared memory segment named '" + name + "' (already unlinked?)");
  if (r < 0) detail::throw_os_error(("shm_unlink '" + name + "'").c_str(), -r);
}

void SharedMemory::save(detail::OutputArchive& ar) const {
  const int fd = state().fd_for_save();
  ar(state().name());
  auto* fds = ar.fds();
  ar(fds != nullptr);
  if (fds) {
    ar(static_cast<std::uint32_t>(fds->size()));
    fds->push_back(fd);
  }
}

void SharedMemory::load(detail::InputArchive& ar) {
  std::string name;
  bool has_fd = false;
  ar(name, has_fd);
  try {
    name = detail::normalize_name(name);
  } catch (const ValueError& e) {
    throw SerializationError(std::string("corrupt message: ") + e.what());
  }
  if (name.empty()) throw SerializationError("corrupt message: a SharedMemory without a name");
  if (has_fd) {
    std::uint32_t index = 0;
    ar(index);
    if (index >= ar.fds().size()) throw SerializationError("a SharedMemory in the message has no descriptor");
    detail::UniqueFd fd(detail::sys("fcntl", [&] { return ::fcntl(ar.fds()[index], F_DUPFD_CLOEXEC, 0); }));
    state_ = detail::attach_fd(std::move(name), std::move(fd));
  } else {
    state_ = detail::attach(name);
  }
}

// ---- ShareableList's header ---------------------------------------------------------

namespace detail {
namespace {

// [u32 magic][u32 version][u64 count] then one entry per slot, then the data, each
// slot 16-aligned (arithmetic: the value; string/bytes: a u64 length, then capacity).
struct SlHeader {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint64_t count;
};
struct SlEntry {
  std::uint32_t code;
  std::uint32_t reserved;
  std::uint64_t offset;
  std::uint64_t capacity;
};
constexpr std::uint32_t kSlVersion = 1;
constexpr std::size_t kAlign = 16;

constexpr std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
bool is_arith(std::uint32_t code) { return (code >> 16) <= 4; }
std::size_t arith_size(std::uint32_t code) { return code & 0xffff; }
std::size_t data_start(std::size_t count) { return align_up(sizeof(SlHeader) + count * sizeof(SlEntry)); }

std::string describe(std::uint32_t code) {
  const std::string bytes = std::to_string(arith_size(code));
  switch (code >> 16) {
    case 1:
      return "a bool";
    case 2:
      return "a signed integer of " + bytes + " bytes";
    case 3:
      return "an unsigned integer of " + bytes + " bytes";
    case 4:
      return "a floating-point number of " + bytes + " bytes";
    case 5:
      return "a string";
    case 6:
      return "bytes";
  }
  return "an unknown type (code " + std::to_string(code) + ")";
}

}  // namespace

std::size_t SlFormat::plan(std::span<const std::uint32_t> codes, std::span<const std::size_t> capacities,
                           std::span<SlLayout> out) {
  std::size_t at = data_start(codes.size());
  for (std::size_t i = 0; i < codes.size(); ++i) {
    out[i].offset = at;
    out[i].capacity = is_arith(codes[i]) ? 0 : capacities[i];
    at += align_up(is_arith(codes[i]) ? arith_size(codes[i]) : sizeof(std::uint64_t) + capacities[i]);
  }
  return at;
}

void SlFormat::write_header(std::span<std::byte> seg, std::span<const std::uint32_t> codes,
                            std::span<const SlLayout> layout) {
  SlHeader h{0, kSlVersion, codes.size()};
  std::memcpy(seg.data(), &h, sizeof h);
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const SlEntry e{codes[i], 0, layout[i].offset, layout[i].capacity};
    std::memcpy(seg.data() + sizeof h + i * sizeof e, &e, sizeof e);
  }
  std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(seg.data()))
      .store(kMagic, std::memory_order_release);
}

void SlFormat::check(std::span<const std::byte> seg, std::span<const std::uint32_t> codes, std::span<SlLayout> out,
                     const std::string& name, std::span<const std::string_view> type_names) {
  const std::string what = "ShareableList '" + name + "'";
  if (seg.size() < sizeof(SlHeader))
    throw SerializationError(what + ": the segment is too small to be a ShareableList");
  const std::uint32_t magic =
      std::atomic_ref<std::uint32_t>(*const_cast<std::uint32_t*>(reinterpret_cast<const std::uint32_t*>(seg.data())))
          .load(std::memory_order_acquire);
  if (magic != kMagic) throw SerializationError(what + ": the segment does not hold a ShareableList");
  SlHeader h;
  std::memcpy(&h, seg.data(), sizeof h);
  if (h.version != kSlVersion) {
    throw SerializationError(what + ": written by another version of mp (layout " + std::to_string(h.version) + ")");
  }
  if (h.count != codes.size()) {
    throw SerializationError(what + " holds " + std::to_string(h.count) + " items, this ShareableList type has " +
                             std::to_string(codes.size()));
  }
  if (seg.size() < data_start(codes.size())) throw SerializationError(what + ": corrupt header (truncated)");
  for (std::size_t i = 0; i < codes.size(); ++i) {
    SlEntry e;
    std::memcpy(&e, seg.data() + sizeof h + i * sizeof e, sizeof e);
    if (e.code != codes[i]) {
      throw SerializationError(what + ": item " + std::to_string(i) + " is " + describe(e.code) + ", not " +
                               std::string(type_names[i]) + " (" + describe(codes[i]) + ")");
    }
    const std::uint64_t need = is_arith(e.code) ? arith_size(e.code) : sizeof(std::uint64_t) + e.capacity;
    if (e.offset % kAlign != 0 || e.offset < data_start(codes.size()) || e.offset > seg.size() ||
        need > seg.size() - e.offset) {
      throw SerializationError(what + ": corrupt header (item " + std::to_string(i) + " lies outside the segment)");
    }
    out[i].offset = static_cast<std::size_t>(e.offset);
    out[i].capacity = is_arith(e.code) ? 0 : static_cast<std::size_t>(e.capacity);
  }
}

std::size_t SlFormat::stored_length(const std::byte* at, std::size_t capacity, std::size_t index) {
  const std::uint64_t n =
      std::atomic_ref<std::uint64_t>(*const_cast<std::uint64_t*>(reinterpret_cast<const std::uint64_t*>(at)))
          .load(std::memory_order_acquire);
  if (n > capacity) {
    throw SerializationError("ShareableList: item " + std::to_string(index) + " claims " + std::to_string(n) +
                             " bytes in a slot of " + std::to_string(capacity) + " (corrupt)");
  }
  return static_cast<std::size_t>(n);
}

}  // namespace detail
}  // namespace mp
