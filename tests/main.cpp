// The test binary's main: a spawn or forkserver child of a test runs here too, so
// freeze_support() comes first.
#include <gtest/gtest.h>

#include <mp/mp.hpp>

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
