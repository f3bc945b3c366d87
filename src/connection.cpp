// src/connection.cpp — framing over a stream descriptor (CPython's connection.py).
//
// Frame: 8-byte header, little-endian u64 = payload length (low 56 bits) | number of
// descriptors sent with it (high 8 bits); then the payload. Descriptors travel as
// SCM_RIGHTS with the frame's first bytes and wait in pending_fds_ until their frame is
// read.
//
// Reading is buffered: one read() usually brings in several small frames, so a stream
// of small messages costs one system call per batch, not two per message. A frame
// larger than the buffer is read straight into its own vector.
//
// Hazards: a header may lie. Its length is checked against max_message_size() before
// any allocation; a frame cut short by EOF or a descriptor count that does not arrive
// breaks the connection with a clear error, and nothing after it is trusted.
#include "mp/connection.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>

#include "reduction.hpp"

namespace mp {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::uint64_t kLengthMask = (std::uint64_t{1} << 56) - 1;
constexpr std::size_t kMaxFdsPerFrame = 250;
std::atomic<std::size_t> g_default_max{std::size_t{256} << 20};

bool is_socket(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

// Descriptors (SCM_RIGHTS) travel over Unix-domain sockets only.
bool is_unix_socket(int fd) {
  int domain = 0;
  socklen_t len = sizeof domain;
  return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX;
}

timespec to_timespec(std::chrono::nanoseconds ns) {
  if (ns.count() < 0) ns = std::chrono::nanoseconds(0);
  return {static_cast<time_t>(ns.count() / 1'000'000'000), static_cast<long>(ns.count() % 1'000'000'000)};
}

// A peer on this machine (a Unix socket) usually answers within microseconds, while a
// sleeping reader's wake-up costs ~10 us a hop here (a VM: the waker's IPI and the idle
// CPU's way back). So a reader whose data is not there yet tries again for up to
// kRecvSpin, yielding its CPU between tries, before it sleeps in the kernel: with the
// peer on another CPU a round trip takes ~10 us instead of ~30 (measured in C over a
// socket pair), and with the peer on the same CPU sched_yield() lets it run, so that
// case costs what sleeping did. Bounded: a reader waits without burning CPU after it.
// (A TCP peer is farther than the spin: its readers sleep at once.)
constexpr auto kRecvSpin = std::chrono::microseconds(50);

template <class Receive>
ssize_t receive_spinning(Receive&& receive) {
  ssize_t n = receive(MSG_DONTWAIT);
  if (n != -EAGAIN) return n;
  const auto until = std::chrono::steady_clock::now() + kRecvSpin;
  do {
    ::sched_yield();
    n = receive(MSG_DONTWAIT);
    if (n != -EAGAIN) return n;
  } while (std::chrono::steady_clock::now() < until);
  return receive(0);
}

}  // namespace

std::size_t Connection::default_max_message_size() noexcept { return g_default_max.load(); }
void Connection::set_default_max_message_size(std::size_t n) noexcept { g_default_max = n; }

Connection::Connection(int fd, bool readable, bool writable)
    : fd_(fd),
      readable_(readable),
      writable_(writable),
      is_socket_(is_socket(fd)),
      passes_fds_(is_socket_ && is_unix_socket(fd)) {
  if (fd < 0) throw ValueError("Connection: invalid file descriptor");
  if (!readable && !writable) throw ValueError("Connection: at least one of readable or writable must be true");
}

Connection::Connection(Connection&& o) noexcept
    : fd_(std::move(o.fd_)),
      readable_(o.readable_),
      writable_(o.writable_),
      is_socket_(o.is_socket_),
      passes_fds_(o.passes_fds_),
      broken_(o.broken_),
      broken_why_(std::move(o.broken_why_)),
      max_message_size_(o.max_message_size_),
      buf_(std::move(o.buf_)),
      begin_(o.begin_),
      end_(o.end_),
      pending_fds_(std::move(o.pending_fds_)),
      held_(std::move(o.held_)) {
  o.pending_fds_.clear();
  o.begin_ = o.end_ = 0;
}

Connection& Connection::operator=(Connection&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    readable_ = o.readable_;
    writable_ = o.writable_;
    is_socket_ = o.is_socket_;
    passes_fds_ = o.passes_fds_;
    broken_ = o.broken_;
    broken_why_ = std::move(o.broken_why_);
    max_message_size_ = o.max_message_size_;
    buf_ = std::move(o.buf_);
    begin_ = o.begin_;
    end_ = o.end_;
    pending_fds_ = std::move(o.pending_fds_);
    held_ = std::move(o.held_);
    o.pending_fds_.clear();
    o.begin_ = o.end_ = 0;
  }
  return *this;
}

Connection::~Connection() { close(); }

void Connection::close() noexcept {
  for (int fd : pending_fds_) ::close(fd);
  pending_fds_.clear();
  fd_.reset();
  held_.reset();
  begin_ = end_ = 0;
}

int Connection::fileno() const {
  check_open("fileno");
  return fd_.get();
}

void Connection::check_open(const char* what) const {
  if (!fd_) throw ValueError(std::string("Connection::") + what + ": the connection is closed");
  if (broken_) throw ValueError(std::string("Connection::") + what + ": the connection is broken: " + broken_why_);
}

void Connection::check_readable(const char* what) const {
  check_open(what);
  if (!readable_) throw ValueError(std::string("Connection::") + what + ": this end is write-only");
}

void Connection::check_writable(const char* what) const {
  check_open(what);
  if (!writable_) throw ValueError(std::string("Connection::") + what + ": this end is read-only");
}

void Connection::broken(const std::string& why) {
  broken_ = true;
  broken_why_ = why;
  throw SerializationError(why);
}

Connection Connection::duplicate() const {
  check_open("duplicate");
  int fd = detail::sys("fcntl", [&] { return ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0); });
  return Connection(fd, readable_, writable_);
}

// ---- sending ---------------------------------------------------------------------

void Connection::send_frame(std::vector<std::byte>& frame, std::span<const int> fds) {
  check_writable("send");
  const std::uint64_t length = frame.size() - kHeaderSize;
  if (fds.size() > kMaxFdsPerFrame) throw ValueError("Connection::send: too many descriptors in one message");
  const std::uint64_t header = length | (static_cast<std::uint64_t>(fds.size()) << 56);
  std::memcpy(frame.data(), &header, sizeof header);

  const std::byte* p = frame.data();
  std::size_t left = frame.size();
  bool fds_sent = fds.empty();
  while (left) {
    ssize_t n;
    if (is_socket_) {
      iovec iov{const_cast<std::byte*>(p), left};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerFrame)];
      if (!fds_sent) detail::attach_fds(msg, control, fds);
      n = detail::sys_nothrow([&] { return ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL); });
    } else {
      n = detail::sys_nothrow([&] { return ::write(fd_.get(), p, left); });
    }
    if (n < 0) {
      if (n == -EPIPE || n == -ECONNRESET) throw EOFError("Connection::send: the other end is closed (broken pipe)");
      detail::throw_os_error(is_socket_ ? "sendmsg" : "write", static_cast<int>(-n));
    }
    fds_sent = true;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

void Connection::send_bytes(std::span<const std::byte> buf, std::size_t offset, std::optional<std::size_t> size) {
  if (offset > buf.size()) throw ValueError("Connection::send_bytes: offset is past the end of the buffer");
  const std::size_t n = size.value_or(buf.size() - offset);
  if (n > buf.size() - offset) throw ValueError("Connection::send_bytes: offset + size is past the end of the buffer");
  check_writable("send_bytes");
  const std::uint64_t header = n;
  // Small messages: one write of header + payload. Large ones: writev, no copy.
  iovec iov[2] = {{const_cast<std::uint64_t*>(&header), kHeaderSize},
                  {const_cast<std::byte*>(buf.data() + offset), n}};
  std::size_t left = kHeaderSize + n;
  int first = 0;
  while (left) {
    ssize_t w;
    if (is_socket_) {  // MSG_NOSIGNAL: a closed peer is EPIPE, never a SIGPIPE
      msghdr msg{};
      msg.msg_iov = iov + first;
      msg.msg_iovlen = static_cast<std::size_t>(2 - first);
      w = detail::sys_nothrow([&] { return ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL); });
    } else {
      w = detail::sys_nothrow([&] { return ::writev(fd_.get(), iov + first, 2 - first); });
    }
    if (w < 0) {
      if (w == -EPIPE || w == -ECONNRESET) throw EOFError("Connection::send_bytes: the other end is closed (broken pipe)");
      detail::throw_os_error(is_socket_ ? "sendmsg" : "writev", static_cast<int>(-w));
    }
    left -= static_cast<std::size_t>(w);
    auto done = static_cast<std::size_t>(w);
    while (done && first < 2) {
      if (done >= iov[first].iov_len) {
        done -= iov[first].iov_len;
        iov[first].iov_len = 0;
        ++first;
      } else {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + done;
        iov[first].iov_len -= done;
        done = 0;
      }
    }
  }
}

// ---- receiving -------------------------------------------------------------------

// Reads at least `want` more bytes into buf_ (compacting or growing it). Returns the
// number read; 0 means EOF before any. Descriptors that arrive go to pending_fds_.
std::size_t Connection::fill(std::size_t want) {
  if (begin_ == end_) begin_ = end_ = 0;
  if (buf_.size() - end_ < want) {
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() - end_ < want) buf_.resize(std::max(end_ + want, kReadChunk));
  }
  std::size_t got = 0;
  while (got < want) {
    ssize_t n;
    if (is_socket_) {
      iovec iov{buf_.data() + end_, buf_.size() - end_};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerFrame)];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      auto receive = [&](int flags) {
        msg.msg_controllen = sizeof control;
        return detail::sys_nothrow([&] { return ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC | flags); });
      };
      n = passes_fds_ ? receive_spinning(receive) : receive(0);
      if (n >= 0) detail::collect_fds(msg, pending_fds_);
    } else {
      n = detail::sys_nothrow([&] { return ::read(fd_.get(), buf_.data() + end_, buf_.size() - end_); });
    }
    if (n == -ECONNRESET) n = 0;
    if (n < 0) detail::throw_os_error(is_socket_ ? "recvmsg" : "read", static_cast<int>(-n));
    if (n == 0) return got;
    end_ += static_cast<std::size_t>(n);
    got += static_cast<std::size_t>(n);
  }
  return got;
}

Connection::Frame Connection::recv_frame(std::span<std::byte> into) {
  check_readable("recv");
  Frame f;
  if (held_) {
    f.owned = std::move(*held_);
    held_.reset();
    f.payload = f.owned;
    return f;
  }
  const std::size_t have = end_ - begin_;
  if (have < kHeaderSize) {
    std::size_t got = fill(kHeaderSize - have);
    if (have + got == 0) throw EOFError("Connection::recv: the other end is closed and nothing is left to read");
    if (have + got < kHeaderSize) broken("truncated frame: the other end closed in the middle of a header");
  }
  std::uint64_t header;
  std::memcpy(&header, buf_.data() + begin_, sizeof header);
  const std::uint64_t length = header & kLengthMask;
  const std::size_t nfds = static_cast<std::size_t>(header >> 56);
  if (length > max_message_size_) {
    broken("a frame header announces " + std::to_string(length) + " bytes, more than this connection's maximum of " +
           std::to_string(max_message_size_) + " (set_max_message_size)");
  }
  if (nfds > kMaxFdsPerFrame) broken("corrupt frame header: descriptor count out of range");
  begin_ += kHeaderSize;

  const std::size_t in_buffer = end_ - begin_;
  if (length <= std::max(buf_.size(), kReadChunk)) {
    if (in_buffer < length) {
      std::size_t need = length - in_buffer;
      if (fill(need) < need) broken("truncated frame: the other end closed in the middle of a message");
    }
    f.payload = std::span<const std::byte>(buf_.data() + begin_, length);
    begin_ += length;
  } else {
    // Large: read straight into the caller's buffer when it fits (recv_bytes_into: no
    // copy, no fresh memory to fault in), else into its own vector. What is already
    // buffered goes first.
    std::byte* dst = nullptr;
    if (nfds == 0 && into.size() >= length) {
      dst = into.data();
    } else {
      f.owned.resize(length);
      dst = f.owned.data();
    }
    std::memcpy(dst, buf_.data() + begin_, in_buffer);
    begin_ = end_ = 0;
    std::size_t at = in_buffer;
    while (at < length) {
      ssize_t n = detail::sys_nothrow([&] { return ::read(fd_.get(), dst + at, length - at); });
      if (n == -ECONNRESET) n = 0;
      if (n < 0) detail::throw_os_error("read", static_cast<int>(-n));
      if (n == 0) broken("truncated frame: the other end closed in the middle of a message");
      at += static_cast<std::size_t>(n);
    }
    f.payload = std::span<const std::byte>(dst, length);
  }
  if (nfds) {
    if (pending_fds_.size() < nfds) broken("corrupt frame: announced descriptors did not arrive");
    f.fds.assign(pending_fds_.begin(), pending_fds_.begin() + static_cast<std::ptrdiff_t>(nfds));
    pending_fds_.erase(pending_fds_.begin(), pending_fds_.begin() + static_cast<std::ptrdiff_t>(nfds));
  }
  return f;
}

// Descriptors that came with a frame are borrowed by decode (a handle that keeps one
// duplicates it); they are closed here whatever happened.
void Connection::release_frame(Frame& f) noexcept {
  for (int fd : f.fds) ::close(fd);
  f.fds.clear();
}

std::vector<std::byte> Connection::recv_bytes(std::optional<std::size_t> maxlength) {
  Frame f = recv_frame();
  release_frame(f);
  if (maxlength && f.payload.size() > *maxlength) {
    broken_ = true;
    broken_why_ = "a message was longer than recv_bytes' maxlength";
    throw ValueError("Connection::recv_bytes: the message (" + std::to_string(f.payload.size()) +
                     " bytes) is longer than maxlength (" + std::to_string(*maxlength) + ")");
  }
  if (!f.owned.empty() && f.payload.data() == f.owned.data()) return std::move(f.owned);
  return std::vector<std::byte>(f.payload.begin(), f.payload.end());
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buf, std::size_t offset) {
  if (offset > buf.size()) throw ValueError("Connection::recv_bytes_into: offset is past the end of the buffer");
  Frame f = recv_frame(buf.subspan(offset));
  release_frame(f);
  const std::size_t n = f.payload.size();
  if (n > buf.size() - offset) {
    held_ = !f.owned.empty() && f.payload.data() == f.owned.data()
                ? std::move(f.owned)
                : std::vector<std::byte>(f.payload.begin(), f.payload.end());
    throw BufferTooShort("Connection::recv_bytes_into: the message (" + std::to_string(n) +
                         " bytes) does not fit in the buffer (" + std::to_string(buf.size() - offset) +
                         " bytes from offset); it stays readable");
  }
  if (n && f.payload.data() != buf.data() + offset) std::memcpy(buf.data() + offset, f.payload.data(), n);
  return n;
}

bool Connection::poll_for(std::optional<std::chrono::nanoseconds> timeout) {
  check_readable("poll");
  if (held_) return true;
  const std::size_t have = end_ - begin_;
  if (have >= kHeaderSize) {
    std::uint64_t header;
    std::memcpy(&header, buf_.data() + begin_, sizeof header);
    if (have - kHeaderSize >= (header & kLengthMask)) return true;
  }
  pollfd pfd{fd_.get(), POLLIN, 0};
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout) {
    ts = to_timespec(*timeout);
    tsp = &ts;
  }
  int r = detail::sys("ppoll", [&] { return ::ppoll(&pfd, 1, tsp, nullptr); });
  return r > 0;
}

// ---- handles inside messages -------------------------------------------------------

void Connection::save(detail::OutputArchive& ar) const {
  check_open("send as a handle");
  auto* fds = ar.fds();
  if (!fds) {
    throw ValueError(
        "a Connection can only travel to a child process or over a Unix-socket Connection (its descriptor "
        "must be passed along)");
  }
  const auto index = static_cast<std::uint32_t>(fds->size());
  fds->push_back(fd_.get());
  ar(index, readable_, writable_);
}

void Connection::load(detail::InputArchive& ar) {
  std::uint32_t index = 0;
  bool readable = false, writable = false;
  ar(index, readable, writable);
  auto fds = ar.fds();
  if (index >= fds.size()) throw SerializationError("a Connection in the message has no descriptor");
  if (!readable && !writable) throw SerializationError("corrupt Connection: neither readable nor writable");
  int fd = detail::sys("fcntl", [&] { return ::fcntl(fds[index], F_DUPFD_CLOEXEC, 0); });
  *this = Connection(fd, readable, writable);
}

std::pair<Connection, Connection> Pipe(bool duplex) {
  int sv[2];
  detail::sys("socketpair", [&] { return ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv); });
  if (duplex) return {Connection(sv[0], true, true), Connection(sv[1], true, true)};
  // Simplex: still a socket pair (so that handles can travel and a write to a closed
  // reader is EPIPE, not SIGPIPE), each end shut in the direction it does not use.
  ::shutdown(sv[0], SHUT_WR);
  ::shutdown(sv[1], SHUT_RD);
  return {Connection(sv[0], true, false), Connection(sv[1], false, true)};
}

namespace connection {
namespace {

template <class Ready>
std::vector<std::size_t> wait_fds(const std::vector<int>& fds, std::optional<std::chrono::nanoseconds> timeout,
                                  Ready&& already_ready) {
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < fds.size(); ++i)
    if (already_ready(i)) ready.push_back(i);
  if (!ready.empty()) return ready;
  std::vector<pollfd> pfds;
  for (int fd : fds) pfds.push_back({fd, POLLIN, 0});
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout) {
    ts = to_timespec(*timeout);
    tsp = &ts;
  }
  int r = detail::sys("ppoll", [&] { return ::ppoll(pfds.data(), pfds.size(), tsp, nullptr); });
  if (r <= 0) return ready;
  for (std::size_t i = 0; i < pfds.size(); ++i)
    if (pfds[i].revents) ready.push_back(i);
  return ready;
}

}  // namespace

std::vector<Connection*> wait(std::span<Connection* const> objects, std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<int> fds;
  for (Connection* c : objects) fds.push_back(c->fileno());
  auto idx = wait_fds(fds, timeout, [&](std::size_t i) { return objects[i]->poll(); });
  std::vector<Connection*> out;
  for (auto i : idx) out.push_back(objects[i]);
  return out;
}

std::vector<int> wait(std::span<const int> sentinels, std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<int> fds(sentinels.begin(), sentinels.end());
  auto idx = wait_fds(fds, timeout, [](std::size_t) { return false; });
  std::vector<int> out;
  for (auto i : idx) out.push_back(sentinels[i]);
  return out;
}

}  // namespace connection
}  // namespace mp
