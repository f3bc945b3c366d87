// src/reduction.hpp — passing descriptors between processes over Unix sockets
// (CPython's reduction.sendfds / recvfds).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <span>
#include <vector>

#include "mp/detail/sys.hpp"

namespace mp::detail {

/// Attaches `fds` (SCM_RIGHTS) to `msg`, using `control` (at least
/// CMSG_SPACE(sizeof(int) * fds.size()) bytes, aligned for cmsghdr). No-op when empty.
void attach_fds(msghdr& msg, void* control, std::span<const int> fds);

/// Appends the descriptors that arrived with `msg` to `out` (the caller owns them).
void collect_fds(msghdr& msg, std::vector<int>& out);

/// Sends one record made of `head` then `body`, with `fds` attached (SCM_RIGHTS).
/// Returns false if the peer is gone (EPIPE, ECONNRESET); throws mp::OSError otherwise.
/// Never raises SIGPIPE.
bool send_record(int sock, std::span<const std::byte> head, std::span<const std::byte> body,
                 std::span<const int> fds);

/// Receives one record into `buf` (descriptors into `fds`, close-on-exec). Returns the
/// record's size (0 at EOF; -1 when `flags` has MSG_DONTWAIT and nothing is there).
/// A record larger than `buf` is truncated and *truncated set.
std::ptrdiff_t recv_record(int sock, std::span<std::byte> buf, std::vector<UniqueFd>& fds, bool* truncated,
                        int flags = 0);

}  // namespace mp::detail
