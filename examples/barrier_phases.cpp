// barrier_phases — an extra twin, of no seed row: multiprocessing.Barrier, which the
// seeds do not mention (S1 143 names the other primitives; see sync_primitives).
//
// Shows: mp::Barrier(3, action) between three children working in two phases. In
// phase 1 each child writes its own slot of a shared array (worker k writes k*10) and
// prints a line; then it waits at the barrier. When the last one arrives, the barrier
// runs the action once, in that child, before releasing anybody: the action's line
// always comes after all three "wrote" lines and before any "sees" line. In phase 2
// each child reads the whole array and finds every slot written. wait() returns each
// party's arrival index, distinct: the parent prints the three, sorted.
// Then a barrier whose second party never comes: the parent's wait(timeout) breaks it
// (mp::BrokenBarrierError, broken() True) and reset() repairs it.
//
// The lines within each phase come in any order. Where this differs from Python: the
// action is a plain function (or a captureless lambda), so that it can travel to
// children under every start method; Python's action may be any callable that pickles.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <vector>

namespace {

using namespace std::chrono_literals;

const char* py_bool(bool b) { return b ? "True" : "False"; }

// The action: run by the last party to arrive, once per round.
void announce() {
  std::printf("barrier action: all 3 arrived (run once, before anybody goes on)\n");
  std::fflush(stdout);
}

void worker(int k, mp::Barrier barrier, mp::RawArray<int> slots, mp::RawArray<int> indices) {
  slots[static_cast<std::size_t>(k)] = k * 10;  // phase 1: write this worker's part
  std::printf("worker %d wrote its slot\n", k);
  std::fflush(stdout);

  const std::size_t index = barrier.wait();  // nobody goes on before all have written
  indices[static_cast<std::size_t>(k)] = static_cast<int>(index);

  std::printf("worker %d sees [%d, %d, %d]\n", k, slots[0], slots[1], slots[2]);  // phase 2
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Barrier barrier(3, {.action = announce, .timeout = {}});  // Barrier(3, action=announce)
  mp::RawArray<int> slots({-1, -1, -1});
  mp::RawArray<int> indices(3);
  std::vector<mp::Process> workers;
  for (int k = 0; k < 3; ++k) workers.emplace_back(worker, k, barrier, slots, indices).start();
  for (mp::Process& p : workers) p.join();

  std::vector<int> sorted(indices.begin(), indices.end());
  std::sort(sorted.begin(), sorted.end());
  std::printf("wait() returned the indices %d, %d, %d (sorted): one per party\n", sorted[0], sorted[1], sorted[2]);

  mp::Barrier pair(2);
  try {
    pair.wait(100ms);
    std::printf("pair.wait(timeout=0.1) returned?!\n");
  } catch (const mp::BrokenBarrierError&) {
    std::printf("pair.wait(timeout=0.1) alone -> BrokenBarrierError; broken() -> %s\n", py_bool(pair.broken()));
  }
  pair.reset();
  std::printf("after reset(): broken() -> %s, n_waiting() -> %u\n", py_bool(pair.broken()), pair.n_waiting());
  std::fflush(stdout);
}
