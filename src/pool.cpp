// src/pool.cpp — PoolCore (see mp/detail/pool_core.hpp for the design): the workers'
// loop, the result thread and the supervisor thread.
//
// Hazards, and what is done about them:
//  - A task taken but never run: a worker claims a task in its slot from inside the
//    queue's get(), while it still holds the reader lock, so a worker that dies at any
//    point after the task left the queue has it in its slot, and the task fails.
//  - A task reported twice: a worker that dies right after putting its result is also
//    reported dead with the task in its slot; a job settles each part once (the first
//    report wins), so the late failure is ignored.
//  - Stop messages: close() queues one "stop" per worker after every task. A worker that
//    dies or retires (maxtasksperchild, memory cap) is replaced, and the replacement
//    takes the stop the dead one would have taken; a worker that took a stop is not.
//  - An initializer that throws would make workers die and be replaced for ever: a
//    worker whose initializer threw breaks the pool instead (every unfinished task fails,
//    no more workers are started). A worker killed from outside while it initializes is
//    just replaced.
//  - A start that fails after the fork (no pidfd to be had) kills the child: a worker
//    waits for its slot's `admitted` word, set once its start succeeded, before it takes
//    any task, so that no task is taken by a process nobody watches.
//  - A replacement that cannot start (out of processes or descriptors) is retried by the
//    supervisor every kRestartMs: a pool never sits with tasks and no worker for ever.
//  - Threads: the result thread runs the jobs' callbacks, so join()/terminate() from a
//    callback would wait for themselves: they raise mp::ValueError there.
#include "mp/detail/job_memory.hpp"
#include "mp/detail/pool_core.hpp"

#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <typeinfo>
#include <unordered_map>

#include "mp/detail/shared_mapping.hpp"
#include "mp/detail/shm_queue.hpp"
#include "mp/detail/sys.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "process_internal.hpp"

namespace mp::detail {

namespace {

constexpr std::uint64_t kTaskTag = 0x6d702d7461736b73ull;    // "mp-tasks"
constexpr std::uint64_t kResultTag = 0x6d702d726573756cull;  // "mp-resul"
constexpr int kRestartMs = 100;  // how often a replacement that could not start is retried
// Small enough that a few maps have mapped every page in every process (pages are mapped
// as the rings are first used; a larger message streams through).
constexpr std::size_t kTaskRing = std::size_t{4} << 20;
constexpr std::size_t kResultRing = std::size_t{4} << 20;

// What a worker is doing, in shared memory, one per worker slot.
struct alignas(64) WorkerSlot {
  enum State : std::uint32_t { initializing = 0, running = 1, stopped = 2, retiring = 3, init_failed = 4 };
  std::atomic<std::uint32_t> busy{0};
  std::atomic<std::uint32_t> index{0};
  std::atomic<std::uint64_t> job{0};
  std::atomic<std::int64_t> started_ns{0};  // CLOCK_MONOTONIC: the same clock in every process
  std::atomic<std::uint32_t> state{initializing};
  // Set by the parent once the worker's start has succeeded (it holds its pidfd): a
  // child whose start failed after the fork is killed, and must not have taken a task
  // that nobody would then fail.
  std::atomic<std::uint32_t> admitted{0};
};

// Claims of cancellable pools: word (job % kClaims) holds job << 2 | state. A newer job
// that lands on the word of an older one still queued just makes the older one
// uncancellable (it can no longer be withdrawn, it runs).
constexpr std::size_t kClaims = 1 << 16;
enum ClaimState : std::uint64_t { kQueued = 1, kTaken = 2, kCancelled = 3 };
std::atomic<std::uint64_t>& claim_word(SharedMapping& claims, std::uint64_t job) {
  return static_cast<std::atomic<std::uint64_t>*>(claims.data())[job % kClaims];
}

std::int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What a worker process gets: its queues and slot, its initializer, its limits.
struct WorkerArgs {
  std::shared_ptr<SharedMapping> tasks, results, slots, claims;  // claims: null unless cancellable
  std::uint32_t slot = 0;
  std::uint64_t maxtasks = 0;
  std::uint64_t max_memory = 0;
  InitializerPtr initializer;

  void save(OutputArchive& ar) const {
    tasks->save(ar, "pool task queue");
    results->save(ar, "pool result queue");
    slots->save(ar, "pool worker slots");
    const bool has_claims = claims != nullptr;
    ar(has_claims);
    if (has_claims) claims->save(ar, "pool claims");
    const bool has_initializer = initializer != nullptr;
    ar(slot, maxtasks, max_memory, has_initializer);
    if (has_initializer) initializer->save(ar);
  }
  void load(InputArchive& ar) {
    tasks = SharedMapping::load(ar);
    results = SharedMapping::load(ar);
    slots = SharedMapping::load(ar);
    bool has_claims = false;
    ar(has_claims);
    if (has_claims) {
      claims = SharedMapping::load(ar);
      if (claims->size() < kClaims * sizeof(std::uint64_t)) throw SerializationError("pool claims table too small");
    }
    bool has_initializer = false;
    ar(slot, maxtasks, max_memory, has_initializer);
    if (has_initializer) initializer = load_target(ar);
    if ((slot + 1) * sizeof(WorkerSlot) > slots->size()) throw SerializationError("pool worker slot out of range");
  }
};

std::size_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// The runner a task names (cheap: a function of the main executable is its offset).
TaskRunner resolve_runner(InputArchive& in) {
  CodeRef ref;
  in(ref);
  return reinterpret_cast<TaskRunner>(const_cast<void*>(resolve_code_ref(ref)));
}

// Writes the error the current exception describes after `header`.
void write_error(std::vector<std::byte>& out, ResultHeader header) {
  auto [type, message] = describe_current_exception();
  std::string traceback = recorded_throw_stack("std::__invoke", "mp::detail::invoke_stored");
  out.clear();
  OutputArchive ar(out);
  header.status = static_cast<std::uint32_t>(ResultStatus::raised);
  ar.saveBinary(&header, sizeof header);
  ar(type, message, traceback);
}

void pool_worker_main(WorkerArgs args) {
  if (!args.max_memory) {
    // Keep freed memory for the next task instead of returning it to the system: a fresh
    // page costs a fault (~20 us on a VM), and chunks of similar size come again. Not
    // with a memory cap, which measures what the worker holds.
    ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
    ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  }
  auto tasks = ShmQueue::attach(args.tasks, kTaskTag, "pool task");
  auto results = ShmQueue::attach(args.results, kResultTag, "pool result");
  auto& slot = static_cast<WorkerSlot*>(args.slots->data())[args.slot];
  if (args.initializer) {
    try {
      args.initializer->call();
    } catch (...) {
      slot.state.store(WorkerSlot::init_failed, std::memory_order_release);
      throw;  // the bootstrap reports it and exits 1
    }
  }
  slot.state.store(WorkerSlot::running, std::memory_order_release);
  while (slot.admitted.load(std::memory_order_acquire) == 0) futex_wait(slot.admitted, 0, std::nullopt);

  std::vector<std::byte> task, out;
  for (std::uint64_t done = 0;;) {
    TaskHeader h;
    bool skip = false;
    tasks->get(
        [&](std::span<const std::byte> bytes) {
          if (bytes.size() < sizeof h) throw SerializationError("a pool task message is too short");
          std::memcpy(&h, bytes.data(), sizeof h);
          if (h.job != 0 && args.claims) {
            auto& word = claim_word(*args.claims, h.job);
            auto expected = h.job << 2 | kQueued;
            if (!word.compare_exchange_strong(expected, h.job << 2 | kTaken) && expected == (h.job << 2 | kCancelled)) {
              skip = true;  // withdrawn by Future::cancel: the parent has settled it
              return;
            }
          }
          if (h.job != 0) {  // claimed while the task is still in the ring (see the hazards)
            slot.job.store(h.job, std::memory_order_relaxed);
            slot.index.store(h.index, std::memory_order_relaxed);
            slot.started_ns.store(monotonic_ns(), std::memory_order_relaxed);
            slot.busy.store(1, std::memory_order_release);
          }
          task.assign(bytes.begin(), bytes.end());
        },
        std::nullopt);
    if (skip) continue;
    if (h.job == 0) {
      slot.state.store(WorkerSlot::stopped, std::memory_order_release);
      return;
    }
    ResultHeader rh{h.job, h.index, static_cast<std::uint32_t>(ResultStatus::ok)};
    out.clear();
    try {
      OutputArchive oar(out);
      oar.saveBinary(&rh, sizeof rh);
      InputArchive in(std::span<const std::byte>(task).subspan(sizeof h));
      TaskRunner runner = resolve_runner(in);
      set_capture_throw_stacks(true);
      runner(in, oar);
      set_capture_throw_stacks(false);
    } catch (...) {
      set_capture_throw_stacks(false);
      write_error(out, rh);
    }
    results->put(out, std::nullopt);
    slot.busy.store(0, std::memory_order_release);
    ++done;
    if ((args.maxtasks && done >= args.maxtasks) || (args.max_memory && resident_bytes() > args.max_memory)) {
      slot.state.store(WorkerSlot::retiring, std::memory_order_release);
      return;
    }
  }
}

std::string describe_end(int code) {
  if (code < 0) {
    const char* name = sigabbrev_np(-code);
    return "killed by signal " + std::to_string(-code) + (name ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "exited with code " + std::to_string(code);
}

}  // namespace

namespace {
// As code_identity.cpp's caches: namespace scope, never held while taking another lock,
// and free at every fork (a supervisor thread forks while the caller builds tasks).
std::mutex g_runner_mu;  // guards g_runners
std::unordered_map<TaskRunner, std::vector<std::byte>> g_runners;
[[maybe_unused]] const int g_runner_atfork = [] {
  ::pthread_atfork([] { g_runner_mu.lock(); }, [] { g_runner_mu.unlock(); }, [] { g_runner_mu.unlock(); });
  return 0;
}();
}  // namespace

const std::vector<std::byte>& runner_identity(TaskRunner runner) {
  {
    std::lock_guard g(g_runner_mu);
    if (auto it = g_runners.find(runner); it != g_runners.end()) return it->second;
  }
  std::vector<std::byte> bytes;
  OutputArchive ar(bytes);
  ar(code_ref_of(reinterpret_cast<const void*>(runner)));
  std::lock_guard g(g_runner_mu);
  return g_runners.emplace(runner, std::move(bytes)).first->second;  // an entry is never replaced
}

void throw_remote_error(InputArchive& ar) {
  std::string type, message, traceback;
  ar(type, message, traceback);
  throw RemoteError(std::move(type), message, std::move(traceback));
}

struct PoolShared {
  PoolConfig config;
  std::shared_ptr<ShmQueue> tasks, results;
  std::shared_ptr<SharedMapping> slots_mapping;
  WorkerSlot* slots = nullptr;
  std::shared_ptr<SharedMapping> claims;
  UniqueFd wake;  // eventfd: tells the supervisor to look again

  mutable std::mutex mu;
  std::condition_variable cv;  // jobs emptied, workers gone
  // The pending jobs; nodes in job memory (job_memory.hpp), as the jobs' own states.
  using JobTable = std::pmr::unordered_map<std::uint64_t, std::shared_ptr<Job>>;
  JobTable jobs{job_memory()};
  std::uint64_t next_job = 1;
  std::vector<std::unique_ptr<Process>> workers;  // by slot; null once gone for good
  std::vector<std::size_t> unstarted;             // slots whose replacement could not start yet (mu)
  std::size_t started = 0;                        // for worker names
  enum class State { running, closed, terminated } state = State::running;
  std::exception_ptr broken;  // the initializer failed
  bool joined = false;

  std::atomic<std::size_t> sent{0}, settled{0};  // tasks, for on_progress

  void progressed() {
    const auto done = ++settled;
    if (config.on_progress) {
      try {
        config.on_progress(done, sent.load());
      } catch (...) {
      }
    }
  }

  std::thread result_thread, supervisor_thread;
  std::atomic<bool> supervisor_done{false};

  void poke() const noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake.get(), &one, sizeof one);
  }

  std::exception_ptr death_error(pid_t pid, int code) const {
    const std::string text = std::string("the ") + config.what + " worker (pid " + std::to_string(pid) +
                             ") running this task " + describe_end(code);
    if (config.death_error == DeathError::broken_process_pool) return std::make_exception_ptr(BrokenProcessPool(text));
    return std::make_exception_ptr(ProcessError(text));
  }

  void start_worker(std::size_t i) {
    WorkerArgs args{tasks->mapping_ptr(), results->mapping_ptr(), slots_mapping, claims, static_cast<std::uint32_t>(i),
                    config.maxtasksperchild, config.max_memory_per_child, config.initializer};
    new (&slots[i]) WorkerSlot();
    ProcessOptions options{.name = std::string(config.what) + "Worker-" + std::to_string(++started),
                           .daemon = true,
                           .start_method = config.start_method};
    auto p = std::make_unique<Process>(options, pool_worker_main, std::move(args));
    p->start();
    workers[i] = std::move(p);
    slots[i].admitted.store(1, std::memory_order_release);
    futex_wake(slots[i].admitted, 1);
  }

  // Settles part `index` of job `id` with `error` (the job may be gone: ignored).
  void fail_part(std::uint64_t id, std::uint32_t index, std::exception_ptr error) {
    std::shared_ptr<Job> job;
    {
      std::lock_guard g(mu);
      auto it = jobs.find(id);
      if (it == jobs.end()) return;
      job = it->second;
    }
    job->fail(index, std::move(error));
    forget_if_finished(id, *job);
  }

  void forget_if_finished(std::uint64_t id, Job& job) {
    if (!job.finished()) return;
    std::lock_guard g(mu);
    jobs.erase(id);
    if (jobs.empty()) cv.notify_all();
  }

  // Fails every job still pending (terminate, a broken pool, the end of join).
  void fail_all(std::exception_ptr error) {
    JobTable all{job_memory()};
    {
      std::lock_guard g(mu);
      all.swap(jobs);
      cv.notify_all();
    }
    for (auto& [id, job] : all) job->fail_all(error);
  }

  void result_loop() {
    std::vector<std::byte> buf;
    for (;;) {
      results->get([&](std::span<const std::byte> bytes) { buf.assign(bytes.begin(), bytes.end()); }, std::nullopt);
      ResultHeader h;
      if (buf.size() < sizeof h) continue;
      std::memcpy(&h, buf.data(), sizeof h);
      if (h.job == 0) return;  // join/terminate: every result before this one is in
      std::shared_ptr<Job> job;
      {
        std::lock_guard g(mu);
        auto it = jobs.find(h.job);
        if (it == jobs.end()) continue;
        job = it->second;
      }
      try {
        InputArchive ar(std::span<const std::byte>(buf).subspan(sizeof h));
        if (h.status != static_cast<std::uint32_t>(ResultStatus::ok)) throw_remote_error(ar);
        job->deliver(h.index, ar);
      } catch (...) {
        job->fail(h.index, std::current_exception());
      }
      progressed();
      forget_if_finished(h.job, *job);
    }
  }

  void supervise() {
    std::vector<pollfd> fds;
    std::vector<std::size_t> who;
    for (;;) {
      fds.clear();
      who.clear();
      fds.push_back({wake.get(), POLLIN, 0});
      int timeout_ms = -1;
      {
        std::lock_guard g(mu);
        bool any = false;
        for (std::size_t i = 0; i < workers.size(); ++i) {
          if (!workers[i]) continue;
          any = true;
          fds.push_back({workers[i]->sentinel(), POLLIN, 0});
          who.push_back(i);
          if (config.task_timeout && slots[i].busy.load(std::memory_order_acquire)) {
            const auto left_ns = slots[i].started_ns.load(std::memory_order_relaxed) + config.task_timeout->count() -
                                 monotonic_ns();
            const int ms = left_ns <= 0 ? 0 : static_cast<int>(std::min<std::int64_t>(left_ns / 1'000'000 + 1, 60'000));
            timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
          }
        }
        if (config.task_timeout && timeout_ms < 0 && any) timeout_ms = 100;  // a task may start any time
        if (!unstarted.empty() && state != State::terminated) {
          timeout_ms = timeout_ms < 0 ? kRestartMs : std::min(timeout_ms, kRestartMs);
          any = true;
        }
        if (!any && state != State::running) break;
      }
      ::poll(fds.data(), fds.size(), timeout_ms);
      if (fds[0].revents & POLLIN) {
        std::uint64_t n;
        [[maybe_unused]] auto r = ::read(wake.get(), &n, sizeof n);
      }
      // Tasks over their time limit: kill the worker; its end below fails the task.
      std::vector<std::pair<std::uint64_t, std::uint32_t>> timed_out;
      if (config.task_timeout) {
        std::lock_guard g(mu);
        for (std::size_t i = 0; i < workers.size(); ++i) {
          auto& s = slots[i];
          if (!workers[i] || !s.busy.load(std::memory_order_acquire)) continue;
          if (monotonic_ns() - s.started_ns.load(std::memory_order_relaxed) < config.task_timeout->count()) continue;
          timed_out.emplace_back(s.job.load(std::memory_order_relaxed), s.index.load(std::memory_order_relaxed));
          workers[i]->kill();
        }
      }
      for (auto& [job, index] : timed_out) {
        fail_part(job, index,
                  std::make_exception_ptr(TimeoutError(std::string("the task ran longer than the ") + config.what +
                                                       "'s task_timeout; its worker was killed")));
      }
      for (std::size_t k = 1; k < fds.size(); ++k) {
        if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        handle_worker_end(who[k - 1]);
      }
      retry_unstarted();
    }
    supervisor_done = true;
    std::lock_guard g(mu);
    cv.notify_all();
  }

  void handle_worker_end(std::size_t i) {
    std::unique_ptr<Process> p;
    {
      std::lock_guard g(mu);
      p = std::move(workers[i]);
    }
    if (!p) return;
    p->join();
    const int code = p->exitcode().value_or(-1);
    const pid_t pid = p->pid().value_or(-1);
    auto& s = slots[i];
    const auto state_now = s.state.load(std::memory_order_acquire);
    if (s.busy.load(std::memory_order_acquire)) {
      fail_part(s.job.load(), s.index.load(), death_error(pid, code));
      s.busy.store(0);
    }
    State pool_state;
    {
      std::lock_guard g(mu);
      pool_state = state;
    }
    if (pool_state == State::terminated || state_now == WorkerSlot::stopped) return;
    if (state_now == WorkerSlot::init_failed) {
      auto error = std::make_exception_ptr(ProcessError(std::string("the ") + config.what +
                                                        "'s initializer failed in a worker (pid " +
                                                        std::to_string(pid) + ", " + describe_end(code) +
                                                        "): the pool is broken"));
      {
        std::lock_guard g(mu);
        broken = error;
        state = State::terminated;
      }
      kill_all();
      fail_all(error);
      return;
    }
    std::lock_guard g(mu);
    try {
      start_worker(i);
    } catch (...) {
      // Cannot start a replacement now (out of processes or descriptors?): the others go
      // on, and the supervisor tries again every kRestartMs, so that a pool whose every
      // worker died never sits with tasks and nobody to run them.
      unstarted.push_back(i);
    }
  }

  void retry_unstarted() {
    std::lock_guard g(mu);
    if (state == State::terminated) {
      unstarted.clear();
      return;
    }
    std::vector<std::size_t> still;
    for (std::size_t i : unstarted) {
      try {
        start_worker(i);
      } catch (...) {
        still.push_back(i);
      }
    }
    unstarted.swap(still);
  }

  void kill_all() {
    std::lock_guard g(mu);
    for (auto& w : workers)
      if (w) w->kill();
  }

  void put_stop_result() {
    const ResultHeader h{};
    results->put(std::as_bytes(std::span<const ResultHeader, 1>(&h, 1)), std::nullopt);
  }

  void join_threads() {
    const auto me = std::this_thread::get_id();
    if (me == result_thread.get_id() || me == supervisor_thread.get_id()) {
      throw ValueError(std::string(config.what) + ": join() and terminate() cannot be called from a callback");
    }
    if (supervisor_thread.joinable()) supervisor_thread.join();
    if (result_thread.joinable()) {
      put_stop_result();
      result_thread.join();
    }
  }
};

PoolCore::PoolCore(PoolConfig config) : s_(std::make_unique<PoolShared>()) {
  auto& s = *s_;
  if (config.processes == 0) config.processes = static_cast<std::size_t>(cpu_count());
  s.config = std::move(config);
  s.tasks = ShmQueue::create(kTaskTag, "pool task", 0, kTaskRing, false);
  s.results = ShmQueue::create(kResultTag, "pool result", 0, kResultRing, false);
  s.slots_mapping = SharedMapping::create(s.config.processes * sizeof(WorkerSlot), "mp-pool-slots");
  s.slots = static_cast<WorkerSlot*>(s.slots_mapping->data());
  if (s.config.cancellable) s.claims = SharedMapping::create(kClaims * sizeof(std::uint64_t), "mp-pool-claims");
  s.wake = UniqueFd(static_cast<int>(sys("eventfd", [] { return ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); })));
  s.workers.resize(s.config.processes);
  try {
    for (std::size_t i = 0; i < s.config.processes; ++i) s.start_worker(i);
  } catch (...) {
    for (auto& w : s.workers)
      if (w) {
        w->kill();
        w->join();
      }
    throw;
  }
  s.result_thread = std::thread([&s] { s.result_loop(); });
  s.supervisor_thread = std::thread([&s] { s.supervise(); });
}

PoolCore::~PoolCore() {
  try {
    if (!closed()) terminate();
    join();
  } catch (...) {
  }
}

std::uint64_t PoolCore::add_job(std::shared_ptr<Job> job) {
  std::lock_guard g(s_->mu);
  if (s_->broken) std::rethrow_exception(s_->broken);
  if (s_->state != PoolShared::State::running) {
    throw ValueError(std::string(s_->config.what) + " is not running: no task can be submitted after close() or terminate()");
  }
  const auto id = s_->next_job++;
  s_->jobs.emplace(id, std::move(job));
  if (s_->claims) claim_word(*s_->claims, id).store(id << 2 | kQueued, std::memory_order_relaxed);
  return id;
}

bool PoolCore::try_cancel(std::uint64_t id) {
  if (!s_->claims) return false;
  auto expected = id << 2 | kQueued;
  return claim_word(*s_->claims, id).compare_exchange_strong(expected, id << 2 | kCancelled);
}

bool PoolCore::taken(std::uint64_t id) const {
  return s_->claims && claim_word(*s_->claims, id).load(std::memory_order_relaxed) == (id << 2 | kTaken);
}

void PoolCore::put_task(std::span<const std::byte> message) {
  ++s_->sent;  // before: its result may be in before put() returns
  try {
    s_->tasks->put(message, std::nullopt);
  } catch (...) {
    --s_->sent;
    throw;
  }
}

void PoolCore::drop_job(std::uint64_t id) {
  std::lock_guard g(s_->mu);
  s_->jobs.erase(id);
  if (s_->jobs.empty()) s_->cv.notify_all();
}

void PoolCore::close() {
  std::size_t n = 0;
  {
    std::lock_guard g(s_->mu);
    if (s_->state != PoolShared::State::running) return;
    s_->state = PoolShared::State::closed;
    // One stop per slot, not per live worker: a slot whose worker just died has none
    // for a moment (the supervisor is reaping it, or retrying its start), and its
    // replacement must find a stop too, or join() waits for it for ever. No worker has
    // taken a stop before close(), so every slot will have one.
    n = s_->workers.size();
  }
  const TaskHeader stop{};
  for (std::size_t i = 0; i < n; ++i) s_->tasks->put(std::as_bytes(std::span<const TaskHeader, 1>(&stop, 1)), std::nullopt);
  s_->poke();
}

void PoolCore::join() {
  {
    std::lock_guard g(s_->mu);
    if (s_->state == PoolShared::State::running) {
      throw ValueError(std::string(s_->config.what) + ".join: call close() or terminate() first");
    }
    if (s_->joined) return;
  }
  s_->join_threads();
  bool pending = false;
  {
    std::lock_guard g(s_->mu);
    s_->joined = true;
    pending = !s_->jobs.empty();
  }
  // Every worker is gone and every result read: a job still pending lost its tasks.
  if (pending) s_->fail_all(std::make_exception_ptr(ProcessError(std::string(s_->config.what) + " ended before this task ran")));
}

void PoolCore::terminate() {
  {
    std::lock_guard g(s_->mu);
    if (s_->state == PoolShared::State::terminated && s_->joined) return;
    s_->state = PoolShared::State::terminated;
  }
  s_->kill_all();
  s_->poke();
  s_->join_threads();
  s_->fail_all(std::make_exception_ptr(ProcessError(std::string(s_->config.what) + " was terminated before this task finished")));
  std::lock_guard g(s_->mu);
  s_->joined = true;
}

bool PoolCore::closed() const noexcept {
  std::lock_guard g(s_->mu);
  return s_->state != PoolShared::State::running;
}

std::size_t PoolCore::processes() const noexcept { return s_->config.processes; }

std::vector<pid_t> PoolCore::worker_pids() const {
  std::lock_guard g(s_->mu);
  std::vector<pid_t> out;
  for (auto& w : s_->workers)
    if (w && w->pid()) out.push_back(*w->pid());
  return out;
}

}  // namespace mp::detail

namespace mp {

Pool::Pool(PoolOptions options)
    : core_(std::make_unique<detail::PoolCore>(detail::PoolConfig{
          .processes = options.processes,
          .initializer = options.initializer.target(),
          .maxtasksperchild = options.maxtasksperchild,
          .start_method = options.context ? std::optional<StartMethod>(options.context->start_method()) : std::nullopt,
          .task_timeout = options.task_timeout,
          .max_memory_per_child = options.max_memory_per_child,
          .death_error = detail::DeathError::process_error,
          .what = "Pool",
          .cancellable = false,
          .on_progress = std::move(options.on_progress)})) {}

Pool::~Pool() = default;  // PoolCore's destructor: terminate unless closed, then join

void Pool::close() { core().close(); }
void Pool::join() { core().join(); }
void Pool::terminate() { core().terminate(); }

}  // namespace mp
