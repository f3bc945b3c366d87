// tests/listener_test.cpp — Listener and Client: addresses, round trips over TCP, Unix
// paths and abstract names, the authkey handshake (its wire format, wrong keys both
// ways, impostors), hostile peers that must neither crash nor wedge a listener, the
// Unix socket file's life, timeouts, misuse, and peers in other processes and threads.
// Real sockets, loopback and abstract Unix names only.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mp/listener.hpp>
#include <mp/mp.hpp>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace mp::detail {
// Defined in src/listener.cpp (internal): checked here against RFC 4231's vectors.
std::array<unsigned char, 32> hmac_sha256(std::string_view key, std::span<const unsigned char> message);
}  // namespace mp::detail

using namespace std::chrono_literals;
using mp::connection::Address;
using mp::connection::Client;
using mp::connection::Listener;
using mp::connection::TcpAddress;
using mp::connection::UnixAddress;
using mp_test::StartMethodTest;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kNoHang = 5s;  // "it did not hang": every bound below is this generous

std::string unique_tag() {
  static std::atomic<int> n{0};
  return "mp_listener_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
}

/// A socket path in /tmp, removed when the test ends whatever happened.
struct TempSocketPath {
  std::string path = "/tmp/" + unique_tag() + ".sock";
  ~TempSocketPath() { ::unlink(path.c_str()); }
};

bool is_socket_file(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}
bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string str(const std::vector<std::byte>& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

std::string hmac(std::string_view key, std::string_view message) {
  auto mac = mp::detail::hmac_sha256(
      key, std::span<const unsigned char>(reinterpret_cast<const unsigned char*>(message.data()), message.size()));
  return std::string(reinterpret_cast<const char*>(mac.data()), mac.size());
}

std::string hex(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

/// Writes raw bytes on a connection's descriptor, under the framing. Never SIGPIPE.
void write_raw(int fd, const void* p, std::size_t n) {
  ASSERT_EQ(::send(fd, p, n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
}

/// A frame header as connection.cpp writes it: length | descriptors << 56.
std::array<unsigned char, 8> header(std::uint64_t length, std::uint64_t fds = 0) {
  std::uint64_t h = length | (fds << 56);
  std::array<unsigned char, 8> out{};
  std::memcpy(out.data(), &h, sizeof h);
  return out;
}

/// One echo: receives a string, sends it back with " (echoed)".
void echo_once(mp::Connection& c) { c.send(c.recv<std::string>() + " (echoed)"); }

/// The server's side of a round trip on an accepted connection: several messages that
/// the client sent right after Client() returned, a large one, and a reply.
void serve_round_trip(mp::Connection c) {
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.recv<int>(), i);
  auto big = c.recv_bytes();
  EXPECT_EQ(big.size(), std::size_t{1} << 20) << "the handshake's 256-byte limit is not left on the connection";
  echo_once(c);
}

void client_round_trip(mp::Connection c) {
  for (int i = 0; i < 3; ++i) c.send(i);  // at once: nothing may be lost to the handshake
  c.send_bytes(std::vector<std::byte>(std::size_t{1} << 20, std::byte{7}));
  c.send(std::string("hello"));
  EXPECT_EQ(c.recv<std::string>(), "hello (echoed)");
}

/// Runs `client` in a thread while the listener accepts one connection and serves it.
void round_trip(Listener& listener, const std::optional<std::string>& key) {
  const Address address = listener.address();
  auto client = std::async(std::launch::async, [address, key] { client_round_trip(Client(address, {.authkey = key})); });
  serve_round_trip(listener.accept(kNoHang));
  client.get();
}

// Spawn/forkserver targets: plain functions.
void client_sends_pid(Address address, std::string key) {
  auto c = Client(address, {.authkey = key});
  c.send(static_cast<int>(::getpid()));
}

void serve_one_echo(mp::Connection report, std::string key) {
  Listener l({"127.0.0.1", 0}, {.authkey = key});
  report.send(l.address());  // an Address travels like any value
  auto c = l.accept();
  echo_once(c);
}

}  // namespace

// ---- addresses ---------------------------------------------------------------------

TEST(ListenerAddress, ConvertsFromHostPortAndFromAPath) {
  Address tcp = {"127.0.0.1", 6000};
  ASSERT_TRUE(tcp.is_tcp());
  EXPECT_EQ(tcp.as_tcp()->host, "127.0.0.1");
  EXPECT_EQ(tcp.as_tcp()->port, 6000);
  EXPECT_EQ(tcp.as_unix(), nullptr);

  Address path = "/tmp/app.sock";
  ASSERT_TRUE(path.is_unix());
  EXPECT_EQ(path.as_unix()->path, "/tmp/app.sock");
  EXPECT_FALSE(path.as_unix()->abstract());
  EXPECT_TRUE(Address("@app").as_unix()->abstract());
  EXPECT_TRUE(Address(std::string("\0app", 4)).as_unix()->abstract());
  EXPECT_TRUE(Address().is_unix()) << "the default asks for an arbitrary abstract name";
  EXPECT_EQ(Address(TcpAddress{"::1", 1}), Address("::1", 1));
  EXPECT_THROW(Address("127.0.0.1", 65536), mp::ValueError);
  EXPECT_THROW(Address("127.0.0.1", -1), mp::ValueError);
}

TEST(ListenerAddress, PrintsAsItIsWrittenInLogs) {
  EXPECT_EQ(Address("127.0.0.1", 6000).to_string(), "127.0.0.1:6000");
  EXPECT_EQ(Address("::1", 6000).to_string(), "[::1]:6000");
  EXPECT_EQ(Address("/tmp/app.sock").to_string(), "/tmp/app.sock");
  EXPECT_EQ(Address("@app").to_string(), "@app");
  EXPECT_EQ(to_string(Address(std::string("\0app", 4))), "@app");
  std::ostringstream os;
  os << Address("localhost", 1);
  EXPECT_EQ(os.str(), "localhost:1");
}

TEST(ListenerAddress, TravelsInAMessage) {
  auto [a, b] = mp::Pipe();
  a.send(Address("::1", 443));
  a.send(Address("@abstract"));
  EXPECT_EQ(b.recv<Address>(), Address("::1", 443));
  EXPECT_EQ(b.recv<Address>(), Address("@abstract"));
}

// ---- round trips -------------------------------------------------------------------

namespace {

enum class Kind { tcp4, localhost, tcp6, unix_path, abstract_at, abstract_nul, arbitrary };

struct RoundTripCase {
  Kind kind;
  bool authkey;
};

std::string case_name(const ::testing::TestParamInfo<RoundTripCase>& info) {
  static const char* names[] = {"Tcp4", "Localhost", "Tcp6", "UnixPath", "AbstractAt", "AbstractNul", "Arbitrary"};
  return std::string(names[static_cast<int>(info.param.kind)]) + (info.param.authkey ? "WithAuthkey" : "WithoutAuthkey");
}

}  // namespace

class ListenerRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(ListenerRoundTrip, AClientTalksToTheListener) {
  TempSocketPath tmp;
  Address address;
  switch (GetParam().kind) {
    case Kind::tcp4: address = {"127.0.0.1", 0}; break;
    case Kind::localhost: address = {"localhost", 0}; break;
    case Kind::tcp6: address = {"::1", 0}; break;
    case Kind::unix_path: address = tmp.path; break;
    case Kind::abstract_at: address = "@" + unique_tag(); break;
    case Kind::abstract_nul: address = std::string(1, '\0') + unique_tag(); break;
    case Kind::arbitrary: address = Address(); break;
  }
  std::optional<std::string> key;
  if (GetParam().authkey) key = "secret password";

  std::optional<Listener> listener;
  try {
    listener.emplace(address, mp::connection::ListenerOptions{.authkey = key});
  } catch (const mp::OSError& e) {
    if (GetParam().kind == Kind::tcp6) GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
    throw;
  }
  const Address& bound = listener->address();
  if (const TcpAddress* t = bound.as_tcp()) {
    EXPECT_NE(t->port, 0) << "port 0 is reported as the port actually bound";
    if (GetParam().kind == Kind::tcp6) {
      EXPECT_EQ(t->host, "::1");
    }
    if (GetParam().kind == Kind::tcp4) {
      EXPECT_EQ(t->host, "127.0.0.1");
    }
  } else if (GetParam().kind == Kind::arbitrary) {
    ASSERT_TRUE(bound.as_unix()->abstract());
    EXPECT_EQ(bound.to_string()[0], '@');
    EXPECT_GT(bound.as_unix()->path.size(), 1u);
  } else {
    EXPECT_EQ(bound, address) << "a Unix address is reported as given";
  }

  round_trip(*listener, key);
  ASSERT_TRUE(listener->last_accepted().has_value());
  if (const TcpAddress* peer = listener->last_accepted()->as_tcp()) {
    EXPECT_NE(peer->port, 0);
    EXPECT_EQ(peer->host, bound.as_tcp()->host);
  }
  round_trip(*listener, key);  // and the next client
}

INSTANTIATE_TEST_SUITE_P(
    AddressKinds, ListenerRoundTrip,
    ::testing::Values(RoundTripCase{Kind::tcp4, false}, RoundTripCase{Kind::tcp4, true},
                      RoundTripCase{Kind::localhost, true}, RoundTripCase{Kind::tcp6, false},
                      RoundTripCase{Kind::tcp6, true}, RoundTripCase{Kind::unix_path, false},
                      RoundTripCase{Kind::unix_path, true}, RoundTripCase{Kind::abstract_at, false},
                      RoundTripCase{Kind::abstract_at, true}, RoundTripCase{Kind::abstract_nul, true},
                      RoundTripCase{Kind::arbitrary, false}, RoundTripCase{Kind::arbitrary, true}),
    case_name);

TEST(Listener, AConnectionOverAUnixSocketCarriesHandles) {
  Listener listener(Address(), {.authkey = "k"});
  auto client = std::async(std::launch::async, [a = listener.address()] {
    auto c = Client(a, {.authkey = "k"});
    auto [r, w] = mp::Pipe(false);
    c.send(w);
    w.close();
    EXPECT_EQ(r.recv<std::string>(), "through the pipe end");
  });
  auto c = listener.accept(kNoHang);
  auto w = c.recv<mp::Connection>();
  w.send(std::string("through the pipe end"));
  client.get();
}

TEST(Listener, ManyClientThreadsAreServedOneAfterAnother) {
  Listener listener({"127.0.0.1", 0}, {.authkey = "k"});
  constexpr int kClients = 8;
  std::vector<std::future<void>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::async(std::launch::async, [a = listener.address(), i] {
      auto c = Client(a, {.authkey = "k"});
      c.send(i);
      EXPECT_EQ(c.recv<int>(), i * 10);
    }));
  }
  for (int i = 0; i < kClients; ++i) {
    auto c = listener.accept(kNoHang);
    int v = c.recv<int>();
    c.send(v * 10);
  }
  for (auto& f : clients) f.get();
}

TEST(Listener, ItsDescriptorIsReadableWhenAClientWaits) {
  Listener listener({"127.0.0.1", 0});
  EXPECT_TRUE(mp::connection::wait({listener.fileno()}, 20ms).empty());
  auto c = Client({"127.0.0.1", listener.address().as_tcp()->port});  // {host, port} reads as in Python
  EXPECT_EQ(mp::connection::wait({listener.fileno()}, kNoHang).size(), 1u);
  auto s = listener.accept(kNoHang);
  c.send(1);
  EXPECT_EQ(s.recv<int>(), 1);
}

// ---- the Unix socket file ----------------------------------------------------------

TEST(ListenerUnixFile, ClosingRemovesTheSocketFile) {
  TempSocketPath tmp;
  {
    Listener listener(tmp.path);
    EXPECT_TRUE(is_socket_file(tmp.path));
    listener.close();
    EXPECT_TRUE(listener.closed());
    EXPECT_FALSE(exists(tmp.path));
    EXPECT_EQ(listener.address(), Address(tmp.path)) << "address() still answers after close()";
    listener.close();  // idempotent
  }
  {
    Listener listener(tmp.path);
    EXPECT_TRUE(is_socket_file(tmp.path));
  }
  EXPECT_FALSE(exists(tmp.path)) << "the destructor removes it too";
}

TEST(ListenerUnixFile, AStaleSocketFileIsReplaced) {
  TempSocketPath tmp;
  {  // a crashed server: bound, never unlinked
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strcpy(sa.sun_path, tmp.path.c_str());
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ::close(s);
  }
  ASSERT_TRUE(is_socket_file(tmp.path));
  Listener listener(tmp.path, {.authkey = "k"});
  round_trip(listener, "k");
}

TEST(ListenerUnixFile, ALiveListenersPathIsNotTaken) {
  TempSocketPath tmp;
  Listener first(tmp.path, {.authkey = "k", .handshake_timeout = 2s});
  try {
    Listener second(tmp.path);
    ADD_FAILURE() << "a second listener took a live listener's path";
  } catch (const mp::OSError& e) {
    EXPECT_EQ(e.code(), EADDRINUSE);
  }
  EXPECT_TRUE(is_socket_file(tmp.path));
  // The liveness probe was a connection the first listener sees, and drops.
  EXPECT_THROW(first.accept(kNoHang), mp::AuthenticationError);
  round_trip(first, "k");
}

TEST(ListenerUnixFile, AFileThatIsNotASocketIsLeftAlone) {
  TempSocketPath tmp;
  { std::ofstream(tmp.path) << "precious"; }
  try {
    Listener listener(tmp.path);
    ADD_FAILURE() << "bound over a regular file";
  } catch (const mp::OSError& e) {
    EXPECT_EQ(e.code(), EADDRINUSE);
  }
  std::ifstream f(tmp.path);
  std::string content;
  f >> content;
  EXPECT_EQ(content, "precious");
}

TEST(ListenerUnixFile, AMovedFromListenerLeavesTheFileToTheNewOwner) {
  TempSocketPath tmp;
  std::optional<Listener> moved_to;
  {
    Listener original(tmp.path);
    moved_to.emplace(std::move(original));
    EXPECT_TRUE(original.closed());
    EXPECT_THROW(original.accept(), mp::ValueError);
    EXPECT_THROW(original.address(), mp::ValueError);
  }
  EXPECT_TRUE(is_socket_file(tmp.path));
  round_trip(*moved_to, std::nullopt);
  Listener other(Address("@" + unique_tag()));
  other = std::move(*moved_to);  // other's own listener closes; the file moves on
  EXPECT_TRUE(is_socket_file(tmp.path));
  moved_to.reset();
  EXPECT_TRUE(is_socket_file(tmp.path));
  other.close();
  EXPECT_FALSE(exists(tmp.path));
}

TEST(ListenerUnixFile, AForkedChildClosingItsCopyLeavesTheFile) {
  TempSocketPath tmp;
  Listener listener(tmp.path);
  mp::Process p(mp::ProcessOptions{.start_method = mp::StartMethod::fork}, [&listener] { listener.close(); });
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_TRUE(is_socket_file(tmp.path));
  round_trip(listener, std::nullopt);
  mp_test::expect_no_children_left();
}

TEST(ListenerUnixFile, AnotherListenersReplacementIsNotRemoved) {
  TempSocketPath tmp;
  Listener first(tmp.path);
  ::unlink(tmp.path.c_str());  // someone removed it, and a new server took the path
  Listener second(tmp.path);
  first.close();
  EXPECT_TRUE(is_socket_file(tmp.path)) << "first removed a file it did not create";
  round_trip(second, std::nullopt);
}

// ---- misuse and timeouts -----------------------------------------------------------

TEST(Listener, AcceptOnAClosedListenerRaisesValueError) {
  Listener listener({"127.0.0.1", 0});
  listener.close();
  EXPECT_THROW(listener.accept(), mp::ValueError);
  EXPECT_THROW(listener.accept(10ms), mp::ValueError);
  EXPECT_THROW(listener.fileno(), mp::ValueError);
}

TEST(Listener, AcceptWithATimeoutRaisesTimeoutErrorWhenNobodyComes) {
  Listener listener(Address(), {.authkey = "k"});
  const auto t0 = Clock::now();
  EXPECT_THROW(listener.accept(100ms), mp::TimeoutError);
  EXPECT_LT(Clock::now() - t0, kNoHang);
  round_trip(listener, "k");  // still usable
}

TEST(Listener, InvalidOptionsRaiseValueError) {
  EXPECT_THROW(Listener(Address(), {.backlog = -1}), mp::ValueError);
  EXPECT_THROW(Listener(Address(), {.handshake_timeout = 0s}), mp::ValueError);
  EXPECT_THROW(Listener(Address("/tmp/" + std::string(200, 'x'))), mp::ValueError);
  EXPECT_THROW(Listener(Address("@" + std::string(200, 'x'))), mp::ValueError);
  EXPECT_THROW(Listener(Address(std::string("/tmp/a\0b", 8))), mp::ValueError);
}

TEST(Client, InvalidOptionsRaiseValueError) {
  EXPECT_THROW(Client(Address("@x"), {.timeout = 0s}), mp::ValueError);
  EXPECT_THROW(Client(Address()), mp::ValueError);
  EXPECT_THROW(Client(Address("/tmp/" + std::string(200, 'x'))), mp::ValueError);
}

TEST(Client, NobodyListeningRaisesOSError) {
  TempSocketPath tmp;
  try {
    Client(tmp.path);
    ADD_FAILURE() << "connected to nothing";
  } catch (const mp::OSError& e) {
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_NE(std::string(e.what()).find(tmp.path), std::string::npos) << e.what();
  }
  try {
    Client(Address("@" + unique_tag()));
    ADD_FAILURE() << "connected to nothing";
  } catch (const mp::OSError& e) {
    EXPECT_EQ(e.code(), ECONNREFUSED);
  }
  Address gone;
  {
    Listener l({"127.0.0.1", 0});
    gone = l.address();
  }
  try {
    Client(gone);
    ADD_FAILURE() << "connected to a closed port";
  } catch (const mp::OSError& e) {
    EXPECT_EQ(e.code(), ECONNREFUSED);
  }
}

// ---- authentication ----------------------------------------------------------------

TEST(ListenerAuth, HmacSha256MatchesRfc4231) {
  // Test case 1.
  EXPECT_EQ(hex(hmac(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2: a key shorter than the digest.
  EXPECT_EQ(hex(hmac("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block is hashed first.
  EXPECT_EQ(hex(hmac(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(ListenerAuth, AWrongKeyFailsOnBothEndsAndTheNextClientIsServed) {
  for (Address address : {Address("127.0.0.1", 0), Address()}) {
    Listener listener(address, {.authkey = "right"});
    auto bad = std::async(std::launch::async, [a = listener.address()] {
      try {
        Client(a, {.authkey = "wrong"});
        ADD_FAILURE() << "the client accepted a listener with another key";
      } catch (const mp::AuthenticationError& e) {
        EXPECT_NE(std::string(e.what()).find("rejected"), std::string::npos) << e.what();
      }
    });
    try {
      listener.accept(kNoHang);
      ADD_FAILURE() << "the listener accepted a client with another key";
    } catch (const mp::AuthenticationError& e) {
      EXPECT_NE(std::string(e.what()).find("digest received was wrong"), std::string::npos) << e.what();
    }
    bad.get();
    round_trip(listener, "right");
  }
}

TEST(ListenerAuth, KeysAreBytes) {
  const std::string key1 = std::string("a\0b", 3) + std::string(300, '\xff');
  const std::string key2 = std::string("a\0c", 3) + std::string(300, '\xff');
  Listener listener(Address(), {.authkey = key1});
  round_trip(listener, key1);
  auto bad = std::async(std::launch::async, [&] { EXPECT_THROW(Client(listener.address(), {.authkey = key2}), mp::AuthenticationError); });
  EXPECT_THROW(listener.accept(kNoHang), mp::AuthenticationError);
  bad.get();
}

TEST(ListenerAuth, AClientWithoutAKeyIsRefusedAndNothingItSentIsDecoded) {
  Listener listener({"127.0.0.1", 0}, {.authkey = "k", .handshake_timeout = 2s});
  auto keyless = Client(listener.address());
  keyless.send(std::vector<std::string>{"a typed message", "is not an answer"});
  const auto t0 = Clock::now();
  try {
    listener.accept(kNoHang);
    ADD_FAILURE() << "accepted a keyless client";
  } catch (const mp::AuthenticationError& e) {
    EXPECT_NE(std::string(e.what()).find("not an HMAC-SHA256 digest"), std::string::npos) << e.what();
  }
  EXPECT_LT(Clock::now() - t0, 2s) << "refused at once, not after the timeout";
  EXPECT_EQ(str(keyless.recv_bytes()).substr(0, 19), "#CHALLENGE#{sha256}");
  EXPECT_EQ(str(keyless.recv_bytes()), "#FAILURE#");
  EXPECT_THROW(keyless.recv_bytes(), mp::EOFError);
}

TEST(ListenerAuth, TheWireProtocolIsCPythons) {
  // A hand-written listener speaks the protocol with plain send_bytes/recv_bytes to a
  // real Client.
  const std::string key = "shared secret";
  Listener raw({"127.0.0.1", 0});
  auto client = std::async(std::launch::async, [a = raw.address(), key] {
    auto c = Client(a, {.authkey = key});
    c.send(std::string("after the handshake"));
  });
  auto c = raw.accept(kNoHang);
  // 1. We challenge the client.
  std::string nonce(40, '\0');
  std::mt19937 rng(1);
  for (auto& ch : nonce) ch = static_cast<char>(rng());
  const std::string message = "{sha256}" + nonce;
  c.send_bytes("#CHALLENGE#" + message);
  EXPECT_EQ(str(c.recv_bytes()), "{sha256}" + hmac(key, message)) << "HMAC over the whole message, marker included";
  c.send_bytes("#WELCOME#");
  // 2. The client challenges us.
  const std::string challenge = str(c.recv_bytes());
  ASSERT_EQ(challenge.size(), 11u + 8u + 40u);
  ASSERT_EQ(challenge.substr(0, 19), "#CHALLENGE#{sha256}");
  c.send_bytes("{sha256}" + hmac(key, challenge.substr(11)));
  EXPECT_EQ(str(c.recv_bytes()), "#WELCOME#");
  EXPECT_EQ(c.recv<std::string>(), "after the handshake");
  client.get();

  // And a hand-written client against a real Listener.
  Listener listener({"127.0.0.1", 0}, {.authkey = key});
  auto server = std::async(std::launch::async, [&] { return listener.accept(kNoHang).recv<std::string>(); });
  auto h = Client(listener.address());
  const std::string their = str(h.recv_bytes());
  ASSERT_EQ(their.substr(0, 19), "#CHALLENGE#{sha256}");
  h.send_bytes("{sha256}" + hmac(key, their.substr(11)));
  EXPECT_EQ(str(h.recv_bytes()), "#WELCOME#");
  h.send_bytes("#CHALLENGE#" + message);
  EXPECT_EQ(str(h.recv_bytes()), "{sha256}" + hmac(key, message));
  h.send_bytes("#WELCOME#");
  h.send(std::string("hand-made"));
  EXPECT_EQ(server.get(), "hand-made");
}

TEST(ListenerAuth, AnImpostorListenerIsDetectedByTheClient) {
  // It welcomes anyone, but cannot answer the client's challenge without the key.
  Listener raw;  // an arbitrary abstract name
  auto client = std::async(std::launch::async, [a = raw.address()] {
    try {
      Client(a, {.authkey = "k"});
      ADD_FAILURE() << "the client trusted an impostor";
    } catch (const mp::AuthenticationError& e) {
      EXPECT_NE(std::string(e.what()).find("digest received was wrong"), std::string::npos) << e.what();
    }
  });
  auto c = raw.accept(kNoHang);
  c.send_bytes("#CHALLENGE#{sha256}" + std::string(40, 'n'));
  c.recv_bytes();
  c.send_bytes("#WELCOME#");
  c.recv_bytes();  // the client's challenge
  c.send_bytes("{sha256}" + std::string(32, 'x'));
  EXPECT_EQ(str(c.recv_bytes()), "#FAILURE#");
  client.get();
}

// ---- hostile peers: the listener neither crashes nor waits beyond its deadline --------

namespace {

int count_open_fds() {
  int n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

/// accept() must fail with AuthenticationError, promptly; returns its message.
std::string expect_refused(Listener& listener) {
  const auto t0 = Clock::now();
  std::string what;
  try {
    listener.accept(kNoHang);
    ADD_FAILURE() << "a hostile peer was accepted";
  } catch (const mp::AuthenticationError& e) {
    what = e.what();
  }
  EXPECT_LT(Clock::now() - t0, kNoHang);
  return what;
}

}  // namespace

class ListenerHostilePeer : public ::testing::TestWithParam<bool> {  // true: TCP, false: Unix
 protected:
  Address address() const { return GetParam() ? Address("127.0.0.1", 0) : Address(); }
};

TEST_P(ListenerHostilePeer, ASilentPeerTimesOutAndTheNextClientIsServed) {
  Listener listener(address(), {.authkey = "k", .handshake_timeout = 200ms});
  auto silent = Client(listener.address());  // connects, says nothing, stays
  EXPECT_NE(expect_refused(listener).find("200ms"), std::string::npos) << "the message names the timeout";
  round_trip(listener, "k");
}

TEST_P(ListenerHostilePeer, AClientThatHangsUpIsRefused) {
  Listener listener(address(), {.authkey = "k", .handshake_timeout = 2s});
  Client(listener.address()).close();  // gone before accept: replying to it is EPIPE, not SIGPIPE
  EXPECT_NE(expect_refused(listener).find("closed"), std::string::npos);
  // Hanging up after reading the challenge.
  auto reader = std::async(std::launch::async, [a = listener.address()] {
    auto c = Client(a);
    c.recv_bytes();
  });
  EXPECT_NE(expect_refused(listener).find("closed"), std::string::npos);
  reader.get();
  round_trip(listener, "k");
}

TEST_P(ListenerHostilePeer, GarbageNeverCrashesNorWedgesTheListener) {
  Listener listener(address(), {.authkey = "k", .handshake_timeout = 300ms});
  const int fds_before = count_open_fds();
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {  // random bytes of random lengths
    auto peer = Client(listener.address());
    std::vector<unsigned char> junk(static_cast<std::size_t>(rng() % 2000 + 1));
    for (auto& b : junk) b = static_cast<unsigned char>(rng());
    write_raw(peer.fileno(), junk.data(), junk.size());
    expect_refused(listener);
  }
  {  // a header announcing a terabyte
    auto peer = Client(listener.address());
    auto h = header(std::uint64_t{1} << 40);
    write_raw(peer.fileno(), h.data(), h.size());
    EXPECT_NE(expect_refused(listener).find("at most 256"), std::string::npos);
  }
  {  // one byte over the limit
    auto peer = Client(listener.address());
    peer.send_bytes(std::string(257, 'x'));
    EXPECT_NE(expect_refused(listener).find("257"), std::string::npos);
  }
  {  // a header that claims descriptors
    auto peer = Client(listener.address());
    auto h = header(40, 3);
    write_raw(peer.fileno(), h.data(), h.size());
    EXPECT_NE(expect_refused(listener).find("descriptors"), std::string::npos);
  }
  {  // half a frame, then silence
    auto peer = Client(listener.address());
    auto h = header(40);
    write_raw(peer.fileno(), h.data(), h.size());
    write_raw(peer.fileno(), "{sha256}", 8);
    EXPECT_NE(expect_refused(listener).find("300ms"), std::string::npos);
  }
  {  // half a header
    auto peer = Client(listener.address());
    write_raw(peer.fileno(), "\x28\0\0", 3);
    EXPECT_NE(expect_refused(listener).find("300ms"), std::string::npos);
  }
  {  // the right shape, a wrong digest
    auto peer = Client(listener.address());
    peer.send_bytes("{sha256}" + std::string(32, '\0'));
    EXPECT_NE(expect_refused(listener).find("wrong"), std::string::npos);
  }
  {  // a peer that answers with a challenge of its own
    auto peer = Client(listener.address());
    peer.send_bytes("#CHALLENGE#{sha256}" + std::string(40, 'x'));
    expect_refused(listener);
  }
  if (!GetParam()) {  // real descriptors attached to a frame (Unix only)
    auto peer = Client(listener.address());
    auto [r, w] = mp::Pipe();
    peer.send(r);
    EXPECT_NE(expect_refused(listener).find("descriptors"), std::string::npos);
  }
  EXPECT_EQ(count_open_fds(), fds_before) << "a refused connection leaked a descriptor";
  round_trip(listener, "k");
}

TEST_P(ListenerHostilePeer, APeerTricklingBytesCannotStretchTheDeadline) {
  Listener listener(address(), {.authkey = "k", .handshake_timeout = 200ms});
  auto peer = Client(listener.address());
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    auto h = header(200);
    write_raw(peer.fileno(), h.data(), h.size());
    for (int i = 0; i < 200 && !stop; ++i) {  // one byte every 20 ms: 4 s for the frame
      if (::send(peer.fileno(), "x", 1, MSG_NOSIGNAL) != 1) break;
      std::this_thread::sleep_for(20ms);
    }
  });
  const auto t0 = Clock::now();
  EXPECT_NE(expect_refused(listener).find("200ms"), std::string::npos);
  EXPECT_LT(Clock::now() - t0, 2s) << "the deadline covers the whole handshake, not each read";
  stop = true;
  trickler.join();
  round_trip(listener, "k");
}

INSTANTIATE_TEST_SUITE_P(Transports, ListenerHostilePeer, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Tcp" : "Unix"; });

// ---- a client facing a listener that does not play along ---------------------------

TEST(ClientTimeout, AListenerThatNeverAnswersMakesTheClientTimeOut) {
  Listener mute({"127.0.0.1", 0});  // never accepts: the kernel completes the connection anyway
  const auto t0 = Clock::now();
  try {
    Client(mute.address(), {.authkey = "k", .timeout = 200ms});
    ADD_FAILURE() << "the client did not time out";
  } catch (const mp::AuthenticationError& e) {
    EXPECT_NE(std::string(e.what()).find("200ms"), std::string::npos) << e.what();
  }
  EXPECT_LT(Clock::now() - t0, kNoHang);
}

TEST(ClientTimeout, AListenerWithoutAKeyIsRefusedByAKeyedClient) {
  Listener keyless;
  auto server = std::async(std::launch::async, [&] {
    auto c = keyless.accept(kNoHang);
    c.send(std::string("hello, whoever you are"));
    EXPECT_THROW(c.recv_bytes(), mp::EOFError);
  });
  try {
    Client(keyless.address(), {.authkey = "k", .timeout = 2s});
    ADD_FAILURE() << "the client accepted a keyless listener";
  } catch (const mp::AuthenticationError& e) {
    EXPECT_NE(std::string(e.what()).find("expected an authentication challenge"), std::string::npos) << e.what();
  }
  server.get();
}

TEST(ClientTimeout, AListenerSendingGarbageOrHangingUpIsRefusedAtOnce) {
  Listener raw;  // an arbitrary abstract name
  auto server = std::async(std::launch::async, [&] {
    raw.accept(kNoHang).send_bytes(std::string(1000, 'x'));  // too long for a handshake
    auto c = raw.accept(kNoHang);
    c.send_bytes("#CHALLENGE#{sha256}" + std::string(40, 'n'));
    c.recv_bytes();
    c.close();  // hangs up instead of a verdict
  });
  EXPECT_THROW(Client(raw.address(), {.authkey = "k", .timeout = 2s}), mp::AuthenticationError);
  try {
    Client(raw.address(), {.authkey = "k", .timeout = 2s});
    ADD_FAILURE();
  } catch (const mp::AuthenticationError& e) {
    EXPECT_NE(std::string(e.what()).find("closed"), std::string::npos) << e.what();
  }
  server.get();
}

// ---- peers in other processes ------------------------------------------------------

class ListenerProcessTest : public StartMethodTest {};
MP_INSTANTIATE_FOR_START_METHODS(ListenerProcessTest);

TEST_P(ListenerProcessTest, AChildClientIsAuthenticatedAndHeard) {
  for (Address address : {Address("127.0.0.1", 0), Address()}) {
    Listener listener(address, {.authkey = "family secret"});
    auto p = ctx().Process(client_sends_pid, listener.address(), std::string("family secret"));
    p.start();
    auto c = listener.accept(kNoHang);
    EXPECT_EQ(c.recv<int>(), *p.pid());
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
  }
}

TEST_P(ListenerProcessTest, AChildWithTheWrongKeyIsRefusedOnBothEnds) {
  Listener listener(Address(), {.authkey = "family secret"});
  auto p = ctx().Process(client_sends_pid, listener.address(), std::string("a guess"));
  mp_test::CaptureStderr quiet;  // the child's AuthenticationError is printed there
  p.start();
  EXPECT_THROW(listener.accept(kNoHang), mp::AuthenticationError);
  p.join();
  EXPECT_EQ(p.exitcode(), 1) << "the child raised AuthenticationError";
  EXPECT_NE(quiet.text().find("AuthenticationError"), std::string::npos);
}

TEST_P(ListenerProcessTest, AChildListenerServesTheParent) {
  auto [here, there] = mp::Pipe();
  auto p = ctx().Process(serve_one_echo, std::move(there), std::string("k"));
  p.start();
  auto address = here.recv<Address>();
  EXPECT_NE(address.as_tcp()->port, 0);
  auto c = Client(address, {.authkey = "k"});
  c.send(std::string("ping"));
  EXPECT_EQ(c.recv<std::string>(), "ping (echoed)");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(ListenerFork, ACapturingLambdaChildConnects) {
  Listener listener(Address(), {.authkey = "k"});
  const Address address = listener.address();
  mp::Process p(mp::ProcessOptions{.start_method = mp::StartMethod::fork}, [address] {
    auto c = Client(address, {.authkey = "k"});
    c.send(std::string("from a forked child"));
  });
  p.start();
  EXPECT_EQ(listener.accept(kNoHang).recv<std::string>(), "from a forked child");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  mp_test::expect_no_children_left();
}
