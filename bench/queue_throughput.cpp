// bench/queue_throughput.cpp — workload 2 of the peers: one producer (the child) sends
// 1,000,000 8-byte ints (0, 1, 2, ..., as the C peers' uint64) to one consumer (the
// parent). Timed in the parent from "go" (the producer is started, pinned and has said it
// is ready) to the last message received; the parent checks every message's value (so the
// order, and the last one, N - 1). One child for 5 repetitions, median, as c_spsc_shm and
// c_pipe; msgs_per_s, higher is better.
//
//   mp_queue        mp::Queue<std::uint64_t> (default: unbounded, 4 MiB ring), put / get
//   mp_simplequeue  mp::SimpleQueue<std::uint64_t>, put / get
//   mp_pipe         mp::Pipe(false), send<std::uint64_t> / recv<std::uint64_t>
//
// "Ready" and "go" travel over a separate control mp::Pipe(): the child sends "r" once
// pinned, then produces a batch for every "g" it receives and ends on anything else. The
// parent takes its t0 right before sending "g" (as the peers take theirs before the go
// signal). The child is a daemon mp::Process started with the default method (fork).
//
// Placement: cross-CPU, as run_peers runs it (parent on the first allowed CPU, child on
// the second) unless PEERS_PIN says otherwise; params.placement.
// Peers: cpython_queue, cpython_simplequeue, cpython_pipe (1 rep), c_pipe, c_spsc_shm
// (median of 5), boost_ipc_mq (median of 3).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"
#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"

namespace bench {
namespace {

constexpr std::uint64_t kMessages = 1'000'000;
constexpr int kReps = 5;
using Msg = std::uint64_t;

const mp::ProcessOptions kProducerOptions{.name = "producer", .daemon = true, .start_method = {}};

/// The producer's loop around its `send(i)`: ready, then one batch per "g".
template <class Send>
void produce(mp::Connection& ctl, int cpu, Send&& send) {
  pin_self(cpu);
  ctl.send_bytes("r");
  for (;;) {
    const auto cmd = ctl.recv_bytes();
    if (cmd.size() != 1 || cmd[0] != std::byte{'g'}) return;
    for (Msg i = 0; i < kMessages; ++i) send(i);
  }
}

/// What the consumer saw.
struct Result {
  std::vector<double> rates;    // msgs/s, one per rep
  std::vector<double> seconds;  // go to last message, one per rep
  Msg last = 0;                 // the last message of the last rep
};

/// The consumer's side: waits for "ready", then kReps times sends "g" and takes
/// kMessages with `recv()`, checking each.
template <class Recv>
void consume(mp::Connection& ctl, Recv&& recv, Result& out) {
  if (!ctl.poll(std::chrono::seconds(30))) throw Failure("the producer did not say it was ready within 30 s");
  if (ctl.recv_bytes().size() != 1) throw Failure("unexpected message from the producer");
  for (int r = 0; r < kReps; ++r) {
    const std::uint64_t t0 = now_ns();
    ctl.send_bytes("g");
    Msg x = 0;
    for (Msg i = 0; i < kMessages; ++i) {
      x = recv();
      if (x != i) {
        throw Failure("message " + std::to_string(i) + " of rep " + std::to_string(r) + " is " + std::to_string(x));
      }
    }
    const double dt = static_cast<double>(now_ns() - t0) / 1e9;
    out.seconds.push_back(dt);
    out.rates.push_back(static_cast<double>(kMessages) / dt);
    out.last = x;
  }
  ctl.send_bytes("q");
}

template <class Q>
void measure_queue(const Placement& where, Result& out) {
  Q q;
  auto [ctl, ctl_child] = mp::Pipe();
  Child child(mp::Process(
      kProducerOptions,
      [cpu = where.child](mp::Connection c, Q sink) { produce(c, cpu, [&](Msg i) { sink.put(i); }); },
      std::move(ctl_child), q));
  consume(ctl, [&] { return q.get(); }, out);
  child.finish();
}

void measure_pipe(const Placement& where, Result& out) {
  auto [r, w] = mp::Pipe(false);
  auto [ctl, ctl_child] = mp::Pipe();
  Child child(mp::Process(
      kProducerOptions,
      [cpu = where.child](mp::Connection c, mp::Connection sink) {
        produce(c, cpu, [&](Msg i) { sink.send<Msg>(i); });
      },
      std::move(ctl_child), std::move(w)));
  consume(ctl, [&c = r] { return c.recv<Msg>(); }, out);
  child.finish();
}

struct Impl {
  const char* name;
  void (*measure)(const Placement&, Result&);
  const char* how;
};
constexpr Impl kImpls[] = {
    {"mp_queue", measure_queue<mp::Queue<Msg>>,
     "mp::Queue<std::uint64_t> (unbounded, default 4 MiB ring): child put(), parent get()"},
    {"mp_simplequeue", measure_queue<mp::SimpleQueue<Msg>>,
     "mp::SimpleQueue<std::uint64_t>: child put(), parent get()"},
    {"mp_pipe", measure_pipe,
     "mp::Pipe(false): child send<std::uint64_t>(), parent recv<std::uint64_t>() (typed frames)"},
};

void run(const std::string& name) {
  const Impl* impl = nullptr;
  for (const auto& x : kImpls)
    if (name == x.name) impl = &x;
  if (!impl) throw Failure("unknown impl " + name);

  const Placement where = placements({cross_cpu_placement()}).front();
  check_placement(where);
  Result res;
  {
    AffinityGuard restore;  // the parent's pinning ends with the measurement
    pin_self(where.parent);
    impl->measure(where, res);
  }
  emit("queue_throughput", name, "msgs_per_s", median(res.rates),
       Params()
           .add("messages", kMessages)
           .add("reps", kReps)
           .add("stat", "median")
           .add("best", *std::max_element(res.rates.begin(), res.rates.end()), 6)
           .add("seconds", median(res.seconds))
           .add("message", "uint64")
           .add("last", res.last)
           .add("order", "every message checked (value == its index)")
           .add("placement", where.name())
           .add("pin", where.pin())
           .add("how", impl->how)
           .add("go", "control mp::Pipe(): child sends ready once pinned; t0 right before the parent's go")
           .add("start_method", std::string(mp::to_string(mp::get_start_method()))));
}

}  // namespace

Workload queue_throughput_workload() {
  return {"queue_throughput", {"mp_queue", "mp_simplequeue", "mp_pipe"}, "msgs_per_s", run};
}

}  // namespace bench
