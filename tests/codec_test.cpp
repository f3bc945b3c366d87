// tests/codec_test.cpp — the typed wire: every serializable type round-trips, a
// mismatched type is refused, and truncated, corrupt or hostile input raises
// mp::SerializationError (and, under ASan/UBSan, is never undefined behaviour).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mp/detail/codec.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

using mp::detail::decode;
using mp::detail::encode;

namespace {

struct Point {  // trivially copyable, no serialize: travels bitwise
  int x;
  double y;
  bool operator==(const Point&) const = default;
};

struct Job {  // a user type with a cereal serialize member
  std::string name;
  std::vector<int> data;
  std::optional<double> weight;
  bool operator==(const Job&) const = default;
  template <class A>
  void serialize(A& ar) {
    ar(name, data, weight);
  }
};

enum class Color : int { red, green, blue };

template <class T>
T round_trip(const T& v) {
  return decode<T>(encode(v));
}

}  // namespace

TEST(Codec, ArithmeticValuesRoundTrip) {
  EXPECT_EQ(round_trip(42), 42);
  EXPECT_EQ(round_trip(-7L), -7L);
  EXPECT_EQ(round_trip(2.5), 2.5);
  EXPECT_EQ(round_trip('c'), 'c');
  EXPECT_EQ(round_trip(true), true);
  EXPECT_EQ(round_trip(false), false);
  EXPECT_EQ(round_trip(std::uint64_t{1} << 63), std::uint64_t{1} << 63);
  EXPECT_EQ(round_trip(Color::blue), Color::blue);
}

TEST(Codec, ArithmeticTakesTheBitwisePath) {
  static_assert(mp::detail::bitwise_v<int>);
  static_assert(mp::detail::bitwise_v<double>);
  static_assert(mp::detail::bitwise_v<Point>);
  static_assert(!mp::detail::bitwise_v<bool>, "bool is checked, not copied");
  static_assert(!mp::detail::bitwise_v<std::string>);
  EXPECT_EQ(encode(42).size(), sizeof(std::uint64_t) + sizeof(int));
  EXPECT_EQ(round_trip(Point{3, 4.5}), (Point{3, 4.5}));
}

TEST(Codec, ContainersRoundTrip) {
  EXPECT_EQ(round_trip(std::string("hello")), "hello");
  EXPECT_EQ(round_trip(std::string()), "");
  EXPECT_EQ(round_trip(std::vector<int>{1, 2, 3}), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(round_trip(std::vector<std::string>{"a", "", "ccc"}), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(round_trip(std::array<int, 3>{7, 8, 9}), (std::array<int, 3>{7, 8, 9}));
  EXPECT_EQ(round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}}), (std::map<std::string, int>{{"a", 1}, {"b", 2}}));
  EXPECT_EQ(round_trip(std::unordered_map<int, std::string>{{1, "x"}}), (std::unordered_map<int, std::string>{{1, "x"}}));
  EXPECT_EQ(round_trip(std::set<int>{3, 1, 2}), (std::set<int>{1, 2, 3}));
  EXPECT_EQ(round_trip(std::unordered_set<int>{5}), (std::unordered_set<int>{5}));
  EXPECT_EQ(round_trip(std::deque<int>{1, 2}), (std::deque<int>{1, 2}));
  EXPECT_EQ(round_trip(std::list<int>{1, 2}), (std::list<int>{1, 2}));
  EXPECT_EQ(round_trip(std::pair<int, std::string>{1, "p"}), (std::pair<int, std::string>{1, "p"}));
  EXPECT_EQ(round_trip(std::vector<Point>{{1, 2.0}}), (std::vector<Point>{{1, 2.0}}));
}

TEST(Codec, SumAndProductTypesRoundTrip) {
  using T = std::tuple<int, std::optional<int>, std::string>;
  EXPECT_EQ(round_trip(T{42, std::nullopt, "hello"}), (T{42, std::nullopt, "hello"}));
  EXPECT_EQ(round_trip(std::optional<std::string>("x")), std::optional<std::string>("x"));
  using V = std::variant<int, std::string, std::vector<double>>;
  EXPECT_EQ(round_trip(V{std::string("s")}), V{std::string("s")});
  EXPECT_EQ(round_trip(V{std::vector<double>{1.5}}), V{std::vector<double>{1.5}});
  EXPECT_EQ(round_trip(std::chrono::milliseconds(1500)), std::chrono::milliseconds(1500));
  Job job{"j", {1, 2}, 0.5};
  EXPECT_EQ(round_trip(job), job);
}

TEST(Codec, MismatchedTypeIsRefused) {
  auto bytes = encode(42);
  EXPECT_THROW(decode<long>(bytes), mp::SerializationError);
  EXPECT_THROW(decode<float>(bytes), mp::SerializationError);
  EXPECT_THROW(decode<std::vector<char>>(encode(std::string("abc"))), mp::SerializationError);
  try {
    decode<std::string>(bytes);
    FAIL();
  } catch (const mp::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("type mismatch"), std::string::npos) << e.what();
  }
}

TEST(Codec, EveryTruncationIsRefused) {
  Job job{"a name", {1, 2, 3, 4}, 2.0};
  auto bytes = encode(job);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    std::span<const std::byte> cut(bytes.data(), n);
    EXPECT_THROW(decode<Job>(cut), mp::SerializationError) << "length " << n;
  }
  auto ibytes = encode(7);
  for (std::size_t n = 0; n < ibytes.size(); ++n) {
    EXPECT_THROW(decode<int>(std::span<const std::byte>(ibytes.data(), n)), mp::SerializationError);
  }
}

TEST(Codec, TrailingBytesAreRefused) {
  auto bytes = encode(std::string("abc"));
  bytes.push_back(std::byte{0});
  EXPECT_THROW(decode<std::string>(bytes), mp::SerializationError);
  auto ibytes = encode(7);
  ibytes.push_back(std::byte{0});
  EXPECT_THROW(decode<int>(ibytes), mp::SerializationError);
}

TEST(Codec, LargeVectorsRoundTrip) {  // past the size where the buffer is prefaulted
  std::vector<double> d(600'000);
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<double>(i) * 0.5;
  EXPECT_EQ(round_trip(d), d);
  std::vector<std::byte> b(3 << 20, std::byte{0x5a});
  b.back() = std::byte{1};
  EXPECT_EQ(round_trip(b), b);
}

TEST(Codec, ALengthBeyondTheBytesOfWideElementsIsRefused) {
  auto bytes = encode(std::vector<std::uint64_t>{1, 2, 3, 4});
  // 20 elements fit the bytes left as a count, not as 8-byte elements.
  const std::uint64_t n = 20;
  std::memcpy(bytes.data() + 8, &n, sizeof n);
  EXPECT_THROW(decode<std::vector<std::uint64_t>>(bytes), mp::SerializationError);
}

TEST(Codec, AHugeLengthDoesNotAllocate) {
  auto bytes = encode(std::vector<std::uint64_t>{1, 2});
  // The length field follows the 8-byte tag: claim 2^60 elements.
  std::uint64_t huge = std::uint64_t{1} << 60;
  std::memcpy(bytes.data() + 8, &huge, sizeof huge);
  EXPECT_THROW(decode<std::vector<std::uint64_t>>(bytes), mp::SerializationError);
  auto sbytes = encode(std::string("abc"));
  std::memcpy(sbytes.data() + 8, &huge, sizeof huge);
  EXPECT_THROW(decode<std::string>(sbytes), mp::SerializationError);
}

TEST(Codec, AnInvalidBoolIsRefused) {
  auto bytes = encode(std::optional<int>{});
  bytes[8] = std::byte{7};  // the "engaged" flag
  EXPECT_THROW(decode<std::optional<int>>(bytes), mp::SerializationError);
  auto b = encode(true);
  b.back() = std::byte{2};
  EXPECT_THROW(decode<bool>(b), mp::SerializationError);
}

TEST(Codec, AnInvalidVariantIndexIsRefused) {
  using V = std::variant<int, std::string>;
  auto bytes = encode(V{1});
  for (std::int32_t bad : {2, 100, -1}) {
    std::memcpy(bytes.data() + 8, &bad, sizeof bad);
    EXPECT_THROW(decode<V>(bytes), mp::SerializationError) << bad;
  }
}

// Random corruption of real messages: every outcome is a value or a
// SerializationError; ASan/UBSan builds prove no byte is read out of bounds and no
// invalid value is made.
template <class T>
void fuzz_type(const T& sample, std::mt19937& rng, int rounds) {
  const auto good = encode(sample);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int r = 0; r < rounds; ++r) {
    auto bytes = good;
    std::uniform_int_distribution<std::size_t> pos(0, bytes.size() - 1);
    const int flips = 1 + r % 4;
    for (int f = 0; f < flips; ++f) {
      // Keep the tag most of the time, so corruption reaches the payload decoder.
      std::size_t at = pos(rng);
      if (at < 8 && r % 8) at = 8 + at % std::max<std::size_t>(1, bytes.size() - 8);
      if (at < bytes.size()) bytes[at] = static_cast<std::byte>(byte(rng));
    }
    if (r % 5 == 0) bytes.resize(pos(rng));
    if (r % 7 == 0) bytes.push_back(static_cast<std::byte>(byte(rng)));
    try {
      (void)decode<T>(bytes);
    } catch (const mp::SerializationError&) {
    }
  }
}

TEST(Codec, MutatedFramesNeverCrash) {
  std::mt19937 rng(12345);
  fuzz_type(Job{"a job", {1, 2, 3}, 1.0}, rng, 3000);
  fuzz_type(std::map<std::string, std::vector<int>>{{"k", {1, 2}}, {"l", {}}}, rng, 3000);
  fuzz_type(std::tuple<int, std::optional<int>, std::string>{42, std::nullopt, "hello"}, rng, 3000);
  fuzz_type(std::variant<int, std::string, std::vector<double>>{std::string("v")}, rng, 3000);
  fuzz_type(std::vector<std::string>{"a", "bb", "ccc"}, rng, 3000);
  fuzz_type(std::optional<bool>{true}, rng, 1000);
  fuzz_type(std::set<std::pair<int, std::string>>{{1, "a"}, {2, "b"}}, rng, 3000);
  fuzz_type(std::unordered_map<std::string, double>{{"x", 1.0}}, rng, 3000);
}
