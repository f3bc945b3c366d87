// src/cpu_count.cpp — cpu_count(): the CPUs this process may really use.
//
// Python's os.cpu_count() counts every CPU of the machine, which over-subscribes a
// container or a taskset'd program. mp counts the CPU affinity mask and then applies a
// cgroup v2 quota (cpu.max "QUOTA PERIOD": ceil(QUOTA / PERIOD) CPUs), looked up along
// the process's cgroup path from its own group to the root.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "mp/context.hpp"

namespace mp {
namespace {

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// The smallest quota found along /sys/fs/cgroup/<own path> and its ancestors.
int cgroup_quota_cpus() {
  std::ifstream cg("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  }
  if (path.empty()) return 0;
  int best = 0;
  for (;;) {
    std::ifstream f("/sys/fs/cgroup" + path + "/cpu.max");
    std::string quota;
    double period = 0;
    if (f >> quota >> period && quota != "max" && period > 0) {
      int n = static_cast<int>(std::ceil(std::stod(quota) / period));
      n = std::max(n, 1);
      best = best ? std::min(best, n) : n;
    }
    if (path.empty() || path == "/") break;
    auto slash = path.rfind('/');
    path = slash == 0 || slash == std::string::npos ? std::string("/") : path.substr(0, slash);
  }
  return best;
}

}  // namespace

int cpu_count() {
  int n = affinity_cpus();
  int quota = cgroup_quota_cpus();
  if (quota > 0) n = std::min(n, quota);
  return std::max(n, 1);
}

}  // namespace mp
