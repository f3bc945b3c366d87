// src/forkserver.cpp — the forkserver itself (the server half of CPython's
// forkserver.py).
//
// A fresh exec of the program, entered from freeze_support() before main() does
// anything, so it holds none of the program's threads, locks or state: forking it is
// always safe, and cheap because it is small. It serves fork requests
// (forkserver_protocol.hpp) until every client has closed the control socket, reaps its
// children through a signalfd and reports their wait status on their status sockets.
// SIGINT is ignored (a Ctrl-C meant for the program must not kill the server under
// its children); children get the default back.
//
// A malformed request (wrong size or magic, missing descriptors) is dropped with its
// descriptors closed; the server keeps serving.
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <vector>

#include "forkserver_protocol.hpp"
#include "mp/detail/code_identity.hpp"
#include "mp/detail/sys.hpp"
#include "process_internal.hpp"
#include "reduction.hpp"

namespace mp::detail {
namespace {

using namespace forkserver;

struct Server {
  int control;
  int sigchld;
  std::map<pid_t, UniqueFd> status_of;  // running children -> their status socket
};

[[noreturn]] void become_child(Server& s, const Request& req, std::span<const std::byte> payload,
                               std::vector<UniqueFd>& travelling, pid_t server_pid) {
  ::close(s.control);
  ::close(s.sigchld);
  for (auto& [pid, fd] : s.status_of) fd.reset();
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGINT, SIG_DFL);
  child_common_setup(req.daemon != 0, server_pid);
  std::vector<int> fds;
  for (auto& fd : travelling) fds.push_back(fd.release());
  run_child_payload(payload, fds);
}

void handle_request(Server& s, pid_t server_pid, std::vector<std::byte>& buf) {
  std::vector<UniqueFd> fds;
  bool truncated = false;
  auto n = recv_record(s.control, buf, fds, &truncated);
  if (n == 0) ::_exit(0);  // every client is gone
  if (n < 0 || truncated || static_cast<std::size_t>(n) < sizeof(Request)) return;
  Request req;
  std::memcpy(&req, buf.data(), sizeof req);
  const std::size_t want_fds = kFixedFds + (req.payload_inline ? 0 : 1) + req.travelling_fds;
  if (req.magic != kRequestMagic || fds.size() != want_fds) return;

  std::vector<std::byte> payload_storage;
  std::span<const std::byte> payload;
  if (req.payload_inline) {
    if (static_cast<std::size_t>(n) != sizeof req + req.payload_size) return;
    payload = std::span<const std::byte>(buf.data() + sizeof req, req.payload_size);
  } else {
    payload_storage.resize(req.payload_size);
    std::size_t got = 0;
    while (got < payload_storage.size()) {
      auto r = ::pread(fds[kFixedFds].get(), payload_storage.data() + got, payload_storage.size() - got,
                       static_cast<off_t>(got));
      if (r <= 0) return;
      got += static_cast<std::size_t>(r);
    }
    payload = payload_storage;
  }
  UniqueFd status = std::move(fds[0]);
  UniqueFd out = std::move(fds[1]), err = std::move(fds[2]);
  std::vector<UniqueFd> travelling;
  for (std::size_t i = kFixedFds + (req.payload_inline ? 0 : 1); i < fds.size(); ++i) {
    travelling.push_back(std::move(fds[i]));
  }

  const pid_t pid = ::fork();
  if (pid < 0) return;  // the client sees EOF on its status socket: "could not start"
  if (pid == 0) {
    ::dup2(out.get(), STDOUT_FILENO);
    ::dup2(err.get(), STDERR_FILENO);
    out.reset();
    err.reset();
    become_child(s, req, payload, travelling, server_pid);
  }

  Started started{pid};
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  std::vector<int> attach;
  if (pidfd >= 0) attach.push_back(pidfd);
  try {
    send_record(status.get(), {reinterpret_cast<const std::byte*>(&started), sizeof started}, {}, attach);
  } catch (...) {
  }
  if (pidfd >= 0) ::close(pidfd);
  s.status_of[pid] = std::move(status);
}

void reap_children(Server& s) {
  signalfd_siginfo info;
  while (::read(s.sigchld, &info, sizeof info) == sizeof info) {
  }
  for (;;) {
    int st = 0;
    pid_t pid = ::waitpid(-1, &st, WNOHANG);
    if (pid <= 0) break;
    auto it = s.status_of.find(pid);
    if (it == s.status_of.end()) continue;
    Ended ended{st};
    try {
      send_record(it->second.get(), {reinterpret_cast<const std::byte*>(&ended), sizeof ended}, {}, {});
    } catch (...) {
    }
    s.status_of.erase(it);
  }
}

}  // namespace

[[noreturn]] void forkserver_main(int control_fd) {
  ::prctl(PR_SET_NAME, "mp-forkserver");
  // Warm up once here what every child would otherwise do itself after the fork (find
  // the executable's build-id and load address): the children inherit it (CPython's
  // forkserver preloads modules for the same reason).
  try {
    (void)main_build_id();
    (void)code_ref_of(reinterpret_cast<const void*>(&forkserver_main));
  } catch (...) {
  }
  ::signal(SIGINT, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, nullptr);
  Server s{control_fd, ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK), {}};
  if (s.sigchld < 0) ::_exit(3);
  const pid_t self = ::getpid();
  std::vector<std::byte> buf(sizeof(Request) + kMaxInlinePayload);
  for (;;) {
    pollfd pfds[2] = {{s.control, POLLIN, 0}, {s.sigchld, POLLIN, 0}};
    if (::poll(pfds, 2, -1) < 0) continue;
    if (pfds[1].revents) reap_children(s);
    if (pfds[0].revents) {
      try {
        handle_request(s, self, buf);
      } catch (...) {
      }
    }
  }
}

}  // namespace mp::detail
