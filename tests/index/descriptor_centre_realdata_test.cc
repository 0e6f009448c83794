// The descriptor centre on real scans (docs/search.md, "The centre"):
// - a raw DFSC scan (lab mask applied) and CSAFE's processed file of the same
//   casing get the same aperture centre, checked in the frame that registers
//   their marks (Correlator::Compare, CMC consensus transform);
// - a Fadul scan turned by an arbitrary angle and shifted keeps its centre
//   (the turn is known exactly: TurnScan's geometry).
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "ballistics/correlate.h"
#include "ballistics/index.h"
#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "test_paths.h"

namespace ballistics {
namespace {

// One pixel of the descriptor's 25 µm grid (the grid the rim is located on).
// Same casing: no primer or firing-pin play between the two files, so the only
// difference allowed is the rim's location error on that grid. The
// least-squares inner-rim fit used before was 63-71 µm off on the K013 pairs.
constexpr double kSameCasingToleranceUm = 25.0;

struct Normalized {
  Scan scan;
  NormalizedCasing casing;
};

Normalized Load(const std::string& dir, const std::string& name) {
  auto scan = ReadScanFile(testing::SharedDataDir() / dir / (name + ".x3p"));
  EXPECT_TRUE(scan.ok()) << name << ": " << scan.status().ToString();
  auto n = Normalize(*scan);
  EXPECT_TRUE(n.ok()) << name << ": " << n.status().ToString();
  return {*scan, *n};
}

// Distance between b's centre and a's centre carried into b by the transform
// that registers a's marks on b's (correlate.h convention: q = Rot p + d).
double RegisteredCentreDistanceUm(const std::string& a_name, const std::string& b_name) {
  const Signature a = Load("dfsc", a_name).casing.breech_face;
  const Signature b = Load("dfsc", b_name).casing.breech_face;
  auto corr = Correlator::Create().value();
  auto r = corr.Compare(a, b);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return INFINITY;
  // The registration is only evidence when the marks agree.
  EXPECT_TRUE(r->identification) << a_name << " vs " << b_name << ": CMC " << r->cmc;
  auto ca = DescriptorCentreUm(a), cb = DescriptorCentreUm(b);
  EXPECT_TRUE(ca.ok() && cb.ok());
  if (!ca.ok() || !cb.ok()) return INFINITY;
  const double t = r->theta_deg * M_PI / 180.0, c = std::cos(t), s = std::sin(t);
  const double qx = c * ca->x + s * ca->y + r->dx_um, qy = -s * ca->x + c * ca->y + r->dy_um;
  const double d = std::hypot(qx - cb->x, qy - cb->y);
  std::printf("[centre] %s -> %s: CMC %d, theta %.1f deg, centres (%.0f, %.0f) -> (%.0f, %.0f) "
              "vs (%.0f, %.0f): %.1f um\n",
              a_name.c_str(), b_name.c_str(), r->cmc, r->theta_deg, ca->x, ca->y, qx, qy, cb->x, cb->y, d);
  return d;
}

TEST(DescriptorCentreRealdataTest, RawAndProcessedFilesOfOneCasingShareTheCentre) {
  // Lab mask (flowback kept at one side of the aperture) vs CSAFE's processed crop.
  EXPECT_LE(RegisteredCentreDistanceUm("K013sA1", "K013sA1_processed"), kSameCasingToleranceUm);
  EXPECT_LE(RegisteredCentreDistanceUm("K013sA2-2", "K013sA2_processed"), kSameCasingToleranceUm);
  // The same valid region in both files (the original's mask is the processed crop).
  EXPECT_LE(RegisteredCentreDistanceUm("K002eG2_original", "K002eG2_processed"), kSameCasingToleranceUm);
}

// Centre in the scan's pixel coordinates: the signature is cropped centred on
// the primer centre (within half a pixel), and DescriptorCentreUm is relative
// to the signature grid's centre.
cv::Point2d CentreInScanPx(const Normalized& n) {
  const cv::Point2d c = DescriptorCentreUm(n.casing.breech_face).value();
  const double px = n.casing.breech_face.pixel_um;  // Fadul: the scan's own grid
  return n.casing.segmentation.primer_center_px + cv::Point2d(c.x / px, c.y / px);
}

TEST(DescriptorCentreRealdataTest, TurnedFadulScansKeepTheirCentre) {
  // fadul-1-1 a full annulus; fadul-P and fadul-8-1 crescents open at the top.
  for (const std::string name : {"fadul-1-1", "fadul-P", "fadul-8-1"}) {
    const Normalized original = Load("fadul", name);
    ASSERT_DOUBLE_EQ(original.scan.pixel_um_x, original.casing.breech_face.pixel_um);
    for (const double theta : {137.0, -71.5}) {
      const double dx_um = 90.0, dy_um = -60.0;
      Normalized turned;
      turned.scan = TurnScan(original.scan, theta, dx_um, dy_um).value();
      auto n = Normalize(turned.scan);
      ASSERT_TRUE(n.ok()) << n.status().ToString();
      turned.casing = *n;
      // TurnScan: q = pad + c + Rot(theta) (p - c) + shift, Rot = [[cos, sin], [-sin, cos]].
      const double px = original.scan.pixel_um_x;
      const cv::Point2d c_in((original.scan.width() - 1) / 2.0, (original.scan.height() - 1) / 2.0);
      const cv::Point2d pad((turned.scan.width() - original.scan.width()) / 2.0,
                            (turned.scan.height() - original.scan.height()) / 2.0);
      const cv::Point2d p = CentreInScanPx(original) - c_in;
      const double t = theta * M_PI / 180.0, c = std::cos(t), s = std::sin(t);
      const cv::Point2d expected = pad + c_in + cv::Point2d(c * p.x + s * p.y, -s * p.x + c * p.y) +
                                   cv::Point2d(dx_um / px, dy_um / px);
      const cv::Point2d found = CentreInScanPx(turned);
      const double d_um = std::hypot(found.x - expected.x, found.y - expected.y) * px;
      std::printf("[centre] %s turned %.1f deg: %.1f um from the turned centre\n", name.c_str(), theta, d_um);
      EXPECT_LE(d_um, kSameCasingToleranceUm) << name << " turned " << theta;
    }
  }
}

}  // namespace
}  // namespace ballistics
