// src/manager_client.cpp — the client's side of a manager: this thread's connection to
// each server, requests and replies, and the references proxies hold.
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <string>
#include <utility>
#include <vector>

#include "mp/detail/manager_core.hpp"
#include "mp/detail/self_identity.hpp"
#include "process_internal.hpp"

namespace mp::detail {
namespace {

struct Channel {
  ChannelQueue requests;
  ChannelQueue replies;
};

struct CachedConnection {
  std::string key;
  Connection conn;
  std::optional<Channel> channel;  // over a Unix socket: requests and replies go here
};

// This thread's connections, one per manager. A fork child inherits its forking thread's
// cache: those descriptors are shared with the parent and must not carry the child's
// requests, so a cache from another pid is dropped (closing the child's copies only).
struct ConnectionCache {
  pid_t pid = 0;
  std::vector<CachedConnection> entries;
  ~ConnectionCache();
};
thread_local ConnectionCache t_cache;
// Set when t_cache is destroyed (thread exit): a proxy destroyed later on this thread (a
// static) then uses a connection of its own. Trivially destructible, so always valid.
thread_local bool t_cache_gone = false;

ConnectionCache::~ConnectionCache() { t_cache_gone = true; }

Connection connect_to(const ManagerEndpoint& ep) {
  connection::ClientOptions options;
  if (!ep.authkey.empty()) options.authkey = ep.authkey;
  return connection::Client(ep.address, options);
}

// The reply of a request sent on `conn`: the payload after an ok status, or the error.
std::vector<std::byte> exchange(Connection& conn, std::span<const std::byte> request) {
  conn.send_bytes(request);
  return conn.recv_bytes();
}

// A connection to `ep`; over a Unix socket and when it will be kept, with its channel.
CachedConnection open_connection(const ManagerEndpoint& ep, bool kept) {
  CachedConnection c{ep.key, connect_to(ep), std::nullopt};
  if (kept && ep.address.is_unix()) {
    const std::byte ask[1] = {static_cast<std::byte>(ManagerOp::channel)};
    c.conn.send_bytes(ask);
    auto [requests, replies] = c.conn.recv<std::pair<ChannelQueue, ChannelQueue>>();
    c.channel.emplace(Channel{std::move(requests), std::move(replies)});
  }
  return c;
}

std::vector<std::byte> exchange(CachedConnection& c, std::span<const std::byte> request) {
  if (!c.channel) return exchange(c.conn, request);
  channel_send(c.channel->requests, c.conn, request);
  std::vector<std::byte> reply;
  while (!channel_receive(c.channel->replies, c.conn, reply)) {
    if (peer_closed(c.conn)) throw EOFError("the manager closed the connection");
  }
  return reply;
}

[[noreturn]] void throw_reply_error(InputArchive& in) {
  auto [type, message, traceback] = read_args<std::string, std::string, std::string>(in);
  // The errors a caller expects by name come back as themselves.
  if (type == "mp::Empty") throw Empty(message);
  if (type == "mp::Full") throw Full(message);
  if (type == "mp::KeyError") throw KeyError(message);
  if (type == "mp::IndexError") throw IndexError(message);
  if (type == "mp::AttributeError") throw AttributeError(message);
  if (type == "mp::ValueError") throw ValueError(message);
  if (type == "mp::TimeoutError") throw TimeoutError(message);
  if (type == "mp::BrokenBarrierError") throw BrokenBarrierError(message);
  if (type == "mp::SerializationError") throw SerializationError(message);
  throw RemoteError(std::move(type), message, std::move(traceback));
}

std::vector<std::byte> checked_payload(std::vector<std::byte> reply) {
  if (reply.empty()) throw SerializationError("corrupt reply from a manager: empty");
  static constexpr std::string_view kChallenge = "#CHALLENGE#";
  if (reply.size() >= kChallenge.size() && std::memcmp(reply.data(), kChallenge.data(), kChallenge.size()) == 0) {
    throw AuthenticationError("the manager asks for an authkey, and none was given");
  }
  const auto status = static_cast<ReplyStatus>(reply[0]);
  if (status == ReplyStatus::error) {
    InputArchive in(std::span<const std::byte>(reply).subspan(1));
    throw_reply_error(in);
  }
  if (status != ReplyStatus::ok) throw SerializationError("corrupt reply from a manager: unknown status");
  reply.erase(reply.begin());
  return reply;
}

// Drops the connections whose server has closed them (a manager shut down or gone): a
// thread that outlives many managers keeps no descriptor for the dead ones.
void drop_closed(ConnectionCache& cache) {
  std::erase_if(cache.entries, [](const CachedConnection& e) { return peer_closed(e.conn); });
}

}  // namespace

void channel_send(ChannelQueue& q, Connection& conn, std::span<const std::byte> message) {
  if (message.size() >= kChannelMaxInline) {
    // The marker first: the reader then reads the socket while the bytes are written
    // (the other order would wedge on a message larger than the socket's buffer).
    q.put(std::vector<std::byte>{});
    conn.send_bytes(message);
    return;
  }
  q.put(std::vector<std::byte>(message.begin(), message.end()));
}

bool channel_receive(ChannelQueue& q, Connection& conn, std::vector<std::byte>& out) {
  try {
    q.get_into(out, kWaitSlice);
  } catch (const Empty&) {
    return false;
  }
  if (out.empty()) out = conn.recv_bytes();  // the marker: the message is on the socket
  return true;
}

bool peer_closed(const Connection& conn) {
  if (conn.closed()) return true;
  pollfd p{conn.fileno(), POLLRDHUP, 0};
  return ::poll(&p, 1, 0) != 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void forget_manager_connection(const ManagerEndpoint& ep) noexcept {
  if (t_cache_gone || t_cache.pid != self_pid()) return;
  std::erase_if(t_cache.entries, [&](const CachedConnection& e) { return e.key == ep.key; });
}

std::vector<std::byte> manager_request(const ManagerEndpoint& ep, std::span<const std::byte> request) {
  if (ep.shut_down.load(std::memory_order_acquire)) {
    throw ValueError("the manager at " + ep.address.to_string() + " has been shut down");
  }
  if (t_cache_gone) {  // this thread is ending: a connection for this request alone, no channel
    CachedConnection c = open_connection(ep, false);
    return checked_payload(exchange(c, request));
  }
  ConnectionCache& cache = t_cache;
  if (cache.pid != self_pid()) {
    cache.entries.clear();
    cache.pid = self_pid();
  }
  std::size_t i = 0;
  while (i < cache.entries.size() && cache.entries[i].key != ep.key) ++i;
  if (i == cache.entries.size()) {
    drop_closed(cache);  // rare (once per manager and thread): the moment to tidy up
    i = cache.entries.size();
    cache.entries.push_back(open_connection(ep, true));
  }
  std::vector<std::byte> reply;
  try {
    reply = exchange(cache.entries[i], request);
  } catch (const Error&) {
    // Half a request or half a reply may be in flight: this connection is done.
    cache.entries.erase(cache.entries.begin() + static_cast<std::ptrdiff_t>(i));
    try {
      throw;
    } catch (const EOFError&) {
      throw EOFError("the manager at " + ep.address.to_string() + " went away during the call (did its process die?)");
    }
  }
  return checked_payload(std::move(reply));
}

namespace {

void send_ref_op(const ManagerEndpoint& ep, ManagerOp op, std::uint64_t id) {
  std::byte request[1 + sizeof id];
  request[0] = static_cast<std::byte>(op);
  std::memcpy(request + 1, &id, sizeof id);
  manager_request(ep, request);
}

// Every live ProxyRef of this process, so that a child gives back the references it
// holds when its target ends (its objects are not destroyed: it _exits). The lock is
// held across fork, so a child never inherits it locked; never destroyed (statics may
// hold proxies).
struct LiveRefs {
  std::mutex mu;
  std::unordered_set<ProxyRef*> refs;
};
LiveRefs& live_refs() {
  static LiveRefs* live = [] {
    auto* l = new LiveRefs;
    ::pthread_atfork([] { live_refs().mu.lock(); }, [] { live_refs().mu.unlock(); }, [] { live_refs().mu.unlock(); });
    add_child_exit_hook(&ProxyRef::release_all_at_exit);
    return l;
  }();
  return *live;
}

}  // namespace

ProxyRef::ProxyRef(std::shared_ptr<ManagerEndpoint> ep, std::uint64_t id, std::uint64_t interface_tag) noexcept
    : ep_(std::move(ep)), id_(id), tag_(interface_tag), owner_(self_pid()) {
  LiveRefs& live = live_refs();
  std::lock_guard g(live.mu);
  try {
    live.refs.insert(this);
  } catch (...) {
    // Out of memory: this reference is then given back by its destructor only.
  }
}

ProxyRef::~ProxyRef() {
  {
    LiveRefs& live = live_refs();
    std::lock_guard g(live.mu);
    live.refs.erase(this);
  }
  give_back();
}

void ProxyRef::give_back() noexcept {
  if (owner_.exchange(0, std::memory_order_relaxed) != self_pid() || ep_->shut_down.load(std::memory_order_acquire)) return;
  try {
    send_ref_op(*ep_, ManagerOp::decref, id_);
  } catch (...) {
    // The server is gone or unreachable: its objects went with it.
  }
}

void ProxyRef::release_all_at_exit() {
  LiveRefs& live = live_refs();
  std::lock_guard g(live.mu);  // held throughout: no other thread's ProxyRef can go meanwhile
  for (ProxyRef* r : live.refs) r->give_back();
}

void ProxyRef::claim_for_this_process() const {
  const pid_t me = self_pid();
  pid_t seen = owner_.load(std::memory_order_relaxed);
  if (seen == me) [[likely]] return;
  send_ref_op(*ep_, ManagerOp::incref, id_);
  // Two threads of a fork child may claim at once: one reference is kept, the other given back.
  if (!owner_.compare_exchange_strong(seen, me, std::memory_order_relaxed)) send_ref_op(*ep_, ManagerOp::decref, id_);
}

void ProxyRef::incref_for_transfer() const {
  claim_for_this_process();
  send_ref_op(*ep_, ManagerOp::incref, id_);
}

}  // namespace mp::detail
