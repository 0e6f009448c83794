// Segmentation: where are the breech face (BF) and the firing-pin impression (FP)?
//
// 3D raw scans follow the CSAFE pipeline (Zemmels et al. 2022, cmcR
// preProcess_ransac / preProcess_removeFPCircle, after Tai's cartridges3D):
// the breech-face marks lie on one plane; a RANSAC plane with a narrow
// inlier band finds it, points far below it near the centre are the FP
// crater, and a circle is fitted to each region. 2D ring-light images follow
// Tai & Eddy (2018, "A fully automatic method for comparing cartridge case
// images", J. Forensic Sci. 63(2)): heavy blur, threshold at the median to find
// the bright primer disk, then the dark ring of the FP aperture inside it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "ballistics/preprocess.h"
#include "internal.h"

namespace ballistics::preprocess_internal {
namespace {

std::string Fmt(const char* format, double a, double b = 0, double c = 0, double d = 0) {
  char buf[320];
  std::snprintf(buf, sizeof buf, format, a, b, c, d);
  return buf;
}

// Holes (background regions not connected to the image border) filled in.
cv::Mat1b FillHoles(const cv::Mat1b& mask) {
  cv::Mat1b padded;
  cv::copyMakeBorder(mask, padded, 1, 1, 1, 1, cv::BORDER_CONSTANT, 0);
  cv::Mat1b flood = padded.clone();
  cv::floodFill(flood, cv::Point(0, 0), cv::Scalar(255));
  cv::Mat1b holes;
  cv::bitwise_not(flood, holes);
  cv::Mat1b out;
  cv::bitwise_or(padded, holes, out);
  return out(cv::Rect(1, 1, mask.cols, mask.rows)).clone();
}

// Convex hull of a mask, filled.
cv::Mat1b HullMask(const cv::Mat1b& mask) {
  std::vector<cv::Point> pts;
  cv::findNonZero(mask, pts);
  cv::Mat1b out(mask.size(), std::uint8_t{0});
  if (pts.size() < 3) return out;
  std::vector<cv::Point> hull;
  cv::convexHull(pts, hull);
  cv::fillConvexPoly(out, hull, cv::Scalar(255));
  return out;
}

// Centroid and equal-area radius of a region: robust to ragged edges, unlike
// a minimum enclosing circle.
Circle CircleOfRegion(const cv::Mat1b& mask) {
  const cv::Moments m = cv::moments(mask, true);
  Circle c;
  if (m.m00 <= 0) return c;
  c.center = {m.m10 / m.m00, m.m01 / m.m00};
  c.radius = std::sqrt(m.m00 / std::numbers::pi);
  return c;
}

// The connected components of `mask` (8-connected) as separate masks, with areas.
struct Component {
  cv::Mat1b mask;
  int area = 0;
  cv::Point2d centroid;
};
std::vector<Component> Components(const cv::Mat1b& mask, int min_area) {
  cv::Mat1i labels;
  cv::Mat stats, centroids;
  const int n = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8, CV_32S);
  std::vector<Component> out;
  for (int i = 1; i < n; ++i) {
    const int area = stats.at<int>(i, cv::CC_STAT_AREA);
    if (area < min_area) continue;
    Component c;
    c.mask = labels == i;
    c.area = area;
    c.centroid = {centroids.at<double>(i, 0), centroids.at<double>(i, 1)};
    out.push_back(std::move(c));
  }
  return out;
}

cv::Mat1b Open(const cv::Mat1b& mask, int radius_px) {
  if (radius_px < 1) return mask.clone();
  const cv::Mat se = cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * radius_px + 1, 2 * radius_px + 1));
  cv::Mat1b out;
  cv::morphologyEx(mask, out, cv::MORPH_OPEN, se);
  return out;
}

// Coarse-grid coordinates <-> input-scan pixel coordinates.
struct GridMap {
  double sx = 1, sy = 1;  // coarse pixels per input pixel
  cv::Point2d ToInput(cv::Point2d p) const { return {(p.x + 0.5) / sx - 0.5, (p.y + 0.5) / sy - 0.5}; }
  double RadiusToInput(double r) const { return r / std::sqrt(sx * sy); }
};

Circle ToInput(const GridMap& g, const Circle& c) { return {g.ToInput(c.center), g.RadiusToInput(c.radius)}; }

// A disk mask on the input grid, for a circle given in input pixels; with
// anisotropic pixels the circle in µm is an ellipse in pixels.
cv::Mat1b DiskMaskInput(cv::Size size, const Circle& c, double pixel_um_x, double pixel_um_y) {
  cv::Mat1b mask(size, std::uint8_t{0});
  const double r_um = c.radius * std::sqrt(pixel_um_x * pixel_um_y);
  cv::ellipse(mask, cv::Point(cvRound(c.center.x * 16), cvRound(c.center.y * 16)),
              cv::Size(cvRound(r_um / pixel_um_x * 16), cvRound(r_um / pixel_um_y * 16)), 0, 0, 360,
              cv::Scalar(255), cv::FILLED, cv::LINE_8, 4);
  return mask;
}

}  // namespace

// Least-squares circle through points (Kasa 1976: linear in (cx, cy, c)).
std::optional<Circle> FitCircle(const std::vector<cv::Point2d>& pts) {
  if (pts.size() < 8) return std::nullopt;
  cv::Matx33d a = cv::Matx33d::zeros();
  cv::Vec3d b(0, 0, 0);
  for (const cv::Point2d& p : pts) {
    const cv::Vec3d row(p.x, p.y, 1.0);
    const double z = p.x * p.x + p.y * p.y;
    a += row * row.t();
    b += z * row;
  }
  cv::Vec3d sol;
  if (!cv::solve(a, b, sol, cv::DECOMP_CHOLESKY)) return std::nullopt;
  const double cx = sol[0] / 2, cy = sol[1] / 2;
  const double r2 = sol[2] + cx * cx + cy * cy;
  if (!(r2 > 0)) return std::nullopt;
  return Circle{{cx, cy}, std::sqrt(r2)};
}

bool DetectAlreadyCropped(const cv::Mat1b& valid, const NormalizeConfig& config, Segmentation* seg) {
  // A pre-processed breech-face file keeps only the annulus (or, where the
  // scan was partial, a crescent of it): the FP hole sits inside the convex
  // hull of the valid points as one large invalid region. Raw scans fill
  // their hull (dropouts are small or scattered).
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(valid, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  std::vector<cv::Point> all;
  for (const auto& c : contours)
    if (c.size() >= 8) all.insert(all.end(), c.begin(), c.end());
  if (all.size() < 16) return false;
  std::vector<cv::Point> hull;
  cv::convexHull(all, hull);
  cv::Mat1b hull_mask(valid.size(), std::uint8_t{0});
  cv::fillConvexPoly(hull_mask, hull, cv::Scalar(255));
  const int hull_area = cv::countNonZero(hull_mask);
  if (hull_area < 64) return false;
  const cv::Mat1b hole_candidates = hull_mask & ~valid;
  cv::Mat1i labels;
  cv::Mat stats, centroids;
  const int n = cv::connectedComponentsWithStats(hole_candidates, labels, stats, centroids, 8, CV_32S);
  int largest = 0;
  for (int i = 1; i < n; ++i) largest = std::max(largest, stats.at<int>(i, cv::CC_STAT_AREA));
  if (static_cast<double>(largest) / hull_area < config.cropped_min_hole_fraction) return false;

  // The annulus' outer circle: fitted to the points of the outer contour that
  // lie on the convex hull (for a crescent, the outer arc only).
  // Every 3rd contour point is plenty for a circle and saves most of the
  // point-to-polygon distance tests.
  std::vector<cv::Point2d> rim;
  for (std::size_t i = 0; i < all.size(); i += 3)
    if (std::abs(cv::pointPolygonTest(hull, cv::Point2f(all[i]), true)) < 2.0) rim.emplace_back(all[i]);
  Circle outer = CircleOfRegion(hull_mask);
  if (const auto fit = FitCircle(rim)) outer = *fit;

  seg->already_cropped = true;
  seg->primer_center_px = outer.center;
  seg->primer_radius_px = outer.radius;
  // The hole where the FP impression was cut out: the largest empty circle
  // inside the hull (distance transform maximum). Unlike the equal-area circle
  // of the invalid region, it does not grow when dropouts connect to the hole.
  cv::Mat1f dist;
  cv::distanceTransform(hole_candidates, dist, cv::DIST_L2, cv::DIST_MASK_5);
  double max_dist = 0;
  cv::Point max_loc;
  cv::minMaxLoc(dist, nullptr, &max_dist, nullptr, &max_loc);
  seg->firing_pin_center_px = max_loc;
  seg->firing_pin_radius_px = max_dist;
  seg->breech_face_outer_radius_px = outer.radius;
  seg->breech_face_inner_radius_px = max_dist;
  seg->firing_pin_found = false;
  return true;
}

StatusOr<RegionMasks> SegmentRaw3d(const Scan& scan, const NormalizeConfig& config) {
  const double seg_px = std::max({config.segmentation_pixel_um, scan.pixel_um_x, scan.pixel_um_y});
  const cv::Mat1f coarse = ResampleNaN(scan.values, scan.pixel_um_x, scan.pixel_um_y, seg_px, 0.5);
  // ResampleNaN scales by exactly pixel / seg_px (the grid size is rounded).
  const GridMap grid{scan.pixel_um_x / seg_px, scan.pixel_um_y / seg_px};
  const cv::Point2d image_center((coarse.cols - 1) / 2.0, (coarse.rows - 1) / 2.0);
  const double half_side = std::min(coarse.cols, coarse.rows) / 2.0;

  // 1. RANSAC plane of the breech face, drawn from the centre of the field
  //    (an operator centres the primer; the case head around it is another
  //    plane that must not win).
  const double sample_radius = std::min(config.primer_radius_min_um / seg_px, 0.9 * half_side);
  const cv::Mat1b sample_disk = DiskMask(coarse.size(), {image_center, sample_radius});
  const cv::Vec3d plane = RansacPlane(coarse, sample_disk, config.ransac_iterations,
                                      config.ransac_inlier_threshold_um, config.ransac_seed);
  const cv::Mat1f resid = SubtractPlane(coarse, plane);

  cv::Mat1b inlier(coarse.size()), deep(coarse.size());
  for (int y = 0; y < coarse.rows; ++y) {
    for (int x = 0; x < coarse.cols; ++x) {
      const float r = resid(y, x);
      inlier(y, x) = std::isfinite(r) && std::abs(r) < config.ransac_select_threshold_um ? 255 : 0;
      // Missing points count as deep: scanners drop out on the steep walls and
      // the bottom of the firing-pin crater.
      deep(y, x) = !std::isfinite(r) || r < -config.firing_pin_depth_um ? 255 : 0;
    }
  }

  // 2. The breech-face region: the largest plane component touching the
  //    sampling disk; its convex hull (an annulus may be open on one side) is the primer disk.
  const int open_px = std::max(1, cvRound(40.0 / seg_px));
  const cv::Mat1b inlier_open = Open(inlier, open_px);
  const Component* best = nullptr;
  std::vector<Component> comps = Components(inlier_open, 16);
  for (const Component& c : comps) {
    if (cv::countNonZero(c.mask & sample_disk) == 0) continue;
    if (best == nullptr || c.area > best->area) best = &c;
  }
  if (best == nullptr) {
    return InvalidArgument("preprocess: no primer found: no breech-face plane in the centre of the scan");
  }
  const cv::Mat1b hull = HullMask(best->mask);
  const Circle primer = CircleOfRegion(hull);
  const double primer_r_um = primer.radius * seg_px;
  if (primer_r_um < config.primer_radius_min_um || primer_r_um > config.primer_radius_max_um) {
    return InvalidArgument(Fmt("preprocess: no primer found: the breech-face plane region has radius %.0f um, "
                               "outside the primer range %.0f..%.0f um",
                               primer_r_um, config.primer_radius_min_um, config.primer_radius_max_um));
  }

  RegionMasks out;
  out.segmentation.primer_center_px = grid.ToInput(primer.center);
  out.segmentation.primer_radius_px = grid.RadiusToInput(primer.radius);
  out.segmentation.breech_face_outer_radius_px = out.segmentation.primer_radius_px * config.primer_shrink;

  // 3. The firing-pin crater: the largest deep component near the primer centre.
  const cv::Mat1b fp_search = DiskMask(coarse.size(), {primer.center,
      config.firing_pin_max_offset_fraction * primer.radius + config.firing_pin_radius_max_um / seg_px});
  const cv::Mat1b deep_near = Open(deep & fp_search & hull, open_px);
  std::optional<Circle> crater;
  std::optional<cv::Mat1b> crater_mask;
  int crater_area = 0;
  for (const Component& c : Components(deep_near, 4)) {
    const cv::Mat1b filled = FillHoles(c.mask);
    const Circle circ = CircleOfRegion(filled);
    const double r_um = circ.radius * seg_px;
    if (cv::norm(circ.center - primer.center) > config.firing_pin_max_offset_fraction * primer.radius) continue;
    if (r_um < config.firing_pin_radius_min_um || r_um > config.firing_pin_radius_max_um) continue;
    if (c.area > crater_area) {
      crater_area = c.area;
      crater = circ;
      crater_mask = filled;
    }
  }

  double exclusion_radius = 0;  // coarse px, around the crater centre
  if (crater) {
    // The aperture ring (shear, flowback) around the crater is off the BF
    // plane too: the off-plane region connected to the crater, capped at the
    // largest FP radius, sets the hole cut out of the breech face.
    const cv::Mat1b cap = DiskMask(coarse.size(), {crater->center, config.firing_pin_radius_max_um / seg_px});
    const cv::Mat1b off_plane = (~inlier_open) & cap & hull;
    double aperture_radius = crater->radius;
    for (const Component& c : Components(off_plane, 1)) {
      if (cv::countNonZero(c.mask & *crater_mask) == 0) continue;
      aperture_radius = std::max(aperture_radius, CircleOfRegion(FillHoles(c.mask)).radius);
    }
    exclusion_radius = aperture_radius * config.firing_pin_dilation;
    out.segmentation.breech_face_inner_radius_px = grid.RadiusToInput(exclusion_radius);
    out.segmentation.firing_pin_found = true;
    out.segmentation.firing_pin_center_px = grid.ToInput(crater->center);
    out.segmentation.firing_pin_radius_px = grid.RadiusToInput(crater->radius);
  } else {
    out.warnings.push_back("no firing-pin impression found: only the breech-face signature is made");
  }

  // 4. Masks at input resolution. The BF keeps, as cmcR does, only the points
  //    within the select band of the plane (rounded primer edge, flowback and
  //    debris fall out), inside the primer disk and outside the FP hole.
  const cv::Vec3d plane_in(plane[0] * grid.sx, plane[1] * grid.sy,
                           plane[2] + plane[0] * (0.5 * grid.sx - 0.5) + plane[1] * (0.5 * grid.sy - 0.5));
  const cv::Mat1f resid_in = SubtractPlane(scan.values, plane_in);
  const cv::Size size = scan.values.size();
  cv::Mat1b bf = DiskMaskInput(size, {out.segmentation.primer_center_px,
                                      out.segmentation.primer_radius_px * config.primer_shrink},
                               scan.pixel_um_x, scan.pixel_um_y);
  for (int y = 0; y < size.height; ++y) {
    for (int x = 0; x < size.width; ++x) {
      const float r = resid_in(y, x);
      if (!(std::isfinite(r) && std::abs(r) < config.ransac_select_threshold_um)) bf(y, x) = 0;
    }
  }
  if (crater) {
    const Circle hole_in = ToInput(grid, {crater->center, exclusion_radius});
    bf &= ~DiskMaskInput(size, hole_in, scan.pixel_um_x, scan.pixel_um_y);
    const cv::Mat1b fp = DiskMaskInput(size, ToInput(grid, *crater), scan.pixel_um_x, scan.pixel_um_y) &
                         FiniteMask(scan.values);
    out.firing_pin = fp;
  }
  out.breech_face = bf;
  return out;
}

StatusOr<RegionMasks> SegmentImage2d(const Scan& scan, const NormalizeConfig& config) {
  const double seg_px = std::max({config.segmentation_pixel_um, scan.pixel_um_x, scan.pixel_um_y});
  const cv::Mat1f coarse = ResampleNaN(scan.values, scan.pixel_um_x, scan.pixel_um_y, seg_px, 0.5);
  // ResampleNaN scales by exactly pixel / seg_px (the grid size is rounded).
  const GridMap grid{scan.pixel_um_x / seg_px, scan.pixel_um_y / seg_px};
  const cv::Point2d image_center((coarse.cols - 1) / 2.0, (coarse.rows - 1) / 2.0);
  const double half_side = std::min(coarse.cols, coarse.rows) / 2.0;
  const cv::Mat1f smooth = GaussianLowPassNaN(coarse, config.segmentation_smoothing_um / seg_px);
  const cv::Mat1b valid = FiniteMask(smooth);

  // 1. Primer: bright after heavy blur (the flat primer face reflects the
  //    ring light; its rounded edge and the case chamfer around it are dark).
  //    Threshold at the median (Tai & Eddy 2018, findPrimer).
  std::vector<float> vals;
  vals.reserve(smooth.total());
  for (int y = 0; y < smooth.rows; ++y)
    for (int x = 0; x < smooth.cols; ++x)
      if (valid(y, x)) vals.push_back(smooth(y, x));
  if (vals.empty()) return InvalidArgument("preprocess: no primer found: the image has no valid pixel");
  std::nth_element(vals.begin(), vals.begin() + vals.size() / 2, vals.end());
  const float median = vals[vals.size() / 2];
  cv::Mat1b bright = (smooth > median) & valid;
  const int open_px = std::max(1, cvRound(60.0 / seg_px));
  bright = Open(bright, open_px);

  std::optional<Circle> primer;
  cv::Mat1b primer_hull;
  double best_score = 0;
  for (const Component& c : Components(bright, 16)) {
    const cv::Mat1b hull = HullMask(c.mask);
    const Circle circ = CircleOfRegion(hull);
    const double r_um = circ.radius * seg_px;
    if (r_um < config.primer_radius_min_um || r_um > config.primer_radius_max_um) continue;
    if (cv::norm(circ.center - image_center) > 0.6 * half_side) continue;
    // Prefer filled, round regions: component area / hull area (the headstamp
    // letters form ragged, hollow regions).
    const double solidity = static_cast<double>(c.area) / std::max(1, cv::countNonZero(hull));
    const double score = solidity * c.area;
    if (score > best_score) {
      best_score = score;
      primer = circ;
      primer_hull = hull;
    }
  }
  if (!primer) {
    return InvalidArgument(Fmt("preprocess: no primer found: no bright round region of radius %.0f..%.0f um "
                               "near the image centre",
                               config.primer_radius_min_um, config.primer_radius_max_um));
  }

  RegionMasks out;
  out.segmentation.primer_center_px = grid.ToInput(primer->center);
  out.segmentation.primer_radius_px = grid.RadiusToInput(primer->radius);
  out.segmentation.breech_face_outer_radius_px = out.segmentation.primer_radius_px * config.primer_shrink;

  // 2. Firing pin, from radial profiles. Under ring light the FP crater is
  //    dark and its rim a sharp circular step to the bright flowback ring;
  //    around that lies the dark aperture ring, then the breech face. For a
  //    candidate centre, the trimmed mean over angles of the brightness at
  //    radius r (robust to a ring that is only partly visible) has its sharpest rise at
  //    the crater rim only when the centre is the crater's centre: we search
  //    the centre that maximizes that rise (coarse-to-fine grid).
  const cv::Mat1f fine = GaussianLowPassNaN(coarse, 1.5);
  const double r_lo = std::max(3.0, config.firing_pin_radius_min_um / seg_px);
  const double r_hi = std::min(config.firing_pin_radius_max_um / seg_px, 0.75 * primer->radius);
  const int n_r = static_cast<int>(primer->radius);
  constexpr int kAngles = 64;
  constexpr int kStep = 2;  // the rise is measured between r - 2 and r + 2 coarse pixels
  std::vector<float> cos_t(kAngles), sin_t(kAngles);
  for (int a = 0; a < kAngles; ++a) {
    cos_t[a] = static_cast<float>(std::cos(2 * std::numbers::pi * a / kAngles));
    sin_t[a] = static_cast<float>(std::sin(2 * std::numbers::pi * a / kAngles));
  }
  // The profile out to max_r (the search needs radii up to r_hi + kStep only).
  auto profile = [&](cv::Point2d c, std::vector<float>* p, int max_r) {
    p->assign(n_r, std::numeric_limits<float>::quiet_NaN());
    std::vector<float> ring;
    ring.reserve(kAngles);
    for (int r = 0; r < std::min(n_r, max_r + 1); ++r) {
      ring.clear();
      for (int a = 0; a < kAngles; ++a) {
        const int x = cvRound(c.x + r * cos_t[a]), y = cvRound(c.y + r * sin_t[a]);
        if (x < 0 || y < 0 || x >= fine.cols || y >= fine.rows) continue;
        if (std::isfinite(fine(y, x))) ring.push_back(fine(y, x));
      }
      if (ring.size() < kAngles / 2) continue;
      // Trimmed mean (middle 60 %): robust to a partly hidden ring like a
      // median, but still sensitive to a slightly wrong centre, so the centre
      // search has a peak rather than a plateau.
      const std::size_t cut = ring.size() / 5;
      std::nth_element(ring.begin(), ring.begin() + cut, ring.end());
      std::nth_element(ring.begin() + cut, ring.end() - cut - 1, ring.end());
      double sum = 0;
      for (std::size_t i = cut; i < ring.size() - cut; ++i) sum += ring[i];
      (*p)[r] = static_cast<float>(sum / (ring.size() - 2 * cut));
    }
  };
  // Best rise of a profile within [r_lo, r_hi]: (rise, radius).
  auto best_rise = [&](const std::vector<float>& p) {
    std::pair<double, int> best{-1e9, 0};
    for (int r = std::max(kStep, static_cast<int>(r_lo)); r <= static_cast<int>(r_hi) && r + kStep < n_r; ++r) {
      const double d = p[r + kStep] - p[r - kStep];
      if (std::isfinite(d) && d > best.first) best = {d, r};
    }
    return best;
  };
  const double max_offset = config.firing_pin_max_offset_fraction * primer->radius;
  std::vector<float> prof;
  cv::Point2d best_c = primer->center;
  double fp_score = -1e9;
  int best_r = 0;
  auto try_centre = [&](cv::Point2d c) {
    if (cv::norm(c - primer->center) > max_offset) return;
    profile(c, &prof, static_cast<int>(r_hi) + kStep + 1);
    const auto [rise, r] = best_rise(prof);
    if (rise > fp_score) {
      fp_score = rise;
      best_r = r;
      best_c = c;
    }
  };
  for (double dy = -max_offset; dy <= max_offset; dy += 3)
    for (double dx = -max_offset; dx <= max_offset; dx += 3) try_centre(primer->center + cv::Point2d(dx, dy));
  const cv::Point2d coarse_best = best_c;
  for (int dy = -2; dy <= 2; ++dy)
    for (int dx = -2; dx <= 2; ++dx) try_centre(coarse_best + cv::Point2d(dx, dy));

  // The rise must be a real edge: a clear share of the primer's brightness spread.
  profile(best_c, &prof, n_r);
  std::vector<float> face;
  for (int r = static_cast<int>(0.8 * primer->radius); r < static_cast<int>(0.95 * primer->radius); ++r)
    if (std::isfinite(prof[r])) face.push_back(prof[r]);
  std::optional<Circle> fp;
  double aperture_r = 0;
  if (!face.empty() && best_r > 0) {
    std::nth_element(face.begin(), face.begin() + face.size() / 2, face.end());
    const double face_level = face[face.size() / 2];
    const double crater_level = prof[std::max(0, best_r - kStep)];
    if (fp_score > config.firing_pin_min_contrast && face_level > crater_level) {
      // The crater rim is where the profile crosses halfway up the rise.
      double rim = best_r;
      const double half = 0.5 * (prof[best_r - kStep] + prof[best_r + kStep]);
      for (int r = best_r - kStep; r <= best_r + kStep; ++r)
        if (prof[r] >= half) { rim = r; break; }
      fp = Circle{best_c, rim};
      // Aperture ring: past the bright flowback, the darkest point before the
      // face; the aperture edge is where the profile climbs back halfway to the face level.
      aperture_r = rim;
      int r_min = -1;
      for (int r = static_cast<int>(rim) + kStep; r < static_cast<int>(0.85 * primer->radius); ++r)
        if (std::isfinite(prof[r]) && (r_min < 0 || prof[r] < prof[r_min])) r_min = r;
      if (r_min > 0 && prof[r_min] < face_level) {
        const double level = 0.5 * (prof[r_min] + face_level);
        for (int r = r_min; r < static_cast<int>(0.85 * primer->radius); ++r)
          if (std::isfinite(prof[r]) && prof[r] >= level) { aperture_r = r; break; }
      }
    }
  }

  const cv::Size size = scan.values.size();
  const cv::Mat1b valid_in = FiniteMask(scan.values);
  cv::Mat1b bf = DiskMaskInput(size, {out.segmentation.primer_center_px,
                                      out.segmentation.primer_radius_px * config.primer_shrink},
                               scan.pixel_um_x, scan.pixel_um_y) & valid_in;
  if (fp) {
    out.segmentation.firing_pin_found = true;
    out.segmentation.firing_pin_center_px = grid.ToInput(fp->center);
    out.segmentation.firing_pin_radius_px = grid.RadiusToInput(fp->radius);
    out.segmentation.breech_face_inner_radius_px = grid.RadiusToInput(aperture_r * config.firing_pin_dilation);
    bf &= ~DiskMaskInput(size, ToInput(grid, {fp->center, aperture_r * config.firing_pin_dilation}),
                         scan.pixel_um_x, scan.pixel_um_y);
    out.firing_pin = DiskMaskInput(size, ToInput(grid, *fp), scan.pixel_um_x, scan.pixel_um_y) & valid_in;
  } else {
    out.warnings.push_back("no firing-pin impression found: only the breech-face signature is made");
  }
  out.breech_face = bf;
  return out;
}

}  // namespace ballistics::preprocess_internal
