// The engine's fast NCC kernels (src/correlate/fft.h) against the general
// six-FFT masked NCC: box sums for full masks (MaskedNccRegion) and the
// direct small-window correlation used to refine peaks (DirectMaskedNccAt)
// must give the same map, with full and partial masks on either side.
#include <algorithm>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>

#include "fft.h"

namespace ballistics::correlate_internal {
namespace {

// Values 0 where the mask is 0; a mean far from 0 (the NCC must remove it).
void Random(int side, double hole_prob, unsigned seed, cv::Mat1f* v, cv::Mat1f* m) {
  cv::RNG rng(seed);
  v->create(side, side);
  m->create(side, side);
  rng.fill(*v, cv::RNG::UNIFORM, -1.0, 1.0);
  *v += 3.0f;
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      const bool ok = rng.uniform(0.0, 1.0) >= hole_prob;
      (*m)(y, x) = ok ? 1.0f : 0.0f;
      if (!ok) (*v)(y, x) = 0.0f;
    }
  }
}

// The first `rows` rows of Random(side, ...): a strip like a polar image
// (radius x angle), the same values as the square field's top rows.
void RandomRows(int side, int rows, double hole_prob, unsigned seed, cv::Mat1f* v, cv::Mat1f* m) {
  Random(side, hole_prob, seed, v, m);
  *v = (*v)(cv::Rect(0, 0, side, rows)).clone();
  *m = (*m)(cv::Rect(0, 0, side, rows)).clone();
}

struct Case {
  double template_holes, region_holes;
};

class RegionKernelTest : public ::testing::TestWithParam<Case> {};

TEST_P(RegionKernelTest, BoxSumsMatchTheSixFftMap) {
  const int s = 17, margin = 17, side = s + 2 * margin, fft = FastFftSizeRegion(side);
  cv::Mat1f tv, tm, rv, rm;
  Random(s, GetParam().template_holes, 1, &tv, &tm);
  Random(side, GetParam().region_holes, 2, &rv, &rm);
  // Plant the template in the region so that the map has a real peak too.
  tv.copyTo(rv(cv::Rect(9, 20, s, s)));
  tm.copyTo(rm(cv::Rect(9, 20, s, s)));
  MaskedSpectra t_full, t_tmpl, region;
  ComputeSpectra(tv, tm, fft, fft, &t_full);
  ComputeTemplateSpectra(tv, tm, fft, fft, &t_tmpl);
  ComputeSpectra(rv, rm, fft, fft, &region);
  EXPECT_EQ(t_tmpl.full, GetParam().template_holes == 0);
  const double min_overlap = 0.5 * t_full.valid;
  cv::Mat1f expected, got;
  MaskedNccMaps(t_full, region, min_overlap, &expected, nullptr, 2 * margin + 1, 2 * margin + 1);
  MaskedNccRegion(t_tmpl, rv, rm, min_overlap, 2 * margin + 1, &got);
  ASSERT_EQ(got.rows, 2 * margin + 1);
  double worst = 0;
  for (int y = 0; y <= 2 * margin; ++y) {
    for (int x = 0; x <= 2 * margin; ++x) worst = std::max(worst, std::abs(double(got(y, x)) - expected(y, x)));
  }
  EXPECT_LT(worst, 1e-3);
  EXPECT_NEAR(got(20, 9), 1.0, 1e-3);  // the planted copy
}

INSTANTIATE_TEST_SUITE_P(Masks, RegionKernelTest,
                         ::testing::Values(Case{0, 0}, Case{0, 0.2}, Case{0.2, 0}, Case{0.2, 0.2}));

TEST(DirectKernelTest, MatchesTheFftMapInASmallWindow) {
  const int s = 34, n = 7, side = s + n - 1;
  const int fft = FastFftSize(side);
  cv::Mat1f tv, tm, pv, pm;
  Random(s, 0.1, 3, &tv, &tm);
  Random(side, 0.1, 4, &pv, &pm);
  MaskedSpectra ts, ps;
  ComputeSpectra(tv, tm, fft, fft, &ts);
  ComputeSpectra(pv, pm, fft, fft, &ps);
  const double min_overlap = 0.5 * ts.valid;
  cv::Mat1f expected;
  MaskedNccMaps(ts, ps, min_overlap, &expected, nullptr, n, n);
  cv::Mat1f t2, p2;
  cv::multiply(tv, tv, t2);
  cv::multiply(pv, pv, p2);
  for (int y = 0; y < n; ++y) {
    for (int x = 0; x < n; ++x) {
      EXPECT_NEAR(DirectMaskedNccAt(tv, tm, t2, pv, pm, p2, y, x, min_overlap), expected(y, x), 1e-3) << y << "," << x;
    }
  }
}

// RefineHit hands DirectMaskedNccAt windows of larger images (row step
// past the width) next to continuous squares: each array is read with its
// own row step. The values must be exactly those of continuous copies, for a
// width below one 16-column block (13) and one past two blocks (34).
TEST(DirectKernelTest, ReadsEachArrayWithItsOwnRowStep) {
  for (const int s : {13, 34}) {
    const int n = 5, side = s + n - 1;
    cv::Mat1f big_tv, big_tm, big_pv, big_pm;
    Random(side + 9, 0.1, 5, &big_tv, &big_tm);
    Random(side + 7, 0.1, 6, &big_pv, &big_pm);
    const cv::Mat1f tv = big_tv(cv::Rect(3, 2, s, s)), tm = big_tm(cv::Rect(3, 2, s, s));
    const cv::Mat1f pv = big_pv(cv::Rect(1, 4, side, side)), pm = big_pm(cv::Rect(1, 4, side, side));
    ASSERT_FALSE(tv.isContinuous());
    ASSERT_FALSE(pv.isContinuous());
    cv::Mat1f t2, p2;  // continuous, unlike tv and pv
    cv::multiply(tv, tv, t2);
    cv::multiply(pv, pv, p2);
    const cv::Mat1f ctv = tv.clone(), ctm = tm.clone(), cpv = pv.clone(), cpm = pm.clone();
    const double min_overlap = 0.5 * cv::sum(tm)[0];
    for (int y = 0; y < n; ++y) {
      for (int x = 0; x < n; ++x) {
        const float got = DirectMaskedNccAt(tv, tm, t2, pv, pm, p2, y, x, min_overlap);
        EXPECT_EQ(got, DirectMaskedNccAt(ctv, ctm, t2, cpv, cpm, p2, y, x, min_overlap)) << s << ": " << y << "," << x;
        EXPECT_GT(got, -1.5f);  // enough overlap: a real NCC, not the -2 marker
      }
    }
  }
}

// MaskedNccRows transforms back only the rows it returns (negative = from
// the end, wrapping): the same values as those rows of the whole map, on a
// non-square size like the polar images (radius x angle).
TEST(RowsKernelTest, MatchesTheWholeMapRows) {
  const int rows = 60, cols = 360;
  cv::Mat1f av, am, bv, bm;
  RandomRows(cols, 50, 0.2, 5, &av, &am);
  RandomRows(cols, 50, 0.2, 6, &bv, &bm);
  MaskedSpectra a, b;
  ComputeSpectra(av, am, rows, cols, &a);
  ComputeSpectra(bv, bm, rows, cols, &b);
  const double min_overlap = 0.5 * std::min(a.valid, b.valid);
  cv::Mat1f whole, some;
  MaskedNccMaps(a, b, min_overlap, &whole, nullptr);
  const std::vector<int> wanted = {-2, -1, 0, 1, 2, 7};
  MaskedNccRows(a, b, min_overlap, wanted, &some);
  ASSERT_EQ(some.rows, static_cast<int>(wanted.size()));
  ASSERT_EQ(some.cols, cols);
  for (std::size_t r = 0; r < wanted.size(); ++r) {
    const int y = (wanted[r] + rows) % rows;
    double worst = 0;
    for (int x = 0; x < cols; ++x) worst = std::max(worst, std::abs(double(some(static_cast<int>(r), x)) - whole(y, x)));
    EXPECT_LT(worst, 1e-3) << "row " << wanted[r];
  }
}

// MaskedNccMapsOfImage (image spectra and correlations two at a time in
// complex transforms) gives the whole map and overlap of MaskedNccMaps.
TEST(PackedMapsKernelTest, MatchesTheSixFftMap) {
  const int rows = 90, cols = 90;
  cv::Mat1f tv, tm, iv, im;
  Random(34, 0.2, 9, &tv, &tm);
  Random(51, 0.2, 10, &iv, &im);
  tv.copyTo(iv(cv::Rect(12, 5, 34, 34)));
  tm.copyTo(im(cv::Rect(12, 5, 34, 34)));
  MaskedSpectra t, i;
  ComputeSpectra(tv, tm, rows, cols, &t);
  ComputeSpectra(iv, im, rows, cols, &i);
  const double min_overlap = 0.5 * std::min(t.valid, i.valid);
  cv::Mat1f expected, expected_n, got, got_n;
  MaskedNccMaps(t, i, min_overlap, &expected, &expected_n);
  MaskedNccMapsOfImage(t, iv, im, min_overlap, &got, &got_n);
  ASSERT_EQ(got.size(), expected.size());
  double worst = 0, worst_n = 0;
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      worst = std::max(worst, std::abs(double(got(y, x)) - expected(y, x)));
      worst_n = std::max(worst_n, std::abs(double(got_n(y, x)) - expected_n(y, x)));
    }
  }
  EXPECT_LT(worst, 1e-3);
  EXPECT_EQ(worst_n, 0.0);  // overlap counts are integers after rounding
  EXPECT_NEAR(got(5, 12), 1.0, 1e-3);  // the planted copy
}

// MaskedNccRadial (row spectra, sums over the rows) gives the rows of the 2D
// map of zero-padded images, here of different heights on either side.
TEST(RadialKernelTest, MatchesTheRowsOfThePaddedMap) {
  const int rows = 64, cols = 360, max_shift = 2;
  cv::Mat1f av, am, bv, bm;
  RandomRows(cols, 50, 0.2, 7, &av, &am);
  RandomRows(cols, 47, 0.2, 8, &bv, &bm);
  // A copy of a turned and radially shifted by +1 row inside b: a real peak.
  for (int y = 0; y + 1 < 47; ++y) {
    for (int x = 0; x < cols; ++x) {
      bv(y + 1, (x + 40) % cols) = av(y, x);
      bm(y + 1, (x + 40) % cols) = am(y, x);
    }
  }
  MaskedSpectra a, b;
  ComputeSpectra(av, am, rows, cols, &a);
  ComputeSpectra(bv, bm, rows, cols, &b);
  RowSpectra ra, rb;
  ComputeRowSpectra(av, am, &ra);
  ComputeRowSpectra(bv, bm, &rb);
  EXPECT_EQ(ra.valid, a.valid);
  const double min_overlap = 0.5 * std::min(a.valid, b.valid);
  std::vector<int> shifts;
  for (int s = -max_shift; s <= max_shift; ++s) shifts.push_back(s);
  cv::Mat1f expected, got;
  MaskedNccRows(a, b, min_overlap, shifts, &expected);
  MaskedNccRadial(ra, rb, min_overlap, max_shift, &got);
  ASSERT_EQ(got.rows, 2 * max_shift + 1);
  ASSERT_EQ(got.cols, cols);
  double worst = 0;
  for (int r = 0; r < got.rows; ++r) {
    for (int x = 0; x < cols; ++x) worst = std::max(worst, std::abs(double(got(r, x)) - expected(r, x)));
  }
  EXPECT_LT(worst, 1e-3);
  EXPECT_NEAR(got(max_shift + 1, 40), 1.0, 1e-3);  // the planted copy
}

}  // namespace
}  // namespace ballistics::correlate_internal
