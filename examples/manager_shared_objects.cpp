// manager_shared_objects — twins the prose of seed S1 (001:172-177): "a Manager
// controls a server process; other processes reach its objects through proxies:
// Namespace; Value/Array; dict/list; Condition/Event/Lock/Queue/Semaphore".
//
// Shows one of each, used from child processes, with output that does not depend on
// timing:
//   Namespace            a child sets two attributes, the parent reads them
//   Value, Array         a child writes them, the parent reads them
//   Lock + Value         4 children x 200 increments under a manager Lock: 800
//   Event + Queue        a child waits for the parent's Event, then answers on a Queue
//   Semaphore(2)         5 children, never more than 2 inside at once
//   Condition            a child waits on it until the parent's notify
// Manager calls are round trips to the server process (~10 us each): fine for
// coordination and shared containers; mp::Value and mp::Queue are the fast path.
#include <cstdio>
#include <mp/mp.hpp>
#include <string>
#include <vector>

namespace {

void set_attributes(mp::NamespaceProxy ns) {
  ns.set("x", 1);
  ns.set("name", std::string("mp"));
}

void write_value_and_array(mp::ValueProxy<double> v, mp::ArrayProxy<int> a) {
  v.set(3.5);
  for (int i = 0; i < 3; ++i) a.set(i, i * 10);
}

void add_under_lock(mp::LockProxy lock, mp::ValueProxy<int> counter) {
  for (int i = 0; i < 200; ++i) {
    std::lock_guard guard(lock);
    counter.set(counter.get() + 1);  // get then set: only the lock makes it atomic
  }
}

void answer_when_told(mp::EventProxy go, mp::QueueProxy<std::string> answers) {
  go.wait();
  answers.put("child saw the event");
}

void one_of_five(mp::SemaphoreProxy slots, mp::ValueProxy<int> inside, mp::ValueProxy<int> most, mp::LockProxy lock) {
  std::lock_guard slot(slots);
  {
    std::lock_guard g(lock);
    const int now = inside.get() + 1;
    inside.set(now);
    if (now > most.get()) most.set(now);
  }
  std::lock_guard g(lock);
  inside.set(inside.get() - 1);
}

void wait_for_ready(mp::ConditionProxy cond, mp::ValueProxy<int> ready, mp::QueueProxy<std::string> answers) {
  std::lock_guard g(cond);
  cond.wait_for([&] { return ready.get() == 1; });
  answers.put("child woke up: ready = 1");
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  mp::Manager manager;

  auto ns = manager.Namespace();
  mp::Process p1(set_attributes, ns);
  p1.start();
  p1.join();
  std::printf("Namespace: x = %d, name = %s\n", ns.get<int>("x"), ns.get<std::string>("name").c_str());

  auto v = manager.Value<double>(0.0);
  auto a = manager.Array<int>(3);
  mp::Process p2(write_value_and_array, v, a);
  p2.start();
  p2.join();
  const auto values = a.copy();
  std::printf("Value, Array: v = %.1f, a = [%d, %d, %d]\n", v.get(), values[0], values[1], values[2]);

  auto lock = manager.Lock();
  auto counter = manager.Value<int>(0);
  std::vector<mp::Process> adders;
  for (int i = 0; i < 4; ++i) adders.emplace_back(add_under_lock, lock, counter);
  for (auto& p : adders) p.start();
  for (auto& p : adders) p.join();
  std::printf("Lock: 4 children x 200 locked increments: counter = %d\n", counter.get());

  auto go = manager.Event();
  auto answers = manager.Queue<std::string>();
  mp::Process p3(answer_when_told, go, answers);
  p3.start();
  std::printf("Event, Queue: before set(): answers.empty() -> %s\n", answers.empty() ? "True" : "False");
  go.set();
  std::printf("Event, Queue: after set(): %s\n", answers.get().c_str());
  p3.join();

  auto slots = manager.Semaphore(2);
  auto inside = manager.Value<int>(0);
  auto most = manager.Value<int>(0);
  std::vector<mp::Process> five;
  for (int i = 0; i < 5; ++i) five.emplace_back(one_of_five, slots, inside, most, lock);
  for (auto& p : five) p.start();
  for (auto& p : five) p.join();
  std::printf("Semaphore(2): 5 children, at most %d inside at once; get_value() -> %llu\n", most.get(),
              static_cast<unsigned long long>(slots.get_value()));

  auto cond = manager.Condition();
  auto ready = manager.Value<int>(0);
  mp::Process p4(wait_for_ready, cond, ready, answers);
  p4.start();
  {
    std::lock_guard g(cond);
    ready.set(1);
    cond.notify_all();
  }
  std::printf("Condition: %s\n", answers.get().c_str());
  p4.join();
}
