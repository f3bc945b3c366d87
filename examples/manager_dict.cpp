// manager_dict — twin of seed S3-5 (003:74-85).
//
// Shows: mp::Manager, a server process that holds a dict, and a proxy to it passed to a
// child. The child sets d["data"] = 42; the parent prints the dict as Python prints it:
// `{'data': 42}`.
//
// The child is started with spawn (a fresh start of this program): the proxy reaches it
// as the manager's address, its key and the object's number, and the child's set() is a
// request to the server. Otherwise nothing differs from the seed.
#include <cstdio>
#include <map>
#include <mp/mp.hpp>
#include <string>

namespace {

void worker(mp::DictProxy<std::string, int> shared_dict) { shared_dict.set("data", 42); }

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Manager manager;
  auto shared_dict = manager.dict<std::string, int>();
  mp::Process p = mp::get_context(mp::StartMethod::spawn).Process(worker, shared_dict);
  p.start();
  p.join();

  std::string text = "{";
  for (const auto& [key, value] : shared_dict.copy()) {
    if (text.size() > 1) text += ", ";
    text += "'" + key + "': " + std::to_string(value);
  }
  std::printf("%s}\n", text.c_str());
}
