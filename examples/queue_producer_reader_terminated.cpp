// queue_producer_reader_terminated — twin of seed S0-6 (000:113-144).
//
// Shows: a bounded mp::Queue (maxsize 4) shared by a writer and an endless reader.
// The writer prints `Process <pid> put X to queue.` and puts X, for A, B, C, D; the
// reader loops on a blocking get() and prints `Process <pid> get X from queue.`. The
// put and get lines interleave. The parent joins the writer, then terminates the
// reader, which would otherwise never end.
//
// Where this follows real Python rather than the seed (EXAMPLES.md note 4): the seed's
// output shows all four get lines, but terminate() right after the writer's join races
// with the reader: some or all of the get lines can be missing (the queue holds 4, so
// the writer may finish before the reader has taken anything). Only the put lines, in
// order, are certain. The seed never waits for the terminated reader (Python reaps it
// at exit); the twin joins it right after terminate() so no zombie is left meanwhile,
// and prints its exit code: -15, killed by SIGTERM, as Python's exitcode says.
#include <csignal>
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

void writer(mp::Queue<std::string> q) {  // the seed's write(q)
  for (const char* value : {"A", "B", "C", "D"}) {
    std::printf("Process %d put %s to queue.\n", mp::os::getpid(), value);
    std::fflush(stdout);
    q.put(value);
  }
}

void reader(mp::Queue<std::string> q) {  // the seed's read(q): never returns
  while (true) {
    const std::string value = q.get();  // q.get(True): blocks until an item arrives
    std::printf("Process %d get %s from queue.\n", mp::os::getpid(), value.c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Queue<std::string> q(4);  // Queue(maxsize=4); a handle: each child gets a copy
  mp::Process pw(writer, q);
  mp::Process pr(reader, q);
  pw.start();
  pr.start();

  pw.join();       // wait for the writer to end
  pr.terminate();  // the reader is an endless loop: stop it (SIGTERM)
  pr.join();       // reap it at once
  std::printf("reader terminated: exitcode %d (-SIGTERM = %d)\n", *pr.exitcode(), -SIGTERM);
  std::fflush(stdout);
}
