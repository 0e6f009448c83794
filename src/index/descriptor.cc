// Coarse descriptor: polar unwrap about the signature centre, angular FFT per
// ring, low angular frequencies kept with their phase (see index.h and
// docs/search.md for the design and the measurements behind the defaults).
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "ballistics/index.h"
#include "ballistics/preprocess.h"
#include "internal.h"

namespace ballistics {
namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

bool IsPowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }

// Centre of the bounding box of valid points, in pixels: the starting point
// of RimCentre and the fallback when the rim fit is not possible.
bool BoxCentre(const cv::Mat1f& v, cv::Point2d* centre) {
  int r0 = v.rows, r1 = -1, c0 = v.cols, c1 = -1;
  for (int r = 0; r < v.rows; ++r) {
    const float* p = v[r];
    for (int c = 0; c < v.cols; ++c) {
      if (std::isfinite(p[c])) {
        r0 = std::min(r0, r);
        r1 = std::max(r1, r);
        c0 = std::min(c0, c);
        c1 = std::max(c1, c);
      }
    }
  }
  if (r1 < 0) return false;
  *centre = cv::Point2d(0.5 * (c0 + c1), 0.5 * (r0 + r1));
  return true;
}

// Valid pixels with an invalid (or outside) 4-neighbour: the rims of the valid region.
std::vector<cv::Point2d> BoundaryPoints(const cv::Mat1f& v) {
  std::vector<cv::Point2d> pts;
  auto valid = [&](int r, int c) { return r >= 0 && c >= 0 && r < v.rows && c < v.cols && std::isfinite(v(r, c)); };
  for (int r = 0; r < v.rows; ++r) {
    for (int c = 0; c < v.cols; ++c) {
      if (!valid(r, c)) continue;
      if (!valid(r - 1, c) || !valid(r + 1, c) || !valid(r, c - 1) || !valid(r, c + 1)) pts.emplace_back(c, r);
    }
  }
  return pts;
}

// Centre of the rings from the rims of the valid region: a breech-face
// signature is an annulus (outer edge of the flat primer, inner edge at the
// firing-pin aperture), a firing-pin signature a disk. The boundary pixels of
// the valid mask are split into an inner and an outer class by their distance
// from the current centre and fitted by two concentric circles sharing one
// centre, linear in (cx, cy, e_in, e_out) from |p|^2 = 2 c.p + e (the Kasa
// algebraic circle fit, Kasa 1976). Boundary points far from their circle
// (dropout blobs, the straight cut of a partial "crescent" scan) are trimmed
// and the fit repeated. With inner_only the centre comes from the inner rim
// alone: the aperture is fixed in the gun, while the primer (outer rim) has
// its own play from shot to shot, so the inner rim puts the marks of two
// shots in the same place. Measured on the Fadul mates (docs/search.md):
// mean KM score 0.36 with the bounding-box centre, 0.47 with the inner rim.
cv::Point2d RimCentre(const cv::Mat1f& v, cv::Point2d start, bool inner_only) {
  const std::vector<cv::Point2d> pts = BoundaryPoints(v);
  if (pts.size() < 12) return start;
  cv::Point2d centre = start;
  std::vector<double> dist(pts.size());
  std::vector<char> keep(pts.size(), 1);
  for (int iter = 0; iter < 6; ++iter) {
    for (std::size_t i = 0; i < pts.size(); ++i) dist[i] = std::hypot(pts[i].x - centre.x, pts[i].y - centre.y);
    std::vector<double> sorted = dist;
    std::sort(sorted.begin(), sorted.end());
    const double lo = sorted[sorted.size() / 20], hi = sorted[sorted.size() * 19 / 20];
    const bool two_rims = lo < 0.75 * hi;  // an annulus; else a disk (one rim)
    const double split = 0.5 * (lo + hi);
    // Normal equations of [2x 2y in out] . [cx cy e_in e_out] = x^2 + y^2.
    cv::Matx44d a = cv::Matx44d::zeros();
    cv::Vec4d b(0, 0, 0, 0);
    int used = 0;
    for (std::size_t i = 0; i < pts.size(); ++i) {
      if (!keep[i]) continue;
      const bool inner = two_rims && dist[i] < split;
      if (inner_only && two_rims && !inner) continue;
      const cv::Vec4d row(2 * pts[i].x, 2 * pts[i].y, inner ? 1.0 : 0.0, inner ? 0.0 : 1.0);
      const double rhs = pts[i].x * pts[i].x + pts[i].y * pts[i].y;
      a += row * row.t();
      b += row * rhs;
      ++used;
    }
    if (used < 12) break;
    if (!two_rims) a(2, 2) += 1.0;  // no inner class: keep the system regular
    if (inner_only && two_rims) a(3, 3) += 1.0;  // outer rim not used
    cv::Vec4d x;
    if (!cv::solve(a, b, x, cv::DECOMP_CHOLESKY)) break;
    const cv::Point2d next(x[0], x[1]);
    const double r_in = std::sqrt(std::max(0.0, x[2] + next.dot(next)));
    const double r_out = std::sqrt(std::max(0.0, x[3] + next.dot(next)));
    // Trim: keep points within 3 median absolute residuals (at least 1.5 px) of their rim.
    std::vector<double> res(pts.size());
    std::vector<double> all;
    for (std::size_t i = 0; i < pts.size(); ++i) {
      const double d = std::hypot(pts[i].x - next.x, pts[i].y - next.y);
      const bool inner = two_rims && dist[i] < split;
      res[i] = std::abs(d - (inner ? r_in : r_out));
      all.push_back(res[i]);
    }
    std::nth_element(all.begin(), all.begin() + all.size() / 2, all.end());
    const double tol = std::max(1.5, 3.0 * 1.4826 * all[all.size() / 2]);
    for (std::size_t i = 0; i < pts.size(); ++i) keep[i] = res[i] <= tol;
    const bool converged = std::hypot(next.x - centre.x, next.y - centre.y) < 0.05;
    centre = next;
    if (converged) break;
  }
  // A fit that wandered off the signature is not trusted.
  if (!(centre.x >= 0 && centre.y >= 0 && centre.x < v.cols && centre.y < v.rows)) return start;
  return centre;
}

// Least-squares circle through points (Kasa 1976, linear in cx, cy, c).
bool KasaCircle(const std::vector<cv::Point2d>& pts, cv::Point2d* centre, double* radius) {
  if (pts.size() < 3) return false;
  cv::Matx33d a = cv::Matx33d::zeros();
  cv::Vec3d b(0, 0, 0);
  for (const cv::Point2d& p : pts) {
    const cv::Vec3d row(p.x, p.y, 1.0);
    a += row * row.t();
    b += p.dot(p) * row;
  }
  cv::Vec3d x;
  if (!cv::solve(a, b, x, cv::DECOMP_CHOLESKY)) return false;
  *centre = cv::Point2d(x[0] / 2, x[1] / 2);
  const double r2 = x[2] + centre->dot(*centre);
  if (!(r2 > 0)) return false;
  *radius = std::sqrt(r2);
  return true;
}

// Circle through three points; false when they are (nearly) collinear.
bool Circumcircle(cv::Point2d a, cv::Point2d b, cv::Point2d c, cv::Point2d* centre, double* radius) {
  const double d = 2 * (a.x * (b.y - c.y) + b.x * (c.y - a.y) + c.x * (a.y - b.y));
  if (std::abs(d) < 1e-6) return false;
  const double aa = a.dot(a), bb = b.dot(b), cc = c.dot(c);
  *centre = cv::Point2d((aa * (b.y - c.y) + bb * (c.y - a.y) + cc * (a.y - b.y)) / d,
                        (aa * (c.x - b.x) + bb * (a.x - c.x) + cc * (b.x - a.x)) / d);
  *radius = std::hypot(a.x - centre->x, a.y - centre->y);
  return true;
}

// Centre of the firing-pin aperture of a breech-face annulus: a RANSAC circle
// (Fischler & Bolles 1981, MSAC scoring of Torr & Zisserman 2000) through the
// inner rim, refined by a Kasa fit of its inliers.
//
// Why RANSAC and not a least-squares fit of the whole inner rim: the inner rim
// is where somebody cut the firing-pin region out, and only part of it is the
// aperture circle. A lab mask drawn on a raw scan keeps flowback and shear
// bulging into the hole over a sector (dfsc/K013sA1, K013sA2-2); a CSAFE
// processed file of the same casing has a clean, wider circle about the same
// axis. A least-squares fit, even trimmed, is pulled towards the bulge (the
// raw and processed files of one casing came out 63-71 µm apart, beyond the
// query's ±40 µm translation grid); the circle that the largest share of the
// rim agrees with is the same in both (7-8 µm apart, registered by CMC). On
// the 63 Fadul mate pairs (registered by CMC) the aperture centres agree
// within 27 µm (median) and 91 µm (max), against 43 and 149 µm for the
// least-squares fit.
// Returns false when the region is not an annulus or no circle is supported.
bool ApertureCentre(const std::vector<cv::Point2d>& pts, cv::Point2d start, cv::Point2d* centre) {
  if (pts.size() < 24) return false;
  std::vector<double> dist(pts.size());
  for (std::size_t i = 0; i < pts.size(); ++i) dist[i] = std::hypot(pts[i].x - start.x, pts[i].y - start.y);
  std::vector<double> sorted = dist;
  std::sort(sorted.begin(), sorted.end());
  const double lo = sorted[sorted.size() / 20], hi = sorted[sorted.size() * 19 / 20];
  if (!(lo < 0.75 * hi)) return false;  // a disk: no aperture
  const double split = 0.5 * (lo + hi);
  // Inner rim points in order of their angle about the start, so that the
  // three points of a hypothesis can be taken a third of the rim apart
  // (well-conditioned circles; an open crescent's arc is spread over too).
  std::vector<std::pair<double, cv::Point2d>> by_angle;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (dist[i] < split) by_angle.emplace_back(std::atan2(pts[i].y - start.y, pts[i].x - start.x), pts[i]);
  }
  const int n = static_cast<int>(by_angle.size());
  if (n < 24) return false;
  std::sort(by_angle.begin(), by_angle.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<cv::Point2d> inner(n);
  for (int i = 0; i < n; ++i) inner[i] = by_angle[i].second;

  // Inlier band: one coarse pixel (the rim is located on this grid).
  constexpr double kTol = 1.0;
  constexpr int kHypotheses = 256;
  std::uint64_t state = 0x9E3779B97F4A7C15ull;  // fixed seed: the same signature gives the same centre
  auto next = [&state](int m) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int>((state >> 33) % static_cast<std::uint64_t>(m));
  };
  double best_cost = std::numeric_limits<double>::infinity();
  cv::Point2d best_c;
  double best_r = 0;
  const int third = n / 3, jitter = std::max(1, n / 6);
  for (int h = 0; h < kHypotheses; ++h) {
    const int a = next(n);
    const int b = (a + third + next(jitter) - jitter / 2 + n) % n;
    const int c = (a + 2 * third + next(jitter) - jitter / 2 + n) % n;
    cv::Point2d cc;
    double r;
    if (!Circumcircle(inner[a], inner[b], inner[c], &cc, &r)) continue;
    if (r < 0.5 * lo || r > hi) continue;  // the aperture lies inside the outer rim
    double cost = 0;
    for (const cv::Point2d& p : inner) {
      const double e = std::hypot(p.x - cc.x, p.y - cc.y) - r;
      cost += std::min(e * e, kTol * kTol);
    }
    if (cost < best_cost) {
      best_cost = cost;
      best_c = cc;
      best_r = r;
    }
  }
  if (!std::isfinite(best_cost)) return false;
  // Refine on the inliers (twice: the refined circle may gain or lose a few).
  std::vector<cv::Point2d> in;
  for (int iter = 0; iter < 2; ++iter) {
    in.clear();
    for (const cv::Point2d& p : inner) {
      if (std::abs(std::hypot(p.x - best_c.x, p.y - best_c.y) - best_r) <= kTol) in.push_back(p);
    }
    cv::Point2d c;
    double r;
    if (in.size() < 12 || !KasaCircle(in, &c, &r)) break;
    best_c = c;
    best_r = r;
  }
  // At least a third of the inner rim must lie on the circle.
  if (static_cast<int>(in.size()) < std::max(12, n / 3)) return false;
  *centre = best_c;
  return true;
}

// Bilinear sample; NaN when any of the four neighbours is invalid or outside.
float SampleBilinear(const cv::Mat1f& v, double x, double y) {
  const int x0 = static_cast<int>(std::floor(x));
  const int y0 = static_cast<int>(std::floor(y));
  if (x0 < 0 || y0 < 0 || x0 + 1 >= v.cols || y0 + 1 >= v.rows) return NAN;
  const double fx = x - x0, fy = y - y0;
  const float a = v(y0, x0), b = v(y0, x0 + 1), c = v(y0 + 1, x0), d = v(y0 + 1, x0 + 1);
  if (!std::isfinite(a) || !std::isfinite(b) || !std::isfinite(c) || !std::isfinite(d)) return NAN;
  return static_cast<float>((1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d));
}

// Edge apodization: every valid point is weighted by min(1, d / taper_px),
// d = its distance to the nearest invalid point (or the grid border), so that
// the values fade to 0 (the band-passed mean) towards the edges of the valid
// region. Why: the outermost few hundred µm of a breech-face signature carry
// much of its low-pass energy -- the rolled primer edge, flowback at the
// aperture, band-pass edge effects -- and which of it is there depends on who
// cut the scan (a lab mask, CSAFE's processed crop, our raw segmentation), not
// on the gun. A window that tapers the data before a Fourier transform is the
// standard cure for edge leakage (Harris 1978); here it tapers along the valid
// region's boundary. Measured (docs/search.md, "The centre", index_bench
// recall): with a 250 µm taper (and the then 250 µm low-pass) the worst
// coarse rank of a Fadul mate among 100,053 signatures fell from 16 to 6 (same
// centre), and a raw DFSC file and its processed version moved from ranks 33
// and 123 to 7 and 2. The taper is one low-pass cutoff (DescriptorConfig).
void TaperEdges(cv::Mat1f* coarse, double taper_px) {
  cv::Mat1b valid(coarse->rows + 2, coarse->cols + 2, std::uint8_t{0});
  for (int r = 0; r < coarse->rows; ++r)
    for (int c = 0; c < coarse->cols; ++c) valid(r + 1, c + 1) = std::isfinite((*coarse)(r, c)) ? 255 : 0;
  cv::Mat1f dist;
  cv::distanceTransform(valid, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE);
  for (int r = 0; r < coarse->rows; ++r) {
    float* row = (*coarse)[r];
    for (int c = 0; c < coarse->cols; ++c) {
      // distanceTransform measures centre to centre: a pixel next to an
      // invalid one is at 1, i.e. half a pixel from the edge.
      const double d = dist(r + 1, c + 1) - 0.5;
      if (d < taper_px) row[c] *= static_cast<float>(std::max(0.0, d / taper_px));
    }
  }
}

// 1. Coarse grid (area resampling keeps the validity support) and a NaN-aware
//    Gaussian low-pass (ISO 16610-61) so that the ring samples do not alias
//    the fine marks the CMC stage looks at; the centre of the rings on it:
//    the firing-pin aperture of an annulus (ApertureCentre; the least-squares
//    inner rim when no circle is supported), the outer rim of a disk.
Status CoarseGridAndCentre(const Signature& signature, const DescriptorConfig& config, cv::Mat1f* coarse,
                           double* px, cv::Point2d* centre) {
  *coarse = signature.values;
  *px = signature.pixel_um;
  if (config.coarse_pixel_um > *px * 1.01) {
    *coarse = ResampleNaN(signature.values, *px, *px, config.coarse_pixel_um, 0.5);
    *px = config.coarse_pixel_um;
  }
  if (config.lowpass_um > 0) {
    const double sigma = GaussianSigmaPx(config.lowpass_um, *px);
    if (sigma > 0.3) *coarse = GaussianLowPassNaN(*coarse, sigma);
  }
  if (!BoxCentre(*coarse, centre)) return InvalidArgument("index: descriptor: signature has no valid point");
  if (config.fit_rim_centre) {
    cv::Point2d aperture;
    if (ApertureCentre(BoundaryPoints(*coarse), *centre, &aperture) && aperture.x >= 0 && aperture.y >= 0 &&
        aperture.x < coarse->cols && aperture.y < coarse->rows) {
      *centre = aperture;
    } else {
      *centre = RimCentre(*coarse, *centre, /*inner_only=*/true);
    }
  }
  return Status::Ok();
}

}  // namespace

DescriptorConfig DescriptorConfig::FiringPin() {
  // FP impressions are 0.5-1.6 mm across (NormalizeConfig firing_pin_radius
  // range): rings from 100 µm out to ~1 mm at a finer grid.
  DescriptorConfig c;
  c.coarse_pixel_um = 12.5;
  c.lowpass_um = 125.0;
  c.edge_taper_um = 125.0;  // one low-pass cutoff, as for breech faces
  c.ring_min_um = 100.0;
  c.ring_step_um = 40.0;
  c.rings = 24;
  c.angular_samples = 256;
  c.frequencies = 32;
  return c;
}

Status DescriptorConfig::Validate() const {
  auto bad = [](const std::string& field, double v, const std::string& why) {
    return InvalidArgument("index: descriptor config: " + field + "=" + Num(v) + " " + why);
  };
  if (!(coarse_pixel_um > 0) || !std::isfinite(coarse_pixel_um)) return bad("coarse_pixel_um", coarse_pixel_um, "must be > 0");
  if (!(lowpass_um >= 0) || !std::isfinite(lowpass_um)) return bad("lowpass_um", lowpass_um, "must be >= 0");
  if (!(edge_taper_um >= 0) || !std::isfinite(edge_taper_um)) return bad("edge_taper_um", edge_taper_um, "must be >= 0");
  if (!(ring_min_um >= 0) || !std::isfinite(ring_min_um)) return bad("ring_min_um", ring_min_um, "must be >= 0");
  if (!(ring_step_um > 0) || !std::isfinite(ring_step_um)) return bad("ring_step_um", ring_step_um, "must be > 0");
  if (rings < 1 || rings > 256) return bad("rings", rings, "must be in [1, 256]");
  if (!IsPowerOfTwo(angular_samples) || angular_samples < 16 || angular_samples > 4096)
    return bad("angular_samples", angular_samples, "must be a power of two in [16, 4096]");
  if (frequencies < 1 || frequencies >= angular_samples / 2)
    return bad("frequencies", frequencies, "must be in [1, angular_samples/2)");
  if (frequencies > index_internal::kMaxFrequencies)
    return bad("frequencies", frequencies, "must be <= " + std::to_string(index_internal::kMaxFrequencies));
  if (!(min_ring_valid_fraction >= 0 && min_ring_valid_fraction <= 1))
    return bad("min_ring_valid_fraction", min_ring_valid_fraction, "must be in [0, 1]");
  if (min_valid_rings < 1 || min_valid_rings > rings)
    return bad("min_valid_rings", min_valid_rings, "must be in [1, rings]");
  return Status::Ok();
}

StatusOr<CoarseDescriptor> ComputeDescriptor(const Signature& signature) {
  return ComputeDescriptor(signature, signature.kind == SignatureKind::kFiringPin ? DescriptorConfig::FiringPin()
                                                                                 : DescriptorConfig{});
}

StatusOr<CoarseDescriptor> ComputeDescriptor(const Signature& signature, const DescriptorConfig& config) {
  BALLISTICS_RETURN_IF_ERROR(config.Validate());
  if (signature.values.empty()) return InvalidArgument("index: descriptor: empty signature");
  if (!(signature.pixel_um > 0) || !std::isfinite(signature.pixel_um))
    return InvalidArgument("index: descriptor: pixel_um=" + Num(signature.pixel_um) + " is not positive");
  try {
    cv::Mat1f coarse;
    double px = 0;
    cv::Point2d centre;
    BALLISTICS_RETURN_IF_ERROR(CoarseGridAndCentre(signature, config, &coarse, &px, &centre));
    centre += cv::Point2d(config.centre_offset_x_um / px, config.centre_offset_y_um / px);
    if (config.edge_taper_um > 0) TaperEdges(&coarse, config.edge_taper_um / px);

    // 2. Polar unwrap. Each ring is weighted by sqrt(radius) so that the
    //    inner product of two descriptors approximates the area integral of
    //    the product of the two surfaces (a ring at radius r covers 2 pi r dr).
    const int n = config.angular_samples;
    cv::Mat1f polar(config.rings, n, 0.0f);
    std::vector<bool> ring_ok(config.rings, false);
    int valid_rings = 0;
    for (int i = 0; i < config.rings; ++i) {
      const double r_um = config.ring_min_um + i * config.ring_step_um;
      const double r_px = r_um / px;
      int valid = 0;
      double sum = 0;
      float* row = polar[i];
      for (int j = 0; j < n; ++j) {
        const double a = 2.0 * M_PI * j / n;
        const float s = SampleBilinear(coarse, centre.x + r_px * std::cos(a), centre.y + r_px * std::sin(a));
        if (std::isfinite(s)) {
          row[j] = s;
          sum += s;
          ++valid;
        } else {
          row[j] = NAN;
        }
      }
      const double share = static_cast<double>(valid) / n;
      if (valid == 0 || share < config.min_ring_valid_fraction) {
        std::fill(row, row + n, 0.0f);
        continue;
      }
      ring_ok[i] = true;
      ++valid_rings;
      // The ring's own mean is removed (a residual tilt of the primer shows
      // up as a ring offset, not as a mark); invalid points become 0.
      const float mean = static_cast<float>(sum / valid);
      const float w = static_cast<float>(std::sqrt(r_um / 1000.0));
      for (int j = 0; j < n; ++j) row[j] = std::isfinite(row[j]) ? (row[j] - mean) * w : 0.0f;
    }
    if (valid_rings < config.min_valid_rings) {
      return InvalidArgument("index: descriptor: only " + std::to_string(valid_rings) + " of " +
                             std::to_string(config.rings) + " rings have >= " +
                             Num(config.min_ring_valid_fraction * 100) + " % valid points (need " +
                             std::to_string(config.min_valid_rings) + ")");
    }

    // 3. Angular FFT per ring; keep k = 1..F.
    cv::Mat spectrum;
    cv::dft(polar, spectrum, cv::DFT_ROWS | cv::DFT_COMPLEX_OUTPUT);
    const int f = config.frequencies;
    std::vector<float> v(static_cast<std::size_t>(config.rings) * f * 2);
    double energy = 0;
    for (int i = 0; i < config.rings; ++i) {
      const cv::Vec2f* s = spectrum.ptr<cv::Vec2f>(i);
      for (int k = 1; k <= f; ++k) {
        const std::size_t o = (static_cast<std::size_t>(i) * f + (k - 1)) * 2;
        v[o] = s[k][0];
        v[o + 1] = s[k][1];
        energy += double(s[k][0]) * s[k][0] + double(s[k][1]) * s[k][1];
      }
    }
    if (!(energy > 0)) return InvalidArgument("index: descriptor: signature is flat on every ring (no marks)");

    // 4. Unit norm, then int8 with one scale per descriptor.
    const double inv = 1.0 / std::sqrt(energy);
    float max_abs = 0;
    for (float& x : v) {
      x = static_cast<float>(x * inv);
      max_abs = std::max(max_abs, std::abs(x));
    }
    CoarseDescriptor d;
    d.kind = signature.kind;
    d.rings = config.rings;
    d.frequencies = f;
    d.valid_rings = valid_rings;
    d.scale = max_abs / 127.0f;
    d.coeffs.resize(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      d.coeffs[i] = static_cast<std::int8_t>(std::lround(v[i] / d.scale));
    }
    // Re-normalize the quantized vector so that a descriptor scores exactly
    // 1 against itself.
    double qe = 0;
    for (std::int8_t c : d.coeffs) qe += double(c) * c;
    d.scale = static_cast<float>(1.0 / std::sqrt(qe));
    return d;
  } catch (const cv::Exception& e) {
    return Internal(std::string("index: descriptor: OpenCV: ") + e.what());
  }
}

StatusOr<cv::Point2d> DescriptorCentreUm(const Signature& signature, const DescriptorConfig& config) {
  BALLISTICS_RETURN_IF_ERROR(config.Validate());
  if (signature.values.empty()) return InvalidArgument("index: descriptor: empty signature");
  if (!(signature.pixel_um > 0) || !std::isfinite(signature.pixel_um))
    return InvalidArgument("index: descriptor: pixel_um=" + Num(signature.pixel_um) + " is not positive");
  try {
    cv::Mat1f coarse;
    double px = 0;
    cv::Point2d centre;
    BALLISTICS_RETURN_IF_ERROR(CoarseGridAndCentre(signature, config, &coarse, &px, &centre));
    // Coarse pixel centres sit at (i + 0.5) coarse pixels of the signature's
    // extent (ResampleNaN scales by the exact factor).
    const double sx = signature.pixel_um * signature.values.cols / coarse.cols;
    const double sy = signature.pixel_um * signature.values.rows / coarse.rows;
    return cv::Point2d((centre.x + 0.5) * sx - 0.5 * signature.pixel_um * signature.values.cols,
                       (centre.y + 0.5) * sy - 0.5 * signature.pixel_um * signature.values.rows);
  } catch (const cv::Exception& e) {
    return Internal(std::string("index: descriptor: OpenCV: ") + e.what());
  }
}

float DescriptorSimilarity(const CoarseDescriptor& q, const CoarseDescriptor& c, double* best_shift_deg) {
  if (q.rings != c.rings || q.frequencies != c.frequencies || q.kind != c.kind ||
      q.coeffs.size() != c.coeffs.size() || q.coeffs.empty()) {
    return -2.0f;
  }
  // The scan's own arithmetic (exact int32 cross-spectrum, lane-parallel
  // inverse DFT) with the candidate in lane 0 of a block, so that a pair
  // scores here exactly what the index scan gives it.
  const int f = q.frequencies;
  constexpr int L = index_internal::kLanes;
  std::vector<std::int8_t> block(c.coeffs.size() * L, 0);
  for (int r = 0; r < c.rings; ++r) {
    for (int k = 0; k < f; ++k) {
      const std::size_t j = static_cast<std::size_t>(r) * f + k;
      const std::size_t pos = index_internal::BlockCoeff(r, k, c.rings);
      block[pos * L * 2] = c.coeffs[2 * j];
      block[pos * L * 2 + 1] = c.coeffs[2 * j + 1];
    }
  }
  const index_internal::Isa isa = index_internal::DetectIsa();
  const index_internal::PackedQueries packed = index_internal::PackQueries(std::span<const CoarseDescriptor>(&q, 1));
  std::vector<std::int32_t> xre(static_cast<std::size_t>(f) * L), xim(xre.size());
  index_internal::BlockCrossSpectra(isa, block.data(), packed, q.rings, f, xre.data(), xim.data());
  index_internal::LaneScorer scorer(f, isa);
  float peak[L], shift[L];
  scorer.Run(xre.data(), xim.data(), peak, shift);
  if (best_shift_deg != nullptr) *best_shift_deg = -360.0 * shift[0] / scorer.length();
  return peak[0] * q.scale * c.scale;
}

}  // namespace ballistics
