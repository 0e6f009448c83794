// Regression tests for what the fuzz targets of tests/fuzz/ found in src/io/
// (docs/reliability.md, "Fuzzing"). Each test rebuilds the smallest input that
// reproduced the finding and checks the fixed behaviour, in the normal build.
#include <cmath>
#include <limits>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ballistics/io.h"
#include "x3p_test_util.h"

namespace ballistics {
namespace {

using testing::LittleEndian;
using testing::MakeX3p;
using testing::X3pSpec;

// fuzz_x3p, seed float-heights: an 'F' height of 3.4e38 m is 3.4e44 µm, which
// no float holds; the reader turned it into +Inf (and the double -> float
// conversion of an out-of-range value is undefined behaviour). Such heights are
// now missing points, as +-Inf already were.
TEST(IoFuzzRegression, FloatHeightBeyondFloatRangeInMicrometresIsMissing) {
  X3pSpec spec;
  spec.data_type = "F";
  auto r = ReadScanBytes(MakeX3p(spec, LittleEndian<float>({1e-6f, 3.4e38f, -3.4e38f, 1e27f, -2e-6f, 0.f})));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->values(0, 0), 1.0f, 1e-6f);
  EXPECT_TRUE(std::isnan(r->values(0, 1)));
  EXPECT_TRUE(std::isnan(r->values(0, 2)));
  EXPECT_FLOAT_EQ(r->values(1, 0), 1e33f);  // 1e27 m = 1e33 µm still fits a float: kept
  EXPECT_NEAR(r->values(1, 1), -2.0f, 1e-6f);
  for (int y = 0; y < r->height(); ++y) {
    for (int x = 0; x < r->width(); ++x) EXPECT_FALSE(std::isinf(r->values(y, x))) << x << "," << y;
  }
}

TEST(IoFuzzRegression, DoubleHeightOverflowingOnConversionIsMissing) {
  // 1e300 m is finite as a double but 1e306 µm is not a float; 1e308 m * 1e6
  // overflows even the double.
  auto r = ReadScanBytes(MakeX3p({}, LittleEndian<double>({1e300, 1e308, -1e308, 2e-6, 0, 1e-6})));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(std::isnan(r->values(0, 0)));
  EXPECT_TRUE(std::isnan(r->values(0, 1)));
  EXPECT_TRUE(std::isnan(r->values(0, 2)));
  EXPECT_NEAR(r->values(1, 0), 2.0f, 1e-6f);
}

}  // namespace
}  // namespace ballistics
