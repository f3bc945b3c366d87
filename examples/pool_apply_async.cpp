// pool_apply_async — twin of seeds S0-3 (000:54-75), S2-5 (002:139-155) and S4-5
// (004:114-130): a Pool fed with apply_async, then close() and join(), where the tasks
// print. The three seeds differ only in the pool size and the messages, so the program
// runs one round per seed, in seed order, each after a `--- ` line naming it:
//   S0-3  Pool(2), 5 tasks: each sleeps 1 s, then prints `PID-<worker pid>:  i`. Only
//         2 distinct pids appear, about 3 s in all; which worker runs which task, and
//         so the line order, varies from run to run.
//   S2-5  Pool() at its default size, cpu_count() workers: 10 tasks, each sleeps, then
//         prints `hello i`, in varying order.
//   S4-5  Pool(4), 5 tasks printing 0..4 in any order, between the parent's
//         `Waiting for all subprocesses done...` and `All subprocesses done.`.
// close() refuses new tasks; join() waits until the workers have run every queued task
// and exited.
//
// Where this differs from the seeds: S0-3's func returns the worker's pid (the seed's
// returns None) and the round keeps the AsyncResults the seed drops, only to print, once
// joined, how many distinct workers ran the 5 tasks (2): the seed's claim, checked.
// S2-5's tasks sleep 0.1 s, not 2 s: 10 tasks of 2 s on a 2-CPU machine would take
// 10 s (the whole program takes about 3.5 s). In S4-5 the `Waiting...` line usually
// comes first, but not always, in Python as here: the workers start on the tasks as soon
// as they are submitted, while the parent goes on to print.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

// S0-3
pid_t func(int message) {
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // print('PID-{}: '.format(mp.current_process().pid), message)
  const pid_t pid = *mp::current_process().pid();
  std::printf("PID-%d:  %d\n", static_cast<int>(pid), message);
  std::fflush(stdout);
  return pid;
}

// S2-5
void worker(const std::string& msg) {
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the seed: sleep(2)
  std::printf("%s\n", msg.c_str());
  std::fflush(stdout);
}

// S4-5
void run_proc(int name) {
  std::printf("%d\n", name);
  std::fflush(stdout);
}

void round_s0_3() {
  std::printf("--- S0-3: Pool(2), 5 tasks, each sleeps 1 s\n");
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  mp::Pool p(2);
  std::vector<mp::AsyncResult<pid_t>> results;
  for (int i = 0; i < 5; ++i) results.push_back(p.apply_async(func, i));
  p.close();  // no task can be added after close()
  p.join();   // waits for every task, then for the workers to exit
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
  std::set<pid_t> pids;
  for (auto& r : results) pids.insert(r.get());
  std::printf("5 tasks ran on %zu distinct worker processes in %.1f s\n", pids.size(), took.count());
  std::fflush(stdout);
}

void round_s2_5() {
  mp::Pool pool;  // Pool(): cpu_count() workers
  std::printf("--- S2-5: Pool() = %zu workers (cpu_count() = %d), 10 tasks\n", pool.processes(), mp::cpu_count());
  std::fflush(stdout);
  for (int i = 0; i < 10; ++i) {
    const std::string msg = "hello " + std::to_string(i);
    pool.apply_async(worker, msg);  // apply_async(func=worker, args=(msg,))
  }
  pool.close();
  pool.join();
}

void round_s4_5() {
  std::printf("--- S4-5: Pool(4), 5 tasks\n");
  std::fflush(stdout);
  mp::Pool p(4);
  for (int i = 0; i < 5; ++i) p.apply_async(run_proc, i);
  std::printf("Waiting for all subprocesses done...\n");
  std::fflush(stdout);
  p.close();
  p.join();
  std::printf("All subprocesses done.\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  round_s0_3();
  round_s2_5();
  round_s4_5();
}
