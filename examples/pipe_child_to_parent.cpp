// pipe_child_to_parent — twin of seeds S0-5 (000:96-107), S1-3 (001:125-135) and
// S3-3 (003:41-52): the Python docs' Pipe example, which the three seeds share with a
// different payload each.
//
// Shows: a duplex mp::Pipe(); its child end passed to a Process (the child gets its own
// descriptor); the child sends one message and closes its end; the parent closes its
// copy of the child end after start(), receives the message, prints it, and joins.
// The program runs the example once per seed, in seed order, and prints each payload
// as Python's print() shows it:
//   S0-5  [42, None, 'hello']     sent as std::tuple<int, std::optional<int>, std::string>
//   S1-3  ['hello']               sent as std::vector<std::string>
//   S3-3  Message from worker     sent as std::string
// (mp messages are typed: recv<T> names the type that was sent. Python's
// heterogeneous list becomes a tuple, and its None an empty std::optional.)
//
// Where this follows real Python rather than the seeds (EXAMPLES.md note 2): S0-5 and
// S1-3 have no `if __name__ == '__main__'` guard, so they only work under fork; their
// rounds use fork (the default). S3-3 has the guard, so its round uses a spawn context:
// the child is a fresh exec of this program, and the Connection reaches it as a
// descriptor. The seeds' parent never closes its copy of the child end; the twin does,
// so that a child that died without sending would be seen as EOF (mp::EOFError, as
// Python's EOFError) instead of a recv() that waits forever.
#include <cstdio>
#include <mp/mp.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

using ListS05 = std::tuple<int, std::optional<int>, std::string>;  // [42, None, 'hello']

// The three seeds' f / worker.
void f_s0_5(mp::Connection conn) {
  conn.send(ListS05{42, std::nullopt, "hello"});
  conn.close();
}

void f_s1_3(mp::Connection conn) {
  conn.send(std::vector<std::string>{"hello"});
  conn.close();
}

void worker_s3_3(mp::Connection conn) {
  conn.send(std::string("Message from worker"));
  conn.close();
}

// Python's repr() of the values involved, for print() of a list.
std::string py_repr(int v) { return std::to_string(v); }
std::string py_repr(const std::optional<int>& v) { return v ? py_repr(*v) : "None"; }
std::string py_repr(const std::string& s) {
  // Single quotes unless the text holds a ' and no ", as Python does.
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char quote = dq ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    if (c == quote || c == '\\') out += '\\';
    out += c;
  }
  return out + quote;
}

// print(x): a str as itself, a list as [repr, repr, ...].
std::string py_str(const std::string& s) { return s; }
std::string py_str(const std::vector<std::string>& list) {
  std::string out = "[";
  for (std::size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + py_repr(list[i]);
  return out + "]";
}
std::string py_str(const ListS05& list) {
  return "[" + py_repr(std::get<0>(list)) + ", " + py_repr(std::get<1>(list)) + ", " + py_repr(std::get<2>(list)) +
         "]";
}

// The docs' example, with `f` and the message type of one seed:
//   parent_conn, child_conn = Pipe()
//   p = Process(target=f, args=(child_conn,)); p.start()
//   print(parent_conn.recv()); p.join()
template <class Message>
void docs_pipe_example(mp::Context ctx, void (*f)(mp::Connection)) {
  auto [parent_conn, child_conn] = mp::Pipe();
  mp::Process p = ctx.Process(f, child_conn);  // the child gets its own descriptor
  p.start();
  child_conn.close();  // ours: the child has its own now
  std::printf("%s\n", py_str(parent_conn.recv<Message>()).c_str());
  std::fflush(stdout);
  p.join();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  docs_pipe_example<ListS05>(mp::get_context(mp::StartMethod::fork), f_s0_5);                       // S0-5
  docs_pipe_example<std::vector<std::string>>(mp::get_context(mp::StartMethod::fork), f_s1_3);      // S1-3
  docs_pipe_example<std::string>(mp::get_context(mp::StartMethod::spawn), worker_s3_3);             // S3-3
}
