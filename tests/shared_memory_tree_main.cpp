// mp_shm_tree — a program of its own (its own process tree, its own resource tracker)
// that tests/shared_memory_test.cpp runs and kills, so that what its tracker does when
// the tree ends can be watched from outside.
//
//   mp_shm_tree tree METHOD NAME1 NAME2   main creates NAME1, a child creates NAME2
//                                         (tracked); prints "ready TRACKER_PID", sleeps
//   mp_shm_tree child-creates METHOD NAME a child creates NAME and exits; the main
//                                         attaches afterwards, checks it survives,
//                                         unlinks it; prints "survived"
//   mp_shm_tree first-in-children METHOD NAME1 NAME2
//                                         a child that creates nothing starts no
//                                         tracker; then two children create NAME1 and
//                                         NAME2 at once (tracked), and all three see one
//                                         tracker; prints "tracker PID", exits without
//                                         unlinking
//   mp_shm_tree dead-claimer METHOD NAME  a child claims the tracker's start and exits
//                                         without starting it (as if killed); the main
//                                         then creates NAME (tracked): it must take the
//                                         claim over at once; prints "tracker PID",
//                                         exits without unlinking
//   mp_shm_tree attach-only METHOD NAME   the main and a child only attach NAME
//   mp_shm_tree forget NAME               creates NAME (tracked), exits without unlink
//   mp_shm_tree clean NAME                creates NAME, unlinks it, exits
//   mp_shm_tree untracked NAME            creates NAME with track = false, exits
//   mp_shm_tree tracker-killed NAME1 NAME2 creates NAME1, SIGKILLs its tracker, creates
//                                         NAME2 (a new tracker), exits without unlink
//
// METHOD is fork, spawn or forkserver. Exit code 0 when the mode's checks passed.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <mp/mp.hpp>
#include <string>
#include <thread>

#include "resource_tracker.hpp"

namespace {

using namespace std::chrono_literals;

void create_and_report(std::string name, mp::Queue<int> done) {
  mp::SharedMemory shm({.name = name, .create = true, .size = 4096});
  shm.buf()[0] = std::byte{42};
  done.put(1);
  for (;;) ::pause();  // until the test kills the tree
}

void create_and_exit(std::string name, mp::Queue<int> done) {
  mp::SharedMemory shm({.name = name, .create = true, .size = 4096});
  shm.buf()[0] = std::byte{42};
  done.put(1);
}

void create_and_tell_tracker(std::string name, mp::Barrier both, mp::Queue<int> out) {
  both.wait();  // the two children claim the tracker's start at the same moment
  mp::SharedMemory shm({.name = name, .create = true, .size = 4096});
  out.put(static_cast<int>(mp::detail::resource_tracker::pid()));
}

void nothing() {}

void claim_and_exit() {
  if (!mp::detail::resource_tracker::claim_start_for_test()) std::exit(2);
}

void attach_and_write(std::string name) {
  mp::SharedMemory shm(name);
  shm.buf()[1] = std::byte{7};
}

mp::StartMethod method_of(const char* s) {
  if (std::strcmp(s, "spawn") == 0) return mp::StartMethod::spawn;
  if (std::strcmp(s, "forkserver") == 0) return mp::StartMethod::forkserver;
  return mp::StartMethod::fork;
}

int usage() {
  std::fprintf(stderr, "usage: mp_shm_tree MODE ARGS... (see the source)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc < 3) return usage();
  const std::string mode = argv[1];
  try {
    if (mode == "tree" && argc == 5) {
      auto ctx = mp::get_context(method_of(argv[2]));
      mp::SharedMemory mine({.name = argv[3], .create = true, .size = 4096});
      mp::Queue<int> done;
      mp::Process child = ctx.Process(create_and_report, std::string(argv[4]), done);
      child.start();
      done.get();
      std::printf("ready %d\n", static_cast<int>(mp::detail::resource_tracker::pid()));
      std::fflush(stdout);
      for (;;) ::pause();
    }
    if (mode == "child-creates" && argc == 4) {
      auto ctx = mp::get_context(method_of(argv[2]));
      mp::Queue<int> done;
      mp::Process child = ctx.Process(create_and_exit, std::string(argv[3]), done);
      child.start();
      done.get();
      child.join();
      mp::SharedMemory shm(std::string{argv[3]});  // attached after its creator ended
      std::this_thread::sleep_for(300ms);          // a tracker of the child's alone would unlink now
      mp::SharedMemory again(std::string{argv[3]});
      if (again.buf()[0] != std::byte{42}) return 1;
      shm.unlink();
      std::printf("survived\n");
      return 0;
    }
    if (mode == "first-in-children" && argc == 5) {
      auto ctx = mp::get_context(method_of(argv[2]));
      mp::Process idle = ctx.Process(nothing);
      idle.start();
      idle.join();
      if (mp::detail::resource_tracker::pid() != 0) return 3;  // no tracked segment yet: no tracker
      mp::Barrier both(2);
      mp::Queue<int> out;
      mp::Process a = ctx.Process(create_and_tell_tracker, std::string(argv[3]), both, out);
      mp::Process b = ctx.Process(create_and_tell_tracker, std::string(argv[4]), both, out);
      a.start();
      b.start();
      const int seen_a = out.get(), seen_b = out.get();
      a.join();
      b.join();
      const int mine = static_cast<int>(mp::detail::resource_tracker::pid());
      if (a.exitcode() != 0 || b.exitcode() != 0) return 4;
      if (seen_a <= 0 || seen_a != seen_b || seen_a != mine) return 5;
      std::printf("tracker %d\n", mine);
      return 0;
    }
    if (mode == "dead-claimer" && argc == 4) {
      auto ctx = mp::get_context(method_of(argv[2]));
      mp::Process claimer = ctx.Process(claim_and_exit);
      claimer.start();
      claimer.join();
      if (claimer.exitcode() != 0) return 3;
      const auto t0 = std::chrono::steady_clock::now();
      mp::SharedMemory shm({.name = argv[3], .create = true, .size = 64});
      const auto took = std::chrono::steady_clock::now() - t0;
      const int tracker = static_cast<int>(mp::detail::resource_tracker::pid());
      if (tracker <= 0) return 4;
      if (took > 2s) return 5;  // waited for the dead claimer instead of taking over
      std::printf("tracker %d\n", tracker);
      return 0;
    }
    if (mode == "attach-only" && argc == 4) {
      auto ctx = mp::get_context(method_of(argv[2]));
      mp::SharedMemory shm(std::string{argv[3]});
      mp::Process child = ctx.Process(attach_and_write, std::string(argv[3]));
      child.start();
      child.join();
      return child.exitcode() == 0 && shm.buf()[1] == std::byte{7} ? 0 : 1;
    }
    if (mode == "forget" && argc == 3) {
      mp::SharedMemory shm({.name = argv[2], .create = true, .size = 100});
      return 0;
    }
    if (mode == "clean" && argc == 3) {
      mp::SharedMemory shm({.name = argv[2], .create = true, .size = 100});
      shm.close();
      shm.unlink();
      return 0;
    }
    if (mode == "untracked" && argc == 3) {
      mp::SharedMemory shm({.name = argv[2], .create = true, .size = 100, .track = false});
      return 0;
    }
    if (mode == "tracker-killed" && argc == 4) {
      mp::SharedMemory first({.name = argv[2], .create = true, .size = 100});
      const pid_t tracker = mp::detail::resource_tracker::pid();
      if (tracker <= 0 || ::kill(tracker, SIGKILL) != 0) return 1;
      while (::kill(tracker, 0) == 0) {  // until it is a zombie of init's, or reaped
        char path[64], state = 0;
        std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(tracker));
        if (std::FILE* f = std::fopen(path, "r")) {
          const int got = std::fscanf(f, "%*d %*s %c", &state);
          std::fclose(f);
          if (got == 1 && state == 'Z') break;
        }
        std::this_thread::sleep_for(1ms);
      }
      mp::SharedMemory second({.name = argv[3], .create = true, .size = 100});
      return mp::detail::resource_tracker::pid() != tracker ? 0 : 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp_shm_tree: %s\n", e.what());
    return 1;
  }
  return usage();
}
