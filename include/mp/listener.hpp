// mp/listener.hpp — Listener and Client: connections between processes that did not
// start each other, over TCP or Unix-domain sockets, authenticated with a shared key
// (Python's multiprocessing.connection.Listener, Client and authkey handshake).
//
// @code
//   // The server.
//   mp::connection::Listener listener({"127.0.0.1", 6000}, {.authkey = "secret password"});
//   std::cout << "listening on " << listener.address() << '\n';
//   mp::Connection conn = listener.accept();          // blocks; runs the handshake
//   std::cout << "connection from " << *listener.last_accepted() << '\n';
//   auto msg = conn.recv<std::string>();
//   listener.close();
//
//   // The client: another process, perhaps on another machine.
//   mp::Connection conn = mp::connection::Client({"127.0.0.1", 6000}, {.authkey = "secret password"});
//   conn.send(std::string("hello"));
//
//   // A server loop that outlives bad clients.
//   for (;;) {
//     try {
//       mp::Connection c = listener.accept();
//       serve(std::move(c));
//     } catch (const mp::AuthenticationError& e) {
//       log(e.what());                                 // wrong key, garbage, silence...
//     }
//   }
//
//   // Unix-domain sockets: a path, or the Linux abstract namespace ("@name" or "\0name").
//   mp::connection::Listener local("/run/myapp/socket");
//   mp::connection::Listener anywhere;                // an arbitrary abstract name
//   mp::Connection c = mp::connection::Client(anywhere.address());
// @endcode
//
// What a connection carries afterwards is an ordinary mp::Connection (connection.hpp):
// typed messages, bytes, poll. Over a Unix socket, mp handles (a Connection...) travel
// inside messages as descriptors; over TCP they cannot: send only values there.
//
// The handshake (when an authkey is set). Both sides prove they know the key, without
// sending it, with HMAC-SHA256 challenges in both directions, as CPython >= 3.12 does
// (deliver_challenge / answer_challenge):
//   1. the listener sends  "#CHALLENGE#{sha256}" + 40 random bytes;
//   2. the client answers  "{sha256}" + HMAC-SHA256(authkey, "{sha256}" + the 40 bytes);
//   3. the listener checks it in constant time and sends "#WELCOME#" or "#FAILURE#";
//   4. steps 1-3 again with the roles swapped: the client challenges the listener.
// Each step is one mp frame (Connection::send_bytes) of at most 256 bytes. Nothing a
// peer sends is deserialized before both sides are authenticated: a frame that is too
// long, carries descriptors or is not what the protocol expects ends the handshake.
// The whole handshake has a deadline (ListenerOptions::handshake_timeout,
// ClientOptions::timeout), kept across every read and write, so a peer that is silent,
// slow or sends half a frame cannot hold a listener or a client beyond it.
// The handshake is not encryption: what follows travels in the clear, and a
// man-in-the-middle who relays both directions is not detected. Use it on networks you
// trust, or tunnel the connection (SSH, WireGuard) — as with Python.
//
// Unix abstract names have no file permissions: any process in the same network
// namespace may connect. Filesystem paths obey the permissions of their directory.
//
// Handshakes are taken one at a time, inside accept(): a peer that stalls delays the
// clients queued behind it by at most handshake_timeout.
//
// Thread-safety: a Listener is used by one thread at a time; in particular, do not
// close() it while another thread is inside accept() (that does not wake it): loop on
// accept(timeout) and check a flag instead. Client() may be called from any number of
// threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "mp/connection.hpp"
#include "mp/detail/sys.hpp"
#include "mp/errors.hpp"

namespace mp::connection {

/// A TCP endpoint. `host` is a numeric IPv4 or IPv6 address ("127.0.0.1", "::1") or a
/// name resolved by the system ("localhost"); "" means every IPv4 interface for a
/// Listener (Python's '') and this machine for Client. `port` 0 makes a Listener pick a
/// free port (Listener::address() reports it).
struct TcpAddress {
  std::string host{};
  std::uint16_t port = 0;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(host, port);
  }
  friend bool operator==(const TcpAddress&, const TcpAddress&) = default;
};

/// A Unix-domain socket. `path` is a filesystem path, or a Linux abstract name when it
/// starts with '@' or '\0' (both spellings name the same socket; write "./@x" for a file
/// called "@x"). "" asks a Listener for an arbitrary abstract name chosen by the kernel;
/// as a peer address (Listener::last_accepted()) it means the peer is unnamed.
/// At most 107 bytes (108 for an abstract name, marker included).
struct UnixAddress {
  std::string path{};

  /// True for an abstract-namespace name ("@..." or "\0...").
  bool abstract() const noexcept { return !path.empty() && (path[0] == '@' || path[0] == '\0'); }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(path);
  }
  friend bool operator==(const UnixAddress&, const UnixAddress&) = default;
};

/// Where a Listener listens and a Client connects: a TcpAddress or a UnixAddress.
/// Converts from `{host, port}` (TCP) and from a path (Unix), so both read naturally:
/// @code
///   mp::connection::Address tcp = {"127.0.0.1", 6000};
///   mp::connection::Address unix_path = "/tmp/app.sock";
///   mp::connection::Address abstract = "@app";
/// @endcode
/// The default is UnixAddress{""}: for a Listener, an arbitrary abstract name (what
/// Python's Listener() picks when given no address). Serializable: it can be sent in a
/// message or passed to a Process under any start method. Printable (to_string, <<):
/// "127.0.0.1:6000", "[::1]:6000", "/tmp/app.sock", "@app" (a '\0' marker prints as '@').
class Address {
 public:
  Address() = default;
  Address(TcpAddress tcp) : value_(std::move(tcp)) {}
  Address(UnixAddress unix_address) : value_(std::move(unix_address)) {}
  /// TCP. Throws mp::ValueError if `port` is outside [0, 65535].
  Address(std::string host, int port);
  /// Unix (a path, "@name" or "\0name").
  Address(std::string path) : value_(UnixAddress{std::move(path)}) {}
  Address(const char* path) : Address(std::string(path)) {}

  bool is_tcp() const noexcept { return std::holds_alternative<TcpAddress>(value_); }
  bool is_unix() const noexcept { return std::holds_alternative<UnixAddress>(value_); }
  /// The TCP endpoint, or nullptr for a Unix address.
  const TcpAddress* as_tcp() const noexcept { return std::get_if<TcpAddress>(&value_); }
  /// The Unix address, or nullptr for a TCP endpoint.
  const UnixAddress* as_unix() const noexcept { return std::get_if<UnixAddress>(&value_); }
  const std::variant<TcpAddress, UnixAddress>& value() const noexcept { return value_; }

  std::string to_string() const;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(value_);
  }
  friend bool operator==(const Address&, const Address&) = default;

 private:
  std::variant<TcpAddress, UnixAddress> value_{UnixAddress{}};
};

std::string to_string(const Address& address);
std::ostream& operator<<(std::ostream& os, const Address& address);

/// Python's keyword arguments of Listener(...).
struct ListenerOptions {
  /// Set: every accepted client must pass the handshake (see the top of this file).
  std::optional<std::string> authkey{};
  /// listen(2)'s queue of connections not yet accepted.
  int backlog = 16;
  /// The most one client's handshake may take, from accept to the last message.
  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(5);
};

/// Python's keyword arguments of Client(...).
struct ClientOptions {
  /// Set: the listener must pass the handshake too (and must have the same key).
  std::optional<std::string> authkey{};
  /// The most Client() may take: connecting, then the handshake. Once Client() has
  /// returned, the connection has no timeout (recv waits as long as it takes).
  std::chrono::nanoseconds timeout = std::chrono::seconds(30);
};

/// A listening socket that hands out a Connection per client (Python's
/// multiprocessing.connection.Listener). Move-only; closing or destroying it closes the
/// socket and removes the Unix socket file it created (connections already accepted
/// are independent of it and stay open).
class Listener {
 public:
  /// Binds `address` and listens. TCP sockets get SO_REUSEADDR (a restarted server can
  /// rebind its port at once). A Unix path where a stale socket is left (a file of
  /// type socket that nobody listens on: a crashed server's) is replaced; a path held
  /// by a live listener, or by a file that is not a socket, is left alone and raises.
  /// (Liveness is tested by connecting: a live listener there sees one connection that
  /// closes at once.)
  /// Throws mp::ValueError for an invalid address or option (backlog < 0,
  /// handshake_timeout <= 0, a path too long), mp::OSError when the system refuses
  /// (EADDRINUSE, EACCES, a host that does not resolve: code() is then the getaddrinfo
  /// error, as Python's gaierror).
  explicit Listener(Address address = {}, ListenerOptions options = {});

  Listener(Listener&& other) noexcept;
  Listener& operator=(Listener&& other) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  /// Blocks until a client connects, then (with an authkey) runs the handshake, and
  /// returns the connection. A failed handshake — wrong key, a peer that says nothing
  /// or sends garbage, half a frame or too much, that closes the connection, or does
  /// not finish within handshake_timeout — closes that connection and raises
  /// mp::AuthenticationError (the message says which, and names the timeout when it
  /// fired); the listener stays usable: call accept() again for the next client.
  /// Throws mp::ValueError on a closed listener, mp::OSError when the system refuses
  /// (EMFILE...). No peer can make it wait beyond handshake_timeout once it has a
  /// connection.
  Connection accept() { return accept_for(std::nullopt); }

  /// As accept(), but raises mp::TimeoutError if no client connects within `timeout`.
  /// The handshake that follows a connection has its own limit, handshake_timeout.
  template <class Rep, class Period>
  Connection accept(std::chrono::duration<Rep, Period> timeout) {
    return accept_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }

  /// Closes the socket and, for a Unix path this listener created, removes the file
  /// (unless another listener has replaced it since, or this is a forked copy in
  /// another process). Idempotent; never throws.
  void close() noexcept;
  bool closed() const noexcept { return !fd_; }

  /// The address listened on, as bound: TCP host numeric and the real port (port 0
  /// resolved); a Unix path as given; an arbitrary abstract name as "@xxxxx". Still
  /// answers after close(). Throws mp::ValueError on a moved-from listener.
  const Address& address() const;

  /// The peer of the last connection accept() took (including one whose handshake then
  /// failed); empty before the first. A Unix peer is usually unnamed (UnixAddress{""}).
  const std::optional<Address>& last_accepted() const noexcept { return last_accepted_; }

  /// The listening descriptor: readable when a client is waiting (for poll, epoll or
  /// mp::connection::wait). Throws mp::ValueError when closed.
  int fileno() const;

 private:
  Connection accept_for(std::optional<std::chrono::nanoseconds> timeout);

  detail::UniqueFd fd_;
  std::optional<Address> address_;
  ListenerOptions options_;
  std::optional<Address> last_accepted_;
  // The Unix socket file this listener created (removed on close if still the same).
  std::string owned_path_;
  dev_t owned_dev_ = 0;
  ino_t owned_ino_ = 0;
  pid_t owner_pid_ = 0;
};

/// Connects to a Listener and (with an authkey) runs the client side of the handshake:
/// the listener must prove it has the key too. Returns the connection.
/// Throws mp::OSError if nobody listens there (ECONNREFUSED, ENOENT) or the system
/// refuses — connected once, not retried, as Python does; a host that does not resolve
/// raises mp::OSError whose code() is the getaddrinfo error (Python's gaierror);
/// mp::TimeoutError if connecting takes longer than options.timeout;
/// mp::AuthenticationError if the handshake fails: the keys differ (the listener
/// refused ours, or could not answer our challenge), the listener sent something that
/// is not the protocol (it has no authkey?), closed the connection, or did not finish
/// within what is left of options.timeout; mp::ValueError for an invalid address or
/// options (timeout <= 0, an empty Unix path). Thread-safe.
Connection Client(const Address& address, ClientOptions options = {});

}  // namespace mp::connection
