// mp/connection.hpp — Pipe and Connection: typed messages and raw bytes between two
// processes (Python's multiprocessing.connection).
//
// @code
//   auto [parent_end, child_end] = mp::Pipe();            // duplex
//   mp::Process p([](mp::Connection c) { c.send(std::string("hello")); }, child_end);
//   p.start();
//   child_end.close();                                     // the child has its own now
//   std::string s = parent_end.recv<std::string>();
//   p.join();
//
//   auto [r, w] = mp::Pipe(false);                         // r receives only, w sends only
//   w.send_bytes("raw bytes");  auto bytes = r.recv_bytes();
//   if (r.poll(100ms)) { ... }                             // a message (or EOF) is waiting
//   auto ready = mp::connection::wait({&a, &b}, 1s);       // the ready ones
// @endcode
//
// A message is a frame: an 8-byte header (payload length, and how many descriptors
// travel with it) and the payload. send<T> writes one tagged message (the typed wire,
// codec.hpp): recv<T> of another type raises mp::SerializationError and the stream stays
// usable. A header announcing more than max_message_size() (default 256 MiB, settable)
// raises mp::SerializationError before anything is allocated; a peer that closes in
// the middle of a frame raises mp::EOFError; either way the connection is then broken
// (every later call raises). Nothing a peer sends can crash the receiver.
//
// Connection owns one descriptor (a Unix socket for Pipe()) and is move-only. Passed
// to a Process as an argument, the child gets its own descriptor (fork: inherited;
// spawn/forkserver: passed along), as in Python; the Process drops its copy once the
// child has started. mp handles inside a message (a Connection, later a Queue, a Lock)
// travel over Unix sockets as descriptors (SCM_RIGHTS).
//
// Thread-safety: one thread sends and one thread receives at a time (as in Python).
// No call blocks forever because the peer died: its death is EOF.
//
// Waiting: a receive over a Unix socket (Pipe(), a Unix-address Listener) whose message
// has not arrived yet tries again for up to 50 us, yielding the CPU between tries, before
// it sleeps in the kernel: a local peer's answer then costs no wake-up (a round trip
// ~2.5x faster than over a plain pipe here), and a peer on the same CPU runs meanwhile.
#pragma once

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "mp/detail/callable.hpp"
#include "mp/detail/codec.hpp"
#include "mp/detail/sys.hpp"
#include "mp/errors.hpp"

namespace mp {

class Connection {
 public:
  /// An empty, closed connection.
  Connection() noexcept = default;
  /// Takes ownership of `fd` (a socket, a pipe, or any stream descriptor).
  Connection(int fd, bool readable, bool writable);
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  /// Sends one message holding `obj`. Blocks while the peer's buffer is full.
  /// Throws mp::ValueError on a closed or receive-only connection, mp::EOFError
  /// (BrokenPipe) if the peer has gone, mp::ValueError for a handle that cannot travel
  /// over this kind of descriptor.
  template <class T>
  void send(const T& obj) {
    std::vector<std::byte> frame(kHeaderSize);
    std::vector<int> fds;
    detail::encode(obj, frame, passes_fds_ ? &fds : nullptr);
    send_frame(frame, fds);
  }

  /// Receives one message that must hold a T. Blocks until one arrives.
  /// Throws mp::EOFError when the peer has closed and nothing is left,
  /// mp::SerializationError on a type mismatch (the message is consumed, the stream
  /// stays usable) or a corrupt frame (the connection is then broken).
  template <class T>
  T recv() {
    Frame f = recv_frame();
    try {
      T value = detail::decode<T>(f.payload, f.fds);
      release_frame(f);
      return value;
    } catch (...) {
      release_frame(f);
      throw;
    }
  }

  /// Sends `buf[offset, offset + size)` (all of it from offset by default) as one
  /// message. Throws mp::ValueError if the range is outside `buf`.
  void send_bytes(std::span<const std::byte> buf, std::size_t offset = 0,
                  std::optional<std::size_t> size = std::nullopt);
  void send_bytes(std::string_view text) { send_bytes(std::as_bytes(std::span(text.data(), text.size()))); }

  /// Receives one message as bytes. Throws mp::EOFError at EOF; with `maxlength`, a
  /// longer message raises mp::ValueError and the connection is broken (as in Python).
  std::vector<std::byte> recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);

  /// Receives one message into `buf` from `offset`; returns its size. If it does not
  /// fit, throws mp::BufferTooShort and the message stays readable (the next recv call
  /// returns it).
  std::size_t recv_bytes_into(std::span<std::byte> buf, std::size_t offset = 0);

  /// True if a message (or EOF) can be read without blocking. poll() does not wait;
  /// poll(timeout) waits up to timeout; poll_forever() waits without limit.
  bool poll() { return poll_for(std::chrono::nanoseconds(0)); }
  template <class Rep, class Period>
  bool poll(std::chrono::duration<Rep, Period> timeout) {
    return poll_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }
  bool poll_forever() { return poll_for(std::nullopt); }

  /// Closes the descriptor. Idempotent.
  void close() noexcept;
  bool closed() const noexcept { return !fd_; }
  bool readable() const noexcept { return readable_; }
  bool writable() const noexcept { return writable_; }
  /// The descriptor (for select/poll/epoll). Throws mp::ValueError when closed.
  int fileno() const;

  /// The largest message this end accepts (default: default_max_message_size()).
  std::size_t max_message_size() const noexcept { return max_message_size_; }
  void set_max_message_size(std::size_t n) noexcept { max_message_size_ = n; }
  static std::size_t default_max_message_size() noexcept;
  static void set_default_max_message_size(std::size_t n) noexcept;

  /// A second Connection on a duplicate of this descriptor (what a child receives).
  Connection duplicate() const;

  /// Connections travel inside messages and to spawn/forkserver children as
  /// descriptors; the receiver gets its own duplicate.
  void save(detail::OutputArchive& ar) const;
  void load(detail::InputArchive& ar);

  static constexpr std::size_t kHeaderSize = 8;

 private:
  struct Frame {
    std::span<const std::byte> payload;
    std::vector<int> fds;                 // borrowed: closed by release_frame
    std::vector<std::byte> owned;         // a large payload lives here
  };

  void check_open(const char* what) const;
  void check_readable(const char* what) const;
  void check_writable(const char* what) const;
  void send_frame(std::vector<std::byte>& frame_with_header_room, std::span<const int> fds);
  /// Reads one frame; a large payload lands in `into` when it fits there (no copy).
  Frame recv_frame(std::span<std::byte> into = {});
  void release_frame(Frame& f) noexcept;
  bool poll_for(std::optional<std::chrono::nanoseconds> timeout);
  std::size_t fill(std::size_t want);  // reads at least `want` more bytes into the buffer
  [[noreturn]] void broken(const std::string& why);

  detail::UniqueFd fd_;
  bool readable_ = false;
  bool writable_ = false;
  bool is_socket_ = false;   // writes use MSG_NOSIGNAL
  bool passes_fds_ = false;  // a Unix socket: handles can travel in messages
  bool broken_ = false;
  std::string broken_why_;
  std::size_t max_message_size_ = default_max_message_size();
  // Receive buffer: bytes [begin_, end_) are read and not yet consumed.
  std::vector<std::byte> buf_;
  std::size_t begin_ = 0, end_ = 0;
  std::vector<int> pending_fds_;            // received descriptors not yet claimed
  std::optional<std::vector<std::byte>> held_;  // a message recv_bytes_into could not take
};

/// A pair of connected Connections. Duplex: both ends send and receive. Simplex
/// (duplex = false): the first end only receives, the second only sends.
std::pair<Connection, Connection> Pipe(bool duplex = true);

namespace connection {

/// Waits until at least one of `objects` is ready (a message or EOF can be read, or, for
/// an int sentinel such as Process::sentinel(), it became readable), or the timeout
/// passes. Returns the ready ones, in the order given; empty on timeout.
std::vector<Connection*> wait(std::span<Connection* const> objects,
                              std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
std::vector<int> wait(std::span<const int> sentinels, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

inline std::vector<Connection*> wait(std::initializer_list<Connection*> objects,
                                     std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  return wait(std::span<Connection* const>(objects.begin(), objects.size()), timeout);
}
inline std::vector<int> wait(std::initializer_list<int> sentinels,
                             std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  return wait(std::span<const int>(sentinels.begin(), sentinels.size()), timeout);
}

}  // namespace connection

namespace detail {
/// A Connection passed to a Process as an lvalue: the stored argument is the child's
/// own duplicate; the caller's Connection is untouched.
template <>
struct child_copy<Connection> {
  static Connection make(const Connection& c) { return c.duplicate(); }
};
}  // namespace detail

}  // namespace mp
