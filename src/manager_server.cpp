// src/manager_server.cpp — a manager's server (Python's multiprocessing.managers.Server):
// the table of objects, a thread per client connection, and the dispatch of requests.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <list>
#include <map>
#include <optional>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mp/detail/servants.hpp"
#include "mp/managers.hpp"
#include "process_internal.hpp"

namespace mp {
namespace detail {
namespace {

struct Registry {
  std::mutex mu;
  std::unordered_map<std::uint64_t, ServantFactory> factories;
};
Registry& registry() {
  static auto* r = new Registry;  // never destroyed: statics of other units register into it
  return *r;
}

}  // namespace

bool register_servant_type(std::uint64_t tag, ServantFactory make) noexcept {
  try {
    Registry& r = registry();
    std::lock_guard g(r.mu);
    r.factories.emplace(tag, make);
  } catch (...) {
  }
  return true;
}

ServantFactory find_servant_type(std::uint64_t tag) noexcept {
  register_builtin_servants();
  Registry& r = registry();
  std::lock_guard g(r.mu);
  auto it = r.factories.find(tag);
  return it == r.factories.end() ? nullptr : it->second;
}

}  // namespace detail

using detail::CallContext;
using detail::InputArchive;
using detail::ManagerOp;
using detail::OutputArchive;
using detail::ReplyStatus;
using detail::Servant;

struct Server::State {
  connection::Listener listener;
  std::atomic<bool> stopping{false};
  std::atomic<bool> serving{false};

  std::mutex mu;  // guards everything below
  struct Entry {
    std::shared_ptr<Servant> servant;
    std::int64_t refs = 0;
    bool pinned = false;  // a named object: lives as long as the server
  };
  std::unordered_map<std::uint64_t, Entry> objects;
  std::map<std::string, std::uint64_t> named;
  std::uint64_t next_id = 1;
  std::uint64_t next_connection = 1;
  struct Client {
    int fd;
    std::thread thread;
    bool done = false;
  };
  std::list<Client> clients;

  State(connection::Address address, std::optional<std::string> authkey)
      : listener(std::move(address), connection::ListenerOptions{.authkey = std::move(authkey)}) {}

  std::uint64_t add(std::shared_ptr<Servant> servant, bool pinned) {
    std::lock_guard g(mu);
    const std::uint64_t id = next_id++;
    objects.emplace(id, Entry{std::move(servant), 1, pinned});
    return id;
  }
  std::shared_ptr<Servant> find(std::uint64_t id) {
    std::lock_guard g(mu);
    auto it = objects.find(id);
    if (it == objects.end()) {
      throw ValueError("the manager holds no object with id " + std::to_string(id) + " (every reference to it was released)");
    }
    return it->second.servant;
  }
  void incref(std::uint64_t id) {
    std::lock_guard g(mu);
    auto it = objects.find(id);
    if (it == objects.end()) throw ValueError("incref of an object the manager no longer holds (id " + std::to_string(id) + ")");
    ++it->second.refs;
  }
  void decref(std::uint64_t id) {
    std::shared_ptr<Servant> dying;  // destroyed after the lock is released
    std::lock_guard g(mu);
    auto it = objects.find(id);
    if (it == objects.end()) return;
    if (--it->second.refs <= 0 && !it->second.pinned) {
      dying = std::move(it->second.servant);
      objects.erase(it);
    }
  }
};

namespace {

// The context of the calls on one client connection.
class ConnectionContext final : public CallContext {
 public:
  ConnectionContext(Server::State& s, Connection& conn, std::uint64_t id) : s_(s), conn_(conn), id_(id) {}
  std::uint64_t connection_id() const noexcept override { return id_; }
  bool cancelled() override { return s_.stopping.load(std::memory_order_acquire) || detail::peer_closed(conn_); }
  void watch_disconnect() override {
    for (const auto& w : watched_) {
      if (w.lock() == current) return;
    }
    watched_.push_back(current);
  }
  void connection_closed() {
    for (const auto& w : watched_) {
      if (auto servant = w.lock()) servant->disconnected(id_);
    }
  }
  std::shared_ptr<Servant> current;  // the servant being called

 private:
  Server::State& s_;
  Connection& conn_;
  std::uint64_t id_;
  std::vector<std::weak_ptr<Servant>> watched_;
};

void write_error(std::vector<std::byte>& reply) {
  const auto [type, message] = detail::describe_current_exception();
  const std::string traceback = detail::recorded_throw_stack("serve_request", "mp::Server::");
  reply.assign(1, static_cast<std::byte>(ReplyStatus::error));
  OutputArchive ar(reply);
  ar(type, message, traceback);
}

// Serves one request; returns true when it asked the server to stop.
bool serve_request(Server::State& s, std::span<const std::byte> request, std::vector<std::byte>& reply,
                   ConnectionContext& ctx) {
  reply.assign(1, static_cast<std::byte>(ReplyStatus::ok));
  OutputArchive out(reply);
  InputArchive in(request);
  if (request.empty()) throw SerializationError("corrupt request: empty");
  const auto op = static_cast<ManagerOp>(request[0]);
  switch (op) {
    case ManagerOp::call: {
      detail::CallHeader h;
      in.loadBinary(&h, sizeof h);
      ctx.current = s.find(h.id);
      if (ctx.current->interface_tag() != h.interface_tag) {
        throw SerializationError("a proxy of another type called object " + std::to_string(h.id));
      }
      ctx.current->call(h.method, in, out, ctx);
      ctx.current.reset();
      return false;
    }
    case ManagerOp::create: {
      std::uint8_t op_byte = 0;
      std::uint64_t tag = 0;
      in.loadBinary(&op_byte, 1);
      in.loadBinary(&tag, sizeof tag);
      const detail::ServantFactory make = detail::find_servant_type(tag);
      if (!make) {
        throw ValueError("this manager cannot make that kind of object: its program does not use the type "
                         "(is the server another program?)");
      }
      detail::save_value(out, s.add(make(in), false));
      return false;
    }
    case ManagerOp::incref:
    case ManagerOp::decref: {
      auto [op_byte, id] = detail::read_args<std::uint8_t, std::uint64_t>(in);
      if (op == ManagerOp::incref) {
        s.incref(id);
      } else {
        s.decref(id);
      }
      return false;
    }
    case ManagerOp::get_named: {
      auto [op_byte, name, tag] = detail::read_args<std::uint8_t, std::string, std::uint64_t>(in);
      std::lock_guard g(s.mu);
      auto it = s.named.find(name);
      if (it == s.named.end()) throw KeyError("the manager has no object named '" + name + "'");
      auto& entry = s.objects.at(it->second);
      if (entry.servant->interface_tag() != tag) {
        throw SerializationError("the object named '" + name + "' is not of the kind this proxy speaks to");
      }
      ++entry.refs;
      detail::save_value(out, it->second);
      return false;
    }
    case ManagerOp::count: {
      detail::read_args<std::uint8_t>(in);
      std::lock_guard g(s.mu);
      detail::save_value(out, static_cast<std::uint64_t>(s.objects.size() - s.named.size()));
      return false;
    }
    case ManagerOp::shutdown:
      detail::read_args<std::uint8_t>(in);
      return true;
    case ManagerOp::channel:
      throw ValueError("a channel is asked for once, over a Unix socket");
  }
  throw SerializationError("corrupt request: unknown operation " + std::to_string(static_cast<int>(op)));
}

// The queues of a client that asked for a channel.
struct Channel {
  detail::ChannelQueue requests{QueueOptions{.maxsize = 0, .capacity_bytes = detail::kChannelRingBytes}};
  detail::ChannelQueue replies{QueueOptions{.maxsize = 0, .capacity_bytes = detail::kChannelRingBytes}};
};

void serve_client(Server::State& s, Connection& conn, std::uint64_t id) {
  detail::set_capture_throw_stacks(true);
  ConnectionContext ctx(s, conn, id);
  std::optional<Channel> channel;
  std::vector<std::byte> request;
  std::vector<std::byte> reply;
  for (;;) {
    if (channel) {
      try {
        if (!detail::channel_receive(channel->requests, conn, request)) {
          if (s.stopping.load(std::memory_order_acquire) || detail::peer_closed(conn)) break;
          continue;
        }
      } catch (...) {
        break;
      }
    } else {
      try {
        request = conn.recv_bytes();
      } catch (...) {
        break;  // the client hung up, or sent a frame that is not one: either way, done
      }
      if (request.size() == 1 && request[0] == static_cast<std::byte>(ManagerOp::channel)) {
        try {
          channel.emplace();
          conn.send(std::pair(channel->requests, channel->replies));
        } catch (...) {
          break;
        }
        continue;
      }
    }
    bool stop = false;
    try {
      stop = serve_request(s, request, reply, ctx);
    } catch (const detail::ClientGone&) {
      break;
    } catch (...) {
      ctx.current.reset();
      try {
        write_error(reply);
      } catch (...) {
        break;  // out of memory even for the error
      }
    }
    try {
      if (channel) {
        detail::channel_send(channel->replies, conn, reply);
      } else {
        conn.send_bytes(reply);
      }
    } catch (...) {
      break;
    }
    if (stop) s.stopping.store(true, std::memory_order_release);
  }
  ctx.connection_closed();
}

}  // namespace

Server::Server(connection::Address address, std::optional<std::string> authkey)
    : s_(std::make_shared<State>(std::move(address), std::move(authkey))) {}

Server::~Server() {
  if (!s_) return;
  shutdown();
  while (s_->serving.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

Server::Server(Server&&) noexcept = default;

const connection::Address& Server::address() const { return s_->listener.address(); }

void Server::register_servant(std::string name, std::shared_ptr<detail::Servant> servant) {
  const std::uint64_t id = s_->add(std::move(servant), true);
  std::lock_guard g(s_->mu);
  if (!s_->named.emplace(std::move(name), id).second) {
    s_->objects.erase(id);
    throw ValueError("an object of that name is already registered");
  }
}

void Server::shutdown() noexcept {
  if (s_) s_->stopping.store(true, std::memory_order_release);
}

void Server::serve_forever() {
  State& s = *s_;
  if (s.serving.exchange(true)) throw ValueError("serve_forever() is already running on this server");
  // However it ends (shutdown, or an error accept() raises), every client thread is
  // woken and joined, and ~Server stops waiting.
  struct Finish {
    State& s;
    ~Finish() {
      {
        std::lock_guard g(s.mu);
        for (auto& c : s.clients) {
          if (!c.done) ::shutdown(c.fd, SHUT_RDWR);  // their sockets read EOF; their waits see `stopping`
        }
      }
      s.stopping.store(true, std::memory_order_release);
      for (auto& c : s.clients) c.thread.join();
      s.clients.clear();
      s.listener.close();
      s.serving.store(false, std::memory_order_release);
    }
  } finish{s};
  detail::register_builtin_servants();
  while (!s.stopping.load(std::memory_order_acquire)) {
    try {
      Connection conn = s.listener.accept(std::chrono::milliseconds(50));
      std::lock_guard g(s.mu);
      const std::uint64_t id = s.next_connection++;
      auto& client = s.clients.emplace_back(State::Client{conn.fileno(), {}, false});
      try {
        client.thread = std::thread([&s, &client, c = std::move(conn), id]() mutable {
          serve_client(s, c, id);
          std::lock_guard g2(s.mu);
          client.done = true;  // before the descriptor closes: stop never shuts down a reused one
          c.close();
        });
      } catch (...) {
        s.clients.pop_back();  // no thread (the connection closed with the lambda): refuse this client
        throw;
      }
    } catch (const TimeoutError&) {
    } catch (const AuthenticationError&) {
      // A client with the wrong key, or none, or garbage: refused; serve the others.
    } catch (const OSError&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // out of descriptors...: try again
    } catch (const std::system_error&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // no thread to be had now: try again
    }
    // Reap the threads of clients that have gone.
    std::list<State::Client> gone;
    {
      std::lock_guard g(s.mu);
      for (auto it = s.clients.begin(); it != s.clients.end();) {
        auto next = std::next(it);
        if (it->done) gone.splice(gone.end(), s.clients, it);
        it = next;
      }
    }
    for (auto& c : gone) c.thread.join();
  }
}

}  // namespace mp
