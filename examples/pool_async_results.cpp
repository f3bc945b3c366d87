// pool_async_results — twin of seed S1's Pool method lists (001:36-50); they have no
// code of their own.
//
// Shows, on one mp::Pool(3), what those lists name beyond apply_async and map:
//   AsyncResult    ready(); successful() (mp::ValueError before the result is there, as
//                  in Python 3.7+); get(timeout) raising mp::TimeoutError; wait(); get()
//                  returning the result, or raising the task's error (mp::RemoteError,
//                  which names the worker's exception type and message).
//   map_async      the whole list, in order, through an AsyncResult.
//   imap           results in the order of the inputs: tasks sleeping 600, 100 and
//                  300 ms come back as 600 100 300, each as soon as it and those before
//                  it are done; next(timeout) raises mp::TimeoutError when none came.
//   imap_unordered the same tasks, in the order they finish: 100 300 600.
//   callbacks      apply_async(callback=, error_callback=) and map_async(callback=): they
//                  run in the pool's result thread, so their lines come in any order,
//                  all before the last line: close() and join() return once every
//                  callback has run.
// About 2 s in all.
//
// Where this differs from Python: Python's AsyncResult.wait(timeout) returns None; mp's
// returns whether the result is there (the twin calls it without a timeout). Tasks are
// plain functions, as a task must be (it travels to a running worker, as Python pickles
// it); a callback may be any callable, captures included, since it runs in this process.
#include <chrono>
#include <cstdio>
#include <mp/mp.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

int square(int x) { return x * x; }

int slow_square(int x) {
  std::this_thread::sleep_for(500ms);
  return x * x;
}

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int fails(int x) { throw std::runtime_error("no result for " + std::to_string(x)); }

std::string py_list(const std::vector<int>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  mp::Pool pool(3);

  // AsyncResult: ready, successful, get(timeout), wait, get.
  say("r = pool.apply_async(slow_square, (3,))");
  auto r = pool.apply_async(slow_square, 3);
  say(std::string("  r.ready() -> ") + (r.ready() ? "True" : "False"));
  try {
    r.successful();
  } catch (const mp::ValueError& e) {
    say(std::string("  r.successful() -> ValueError: ") + e.what());
  }
  try {
    r.get(100ms);
  } catch (const mp::TimeoutError&) {
    say("  r.get(timeout=0.1) -> TimeoutError");
  }
  r.wait();
  say(std::string("  r.wait(); r.ready() -> ") + (r.ready() ? "True" : "False") +
      ", r.successful() -> " + (r.successful() ? "True" : "False") + ", r.get() -> " + std::to_string(r.get()));

  say("r = pool.apply_async(fails, (1,))");
  auto bad = pool.apply_async(fails, 1);
  bad.wait();
  say(std::string("  r.wait(); r.successful() -> ") + (bad.successful() ? "True" : "False"));
  try {
    bad.get();
  } catch (const mp::RemoteError& e) {
    say(std::string("  r.get() -> RemoteError: ") + e.what());
  }

  // map_async: the whole list through an AsyncResult.
  auto squares = pool.map_async(square, std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  say("pool.map_async(square, range(10)).get(timeout=5) -> " + py_list(squares.get(5s)));

  // imap and imap_unordered: the same tasks, in input order, then in completion order.
  const std::vector<int> delays{600, 100, 300};
  std::string line = "pool.imap(sleep_ms, [600, 100, 300]), in input order:";
  for (int ms : pool.imap(sleep_ms, delays)) line += " " + std::to_string(ms);
  say(line);
  line = "pool.imap_unordered(sleep_ms, [600, 100, 300]), as they finish:";
  for (int ms : pool.imap_unordered(sleep_ms, delays)) line += " " + std::to_string(ms);
  say(line);

  say("it = pool.imap(sleep_ms, [300])");
  auto it = pool.imap(sleep_ms, std::vector<int>{300});
  try {
    it.next(50ms);
  } catch (const mp::TimeoutError&) {
    say("  it.next(timeout=0.05) -> TimeoutError");
  }
  say("  it.next() -> " + std::to_string(it.next().value()));

  // Callbacks: run in the pool's result thread, in no fixed order.
  say("callbacks:");
  pool.apply_async({.callback = [](int v) { say("  apply_async(square, (4,)) callback: " + std::to_string(v)); }},
                   square, 4);
  pool.apply_async({.error_callback =
                        [](std::exception_ptr e) {
                          try {
                            std::rethrow_exception(e);
                          } catch (const std::exception& x) {
                            say(std::string("  apply_async(fails, (2,)) error_callback: ") + x.what());
                          }
                        }},
                   fails, 2);
  pool.map_async(square, std::vector<int>{0, 1, 2, 3, 4},
                 {.callback = [](const std::vector<int>& v) { say("  map_async(square, range(5)) callback: " + py_list(v)); }});
  pool.close();
  pool.join();  // returns once the result thread has run every callback
  say("pool.close(); pool.join(): every callback has run");
}
