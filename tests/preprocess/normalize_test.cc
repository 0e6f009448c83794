// Normalize() on synthetic casings with known geometry.
#include <cmath>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "ballistics/preprocess.h"
#include "preprocess/synthetic.h"

namespace ballistics {
namespace {

using testing::kNaN;

int CountValid(const cv::Mat1f& v) {
  int n = 0;
  for (int y = 0; y < v.rows; ++y)
    for (int x = 0; x < v.cols; ++x) n += std::isfinite(v(y, x));
  return n;
}

TEST(Normalize, CroppedAnnulusIsDetectedAndKeptWhole) {
  const Scan scan = testing::CroppedAnnulusScan(301, 6.25, 150, 90);
  const auto result = Normalize(scan);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const NormalizedCasing& c = *result;
  EXPECT_TRUE(c.segmentation.already_cropped);
  EXPECT_FALSE(c.segmentation.firing_pin_found);
  EXPECT_FALSE(c.firing_pin.has_value());
  EXPECT_NEAR(c.segmentation.primer_center_px.x, 150, 1.0);
  EXPECT_NEAR(c.segmentation.primer_radius_px, 150, 2.0);
  EXPECT_NEAR(c.segmentation.firing_pin_radius_px, 90, 2.0);  // the hole, for display
  const Signature& bf = c.breech_face;
  EXPECT_EQ(bf.pipeline_version, kPipelineVersion);
  EXPECT_EQ(bf.kind, SignatureKind::kBreechFace);
  EXPECT_DOUBLE_EQ(bf.pixel_um, 6.25);
  EXPECT_NEAR(bf.width(), 301, 2);
  // Same grid: validity is exactly the input's.
  EXPECT_EQ(CountValid(bf.values), CountValid(scan.values));
  EXPECT_NEAR(bf.quality.valid_fraction, CountValid(bf.values) / double(bf.values.total()), 1e-12);
  EXPECT_NEAR(bf.quality.valid_area_mm2, CountValid(bf.values) * 6.25 * 6.25 * 1e-6, 1e-9);
  EXPECT_GT(bf.quality.rms_height, 0.2);  // marks (1 µm RMS, ~20 µm scale) survive the band-pass
  EXPECT_LT(bf.quality.rms_height, 1.2);
}

TEST(Normalize, CroppedAnnulusIsResampledToTarget) {
  // DFSC-like 7.37 µm grid -> 6.25 µm.
  const Scan scan = testing::CroppedAnnulusScan(240, 7.37, 119, 80);
  const auto result = Normalize(scan);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_TRUE(result->segmentation.already_cropped);
  EXPECT_DOUBLE_EQ(result->breech_face.pixel_um, 6.25);
  EXPECT_NEAR(result->breech_face.width(), 240 * 7.37 / 6.25, 3);
  EXPECT_NEAR(result->breech_face.quality.valid_area_mm2,
              CountValid(scan.values) * 7.37 * 7.37 * 1e-6, 0.03 * result->breech_face.quality.valid_area_mm2);
}

TEST(Normalize, CoverageWarningForHeavyDropouts) {
  const Scan full = testing::CroppedAnnulusScan(301, 6.25, 150, 90);
  const auto ok = Normalize(full);
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->warnings.empty()) << ok->warnings.front();
  EXPECT_NEAR(ok->segmentation.breech_face_outer_radius_px, 150, 2);
  EXPECT_NEAR(ok->segmentation.breech_face_inner_radius_px, 90, 2);
  // Drop 70 % of the annulus in blocks (a dirty or badly lit primer).
  Scan holey = full;
  for (int y = 0; y < holey.values.rows; ++y)
    for (int x = 0; x < holey.values.cols; ++x)
      if ((x / 10 + y / 10) % 10 < 7) holey.values(y, x) = kNaN;
  const auto r = Normalize(holey);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  bool warned = false;
  for (const std::string& w : r->warnings) warned |= w.find("breech-face annulus") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(Normalize, TiltAndFormAreRemoved) {
  // A cropped annulus on a steep tilted, curved form: the signature must not
  // keep the form (RMS near the 1 µm marks, not the ~40 µm form).
  Scan scan = testing::CroppedAnnulusScan(301, 6.25, 150, 90);
  for (int y = 0; y < scan.values.rows; ++y)
    for (int x = 0; x < scan.values.cols; ++x)
      if (std::isfinite(scan.values(y, x)))
        scan.values(y, x) += 0.3f * x - 0.2f * y + 0.002f * ((x - 150) * (x - 150) + (y - 150) * (y - 150));
  const auto result = Normalize(scan);
  ASSERT_TRUE(result.ok());
  EXPECT_LT(result->breech_face.quality.rms_height, 1.2);
}

TEST(Normalize, RawScanSegmentsPrimerAndFiringPin) {
  const testing::RawCasing3d raw = testing::RawCasingScan3d();
  const auto result = Normalize(raw.scan);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const NormalizedCasing& c = *result;
  const Segmentation& s = c.segmentation;
  EXPECT_FALSE(s.already_cropped);
  ASSERT_TRUE(s.firing_pin_found);
  EXPECT_LT(cv::norm(s.firing_pin_center_px - raw.fp_center_px), 3.0)
      << s.firing_pin_center_px << " vs " << raw.fp_center_px;
  EXPECT_NEAR(s.firing_pin_radius_px, raw.fp_radius_px, 0.06 * raw.fp_radius_px);
  // The flat contact region is a disk with the FP crater inside: its centre
  // and radius are those of the flat face, within a few pixels.
  EXPECT_LT(cv::norm(s.primer_center_px - raw.primer_center_px), 5.0);
  EXPECT_NEAR(s.primer_radius_px, raw.primer_radius_px, 0.05 * raw.primer_radius_px);
  ASSERT_TRUE(c.firing_pin.has_value());
  EXPECT_EQ(c.firing_pin->kind, SignatureKind::kFiringPin);
  EXPECT_GT(c.firing_pin->quality.valid_area_mm2, 0.5);  // crater of r = 0.55 mm: 0.95 mm^2
  // BF: the annulus between FP hole and flat-face edge, nothing of the case head or groove.
  const double px = raw.scan.pixel_um_x;
  const double r_out = raw.primer_radius_px * px * 1e-3, r_fp = raw.fp_radius_px * px * 1e-3;
  const double expected_mm2 = std::numbers::pi * (r_out * r_out - r_fp * r_fp);
  EXPECT_GT(c.breech_face.quality.valid_area_mm2, 0.7 * expected_mm2);
  EXPECT_LT(c.breech_face.quality.valid_area_mm2, 1.05 * expected_mm2);
}

TEST(Normalize, RawScanWithCraterDropoutStillFindsFiringPin) {
  // Scanners often lose the steep, deep FP crater entirely: missing points
  // near the centre count as crater.
  testing::RawCasing3d raw = testing::RawCasingScan3d();
  for (int y = 0; y < raw.scan.values.rows; ++y)
    for (int x = 0; x < raw.scan.values.cols; ++x)
      if (std::hypot(x - raw.fp_center_px.x, y - raw.fp_center_px.y) < 0.9 * raw.fp_radius_px)
        raw.scan.values(y, x) = kNaN;
  const auto result = Normalize(raw.scan);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_TRUE(result->segmentation.firing_pin_found);
  EXPECT_FALSE(result->segmentation.already_cropped);
  EXPECT_LT(cv::norm(result->segmentation.firing_pin_center_px - raw.fp_center_px), 3.0);
  EXPECT_NEAR(result->segmentation.firing_pin_radius_px, raw.fp_radius_px, 0.08 * raw.fp_radius_px);
}

TEST(Normalize, Image2dFindsPrimerAndFiringPin) {
  const testing::RawCasing3d raw = testing::RawCasingImage2d();
  const auto result = Normalize(raw.scan);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const Segmentation& s = result->segmentation;
  EXPECT_LT(cv::norm(s.primer_center_px - raw.primer_center_px), 6.0);
  EXPECT_NEAR(s.primer_radius_px, raw.primer_radius_px, 0.05 * raw.primer_radius_px);
  ASSERT_TRUE(s.firing_pin_found);
  EXPECT_LT(cv::norm(s.firing_pin_center_px - raw.fp_center_px), 6.0);
  EXPECT_NEAR(s.firing_pin_radius_px, raw.fp_radius_px, 0.08 * raw.fp_radius_px);
  EXPECT_EQ(result->breech_face.modality, Modality::kImage2d);
  ASSERT_TRUE(result->firing_pin.has_value());
}

TEST(Normalize, RejectsBadInput) {
  Scan empty;
  empty.pixel_um_x = empty.pixel_um_y = 6.25;
  EXPECT_EQ(Normalize(empty).status().code(), StatusCode::kInvalidArgument);

  Scan tiny = testing::CroppedAnnulusScan(16, 6.25, 8, 3);
  const auto t = Normalize(tiny);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("16x16"), std::string::npos) << t.status().message();

  Scan all_nan = testing::CroppedAnnulusScan(100, 6.25, 50, 20);
  all_nan.values.setTo(kNaN);
  EXPECT_EQ(Normalize(all_nan).status().code(), StatusCode::kInvalidArgument);

  Scan no_pixel = testing::CroppedAnnulusScan(100, 6.25, 50, 20);
  no_pixel.pixel_um_x = 0;
  EXPECT_EQ(Normalize(no_pixel).status().code(), StatusCode::kInvalidArgument);

  NormalizeConfig bad;
  bad.bandpass_short_um = 600;  // above the long cutoff
  EXPECT_EQ(Normalize(testing::CroppedAnnulusScan(100, 6.25, 50, 20), bad).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(Normalize, RejectsDegenerateOrHugeGrids) {
  // 100 x 100 points of 0.5 µm: 8 signature points a side.
  Scan small = testing::CroppedAnnulusScan(100, 0.5, 50, 20);
  EXPECT_EQ(Normalize(small).status().code(), StatusCode::kInvalidArgument);
  // A header claiming 1 mm pixels: 100 mm field.
  Scan huge = testing::CroppedAnnulusScan(100, 1000.0, 50, 20);
  const auto r = Normalize(huge);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
}

TEST(Normalize, AnisotropicPixelsGiveASquareGrid) {
  Scan s = testing::CroppedAnnulusScan(300, 6.25, 149, 90);
  s.pixel_um_y = 7.5;  // rows 20 % taller: 300 rows cover 2250 µm
  const auto r = Normalize(s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->breech_face.height(), 300 * 7.5 / 6.25, 3);
  EXPECT_NEAR(r->breech_face.width(), 300, 3);
}

// Bad data must give a Status, never a crash: random sizes, NaN patterns,
// infinities and huge values, both modalities.
TEST(Normalize, RandomInputsNeverCrash) {
  std::mt19937 rng(123);
  for (int i = 0; i < 40; ++i) {
    Scan s;
    s.modality = i % 2 ? Modality::kImage2d : Modality::kTopography3d;
    const int w = 20 + static_cast<int>(rng() % 300), h = 20 + static_cast<int>(rng() % 300);
    s.pixel_um_x = s.pixel_um_y = 2.0 + (rng() % 200) / 10.0;
    s.values = testing::RandomMarks(cv::Size(w, h), 1 + rng() % 5, 1e3 * (rng() % 3), rng());
    std::bernoulli_distribution hole(0.05 * (rng() % 20));
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        if (hole(rng)) s.values(y, x) = kNaN;
        if (rng() % 5000 == 0) s.values(y, x) = std::numeric_limits<float>::infinity();
      }
    const auto r = Normalize(s);
    if (r.ok()) {
      EXPECT_GT(r->breech_face.width(), 0);
    } else {
      EXPECT_TRUE(r.status().code() == StatusCode::kInvalidArgument ||
                  r.status().code() == StatusCode::kResourceExhausted)
          << r.status().ToString();
    }
  }
}

TEST(Normalize, NoPrimerInRoughNoiseIsAnError) {
  // A raw 3D field of rough noise (±50 µm): no plane, no primer.
  Scan s;
  s.modality = Modality::kTopography3d;
  s.pixel_um_x = s.pixel_um_y = 10;
  s.values = testing::RandomMarks(cv::Size(500, 500), 0.7, 50.0, 4);
  const auto r = Normalize(s);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("no primer"), std::string::npos) << r.status().message();
  // A 2D image of uniform noise: no bright round region.
  Scan img = s;
  img.modality = Modality::kImage2d;
  img.values = testing::RandomMarks(cv::Size(500, 400), 1.0, 0.1, 5) + 0.5;
  const auto r2 = Normalize(img);
  EXPECT_EQ(r2.status().code(), StatusCode::kInvalidArgument) << r2.status().ToString();
}

TEST(RenderSignatures, SideBySideWithGreyInvalid) {
  const testing::RawCasing3d raw = testing::RawCasingScan3d();
  const auto result = Normalize(raw.scan);
  ASSERT_TRUE(result.ok());
  const cv::Mat3b pic = RenderSignatures(*result);
  ASSERT_TRUE(result->firing_pin.has_value());
  EXPECT_GE(pic.cols, result->breech_face.width() + result->firing_pin->width());
  EXPECT_GE(pic.rows, result->breech_face.height());
  // The BF centre is the FP hole: invalid, drawn grey.
  const int cx = result->breech_face.width() / 2, cy = 22 + result->breech_face.height() / 2;
  EXPECT_EQ(pic(cy, cx), cv::Vec3b(128, 128, 128));
}

}  // namespace
}  // namespace ballistics

namespace ballistics {
namespace {

TEST(RenderSegmentation, DrawsPrimerAndFiringPinCircles) {
  const testing::RawCasing3d raw = testing::RawCasingScan3d();
  const auto result = Normalize(raw.scan);
  ASSERT_TRUE(result.ok());
  const cv::Mat3b pic = RenderSegmentation(raw.scan, result->segmentation, 400);
  ASSERT_EQ(std::max(pic.cols, pic.rows), 400);
  const double s = 400.0 / raw.scan.width();
  const Segmentation& seg = result->segmentation;
  // Pure red on the primer circle's rightmost point, pure blue on the FP circle's.
  const cv::Point p(cvRound((seg.primer_center_px.x + seg.primer_radius_px) * s), cvRound(seg.primer_center_px.y * s));
  const cv::Point f(cvRound((seg.firing_pin_center_px.x + seg.firing_pin_radius_px) * s),
                    cvRound(seg.firing_pin_center_px.y * s));
  auto near_colour = [&](cv::Point c, cv::Vec3b want) {
    for (int dy = -2; dy <= 2; ++dy)
      for (int dx = -2; dx <= 2; ++dx)
        if (pic(c.y + dy, c.x + dx) == want) return true;
    return false;
  };
  EXPECT_TRUE(near_colour(p, cv::Vec3b(0, 0, 255)));
  EXPECT_TRUE(near_colour(f, cv::Vec3b(255, 0, 0)));
}

}  // namespace
}  // namespace ballistics
