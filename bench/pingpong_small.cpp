// bench/pingpong_small.cpp — workload 1 of the peers: the parent sends an 8-byte int to a
// child, the child sends it back; 2,000 warm-up then 50,000 timed round trips (as the C
// peers), each timed alone (CLOCK_MONOTONIC around one send + one receive); median in us,
// params p10_us, p90_us, mean_us.
//
//   mp_pipe        mp::Pipe() (duplex), conn.send<std::int64_t> / conn.recv<std::int64_t>
//   mp_pipe_bytes  the same Pipe, send_bytes / recv_bytes_into of the 8 bytes
//   mp_queue       two mp::Queue<std::int64_t>, one each direction, put / get
//
// The child is a daemon mp::Process started with the default method (fork); it pins
// itself first thing, echoes until a stop message (-1, or an empty message for bytes:
// under fork the child holds a copy of the parent's end too, so closing it would not be
// EOF), and must end with exitcode 0.
//
// Placement (common.hpp): the parent pins itself to P before starting the child, the child
// pins itself to C. PEERS_PIN unset: both of run_peers' placements, one line each, metric
// "us" (P != C, the first two allowed CPUs) and "us_same_cpu" (P == C); PEERS_PIN="P,C":
// that one; PEERS_PIN set otherwise: unpinned, "us_unpinned".
// Peers: cpython_pipe, cpython_pipe_bytes, c_pipe, c_futex_shm, c_futex_shm_nospin,
// mpi_pingpong, boost_ipc_mq.
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "common.hpp"
#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"

namespace bench {
namespace {

constexpr int kWarmup = 2000;
constexpr int kRoundTrips = 50000;
constexpr std::int64_t kStop = -1;

const mp::ProcessOptions kEchoOptions{.name = "pingpong-echo", .daemon = true, .start_method = {}};

/// Runs kWarmup + kRoundTrips round trips, `trip(i)` sending i and returning what came
/// back; the timed ones' durations in ns.
template <class Trip>
std::vector<double> time_round_trips(Trip&& trip) {
  std::vector<double> ns;
  ns.reserve(kRoundTrips);
  for (std::int64_t i = 0; i < kWarmup + kRoundTrips; ++i) {
    const std::uint64_t t0 = now_ns();
    const std::int64_t y = trip(i);
    const std::uint64_t t1 = now_ns();
    if (y != i) throw Failure("round trip " + std::to_string(i) + " came back as " + std::to_string(y));
    if (i >= kWarmup) ns.push_back(static_cast<double>(t1 - t0));
  }
  return ns;
}

std::span<const std::byte> bytes_of(const std::int64_t& x) { return std::as_bytes(std::span<const std::int64_t, 1>(&x, 1)); }
std::span<std::byte> bytes_of(std::int64_t& x) { return std::as_writable_bytes(std::span<std::int64_t, 1>(&x, 1)); }

std::vector<double> pipe_typed(const Placement& where) {
  auto [conn, child_end] = mp::Pipe();
  Child child(mp::Process(
      kEchoOptions,
      [cpu = where.child](mp::Connection c) {
        pin_self(cpu);
        for (;;) {
          const auto x = c.recv<std::int64_t>();
          if (x == kStop) return;
          c.send<std::int64_t>(x);
        }
      },
      std::move(child_end)));
  auto ns = time_round_trips([&c = conn](std::int64_t i) {
    c.send<std::int64_t>(i);
    return c.recv<std::int64_t>();
  });
  conn.send<std::int64_t>(kStop);
  child.finish();
  return ns;
}

std::vector<double> pipe_bytes(const Placement& where) {
  auto [conn, child_end] = mp::Pipe();
  Child child(mp::Process(
      kEchoOptions,
      [cpu = where.child](mp::Connection c) {
        pin_self(cpu);
        for (;;) {
          std::int64_t x = 0;
          if (c.recv_bytes_into(bytes_of(x)) != sizeof x) return;  // the empty stop message
          c.send_bytes(bytes_of(std::as_const(x)));
        }
      },
      std::move(child_end)));
  auto ns = time_round_trips([&c = conn](std::int64_t i) {
    std::int64_t y = -1;
    c.send_bytes(bytes_of(std::as_const(i)));
    if (c.recv_bytes_into(bytes_of(y)) != sizeof y) throw Failure("a reply of the wrong size");
    return y;
  });
  conn.send_bytes(std::span<const std::byte>());
  child.finish();
  return ns;
}

std::vector<double> queue(const Placement& where) {
  mp::Queue<std::int64_t> to_child, to_parent;
  Child child(mp::Process(
      kEchoOptions,
      [cpu = where.child](mp::Queue<std::int64_t> in, mp::Queue<std::int64_t> out) {
        pin_self(cpu);
        for (;;) {
          const std::int64_t x = in.get();
          if (x == kStop) return;
          out.put(x);
        }
      },
      to_child, to_parent));
  auto ns = time_round_trips([&](std::int64_t i) {
    to_child.put(i);
    return to_parent.get();
  });
  to_child.put(kStop);
  child.finish();
  return ns;
}

struct Impl {
  const char* name;
  std::vector<double> (*measure)(const Placement&);
  const char* payload;
};
constexpr Impl kImpls[] = {
    {"mp_pipe", pipe_typed, "std::int64_t via Connection::send<std::int64_t> / recv<std::int64_t> (typed frame) over mp::Pipe()"},
    {"mp_pipe_bytes", pipe_bytes, "8 bytes via Connection::send_bytes / recv_bytes_into over mp::Pipe()"},
    {"mp_queue", queue, "std::int64_t via two mp::Queue<std::int64_t> (one each direction), put / get"},
};

void measure_one(const Impl& impl, const Placement& where) {
  check_placement(where);
  AffinityGuard restore;  // the parent's pinning ends with this placement
  pin_self(where.parent);
  const std::vector<double> ns = impl.measure(where);
  const double mean = std::accumulate(ns.begin(), ns.end(), 0.0) / static_cast<double>(ns.size());
  emit("pingpong_small", impl.name, where.pingpong_metric(), median(ns) / 1e3,
       Params()
           .add("round_trips", kRoundTrips)
           .add("warmup", kWarmup)
           .add("payload_bytes", 8)
           .add("mean_us", mean / 1e3)
           .add("p10_us", sorted_at(ns, 1, 10) / 1e3)
           .add("p90_us", sorted_at(ns, 9, 10) / 1e3)
           .add("placement", where.name())
           .add("pin", where.pin())
           .add("stat", "median")
           .add("payload", impl.payload)
           .add("start_method", std::string(mp::to_string(mp::get_start_method()))));
}

void run(const std::string& name) {
  const Impl* impl = nullptr;
  for (const auto& x : kImpls)
    if (name == x.name) impl = &x;
  if (!impl) throw Failure("unknown impl " + name);

  // Each placement prints its own line, a failed one its own null line.
  std::string errors;
  for (const Placement& where : placements({cross_cpu_placement(), same_cpu_placement()})) {
    try {
      measure_one(*impl, where);
    } catch (const std::exception& e) {
      emit_failure("pingpong_small", name, where.pingpong_metric(), e.what());
      errors += std::string(errors.empty() ? "" : "; ") + where.name() + ": " + e.what();
    }
  }
  if (!errors.empty()) throw Reported(errors);
}

}  // namespace

Workload pingpong_small_workload() {
  return {"pingpong_small", {"mp_pipe", "mp_pipe_bytes", "mp_queue"}, "us", run};
}

}  // namespace bench
