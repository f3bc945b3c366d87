// bench/bulk_transfer.cpp — workload 3 of the peers: 64 MiB from the child to the parent,
// 1 warm-up then 7 timed transfers, median in GB/s (GB = 1e9 bytes), higher is better.
// As the peers, one child lives across all the transfers: it fills its 64 MiB source
// buffer with 0x5a once, then sends it for every "g" from the parent and ends on
// anything else. Each transfer is timed in the parent from right before its "g" to the
// moment the whole 64 MiB is in its hands; the parent checks the size and the first and
// last bytes (cleared before every transfer).
//
//   mp_pipe_bytes   mp::Pipe() (duplex): the parent send_bytes("g"); the child
//                   send_bytes(64 MiB buffer); the parent recv_bytes_into a preallocated,
//                   pre-faulted 64 MiB buffer (as c_pipe reads into one)
//   mp_queue_bytes  mp::Queue<std::vector<unsigned char>> (default 4 MiB ring: the item
//                   streams through it); "g" over a control mp::Pipe(); the child put()s
//                   its vector, the parent get_into()s one vector it keeps (faulted in by
//                   the warm-up), as mp_pipe_bytes and c_pipe read into a preallocated
//                   buffer. vector<unsigned char>, not vector<std::byte>: the codec copies
//                   a vector of an arithmetic type with one memcpy, a vector<std::byte>
//                   element by element (4x slower to encode here).
//   mp_queue_bytes_new  the same, but the parent get()s a new vector every time (as
//                   cpython_pipe_bytes gets a new bytes object): the kernel clearing
//                   64 MiB of fresh pages is part of the time (here it costs more than
//                   the copy).
//   mp_shared_memory  as cpython_shared_memory: the parent creates a 64 MiB
//                   mp::SharedMemory (not pre-faulted: the warm-up transfer faults it in)
//                   and passes its name; the child attaches by name, and on every "g"
//                   (over an mp::Pipe()) memcpy's its 64 MiB buffer (filled once) into
//                   buf() and send_bytes a 1-byte "d"; the parent times "g" to "d" and
//                   checks the first and last bytes of the segment. Unlinked at the end.
//
// The child is a daemon mp::Process started with the default method (fork). Placement:
// cross-CPU, as run_peers runs it, unless PEERS_PIN says otherwise; params.placement.
// Peers: cpython_pipe_bytes, cpython_shared_memory, c_pipe, c_memcpy (the limit).
#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "common.hpp"
#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/shared_memory.hpp"

namespace bench {
namespace {

constexpr std::size_t kBytes = std::size_t{64} << 20;
constexpr int kReps = 7;
constexpr int kWarmup = 1;
constexpr unsigned char kFill = 0x5a;

const mp::ProcessOptions kSenderOptions{.name = "bulk-sender", .daemon = true, .start_method = {}};

bool is_go(const std::vector<std::byte>& cmd) { return cmd.size() == 1 && cmd[0] == std::byte{'g'}; }

/// Times kWarmup + kReps transfers: `transfer()` sends "g" and returns once the data is
/// in; `check()` says whether it arrived whole (`prepare()` clears the checked bytes
/// first, untimed). The timed ones in GB/s.
template <class Prepare, class Transfer, class Check>
std::vector<double> time_transfers(Prepare&& prepare, Transfer&& transfer, Check&& check) {
  std::vector<double> gbs;
  for (int r = -kWarmup; r < kReps; ++r) {
    prepare();
    const std::uint64_t t0 = now_ns();
    transfer();
    const std::uint64_t dt = now_ns() - t0;
    if (!check()) throw Failure("transfer " + std::to_string(r) + ": wrong data");
    if (r >= 0) gbs.push_back(static_cast<double>(kBytes) / (static_cast<double>(dt) / 1e9) / 1e9);
  }
  return gbs;
}

std::vector<double> pipe_bytes(const Placement& where, Params& params) {
  auto [conn, child_end] = mp::Pipe();
  Child child(mp::Process(
      kSenderOptions,
      [cpu = where.child](mp::Connection c) {
        pin_self(cpu);
        std::vector<std::byte> src(kBytes, std::byte{kFill});
        while (is_go(c.recv_bytes())) c.send_bytes(src);
      },
      std::move(child_end)));
  std::vector<std::byte> dst(kBytes);
  std::memset(dst.data(), 0, kBytes);  // pre-faulted
  std::size_t got = 0;
  auto gbs = time_transfers(
      [&] { dst.front() = dst.back() = std::byte{0}; },
      [&, &c = conn] {
        c.send_bytes("g");
        got = c.recv_bytes_into(dst);
      },
      [&] { return got == kBytes && dst.front() == std::byte{kFill} && dst.back() == std::byte{kFill}; });
  conn.send_bytes("q");
  child.finish();
  params.add("how", "child send_bytes(64 MiB std::vector<std::byte>), parent recv_bytes_into(64 MiB buffer)")
      .add("into", "preallocated buffer (pre-faulted)")
      .add("channel", "mp::Pipe() (a Unix stream socket pair)");
  return gbs;
}

using Bytes = std::vector<unsigned char>;

// `reuse`: get_into one vector; else get() a new one each time.
std::vector<double> queue_bytes(const Placement& where, Params& params, bool reuse) {
  mp::Queue<Bytes> q;
  auto [ctl, ctl_child] = mp::Pipe();
  Child child(mp::Process(
      kSenderOptions,
      [cpu = where.child](mp::Connection c, mp::Queue<Bytes> out) {
        pin_self(cpu);
        const Bytes src(kBytes, kFill);
        while (is_go(c.recv_bytes())) out.put(src);
      },
      std::move(ctl_child), q));
  Bytes got;
  auto gbs = time_transfers(
      [&] {
        if (reuse) {
          if (!got.empty()) got.front() = got.back() = 0;
        } else {
          Bytes().swap(got);  // the last one is freed untimed
        }
      },
      [&, &c = ctl] {
        c.send_bytes("g");
        if (reuse) {
          q.get_into(got);
        } else {
          got = q.get();
        }
      },
      [&] { return got.size() == kBytes && got.front() == kFill && got.back() == kFill; });
  ctl.send_bytes("q");
  child.finish();
  if (reuse) {
    params.add("how", "child put(64 MiB std::vector<unsigned char>), parent get_into(the same vector every time)")
        .add("into", "one vector, reused (faulted in by the warm-up)");
  } else {
    params.add("how", "child put(64 MiB std::vector<unsigned char>), parent get() (a new vector)")
        .add("into", "new vector from get()");
  }
  params.add("queue_ring_bytes", mp::QueueOptions{}.capacity_bytes).add("go", "control mp::Pipe()");
  return gbs;
}

std::vector<double> queue_bytes_reused(const Placement& where, Params& params) { return queue_bytes(where, params, true); }
std::vector<double> queue_bytes_new(const Placement& where, Params& params) { return queue_bytes(where, params, false); }

std::vector<double> shared_memory(const Placement& where, Params& params) {
  mp::SharedMemory shm({.name = {}, .create = true, .size = kBytes, .track = true});
  struct Unlink {  // the segment goes whatever happens (the resource tracker would, later)
    mp::SharedMemory& s;
    ~Unlink() {
      s.close();
      try {
        s.unlink();
      } catch (...) {
      }
    }
  } unlink{shm};
  auto [conn, child_end] = mp::Pipe();
  Child child(mp::Process(
      kSenderOptions,
      [cpu = where.child](mp::Connection c, std::string name) {
        pin_self(cpu);
        const std::vector<unsigned char> src(kBytes, kFill);
        mp::SharedMemory seg(name);  // attach, as cpython_shared_memory's child
        const std::span<std::byte> dst = seg.buf();
        while (is_go(c.recv_bytes())) {
          std::memcpy(dst.data(), src.data(), kBytes);
          c.send_bytes("d");
        }
        seg.close();
      },
      std::move(child_end), shm.name()));
  const std::span<std::byte> buf = shm.buf();
  std::vector<std::byte> reply;
  auto gbs = time_transfers(
      [&] { buf.front() = buf.back() = std::byte{0}; },
      [&, &c = conn] {
        c.send_bytes("g");
        reply = c.recv_bytes();
      },
      [&] {
        return reply.size() == 1 && reply[0] == std::byte{'d'} && buf.front() == std::byte{kFill} &&
               buf.back() == std::byte{kFill};
      });
  conn.send_bytes("q");
  child.finish();
  params.add("how", "child memcpy's 64 MiB into mp::SharedMemory::buf(), then send_bytes(\"d\"); parent waits for it")
      .add("into", "64 MiB mp::SharedMemory created by the parent (faulted in by the warm-up)")
      .add("signal", "mp::Pipe()");
  return gbs;
}

struct Impl {
  const char* name;
  std::vector<double> (*measure)(const Placement&, Params&);
};
constexpr Impl kImpls[] = {
    {"mp_pipe_bytes", pipe_bytes},
    {"mp_queue_bytes", queue_bytes_reused},
    {"mp_queue_bytes_new", queue_bytes_new},
    {"mp_shared_memory", shared_memory},
};

void run(const std::string& name) {
  const Impl* impl = nullptr;
  for (const auto& x : kImpls)
    if (name == x.name) impl = &x;
  if (!impl) throw Failure("unknown impl " + name);

  const Placement where = placements({cross_cpu_placement()}).front();
  Params params;
  params.add("bytes", kBytes).add("reps", kReps).add("warmup_reps", kWarmup).add("stat", "median").raw("GB", "1e9");
  check_placement(where);
  std::vector<double> gbs;
  {
    AffinityGuard restore;  // the parent's pinning ends with the measurement
    pin_self(where.parent);
    gbs = impl->measure(where, params);
  }
  params.add("best", *std::max_element(gbs.begin(), gbs.end()))
      .add("placement", where.name())
      .add("pin", where.pin())
      .add("start_method", std::string(mp::to_string(mp::get_start_method())));
  emit("bulk_transfer", name, "GB_per_s", median(gbs), std::move(params));
}

}  // namespace

Workload bulk_transfer_workload() { return {"bulk_transfer", {"mp_pipe_bytes", "mp_queue_bytes", "mp_queue_bytes_new", "mp_shared_memory"}, "GB_per_s", run}; }

}  // namespace bench
