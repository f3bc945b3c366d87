// mp_tour — runs every seed twin in examples/, in the seeds' order (S0, S1, S2, S3,
// S4), each after a banner naming its seed rows and what it shows.
//
//   mp_tour                       run them all
//   mp_tour os_fork S2-3          run only these (by program name or seed row)
//   mp_tour --list                list them
//
// The programs are found next to this one (the directory of /proc/self/exe). Each is
// run with fork + execv and waited for before the next one starts; a program that
// exits non-zero or dies by a signal is reported, and the tour then exits 1.
//
// This is a driver, not an mp demo: it uses plain POSIX calls and does not link mp.
// The table below is the one list of examples; examples/CMakeLists.txt builds them.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Example {
  const char* seeds;    // the seed rows of EXAMPLES.md this program twins
  const char* program;  // the executable, next to mp_tour
  const char* shows;
};

// The seeds' order. S4-1 shares its twin with S0-2; S1-3 and S3-3 share S0-5's; S2-5
// and S4-5 share S0-3's. A row named "Sn:lines" twins prose of seed Sn that has no code
// of its own.
// A row named "extra" twins no seed: it shows a feature next to the seeds' ones.
constexpr Example kExamples[] = {
    {"S0-1", "process_one_after_another", "start methods (spawn); one process per item, one after another"},
    {"S0-2 = S4-1", "os_fork", "raw fork: os.fork, os.getpid, os.getppid"},
    {"S0-3 = S2-5 = S4-5", "pool_apply_async", "a Pool fed with apply_async, then close and join; once per seed (pool sizes 2, cpu_count, 4)"},
    {"S0-4", "executor_as_completed", "ProcessPoolExecutor(max_workers=3): submit; as_completed gives completion order"},
    {"S0-5 = S1-3 = S3-3", "pipe_child_to_parent", "the docs' Pipe example, once per seed's payload (S3-3: spawn)"},
    {"S0-6", "queue_producer_reader_terminated", "bounded Queue; an endless reader is terminated"},
    {"S0-7", "shared_memory_named", "named shared memory: create, attach by name in a child (spawn), close, unlink"},
    {"S1:36-50", "pool_async_results", "AsyncResult: ready, successful, get(timeout), wait; map_async, imap, imap_unordered; callbacks"},
    {"S1-1", "fib_speedup", "CPU-bound speed-up: fib(35) twice serially, then in 2 processes"},
    {"S1-2", "pool_map_fib", "the same work through Pool(2).map(fib, [35] * 2)"},
    {"S1:119", "dummy_pool", "multiprocessing.dummy: the same Pool code on processes, then on threads"},
    {"S1:143", "sync_primitives", "Event, Lock, RLock, Semaphore, Condition between processes"},
    {"extra", "barrier_phases", "Barrier: phases, its action, a broken barrier and reset()"},
    {"extra", "lock_holder_died", "a child SIGKILLed holding a Lock: the parent takes it over, holder_died()"},
    {"S1:172-177", "manager_shared_objects", "a Manager's objects through proxies: Namespace, Value, Array, Lock, Event, Queue, Semaphore, Condition"},
    {"S1:180", "manager_remote", "client/server mode: a manager's queues over TCP with an authkey, workers that connect()"},
    {"S1-4", "sharedctypes_typecodes", "typecodes of Value/Array: the C++ types, sizes and ranges (Linux)"},
    {"S2-1", "process_args", "arguments for the target"},
    {"S2-2", "process_join_blocks", "parent and child run at the same time; join blocks"},
    {"S2-3", "process_daemon", "name, pid, is_alive, daemon"},
    {"S2-4", "process_subclass_clock", "a Process subclass overriding run() (forkserver)"},
    {"S2-6", "pipe_many_writers", "one global Pipe inherited through fork, many writers"},
    {"S2:167-172", "pipe_simplex", "Pipe(duplex=False): one end receives, the other sends"},
    {"S3-1", "process_minimal", "the smallest possible process"},
    {"S3-2", "queue_child_to_parent", "Queue, child to parent (spawn)"},
    {"S3-4", "shared_value", "a shared Value: the child sets it, the parent reads it (spawn)"},
    {"S3-5", "manager_dict", "a Manager dict: the child sets d['data'] = 42 (spawn), the parent prints it"},
    {"S3-6", "queue_child_to_child", "child to child through a Queue (forkserver)"},
    {"S3-7", "manager_list", "a Manager list with two writers"},
    {"S3-8", "queue_realtime_polling", "reading results while the child runs: Queue, empty, is_alive"},
    {"S3-9", "pipe_realtime_polling", "the same with a Pipe: poll, recv, EOF"},
    {"S3:235", "event_stop_worker", "stopping an endless worker: through an Event, or terminate()"},
    {"S4-2", "process_start_join_pids", "start/join order, with pids"},
    {"S4-3", "active_children", "many children; cpu_count; active_children; joined at exit"},
    {"S4-4", "process_subclass", "a Process subclass built via its constructor; joined at exit"},
    {"S4-6", "lock_printer", "a Lock around a print, shared by 4 children; joined at exit"},
    {"S4-7", "thread_minimal", "a thread: mp::dummy::Process (threading.Thread)"},
};

// Does `arg` name this example: its program, or one of its seed rows?
bool selects(const Example& e, std::string_view arg) {
  if (arg == e.program) return true;
  std::string_view seeds = e.seeds;
  while (!seeds.empty()) {
    const auto end = seeds.find(' ');
    const std::string_view token = seeds.substr(0, end);
    if (token == arg) return true;
    if (end == std::string_view::npos) break;
    seeds.remove_prefix(end + 1);
  }
  return false;
}

std::string own_directory() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return ".";
  std::string path(buf.data(), static_cast<std::size_t>(n));
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Runs one program and waits for it. Returns "" on success, else what went wrong.
std::string run(const std::string& path) {
  std::fflush(nullptr);  // nothing buffered here may be written twice
  const pid_t pid = ::fork();
  if (pid < 0) return std::string("fork failed: ") + std::strerror(errno);
  if (pid == 0) {
    char* const child_argv[] = {const_cast<char*>(path.c_str()), nullptr};
    ::execv(path.c_str(), child_argv);
    std::fprintf(stderr, "mp_tour: cannot run %s: %s\n", path.c_str(), std::strerror(errno));
    std::_Exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return std::string("waitpid failed: ") + std::strerror(errno);
  }
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 0) return "";
    return "exited with code " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> wanted(argv + 1, argv + argc);
  if (wanted.size() == 1 && (wanted[0] == "--list" || wanted[0] == "--help" || wanted[0] == "-h")) {
    std::printf("usage: mp_tour [PROGRAM | SEED-ROW]...\n");
    for (const Example& e : kExamples) std::printf("  %-20s %-34s %s\n", e.seeds, e.program, e.shows);
    return 0;
  }
  for (std::string_view arg : wanted) {
    bool known = false;
    for (const Example& e : kExamples) known = known || selects(e, arg);
    if (!known) {
      std::fprintf(stderr, "mp_tour: no example is named %.*s (see mp_tour --list)\n", static_cast<int>(arg.size()),
                   arg.data());
      return 2;
    }
  }

  const std::string dir = own_directory();
  int ran = 0;
  std::vector<std::string> failures;
  const auto tour_start = std::chrono::steady_clock::now();
  for (const Example& e : kExamples) {
    bool chosen = wanted.empty();
    for (std::string_view arg : wanted) chosen = chosen || selects(e, arg);
    if (!chosen) continue;

    std::printf("==== [%s] %s — %s ====\n", e.seeds, e.program, e.shows);
    const auto start = std::chrono::steady_clock::now();
    const std::string error = run(dir + "/" + e.program);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    ++ran;
    if (error.empty()) {
      std::printf("---- %s: ok (%.1f s)\n\n", e.program, took.count());
    } else {
      std::printf("!!!! %s FAILED: %s (%.1f s)\n\n", e.program, error.c_str(), took.count());
      failures.push_back(std::string(e.program) + ": " + error);
    }
    std::fflush(stdout);
  }

  const std::chrono::duration<double> total = std::chrono::steady_clock::now() - tour_start;
  std::printf("==== mp_tour: %d example(s) in %.1f s, %zu failed ====\n", ran, total.count(), failures.size());
  for (const std::string& f : failures) std::printf("  FAILED %s\n", f.c_str());
  std::fflush(stdout);
  return failures.empty() ? 0 : 1;
}
