// tests/connection_test.cpp — Pipe and Connection: typed messages, bytes, poll, wait,
// connections crossing to children and inside messages, and hostile input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mp/mp.hpp>
#include <random>
#include <string>
#include <thread>
#include <tuple>

#include "test_util.hpp"

using namespace std::chrono_literals;
using mp_test::StartMethodTest;

namespace {

using Triple = std::tuple<int, std::optional<int>, std::string>;

void send_triple(mp::Connection conn) { conn.send(Triple{42, std::nullopt, "hello"}); }

// Echoes until told to stop. (Not until EOF: under fork the child also inherits the
// parent's end, exactly as in Python, so EOF would never come.)
void echo_until_stop(mp::Connection& conn) {
  while (auto v = conn.recv<std::optional<std::vector<std::string>>>()) conn.send(*v);
}

void send_own_pid(mp::Connection& conn, int i) { conn.send(std::map<int, int>{{i, static_cast<int>(::getpid())}}); }

void receive_connection_and_reply(mp::Connection& conn) {
  auto other = conn.recv<mp::Connection>();
  other.send(std::string("through a passed connection"));
}

// Writes raw bytes on the descriptor of `c` (bypassing framing).
void write_raw(mp::Connection& c, const void* p, std::size_t n) {
  ASSERT_EQ(::write(c.fileno(), p, n), static_cast<ssize_t>(n));
}

}  // namespace

TEST(Connection, DuplexPipeCarriesTypedValuesBothWays) {
  auto [a, b] = mp::Pipe();
  a.send(Triple{42, std::nullopt, "hello"});
  EXPECT_EQ(b.recv<Triple>(), (Triple{42, std::nullopt, "hello"}));
  b.send(std::vector<double>{1.5, 2.5});
  EXPECT_EQ(a.recv<std::vector<double>>(), (std::vector<double>{1.5, 2.5}));
  EXPECT_TRUE(a.readable() && a.writable());
}

TEST(Connection, SimplexEndsRefuseTheWrongDirection) {
  auto [r, w] = mp::Pipe(false);
  EXPECT_TRUE(r.readable());
  EXPECT_FALSE(r.writable());
  EXPECT_FALSE(w.readable());
  EXPECT_THROW(r.send(1), mp::ValueError);
  EXPECT_THROW(w.recv<int>(), mp::ValueError);
  EXPECT_THROW(w.poll(), mp::ValueError);
  w.send(7);
  EXPECT_EQ(r.recv<int>(), 7);
}

TEST(Connection, ManySmallMessagesKeepTheirOrder) {
  auto [a, b] = mp::Pipe();
  std::thread writer([&a] {
    for (int i = 0; i < 20000; ++i) a.send(i);
  });
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(b.recv<int>(), i);
  writer.join();
}

TEST(Connection, RecvAfterThePeerClosedRaisesEOFError) {
  auto [a, b] = mp::Pipe();
  a.send(1);
  a.close();
  EXPECT_TRUE(a.closed());
  EXPECT_EQ(b.recv<int>(), 1);  // what was sent before the close still arrives
  EXPECT_TRUE(b.poll());        // EOF counts as readable
  EXPECT_THROW(b.recv<int>(), mp::EOFError);
  EXPECT_THROW(b.send(2), mp::EOFError);
}

TEST(Connection, AMismatchedTypeRaisesAndTheStreamGoesOn) {
  auto [a, b] = mp::Pipe();
  a.send(std::string("text"));
  a.send(5);
  EXPECT_THROW(b.recv<int>(), mp::SerializationError);
  EXPECT_EQ(b.recv<int>(), 5);
}

TEST(Connection, SendBytesTakesOffsetAndSize) {
  auto [a, b] = mp::Pipe();
  std::string text = "0123456789";
  auto bytes = std::as_bytes(std::span(text.data(), text.size()));
  a.send_bytes(bytes, 2, 3);
  a.send_bytes(bytes, 7);
  a.send_bytes("plain text");
  a.send_bytes(std::span<const std::byte>{});
  auto as_string = [](const std::vector<std::byte>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size()); };
  EXPECT_EQ(as_string(b.recv_bytes()), "234");
  EXPECT_EQ(as_string(b.recv_bytes()), "789");
  EXPECT_EQ(as_string(b.recv_bytes()), "plain text");
  EXPECT_TRUE(b.recv_bytes().empty());
  EXPECT_THROW(a.send_bytes(bytes, 11), mp::ValueError);
  EXPECT_THROW(a.send_bytes(bytes, 5, 6), mp::ValueError);
}

TEST(Connection, RecvBytesIntoATooShortBufferKeepsTheMessage) {
  auto [a, b] = mp::Pipe();
  a.send_bytes("a message of 26 characters");
  std::array<std::byte, 8> small{};
  EXPECT_THROW(b.recv_bytes_into(small), mp::BufferTooShort);
  EXPECT_TRUE(b.poll());
  std::array<std::byte, 64> big{};
  EXPECT_EQ(b.recv_bytes_into(big, 4), 26u);
  EXPECT_EQ(std::memcmp(big.data() + 4, "a message", 9), 0);
  EXPECT_FALSE(b.poll());
}

TEST(Connection, RecvBytesMaxlengthBreaksTheConnection) {
  auto [a, b] = mp::Pipe();
  a.send_bytes("0123456789");
  EXPECT_THROW(b.recv_bytes(4), mp::ValueError);
  EXPECT_THROW(b.recv_bytes(), mp::ValueError);  // broken, as in Python
}

TEST(Connection, PollWaitsUpToItsTimeout) {
  auto [a, b] = mp::Pipe();
  EXPECT_FALSE(b.poll());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(b.poll(50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  std::thread later([&a] {
    std::this_thread::sleep_for(30ms);
    a.send(1);
  });
  EXPECT_TRUE(b.poll(5s));
  later.join();
  EXPECT_EQ(b.recv<int>(), 1);
}

TEST(Connection, LargeMessagesRoundTrip) {
  auto [a, b] = mp::Pipe();
  std::vector<double> big(3'000'000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
  std::vector<std::byte> raw(9'000'001, std::byte{0x5a});
  std::thread writer([&] {
    a.send(big);
    a.send_bytes(raw);
  });
  EXPECT_EQ(b.recv<std::vector<double>>(), big);
  EXPECT_EQ(b.recv_bytes(), raw);
  writer.join();
}

TEST(Connection, LargeMessagesGoStraightIntoTheCallersBuffer) {
  auto [a, b] = mp::Pipe();
  std::vector<std::byte> raw(3'000'000);
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<std::byte>(i * 7);
  std::thread writer([&] {
    a.send_bytes(raw);
    a.send_bytes(raw);
    a.send(std::vector<std::byte>(raw.begin(), raw.begin() + 1000));  // typed bytes: one block
  });
  std::vector<std::byte> into(raw.size() + 16);
  EXPECT_EQ(b.recv_bytes_into(into, 16), raw.size());
  EXPECT_EQ(std::memcmp(into.data() + 16, raw.data(), raw.size()), 0);
  std::vector<std::byte> small(100);
  EXPECT_THROW(b.recv_bytes_into(small), mp::BufferTooShort);  // too long: stays readable
  EXPECT_EQ(b.recv_bytes(), raw);
  EXPECT_EQ(b.recv<std::vector<std::byte>>(), std::vector<std::byte>(raw.begin(), raw.begin() + 1000));
  writer.join();
}

TEST(Connection, ClosedConnectionRefusesEverything) {
  auto [a, b] = mp::Pipe();
  a.close();
  a.close();  // idempotent
  EXPECT_THROW(a.send(1), mp::ValueError);
  EXPECT_THROW(a.recv<int>(), mp::ValueError);
  EXPECT_THROW(a.fileno(), mp::ValueError);
  EXPECT_THROW(a.poll(), mp::ValueError);
  mp::Connection empty;
  EXPECT_TRUE(empty.closed());
}

// ---- hostile input -----------------------------------------------------------------

TEST(Connection, AnOversizedHeaderRaisesBeforeAllocating) {
  auto [a, b] = mp::Pipe();
  std::uint64_t header = std::uint64_t{1} << 50;  // a petabyte
  write_raw(a, &header, sizeof header);
  try {
    b.recv_bytes();
    FAIL();
  } catch (const mp::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("maximum"), std::string::npos) << e.what();
  }
  EXPECT_THROW(b.recv_bytes(), mp::ValueError) << "the stream is not trusted after a bad header";
}

TEST(Connection, TheMaximumMessageSizeIsSettable) {
  auto [a, b] = mp::Pipe();
  b.set_max_message_size(16);
  a.send_bytes("short");
  EXPECT_EQ(b.recv_bytes().size(), 5u);
  a.send_bytes("much longer than sixteen bytes");
  EXPECT_THROW(b.recv_bytes(), mp::SerializationError);
}

TEST(Connection, ATruncatedFrameRaisesInsteadOfHanging) {
  for (std::size_t cut : {3, 8, 20}) {
    auto [a, b] = mp::Pipe();
    std::uint64_t header = 100;
    std::vector<std::byte> bytes(8 + 100, std::byte{1});
    std::memcpy(bytes.data(), &header, 8);
    write_raw(a, bytes.data(), cut);
    a.close();
    EXPECT_THROW(b.recv_bytes(), mp::SerializationError) << "cut at " << cut;
  }
}

TEST(Connection, DescriptorsThatNeverArriveBreakTheConnection) {
  auto [a, b] = mp::Pipe();
  std::uint64_t header = 4 | (std::uint64_t{3} << 56);  // claims 3 descriptors, sends none
  write_raw(a, &header, 8);
  write_raw(a, "abcd", 4);
  EXPECT_THROW(b.recv_bytes(), mp::SerializationError);
}

TEST(Connection, RandomGarbageNeverCrashesTheReader) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    auto [a, b] = mp::Pipe();
    b.set_max_message_size(1 << 20);
    std::vector<unsigned char> junk(1 + rng() % 300);
    for (auto& c : junk) c = static_cast<unsigned char>(rng());
    if (round % 3 == 0 && junk.size() >= 8) {  // a plausible header
      std::uint64_t h = rng() % 64;
      std::memcpy(junk.data(), &h, 8);
    }
    write_raw(a, junk.data(), junk.size());
    a.close();
    try {
      for (int i = 0; i < 100; ++i) (void)b.recv<std::vector<std::string>>();
    } catch (const mp::Error&) {
    }
  }
}

// ---- connections and processes -----------------------------------------------------

class ConnectionProcessTest : public StartMethodTest {};
MP_INSTANTIATE_FOR_START_METHODS(ConnectionProcessTest);

TEST_P(ConnectionProcessTest, AConnectionPassedToAChildWorks) {
  auto [parent_end, child_end] = mp::Pipe();
  auto p = ctx().Process(send_triple, child_end);  // an lvalue: the child gets its own
  p.start();
  child_end.close();
  EXPECT_EQ(parent_end.recv<Triple>(), (Triple{42, std::nullopt, "hello"}));
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_THROW(parent_end.recv<Triple>(), mp::EOFError) << "only the child held the other end";
}

TEST_P(ConnectionProcessTest, AChildEchoesUntilToldToStop) {
  auto [here, there] = mp::Pipe();
  auto p = ctx().Process(echo_until_stop, std::move(there));
  p.start();
  for (int i = 0; i < 50; ++i) {
    std::optional<std::vector<std::string>> v(std::vector<std::string>(static_cast<std::size_t>(i), std::to_string(i)));
    here.send(v);
    EXPECT_EQ(here.recv<std::vector<std::string>>(), *v);
  }
  here.send(std::optional<std::vector<std::string>>());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ConnectionProcessTest, ManyWritersShareOneEnd) {
  auto [r, w] = mp::Pipe(false);
  std::vector<mp::Process> ps;
  for (int i = 0; i < 5; ++i) ps.push_back(ctx().Process(send_own_pid, w, i));
  for (auto& p : ps) p.start();
  w.close();
  std::map<int, int> seen;
  for (int i = 0; i < 5; ++i) {
    auto m = r.recv<std::map<int, int>>();
    seen.insert(m.begin(), m.end());
  }
  for (auto& p : ps) p.join();
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(seen.at(static_cast<int>(i)), *ps[i].pid());
}

TEST_P(ConnectionProcessTest, AConnectionTravelsInsideAMessage) {
  auto [here, there] = mp::Pipe();
  auto p = ctx().Process(receive_connection_and_reply, std::move(there));
  p.start();
  auto [reply_r, reply_w] = mp::Pipe(false);
  here.send(reply_w);
  reply_w.close();
  EXPECT_EQ(reply_r.recv<std::string>(), "through a passed connection");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(ConnectionWait, ReturnsTheReadyOnesOrNothingOnTimeout) {
  auto [a1, b1] = mp::Pipe();
  auto [a2, b2] = mp::Pipe();
  EXPECT_TRUE(mp::connection::wait({&b1, &b2}, 20ms).empty());
  a2.send(1);
  auto ready = mp::connection::wait({&b1, &b2}, 1s);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &b2);
  a1.send(1);
  EXPECT_EQ(mp::connection::wait({&b1, &b2}).size(), 2u);
}

TEST(ConnectionWait, WaitsOnProcessSentinels) {
  mp::Process quick([] { std::this_thread::sleep_for(20ms); });
  mp::Process slow([] { std::this_thread::sleep_for(2s); });
  quick.start();
  slow.start();
  auto ready = mp::connection::wait({quick.sentinel(), slow.sentinel()}, 5s);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], quick.sentinel());
  quick.join();
  slow.terminate();
  slow.join();
  mp_test::expect_no_children_left();
}

TEST(Connection, WritingToAClosedPeerRaisesInsteadOfSigpipe) {
  auto [a, b] = mp::Pipe();
  b.close();
  EXPECT_THROW({ a.send_bytes("x"); a.send_bytes("y"); }, mp::EOFError);
  EXPECT_THROW({ a.send(1); a.send(2); }, mp::EOFError);
}

// A reader over a Unix socket retries without sleeping for a moment before it sleeps in
// the kernel (connection.cpp: kRecvSpin). Whether the message comes at once, within that
// moment or long after it, it arrives whole, with its descriptors, and an end closed
// while the reader waits is EOF.
TEST(Connection, AReaderGetsMessagesAndDescriptorsWhenEverTheyCome) {
  auto [a, b] = mp::Pipe();
  for (std::chrono::microseconds delay : {0us, 20us, 30'000us}) {
    mp::Queue<int> q;
    q.put(static_cast<int>(delay.count()));
    std::thread sender([&a, &q, delay] {
      std::this_thread::sleep_for(delay);
      a.send(q);
      a.send_bytes("after");
    });
    auto received = b.recv<mp::Queue<int>>();
    EXPECT_EQ(received.get(1s), static_cast<int>(delay.count())) << "the descriptor came with the message";
    auto after = b.recv_bytes();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(after.data()), after.size()), "after");
    sender.join();
  }
  std::thread closer([&a] {
    std::this_thread::sleep_for(30ms);
    a.close();
  });
  EXPECT_THROW(b.recv<int>(), mp::EOFError);
  closer.join();
}
