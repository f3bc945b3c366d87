// mp/mp.hpp — the umbrella header: Python's multiprocessing for C++20 on Linux.
//
// @code
//   #include <mp/mp.hpp>
//   void f(int x) { std::printf("%d\n", x); }
//   int main(int argc, char** argv) {
//     mp::freeze_support(argc, argv);
//     mp::Process p(f, 42);
//     p.start();
//     p.join();
//   }
// @endcode
#pragma once

#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/dummy.hpp"
#include "mp/errors.hpp"
#include "mp/futures.hpp"
#include "mp/listener.hpp"
#include "mp/managers.hpp"
#include "mp/os.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/progress.hpp"
#include "mp/queues.hpp"
#include "mp/shared_memory.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"
