// tests/process_crash_test.cpp — how a child ends is never lost, whoever dies: the
// child by a signal, the parent by SIGKILL, main() returning with children running,
// and a spawned program that forgot freeze_support().
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <mp/mp.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "test_util.hpp"

using namespace std::chrono_literals;
using mp_test::StartMethodTest;
using mp_test::TempFile;

extern char** environ;

namespace {

void segfault() {
  // A real invalid access: a page that was mapped and is not any more. The default
  // action is restored first, so a sanitizer's SEGV handler does not turn the death
  // into an exit code.
  std::signal(SIGSEGV, SIG_DFL);
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ::munmap(page, 4096);
  *static_cast<volatile int*>(page) = 1;
}

void do_abort() {
  std::signal(SIGABRT, SIG_DFL);
  std::abort();
}

void sleep_forever() {
  for (;;) ::pause();
}

void sleep_then_write(int ms, std::string path) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  mp_test::append_file(path, "done");
}

// Waits until `path` holds at least `n` whitespace-separated numbers.
std::vector<long> wait_for_numbers(const std::string& path, std::size_t n) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    std::ifstream f(path);
    std::vector<long> v;
    long x;
    while (f >> x) v.push_back(x);
    if (v.size() >= n || std::chrono::steady_clock::now() > deadline) return v;
    std::this_thread::sleep_for(5ms);
  }
}

}  // namespace

class ProcessCrashTest : public StartMethodTest {};
MP_INSTANTIATE_FOR_START_METHODS(ProcessCrashTest);

TEST_P(ProcessCrashTest, SegfaultGivesMinusSigsegv) {
  auto p = ctx().Process(segfault);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGSEGV);
}

TEST_P(ProcessCrashTest, AbortGivesMinusSigabrt) {
  auto p = ctx().Process(do_abort);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGABRT);
}

TEST_P(ProcessCrashTest, ChildKilledFromOutsideGivesMinusSigkill) {
  auto p = ctx().Process(sleep_forever);
  p.start();
  ::kill(*p.pid(), SIGKILL);
  EXPECT_TRUE(p.join(5s));
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

// The parent (a forked middle process) starts a daemon child with the method under
// test, reports its pid (and its forkserver's), and is SIGKILLed: the daemon child,
// and the middle's forkserver, are gone within 1 s.
TEST_P(ProcessCrashTest, DaemonChildDiesWithItsSigkilledParent) {
  TempFile pids;
  const mp::StartMethod method = GetParam();
  const std::string path = pids.path();
  mp::Process middle(mp::ProcessOptions{.start_method = mp::StartMethod::fork}, [method, path] {
    auto child = mp::get_context(method).Process({.daemon = true}, sleep_forever);
    child.start();
    mp_test::append_file(path, std::to_string(*child.pid()) + " " + std::to_string(mp::detail::forkserver_pid()) + "\n");
    sleep_forever();
  });
  middle.start();
  auto v = wait_for_numbers(path, 2);
  ASSERT_EQ(v.size(), 2u);
  const pid_t child = static_cast<pid_t>(v[0]);
  const pid_t server = static_cast<pid_t>(v[1]);
  EXPECT_FALSE(mp_test::process_gone(child));
  middle.kill();
  middle.join();
  EXPECT_EQ(middle.exitcode(), -SIGKILL);
  EXPECT_TRUE(mp_test::wait_gone(child, 1000ms)) << "daemon child " << child << " outlived its parent";
  if (server > 0) EXPECT_TRUE(mp_test::wait_gone(server, 1000ms)) << "the forkserver outlived its program";
}

// main() returns (here: the middle process's target returns, or calls std::exit):
// non-daemon children are joined first.
TEST_P(ProcessCrashTest, NonDaemonChildrenAreJoinedAtExit) {
  for (bool via_exit : {false, true}) {
    TempFile marker;
    const mp::StartMethod method = GetParam();
    const std::string path = marker.path();
    mp::Process middle(mp::ProcessOptions{.start_method = mp::StartMethod::fork}, [method, path, via_exit] {
      auto child = mp::get_context(method).Process(sleep_then_write, 300, path);
      child.start();
      if (via_exit) std::exit(0);
    });
    middle.start();
    middle.join();
    EXPECT_EQ(middle.exitcode(), 0);
    EXPECT_EQ(marker.read(), "done") << (via_exit ? "std::exit" : "return") << " did not wait for the child";
  }
}

// At exit, daemon children are terminated, not waited for.
TEST_P(ProcessCrashTest, DaemonChildrenAreTerminatedAtExit) {
  TempFile pids, marker;
  const mp::StartMethod method = GetParam();
  const std::string pid_path = pids.path(), marker_path = marker.path();
  mp::Process middle(mp::ProcessOptions{.start_method = mp::StartMethod::fork}, [=] {
    auto child = mp::get_context(method).Process({.daemon = true}, sleep_then_write, 5000, marker_path);
    child.start();
    mp_test::append_file(pid_path, std::to_string(*child.pid()) + "\n");
  });
  auto t0 = std::chrono::steady_clock::now();
  middle.start();
  middle.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  auto v = wait_for_numbers(pid_path, 1);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_TRUE(mp_test::wait_gone(static_cast<pid_t>(v[0]), 1000ms));
  EXPECT_EQ(marker.read(), "");
}

// A spawned program whose main() forgot freeze_support() must not run main() again
// (which would start children for ever): the child says what is missing and fails.
TEST(FreezeSupport, SpawnedChildOfAProgramWithoutItExitsWithAMessage) {
  TempFile out;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.path().c_str(), O_WRONLY | O_APPEND, 0);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  char arg0[] = MP_TEST_NO_FREEZE_SUPPORT_BIN;
  char* argv[] = {arg0, nullptr};
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, arg0, &fa, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::string text = out.read();
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  EXPECT_NE(text.find("mp::freeze_support(argc, argv)"), std::string::npos) << text;
  EXPECT_NE(text.find("child exitcode: 70"), std::string::npos) << text;
  EXPECT_EQ(text.find("child exitcode"), text.rfind("child exitcode")) << "the child ran main() on:\n" << text;
}

namespace {
void exit_with_code(int code) { std::exit(code); }
void nothing() {}
}  // namespace

// A forkserver that dies (here: SIGKILL) neither hangs a join nor makes a running
// child look ended; its daemon children die with it; the next start gets a new server.
TEST(Forkserver, ServerDeathNeitherHangsNorHidesARunningChild) {
  auto ctx = mp::get_context(mp::StartMethod::forkserver);
  auto warm = ctx.Process(nothing);
  warm.start();
  warm.join();
  const pid_t server = mp::detail::forkserver_pid();
  ASSERT_GT(server, 0);

  auto runner = ctx.Process(sleep_forever);
  auto daemon = ctx.Process({.daemon = true}, sleep_forever);
  runner.start();
  daemon.start();
  ::kill(server, SIGKILL);

  EXPECT_TRUE(daemon.join(5s)) << "a daemon child dies with its forkserver";
  EXPECT_EQ(daemon.exitcode(), 255) << "its status died with the server";
  EXPECT_FALSE(runner.join(300ms)) << "a non-daemon child outlives the server and still counts as running";
  EXPECT_TRUE(runner.is_alive());
  runner.kill();
  EXPECT_TRUE(runner.join(5s));
  EXPECT_EQ(runner.exitcode(), 255);

  auto again = ctx.Process(exit_with_code, 3);
  again.start();
  again.join();
  EXPECT_EQ(again.exitcode(), 3);
  EXPECT_NE(mp::detail::forkserver_pid(), server);
  mp_test::expect_no_children_left();
}
