// src/managers.cpp — BaseManager and Manager: starting a server process, connecting to
// one, and shutting it down.
#include "mp/managers.hpp"

#include <signal.h>
#include <sodium.h>

#include <string>
#include <utility>
#include <variant>

namespace mp {
namespace detail {
namespace {

struct ManagerServerConfig {
  connection::Address address;
  std::optional<std::string> authkey;
  template <class A>
  void serialize(A& ar) {
    ar(address, authkey);
  }
};

// What the server process tells its parent: the address it listens on, or why it could not.
using ReadyMessage = std::variant<connection::Address, std::string>;

void run_server(const ManagerServerConfig& config, Connection& ready,
                const std::vector<std::pair<std::string, std::shared_ptr<Servant>>>& named) {
  // Ctrl-C in a terminal reaches the whole process group: the manager stays up until its
  // owner shuts it down, as Python's does.
  ::signal(SIGINT, SIG_IGN);
  std::optional<Server> server;
  try {
    server.emplace(config.address, config.authkey);
    for (const auto& [name, servant] : named) server->register_servant(name, servant);
  } catch (const std::exception& e) {
    ready.send(ReadyMessage(std::string(e.what())));
    return;
  }
  ready.send(ReadyMessage(server->address()));
  ready.close();
  server->serve_forever();
}

// The server process's target under spawn and forkserver: a plain function (no named objects).
void manager_server_main(ManagerServerConfig config, Connection ready) { run_server(config, ready, {}); }

std::string random_authkey() {
  if (sodium_init() < 0) throw Error("libsodium could not be initialised");
  unsigned char bytes[32];
  randombytes_buf(bytes, sizeof bytes);
  return std::string(reinterpret_cast<const char*>(bytes), sizeof bytes);
}

}  // namespace
}  // namespace detail

BaseManager::BaseManager(ManagerOptions options) : options_(std::move(options)) {}
BaseManager::BaseManager(BaseManager&&) noexcept = default;

BaseManager::~BaseManager() {
  if (process_) {
    try {
      shutdown();
    } catch (...) {
    }
  }
}

const std::shared_ptr<detail::ManagerEndpoint>& BaseManager::endpoint_ptr() const {
  if (!ep_) throw ValueError("the manager is not started or connected: call start(), connect() or get_server() first");
  return ep_;
}

const connection::Address& BaseManager::address() const { return endpoint().address; }

std::optional<pid_t> BaseManager::pid() const { return process_ ? process_->pid() : std::nullopt; }

Server& BaseManager::get_server() {
  if (server_) return *server_;
  if (ep_) throw ValueError("this manager is already started or connected");
  if (!options_.authkey) options_.authkey = detail::random_authkey();
  auto server = std::make_unique<Server>(options_.address, options_.authkey);
  for (const auto& r : registrations_) server->register_servant(r.name, r.make());
  ep_ = std::make_shared<detail::ManagerEndpoint>(server->address(), *options_.authkey);
  server_ = std::move(server);
  return *server_;
}

void BaseManager::start() {
  if (ep_) throw ValueError("this manager is already started or connected");
  if (!options_.authkey) options_.authkey = detail::random_authkey();
  const StartMethod method = options_.start_method.value_or(get_start_method());
  detail::ManagerServerConfig config{options_.address, options_.authkey};
  auto [reader, writer] = Pipe(false);
  ProcessOptions popts{.name = "SyncManager", .daemon = true, .start_method = method};
  std::unique_ptr<Process> p;
  if (registrations_.empty()) {
    p = std::make_unique<Process>(popts, detail::manager_server_main, config, std::move(writer));
  } else {
    if (method != StartMethod::fork) {
      throw ValueError("start() carries registered objects only under the fork start method; "
                       "serve them with get_server().serve_forever() instead");
    }
    std::vector<std::pair<std::string, std::shared_ptr<detail::Servant>>> named;
    for (const auto& r : registrations_) named.emplace_back(r.name, r.make());
    p = std::make_unique<Process>(
        popts, [config, named](Connection ready) { detail::run_server(config, ready, named); }, std::move(writer));
  }
  p->start();
  // Wait for the address, or for the process to end without sending it.
  for (;;) {
    if (reader.poll(std::chrono::milliseconds(100))) break;
    if (!p->is_alive()) break;
  }
  detail::ReadyMessage ready;
  try {
    ready = reader.recv<detail::ReadyMessage>();
  } catch (const EOFError&) {
    p->join();
    throw ProcessError("the manager's server process ended before it listened (exit code " +
                       std::to_string(p->exitcode().value_or(-1)) + ")");
  }
  if (auto* why = std::get_if<std::string>(&ready)) {
    p->join();
    throw ProcessError("the manager's server could not start: " + *why);
  }
  ep_ = std::make_shared<detail::ManagerEndpoint>(std::get<connection::Address>(ready), *options_.authkey);
  process_ = std::move(p);
}

void BaseManager::connect() {
  if (ep_) throw ValueError("this manager is already started or connected");
  auto ep = std::make_shared<detail::ManagerEndpoint>(options_.address, options_.authkey.value_or(""));
  object_count_of(*ep);  // a first request: a wrong address or key raises here
  ep_ = std::move(ep);
}

std::size_t BaseManager::object_count_of(const detail::ManagerEndpoint& ep) {
  const std::byte request[1] = {static_cast<std::byte>(detail::ManagerOp::count)};
  const auto reply = detail::manager_request(ep, request);
  detail::InputArchive in(reply);
  return std::get<0>(detail::read_args<std::uint64_t>(in));
}

std::size_t BaseManager::object_count() const { return object_count_of(endpoint()); }

void BaseManager::shutdown() {
  if (server_) {
    server_->shutdown();
    if (ep_) ep_->shut_down.store(true, std::memory_order_release);
    return;
  }
  if (!ep_ || ep_->shut_down.load(std::memory_order_acquire)) return;
  const std::byte request[1] = {static_cast<std::byte>(detail::ManagerOp::shutdown)};
  try {
    detail::manager_request(*ep_, request);
  } catch (const Error&) {
    if (!process_) throw;  // a remote server we could not tell: say so
    // Our own server process is unreachable (it died?): it is ended below anyway.
  }
  ep_->shut_down.store(true, std::memory_order_release);
  detail::forget_manager_connection(*ep_);
  if (process_) {
    if (!process_->join(options_.shutdown_timeout)) {
      process_->terminate();
      if (!process_->join(std::chrono::seconds(1))) {
        process_->kill();
        process_->join();
      }
    }
    process_.reset();
  }
}

Manager::Manager(ManagerOptions options) : BaseManager(std::move(options)) { start(); }

}  // namespace mp
