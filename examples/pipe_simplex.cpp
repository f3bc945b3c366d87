// pipe_simplex — twin of the prose in seed S2 (002:167-172) on Pipe(duplex=False),
// which has no code of its own.
//
// Shows: `fd1, fd2 = Pipe(duplex=False)`: a one-way pipe whose first end only receives
// and whose second end only sends (duplex, the default, lets both ends do both). The
// program prints what each end can do, passes the sending end fd2 to a child (which
// sends three messages and closes it), closes its own copy of fd2, and prints what
// fd1.recv() returns. Then it shows the limits: fd1.send() is refused, and once the
// writer has closed and everything is read, fd1.recv() raises mp::EOFError.
//
// Where this differs from Python: sending on a receive-only end raises OSError
// ("connection is read-only") in Python, mp::ValueError in mp. Python builds a simplex
// Pipe on os.pipe(), mp on a socket pair shut down in the unused direction (so that
// handles can travel on it too); that does not show in this program's output.
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

const char* py_bool(bool b) { return b ? "True" : "False"; }

void child(mp::Connection fd2) {
  for (const char* text : {"one", "way", "only"}) fd2.send(std::string(text));  // fd.send(): write into the pipe
  fd2.close();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  auto [fd1, fd2] = mp::Pipe(false);  // Pipe(duplex=False)
  std::printf("fd1: readable %s, writable %s\n", py_bool(fd1.readable()), py_bool(fd1.writable()));
  std::printf("fd2: readable %s, writable %s\n", py_bool(fd2.readable()), py_bool(fd2.writable()));
  std::fflush(stdout);

  mp::Process p(child, fd2);
  p.start();
  fd2.close();  // ours: the child has its own

  for (int i = 0; i < 3; ++i) {
    std::printf("fd1.recv(): %s\n", fd1.recv<std::string>().c_str());  // fd.recv(): read from the pipe
    std::fflush(stdout);
  }
  p.join();

  try {
    fd1.send(std::string("back"));
  } catch (const mp::ValueError& e) {
    std::printf("fd1.send() refused: %s\n", e.what());
  }
  try {
    fd1.recv<std::string>();
  } catch (const mp::EOFError& e) {
    std::printf("fd1.recv() after the writer closed: EOFError: %s\n", e.what());
  }
  std::fflush(stdout);
}
