// bench/worker_memory.cpp — workload 10 of the peers: the memory of one idle child.
// A Process started with the given method runs a plain function that tells the
// benchmark it is up (SIGUSR1 to the benchmark's pid, passed as an argument: under
// forkserver the child's parent is the server, not us) and then sleeps in pause().
// 300 ms later (as the Python peers) the benchmark reads Pss, Rss and
// Private_Clean + Private_Dirty (USS) from /proc/PID/smaps_rollup of the child and of
// itself, then kills and joins the child. MiB_pss, lower is better.
//
// mp_pool_worker is the peers' pool worker itself: the one worker of an mp::Pool(1)
// (default start method, fork), idle after one task (pool.apply of a function returning
// the worker's pid, checked against pool.worker_pids()); read 300 ms after that task
// returned, the same way; the pool is terminated afterwards.
// (main.cpp trims the heap before every impl, so what earlier workloads freed is not
// in the parent, nor shared with a forked child and counted in its PSS.)
// Peers: cpython_pool_worker (fork), cpython_forkserver_worker, cpython_spawn_worker,
// c_forked_idle_child.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "common.hpp"
#include "mp/context.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"

namespace bench {
namespace {

void idle_child(int notify_pid) {
  ::kill(static_cast<pid_t>(notify_pid), SIGUSR1);
  for (;;) ::pause();
}

struct Method {
  const char* impl;
  mp::StartMethod method;
};
constexpr Method kMethods[] = {
    {"mp_fork_child", mp::StartMethod::fork},
    {"mp_forkserver_child", mp::StartMethod::forkserver},
    {"mp_spawn_child", mp::StartMethod::spawn},
};

// SIGUSR1 blocked for the life of the object, so it waits in the pending set for
// sigtimedwait; the old mask comes back afterwards (a stray SIGUSR1 is dropped first).
struct BlockUsr1 {
  sigset_t set{}, old{};
  BlockUsr1() {
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    ::sigprocmask(SIG_BLOCK, &set, &old);
  }
  ~BlockUsr1() {
    timespec zero{};
    while (::sigtimedwait(&set, nullptr, &zero) == SIGUSR1) {
    }
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
  }
  bool wait(int seconds) {
    timespec ts{seconds, 0};
    for (;;) {
      int s = ::sigtimedwait(&set, nullptr, &ts);
      if (s == SIGUSR1) return true;
      if (s < 0 && errno == EINTR) continue;
      return false;
    }
  }
};

int worker_pid() { return static_cast<int>(::getpid()); }

void pool_worker(const std::string& impl) {
  mp::Pool pool(1);
  const pid_t pid = pool.apply(worker_pid);  // the one task
  const auto pids = pool.worker_pids();
  if (pids.size() != 1 || pids[0] != pid) {
    throw Failure("pool.worker_pids() has " + std::to_string(pids.size()) + " pids, not the task's " + std::to_string(pid));
  }
  timespec pause_ts{0, 300'000'000};
  ::nanosleep(&pause_ts, nullptr);
  const auto child = memory_of(pid);
  const auto parent = memory_of(::getpid());
  pool.terminate();
  pool.join();
  if (!child || !parent) throw Failure("cannot read /proc/" + std::to_string(pid) + "/smaps_rollup");
  emit("worker_memory", impl, "MiB_pss", child->pss_mib,
       Params()
           .add("start_method", std::string(mp::to_string(mp::get_start_method())))
           .add("workers", 1)
           .add("rss_mib", child->rss_mib)
           .add("uss_mib", child->uss_mib)
           .add("parent_pss_mib", parent->pss_mib)
           .add("parent_rss_mib", parent->rss_mib)
           .add("source", "/proc/PID/smaps_rollup")
           .add("note", "idle mp::Pool(1) worker after one task (pool.apply returning its pid); read 300 ms later"));
}

void run(const std::string& impl) {
  if (impl == "mp_pool_worker") return pool_worker(impl);
  const Method* m = nullptr;
  for (const auto& x : kMethods)
    if (impl == x.impl) m = &x;
  if (!m) throw Failure("unknown impl " + impl);

  const mp::Context ctx = mp::get_context(m->method);
  BlockUsr1 usr1;
  // Daemon, as a pool worker is: it dies with the benchmark whatever happens.
  mp::Process p = ctx.Process(mp::ProcessOptions{.name = "idle", .daemon = true, .start_method = {}}, idle_child,
                              static_cast<int>(::getpid()));
  p.start();
  const pid_t pid = *p.pid();
  std::optional<Memory> child, parent, server;
  const bool ready = usr1.wait(30);
  if (ready) {
    timespec pause_ts{0, 300'000'000};
    ::nanosleep(&pause_ts, nullptr);
    child = memory_of(pid);
    parent = memory_of(::getpid());
    if (m->method == mp::StartMethod::forkserver) {
      if (auto ppid = proc_status_field(pid, "PPid")) server = memory_of(static_cast<pid_t>(std::stol(*ppid)));
    }
  }
  p.kill();
  p.join();
  if (!ready) throw Failure("the child did not signal readiness within 30 s (exitcode " +
                            std::to_string(p.exitcode().value_or(-999)) + ")");
  if (!child || !parent) throw Failure("cannot read /proc/" + std::to_string(pid) + "/smaps_rollup");

  Params params;
  params.add("start_method", std::string(mp::to_string(m->method)))
      .add("rss_mib", child->rss_mib)
      .add("uss_mib", child->uss_mib)
      .add("parent_pss_mib", parent->pss_mib)
      .add("parent_rss_mib", parent->rss_mib);
  if (server) params.add("server_pss_mib", server->pss_mib).add("server_rss_mib", server->rss_mib);
  params.add("source", "/proc/PID/smaps_rollup")
      .add("note", "idle mp::Process child (daemon): plain-function target sends SIGUSR1 to the benchmark, "
                   "then pause(); read 300 ms after the signal");
  emit("worker_memory", impl, "MiB_pss", child->pss_mib, std::move(params));
}

}  // namespace

Workload worker_memory_workload() {
  return {"worker_memory", {"mp_pool_worker", "mp_fork_child", "mp_forkserver_child", "mp_spawn_child"}, "MiB_pss", run};
}

}  // namespace bench
