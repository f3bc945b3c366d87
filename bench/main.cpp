// bench/main.cpp — mp_bench: mp's side of the peer benchmarks (../shared/bench/peers).
//
//   mp_bench                                   every workload, every impl
//   mp_bench process_start_join                one workload (several may be given)
//   mp_bench process_start_join:mp_fork,mp_spawn   some impls only
//   mp_bench --list                            workloads and their impls
//
// One JSON line per measurement on stdout (common.hpp), nothing else there. An impl
// that fails prints its line with "value": null and params.error, and the exit
// status is 1; one that runs longer than MP_BENCH_TIMEOUT seconds (default 120)
// prints such a line and ends the program with status 124.
//
// This binary is also the program that spawn and forkserver children exec, hence
// mp::freeze_support first.
//
// The peers run every impl in a fresh process; mp_bench runs them all in one, so each
// impl starts with malloc_trim(0): heap that an earlier impl freed but glibc kept (~300
// MiB after pool_map_trivial:mp_executor_map) would otherwise be copied into every
// fork (page tables, copy-on-write faults: fib_speedup's mp_pool went from 2.0x to
// 1.3x) and counted in a forked child's PSS (worker_memory).
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "common.hpp"
#include "mp/process.hpp"

namespace {

std::vector<bench::Workload> workloads() {
  // In the peers' order (../shared/bench/peers/README.md).
  return {bench::pingpong_small_workload(),     bench::queue_throughput_workload(),
          bench::bulk_transfer_workload(),      bench::pool_map_trivial_workload(),
          bench::pool_apply_async_workload(),   bench::process_start_join_workload(),
          bench::manager_dict_ops_workload(),   bench::shared_value_locked_incr_workload(),
          bench::fib_speedup_workload(),        bench::worker_memory_workload()};
}

// The watchdog's line, made before the impl starts (the handler only write()s it).
std::string g_timeout_line;
long g_timeout_s = 120;

extern "C" void on_alarm(int) {
  if (!g_timeout_line.empty()) {
    [[maybe_unused]] auto r = ::write(STDOUT_FILENO, g_timeout_line.data(), g_timeout_line.size());
  }
  const char msg[] = "mp_bench: impl timed out (MP_BENCH_TIMEOUT)\n";
  [[maybe_unused]] auto r = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  ::_exit(124);
}

std::string null_line(const char* w, const std::string& impl, const char* metric, const std::string& error) {
  return "{\"workload\": " + bench::json_string(w) + ", \"impl\": " + bench::json_string(impl) +
         ", \"metric\": " + bench::json_string(metric) +
         ", \"value\": null, \"params\": {\"error\": " + bench::json_string(error) + "}}\n";
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--list] [WORKLOAD[:IMPL[,IMPL...]] ...]\n"
               "  no argument: every workload. JSON lines on stdout.\n"
               "  env: MP_BENCH_FIB_N (fib_speedup's n, default 40), MP_BENCH_TIMEOUT (s per impl, 120),\n"
               "       PEERS_PIN=P,C (channel workloads' CPUs; unset: run_peers' placements, README.md)\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  const auto table = workloads();
  std::vector<std::pair<const bench::Workload*, std::vector<std::string>>> todo;
  for (int i = 1; i < argc; ++i) {
    std::string spec = argv[i];
    if (spec == "--list") {
      for (const auto& w : table) {
        std::printf("%s:", w.name);
        for (const auto& impl : w.impls) std::printf(" %s", impl.c_str());
        std::printf("\n");
      }
      return 0;
    }
    if (spec == "-h" || spec == "--help") {
      usage(argv[0]);
      return 0;
    }
    const auto colon = spec.find(':');
    const std::string name = spec.substr(0, colon);
    const bench::Workload* w = nullptr;
    for (const auto& x : table)
      if (name == x.name) w = &x;
    if (!w) {
      std::fprintf(stderr, "mp_bench: unknown workload '%s' (--list shows them)\n", name.c_str());
      return usage(argv[0]);
    }
    std::vector<std::string> impls = w->impls;
    if (colon != std::string::npos) {
      impls.clear();
      std::string rest = spec.substr(colon + 1);
      std::size_t pos = 0;
      while (pos <= rest.size()) {
        auto comma = rest.find(',', pos);
        if (comma == std::string::npos) comma = rest.size();
        std::string impl = rest.substr(pos, comma - pos);
        if (!impl.empty()) {
          bool known = false;
          for (const auto& x : w->impls) known = known || x == impl;
          if (!known) {
            std::fprintf(stderr, "mp_bench: %s has no impl '%s' (--list shows them)\n", w->name, impl.c_str());
            return 2;
          }
          impls.push_back(impl);
        }
        pos = comma + 1;
      }
    }
    todo.emplace_back(w, std::move(impls));
  }
  if (todo.empty())
    for (const auto& w : table) todo.emplace_back(&w, w.impls);

  g_timeout_s = bench::env_long("MP_BENCH_TIMEOUT", 120);
  struct sigaction sa {};
  sa.sa_handler = on_alarm;
  ::sigaction(SIGALRM, &sa, nullptr);

  int status = 0;
  for (const auto& [w, impls] : todo) {
    const double t0 = bench::now();
    for (const auto& impl : impls) {
      g_timeout_line =
          null_line(w->name, impl, w->failure_metric, "timed out after " + std::to_string(g_timeout_s) + "s");
      ::malloc_trim(0);  // as a fresh process (above)
      ::alarm(static_cast<unsigned>(g_timeout_s));
      try {
        w->run(impl);
      } catch (const bench::Reported& e) {  // its null line(s) are out already
        std::fprintf(stderr, "mp_bench: %s/%s: %s\n", w->name, impl.c_str(), e.what());
        status = 1;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "mp_bench: %s/%s: %s\n", w->name, impl.c_str(), e.what());
        bench::emit_failure(w->name, impl, w->failure_metric, e.what());
        status = 1;
      }
      ::alarm(0);
      g_timeout_line.clear();
    }
    std::fprintf(stderr, "mp_bench: %s done in %.1f s\n", w->name, bench::now() - t0);
  }
  return status;
}
