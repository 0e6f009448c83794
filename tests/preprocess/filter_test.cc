// Property tests of the NaN-aware building blocks (synthetic inputs).
#include <cmath>
#include <numbers>
#include <random>

#include <gtest/gtest.h>

#include "ballistics/preprocess.h"
#include "preprocess/synthetic.h"

namespace ballistics {
namespace {

using testing::kNaN;

// Reference: direct normalized convolution in double, no decimation.
cv::Mat1f ReferenceLowPass(const cv::Mat1f& v, double sigma) {
  const int half = static_cast<int>(std::ceil(4 * sigma));
  std::vector<double> k(2 * half + 1);
  for (int i = -half; i <= half; ++i) k[i + half] = std::exp(-0.5 * i * i / (sigma * sigma));
  cv::Mat1d num(v.size(), 0.0), den(v.size(), 0.0), num2(v.size(), 0.0), den2(v.size(), 0.0);
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x)
      for (int i = -half; i <= half; ++i) {
        const int xx = x + i;
        if (xx < 0 || xx >= v.cols || !std::isfinite(v(y, xx))) continue;
        num(y, x) += k[i + half] * v(y, xx);
        den(y, x) += k[i + half];
      }
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x)
      for (int i = -half; i <= half; ++i) {
        const int yy = y + i;
        if (yy < 0 || yy >= v.rows) continue;
        num2(y, x) += k[i + half] * num(yy, x);
        den2(y, x) += k[i + half] * den(yy, x);
      }
  cv::Mat1f out(v.size());
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x)
      out(y, x) = std::isfinite(v(y, x)) ? static_cast<float>(num2(y, x) / den2(y, x)) : kNaN;
  return out;
}

// Amplitude of a sinusoid of wavelength_px along x, measured by projection on
// sin/cos over all rows and the columns [margin, cols-margin).
double Amplitude(const cv::Mat1f& v, double wavelength_px, int margin) {
  double s = 0, c = 0;
  int n = 0;
  for (int y = 0; y < v.rows; ++y)
    for (int x = margin; x < v.cols - margin; ++x) {
      const double ph = 2 * std::numbers::pi * x / wavelength_px;
      s += v(y, x) * std::sin(ph);
      c += v(y, x) * std::cos(ph);
      ++n;
    }
  return 2 * std::hypot(s, c) / n;
}

cv::Mat1f Sinusoid(cv::Size size, double wavelength_px, double amplitude) {
  cv::Mat1f v(size);
  for (int y = 0; y < size.height; ++y)
    for (int x = 0; x < size.width; ++x)
      v(y, x) = static_cast<float>(amplitude * std::sin(2 * std::numbers::pi * x / wavelength_px));
  return v;
}

TEST(GaussianSigmaPx, IsoConstant) {
  // ISO 16610-61: sigma = lc * sqrt(ln2/2)/pi = 0.18736 lc.
  EXPECT_NEAR(GaussianSigmaPx(500, 6.25), 500 * 0.187390 / 6.25, 1e-3);
  EXPECT_NEAR(GaussianSigmaPx(16, 1.0), 16 * 0.187390, 1e-4);
}

TEST(GaussianLowPassNaN, DecimatedLargeSigmaMatchesDirectFilter) {
  cv::Mat1f v = testing::RandomMarks(cv::Size(301, 257), 6.0, 1.0, 7);
  v += Sinusoid(v.size(), 90.0, 2.0);
  for (int y = 100; y < 150; ++y)
    for (int x = 40; x < 200; ++x) v(y, x) = kNaN;  // a hole the filter must not see
  for (double sigma : {7.0, 15.0, 30.0}) {
    const cv::Mat1f fast = GaussianLowPassNaN(v, sigma);
    const cv::Mat1f ref = ReferenceLowPass(v, sigma);
    double max_err = 0, ref_range_lo = 1e9, ref_range_hi = -1e9;
    for (int y = 0; y < v.rows; ++y)
      for (int x = 0; x < v.cols; ++x) {
        ASSERT_EQ(std::isfinite(fast(y, x)), std::isfinite(v(y, x))) << y << "," << x;
        if (!std::isfinite(ref(y, x))) continue;
        max_err = std::max<double>(max_err, std::abs(fast(y, x) - ref(y, x)));
        ref_range_lo = std::min<double>(ref_range_lo, ref(y, x));
        ref_range_hi = std::max<double>(ref_range_hi, ref(y, x));
      }
    EXPECT_LT(max_err, 0.01 * (ref_range_hi - ref_range_lo)) << "sigma " << sigma;
  }
}

TEST(GaussianLowPassNaN, SmallSigmaMatchesReference) {
  cv::Mat1f v = testing::RandomMarks(cv::Size(97, 83), 1.0, 1.0, 9);
  v(40, 40) = kNaN;
  const cv::Mat1f fast = GaussianLowPassNaN(v, 2.0);
  const cv::Mat1f ref = ReferenceLowPass(v, 2.0);
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x)
      if (std::isfinite(ref(y, x))) { EXPECT_NEAR(fast(y, x), ref(y, x), 1e-4); }
}

TEST(GaussianLowPassNaN, MissingDataDoesNotBiasOrSpread) {
  // A constant surface with 40 % random holes and a large hole: normalized
  // convolution must return the constant everywhere valid (a zero-filled
  // filter would pull values near holes towards 0), and NaN must not spread.
  cv::Mat1f v(200, 200, 5.0f);
  std::mt19937 rng(11);
  std::bernoulli_distribution hole(0.4);
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x)
      if (hole(rng) || (x > 80 && x < 140 && y > 60 && y < 160)) v(y, x) = kNaN;
  for (double sigma : {0.5, 3.0, 20.0}) {
    const cv::Mat1f out = GaussianLowPassNaN(v, sigma);
    for (int y = 0; y < v.rows; ++y)
      for (int x = 0; x < v.cols; ++x) {
        ASSERT_EQ(std::isfinite(out(y, x)), std::isfinite(v(y, x)));
        if (std::isfinite(out(y, x))) { ASSERT_NEAR(out(y, x), 5.0f, 1e-4) << sigma; }
      }
  }
}

TEST(GaussianBandPassNaN, RemovesFormKeepsMarksHalvesAtCutoff) {
  const double px = 6.25;
  const cv::Size size(1200, 64);
  const int margin = 200;  // keep edge effects out of the measurement
  // Form: 5 mm wavelength. ISO high-pass transmission 1 - exp(-pi (alpha lc / lambda)^2) = 0.7 %.
  const double form = Amplitude(GaussianBandPassNaN(Sinusoid(size, 5000 / px, 10.0), px, 16, 500), 5000 / px, margin);
  EXPECT_LT(form, 10.0 * 0.03);
  // Marks: 100 µm wavelength pass with exp(-pi (alpha*16/100)^2) = 98 %.
  const double marks = Amplitude(GaussianBandPassNaN(Sinusoid(size, 100 / px, 1.0), px, 16, 500), 100 / px, margin);
  EXPECT_NEAR(marks, 0.982, 0.03);
  // At the long cutoff the ISO Gaussian transmits exactly 50 %.
  const double at_cutoff = Amplitude(GaussianBandPassNaN(Sinusoid(size, 500 / px, 1.0), px, 16, 500), 500 / px, margin);
  EXPECT_NEAR(at_cutoff, 0.5, 0.04);
  // Noise at 12.5 µm (Nyquist of the grid) is strongly attenuated.
  const double noise = Amplitude(GaussianBandPassNaN(Sinusoid(size, 2.0, 1.0), px, 16, 500), 2.0, margin);
  EXPECT_LT(noise, 0.05);
}

TEST(GaussianBandPassNaN, EqualsDifferenceOfLowPasses) {
  cv::Mat1f v = testing::RandomMarks(cv::Size(211, 180), 2.0, 1.0, 21);
  for (int y = 50; y < 90; ++y)
    for (int x = 20; x < 120; ++x) v(y, x) = kNaN;
  const cv::Mat1f bp = GaussianBandPassNaN(v, 6.25, 16, 500);
  const cv::Mat1f ref = GaussianLowPassNaN(v, GaussianSigmaPx(16, 6.25)) - GaussianLowPassNaN(v, GaussianSigmaPx(500, 6.25));
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x) {
      ASSERT_EQ(std::isfinite(bp(y, x)), std::isfinite(ref(y, x)));
      if (std::isfinite(ref(y, x))) { ASSERT_NEAR(bp(y, x), ref(y, x), 1e-5); }
    }
}

TEST(LevelPlaneRobust, TiltedPlaneWithOutliersIsLevelled) {
  cv::Mat1f v(150, 220);
  std::mt19937 rng(3);
  std::bernoulli_distribution spike(0.15);
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x) v(y, x) = 0.37f * x - 0.21f * y + 40.f + (spike(rng) ? 300.f : 0.f);
  for (int y = 0; y < 30; ++y)
    for (int x = 0; x < 50; ++x) v(y, x) = kNaN;
  const cv::Mat1f out = LevelPlaneRobust(v);
  int inliers = 0;
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x) {
      ASSERT_EQ(std::isfinite(out(y, x)), std::isfinite(v(y, x)));
      if (!std::isfinite(v(y, x))) continue;
      const float expected = v(y, x) - (0.37f * x - 0.21f * y + 40.f);
      ASSERT_NEAR(out(y, x), expected, 1e-2);
      inliers += expected == 0.f;
    }
  EXPECT_GT(inliers, 20000);
}

TEST(ResampleNaN, KeepsPhysicalSizeAndSlope) {
  // 7.37 µm -> 6.25 µm (DFSC -> Fadul grid): a ramp of 0.1 µm per µm keeps its
  // slope per µm, i.e. 0.625 per output pixel.
  const double in_px = 7.37, out_px = 6.25;
  cv::Mat1f v(100, 120);
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x) v(y, x) = static_cast<float>(0.1 * (x + 0.5) * in_px);
  const cv::Mat1f out = ResampleNaN(v, in_px, in_px, out_px);
  EXPECT_EQ(out.cols, std::lround(120 * in_px / out_px));
  EXPECT_EQ(out.rows, std::lround(100 * in_px / out_px));
  for (int x = 10; x < out.cols - 10; ++x) EXPECT_NEAR(out(50, x), 0.1 * (x + 0.5) * out_px, 0.05) << x;
  // Shrinking 2.5 µm -> 6.25 µm.
  const cv::Mat1f down = ResampleNaN(v, 2.5, 2.5, 6.25);
  EXPECT_EQ(down.cols, 48);
  EXPECT_EQ(down.rows, 40);
  // Same grid: unchanged.
  const cv::Mat1f same = ResampleNaN(v, 6.25, 6.25, 6.25);
  EXPECT_EQ(cv::norm(same, v, cv::NORM_INF), 0.0);
}

TEST(ResampleNaN, ValidityFollowsSupport) {
  cv::Mat1f v(60, 60, 1.0f);
  for (int y = 0; y < 60; ++y)
    for (int x = 30; x < 60; ++x) v(y, x) = kNaN;  // right half missing
  const cv::Mat1f down = ResampleNaN(v, 1.0, 1.0, 4.0);  // 15 x 15; pixel 7 covers x 28..31 (half valid)
  for (int x = 0; x < down.cols; ++x) {
    if (x < 7) { EXPECT_TRUE(std::isfinite(down(5, x))) << x; }
    if (x > 7) { EXPECT_FALSE(std::isfinite(down(5, x))) << x; }
    if (std::isfinite(down(5, x))) { EXPECT_FLOAT_EQ(down(5, x), 1.0f); }  // no bias from the missing half
  }
}

}  // namespace
}  // namespace ballistics
