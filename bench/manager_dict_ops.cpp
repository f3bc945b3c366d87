// bench/manager_dict_ops.cpp — workload 7 of the peers: 100,000 operations on a
// manager dict, alternating d[k] = v and d[k] (50,000 of each, 1,000 keys: k = i % 1000,
// value i, each read checked against i), in ops/s (higher is better). The manager is
// started before, untimed; after the ops the dict must hold 1,000 keys. One run, as the
// peers.
//
//   mp_manager_dict         the ops run in a daemon mp::Process child (fork) that got the
//                           proxy as an argument; the child times itself and sends the
//                           seconds back over an mp::Pipe() (as cpython_manager_dict)
//   mp_manager_dict_parent  the ops run in the parent (as cpython_manager_dict_parent)
//
// mp::Manager, manager.dict<int, long>(): d.set(k, i) then d.get(k), each a round trip
// to the server process. The child's target is a plain function (any start method).
// Peers: cpython_manager_dict, cpython_manager_dict_parent.
#include <chrono>
#include <string>
#include <utility>

#include "common.hpp"
#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/managers.hpp"
#include "mp/process.hpp"

namespace bench {
namespace {

constexpr int kOps = 100'000;  // set + get: kOps / 2 of each
constexpr int kKeys = 1000;

using Dict = mp::DictProxy<int, long>;

/// The ops, timed; throws Failure when a read does not give back what was written.
double dict_ops(Dict d) {
  const double t0 = now();
  for (int i = 0; i < kOps / 2; ++i) {
    const int k = i % kKeys;
    d.set(k, i);
    const long x = d.get(k);
    if (x != i) throw Failure("wrong value: d[" + std::to_string(k) + "] = " + std::to_string(x) + ", not " + std::to_string(i));
  }
  return now() - t0;
}

/// The child of mp_manager_dict: sends its time, or -1 when it failed (then rethrows:
/// its message on stderr, exitcode 1), so the parent never waits for nothing.
void dict_child(Dict d, mp::Connection conn) {
  try {
    conn.send<double>(dict_ops(std::move(d)));
  } catch (...) {
    conn.send<double>(-1.0);
    throw;
  }
}

void run(const std::string& impl) {
  mp::Manager manager;
  Dict d = manager.dict<int, long>();
  double dt = 0;
  std::string where;
  if (impl == "mp_manager_dict") {
    auto [conn, child_end] = mp::Pipe();
    const mp::ProcessOptions options{.name = "dict_ops", .daemon = true, .start_method = {}};
    Child child(mp::Process(options, dict_child, d, std::move(child_end)));
    if (!conn.poll(std::chrono::seconds(60))) throw Failure("no time from the child within 60 s");
    dt = conn.recv<double>();
    if (!(dt > 0)) throw Failure("the child failed (its error is on stderr)");
    child.finish();
    where = "child process (" + std::string(mp::to_string(mp::get_start_method())) + ") using the proxy";
  } else if (impl == "mp_manager_dict_parent") {
    dt = dict_ops(d);
    where = "parent process";
  } else {
    throw Failure("unknown impl " + impl);
  }
  const std::size_t size = d.size();
  if (size != kKeys) throw Failure("wrong size: " + std::to_string(size) + " keys, not 1000");
  emit("manager_dict_ops", impl, "ops_per_s", kOps / dt,
       Params()
           .add("ops", kOps)
           .add("ops_kind", "alternating d.set(k, v) / d.get(k)")
           .add("keys", kKeys)
           .add("where", where)
           .add("seconds", dt)
           .add("dict", "mp::Manager().dict<int, long>()")
           .add("start_method", std::string(mp::to_string(mp::get_start_method()))));
}

}  // namespace

Workload manager_dict_ops_workload() {
  return {"manager_dict_ops", {"mp_manager_dict", "mp_manager_dict_parent"}, "ops_per_s", run};
}

}  // namespace bench
