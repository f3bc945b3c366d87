// src/reduction.cpp — SCM_RIGHTS in one place.
#include "reduction.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace mp::detail {

void attach_fds(msghdr& msg, void* control, std::span<const int> fds) {
  if (fds.empty()) return;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
}

void collect_fds(msghdr& msg, std::vector<int>& out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      out.push_back(fd);
    }
  }
}

bool send_record(int sock, std::span<const std::byte> head, std::span<const std::byte> body,
                 std::span<const int> fds) {
  iovec iov[2] = {{const_cast<std::byte*>(head.data()), head.size()},
                  {const_cast<std::byte*>(body.data()), body.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = body.empty() ? 1 : 2;
  std::vector<cmsghdr> control(CMSG_SPACE(sizeof(int) * fds.size()) / sizeof(cmsghdr) + 1);
  attach_fds(msg, control.data(), fds);
  auto r = sys_nothrow([&] { return ::sendmsg(sock, &msg, MSG_NOSIGNAL); });
  if (r == -EPIPE || r == -ECONNRESET) return false;
  if (r < 0) throw_os_error("sendmsg", static_cast<int>(-r));
  return true;
}

std::ptrdiff_t recv_record(int sock, std::span<std::byte> buf, std::vector<UniqueFd>& fds, bool* truncated, int flags) {
  iovec iov{buf.data(), buf.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  auto r = sys_nothrow([&] { return ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags); });
  if (r == -ECONNRESET) return 0;
  if (r == -EAGAIN || r == -EWOULDBLOCK) return -1;
  if (r < 0) throw_os_error("recvmsg", static_cast<int>(-r));
  std::vector<int> raw;
  collect_fds(msg, raw);
  for (int fd : raw) fds.emplace_back(fd);
  if (truncated) *truncated = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  return static_cast<std::ptrdiff_t>(r);
}

}  // namespace mp::detail
