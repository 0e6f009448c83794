// Masked normalized cross-correlation (Padfield 2012) against a direct
// spatial computation, on random data with missing points and odd sizes.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>

#include "ballistics/correlate.h"

namespace ballistics {
namespace {

cv::Mat1f RandomWithHoles(int rows, int cols, double hole_prob, unsigned seed) {
  cv::Mat1f m(rows, cols);
  cv::RNG rng(seed);
  rng.fill(m, cv::RNG::UNIFORM, -1.0, 1.0);
  m += 5.0f;  // a mean far from 0: the NCC must remove it
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      if (rng.uniform(0.0, 1.0) < hole_prob) m(y, x) = std::numeric_limits<float>::quiet_NaN();
    }
  }
  return m;
}

// Pearson correlation over the common valid points, template top-left at (oy, ox).
double DirectNcc(const cv::Mat1f& t, const cv::Mat1f& im, int oy, int ox, int min_overlap) {
  double n = 0, sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  for (int y = 0; y < t.rows; ++y) {
    for (int x = 0; x < t.cols; ++x) {
      const int iy = y + oy, ix = x + ox;
      if (iy < 0 || ix < 0 || iy >= im.rows || ix >= im.cols) continue;
      const double a = t(y, x), b = im(iy, ix);
      if (!std::isfinite(a) || !std::isfinite(b)) continue;
      n += 1;
      sa += a;
      sb += b;
      saa += a * a;
      sbb += b * b;
      sab += a * b;
    }
  }
  if (n < min_overlap) return 0.0;
  const double va = saa - sa * sa / n, vb = sbb - sb * sb / n;
  if (va <= 0 || vb <= 0) return 0.0;
  return (sab - sa * sb / n) / std::sqrt(va * vb);
}

TEST(MaskedNccTest, MatchesDirectComputationWithMissingPoints) {
  const cv::Mat1f t = RandomWithHoles(13, 17, 0.2, 1);
  const cv::Mat1f im = RandomWithHoles(29, 23, 0.3, 2);
  const int min_overlap = 20;
  const cv::Mat1f ncc = MaskedNcc(t, im, min_overlap);
  ASSERT_EQ(ncc.rows, t.rows + im.rows - 1);
  ASSERT_EQ(ncc.cols, t.cols + im.cols - 1);
  int checked = 0;
  for (int y = 0; y < ncc.rows; ++y) {
    for (int x = 0; x < ncc.cols; ++x) {
      const double want = DirectNcc(t, im, y - t.rows + 1, x - t.cols + 1, min_overlap);
      ASSERT_NEAR(ncc(y, x), want, 2e-3) << "at " << y << "," << x;
      if (want != 0.0) ++checked;
    }
  }
  EXPECT_GT(checked, 300);
}

TEST(MaskedNccTest, FindsEmbeddedTemplateDespiteHolesAndOffset) {
  cv::Mat1f im = RandomWithHoles(40, 50, 0.1, 3);
  cv::Mat1f t = im(cv::Rect(21, 9, 12, 10)).clone();
  t = t * 3.0f - 7.0f;  // gain and offset do not change an NCC
  for (int x = 0; x < 6; ++x) t(0, x) = std::numeric_limits<float>::quiet_NaN();
  const cv::Mat1f ncc = MaskedNcc(t, im, 30);
  cv::Point loc;
  double best = 0;
  cv::minMaxLoc(ncc, nullptr, &best, nullptr, &loc);
  EXPECT_NEAR(best, 1.0, 1e-4);
  EXPECT_EQ(loc.x - (t.cols - 1), 21);
  EXPECT_EQ(loc.y - (t.rows - 1), 9);
}

TEST(MaskedNccTest, ZeroFillingWouldBiasButMaskingDoesNot) {
  // A template whose missing half would, zero-filled, correlate with an
  // unrelated step edge; the masked NCC must ignore the missing half.
  cv::Mat1f im = RandomWithHoles(30, 30, 0.0, 4);
  cv::Mat1f t = im(cv::Rect(5, 5, 10, 10)).clone();
  for (int y = 0; y < 10; ++y) {
    for (int x = 5; x < 10; ++x) t(y, x) = std::numeric_limits<float>::quiet_NaN();
  }
  const cv::Mat1f ncc = MaskedNcc(t, im, 25);
  EXPECT_NEAR(ncc(5 + 9, 5 + 9), 1.0, 1e-4);
}

TEST(MaskedNccTest, AllMissingGivesZeros) {
  cv::Mat1f t(5, 5, std::numeric_limits<float>::quiet_NaN());
  const cv::Mat1f im = RandomWithHoles(8, 8, 0.0, 5);
  const cv::Mat1f ncc = MaskedNcc(t, im, 1);
  EXPECT_EQ(cv::countNonZero(ncc), 0);
}

}  // namespace
}  // namespace ballistics
