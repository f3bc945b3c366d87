// src/listener.cpp — Listener, Client and the authkey handshake (CPython's
// multiprocessing/connection.py: SocketListener, SocketClient, deliver_challenge,
// answer_challenge).
//
// Design. A Listener owns a non-blocking listening socket; accept() polls it (so that
// accept(timeout) is exact), takes one connection, and runs the handshake on the raw
// descriptor before a Connection exists. Client() connects without blocking past its
// deadline and runs the other side. The handshake messages are ordinary mp frames
// (connection.cpp: an 8-byte header holding the payload length in its low 56 bits and
// a descriptor count in its high 8, then the payload), so a peer can speak it with
// Connection::send_bytes / recv_bytes — but they are read and written here, on the
// descriptor, because the handshake needs what Connection does not offer:
//   - a deadline kept across every read and write (poll before each, never a blocking
//     call): Connection::recv_bytes, once a frame has begun, waits for all of it, so a
//     peer sending one byte at a time could stretch a handshake without bound;
//   - reads of exactly one frame: nothing that follows the handshake (the first
//     messages of an eager peer) is consumed here, so the Connection starts clean;
//   - MSG_NOSIGNAL on every write: a peer that hangs up mid-handshake is an error, not
//     a SIGPIPE that kills the listener.
//
// Hazards. Everything an unauthenticated peer sends is hostile: a frame is at most
// 256 bytes, carries no descriptors (any that arrive are dropped by the kernel, since
// recv() takes no control data), and is compared, never parsed beyond prefixes; it is
// never echoed into an error message. Every failure closes the connection under
// handshake (UniqueFd) and becomes one mp::AuthenticationError, so a server loop needs
// one catch. The HMAC comparison is constant-time (sodium_memcmp). A stale Unix socket
// file is detected by connecting to it (ECONNREFUSED = nobody listens): that probe is
// a connection a live listener will see and drop.
#include "mp/listener.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ostream>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

namespace mp {
namespace detail {

/// HMAC-SHA256(key, message), any key length (RFC 2104, as Python's hmac.new).
std::array<unsigned char, crypto_auth_hmacsha256_BYTES> hmac_sha256(std::string_view key,
                                                                    std::span<const unsigned char> message);

std::array<unsigned char, crypto_auth_hmacsha256_BYTES> hmac_sha256(std::string_view key,
                                                                    std::span<const unsigned char> message) {
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&state, message.data(), message.size());
  std::array<unsigned char, crypto_auth_hmacsha256_BYTES> mac{};
  crypto_auth_hmacsha256_final(&state, mac.data());
  sodium_memzero(&state, sizeof state);
  return mac;
}

}  // namespace detail

namespace connection {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

// ---- the protocol (CPython >= 3.12) -----------------------------------------------

constexpr std::string_view kChallenge = "#CHALLENGE#";
constexpr std::string_view kWelcome = "#WELCOME#";
constexpr std::string_view kFailure = "#FAILURE#";
constexpr std::string_view kDigest = "{sha256}";
constexpr std::size_t kNonceSize = 40;                         // Python's MESSAGE_LENGTH
constexpr std::size_t kMacSize = crypto_auth_hmacsha256_BYTES;  // 32
constexpr std::size_t kMaxHandshakeMessage = 256;              // Python's recv_bytes(256)
// The frame header, as connection.cpp writes it.
constexpr std::size_t kHeaderSize = Connection::kHeaderSize;
constexpr std::uint64_t kLengthMask = (std::uint64_t{1} << 56) - 1;

/// strerror, thread-safe.
std::string errno_text(int err) {
  char buf[256];
  return ::strerror_r(err, buf, sizeof buf);  // the GNU variant: returns the text
}

void ensure_sodium() {
  static const int status = sodium_init();  // thread-safe once; sodium_init is idempotent
  if (status < 0) throw Error("libsodium could not be initialized (needed for the authkey handshake)");
}

std::string describe(nanoseconds d) {
  if (d.count() % 1'000'000'000 == 0) return std::to_string(d.count() / 1'000'000'000) + "s";
  if (d.count() % 1'000'000 == 0) return std::to_string(d.count() / 1'000'000) + "ms";
  if (d.count() % 1'000 == 0) return std::to_string(d.count() / 1'000) + "us";
  return std::to_string(d.count()) + "ns";
}

/// A point in time to stop at; time_point::max() for "never".
struct Deadline {
  Clock::time_point at = Clock::time_point::max();

  static Deadline after(std::optional<nanoseconds> timeout) {
    Deadline d;
    if (!timeout) return d;
    const auto now = Clock::now();
    const nanoseconds t = std::max(*timeout, nanoseconds(0));
    if (t < Clock::time_point::max() - now) d.at = now + t;
    return d;
  }
  bool never() const noexcept { return at == Clock::time_point::max(); }
  std::optional<nanoseconds> remaining() const {
    if (never()) return std::nullopt;
    return std::max(nanoseconds(at - Clock::now()), nanoseconds(0));
  }
};

/// Waits until `fd` reports one of `events` (or an error/hangup). False if the deadline
/// passed first. A deadline already passed still checks once.
bool wait_fd(int fd, short events, const Deadline& deadline) {
  pollfd pfd{fd, events, 0};
  return detail::sys("ppoll", [&] {
           timespec ts{};
           timespec* tsp = nullptr;
           if (auto left = deadline.remaining()) {  // recomputed after EINTR
             ts = {static_cast<time_t>(left->count() / 1'000'000'000), static_cast<long>(left->count() % 1'000'000'000)};
             tsp = &ts;
           }
           return ::ppoll(&pfd, 1, tsp, nullptr);
         }) > 0;
}

void set_nonblocking(int fd, bool on) {
  int flags = detail::sys("fcntl", [&] { return ::fcntl(fd, F_GETFL); });
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  detail::sys("fcntl", [&] { return ::fcntl(fd, F_SETFL, flags); });
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // best effort: latency only
}

// ---- one side of the handshake, on a raw descriptor --------------------------------

class Handshake {
 public:
  /// `who` names the caller in errors; `budget` is the limit behind `deadline`, named
  /// by `budget_name` when it fires.
  Handshake(int fd, std::string_view authkey, Deadline deadline, nanoseconds budget, const char* who,
            const char* budget_name)
      : fd_(fd), authkey_(authkey), deadline_(deadline), budget_(budget), who_(who), budget_name_(budget_name) {
    ensure_sodium();
  }

  /// Challenges the peer and checks its answer (Python's deliver_challenge).
  void deliver_challenge() {
    std::string message(kDigest);
    message.resize(kDigest.size() + kNonceSize);
    randombytes_buf(message.data() + kDigest.size(), kNonceSize);
    send(std::string(kChallenge) + message);

    const std::string response = recv();
    const auto expected = detail::hmac_sha256(authkey_, bytes(message));
    const char* problem = nullptr;
    if (response.size() != kDigest.size() + kMacSize || !response.starts_with(kDigest)) {
      problem = "the peer's answer to our challenge is not an HMAC-SHA256 digest (does it use an authkey?)";
    } else if (sodium_memcmp(response.data() + kDigest.size(), expected.data(), kMacSize) != 0) {
      problem = "digest received was wrong (the peer has a different authkey)";
    }
    if (problem) {
      try {
        send(std::string(kFailure));
      } catch (const AuthenticationError&) {
        // The peer is gone or stuck: it learns nothing more, the verdict stands.
      }
      fail(problem);
    }
    send(std::string(kWelcome));
  }

  /// Answers the peer's challenge and waits for its verdict (Python's answer_challenge).
  void answer_challenge() {
    const std::string message = recv();
    if (!message.starts_with(kChallenge)) {
      fail("protocol error: expected an authentication challenge (does the peer use an authkey?)");
    }
    const std::string_view challenge = std::string_view(message).substr(kChallenge.size());
    if (!challenge.starts_with(kDigest) || challenge.size() < kDigest.size() + 32) {
      fail("unsupported challenge: expected {sha256} and at least 32 random bytes");
    }
    const auto mac = detail::hmac_sha256(authkey_, bytes(challenge));
    std::string response(kDigest);
    response.append(reinterpret_cast<const char*>(mac.data()), mac.size());
    send(response);

    const std::string verdict = recv();
    if (verdict == kFailure) fail("digest sent was rejected (the peer has a different authkey)");
    if (verdict != kWelcome) fail("protocol error: expected #WELCOME# or #FAILURE#");
  }

 private:
  static std::span<const unsigned char> bytes(std::string_view s) {
    return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw AuthenticationError(std::string(who_) + ": authentication failed: " + why);
  }
  [[noreturn]] void timed_out() const {
    fail("the peer did not complete the handshake within " + describe(budget_) + " (" + budget_name_ + ")");
  }
  [[noreturn]] void hung_up() const { fail("the peer closed the connection during the handshake"); }

  /// Writes one frame holding `payload`, honouring the deadline.
  void send(const std::string& payload) {
    std::string frame(kHeaderSize, '\0');
    const std::uint64_t header = payload.size();  // no descriptors
    std::memcpy(frame.data(), &header, sizeof header);
    frame += payload;
    std::size_t done = 0;
    while (done < frame.size()) {
      if (!wait_fd(fd_, POLLOUT, deadline_)) timed_out();
      auto n = detail::sys_nothrow(
          [&] { return ::send(fd_, frame.data() + done, frame.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT); });
      if (n == -EAGAIN || n == -EWOULDBLOCK) continue;
      if (n == -EPIPE || n == -ECONNRESET) hung_up();
      if (n < 0) fail(std::string("send failed: ") + errno_text(static_cast<int>(-n)));
      done += static_cast<std::size_t>(n);
    }
  }

  /// Reads exactly `size` bytes, honouring the deadline.
  void read_exact(char* p, std::size_t size) {
    std::size_t got = 0;
    while (got < size) {
      if (!wait_fd(fd_, POLLIN, deadline_)) timed_out();
      auto n = detail::sys_nothrow([&] { return ::recv(fd_, p + got, size - got, MSG_DONTWAIT); });
      if (n == -EAGAIN || n == -EWOULDBLOCK) continue;
      if (n == 0 || n == -ECONNRESET) hung_up();
      if (n < 0) fail(std::string("recv failed: ") + errno_text(static_cast<int>(-n)));
      got += static_cast<std::size_t>(n);
    }
  }

  /// Reads exactly one frame of at most kMaxHandshakeMessage bytes, without descriptors.
  std::string recv() {
    char raw[kHeaderSize];
    read_exact(raw, kHeaderSize);
    std::uint64_t header;
    std::memcpy(&header, raw, sizeof header);
    const std::uint64_t length = header & kLengthMask;
    if (header >> 56) fail("protocol error: the peer sent descriptors during the handshake");
    if (length > kMaxHandshakeMessage) {
      fail("protocol error: the peer announced a " + std::to_string(length) + "-byte message; handshake messages are at most " +
           std::to_string(kMaxHandshakeMessage));
    }
    std::string payload(static_cast<std::size_t>(length), '\0');
    read_exact(payload.data(), payload.size());
    return payload;
  }

  int fd_;
  std::string_view authkey_;
  Deadline deadline_;
  nanoseconds budget_;
  const char* who_;
  const char* budget_name_;
};

// ---- addresses <-> sockaddr --------------------------------------------------------

struct UnixSockaddr {
  sockaddr_un sa{};
  socklen_t len = 0;
};

/// The sockaddr for a Unix address; "" gives the autobind length (family only).
UnixSockaddr unix_sockaddr(const UnixAddress& a, const char* who) {
  UnixSockaddr u;
  u.sa.sun_family = AF_UNIX;
  const std::string& p = a.path;
  const std::size_t base = offsetof(sockaddr_un, sun_path);
  if (p.empty()) {
    u.len = static_cast<socklen_t>(base);
    return u;
  }
  if (a.abstract()) {
    if (p.size() > sizeof u.sa.sun_path) {
      throw ValueError(std::string(who) + ": the abstract socket name is too long (at most " +
                       std::to_string(sizeof u.sa.sun_path - 1) + " bytes after the marker)");
    }
    u.sa.sun_path[0] = '\0';
    std::memcpy(u.sa.sun_path + 1, p.data() + 1, p.size() - 1);
    u.len = static_cast<socklen_t>(base + p.size());
    return u;
  }
  if (p.find('\0') != std::string::npos) throw ValueError(std::string(who) + ": a socket path cannot contain '\\0'");
  if (p.size() >= sizeof u.sa.sun_path) {
    throw ValueError(std::string(who) + ": the socket path \"" + p + "\" is too long (at most " +
                     std::to_string(sizeof u.sa.sun_path - 1) + " bytes)");
  }
  std::memcpy(u.sa.sun_path, p.data(), p.size());
  u.len = static_cast<socklen_t>(base + p.size() + 1);
  return u;
}

/// The Address a kernel sockaddr names (abstract names as "@...").
Address from_sockaddr(const sockaddr_storage& ss, socklen_t len) {
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];
    if (::getnameinfo(reinterpret_cast<const sockaddr*>(&ss), len, host, sizeof host, serv, sizeof serv,
                      NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
      return Address(TcpAddress{});
    }
    return Address(TcpAddress{host, static_cast<std::uint16_t>(std::stoi(serv))});
  }
  if (ss.ss_family == AF_UNIX) {
    const auto& un = reinterpret_cast<const sockaddr_un&>(ss);
    const std::size_t base = offsetof(sockaddr_un, sun_path);
    if (len <= base) return Address(UnixAddress{});
    const std::size_t n = std::min<std::size_t>(len - base, sizeof un.sun_path);
    if (un.sun_path[0] == '\0') {
      std::string name("@");  // not "@" + string: GCC 12 -O3 false -Wrestrict (bug 105329)
      name.append(un.sun_path + 1, n - 1);
      return Address(UnixAddress{std::move(name)});
    }
    return Address(UnixAddress{std::string(un.sun_path, strnlen(un.sun_path, n))});
  }
  return Address(UnixAddress{});
}

struct AddrInfoList {
  addrinfo* head = nullptr;
  AddrInfoList() = default;
  AddrInfoList(const AddrInfoList&) = delete;
  AddrInfoList& operator=(const AddrInfoList&) = delete;
  ~AddrInfoList() {
    if (head) ::freeaddrinfo(head);
  }
};

/// getaddrinfo for a TCP endpoint. Throws mp::OSError whose code() is the EAI_* error.
void resolve(const TcpAddress& a, bool passive, AddrInfoList& out, const char* who) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  const std::string port = std::to_string(a.port);
  const char* host = a.host.empty() ? nullptr : a.host.c_str();
  // Python's '' for a listener is INADDR_ANY: IPv4 (bind "::" for IPv6 too).
  if (passive && a.host.empty()) hints.ai_family = AF_INET;
  int rc = ::getaddrinfo(host, port.c_str(), &hints, &out.head);
  if (rc != 0) {
    const int err = errno;
    throw OSError(std::string(who) + ": cannot resolve \"" + a.host + "\": " +
                      (rc == EAI_SYSTEM ? errno_text(err) : std::string(::gai_strerror(rc))),
                  rc == EAI_SYSTEM ? err : rc);
  }
}

[[noreturn]] void throw_os(const std::string& what, int err) { throw OSError(what + ": " + errno_text(err), err); }

// ---- connecting --------------------------------------------------------------------

/// connect() on a non-blocking socket, finished within the deadline. Returns 0 or an
/// errno; throws mp::TimeoutError when the deadline passes.
int connect_within(int fd, const sockaddr* sa, socklen_t len, const Deadline& deadline, const std::string& what) {
  for (;;) {
    int r = detail::sys_nothrow([&] { return ::connect(fd, sa, len); });
    if (r == 0 || r == -EISCONN) return 0;
    if (r == -EINPROGRESS || r == -EALREADY) {
      // TCP: the handshake is under way.
      if (!wait_fd(fd, POLLOUT, deadline)) {
        throw TimeoutError("Client: connecting to " + what);
      }
      int err = 0;
      socklen_t n = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n) != 0) return errno;
      return err;
    }
    if (r == -EAGAIN) {
      // Unix: the listener's backlog is full. Wait for room, a little at a time.
      auto left = deadline.remaining();
      if (left && *left <= nanoseconds(0)) {
        throw TimeoutError("Client: connecting to " + what + " (the listener's backlog stayed full)");
      }
      std::this_thread::sleep_for(std::min<nanoseconds>(left.value_or(nanoseconds::max()), std::chrono::milliseconds(5)));
      continue;
    }
    return static_cast<int>(-r);
  }
}

detail::UniqueFd connect_to(const Address& address, const Deadline& deadline, nanoseconds budget) {
  const std::string what = address.to_string() + " timed out after " + describe(budget);
  if (const UnixAddress* ua = address.as_unix()) {
    if (ua->path.empty()) throw ValueError("Client: an empty Unix address names no listener");
    UnixSockaddr u = unix_sockaddr(*ua, "Client");
    detail::UniqueFd fd(
        detail::sys("socket", [] { return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); }));
    int err = connect_within(fd.get(), reinterpret_cast<const sockaddr*>(&u.sa), u.len, deadline, what);
    if (err) throw_os("Client: cannot connect to " + address.to_string(), err);
    set_nonblocking(fd.get(), false);
    return fd;
  }
  const TcpAddress& ta = *address.as_tcp();
  AddrInfoList list;
  resolve(ta, false, list, "Client");
  int last_err = EADDRNOTAVAIL;
  for (addrinfo* ai = list.head; ai; ai = ai->ai_next) {
    int s = detail::sys_nothrow(
        [&] { return ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol); });
    if (s < 0) {
      last_err = -s;
      continue;
    }
    detail::UniqueFd fd(s);
    int err = connect_within(fd.get(), ai->ai_addr, ai->ai_addrlen, deadline, what);
    if (err) {
      last_err = err;
      continue;
    }
    set_nonblocking(fd.get(), false);
    set_nodelay(fd.get());
    return fd;
  }
  throw_os("Client: cannot connect to " + address.to_string(), last_err);
}

// ---- binding -----------------------------------------------------------------------

/// True if a listener answers at the Unix path (a connect that is not refused).
bool unix_path_is_live(const UnixSockaddr& u) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return true;  // cannot tell: assume live, replace nothing
  detail::UniqueFd fd(s);
  int r = detail::sys_nothrow([&] { return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&u.sa), u.len); });
  return r != -ECONNREFUSED;
}

}  // namespace

// ---- Address -----------------------------------------------------------------------

Address::Address(std::string host, int port) {
  if (port < 0 || port > 65535) {
    throw ValueError("Address: port " + std::to_string(port) + " is outside [0, 65535]");
  }
  value_ = TcpAddress{std::move(host), static_cast<std::uint16_t>(port)};
}

std::string Address::to_string() const {
  if (const TcpAddress* t = as_tcp()) {
    if (t->host.find(':') != std::string::npos) return "[" + t->host + "]:" + std::to_string(t->port);
    return t->host + ":" + std::to_string(t->port);
  }
  const std::string& p = as_unix()->path;
  if (p.empty()) return "(unnamed)";
  if (p[0] == '\0') {
    std::string name("@");  // not "@" + string: GCC 12 -O3 false -Wrestrict (bug 105329)
    name.append(p, 1);
    return name;
  }
  return p;
}

std::string to_string(const Address& address) { return address.to_string(); }
std::ostream& operator<<(std::ostream& os, const Address& address) { return os << address.to_string(); }

// ---- Listener ----------------------------------------------------------------------

Listener::Listener(Address address, ListenerOptions options) : options_(std::move(options)) {
  if (options_.backlog < 0) throw ValueError("Listener: backlog must be >= 0");
  if (options_.handshake_timeout <= nanoseconds(0)) throw ValueError("Listener: handshake_timeout must be positive");
  if (options_.authkey) ensure_sodium();

  if (const UnixAddress* ua = address.as_unix()) {
    UnixSockaddr u = unix_sockaddr(*ua, "Listener");
    detail::UniqueFd fd(
        detail::sys("socket", [] { return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); }));
    auto do_bind = [&] {
      return detail::sys_nothrow([&] { return ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&u.sa), u.len); });
    };
    int r = do_bind();
    const bool filesystem = !ua->path.empty() && !ua->abstract();
    if (r == -EADDRINUSE && filesystem) {
      // A crashed server's socket file? Replace it only if it is a socket nobody listens on.
      struct stat st {};
      if (::lstat(ua->path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && !unix_path_is_live(u)) {
        ::unlink(ua->path.c_str());
        r = do_bind();
      }
    }
    if (r < 0) throw_os("Listener: cannot bind " + address.to_string(), static_cast<int>(-r));
    if (filesystem) {
      struct stat st {};
      if (::lstat(ua->path.c_str(), &st) == 0) {
        owned_path_ = ua->path;
        owned_dev_ = st.st_dev;
        owned_ino_ = st.st_ino;
        owner_pid_ = ::getpid();
      }
    }
    try {
      detail::sys("listen", [&] { return ::listen(fd.get(), options_.backlog); });
    } catch (...) {
      if (!owned_path_.empty()) ::unlink(owned_path_.c_str());
      throw;
    }
    if (ua->path.empty()) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      detail::sys("getsockname", [&] { return ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len); });
      address_ = from_sockaddr(ss, len);
    } else {
      address_ = std::move(address);
    }
    fd_ = std::move(fd);
    return;
  }

  const TcpAddress& ta = *address.as_tcp();
  AddrInfoList list;
  resolve(ta, true, list, "Listener");
  int last_err = EADDRNOTAVAIL;
  for (addrinfo* ai = list.head; ai; ai = ai->ai_next) {
    int s = detail::sys_nothrow(
        [&] { return ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol); });
    if (s < 0) {
      last_err = -s;
      continue;
    }
    detail::UniqueFd fd(s);
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int r = detail::sys_nothrow([&] { return ::bind(fd.get(), ai->ai_addr, ai->ai_addrlen); });
    if (r == 0) r = detail::sys_nothrow([&] { return ::listen(fd.get(), options_.backlog); });
    if (r < 0) {
      last_err = -r;
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    detail::sys("getsockname", [&] { return ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len); });
    address_ = from_sockaddr(ss, len);
    fd_ = std::move(fd);
    return;
  }
  throw_os("Listener: cannot listen on " + address.to_string(), last_err);
}

Listener::Listener(Listener&& o) noexcept
    : fd_(std::move(o.fd_)),
      address_(std::move(o.address_)),
      options_(std::move(o.options_)),
      last_accepted_(std::move(o.last_accepted_)),
      owned_path_(std::exchange(o.owned_path_, {})),
      owned_dev_(o.owned_dev_),
      owned_ino_(o.owned_ino_),
      owner_pid_(o.owner_pid_) {
  o.address_.reset();
  o.last_accepted_.reset();
}

Listener& Listener::operator=(Listener&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    address_ = std::move(o.address_);
    options_ = std::move(o.options_);
    last_accepted_ = std::move(o.last_accepted_);
    owned_path_ = std::exchange(o.owned_path_, {});
    owned_dev_ = o.owned_dev_;
    owned_ino_ = o.owned_ino_;
    owner_pid_ = o.owner_pid_;
    o.address_.reset();
    o.last_accepted_.reset();
  }
  return *this;
}

Listener::~Listener() { close(); }

void Listener::close() noexcept {
  if (!owned_path_.empty()) {
    // Remove the file only if it is still ours: not replaced by another listener since,
    // and not from a forked copy of this object in another process.
    struct stat st {};
    if (owner_pid_ == ::getpid() && ::lstat(owned_path_.c_str(), &st) == 0 && st.st_dev == owned_dev_ &&
        st.st_ino == owned_ino_) {
      ::unlink(owned_path_.c_str());
    }
    owned_path_.clear();
  }
  fd_.reset();
}

const Address& Listener::address() const {
  if (!address_) throw ValueError("Listener::address: this listener was moved from");
  return *address_;
}

int Listener::fileno() const {
  if (!fd_) throw ValueError("Listener::fileno: the listener is closed");
  return fd_.get();
}

Connection Listener::accept_for(std::optional<nanoseconds> timeout) {
  if (!fd_) throw ValueError("Listener::accept: the listener is closed");
  const Deadline deadline = Deadline::after(timeout);
  for (;;) {
    if (!wait_fd(fd_.get(), POLLIN, deadline)) {
      throw TimeoutError("Listener::accept: no client connected within " +
                         (timeout ? describe(*timeout) : std::string("the time given")));
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int r = detail::sys_nothrow(
        [&] { return ::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC); });
    if (r < 0) {
      switch (-r) {
        // Nothing to take after all, or a client that vanished before we took it: wait on.
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
        case ECONNABORTED:
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
          continue;
        default:
          detail::throw_os_error("accept4", -r);
      }
    }
    detail::UniqueFd conn(r);  // blocking: accept4 does not pass O_NONBLOCK on
    last_accepted_ = from_sockaddr(ss, len);
    if (ss.ss_family != AF_UNIX) set_nodelay(conn.get());
    if (options_.authkey) {
      Handshake h(conn.get(), *options_.authkey, Deadline::after(options_.handshake_timeout),
                  options_.handshake_timeout, "Listener::accept", "ListenerOptions::handshake_timeout");
      h.deliver_challenge();
      h.answer_challenge();
    }
    return Connection(conn.release(), true, true);
  }
}

// ---- Client ------------------------------------------------------------------------

Connection Client(const Address& address, ClientOptions options) {
  if (options.timeout <= nanoseconds(0)) throw ValueError("Client: timeout must be positive");
  if (options.authkey) ensure_sodium();
  const Deadline deadline = Deadline::after(options.timeout);
  detail::UniqueFd fd = connect_to(address, deadline, options.timeout);
  if (options.authkey) {
    Handshake h(fd.get(), *options.authkey, deadline, options.timeout, "Client",
                "ClientOptions::timeout, connecting included");
    h.answer_challenge();
    h.deliver_challenge();
  }
  return Connection(fd.release(), true, true);
}

}  // namespace connection
}  // namespace mp
