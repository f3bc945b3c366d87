// manager_list — twin of seed S3-7 (003:126-147).
//
// Shows: a manager list shared by two children. Each appends its line; the parent
// prints the list as Python prints it, e.g.
// `['Data from worker 1', 'Data from worker 2']` — in either order: the two children
// run at the same time, and whichever reaches the server first appends first.
//
// Nothing differs from the seed (the default start method, fork).
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

void worker1(mp::ListProxy<std::string> shared_list) { shared_list.append("Data from worker 1"); }
void worker2(mp::ListProxy<std::string> shared_list) { shared_list.append("Data from worker 2"); }

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Manager manager;
  auto shared_list = manager.list<std::string>();  // 共享列表
  mp::Process p1(worker1, shared_list);
  mp::Process p2(worker2, shared_list);
  p1.start();
  p2.start();
  p1.join();
  p2.join();

  std::string text = "[";
  for (const auto& line : shared_list.copy()) {
    if (text.size() > 1) text += ", ";
    text += "'" + line + "'";
  }
  std::printf("%s]\n", text.c_str());
}
