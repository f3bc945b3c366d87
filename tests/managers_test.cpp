// tests/managers_test.cpp — Manager and BaseManager: every proxy kind, proxies passed to
// children under each start method, reference counting, a server over TCP with an
// authkey (wrong keys, garbage, a client's shutdown), and failures: a client killed while
// it holds a lock or waits in a get, a manager killed under its proxies, shutdown.
// Real server processes, real sockets.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mp/managers.hpp>
#include <mp/mp.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using mp_test::StartMethodTest;

namespace {

class ManagerTest : public ::testing::Test {
 protected:
  void TearDown() override { mp_test::expect_no_children_left(); }
};

TEST_F(ManagerTest, ADictDoesWhatAPythonDictDoes) {
  mp::Manager manager;
  auto d = manager.dict<std::string, int>();
  d.set("data", 42);
  d.set("x", 1);
  EXPECT_EQ(d.get("data"), 42);
  EXPECT_EQ(d.get("nope", -1), -1);
  EXPECT_TRUE(d.contains("x"));
  EXPECT_FALSE(d.contains("y"));
  EXPECT_EQ(d.size(), 2u);
  EXPECT_EQ(d.keys(), (std::vector<std::string>{"data", "x"}));
  EXPECT_EQ(d.values(), (std::vector<int>{42, 1}));
  EXPECT_EQ(d.items(), (std::vector<std::pair<std::string, int>>{{"data", 42}, {"x", 1}}));
  EXPECT_EQ(d.copy(), (std::map<std::string, int>{{"data", 42}, {"x", 1}}));
  EXPECT_EQ(d.setdefault("x", 5), 1);
  EXPECT_EQ(d.setdefault("z", 5), 5);
  EXPECT_EQ(d.pop("z"), 5);
  EXPECT_EQ(d.pop("z", 7), 7);
  d.update({{"a", 10}, {"x", 2}});
  EXPECT_EQ(d.get("x"), 2);
  d.erase("a");
  try {
    d.get("missing");
    FAIL() << "no KeyError";
  } catch (const mp::KeyError& e) {
    EXPECT_NE(std::string(e.what()).find("'missing'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(d.erase("missing"), mp::KeyError);
  EXPECT_THROW(d.pop("missing"), mp::KeyError);
  d.clear();
  EXPECT_EQ(d.size(), 0u);
  auto e = manager.dict<int, std::vector<double>>({{1, {1.5, 2.5}}});
  EXPECT_EQ(e.get(1), (std::vector<double>{1.5, 2.5}));
}

TEST_F(ManagerTest, AListFollowsPythonsIndexRules) {
  mp::Manager manager;
  auto l = manager.list<std::string>({"a"});
  l.append("b");
  l.extend({"c", "d"});
  l.insert(0, "start");
  l.insert(100, "end");  // clamped, as in Python
  EXPECT_EQ(l.copy(), (std::vector<std::string>{"start", "a", "b", "c", "d", "end"}));
  EXPECT_EQ(l.get(-1), "end");
  l.set(-2, "D");
  EXPECT_EQ(l.get(4), "D");
  EXPECT_EQ(l.pop(), "end");
  EXPECT_EQ(l.pop(0), "start");
  EXPECT_EQ(l.index("b"), 1u);
  EXPECT_EQ(l.count("a"), 1u);
  l.remove("a");
  EXPECT_EQ(l.size(), 3u);
  EXPECT_THROW(l.get(3), mp::IndexError);
  EXPECT_THROW(l.get(-4), mp::IndexError);
  EXPECT_THROW(l.set(7, "x"), mp::IndexError);
  EXPECT_THROW(l.remove("zzz"), mp::ValueError);
  l.clear();
  EXPECT_THROW(l.pop(), mp::IndexError);
}

TEST_F(ManagerTest, LargeValuesGoBothWaysBesideSmallOnes) {
  // Over a local manager small requests and replies go through shared-memory queues and
  // large ones over the socket: interleave both, in this process and in a child.
  mp::Manager manager;
  auto d = manager.dict<int, std::string>();
  auto check = [](mp::DictProxy<int, std::string> d, int salt) {
    for (std::size_t size : {std::size_t{10}, std::size_t{64} << 10, std::size_t{5}, std::size_t{3} << 20, std::size_t{1}}) {
      const std::string big(size, static_cast<char>('a' + (salt + size) % 26));
      d.set(salt, big);
      if (d.get(salt) != big) return false;
    }
    return true;
  };
  EXPECT_TRUE(check(d, 1));
  mp::Process p([check](mp::DictProxy<int, std::string> d) {
    if (!check(d, 2)) std::exit(3);
  }, d);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  auto l = manager.list<int>();
  std::vector<int> many(200000);
  for (int i = 0; i < 200000; ++i) many[i] = i;
  l.extend(many);
  EXPECT_EQ(l.copy(), many);
  EXPECT_EQ(l.get(-1), 199999);
}

TEST_F(ManagerTest, NamespaceValueAndArray) {
  mp::Manager manager;
  auto ns = manager.Namespace();
  ns.set("x", 1);
  ns.set("name", std::string("mp"));
  EXPECT_EQ(ns.get<int>("x"), 1);
  EXPECT_EQ(ns.get<std::string>("name"), "mp");
  EXPECT_THROW(ns.get<double>("x"), mp::SerializationError);  // set as an int
  EXPECT_THROW(ns.get<int>("y"), mp::AttributeError);
  EXPECT_EQ(ns.names(), (std::vector<std::string>{"name", "x"}));
  ns.erase("x");
  EXPECT_FALSE(ns.contains("x"));

  auto v = manager.Value<double>(1.5);
  EXPECT_EQ(v.get(), 1.5);
  v.set(2.5);
  EXPECT_EQ(v.value(), 2.5);

  auto a = manager.Array<int>(3);
  a.set(0, 7);
  a.set(-1, 9);
  EXPECT_EQ(a.copy(), (std::vector<int>{7, 0, 9}));
  EXPECT_EQ(a.size(), 3u);
  EXPECT_THROW(a.get(3), mp::IndexError);
  auto b = manager.Array<int>(std::vector<int>{1, 2, 3});
  EXPECT_EQ(b.get(1), 2);
}

TEST_F(ManagerTest, QueuesBlockTimeOutAndJoin) {
  mp::Manager manager;
  auto q = manager.Queue<std::string>(2);
  EXPECT_TRUE(q.empty());
  q.put("a");
  q.put_nowait("b");
  EXPECT_TRUE(q.full());
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_THROW(q.put_nowait("c"), mp::Full);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(q.put("c", 100ms), mp::Full);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 90ms);
  EXPECT_EQ(q.get(), "a");
  EXPECT_EQ(q.get(1s), "b");
  EXPECT_THROW(q.get_nowait(), mp::Empty);
  EXPECT_THROW(q.get(50ms), mp::Empty);

  auto jq = manager.JoinableQueue<int>();
  jq.put(1);
  jq.put(2);
  EXPECT_FALSE(jq.join(50ms));
  std::thread worker([jq]() mutable {
    for (int i = 0; i < 2; ++i) {
      jq.get();
      jq.task_done();
    }
  });
  jq.join();
  worker.join();
  EXPECT_THROW(jq.task_done(), mp::ValueError);

  auto typed = manager.Queue<int>();
  typed.put(5);
  auto same = typed;  // a copy reaches the same queue
  EXPECT_EQ(same.get(), 5);
}

TEST_F(ManagerTest, SynchronizationPrimitivesAcrossThreads) {
  mp::Manager manager;
  auto lock = manager.Lock();
  EXPECT_TRUE(lock.acquire());
  EXPECT_TRUE(lock.locked());
  std::thread other([lock]() mutable { EXPECT_FALSE(lock.acquire(50ms)); });
  other.join();
  lock.release();
  EXPECT_THROW(lock.release(), mp::ValueError);

  auto rlock = manager.RLock();
  EXPECT_TRUE(rlock.acquire());
  EXPECT_TRUE(rlock.acquire());  // recursive
  std::thread stranger([rlock]() mutable { EXPECT_THROW(rlock.release(), mp::ValueError); });
  stranger.join();
  rlock.release();
  rlock.release();

  auto sem = manager.BoundedSemaphore(1);
  EXPECT_TRUE(sem.acquire());
  EXPECT_FALSE(sem.acquire(false));
  sem.release();
  EXPECT_THROW(sem.release(), mp::ValueError);
  EXPECT_EQ(sem.get_value(), 1u);

  auto ev = manager.Event();
  EXPECT_FALSE(ev.wait(20ms));
  std::thread setter([ev]() mutable {
    std::this_thread::sleep_for(20ms);
    ev.set();
  });
  EXPECT_TRUE(ev.wait(5s));
  setter.join();

  auto cond = manager.Condition();
  auto flag = manager.Value<int>(0);
  std::thread notifier([cond, flag]() mutable {
    std::this_thread::sleep_for(20ms);
    std::lock_guard g(cond);
    flag.set(1);
    cond.notify_all();
  });
  {
    std::lock_guard g(cond);
    EXPECT_TRUE(cond.wait_for([&] { return flag.get() == 1; }, 5s));
  }
  notifier.join();
  EXPECT_THROW(cond.wait(10ms), mp::ValueError);  // without the lock

  auto barrier = manager.Barrier(3);
  std::vector<std::thread> parties;
  std::atomic<unsigned> seen{0};
  for (int i = 0; i < 3; ++i) {
    parties.emplace_back([barrier, &seen]() mutable { seen |= 1u << barrier.wait(5s); });
  }
  for (auto& t : parties) t.join();
  EXPECT_EQ(seen.load(), 7u);  // indexes 0, 1, 2, once each
  EXPECT_THROW(barrier.wait(30ms), mp::BrokenBarrierError);  // alone: times out, breaks
  EXPECT_TRUE(barrier.broken());
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
}

TEST_F(ManagerTest, ReferencesAreCountedAcrossCopiesAndProcesses) {
  mp::Manager manager;
  EXPECT_EQ(manager.object_count(), 0u);
  {
    auto d = manager.dict<int, int>();
    auto copy = d;
    EXPECT_EQ(manager.object_count(), 1u);
  }
  EXPECT_EQ(manager.object_count(), 0u);
  for (auto method : {mp::StartMethod::fork, mp::StartMethod::spawn, mp::StartMethod::forkserver}) {
    {
      auto l = manager.list<int>();
      mp::Process p({.start_method = method}, [](mp::ListProxy<int> l) { l.append(1); }, l);
      p.start();
      p.join();
      EXPECT_EQ(p.exitcode(), 0);
      EXPECT_EQ(l.copy(), std::vector<int>{1});
    }
    // The child gave back the reference it held (sent with its argument, or taken when
    // it first used the proxy it inherited) when its target ended.
    EXPECT_EQ(manager.object_count(), 0u) << mp::to_string(method);
  }
}

int append_square(std::pair<mp::ListProxy<int>, int> job) {
  job.first.append(job.second * job.second);
  return job.second;
}

TEST_F(ManagerTest, PoolTasksUseProxiesAndGiveTheirReferencesBack) {
  mp::Manager manager;
  {
    auto squares = manager.list<int>();
    std::vector<std::pair<mp::ListProxy<int>, int>> jobs;
    for (int i = 0; i < 20; ++i) jobs.emplace_back(squares, i);
    {
      mp::Pool pool(2);
      EXPECT_EQ(pool.map(append_square, jobs).size(), 20u);
    }
    auto got = squares.copy();
    std::sort(got.begin(), got.end());
    std::vector<int> want;
    for (int i = 0; i < 20; ++i) want.push_back(i * i);
    EXPECT_EQ(got, want);
  }
  EXPECT_EQ(manager.object_count(), 0u);  // every task's reference came back
}

TEST_F(ManagerTest, ProxiesTravelInsideQueuesAndOtherProxies) {
  mp::Manager manager;
  auto inner = manager.list<int>();
  auto outer = manager.dict<std::string, mp::ListProxy<int>>();
  outer.set("numbers", inner);
  outer.get("numbers").append(3);
  EXPECT_EQ(inner.copy(), std::vector<int>{3});
  mp::Queue<mp::ListProxy<int>> q;
  q.put(inner);
  q.get().append(4);
  EXPECT_EQ(inner.size(), 2u);
}

TEST_F(ManagerTest, MisuseIsNamed) {
  mp::BaseManager unstarted;
  EXPECT_THROW((unstarted.dict<int, int>()), mp::ValueError);
  mp::DictProxy<int, int> empty;
  EXPECT_FALSE(empty);
  EXPECT_THROW(empty.size(), mp::ValueError);
  mp::Manager manager;
  EXPECT_THROW(manager.start(), mp::ValueError);
  EXPECT_THROW(manager.get<mp::QueueProxy<int>>("nothing"), mp::KeyError);
}

TEST_F(ManagerTest, StartCarriesNamedObjectsUnderForkOnly) {
  mp::BaseManager under_spawn({.start_method = mp::StartMethod::spawn});
  under_spawn.register_object("q", mp::Queue<int>{});
  EXPECT_THROW(under_spawn.start(), mp::ValueError);

  mp::Queue<int> q;
  mp::BaseManager under_fork({.start_method = mp::StartMethod::fork});
  under_fork.register_object("q", q);
  under_fork.start();
  under_fork.get<mp::QueueProxy<int>>("q").put(3);
  EXPECT_EQ(q.get(5s), 3);  // the server process put it on the same shared queue
}

TEST_F(ManagerTest, ConnectingToNobodyRaises) {
  mp::BaseManager nobody({.address = "@mp-test-no-manager-listens-here"});
  EXPECT_THROW(nobody.connect(), mp::OSError);
}

TEST_F(ManagerTest, AfterShutdownProxiesRaiseAndNothingIsLeft) {
  mp::Manager manager;
  auto d = manager.dict<int, int>();
  const pid_t server = *manager.pid();
  manager.shutdown();
  EXPECT_TRUE(mp_test::wait_gone(server, 5s));
  EXPECT_THROW(d.set(1, 1), mp::ValueError);
  manager.shutdown();  // idempotent
}

std::size_t open_descriptors() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST_F(ManagerTest, AThreadKeepsNoConnectionToManagersThatAreGone) {
  { mp::Manager warm_up; warm_up.dict<int, int>().set(1, 1); }
  const std::size_t before = open_descriptors();
  for (int i = 0; i < 20; ++i) {
    mp::Manager manager;
    auto d = manager.dict<int, int>();
    d.set(i, i);
    mp::Manager other;  // shut down by its destructor, never told by this thread
    other.list<int>().append(i);
  }
  { mp::Manager last; last.dict<int, int>().set(1, 1); }  // a new connection tidies up
  EXPECT_LE(open_descriptors(), before + 2);
}

TEST_F(ManagerTest, AKilledManagerMakesCallsRaiseNotHang) {
  mp::Manager manager;
  auto q = manager.Queue<int>();
  auto d = manager.dict<int, int>();
  d.set(1, 1);
  std::thread blocked([q]() mutable { EXPECT_THROW(q.get(), mp::Error); });  // waits in the server
  std::this_thread::sleep_for(100ms);
  ::kill(*manager.pid(), SIGKILL);
  blocked.join();
  EXPECT_THROW(d.get(1), mp::Error);
  EXPECT_THROW(d.get(1), mp::Error);  // and again: no connection left half-used
}

TEST_F(ManagerTest, AClientKilledHoldingALockHandsItOn) {
  mp::Manager manager;
  auto lock = manager.Lock();
  auto held = manager.Event();
  mp::Process p([](mp::LockProxy lock, mp::EventProxy held) {
    lock.acquire();
    held.set();
    ::pause();
  }, lock, held);
  p.start();
  ASSERT_TRUE(held.wait(10s));
  EXPECT_FALSE(lock.acquire(50ms));
  p.kill();
  p.join();
  ASSERT_TRUE(lock.acquire(10s));
  EXPECT_TRUE(lock.holder_died());
  lock.release();
  EXPECT_FALSE(lock.holder_died());
}

TEST_F(ManagerTest, AClientKilledWhileWaitingInGetLosesNoItem) {
  mp::Manager manager;
  auto q = manager.Queue<int>();
  auto waiting = manager.Event();
  mp::Process p([](mp::QueueProxy<int> q, mp::EventProxy waiting) {
    waiting.set();
    q.get();  // blocks in the server
  }, q, waiting);
  p.start();
  ASSERT_TRUE(waiting.wait(10s));
  std::this_thread::sleep_for(100ms);  // inside get
  p.kill();
  p.join();
  std::this_thread::sleep_for(200ms);  // the server notices within a slice
  q.put(7);
  std::this_thread::sleep_for(200ms);  // a server thread still serving the dead get would take it now
  EXPECT_EQ(q.get(1s), 7);
}

// ---- under every start method -------------------------------------------------------

class ManagerProcessTest : public StartMethodTest {};
MP_INSTANTIATE_FOR_START_METHODS(ManagerProcessTest);

void set_data(mp::DictProxy<std::string, int> d) { d.set("data", 42); }
void append_line(mp::ListProxy<std::string> l, int i) { l.append("Data from worker " + std::to_string(i)); }

TEST_P(ManagerProcessTest, AChildWritesADictTheParentReads) {
  mp::Manager manager({.start_method = GetParam()});
  auto d = manager.dict<std::string, int>();
  auto p = ctx().Process(set_data, d);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(d.copy(), (std::map<std::string, int>{{"data", 42}}));
}

TEST_P(ManagerProcessTest, TwoChildrenAppendToOneList) {
  mp::Manager manager({.start_method = GetParam()});
  auto l = manager.list<std::string>();
  auto p1 = ctx().Process(append_line, l, 1);
  auto p2 = ctx().Process(append_line, l, 2);
  p1.start();
  p2.start();
  p1.join();
  p2.join();
  auto items = l.copy();
  std::sort(items.begin(), items.end());
  EXPECT_EQ(items, (std::vector<std::string>{"Data from worker 1", "Data from worker 2"}));
}

void produce(mp::QueueProxy<int> q, int n) {
  for (int i = 0; i < n; ++i) q.put(i);
}

TEST_P(ManagerProcessTest, ManyProducersEachItemOnce) {
  mp::Manager manager({.start_method = GetParam()});
  auto q = manager.Queue<int>(8);
  constexpr int kPer = 200;
  std::vector<mp::Process> ps;
  for (int i = 0; i < 3; ++i) ps.push_back(ctx().Process(produce, q, kPer));
  for (auto& p : ps) p.start();
  std::vector<int> count(kPer, 0);
  for (int i = 0; i < 3 * kPer; ++i) ++count[q.get(10s)];
  for (auto& p : ps) p.join();
  for (int c : count) EXPECT_EQ(c, 3);
  EXPECT_TRUE(q.empty());
}

// ---- a server in this process, over TCP, with an authkey ----------------------------

class RemoteManagerTest : public ManagerTest {};

TEST_F(RemoteManagerTest, AClientReachesNamedObjectsWithTheKey) {
  mp::BaseManager server({.address = {"127.0.0.1", 0}, .authkey = "secret"});
  mp::Queue<int> tasks;
  server.register_object("tasks", tasks);
  server.register_object("config", std::map<std::string, int>{{"workers", 2}});
  mp::Server& s = server.get_server();
  std::thread serving([&s] { s.serve_forever(); });

  mp::BaseManager client({.address = server.address(), .authkey = "secret"});
  client.connect();
  auto q = client.get<mp::QueueProxy<int>>("tasks");
  q.put(11);
  EXPECT_EQ(tasks.get(5s), 11);  // the server's own handle sees it
  tasks.put(12);
  EXPECT_EQ(q.get(5s), 12);
  EXPECT_THROW(q.get_nowait(), mp::Empty);
  EXPECT_THROW(q.task_done(), mp::ValueError);  // not a JoinableQueue
  auto config = client.get<mp::DictProxy<std::string, int>>("config");
  EXPECT_EQ(config.get("workers"), 2);
  EXPECT_THROW((client.get<mp::DictProxy<int, int>>("config")), mp::SerializationError);
  auto made = client.list<int>({1});  // objects made remotely
  EXPECT_EQ(made.size(), 1u);

  // A wrong key is refused, and the server goes on.
  mp::BaseManager intruder({.address = server.address(), .authkey = "guess"});
  EXPECT_THROW(intruder.connect(), mp::AuthenticationError);
  mp::BaseManager keyless({.address = server.address()});
  EXPECT_THROW(keyless.connect(), mp::AuthenticationError);
  EXPECT_EQ(config.get("workers"), 2);

  client.shutdown();  // asks the server to stop
  serving.join();
  EXPECT_THROW(config.get("workers"), mp::ValueError);
}

TEST_F(RemoteManagerTest, GarbageAndSilentPeersDoNotHurtTheServer) {
  mp::BaseManager server({.address = {"127.0.0.1", 0}, .authkey = "k"});
  server.register_object("d", std::map<int, int>{{1, 2}});
  mp::Server& s = server.get_server();
  std::thread serving([&s] { s.serve_forever(); });

  // An authenticated peer that sends frames which are not requests.
  auto raw = [&](std::span<const std::byte> frame) {
    mp::Connection c = mp::connection::Client(server.address(), {.authkey = "k"});
    c.send_bytes(frame);
    try {
      return c.recv_bytes();
    } catch (const mp::Error&) {
      return std::vector<std::byte>{};
    }
  };
  // Unknown operation, truncated call header, a call on an unknown id, a bogus create.
  for (std::vector<std::byte> frame : {std::vector<std::byte>{std::byte{99}}, std::vector<std::byte>{std::byte{2}, std::byte{0}},
                                       std::vector<std::byte>(24, std::byte{0}), std::vector<std::byte>{std::byte{1}, std::byte{7}}}) {
    if (frame.size() == 24) frame[0] = std::byte{2};
    auto reply = raw(frame);
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(reply[0], std::byte{1});  // an error reply
  }
  {
    // A header that announces 2^50 bytes, and a frame cut short: the server drops those
    // connections without allocating or waiting, and serves the next client.
    mp::Connection huge = mp::connection::Client(server.address(), {.authkey = "k"});
    const std::uint64_t header = std::uint64_t{1} << 50;
    ASSERT_EQ(::write(huge.fileno(), &header, sizeof header), 8);
    EXPECT_THROW(huge.recv_bytes(), mp::EOFError);
    mp::Connection cut = mp::connection::Client(server.address(), {.authkey = "k"});
    const std::uint64_t ten = 10;
    ASSERT_EQ(::write(cut.fileno(), &ten, sizeof ten), 8);
    ASSERT_EQ(::write(cut.fileno(), "abc", 3), 3);
    ::shutdown(cut.fileno(), SHUT_WR);
    EXPECT_THROW(cut.recv_bytes(), mp::EOFError);
  }
  {
    mp::Connection c = mp::connection::Client(server.address(), {.authkey = "k"});  // says nothing
    mp::BaseManager client({.address = server.address(), .authkey = "k"});
    client.connect();
    EXPECT_EQ((client.get<mp::DictProxy<int, int>>("d").get(1)), 2);
  }
  s.shutdown();
  serving.join();
}

}  // namespace
