// tests/shared_memory_test.cpp — SharedMemory, ShareableList and the resource tracker:
// the API and its errors, handles crossing to children under every start method, and
// whole programs (mp_shm_tree, a tree of its own) that forget, unlink, only attach, or
// are SIGKILLed, watched from /dev/shm. Every test leaves /dev/shm as it found it: the
// names it makes start with a prefix unique to this run.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mp/mp.hpp>
#include <set>
#include <string>
#include <thread>

#include "resource_tracker.hpp"
#include "test_util.hpp"

extern char** environ;

using namespace std::chrono_literals;
using mp_test::StartMethodTest;

namespace {

// ---- helpers ---------------------------------------------------------------------

std::string prefix() { return "mpt_" + std::to_string(::getpid()) + "_"; }

std::string unique_name(const std::string& what) {
  static std::atomic<int> counter{0};
  return prefix() + what + "_" + std::to_string(++counter);
}

bool shm_exists(const std::string& name) { return ::access(("/dev/shm/" + name).c_str(), F_OK) == 0; }

std::set<std::string> ours_in_dev_shm() {
  std::set<std::string> names;
  const std::string p = prefix();
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d))
      if (std::strncmp(e->d_name, p.c_str(), p.size()) == 0) names.insert(e->d_name);
    closedir(d);
  }
  return names;
}

// Removes a name a test left on purpose (track = false, or a failed test).
void remove_name(const std::string& name) { ::shm_unlink(("/" + name).c_str()); }

// Polls until `name` is gone from /dev/shm; returns how long it took, or nullopt.
std::optional<std::chrono::milliseconds> wait_unlinked(const std::string& name, std::chrono::milliseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    if (!shm_exists(name)) return took;
    if (took > limit) return std::nullopt;
    std::this_thread::sleep_for(2ms);
  }
}

// Checks that a test left no name with this run's prefix behind.
class DevShmClean : public ::testing::Test {
 protected:
  void SetUp() override { before_ = ours_in_dev_shm(); }
  void TearDown() override {
    const auto after = ours_in_dev_shm();
    EXPECT_EQ(after, before_) << "a test left names in /dev/shm";
    for (const auto& n : after)
      if (!before_.count(n)) remove_name(n);
  }
  std::set<std::string> before_;
};

// ---- mp_shm_tree, run as a separate program (its own tree, its own tracker) --------

class Program {
 public:
  // Runs mp_shm_tree with `args`, in a process group of its own, stdout to a pipe,
  // stderr to a file.
  explicit Program(const std::vector<std::string>& args) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    out_ = out[0];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, err_.path().c_str(), O_WRONLY | O_TRUNC, 0600);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    std::vector<std::string> all = {MP_TEST_SHM_TREE_BIN};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, MP_TEST_SHM_TREE_BIN, &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(out[1]);
    if (rc != 0) throw std::runtime_error("posix_spawn mp_shm_tree failed");
  }
  ~Program() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      wait();
    }
    ::close(out_);
  }

  // One line of its stdout ("" on EOF or after `limit`).
  std::string line(std::chrono::milliseconds limit = 20s) {
    std::string s;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return s;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char c;
      if (::read(out_, &c, 1) != 1) return s;
      if (c == '\n') return s;
      s += c;
    }
  }
  // Waits for it; its exit code (-signal if killed).
  int wait() {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  }
  // SIGKILL to its whole process group: the main and every child (not its tracker).
  void kill_tree() { ::kill(-pid_, SIGKILL); }
  std::string stderr_text() const { return err_.read(); }

 private:
  mp_test::TempFile err_;
  pid_t pid_ = 0;
  int out_ = -1;
};

// ---- SharedMemory: API and errors --------------------------------------------------

class SharedMemoryTest : public DevShmClean {};

TEST_F(SharedMemoryTest, CreateThenAttachByNameSeesTheSameBytes) {
  const std::string name = unique_name("attach");
  mp::SharedMemory shm({.name = name, .create = true, .size = 4096});
  EXPECT_EQ(shm.name(), name);
  EXPECT_EQ(shm.size(), 4096u);
  ASSERT_EQ(shm.buf().size(), 4096u);
  EXPECT_TRUE(shm_exists(name));
  EXPECT_EQ(shm.buf()[10], std::byte{0});  // a new segment is zero-filled
  shm.buf()[0] = std::byte{0xab};
  mp::SharedMemory other(name);
  EXPECT_EQ(other.buf()[0], std::byte{0xab});
  other.buf()[4095] = std::byte{1};
  EXPECT_EQ(shm.buf()[4095], std::byte{1});
  other.close();
  shm.close();
  shm.unlink();
  EXPECT_FALSE(shm_exists(name));
}

TEST_F(SharedMemoryTest, GeneratedNameLooksLikeCPythons) {
  mp::SharedMemory shm({.create = true, .size = 10});
  const std::string& n = shm.name();
  ASSERT_EQ(n.size(), 12u) << n;
  EXPECT_EQ(n.substr(0, 4), "psm_");
  EXPECT_EQ(n.find_first_not_of("0123456789abcdef", 4), std::string::npos) << n;
  EXPECT_TRUE(shm_exists(n));
  mp::SharedMemory shm2({.create = true, .size = 10});
  EXPECT_NE(shm2.name(), n);
  shm.unlink();
  shm2.unlink();
  EXPECT_FALSE(shm_exists(n));
}

TEST_F(SharedMemoryTest, LeadingSlashIsAcceptedAndNotPartOfTheName) {
  const std::string name = unique_name("slash");
  mp::SharedMemory shm({.name = "/" + name, .create = true, .size = 64});
  EXPECT_EQ(shm.name(), name);
  mp::SharedMemory other("/" + name);
  EXPECT_EQ(other.name(), name);
  shm.unlink();
}

TEST_F(SharedMemoryTest, AttachUsesTheSegmentsSizeNotTheRequestedOne) {
  const std::string name = unique_name("size");
  mp::SharedMemory shm({.name = name, .create = true, .size = 5000});
  mp::SharedMemory small({.name = name, .size = 10});
  EXPECT_EQ(small.size(), 5000u);
  mp::SharedMemory big({.name = name, .size = 1 << 20});
  EXPECT_EQ(big.size(), 5000u);
  EXPECT_EQ(big.buf().size(), 5000u);
  shm.unlink();
}

TEST_F(SharedMemoryTest, AttachToAMissingNameRaisesFileNotFoundError) {
  EXPECT_THROW(mp::SharedMemory(unique_name("missing")), mp::FileNotFoundError);
  EXPECT_THROW(mp::SharedMemory({.name = unique_name("missing"), .size = 10}), mp::FileNotFoundError);
}

TEST_F(SharedMemoryTest, CreateAnExistingNameRaisesFileExistsError) {
  const std::string name = unique_name("exists");
  mp::SharedMemory shm({.name = name, .create = true, .size = 64});
  EXPECT_THROW(mp::SharedMemory({.name = name, .create = true, .size = 64}), mp::FileExistsError);
  EXPECT_TRUE(shm_exists(name));  // the failed create did not remove the existing one
  shm.unlink();
}

TEST_F(SharedMemoryTest, CreateWithSizeZeroRaisesValueError) {
  const std::string name = unique_name("zero");
  EXPECT_THROW(mp::SharedMemory({.name = name, .create = true, .size = 0}), mp::ValueError);
  EXPECT_FALSE(shm_exists(name));
}

TEST_F(SharedMemoryTest, BadNamesRaiseValueError) {
  EXPECT_THROW(mp::SharedMemory(std::string{}), mp::ValueError);  // attach needs a name
  EXPECT_THROW(mp::SharedMemory({.name = "a/b", .create = true, .size = 1}), mp::ValueError);
  EXPECT_THROW(mp::SharedMemory({.name = std::string(300, 'x'), .create = true, .size = 1}), mp::ValueError);
}

TEST_F(SharedMemoryTest, ErrorsAreMpErrors) {
  try {
    mp::SharedMemory shm(unique_name("missing"));
    FAIL();
  } catch (const mp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

TEST_F(SharedMemoryTest, UseAfterCloseRaisesValueErrorForEveryCopy) {
  const std::string name = unique_name("closed");
  mp::SharedMemory shm({.name = name, .create = true, .size = 64});
  mp::SharedMemory copy = shm;
  EXPECT_FALSE(shm.closed());
  shm.close();
  EXPECT_TRUE(shm.closed());
  EXPECT_TRUE(copy.closed());
  EXPECT_THROW(shm.buf(), mp::ValueError);
  EXPECT_THROW(copy.buf(), mp::ValueError);
  EXPECT_EQ(shm.name(), name);  // as in Python: name and size stay readable
  EXPECT_EQ(shm.size(), 64u);
  shm.close();                    // idempotent
  EXPECT_TRUE(shm_exists(name));  // close() does not unlink
  shm.unlink();                   // unlink after close works, as in Python
  EXPECT_FALSE(shm_exists(name));
  EXPECT_THROW(shm.unlink(), mp::FileNotFoundError);
}

TEST_F(SharedMemoryTest, MovedFromHandleRaisesValueError) {
  mp::SharedMemory shm({.name = unique_name("moved"), .create = true, .size = 64});
  mp::SharedMemory moved = std::move(shm);
  EXPECT_THROW(shm.buf(), mp::ValueError);  // NOLINT(bugprone-use-after-move): the point of the test
  EXPECT_THROW(shm.name(), mp::ValueError);
  EXPECT_TRUE(shm.closed());
  EXPECT_NO_THROW(shm.close());
  moved.unlink();
}

TEST_F(SharedMemoryTest, UnlinkKeepsExistingMappingsUsable) {
  const std::string name = unique_name("unlinked");
  mp::SharedMemory shm({.name = name, .create = true, .size = 64});
  mp::SharedMemory other(name);
  shm.unlink();
  EXPECT_FALSE(shm_exists(name));
  shm.buf()[3] = std::byte{9};
  EXPECT_EQ(other.buf()[3], std::byte{9});
  EXPECT_THROW(mp::SharedMemory{name}, mp::FileNotFoundError);
}

TEST_F(SharedMemoryTest, WithDescriptorsItTravelsAsItsDescriptorEvenAfterUnlink) {
  mp::SharedMemory shm({.name = unique_name("fd"), .create = true, .size = 128});
  shm.buf()[0] = std::byte{5};
  std::vector<std::byte> bytes;
  std::vector<int> fds;
  mp::detail::encode(shm, bytes, &fds);
  ASSERT_EQ(fds.size(), 1u);
  shm.unlink();
  auto got = mp::detail::decode<mp::SharedMemory>(bytes, fds);
  EXPECT_EQ(got.name(), shm.name());
  EXPECT_EQ(got.size(), 128u);
  EXPECT_EQ(got.buf()[0], std::byte{5});
  got.buf()[1] = std::byte{6};
  EXPECT_EQ(shm.buf()[1], std::byte{6});
}

TEST_F(SharedMemoryTest, WithoutDescriptorsItTravelsAsItsName) {
  mp::SharedMemory shm({.name = unique_name("byname"), .create = true, .size = 128});
  shm.buf()[0] = std::byte{5};
  const auto bytes = mp::detail::encode(shm);
  auto got = mp::detail::decode<mp::SharedMemory>(bytes);
  EXPECT_EQ(got.buf()[0], std::byte{5});
  shm.unlink();
  EXPECT_THROW(mp::detail::decode<mp::SharedMemory>(bytes), mp::FileNotFoundError);
}

TEST_F(SharedMemoryTest, ClosedHandleCannotBeSent) {
  mp::SharedMemory shm({.name = unique_name("send_closed"), .create = true, .size = 8});
  shm.close();
  EXPECT_THROW(mp::detail::encode(shm), mp::ValueError);
  shm.unlink();
}

// ---- ShareableList ---------------------------------------------------------------

class ShareableListTest : public DevShmClean {};

TEST_F(ShareableListTest, RoundTripsEveryKindOfSlot) {
  const std::vector<std::byte> raw = {std::byte{1}, std::byte{0}, std::byte{255}};
  mp::ShareableList<int, double, bool, char, std::uint64_t, float, std::string, std::vector<std::byte>, long double> sl(
      -7, 2.5, true, 'x', std::uint64_t{1} << 63, 1.25f, std::string("hello"), raw, 3.5L);
  EXPECT_EQ(sl.size(), 9u);
  EXPECT_EQ(sl.get<0>(), -7);
  EXPECT_EQ(sl.get<1>(), 2.5);
  EXPECT_EQ(sl.get<2>(), true);
  EXPECT_EQ(sl.get<3>(), 'x');
  EXPECT_EQ(sl.get<4>(), std::uint64_t{1} << 63);
  EXPECT_EQ(sl.get<5>(), 1.25f);
  EXPECT_EQ(sl.get<6>(), "hello");
  EXPECT_EQ(sl.get<7>(), raw);
  EXPECT_EQ(sl.get<8>(), 3.5L);
  sl.set<0>(42);
  sl.set<1>(3);  // converts, as the slot's type is fixed
  sl.set<2>(false);
  sl.set<6>("hi");
  sl.set<7>(std::vector<std::byte>{});
  sl.set<8>(-1.0L);
  EXPECT_EQ(sl.get<0>(), 42);
  EXPECT_EQ(sl.get<1>(), 3.0);
  EXPECT_FALSE(sl.get<2>());
  EXPECT_EQ(sl.get<6>(), "hi");
  EXPECT_TRUE(sl.get<7>().empty());
  EXPECT_EQ(sl.get<8>(), -1.0L);
  EXPECT_EQ(sl.shm().name().substr(0, 4), "psm_");
  sl.shm().close();
  sl.shm().unlink();
}

TEST_F(ShareableListTest, StringSlotsHaveCPythonsSizeAndRefuseLongerValues) {
  mp::ShareableList<std::string, std::string> sl({.name = unique_name("sl")}, std::string("hello"), std::string(""));
  sl.set<0>("12345678");  // "hello" got 8 * (5 / 8 + 1) = 8 bytes
  EXPECT_EQ(sl.get<0>(), "12345678");
  EXPECT_THROW(sl.set<0>("123456789"), mp::ValueError);
  EXPECT_EQ(sl.get<0>(), "12345678");  // unchanged
  sl.set<1>("8 bytes!");               // "" got 8 bytes too
  EXPECT_THROW(sl.set<1>("9 bytes!!"), mp::ValueError);
  sl.shm().unlink();
}

TEST_F(ShareableListTest, StringsKeepEmbeddedAndTrailingNuls) {
  const std::string s("a\0b\0", 4);
  mp::ShareableList<std::string> sl({.name = unique_name("nul")}, s);
  EXPECT_EQ(sl.get<0>(), s);  // Python strips trailing NULs; mp stores the length
  sl.shm().unlink();
}

TEST_F(ShareableListTest, AttachByNameSeesTheSameSlots) {
  const std::string name = unique_name("sl_attach");
  mp::ShareableList<int, double, std::string> sl({.name = name}, 1, 2.5, std::string("hello"));
  mp::ShareableList<int, double, std::string> other({.name = name});
  EXPECT_EQ(other.get<2>(), "hello");
  other.set<0>(99);
  EXPECT_EQ(sl.get<0>(), 99);
  EXPECT_EQ(other.shm().name(), name);
  sl.shm().unlink();
}

TEST_F(ShareableListTest, AttachWithOtherTypesRaisesSerializationError) {
  const std::string name = unique_name("sl_types");
  mp::ShareableList<int, double, std::string> sl({.name = name}, 1, 2.5, std::string("hello"));
  using Wrong1 = mp::ShareableList<int, float, std::string>;
  using Wrong2 = mp::ShareableList<int, double>;
  using Wrong3 = mp::ShareableList<unsigned, double, std::string>;
  using Wrong4 = mp::ShareableList<int, double, std::vector<std::byte>>;
  EXPECT_THROW(Wrong1({.name = name}), mp::SerializationError);
  EXPECT_THROW(Wrong2({.name = name}), mp::SerializationError);
  EXPECT_THROW(Wrong3({.name = name}), mp::SerializationError);
  EXPECT_THROW(Wrong4({.name = name}), mp::SerializationError);
  try {
    Wrong1 w({.name = name});
  } catch (const mp::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("item 1"), std::string::npos) << e.what();
  }
  sl.shm().unlink();
}

TEST_F(ShareableListTest, AttachToAPlainSegmentRaisesSerializationError) {
  const std::string name = unique_name("plain");
  mp::SharedMemory shm({.name = name, .create = true, .size = 4096});
  std::memset(shm.buf().data(), 0x5a, 4096);
  EXPECT_THROW(mp::ShareableList<int>({.name = name}), mp::SerializationError);
  mp::SharedMemory tiny({.name = name + "_tiny", .create = true, .size = 3});
  EXPECT_THROW(mp::ShareableList<int>({.name = name + "_tiny"}), mp::SerializationError);
  shm.unlink();
  tiny.unlink();
}

TEST_F(ShareableListTest, AttachToAMissingNameRaisesFileNotFoundError) {
  EXPECT_THROW(mp::ShareableList<int>({.name = unique_name("nosl")}), mp::FileNotFoundError);
}

TEST_F(ShareableListTest, CreateAnExistingNameRaisesFileExistsError) {
  const std::string name = unique_name("sl_exists");
  mp::ShareableList<int> sl({.name = name}, 1);
  EXPECT_THROW(mp::ShareableList<int>({.name = name}, 2), mp::FileExistsError);
  EXPECT_EQ(sl.get<0>(), 1);
  sl.shm().unlink();
}

TEST_F(ShareableListTest, ClosedListRaisesValueError) {
  mp::ShareableList<int, std::string> sl(1, std::string("x"));
  sl.shm().close();
  EXPECT_THROW(sl.get<0>(), mp::ValueError);
  EXPECT_THROW(sl.set<1>("y"), mp::ValueError);
  sl.shm().unlink();
}

// ---- across processes, every start method ----------------------------------------

class SharedMemoryProcessTest : public StartMethodTest {
 protected:
  void SetUp() override { before_ = ours_in_dev_shm(); }
  void TearDown() override {
    StartMethodTest::TearDown();
    EXPECT_EQ(ours_in_dev_shm(), before_) << "a test left names in /dev/shm";
  }
  std::set<std::string> before_;
};

void write_one_to_five(mp::SharedMemory shm) {
  for (int i = 0; i < 5; ++i) shm.buf()[static_cast<std::size_t>(i)] = static_cast<std::byte>(i + 1);
}

void attach_and_write(std::string name, std::vector<int> values) {
  mp::SharedMemory shm(name);
  for (std::size_t i = 0; i < values.size(); ++i) shm.buf()[i] = static_cast<std::byte>(values[i]);
}

void create_in_child(std::string name) {
  mp::SharedMemory shm({.name = name, .create = true, .size = 256});
  shm.buf()[0] = std::byte{77};
}

void set_in_child(mp::ShareableList<int, double, std::string> sl) {
  sl.set<0>(sl.get<0>() + 1);
  sl.set<1>(sl.get<1>() * 2);
  sl.set<2>("from child");
}

void attach_list_in_child(std::string name) {
  mp::ShareableList<int, double, std::string> sl({.name = name});
  sl.set<2>("by name");
}

void get_from_queue(mp::Queue<mp::SharedMemory> q) {
  mp::SharedMemory shm = q.get();
  shm.buf()[0] = std::byte{3};
}

void tracked_in_child(mp::Queue<int> out) { out.put(mp::detail::resource_tracker::fd() >= 0 ? 1 : 0); }

TEST_P(SharedMemoryProcessTest, ChildWritesParentReadsThroughAHandleArgument) {
  mp::SharedMemory shm({.name = unique_name("arg"), .create = true, .size = 4096});
  auto p = ctx().Process(write_one_to_five, shm);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(std::to_integer<int>(shm.buf()[static_cast<std::size_t>(i)]), i + 1);
  EXPECT_EQ(shm.buf()[5], std::byte{0});
  shm.close();
  shm.unlink();
}

TEST_P(SharedMemoryProcessTest, ChildAttachesByName) {  // seed S0-7
  const std::string name = unique_name("seed");
  mp::SharedMemory shm({.name = name, .create = true, .size = 4096});
  auto p = ctx().Process(attach_and_write, name, std::vector<int>{1, 2, 3, 4, 5});
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  std::string printed;
  for (std::size_t i = 0; i < 10; ++i) printed += std::to_string(std::to_integer<int>(shm.buf()[i])) + " ";
  EXPECT_EQ(printed, "1 2 3 4 5 0 0 0 0 0 ");
  shm.close();
  shm.unlink();
  EXPECT_TRUE(shm_exists(name) == false);  // the child only attached: nothing else to undo
}

TEST_P(SharedMemoryProcessTest, HandleUnlinkedBeforeStartStillReachesTheChild) {
  mp::SharedMemory shm({.name = unique_name("early"), .create = true, .size = 64});
  shm.unlink();  // "unlink early": the name is gone, the memory is not
  auto p = ctx().Process(write_one_to_five, shm);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(shm.buf()[4], std::byte{5});
}

TEST_P(SharedMemoryProcessTest, SegmentCreatedByAChildOutlivesItForTheParent) {
  const std::string name = unique_name("child_made");
  auto p = ctx().Process(create_in_child, name);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  std::this_thread::sleep_for(100ms);  // a wrong tracker would unlink it by now
  ASSERT_TRUE(shm_exists(name));
  mp::SharedMemory shm(name);
  EXPECT_EQ(shm.buf()[0], std::byte{77});
  shm.unlink();
}

TEST_P(SharedMemoryProcessTest, ChildrenHoldTheTreesTracker) {
  mp::Queue<int> out;
  auto p = ctx().Process(tracked_in_child, out);
  p.start();
  EXPECT_EQ(out.get(10s), 1);
  p.join();
}

TEST_P(SharedMemoryProcessTest, ShareableListTravelsToAChild) {
  mp::ShareableList<int, double, std::string> sl({.name = unique_name("sl_child")}, 1, 2.5, std::string("hello world"));
  auto p = ctx().Process(set_in_child, sl);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(sl.get<0>(), 2);
  EXPECT_EQ(sl.get<1>(), 5.0);
  EXPECT_EQ(sl.get<2>(), "from child");
  auto q = ctx().Process(attach_list_in_child, sl.shm().name());
  q.start();
  q.join();
  EXPECT_EQ(q.exitcode(), 0);
  EXPECT_EQ(sl.get<2>(), "by name");
  sl.shm().unlink();
}

TEST_P(SharedMemoryProcessTest, SharedMemoryInAQueueItemTravelsByName) {
  mp::SharedMemory shm({.name = unique_name("queued"), .create = true, .size = 64});
  mp::Queue<mp::SharedMemory> q;
  auto p = ctx().Process(get_from_queue, q);
  p.start();
  q.put(shm);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(shm.buf()[0], std::byte{3});
  shm.unlink();
}

MP_INSTANTIATE_FOR_START_METHODS(SharedMemoryProcessTest);

// ---- the resource tracker, watched from outside ------------------------------------

class ResourceTrackerTest : public StartMethodTest {
 protected:
  std::string method() const { return std::string(mp::to_string(GetParam())); }
};

TEST_P(ResourceTrackerTest, KilledTreeIsUnlinkedWithinOneSecond) {
  const std::string a = unique_name("killed_main"), b = unique_name("killed_child");
  Program prog({"tree", method(), a, b});
  const std::string ready = prog.line();
  ASSERT_EQ(ready.rfind("ready ", 0), 0u) << "got '" << ready << "', stderr: " << prog.stderr_text();
  const pid_t tracker = std::stoi(ready.substr(6));
  ASSERT_GT(tracker, 0);
  EXPECT_TRUE(shm_exists(a));
  EXPECT_TRUE(shm_exists(b));
  EXPECT_FALSE(mp_test::process_gone(tracker));

  prog.kill_tree();
  EXPECT_EQ(prog.wait(), -SIGKILL);
  const auto took_a = wait_unlinked(a, 2s), took_b = wait_unlinked(b, 2s);
  ASSERT_TRUE(took_a && took_b) << "still in /dev/shm 2 s after the kill";
  EXPECT_LT(took_a->count(), 1000);
  EXPECT_LT(took_b->count(), 1000);
  EXPECT_TRUE(mp_test::wait_gone(tracker, 2s)) << "the tracker outlived its tree";
  const std::string err = prog.stderr_text();
  EXPECT_NE(err.find(a), std::string::npos) << err;  // the one warning names what it removed
  EXPECT_NE(err.find(b), std::string::npos) << err;
  remove_name(a);
  remove_name(b);
}

TEST_P(ResourceTrackerTest, SegmentACreatorLeftStaysWhileTheTreeLives) {
  const std::string name = unique_name("survives");
  Program prog({"child-creates", method(), name});
  EXPECT_EQ(prog.line(), "survived") << prog.stderr_text();
  EXPECT_EQ(prog.wait(), 0) << prog.stderr_text();
  EXPECT_FALSE(shm_exists(name));  // the main unlinked it
  EXPECT_EQ(prog.stderr_text().find("resource_tracker"), std::string::npos) << prog.stderr_text();
  remove_name(name);
}

TEST_P(ResourceTrackerTest, TheTreeStartsOneTrackerAtItsFirstTrackedSegment) {
  const std::string a = unique_name("first_a"), b = unique_name("first_b");
  Program prog({"first-in-children", method(), a, b});
  const std::string line = prog.line();
  EXPECT_EQ(prog.wait(), 0) << "got '" << line << "', stderr: " << prog.stderr_text();
  ASSERT_EQ(line.rfind("tracker ", 0), 0u) << "got '" << line << "', stderr: " << prog.stderr_text();
  const pid_t tracker = std::stoi(line.substr(8));
  EXPECT_TRUE(mp_test::wait_gone(tracker, 2s)) << "the tracker outlived its tree";
  const auto took_a = wait_unlinked(a, 2s), took_b = wait_unlinked(b, 2s);
  EXPECT_TRUE(took_a && took_b) << "left in /dev/shm";
  // One tracker got both registrations: one warning, naming both.
  std::string err;
  for (int i = 0; i < 200 && (err = prog.stderr_text()).find(b) == std::string::npos; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  const auto first = err.find("mp resource_tracker:");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("mp resource_tracker:", first + 1), std::string::npos) << err;
  EXPECT_NE(err.find(a), std::string::npos) << err;
  EXPECT_NE(err.find(b), std::string::npos) << err;
  remove_name(a);
  remove_name(b);
}

TEST_P(ResourceTrackerTest, AStartClaimedByAProcessThatDiedIsTakenOver) {
  const std::string name = unique_name("dead_claimer");
  Program prog({"dead-claimer", method(), name});
  const std::string line = prog.line();
  EXPECT_EQ(prog.wait(), 0) << "got '" << line << "', stderr: " << prog.stderr_text();
  ASSERT_EQ(line.rfind("tracker ", 0), 0u) << "got '" << line << "', stderr: " << prog.stderr_text();
  EXPECT_TRUE(mp_test::wait_gone(std::stoi(line.substr(8)), 2s)) << "the tracker outlived its tree";
  EXPECT_TRUE(wait_unlinked(name, 2s)) << "left in /dev/shm: the tracker that took over did not have it";
  remove_name(name);
}

TEST_P(ResourceTrackerTest, ProcessesThatOnlyAttachedNeverUnlink) {
  const std::string name = unique_name("attach_only");
  mp::SharedMemory shm({.name = name, .create = true, .size = 64, .track = false});
  Program prog({"attach-only", method(), name});
  EXPECT_EQ(prog.wait(), 0) << prog.stderr_text();
  std::this_thread::sleep_for(200ms);  // its tracker has seen the end of its tree by now
  EXPECT_TRUE(shm_exists(name));
  EXPECT_EQ(shm.buf()[1], std::byte{7});
  EXPECT_EQ(prog.stderr_text().find("resource_tracker"), std::string::npos) << prog.stderr_text();
  shm.unlink();
}

MP_INSTANTIATE_FOR_START_METHODS(ResourceTrackerTest);

class ResourceTrackerProgramTest : public DevShmClean {};

TEST_F(ResourceTrackerProgramTest, ForgottenSegmentIsUnlinkedAtExitWithOneWarning) {
  const std::string name = unique_name("forgotten");
  Program prog({"forget", name});
  EXPECT_EQ(prog.wait(), 0);
  const auto took = wait_unlinked(name, 2s);
  ASSERT_TRUE(took.has_value());
  EXPECT_LT(took->count(), 1000);
  // The tracker writes its line just after the unlink: give it a moment.
  std::string err;
  for (int i = 0; i < 200 && err.find(name) == std::string::npos; ++i) {
    std::this_thread::sleep_for(5ms);
    err = prog.stderr_text();
  }
  EXPECT_NE(err.find("never unlinked"), std::string::npos) << err;
  EXPECT_NE(err.find(name), std::string::npos) << err;
}

TEST_F(ResourceTrackerProgramTest, UnlinkedSegmentGivesNoWarning) {
  const std::string name = unique_name("clean");
  Program prog({"clean", name});
  EXPECT_EQ(prog.wait(), 0);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(shm_exists(name));
  EXPECT_EQ(prog.stderr_text(), "");
}

TEST_F(ResourceTrackerProgramTest, UntrackedSegmentOutlivesTheProgram) {
  const std::string name = unique_name("untracked");
  Program prog({"untracked", name});
  EXPECT_EQ(prog.wait(), 0);
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(shm_exists(name));
  EXPECT_EQ(prog.stderr_text(), "");
  mp::SharedMemory shm(name);
  EXPECT_EQ(shm.size(), 100u);
  shm.unlink();
}

TEST_F(ResourceTrackerProgramTest, AKilledTrackerIsReplacedWithAWarning) {
  const std::string first = unique_name("old_tracker"), second = unique_name("new_tracker");
  Program prog({"tracker-killed", first, second});
  EXPECT_EQ(prog.wait(), 0) << prog.stderr_text();
  const auto took = wait_unlinked(second, 2s);  // the new tracker did its job
  EXPECT_TRUE(took.has_value());
  EXPECT_TRUE(shm_exists(first));  // what the killed one held leaks, as documented
  std::string err;
  for (int i = 0; i < 200 && err.find(second) == std::string::npos; ++i) {
    std::this_thread::sleep_for(5ms);
    err = prog.stderr_text();
  }
  EXPECT_NE(err.find("died unexpectedly"), std::string::npos) << err;
  remove_name(first);
  remove_name(second);
}

TEST(ResourceTracker, TrackerIsNotAChildOfTheProgram) {
  mp::SharedMemory shm({.create = true, .size = 8});
  const pid_t tracker = mp::detail::resource_tracker::pid();
  EXPECT_GE(mp::detail::resource_tracker::fd(), 0);
  shm.unlink();
  if (tracker > 0) {  // 0: inherited (this binary started it before a fork)
    const auto kids = mp_test::children_of(::getpid());
    EXPECT_EQ(std::count(kids.begin(), kids.end(), tracker), 0);
    EXPECT_FALSE(mp_test::process_gone(tracker));
  }
  mp_test::expect_no_children_left();
}

}  // namespace
