// src/forkserver_protocol.hpp — the messages between a program and its forkserver.
//
// Control socket (SOCK_SEQPACKET, one record per request, so requests from several
// threads never interleave):
//   client -> server: Request, then the payload inline (if small), with descriptors
//                     [status socket, stdout, stderr, (payload memfd if not inline),
//                      travelling fds...]
//   The child's stdout and stderr are the client's at the time of the request (not
//   the server's, which are the program's at the time the server started).
// Status socket (SOCK_SEQPACKET, one per child, made by the client):
//   server -> client: Started {pid} with the child's pidfd, then later
//                     Ended {wait status} when the server has reaped the child.
//   EOF without Ended: the server died; the child's exit status is lost.
#pragma once

#include <cstdint>

namespace mp::detail::forkserver {

constexpr std::uint32_t kRequestMagic = 0x4d504653;  // "MPFS"
constexpr std::size_t kMaxInlinePayload = 48 * 1024;
constexpr int kMaxFds = 200;
constexpr std::size_t kFixedFds = 3;  // status, stdout, stderr

struct Request {
  std::uint32_t magic;
  std::uint32_t travelling_fds;  // descriptors after the status socket (and memfd)
  std::uint64_t payload_size;
  std::uint8_t payload_inline;   // 1: payload follows the header; 0: in a memfd
  std::uint8_t daemon;
  std::uint8_t reserved[6];
};

struct Started {
  std::int32_t pid;
};

struct Ended {
  std::int32_t wait_status;
};

}  // namespace mp::detail::forkserver
