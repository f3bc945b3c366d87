// thread_minimal — twin of seed S4-7 (004:161-169).
//
// Shows: a thread, with a Process's interface. Python's threading.Thread(target=
// run_thread, args=('Test',)) becomes mp::dummy::Process (multiprocessing.dummy's
// DummyProcess: a thread with the names and members of mp::Process); start() runs
// run_thread("Test") on a new thread, which prints `Test`.
//
// As in the seed there is no join(): Python joins non-daemon threads when the
// interpreter exits, and the Process object's destructor joins a started thread that was
// not joined, so main() ends only after `Test` is printed. freeze_support() is called
// first, as in every twin, though no process is started. Nothing else differs from the
// seed. (Python's threading.Thread is std::thread in plain C++; mp::dummy::Process is
// the one to use where a program switches between threads and processes.)
#include <cstdio>
#include <mp/mp.hpp>
#include <string>

namespace {

void run_thread(const std::string& name) {
  std::printf("%s\n", name.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::dummy::Process t(run_thread, std::string("Test"));  // threading.Thread(target=run_thread, args=('Test',))
  t.start();
  // No join(): t's destructor joins the thread, as Python joins it at exit.
}
