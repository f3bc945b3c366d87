// src/popen_forkserver.cpp — the forkserver start method, client side (CPython's
// popen_forkserver.py and the client half of forkserver.py).
//
// The first forkserver start in a program spawns the server (forkserver.cpp): a fresh
// exec of this executable, single-threaded, connected by a SOCK_SEQPACKET socket pair.
// Each start then sends one request record: the child's payload (spawn.cpp) inline or
// in a memfd, a new status socket, and the descriptors that travel with the payload.
// The server forks, and answers on the status socket with the child's pid and pidfd,
// later with its wait status. The pidfd is the child's sentinel and carries its
// signals, so a recycled pid is never hit; a server that dies does not make a running
// child look ended.
//
// The server lives as long as this program holds the control socket: a forked child
// closes its copy (forget_forkserver_after_fork), so when the program ends, even by
// SIGKILL, the server sees EOF and exits, and its daemon children die with it.
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "forkserver_protocol.hpp"
#include "mp/detail/sys.hpp"
#include "process_internal.hpp"
#include "reduction.hpp"

namespace mp::detail {
namespace {

struct Client {
  std::mutex mu;
  int control = -1;
  pid_t server = 0;
};

// Created on first use and never freed; a forked child that never used one touches
// nothing (page faults are what a fork costs).
std::atomic<Client*> g_client{nullptr};

Client& client() {
  static Client* c = [] {
    auto* made = new Client;
    g_client.store(made, std::memory_order_release);
    return made;
  }();
  return *c;
}

// Starts the server if there is none. Called with the client's mutex held.
int ensure_server(Client& c) {
  if (c.control >= 0) return c.control;
  int sv[2];
  sys("socketpair", [&] { return ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv); });
  UniqueFd mine(sv[0]), theirs(sv[1]);
  c.server = spawn_self({"--mp-forkserver", std::to_string(::getpid())}, {theirs.get()});
  c.control = mine.release();
  return c.control;
}

// The server is gone: forget it (and reap it) so the next start makes a new one.
void drop_server(Client& c) {
  if (c.control >= 0) ::close(c.control);
  c.control = -1;
  if (c.server > 0) {
    int st;
    ::waitpid(c.server, &st, 0);
  }
  c.server = 0;
}

// The sentinel is the child's pidfd: it becomes readable when the child itself ends,
// whether or not the server is still there to report the status. The status arrives
// on the status socket right after (the server reaps at once); if the server died, the
// status is lost and the exit code is 255 (as in CPython).
class ForkserverPopen final : public Popen {
 public:
  ForkserverPopen(pid_t pid, UniqueFd pidfd, UniqueFd status)
      : pid_(pid), pidfd_(std::move(pidfd)), status_(std::move(status)) {}
  pid_t pid() const noexcept override { return pid_; }
  int sentinel() const noexcept override { return pidfd_.get(); }

  std::optional<int> poll() override {
    if (exitcode_) return exitcode_;
    if (read_status(0)) return exitcode_;
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 0) <= 0) return std::nullopt;  // still running
    // The child has ended: its status is on the way, unless the server is gone.
    if (!read_status(kStatusGraceMs)) exitcode_ = 255;
    return exitcode_;
  }

  void send_signal(int sig) override {
    if (!exitcode_) pidfd_send_signal(pidfd_.get(), sig);
  }

 private:
  static constexpr int kStatusGraceMs = 2000;

  // Reads the Ended record if it arrives within `wait_ms`. True once exitcode_ is known
  // (a short record or EOF means the server died: 255).
  bool read_status(int wait_ms) {
    if (server_gone_) return false;
    if (wait_ms > 0) {
      pollfd pfd{status_.get(), POLLIN, 0};
      if (sys_nothrow([&] { return ::poll(&pfd, 1, wait_ms); }) <= 0) return false;
    }
    forkserver::Ended ended{};
    std::vector<UniqueFd> fds;
    auto n = recv_record(status_.get(), {reinterpret_cast<std::byte*>(&ended), sizeof ended}, fds, nullptr,
                         MSG_DONTWAIT);
    if (n < 0) return false;
    if (n != sizeof ended) {
      server_gone_ = true;
      return false;
    }
    exitcode_ = exitcode_from_wait_status(ended.wait_status);
    return true;
  }

  pid_t pid_;
  UniqueFd pidfd_;
  UniqueFd status_;
  bool server_gone_ = false;
  std::optional<int> exitcode_;
};

}  // namespace

pid_t forkserver_pid() noexcept {
  Client* c = g_client.load(std::memory_order_acquire);
  return c ? c->server : 0;
}

void forget_forkserver_after_fork() noexcept {
  Client* cp = g_client.load(std::memory_order_acquire);
  if (!cp) return;
  auto& c = *cp;
  // The mutex may have been held by another thread of the parent at fork time.
  new (&c.mu) std::mutex();
  if (c.control >= 0) ::close(c.control);
  c.control = -1;
  c.server = 0;
}

std::unique_ptr<Popen> launch_forkserver(Process& process) {
  std::vector<int> fds;
  std::vector<std::byte> payload = make_child_payload(process, fds);

  forkserver::Request req{};
  req.magic = forkserver::kRequestMagic;
  req.travelling_fds = static_cast<std::uint32_t>(fds.size());
  req.payload_size = payload.size();
  req.payload_inline = payload.size() <= forkserver::kMaxInlinePayload;
  req.daemon = process.daemon();
  if (fds.size() + forkserver::kFixedFds + 1 > static_cast<std::size_t>(forkserver::kMaxFds)) {
    throw ValueError("too many descriptors travel with this process's arguments");
  }

  int sv[2];
  sys("socketpair", [&] { return ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv); });
  UniqueFd status(sv[0]), status_theirs(sv[1]);
  UniqueFd memfd;
  flush_stdio();
  std::vector<int> attached{status_theirs.get(), STDOUT_FILENO, STDERR_FILENO};
  if (!req.payload_inline) {
    memfd.reset(static_cast<int>(sys("memfd_create", [] { return ::memfd_create("mp-forkserver-payload", MFD_CLOEXEC); })));
    write_all(memfd.get(), payload.data(), payload.size());
    attached.push_back(memfd.get());
  }
  attached.insert(attached.end(), fds.begin(), fds.end());
  std::span<const std::byte> head(reinterpret_cast<const std::byte*>(&req), sizeof req);
  std::span<const std::byte> body;
  if (req.payload_inline) body = payload;

  auto& c = client();
  {
    std::lock_guard g(c.mu);
    int control = ensure_server(c);
    if (!send_record(control, head, body, attached)) {
      // The server died since the last start: start a new one, once.
      drop_server(c);
      control = ensure_server(c);
      if (!send_record(control, head, body, attached)) {
        drop_server(c);
        throw ProcessError("the forkserver died before it could start " + process.name());
      }
    }
  }
  status_theirs.reset();

  forkserver::Started started{};
  std::vector<UniqueFd> got;
  auto n = recv_record(status.get(), {reinterpret_cast<std::byte*>(&started), sizeof started}, got, nullptr);
  if (n != sizeof started || got.size() != 1) {
    throw ProcessError("the forkserver could not start " + process.name());
  }
  return std::make_unique<ForkserverPopen>(started.pid, std::move(got[0]), std::move(status));
}

}  // namespace mp::detail
