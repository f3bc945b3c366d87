// A program that uses an installed (or vendored) mp: a spawned child must run.
#include <cstdio>
#include <mp/mp.hpp>

void hello(std::string who) { std::printf("hello from %s\n", who.c_str()); }

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  auto p = mp::get_context<mp::StartMethod::spawn>().Process(hello, "a consumer of mp");
  p.start();
  p.join();
  return p.exitcode().value_or(1);
}
