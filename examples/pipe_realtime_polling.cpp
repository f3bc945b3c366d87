// pipe_realtime_polling — twin of seed S3-9 (003:184-204).
//
// Shows: the same as queue_realtime_polling (S3-8), over a Pipe. The child sends
// `Data i from worker` every second, 5 times, then closes its end. The parent, while
// the child is alive (is_alive()) or something can be read (poll()), takes one
// message if poll() says there is one (recv()) and prints `Main process got: Data i
// from worker`, then sleeps 0.5 s. The output is the same as S3-8's; then it joins.
//
// Where this follows real Python rather than the seed: the seed's parent keeps its
// copy of the child end open, so it can never see end-of-file. The twin closes it after
// start(), as it should (a child that died early would otherwise leave a recv()
// waiting forever). But then poll() is also true at end-of-file, once the child has
// closed its end and nothing is left (Connection.poll in Python behaves the same), and
// the recv() that follows raises mp::EOFError (Python's EOFError): the seed's loop
// would end with that exception. The twin catches it: EOF means the worker has sent
// everything, and the loop ends. Nothing is lost: the data comes before the EOF, and
// the loop goes on after the child's end for as long as poll() says something is there.
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <string>
#include <thread>

namespace {

void worker(mp::Connection conn) {
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    conn.send("Data " + std::to_string(i) + " from worker");
  }
  conn.close();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  auto [parent_conn, child_conn] = mp::Pipe();
  mp::Process p(worker, child_conn);  // the child gets its own descriptor
  p.start();
  child_conn.close();  // ours

  bool eof = false;
  while (!eof && (p.is_alive() || parent_conn.poll())) {
    if (parent_conn.poll()) {
      try {
        const auto data = parent_conn.recv<std::string>();
        std::printf("Main process got: %s\n", data.c_str());
        std::fflush(stdout);
      } catch (const mp::EOFError&) {
        eof = true;  // the worker closed its end: everything has been read
        continue;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }

  p.join();
}
