// pipe_many_writers — twin of seed S2-6 (002:179-203).
//
// Shows: one Pipe, many writers. The pair `fd1, fd2 = Pipe()` is a global, made before
// main, as the seed's is at module level. Five children each sleep 3 s, then send
// `{i: <own pid>}` on the same end, fd1; the parent calls fd2.recv() five times and
// prints each dict as Python does (`{0: 12345}`), then joins the children. The
// children run at the same time, so the whole run takes about 3 s and the order of
// the dicts varies. Each message is one small write, so the five never mix.
//
// Where this follows real Python rather than the seed (EXAMPLES.md note 2): the
// children reach the global Pipe only because fork makes them copies of the parent,
// descriptors included; this twin uses fork (the default) too. Under spawn or
// forkserver, a child is a fresh start of the program that builds its *own* global
// pair, unconnected to the parent's: it would send into that, and the parent's recv()
// would wait forever (in Python, spawn re-imports the module, with the same result).
// There fd1 must be passed to each child as an argument instead:
// `mp::Process(fun, i, fd1)` with `void fun(int name, mp::Connection fd1)`.
// The dict {name: pid} is a std::map<int, int>.
#include <chrono>
#include <cstdio>
#include <map>
#include <mp/mp.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

// fd1, fd2 = Pipe(): at namespace scope, built before main runs.
auto [fd1, fd2] = mp::Pipe();

void fun(int name) {
  std::this_thread::sleep_for(std::chrono::seconds(3));
  // Write into the pipe: the child's inherited copy of the global fd1.
  fd1.send(std::map<int, int>{{name, static_cast<int>(mp::os::getpid())}});
}

std::string py_str(const std::map<int, int>& dict) {
  std::string out = "{";
  for (const auto& [key, value] : dict) {
    if (out.size() > 1) out += ", ";
    out += std::to_string(key) + ": " + std::to_string(value);
  }
  return out + "}";
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  std::vector<mp::Process> jobs;
  for (int i = 0; i < 5; ++i) {
    jobs.emplace_back(fun, i);
    jobs.back().start();
  }

  for (int i = 0; i < 5; ++i) {
    const auto data = fd2.recv<std::map<int, int>>();  // read
    std::printf("%s\n", py_str(data).c_str());
    std::fflush(stdout);
  }

  for (mp::Process& p : jobs) p.join();
}
