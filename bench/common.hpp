// bench/common.hpp — what every mp benchmark shares: the JSON line the peers print,
// statistics, clocks, /proc/PID/smaps_rollup, PEERS_PIN, the workload table.
//
// Output contract (../shared/bench/peers/README.md): one JSON object per line on stdout,
//   {"workload": W, "impl": "mp_...", "metric": UNIT, "value": V, "params": {...}}
// V is printed like the C peers print it (%.6g; null when the impl failed, with
// params.error), extra figures in params with 4 significant digits (the peers' sig(x, 4)).
// The channel workloads also use the placement helpers (Placement, placements(),
// AffinityGuard) and Child (a daemon mp::Process that is killed if the benchmark fails).
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/process.hpp"

#ifndef MP_BENCH_VERSION
#define MP_BENCH_VERSION "unknown"
#endif

// Keeps the compiler from proving a function pure and reusing one call's result for
// another (GCC's noipa; clang has no such attribute, noinline is the closest).
#if defined(__clang__)
#define MP_BENCH_NOIPA __attribute__((noinline))
#else
#define MP_BENCH_NOIPA __attribute__((noipa))
#endif

namespace bench {

// ---- numbers ---------------------------------------------------------------------

/// `v` with `digits` significant digits (the Python peers' sig()).
inline double sig(double v, int digits = 6) {
  if (!std::isfinite(v)) return v;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return std::strtod(buf, nullptr);
}

/// Median; the mean of the two middle values for an even count. NaN when empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// sorted(v)[n * num / den], as the peers take p10 (sorted[n // 10]).
inline double sorted_at(std::vector<double> v, std::size_t num, std::size_t den) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, v.size() * num / den)];
}

/// Monotonic clock (CLOCK_MONOTONIC, as the peers), in nanoseconds / seconds.
inline std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}
inline double now() { return static_cast<double>(now_ns()) / 1e9; }

// ---- JSON lines ------------------------------------------------------------------

/// A JSON string literal (quoted, escaped).
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

/// A JSON number with `digits` significant digits (%.Ng, as the C peers); null if not finite.
inline std::string json_number(double v, int digits = 6) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

/// The "params" object, keys in insertion order.
class Params {
 public:
  Params& add(std::string_view key, std::string_view v) { return raw(key, json_string(v)); }
  Params& add(std::string_view key, const char* v) { return raw(key, json_string(v)); }
  Params& add(std::string_view key, const std::string& v) { return raw(key, json_string(v)); }
  Params& add(std::string_view key, bool v) { return raw(key, v ? "true" : "false"); }
  template <class T>
    requires(std::is_integral_v<T> && !std::is_same_v<T, bool>)
  Params& add(std::string_view key, T v) {
    return raw(key, std::to_string(v));
  }
  /// A measured figure: 4 significant digits unless told, like the peers' extras.
  Params& add(std::string_view key, double v, int digits = 4) { return raw(key, json_number(v, digits)); }
  /// `json` is already JSON.
  Params& raw(std::string_view key, std::string json) {
    items_.emplace_back(std::string(key), std::move(json));
    return *this;
  }
  std::string render() const {
    std::string out = "{";
    for (std::size_t i = 0; i < items_.size(); ++i) {
      if (i) out += ", ";
      out += json_string(items_[i].first) + ": " + items_[i].second;
    }
    return out + "}";
  }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

/// Prints one line on stdout and flushes it. params also gets "mp" (the library's version).
inline void emit(std::string_view workload, std::string_view impl, std::string_view metric, double value,
                 Params params = {}) {
  params.add("mp", MP_BENCH_VERSION);
  std::string line = "{\"workload\": " + json_string(workload) + ", \"impl\": " + json_string(impl) +
                     ", \"metric\": " + json_string(metric) + ", \"value\": " + json_number(value) +
                     ", \"params\": " + params.render() + "}\n";
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

/// The line of an impl that failed: "value": null and params.error, as run_peers prints it.
inline void emit_failure(std::string_view workload, std::string_view impl, std::string_view metric,
                         std::string_view error) {
  emit(workload, impl, metric, std::nan(""), Params().add("error", error));
}

// ---- /proc -------------------------------------------------------------------------

/// Every "Key: N kB" field of /proc/PID/smaps_rollup, in KiB; empty if unreadable.
inline std::map<std::string, long> smaps_rollup(pid_t pid) {
  std::map<std::string, long> out;
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    std::string key, unit;
    long kib = 0;
    if (ss >> key >> kib >> unit && unit == "kB" && key.size() > 1 && key.back() == ':') {
      key.pop_back();
      out[key] = kib;
    }
  }
  return out;
}

/// What smaps_rollup says about one process, in MiB.
struct Memory {
  double pss_mib = 0, rss_mib = 0, uss_mib = 0;  // uss = Private_Clean + Private_Dirty
};
inline std::optional<Memory> memory_of(pid_t pid) {
  auto s = smaps_rollup(pid);
  if (!s.count("Pss") || !s.count("Rss")) return std::nullopt;
  Memory m;
  m.pss_mib = static_cast<double>(s["Pss"]) / 1024;
  m.rss_mib = static_cast<double>(s["Rss"]) / 1024;
  m.uss_mib = static_cast<double>(s["Private_Clean"] + s["Private_Dirty"]) / 1024;
  return m;
}

/// A field of /proc/PID/status ("PPid", ...), trimmed; empty if absent.
inline std::optional<std::string> proc_status_field(pid_t pid, std::string_view key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == ':') {
      auto v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return std::nullopt;
}

// ---- CPU placement (PEERS_PIN) -------------------------------------------------------
//
// For the two-process workloads (pingpong_small, queue_throughput, bulk_transfer):
// PEERS_PIN="P,C" pins the parent to CPU P before it starts the child, and the child
// pins itself to CPU C first thing; unset, the scheduler places them. The other
// workloads (pools, process start, shared value, fib, worker memory) are unpinned, as
// the peers'.

/// Pins the calling process to PEERS_PIN's CPU number `which` (0 = parent, 1 = child).
/// Returns that CPU, or -1 when PEERS_PIN is unset or malformed. Throws if the kernel
/// refuses.
inline int pin_cpu(int which) {
  const char* e = std::getenv("PEERS_PIN");
  int cpu[2] = {-1, -1};
  if (!e || !*e || std::sscanf(e, "%d,%d", &cpu[0], &cpu[1]) != 2) return -1;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu[which], &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) {
    throw std::system_error(errno, std::generic_category(), "sched_setaffinity (PEERS_PIN)");
  }
  return cpu[which];
}

/// "cross_cpu", "same_cpu" or "unpinned", from PEERS_PIN.
inline const char* placement() {
  const char* e = std::getenv("PEERS_PIN");
  int a = 0, b = 0;
  if (!e || std::sscanf(e, "%d,%d", &a, &b) != 2) return "unpinned";
  return a == b ? "same_cpu" : "cross_cpu";
}

/// pingpong_small's metric for the current placement.
inline const char* pingpong_metric() {
  const std::string_view p = placement();
  return p == "cross_cpu" ? "us" : p == "same_cpu" ? "us_same_cpu" : "us_unpinned";
}

// ---- CPU placement chosen by mp_bench (the channel workloads) -------------------------
//
// run_peers runs every two-process program with PEERS_PIN set (pingpong_small twice:
// cross-CPU and same-CPU). mp_bench runs all its impls in one process and is usually run
// without PEERS_PIN, so it makes run_peers' choice itself: with PEERS_PIN unset, the
// channel workloads run under the placements run_peers would give them (the first two
// CPUs of the affinity mask: "P,C" cross-CPU, "P,P" same-CPU; unpinned when only one
// CPU is allowed); PEERS_PIN="P,C" runs that placement alone; PEERS_PIN set to anything
// else (PEERS_PIN= for instance) runs unpinned, as the C peers read it.

/// Where the parent and the child of a two-process workload run (-1: not pinned).
struct Placement {
  int parent = -1;
  int child = -1;
  bool pinned() const { return parent >= 0 && child >= 0; }
  /// "cross_cpu", "same_cpu" or "unpinned" (params.placement, as the peers).
  const char* name() const { return !pinned() ? "unpinned" : parent == child ? "same_cpu" : "cross_cpu"; }
  /// pingpong_small's metric: "us", "us_same_cpu" or "us_unpinned".
  const char* pingpong_metric() const {
    const std::string_view p = name();
    return p == "cross_cpu" ? "us" : p == "same_cpu" ? "us_same_cpu" : "us_unpinned";
  }
  /// "P,C" as PEERS_PIN spells it; "" when unpinned.
  std::string pin() const { return pinned() ? std::to_string(parent) + "," + std::to_string(child) : std::string(); }
};

/// The CPUs the calling thread may run on, in increasing order (its affinity mask).
inline std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

/// run_peers' cross-CPU placement: parent on the first allowed CPU, child on the second;
/// unpinned when only one CPU is allowed (run_peers' PIN_CROSS="").
inline Placement cross_cpu_placement() {
  const auto cpus = allowed_cpus();
  if (cpus.size() < 2) return {};
  return {cpus[0], cpus[1]};
}
/// run_peers' same-CPU placement: both on the first allowed CPU.
inline Placement same_cpu_placement() {
  const auto cpus = allowed_cpus();
  if (cpus.empty()) return {};
  return {cpus[0], cpus[0]};
}

/// PEERS_PIN as the C peers read it: "P,C" pins, anything else runs unpinned; nullopt
/// when the variable is not set at all.
inline std::optional<Placement> env_placement() {
  const char* e = std::getenv("PEERS_PIN");
  if (!e) return std::nullopt;
  int a = -1, b = -1;
  if (!*e || std::sscanf(e, "%d,%d", &a, &b) != 2 || a < 0 || b < 0) return Placement{};
  return Placement{a, b};
}

/// The placements a two-process workload runs under: PEERS_PIN's alone when it is set,
/// else `defaults` (run_peers' choice for that workload).
inline std::vector<Placement> placements(std::vector<Placement> defaults) {
  if (auto p = env_placement()) return {*p};
  return defaults;
}

/// Pins the calling thread (the whole process when it has one thread) to `cpu`;
/// nothing for -1. Throws if the kernel refuses.
inline void pin_self(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) {
    throw std::system_error(errno, std::generic_category(), "sched_setaffinity(CPU " + std::to_string(cpu) + ")");
  }
}

/// Puts the caller's CPU affinity back when it goes out of scope: mp_bench runs every
/// impl in one process, and a pinned parent must not leave the next impls (or the next
/// workloads' children, which inherit the mask) pinned.
class AffinityGuard {
 public:
  AffinityGuard() { ok_ = ::sched_getaffinity(0, sizeof saved_, &saved_) == 0; }
  ~AffinityGuard() {
    if (ok_) ::sched_setaffinity(0, sizeof saved_, &saved_);
  }
  AffinityGuard(const AffinityGuard&) = delete;
  AffinityGuard& operator=(const AffinityGuard&) = delete;

 private:
  cpu_set_t saved_{};
  bool ok_ = false;
};

// ---- misc --------------------------------------------------------------------------

/// A positive integer from the environment, or `fallback` when unset or not one.
inline long env_long(const char* name, long fallback) {
  const char* e = std::getenv(name);
  if (!e || !*e) return fallback;
  char* end = nullptr;
  long v = std::strtol(e, &end, 10);
  return (*end == '\0' && v > 0) ? v : fallback;
}

/// write() / read() of exactly n bytes, retrying on EINTR; false on EOF or error.
inline bool write_full(int fd, const void* buf, std::size_t n) {
  auto p = static_cast<const char*>(buf);
  while (n) {
    ssize_t r = ::write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}
inline bool read_full(int fd, void* buf, std::size_t n) {
  auto p = static_cast<char*>(buf);
  while (n) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

/// A failed step of a benchmark: its impl gets a null line with this message.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Throws unless both CPUs of a pinned placement are in the caller's affinity mask: a
/// child that cannot pin itself would otherwise leave a parent waiting on a queue hang.
inline void check_placement(const Placement& p) {
  if (!p.pinned()) return;
  const auto cpus = allowed_cpus();
  for (int c : {p.parent, p.child}) {
    if (std::find(cpus.begin(), cpus.end(), c) == cpus.end()) {
      throw Failure("PEERS_PIN=" + p.pin() + ": CPU " + std::to_string(c) + " is not in this process's affinity mask");
    }
  }
}

/// The child of a two-process workload (a daemon mp::Process, so it dies with the
/// benchmark whatever happens), started at construction. finish() waits for it to end
/// by itself (once told to stop) and checks its exit code; leaving early (an exception)
/// kills and joins it.
class Child {
 public:
  explicit Child(mp::Process p) : p_(std::move(p)) { p_.start(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (done_) return;
    try {
      p_.kill();
      p_.join();
    } catch (...) {
    }
  }
  void finish(std::chrono::seconds timeout = std::chrono::seconds(10)) {
    if (!p_.join(timeout)) throw Failure("the child did not end within " + std::to_string(timeout.count()) + " s");
    done_ = true;
    const auto code = p_.exitcode();
    if (code != 0) throw Failure("the child ended with exitcode " + std::to_string(code.value_or(-999)));
  }

 private:
  mp::Process p_;
  bool done_ = false;
};

/// A failure whose null line(s) the impl has printed itself (a workload that prints
/// several metrics, one of which failed): main.cpp only reports it and sets the status.
struct Reported : Failure {
  using Failure::Failure;
};

// ---- the workload table ------------------------------------------------------------

struct Workload {
  const char* name;
  std::vector<std::string> impls;
  /// The metric of the null line printed when an impl fails (run_peers' choice).
  const char* failure_metric;
  /// Measures one impl and emits its line(s); throws on failure.
  void (*run)(const std::string& impl);
};

Workload process_start_join_workload();
Workload fib_speedup_workload();
Workload worker_memory_workload();
Workload pingpong_small_workload();
Workload queue_throughput_workload();
Workload bulk_transfer_workload();
Workload pool_map_trivial_workload();
Workload pool_apply_async_workload();
Workload manager_dict_ops_workload();
Workload shared_value_locked_incr_workload();

}  // namespace bench
