// os_fork — twin of seeds S0-2 (000:42-48) and S4-1 (004:14-21), one program for both.
//
// Shows: the raw fork underneath Process (Python's os.fork / os.getpid / os.getppid).
// The parent prints `Process <pid> start` (S4-1), then forks. The child prints
// `child:<pid> parent:<ppid>` (S0-2) and `I am child process <pid> and my parent is
// <ppid>` (S4-1); the parent prints `parent:<pid> child <childpid>` (S0-2) and `I am
// parent process <pid> and my kid is <cpid>` (S4-1). The child's and the parent's
// lines may come in either order.
//
// Where this differs from the seeds: the seeds' parent never waits for its child, and
// their child runs on to the end of the script. Here the child ends with _exit after
// its lines (a forked C++ child should not run the parent's remaining code), and the
// parent reaps it with waitpid, as mp::os::fork asks of its caller, so no zombie is
// left and the child's lines land before the program ends.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <mp/mp.hpp>

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  std::printf("Process %d start\n", mp::os::getpid());
  std::fflush(stdout);  // mp::os::fork flushes stdio too: the line is never printed twice

  const pid_t pid = mp::os::fork();
  if (pid == 0) {  // the child
    std::printf("child:%d parent:%d\n", mp::os::getpid(), mp::os::getppid());
    std::printf("I am child process %d and my parent is %d\n", mp::os::getpid(), mp::os::getppid());
    std::fflush(stdout);
    std::_Exit(0);
  }
  // the parent
  std::printf("parent:%d child %d\n", mp::os::getpid(), pid);
  std::printf("I am parent process %d and my kid is %d\n", mp::os::getpid(), pid);
  std::fflush(stdout);

  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "os_fork: the child did not end cleanly (status %d)\n", status);
    return 1;
  }
}
