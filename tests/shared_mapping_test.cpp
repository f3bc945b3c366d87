// tests/shared_mapping_test.cpp — memfd-backed shared memory (mp/detail/shared_mapping.hpp):
// one mapping per memory file and process, whichever way a handle arrives, and none left
// once the last owner lets go.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "mp/connection.hpp"
#include "mp/detail/shared_mapping.hpp"
#include "mp/detail/sys.hpp"
#include "mp/queues.hpp"

using mp::detail::SharedMapping;

namespace {

// How many mappings of the file behind `fd` this process has (/proc/self/maps by inode).
int mappings_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    // address perms offset dev inode path
    char perms[8], dev[16];
    unsigned long long lo = 0, hi = 0, offset = 0, inode = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %15s %llu", &lo, &hi, perms, &offset, dev, &inode) == 6 &&
        inode == st.st_ino && line.find("memfd:") != std::string::npos)
      ++n;
  }
  return n;
}

}  // namespace

TEST(SharedMapping, AttachingAFileThisProcessMapsGivesTheSameMapping) {
  auto created = SharedMapping::create(4096, "mpt-mapping");
  static_cast<char*>(created->data())[0] = 'x';
  auto attached = SharedMapping::attach(created->fd());
  EXPECT_EQ(attached.get(), created.get());
  EXPECT_EQ(mappings_of(created->fd()), 1);

  // Once every owner has let go, the file is mapped anew (its contents kept by the
  // descriptor held here) and the old mapping is gone.
  mp::detail::UniqueFd kept(::dup(created->fd()));
  created.reset();
  attached.reset();
  EXPECT_EQ(mappings_of(kept.get()), 0);
  auto again = SharedMapping::attach(kept.get());
  EXPECT_EQ(static_cast<char*>(again->data())[0], 'x');
  EXPECT_EQ(mappings_of(kept.get()), 1);
  EXPECT_EQ(SharedMapping::attach(kept.get()).get(), again.get());
}

TEST(SharedMapping, AForkChildAttachingAnInheritedFileUsesTheInheritedMapping) {
  auto created = SharedMapping::create(4096, "mpt-mapping");
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto attached = SharedMapping::attach(created->fd());
    ::_exit(attached->data() == created->data() && mappings_of(created->fd()) == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST(SharedMapping, AQueueHandleSentWithinTheProcessSharesTheMapping) {
  mp::Queue<int> q;
  auto [a, b] = mp::Pipe();
  a.send(q);
  auto received = b.recv<mp::Queue<int>>();
  a.send(q);
  auto twice = b.recv<mp::Queue<int>>();
  q.put(7);
  EXPECT_EQ(received.get(), 7);
  // The queue's memory file: the one descriptor of this process whose link says mp-queue.
  int fd = -1;
  for (int i = 0; i < 1024 && fd < 0; ++i) {
    char link[256] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(i);
    if (::readlink(path.c_str(), link, sizeof link - 1) > 0 && std::strstr(link, "memfd:mp-queue")) fd = i;
  }
  ASSERT_GE(fd, 0);
  EXPECT_EQ(mappings_of(fd), 1);
}
