// manager_remote — twins the prose of seed S1 (001:180): "with a Manager and a Queue,
// processes on different servers can talk (client/server mode)".
//
// Shows Python's distributed-queue pattern over TCP with an authkey:
//   - the master registers two queues, task_queue and result_queue, and start()s a
//     manager server on 127.0.0.1 (port 0: any free port; use "0.0.0.0" and a fixed
//     port to serve other machines);
//   - two workers, started with spawn as fresh programs that know only the address and
//     the key (as a program on another machine would), connect(), take numbers from
//     task_queue and put their squares on result_queue until they get a -1;
//   - the master puts 1..10 and two -1s, gathers the 10 results, and prints them
//     sorted (the order they arrive in depends on the workers);
//   - a client with a wrong key is refused (mp::AuthenticationError) and the server goes
//     on; then the master shuts the server down.
#include <algorithm>
#include <cstdio>
#include <mp/mp.hpp>
#include <string>
#include <vector>

namespace {

void worker(mp::connection::Address address, std::string authkey) {
  mp::BaseManager client({.address = address, .authkey = authkey});
  client.connect();
  auto tasks = client.get<mp::QueueProxy<int>>("task_queue");
  auto results = client.get<mp::QueueProxy<int>>("result_queue");
  for (int n = tasks.get(); n != -1; n = tasks.get()) results.put(n * n);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  const std::string authkey = "abc";
  mp::BaseManager master({.address = {"127.0.0.1", 0}, .authkey = authkey});
  master.register_object("task_queue", mp::Queue<int>{});
  master.register_object("result_queue", mp::Queue<int>{});
  master.start();  // the server process (fork: it carries the registered queues)
  std::printf("master: manager server listening on 127.0.0.1 (TCP), authkey required\n");

  auto tasks = master.get<mp::QueueProxy<int>>("task_queue");
  auto results = master.get<mp::QueueProxy<int>>("result_queue");
  const auto spawn = mp::get_context(mp::StartMethod::spawn);
  std::vector<mp::Process> workers;
  for (int i = 0; i < 2; ++i) workers.push_back(spawn.Process(worker, master.address(), authkey));
  for (auto& w : workers) w.start();

  for (int n = 1; n <= 10; ++n) tasks.put(n);
  for (std::size_t i = 0; i < workers.size(); ++i) tasks.put(-1);
  std::vector<int> squares;
  for (int i = 0; i < 10; ++i) squares.push_back(results.get(std::chrono::seconds(30)));
  for (auto& w : workers) w.join();
  std::sort(squares.begin(), squares.end());
  std::printf("master: results from 2 workers, sorted:");
  for (int s : squares) std::printf(" %d", s);
  std::printf("\n");

  mp::BaseManager intruder({.address = master.address(), .authkey = "guess"});
  try {
    intruder.connect();
    std::printf("intruder: connected?!\n");
  } catch (const mp::AuthenticationError&) {
    std::printf("intruder with a wrong authkey: AuthenticationError\n");
  }
  tasks.put(5);
  std::printf("master: the server still serves: qsize() -> %zu\n", tasks.qsize());
  master.shutdown();
  std::printf("master: server shut down\n");
}
