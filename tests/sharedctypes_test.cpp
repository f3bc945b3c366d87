// tests/sharedctypes_test.cpp — Value, RawValue, Array, RawArray: the API, and children
// under every start method reading and writing the same memory.
#include <gtest/gtest.h>

#include <mp/mp.hpp>
#include <mp/sharedctypes.hpp>
#include <stdexcept>

#include "test_util.hpp"

using mp_test::StartMethodTest;

namespace {

struct Point {
  double x, y;
  int tag;
};

void set_to_100(mp::Value<int> v) { v.value() = 100; }

void square_all(mp::Array<double> a) {
  std::lock_guard g(a.get_lock());
  for (auto& x : a) x = x * x;
}

void move_point(mp::Value<Point> p) { p.value() = {p.value().x + 1, p.value().y + 2, 7}; }

void fill_raw(mp::RawArray<char> raw) {
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<char>('a' + i % 26);
}

}  // namespace

TEST(Value, HoldsItsInitialValueAndIsShared) {
  mp::Value<int> v(42);
  EXPECT_EQ(v.value(), 42);
  mp::Value<int> copy = v;
  copy.value() = 7;
  EXPECT_EQ(v.value(), 7);
  EXPECT_EQ(v.get_obj(), 7);
  mp::Value<double> d;
  EXPECT_EQ(d.value(), 0.0);
}

TEST(Value, WithoutALockHasNoLock) {
  mp::Value<int> v(1, {.lock = false});
  EXPECT_THROW(v.get_lock(), mp::ValueError);
  mp::RawValue<int> r(2);
  EXPECT_THROW(r.get_lock(), mp::ValueError);
  EXPECT_EQ(r.value(), 2);
}

TEST(Value, ItsLockIsAnRLock) {
  mp::Value<int> v(0);
  std::lock_guard g1(v.get_lock());
  std::lock_guard g2(v.get_lock());  // re-entrant, as Python's default lock
  v.value() += 1;
  EXPECT_EQ(v.value(), 1);
}

TEST(Array, FromASizeOrValues) {
  mp::Array<int> a(10);
  EXPECT_EQ(a.size(), 10u);
  for (int x : a) EXPECT_EQ(x, 0);
  mp::Array<int> b({1, 2, 3});
  EXPECT_EQ(b.size(), 3u);
  EXPECT_EQ(b[2], 3);
  b[0] = 9;
  EXPECT_EQ(b.span()[0], 9);
  EXPECT_THROW(b.at(3), std::out_of_range);
  EXPECT_EQ(b.at(1), 2);
  mp::RawArray<char> raw(16);
  EXPECT_THROW(raw.get_lock(), mp::ValueError);
  mp::Array<int> empty(0);
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_TRUE(empty.span().empty());
}

TEST(Array, AHandleOfAnotherTypeIsRefused) {
  mp::Array<int> a({1, 2});
  auto [r, w] = mp::Pipe();
  r.send(a);  // over a Unix socket: the descriptor travels
  EXPECT_THROW(w.recv<mp::Array<float>>(), mp::SerializationError);
}

TEST(Array, TravelsOverAConnection) {
  mp::Array<int> a({1, 2, 3});
  auto [r, w] = mp::Pipe();
  r.send(a);
  auto b = w.recv<mp::Array<int>>();
  b[1] = 20;
  EXPECT_EQ(a[1], 20);
}

class SharedCtypesProcessTest : public StartMethodTest {};
MP_INSTANTIATE_FOR_START_METHODS(SharedCtypesProcessTest);

TEST_P(SharedCtypesProcessTest, AChildSetsAValue) {  // the seeds' S3-4
  mp::Value<int> v(0);
  auto p = ctx().Process(set_to_100, v);
  p.start();
  p.join();
  EXPECT_EQ(v.value(), 100);
}

TEST_P(SharedCtypesProcessTest, AChildChangesAnArrayUnderItsLock) {
  mp::Array<double> a({1.0, 2.0, 3.0, 4.0});
  auto p = ctx().Process(square_all, a);
  p.start();
  p.join();
  EXPECT_EQ(a[0], 1.0);
  EXPECT_EQ(a[3], 16.0);
}

TEST_P(SharedCtypesProcessTest, StructsAndRawArrays) {
  mp::Value<Point> pt(Point{1.0, 2.0, 0});
  mp::RawArray<char> raw(100);
  auto p1 = ctx().Process(move_point, pt);
  auto p2 = ctx().Process(fill_raw, raw);
  p1.start();
  p2.start();
  p1.join();
  p2.join();
  EXPECT_EQ(pt.value().x, 2.0);
  EXPECT_EQ(pt.value().y, 4.0);
  EXPECT_EQ(pt.value().tag, 7);
  EXPECT_EQ(raw[0], 'a');
  EXPECT_EQ(raw[27], 'b');
}
