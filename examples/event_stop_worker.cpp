// event_stop_worker — twin of the prose in seed S3 (003:235), which says that join()
// waits forever for a process running an endless loop, so such a process is stopped
// with terminate(), or gracefully by passing it an Event; no code of its own.
//
// Shows: both ways, on the same endless worker. The worker loops until its `stop`
// Event is set, waiting on that Event between rounds of work (Python's
// `while not stop.wait(0.02):`, a pause that ends early once stop is set), then cleans
// up and returns. Worker 1 is stopped gracefully: join(timeout) shows it does not end
// by itself; the parent sets the Event, join() returns, the worker has printed its
// cleanup line, and its exitcode is 0. Worker 2 is stopped with terminate(): SIGTERM
// ends it wherever it is, its cleanup never runs, and its exitcode is -15. The parent
// waits for each worker's first round (a `running` Event) before stopping it, so the
// output is the same on every run.
//
// Where this differs from Python: nothing but the spelling (Event.wait(timeout) returns
// the flag in both).
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

using namespace std::chrono_literals;

const char* py_bool(bool b) { return b ? "True" : "False"; }

void worker(const std::string& name, mp::Event running, mp::Event stop) {
  std::printf("%s: started\n", name.c_str());
  std::fflush(stdout);
  while (!stop.wait(20ms)) {
    // ... one round of work ...
    running.set();
  }
  std::printf("%s: stop is set: cleaning up and returning\n", name.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  // Gracefully, through an Event.
  mp::Event running1;
  mp::Event stop1;
  mp::Process p1(worker, "worker 1", running1, stop1);
  p1.start();
  running1.wait();
  const bool ended = p1.join(100ms);
  std::printf("parent: join(timeout=0.1) -> %s: an endless loop does not end by itself\n", py_bool(ended));
  std::printf("parent: stop.set()\n");
  std::fflush(stdout);
  stop1.set();
  p1.join();
  std::printf("parent: worker 1 joined, exitcode %d\n", *p1.exitcode());
  std::fflush(stdout);

  // Forcibly, with terminate(): the Event is never set.
  mp::Event running2;
  mp::Event stop2;
  mp::Process p2(worker, "worker 2", running2, stop2);
  p2.start();
  running2.wait();
  std::printf("parent: terminate()\n");
  std::fflush(stdout);
  p2.terminate();
  p2.join();
  std::printf("parent: worker 2 joined, exitcode %d: it never cleaned up\n", *p2.exitcode());
  std::fflush(stdout);
}
