// mp/detail/manager_core.hpp — the wire between manager proxies and a manager's server
// (Python's multiprocessing.managers: BaseProxy._callmethod and Server.serve_client).
//
// A proxy is a reference to an object that lives in the server. Every call is one
// request and one reply over a Connection (a Unix or TCP socket, authenticated with the
// manager's authkey). Each thread of a client process has its own connection to each
// manager, opened on first use and kept until the thread ends, and the server serves
// each connection with its own thread — so a call that blocks in the server (a get on
// an empty queue, an acquire) blocks only the client thread that made it.
//
// Requests (one frame each, bytes written with OutputArchive):
//   create    [op][servant type tag][constructor arguments]   -> [ok][u64 id]
//   call      [op][method][id][interface tag][arguments]      -> [ok][result]
//   incref    [op][id]                                        -> [ok]
//   decref    [op][id]                                        -> [ok]
//   get_named [op][name][interface tag]                       -> [ok][u64 id]  (a new reference)
//   shutdown  [op]                                            -> [ok]
//   count     [op]                                            -> [ok][u64 live objects]
//   channel   [op]                  -> a typed message: a pair of mp::Queue handles
// Over a Unix socket a client asks for a channel first: two shared-memory queues (its
// requests, the server's replies), after which requests and replies go through them —
// a round trip of about a microsecond instead of two socket messages and their system
// calls. The socket stays open and idle: each side watches it to learn that the other
// has gone (both wait on the queues in slices of kWaitSlice and look).
// A failed request answers [error][type name][message][traceback]; the client raises
// the same mp exception when the type is one of mp's (mp::Empty, mp::KeyError...), and
// mp::RemoteError otherwise.
//
// Lifetime (as Python's): the server counts references. create and get_named hand the
// caller one; sending a proxy to another process (a message, a spawn argument, a pool
// task) takes one more for the receiver before the bytes leave, and the receiver adopts
// it; the last copy of a proxy in a process gives its reference back. A fork child that
// uses a proxy it inherited takes its own reference on first use.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "mp/detail/codec.hpp"
#include "mp/errors.hpp"
#include "mp/listener.hpp"
#include "mp/queues.hpp"

namespace mp::detail {

enum class ManagerOp : std::uint8_t { create = 1, call = 2, incref = 3, decref = 4, get_named = 5, shutdown = 6, count = 7, channel = 8 };
enum class ReplyStatus : std::uint8_t { ok = 0, error = 1 };

/// Where a manager's server listens, and the key it wants.
struct ManagerEndpoint {
  connection::Address address;
  std::string authkey;  // empty: the server asks for none
  /// Set by the Manager of this process that shut the server down: its proxies then
  /// raise at once instead of trying to connect, and give no references back.
  std::atomic<bool> shut_down{false};
  /// Names the server among this thread's connections (address and key).
  std::string key;

  ManagerEndpoint(connection::Address a, std::string authkey_)
      : address(std::move(a)), authkey(std::move(authkey_)), key(address.to_string() + '\n' + authkey) {}
};

/// Sends one request to the server at `ep` over this thread's connection to it and
/// returns the reply's payload. Throws what the server's error reply names, mp::EOFError
/// if the server went away during the call, mp::OSError if it cannot be reached,
/// mp::AuthenticationError on a wrong key, mp::ValueError if `ep` was shut down.
std::vector<std::byte> manager_request(const ManagerEndpoint& ep, std::span<const std::byte> request);

/// Closes this thread's connection to the server at `ep`, if it has one (after a shutdown).
void forget_manager_connection(const ManagerEndpoint& ep) noexcept;

/// One reference to an object in a manager's server. Every copy of a proxy handle in a
/// process shares one ProxyRef; the last one to go gives the reference back.
class ProxyRef {
 public:
  /// Adopts a reference the server has already counted for this process.
  ProxyRef(std::shared_ptr<ManagerEndpoint> ep, std::uint64_t id, std::uint64_t interface_tag) noexcept;
  ProxyRef(const ProxyRef&) = delete;
  ProxyRef& operator=(const ProxyRef&) = delete;
  /// Gives the reference back (decref) if this process holds it; never throws.
  ~ProxyRef();

  const ManagerEndpoint& endpoint() const noexcept { return *ep_; }
  const std::shared_ptr<ManagerEndpoint>& endpoint_ptr() const noexcept { return ep_; }
  std::uint64_t id() const noexcept { return id_; }
  std::uint64_t interface_tag() const noexcept { return tag_; }

  /// In a fork child that inherited this reference: takes one of its own (incref) so
  /// the object outlives the parent's copy. Cheap once done.
  void claim_for_this_process() const;
  /// Takes a new reference on behalf of a receiver (a proxy being serialized).
  void incref_for_transfer() const;
  /// A child process whose target has ended gives back every reference it holds.
  static void release_all_at_exit();

 private:
  std::shared_ptr<ManagerEndpoint> ep_;
  std::uint64_t id_;
  void give_back() noexcept;

  std::uint64_t tag_;
  mutable std::atomic<pid_t> owner_;  // the process that holds the reference; 0: given back
};

/// The fixed part of a call request.
struct CallHeader {
  ManagerOp op = ManagerOp::call;
  std::uint8_t reserved[3]{};
  std::uint32_t method = 0;
  std::uint64_t id = 0;
  std::uint64_t interface_tag = 0;
};

/// Reads the arguments of a call, in order, and checks nothing is left over.
template <class... A>
std::tuple<A...> read_args(InputArchive& in) {
  std::tuple<A...> args{make_for_load<A>()...};
  std::apply([&](auto&... a) { (load_value(in, a), ...); }, args);
  if (in.remaining() != 0) throw SerializationError("corrupt request: " + std::to_string(in.remaining()) + " bytes left over");
  return args;
}

/// Calls method `method` of the object `ref` stands for, with `args`; returns its result.
template <class R, class... A>
R proxy_call(const ProxyRef& ref, std::uint32_t method, const A&... args) {
  ref.claim_for_this_process();
  std::vector<std::byte> request;
  OutputArchive ar(request);
  const CallHeader h{ManagerOp::call, {}, method, ref.id(), ref.interface_tag()};
  ar.saveBinary(&h, sizeof h);
  (save_value(ar, args), ...);
  const std::vector<std::byte> reply = manager_request(ref.endpoint(), request);
  InputArchive in(reply);
  if constexpr (std::is_void_v<R>) {
    if (in.remaining() != 0) throw SerializationError("corrupt reply: a result where none was expected");
  } else {
    return std::get<0>(read_args<R>(in));
  }
}

// ---- the server's side ---------------------------------------------------------------

/// What a servant knows of the call it serves.
class CallContext {
 public:
  virtual ~CallContext() = default;
  /// A number that names the client connection (a client thread) for as long as it is open.
  virtual std::uint64_t connection_id() const noexcept = 0;
  /// True once the client has hung up or the server is stopping: a blocking call must
  /// return (throw) soon after. Blocking servants wait in slices of kWaitSlice and look.
  virtual bool cancelled() = 0;
  /// Asks for Servant::disconnected(connection_id()) when this connection closes (a
  /// lock that must not stay held by a client that died).
  virtual void watch_disconnect() = 0;
};

/// The two queues of a channel (see the top of this file), and their ring size: one
/// small request or reply at a time, larger ones stream through.
using ChannelQueue = mp::Queue<std::vector<std::byte>>;
inline constexpr std::size_t kChannelRingBytes = std::size_t{256} << 10;
/// A message at least this large goes over the socket, and an empty message through the
/// queue says so (no request or reply is ever empty): a queue whose reader died mid-item
/// could hold its writer; a socket cannot.
inline constexpr std::size_t kChannelMaxInline = std::size_t{64} << 10;

/// Sends one message of a channel (through `q`, or over `conn` when large).
void channel_send(ChannelQueue& q, Connection& conn, std::span<const std::byte> message);
/// Receives one message of a channel into `out`; false if none came within kWaitSlice.
bool channel_receive(ChannelQueue& q, Connection& conn, std::vector<std::byte>& out);
/// True once the peer has closed (or shut down) the socket. Data waiting to be read
/// does not count.
bool peer_closed(const Connection& conn);

/// Thrown by a servant that gave up because its client hung up (no reply is sent).
struct ClientGone {};

/// How long a blocking servant waits before it looks at CallContext::cancelled() again.
inline constexpr std::chrono::milliseconds kWaitSlice{50};

/// An object that lives in a manager's server.
class Servant {
 public:
  virtual ~Servant() = default;
  /// The tag of the interface it speaks (the type_tag of its servant type, or of a tag
  /// type several servants share): a proxy that expects another is refused.
  virtual std::uint64_t interface_tag() const noexcept = 0;
  /// Runs method `method` with the arguments in `args`, writing its result to `result`.
  /// Called from any number of server threads at once: a servant guards itself.
  virtual void call(std::uint32_t method, InputArchive& args, OutputArchive& result, CallContext& ctx) = 0;
  /// Connection `connection_id` (which asked with watch_disconnect()) has closed.
  virtual void disconnected(std::uint64_t /*connection_id*/) {}
};

/// Builds a servant from the constructor arguments of a create request.
using ServantFactory = std::shared_ptr<Servant> (*)(InputArchive& ctor_args);

/// Records that servants of type `tag` are made by `make` (every servant type a binary
/// uses is recorded before main: a server only makes types it knows, named by tag,
/// never by address). Returns true.
bool register_servant_type(std::uint64_t tag, ServantFactory make) noexcept;
/// The factory of `tag`, or nullptr.
ServantFactory find_servant_type(std::uint64_t tag) noexcept;

template <class S>
struct ServantRegistration {
  static std::shared_ptr<Servant> make(InputArchive& ar) { return S::make(ar); }
  static inline const bool done = register_servant_type(type_tag<S>(), &make);
};

/// Asks the server at `ep` to make a servant of the type `tag` names from `ctor_args`;
/// returns the new object's id (one reference, for the caller).
template <class... A>
std::uint64_t manager_create_tagged(const ManagerEndpoint& ep, std::uint64_t tag, const A&... ctor_args) {
  std::vector<std::byte> request;
  OutputArchive ar(request);
  const ManagerOp op = ManagerOp::create;
  ar.saveBinary(&op, sizeof op);
  ar.saveBinary(&tag, sizeof tag);
  (save_value(ar, ctor_args), ...);
  const std::vector<std::byte> reply = manager_request(ep, request);
  InputArchive in(reply);
  return std::get<0>(read_args<std::uint64_t>(in));
}

/// manager_create_tagged for a servant template S (recorded in this binary's registry).
template <class S, class... A>
std::uint64_t manager_create(const ManagerEndpoint& ep, const A&... ctor_args) {
  (void)ServantRegistration<S>::done;  // instantiates the registration in this binary
  return manager_create_tagged(ep, type_tag<S>(), ctor_args...);
}

}  // namespace mp::detail
