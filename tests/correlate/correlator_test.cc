// Correlator on synthetic signatures: registration accuracy after arbitrary
// turns and shifts (orientation unknown and roughly aligned), CMC on
// same-source and different-source pairs, bad input, thread safety.
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ballistics/correlate.h"
#include "synthetic.h"

namespace ballistics {
namespace {

using testing::ApplyAnnulus;
using testing::BandLimitedTexture;
using testing::MakeSignature;
using testing::TurnShift;

constexpr double kPixelUm = 6.25;
constexpr int kSide = 400;  // 2.5 mm, like a small breech face

double AngleErr(double a, double b) {
  double d = std::fmod(a - b, 360.0);
  if (d > 180) d -= 360;
  if (d < -180) d += 360;
  return std::abs(d);
}

cv::Mat1f Reference(unsigned seed) {
  cv::Mat1f v = BandLimitedTexture(kSide, seed);
  ApplyAnnulus(v);
  return v;
}

Correlator MakeCorrelator(const CorrelationConfig& c = {}) {
  auto corr = Correlator::Create(c);
  EXPECT_TRUE(corr.ok()) << corr.status().ToString();
  return std::move(corr).value();
}

TEST(CorrelatorTest, SelfComparisonAgreesEverywhere) {
  const Correlator corr = MakeCorrelator();
  const Signature s = MakeSignature(Reference(11));
  auto r = corr.Compare(s, s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cmc, r->cells);
  EXPECT_GT(r->cells, 30);
  EXPECT_LT(AngleErr(r->theta_deg, 0.0), 0.5);
  EXPECT_LT(std::hypot(r->dx_um, r->dy_um), 0.5 * kPixelUm);
  EXPECT_GT(r->ccf, 0.99);
  EXPECT_TRUE(r->identification);
}

struct TurnCase {
  double theta_deg;
  double sx_px, sy_px;
};

class TurnShiftTest : public ::testing::TestWithParam<TurnCase> {};

// Property: turned by an arbitrary angle and shifted, with noise and a
// partial mask, the target is registered back within 1 degree and 1 pixel
// with the orientation unknown (full 360-degree search).
TEST_P(TurnShiftTest, RegistersBackWithinOneDegreeAndOnePixel) {
  const TurnCase tc = GetParam();
  const Correlator corr = MakeCorrelator();
  const cv::Mat1f ref = Reference(21);
  const cv::Mat1f tgt = TurnShift(ref, tc.theta_deg, tc.sx_px, tc.sy_px, 24, 0.3, 0.12, 5);
  auto r = corr.Compare(MakeSignature(ref), MakeSignature(tgt));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LE(AngleErr(r->theta_deg, tc.theta_deg), 1.0) << "theta " << r->theta_deg;
  EXPECT_LE(std::abs(r->dx_um - tc.sx_px * kPixelUm), kPixelUm) << "dx " << r->dx_um;
  EXPECT_LE(std::abs(r->dy_um - tc.sy_px * kPixelUm), kPixelUm) << "dy " << r->dy_um;
  EXPECT_GE(r->cmc, r->cells / 2);
  EXPECT_TRUE(r->identification);
  // The reverse direction finds the inverse transform.
  EXPECT_LE(AngleErr(r->backward.theta_deg, -tc.theta_deg), 1.0);
}

INSTANTIATE_TEST_SUITE_P(Angles, TurnShiftTest,
                         ::testing::Values(TurnCase{137.0, 7.0, -4.0}, TurnCase{-163.4, -11.5, 3.25},
                                           TurnCase{23.7, 0.0, 9.0}, TurnCase{271.2, 5.5, 5.5},
                                           TurnCase{180.0, -3.0, -8.0}));

TEST(CorrelatorTest, RoughlyAlignedSearchStaysInRange) {
  const Correlator corr = MakeCorrelator();
  const cv::Mat1f ref = Reference(31);
  const cv::Mat1f tgt = TurnShift(ref, -17.5, 4.0, 2.0, 16, 0.3, 0.1, 7);
  CompareOptions opt;
  opt.max_rotation_deg = 30.0;
  auto r = corr.Compare(MakeSignature(ref), MakeSignature(tgt), opt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LE(AngleErr(r->theta_deg, -17.5), 1.0);
  EXPECT_LE(std::abs(r->dx_um - 4.0 * kPixelUm), kPixelUm);
  EXPECT_LE(std::abs(r->dy_um - 2.0 * kPixelUm), kPixelUm);
  for (double a : r->candidate_angles_deg) EXPECT_LE(std::abs(a), 30.0 + 1e-9);
}

TEST(CorrelatorTest, DifferentSourcesGiveFewCongruentCells) {
  const Correlator corr = MakeCorrelator();
  for (unsigned seed = 0; seed < 3; ++seed) {
    auto r = corr.Compare(MakeSignature(Reference(100 + seed)), MakeSignature(Reference(200 + seed)));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LT(r->cmc, corr.config().cmc_threshold) << "seed " << seed;
    EXPECT_FALSE(r->identification);
  }
}

TEST(CorrelatorTest, CellResultsDescribeTheOverlay) {
  const Correlator corr = MakeCorrelator();
  const cv::Mat1f ref = Reference(41);
  const cv::Mat1f tgt = TurnShift(ref, 60.0, 0.0, 0.0, 8, 0.2, 0.0, 3);
  auto r = corr.Compare(MakeSignature(ref), MakeSignature(tgt));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(static_cast<int>(r->forward.cell_results.size()), r->forward.cells);
  int congruent = 0;
  for (const CellResult& c : r->forward.cell_results) {
    EXPECT_GE(c.valid_fraction, corr.config().min_cell_valid_fraction);
    EXPECT_GT(c.size_um, 0);
    if (!c.congruent) continue;
    ++congruent;
    EXPECT_GE(c.ccf, corr.config().ccf_threshold);
    // Congruent cells are found where the consensus transform puts them.
    const double t = 60.0 * M_PI / 180.0;
    const double qx = std::cos(t) * c.x_um + std::sin(t) * c.y_um;
    const double qy = -std::sin(t) * c.x_um + std::cos(t) * c.y_um;
    EXPECT_NEAR(c.target_x_um, qx, 2 * kPixelUm);
    EXPECT_NEAR(c.target_y_um, qy, 2 * kPixelUm);
  }
  EXPECT_EQ(congruent, r->forward.cmc);
}

TEST(CorrelatorTest, DifferentPixelSizesCompareInMicrometres) {
  // The same surface sampled at 6.25 and 5 µm: the engine works in µm.
  const Correlator corr = MakeCorrelator();
  const cv::Mat1f ref = Reference(51);
  cv::Mat1f big;
  cv::resize(ref, big, cv::Size(500, 500), 0, 0, cv::INTER_LINEAR);  // NaN spreads a little: fine
  auto r = corr.Compare(MakeSignature(ref, 6.25), MakeSignature(big, 5.0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LE(AngleErr(r->theta_deg, 0.0), 1.0);
  EXPECT_LE(std::hypot(r->dx_um, r->dy_um), 6.25);
  EXPECT_TRUE(r->identification);
}

TEST(CorrelatorTest, PreparedSignaturesAreSharedAcrossThreads) {
  const Correlator corr = MakeCorrelator();
  auto a = corr.Prepare(MakeSignature(Reference(61)));
  auto b = corr.Prepare(MakeSignature(TurnShift(Reference(61), 95.0, 3, 3, 8, 0.3, 0.1, 1)));
  ASSERT_TRUE(a.ok() && b.ok());
  auto first = corr.Compare(**a, **b);
  ASSERT_TRUE(first.ok());
  std::vector<ComparisonResult> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto r = corr.Compare(**a, **b);
      if (r.ok()) results[i] = *r;
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    EXPECT_EQ(r.cmc, first->cmc);
    EXPECT_DOUBLE_EQ(r.theta_deg, first->theta_deg);
    EXPECT_DOUBLE_EQ(r.dx_um, first->dx_um);
  }
}

TEST(CorrelatorTest, FiringPinConfigWorksOnSmallSignatures) {
  auto corr = Correlator::Create(CorrelationConfig::FiringPin());
  ASSERT_TRUE(corr.ok());
  cv::Mat1f v = BandLimitedTexture(200, 71, 1.2, 15.0);
  ApplyAnnulus(v, 0.95, 0.0);
  const Signature ref = MakeSignature(v, kPixelUm, SignatureKind::kFiringPin);
  const Signature tgt = MakeSignature(TurnShift(v, -75.0, 2.0, -3.0, 8, 0.2, 0.0, 9), kPixelUm,
                                      SignatureKind::kFiringPin);
  auto r = corr->Compare(ref, tgt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->kind, SignatureKind::kFiringPin);
  EXPECT_LE(AngleErr(r->theta_deg, -75.0), 1.0);
  EXPECT_TRUE(r->identification);
}

TEST(CorrelatorErrorsTest, RejectsBadConfig) {
  CorrelationConfig c;
  c.cell_grid = 1;
  auto r = Correlator::Create(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("cell_grid=1"), std::string::npos) << r.status().message();
  c = CorrelationConfig{};
  c.ccf_threshold = 1.5;
  EXPECT_FALSE(Correlator::Create(c).ok());
  c = CorrelationConfig{};
  c.coarse_pixel_um = 1.0;
  EXPECT_FALSE(Correlator::Create(c).ok());
}

TEST(CorrelatorErrorsTest, RejectsBadSignatures) {
  const Correlator corr = MakeCorrelator();
  Signature empty;
  empty.pixel_um = 6.25;
  auto r = corr.Prepare(empty);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);

  Signature bad_pixel = MakeSignature(Reference(1));
  bad_pixel.pixel_um = -1;
  r = corr.Prepare(bad_pixel);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pixel_um=-1"), std::string::npos) << r.status().message();

  Signature all_nan = MakeSignature(cv::Mat1f(100, 100, std::numeric_limits<float>::quiet_NaN()));
  r = corr.Prepare(all_nan);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);

  Signature flat = MakeSignature(cv::Mat1f(200, 200, 1.0f));
  EXPECT_FALSE(corr.Prepare(flat).ok());
}

TEST(CorrelatorErrorsTest, RejectsMixedKindsAndBadRotation) {
  const Correlator corr = MakeCorrelator();
  Signature bf = MakeSignature(Reference(3));
  Signature fp = bf;
  fp.kind = SignatureKind::kFiringPin;
  auto r = corr.Compare(bf, fp);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  Signature img = bf;
  img.modality = Modality::kImage2d;
  EXPECT_FALSE(corr.Compare(bf, img).ok());
  CompareOptions opt;
  opt.max_rotation_deg = -5;
  r = corr.Compare(bf, bf, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("max_rotation_deg=-5"), std::string::npos);
}

}  // namespace
}  // namespace ballistics

namespace ballistics {
namespace {

TEST(TurnScanTest, MovesAPointWhereTheConventionSays) {
  // A bright blob 40 px right of the centre, turned by +90 degrees (OpenCV:
  // counter-clockwise as displayed, y down) must end up 40 px *above* the centre.
  Scan scan;
  scan.pixel_um_x = scan.pixel_um_y = 5.0;
  scan.values = cv::Mat1f::zeros(101, 101);
  cv::circle(scan.values, cv::Point(90, 50), 3, cv::Scalar(1.0), -1);
  auto turned = TurnScan(scan, 90.0, 0.0, 0.0);
  ASSERT_TRUE(turned.ok()) << turned.status().ToString();
  const cv::Mat1f& v = turned->values;
  cv::Mat1f finite = v.clone();
  cv::patchNaNs(finite, 0.0);
  auto centroid = [](const cv::Mat1f& m) {
    const cv::Moments mo = cv::moments(m);
    return cv::Point2d(mo.m10 / mo.m00, mo.m01 / mo.m00);
  };
  cv::Point2d c = centroid(finite);
  const double cx = (v.cols - 1) / 2.0, cy = (v.rows - 1) / 2.0;
  EXPECT_NEAR(c.x - cx, 0.0, 0.5);
  EXPECT_NEAR(c.y - cy, -40.0, 0.5);
  // Corners of the padded canvas hold no data.
  EXPECT_TRUE(std::isnan(v(0, 0)));
  // A shift in µm moves it by shift / pixel.
  auto shifted = TurnScan(scan, 0.0, 50.0, -25.0);
  ASSERT_TRUE(shifted.ok());
  cv::Mat1f f2 = shifted->values.clone();
  cv::patchNaNs(f2, 0.0);
  c = centroid(f2);
  EXPECT_NEAR(c.x - (f2.cols - 1) / 2.0, 40.0 + 10.0, 0.5);
  EXPECT_NEAR(c.y - (f2.rows - 1) / 2.0, -5.0, 0.5);
}

TEST(TurnScanTest, RejectsBadInput) {
  Scan scan;
  EXPECT_EQ(TurnScan(scan, 10, 0, 0).status().code(), StatusCode::kInvalidArgument);
  scan.values = cv::Mat1f::zeros(10, 10);
  scan.pixel_um_x = 0;
  scan.pixel_um_y = 1;
  auto r = TurnScan(scan, 10, 0, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pixel size 0"), std::string::npos) << r.status().message();
  scan.pixel_um_x = 1;
  EXPECT_FALSE(TurnScan(scan, std::nan(""), 0, 0).ok());
}

}  // namespace
}  // namespace ballistics
