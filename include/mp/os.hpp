// mp/os.hpp — Python's os.fork / os.getpid / os.getppid.
//
// @code
//   pid_t pid = mp::os::fork();
//   if (pid == 0) { std::printf("child:%d parent:%d\n", mp::os::getpid(), mp::os::getppid()); std::_Exit(0); }
// @endcode
#pragma once

#include <sys/types.h>

namespace mp::os {

/// fork(2), made safe for mp's own state: mp's locks are held across the fork, and
/// in the child mp forgets the parent's children (they are not the child's) and the
/// parent's forkserver. Returns 0 in the child, the child's pid in the parent.
/// Throws mp::OSError when fork fails. The caller reaps the child (waitpid).
pid_t fork();
pid_t getpid() noexcept;
pid_t getppid() noexcept;

}  // namespace mp::os
