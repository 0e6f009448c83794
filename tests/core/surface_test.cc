#include "ballistics/surface.h"

#include <cmath>

#include <gtest/gtest.h>

namespace ballistics {
namespace {

TEST(SurfaceTest, MissingFractionCountsNaN) {
  Scan scan;
  scan.values = cv::Mat1f(4, 5, 1.0f);
  scan.values(0, 0) = NAN;
  scan.values(3, 4) = NAN;
  EXPECT_DOUBLE_EQ(scan.MissingFraction(), 2.0 / 20.0);
}

TEST(SurfaceTest, ValidMaskFollowsNaN) {
  Signature sig;
  sig.values = cv::Mat1f(2, 2, 0.5f);
  sig.values(1, 0) = NAN;
  cv::Mat1b m = sig.ValidMask();
  EXPECT_EQ(m(0, 0), 255);
  EXPECT_EQ(m(1, 0), 0);
  EXPECT_EQ(cv::countNonZero(m), 3);
}

}  // namespace
}  // namespace ballistics
