// tests/process_test.cpp — Process under every start method: the life cycle, what
// crosses to the child, how it ended, and misuse.
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <mp/mp.hpp>
#include <string>
#include <thread>

#include "test_util.hpp"

using namespace std::chrono_literals;
using mp_test::StartMethodTest;
using mp_test::TempFile;

// Outside the anonymous namespace: a traceback names functions with external linkage
// (dladdr reads the dynamic symbol table); a static one shows as module+offset.
void throw_runtime_error() { throw std::runtime_error("boom from the child"); }
struct CustomError {};
void throw_non_std() { throw CustomError{}; }

namespace {

void noop() {}
void exit_with(int code) { std::exit(code); }
void exit_with_sum(int a, long b, double c) { std::exit(static_cast<int>(a + b + c)); }
void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
void sleep_forever() {
  for (;;) ::pause();
}

void write_args(std::string path, std::string s, std::vector<int> v, std::map<std::string, int> m,
                std::optional<int> none, std::tuple<int, std::string> t) {
  std::string out = s + "|";
  for (int x : v) out += std::to_string(x) + ",";
  out += "|";
  for (auto& [k, val] : m) out += k + "=" + std::to_string(val) + ",";
  out += "|" + std::string(none ? "some" : "none") + "|" + std::to_string(std::get<0>(t)) + std::get<1>(t);
  mp_test::append_file(path, out);
}

void write_identity(std::string path) {
  auto& me = mp::current_process();
  auto parent = mp::parent_process();
  mp_test::append_file(path, me.name() + "|" + std::to_string(*me.pid() == ::getpid()) + "|" +
                                 std::to_string(me.daemon()) + "|" + (parent ? parent->name() : "none") + "|" +
                                 std::to_string(parent ? parent->pid() : -1) + "|" +
                                 std::to_string(parent && parent->is_alive()));
}


// A serializable function object: its members cross to spawn/forkserver children.
struct ExitWithStored {
  int code = 0;
  void operator()() const { std::exit(code); }
  template <class A>
  void serialize(A& ar) {
    ar(code);
  }
};

// A Process subclass with members, registered for spawn/forkserver.
struct CounterProcess : mp::Process {
  CounterProcess() = default;
  CounterProcess(mp::ProcessOptions options, int start, std::string path)
      : mp::Process(std::move(options)), start_(start), path_(std::move(path)) {}
  void run() override { mp_test::append_file(path_, name() + ":" + std::to_string(start_ + 1)); }
  template <class A>
  void serialize(A& ar) {
    ar(start_, path_);
  }
  int start_ = 0;
  std::string path_;
};
MP_REGISTER_PROCESS(CounterProcess);

struct UnregisteredProcess : mp::Process {
  explicit UnregisteredProcess(mp::ProcessOptions options) : mp::Process(std::move(options)) {}
  void run() override { std::exit(9); }
};

void start_child_then_exit(int code) {
  mp::Process p(noop);
  try {
    p.start();
  } catch (const mp::ValueError&) {
    std::exit(code);
  }
  p.join();
  std::exit(0);
}

}  // namespace

class ProcessTest : public StartMethodTest {};
MP_INSTANTIATE_FOR_START_METHODS(ProcessTest);

TEST_P(ProcessTest, StartAndJoinGiveExitcodeZero) {
  auto p = ctx().Process(noop);
  EXPECT_FALSE(p.pid());
  EXPECT_FALSE(p.exitcode());
  p.start();
  EXPECT_TRUE(p.pid());
  EXPECT_TRUE(p.join());
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_FALSE(p.is_alive());
}

TEST_P(ProcessTest, ArgumentsReachTheTarget) {
  auto p = ctx().Process(exit_with_sum, 3, 4L, 5.0);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 12);
}

TEST_P(ProcessTest, ContainerArgumentsReachTheTarget) {
  TempFile out;
  auto p = ctx().Process(write_args, out.path(), "hello", std::vector<int>{1, 2, 3},
                         std::map<std::string, int>{{"a", 1}, {"b", 2}}, std::optional<int>{},
                         std::tuple<int, std::string>{7, "x"});
  p.start();
  p.join();
  ASSERT_EQ(p.exitcode(), 0);
  EXPECT_EQ(out.read(), "hello|1,2,3,|a=1,b=2,|none|7x");
}

TEST_P(ProcessTest, CaptureLessLambdaRuns) {
  auto p = ctx().Process([](int code) { std::exit(code + 1); }, 40);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 41);
}

TEST_P(ProcessTest, SerializableFunctionObjectCarriesItsState) {
  auto p = ctx().Process(ExitWithStored{17});
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 17);
}

TEST_P(ProcessTest, CapturingLambdaRunsUnderForkAndIsRefusedOtherwise) {
  int code = 23;
  auto p = ctx().Process([code] { std::exit(code); });
  if (GetParam() == mp::StartMethod::fork) {
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 23);
  } else {
    try {
      p.start();
      FAIL() << "a capturing lambda must be refused under " << mp::to_string(GetParam());
    } catch (const mp::ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("captures"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("fork"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(p.pid());
  }
}

TEST_P(ProcessTest, StdExitCodeIsTheExitcode) {
  auto p = ctx().Process(exit_with, 7);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 7);
}

TEST_P(ProcessTest, ExceptionGivesExitcodeOneAndTracebackOnStderr) {
  std::string err;
  {
    mp_test::CaptureStderr capture;
    auto p = ctx().Process({.name = "thrower"}, throw_runtime_error);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 1);
    err = capture.text();
  }
  EXPECT_NE(err.find("Process thrower:"), std::string::npos) << err;
  EXPECT_NE(err.find("std::runtime_error: boom from the child"), std::string::npos) << err;
  EXPECT_NE(err.find("throw_runtime_error"), std::string::npos) << "the stack names the thrower:\n" << err;
}

TEST_P(ProcessTest, NonStdExceptionGivesExitcodeOne) {
  std::string err;
  {
    mp_test::CaptureStderr capture;
    auto p = ctx().Process(throw_non_std);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 1);
    err = capture.text();
  }
  EXPECT_NE(err.find("CustomError"), std::string::npos) << err;
}

TEST_P(ProcessTest, TerminateGivesMinusSigterm) {
  auto p = ctx().Process(sleep_forever);
  p.start();
  EXPECT_TRUE(p.is_alive());
  p.terminate();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGTERM);
}

TEST_P(ProcessTest, KillGivesMinusSigkill) {
  auto p = ctx().Process(sleep_forever);
  p.start();
  p.kill();
  EXPECT_TRUE(p.join(5s));
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST_P(ProcessTest, JoinTimesOutWhileTheChildRuns) {
  auto p = ctx().Process(sleep_ms, 2000);
  p.start();
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(p.join(50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  EXPECT_TRUE(p.is_alive());
  EXPECT_FALSE(p.exitcode());
  p.kill();
  EXPECT_TRUE(p.join());
}

TEST_P(ProcessTest, SentinelBecomesReadableWhenTheChildEnds) {
  auto p = ctx().Process(sleep_ms, 100);
  p.start();
  pollfd pfd{p.sentinel(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
  EXPECT_EQ(::poll(&pfd, 1, 5000), 1);
  EXPECT_FALSE(p.is_alive());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessTest, ChildSeesItsOwnNameAndItsParent) {
  TempFile out;
  auto p = ctx().Process({.name = "worker-7"}, write_identity, out.path());
  EXPECT_EQ(p.name(), "worker-7");
  p.start();
  p.join();
  ASSERT_EQ(p.exitcode(), 0);
  EXPECT_EQ(out.read(), "worker-7|1|0|MainProcess|" + std::to_string(::getpid()) + "|1");
}

TEST_P(ProcessTest, DefaultNamesCountUp) {
  auto a = ctx().Process(noop);
  auto b = ctx().Process(noop);
  EXPECT_EQ(a.name().rfind("Process-", 0), 0u);
  EXPECT_NE(a.name(), b.name());
  a.set_name("renamed");
  EXPECT_EQ(a.name(), "renamed");
}

TEST_P(ProcessTest, SubclassRunsWithItsMembers) {
  TempFile out;
  CounterProcess p({.name = "counter", .start_method = GetParam()}, 41, out.path());
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(out.read(), "counter:42");
}

TEST_P(ProcessTest, UnregisteredSubclassIsRefusedUnderSpawnAndForkserver) {
  UnregisteredProcess p({.name = "unregistered", .start_method = GetParam()});
  if (GetParam() == mp::StartMethod::fork) {
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 9);
  } else {
    try {
      p.start();
      FAIL() << "an unregistered subclass must be refused";
    } catch (const mp::ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("not registered"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("MP_REGISTER_PROCESS"), std::string::npos) << e.what();
    }
  }
}

TEST_P(ProcessTest, ActiveChildrenListsRunningChildrenOnly) {
  auto a = ctx().Process(sleep_forever);
  auto b = ctx().Process(noop);
  a.start();
  b.start();
  b.join();
  auto kids = mp::active_children();
  EXPECT_EQ(kids.size(), 1u);
  if (!kids.empty()) EXPECT_EQ(kids[0], &a);
  a.terminate();
  a.join();
  EXPECT_TRUE(mp::active_children().empty());
}

TEST_P(ProcessTest, DaemonCannotStartChildren) {
  auto p = ctx().Process({.daemon = true}, start_child_then_exit, 42);
  EXPECT_TRUE(p.daemon());
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 42);
}

TEST_P(ProcessTest, NonDaemonChildCanStartChildren) {
  auto p = ctx().Process(start_child_then_exit, 42);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessTest, ProcessesCanBeMovedIntoAVector) {
  std::vector<mp::Process> ps;
  for (int i = 0; i < 4; ++i) ps.push_back(ctx().Process(exit_with, i));
  for (auto& p : ps) p.start();
  ps.reserve(64);  // moves the started processes
  for (auto* child : mp::active_children()) {
    EXPECT_TRUE(child >= ps.data() && child < ps.data() + ps.size()) << "active_children() follows the move";
  }
  for (auto& p : ps) p.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(ps[i].exitcode(), i);
}

TEST_P(ProcessTest, ManyChildrenAtOnce) {
  std::vector<mp::Process> ps;
  for (int i = 0; i < 16; ++i) ps.push_back(ctx().Process(exit_with, i));
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
  for (int i = 0; i < 16; ++i) EXPECT_EQ(ps[i].exitcode(), i);
}

TEST_P(ProcessTest, DestroyedUnjoinedProcessIsStillReaped) {
  pid_t pid = 0;
  {
    auto p = ctx().Process(sleep_ms, 50);
    p.start();
    pid = *p.pid();
  }
  ASSERT_GT(pid, 0);
  // A later start() reaps it (as Python's _cleanup); so does active_children().
  ASSERT_TRUE(mp_test::wait_gone(pid, 20000ms));  // ended (a zombie until reaped below)
  EXPECT_TRUE(mp::active_children().empty());
}

// ---- misuse -----------------------------------------------------------------------

TEST_P(ProcessTest, StartTwiceIsMisuse) {
  auto p = ctx().Process(noop);
  p.start();
  EXPECT_THROW(p.start(), mp::ValueError);
  p.join();
}

TEST_P(ProcessTest, JoinBeforeStartIsMisuse) {
  auto p = ctx().Process(noop);
  EXPECT_THROW(p.join(), mp::ValueError);
  EXPECT_THROW(p.join(10ms), mp::ValueError);
  EXPECT_THROW(p.sentinel(), mp::ValueError);
  EXPECT_THROW(p.terminate(), mp::ValueError);
  EXPECT_FALSE(p.is_alive());
}

TEST_P(ProcessTest, CloseWhileAliveIsMisuse) {
  auto p = ctx().Process(sleep_forever);
  p.start();
  try {
    p.close();
    FAIL() << "close() of a live process must throw";
  } catch (const mp::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("still running"), std::string::npos);
  }
  p.kill();
  p.join();
  p.close();
  EXPECT_THROW(p.join(), mp::ValueError);
  EXPECT_THROW(p.start(), mp::ValueError);
  EXPECT_THROW(p.is_alive(), mp::ValueError);
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST_P(ProcessTest, SetDaemonAfterStartIsMisuse) {
  auto p = ctx().Process(noop);
  p.set_daemon(true);
  p.start();
  EXPECT_THROW(p.set_daemon(false), mp::ValueError);
  p.join();
}

TEST(CurrentProcess, MainProcessIsNamedAndHasNoParent) {
  EXPECT_EQ(mp::current_process().name(), "MainProcess");
  EXPECT_EQ(mp::current_process().pid(), ::getpid());
  EXPECT_TRUE(mp::current_process().is_alive());
  EXPECT_FALSE(mp::parent_process());
  EXPECT_THROW(mp::current_process().start(), mp::ValueError);
  EXPECT_THROW(mp::current_process().join(), mp::ValueError);
}
