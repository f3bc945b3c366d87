// tests/test_util.hpp — what every process test checks and uses.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <mp/mp.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process_internal.hpp"

namespace mp_test {

/// The pids whose parent is `parent`, zombies included (state in the second list).
inline std::vector<pid_t> children_of(pid_t parent, std::vector<char>* states = nullptr) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) {
      out.push_back(static_cast<pid_t>(pid));
      if (states) states->push_back(state);
    }
  }
  closedir(d);
  return out;
}

/// True if `pid` no longer runs (gone, or a zombie nobody reaped yet). A zombie counts
/// only once its whole thread group has ended: the leader shows 'Z' as soon as its own
/// thread exits, while other threads (under TSan, the runtime's background thread of a
/// forked child) may still be exiting, and until then waitpid() cannot reap it.
inline bool process_gone(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return true;
  auto close = line.rfind(')');
  if (close == std::string::npos || line.size() <= close + 2) return false;
  std::istringstream rest(line.substr(close + 2));
  char state = 0;
  rest >> state;
  if (state != 'Z') return false;
  std::string skip;
  for (int field = 4; field < 20; ++field) rest >> skip;  // ppid .. nice
  long threads = 0;
  rest >> threads;  // field 20, num_threads: 1 once only the zombie leader is left
  return threads <= 1;
}

/// Waits up to `limit` for `pid` to be gone.
inline bool wait_gone(pid_t pid, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!process_gone(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

/// Every process test ends with no child of this process left (zombie or not), except
/// the forkserver, and no child of the forkserver left.
inline void expect_no_children_left() {
  const pid_t server = mp::detail::forkserver_pid();
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  const auto grace = std::chrono::seconds(10);  // sanitized children start and end slowly
#else
  const auto grace = std::chrono::seconds(2);
#endif
  auto deadline = std::chrono::steady_clock::now() + grace;
  std::vector<pid_t> left;
  for (;;) {
    left.clear();
    for (pid_t p : children_of(::getpid()))
      if (p != server) left.push_back(p);
    if (server > 0)
      for (pid_t p : children_of(server)) left.push_back(p);
    if (left.empty() || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string who;  // what each one is, for the failure message
  for (pid_t p : left) {
    std::ifstream stat("/proc/" + std::to_string(p) + "/stat");
    std::string line;
    std::getline(stat, line);
    who += "\n  " + line;
  }
  EXPECT_TRUE(left.empty()) << "children left behind:" << who;
}

/// A scratch file that is removed when the test ends.
class TempFile {
 public:
  TempFile() {
    char tmpl[] = "/tmp/mp_test_XXXXXX";
    int fd = ::mkstemp(tmpl);
    if (fd >= 0) ::close(fd);
    path_ = tmpl;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }
  std::string read() const {
    std::ifstream f(path_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  std::string path_;
};

/// Appends `text` to the file at `path` (children report through files: Channels are
/// not part of the Core).
inline void append_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::app);
  f << text;
}

/// Redirects this process's stderr (fd 2) to a file for its lifetime.
class CaptureStderr {
 public:
  CaptureStderr() {
    std::fflush(stderr);
    saved_ = ::dup(2);
    std::FILE* f = std::fopen(file_.path().c_str(), "w");
    ::dup2(::fileno(f), 2);
    std::fclose(f);
  }
  ~CaptureStderr() { restore(); }
  std::string text() {
    restore();
    return file_.read();
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  TempFile file_;
  int saved_ = -1;
};

inline std::string method_name(const ::testing::TestParamInfo<mp::StartMethod>& info) {
  return std::string(mp::to_string(info.param));
}

/// The fixture of every test that runs once per start method.
class StartMethodTest : public ::testing::TestWithParam<mp::StartMethod> {
 protected:
  mp::Context ctx() const { return mp::get_context(GetParam()); }
  void TearDown() override { expect_no_children_left(); }
};

}  // namespace mp_test

#define MP_INSTANTIATE_FOR_START_METHODS(Suite)                                                      \
  INSTANTIATE_TEST_SUITE_P(StartMethods, Suite,                                                      \
                           ::testing::Values(mp::StartMethod::fork, mp::StartMethod::spawn,          \
                                             mp::StartMethod::forkserver),                           \
                           ::mp_test::method_name)
