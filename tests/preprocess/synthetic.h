// Synthetic casings for the preprocess tests: known geometry, so segmentation
// and filters can be checked against the truth.
#pragma once

#include <cmath>
#include <limits>
#include <numbers>
#include <random>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "ballistics/surface.h"

namespace ballistics::testing {

inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Band-limited random "tool marks": white noise smoothed with a Gaussian of
// sigma_px, scaled to the given RMS. Deterministic for a seed.
inline cv::Mat1f RandomMarks(cv::Size size, double sigma_px, double rms, unsigned seed) {
  cv::Mat1f noise(size);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  for (int y = 0; y < size.height; ++y)
    for (int x = 0; x < size.width; ++x) noise(y, x) = n(rng);
  cv::Mat1f smooth;
  cv::GaussianBlur(noise, smooth, cv::Size(0, 0), sigma_px, sigma_px, cv::BORDER_REFLECT);
  cv::Scalar mean, sd;
  cv::meanStdDev(smooth, mean, sd);
  smooth = (smooth - mean[0]) * (rms / sd[0]);
  return smooth;
}

// A Fadul-like pre-cropped annulus: marks inside R_out, NaN outside and inside R_in.
inline Scan CroppedAnnulusScan(int side, double pixel_um, double r_out_px, double r_in_px, unsigned seed = 1) {
  Scan s;
  s.modality = Modality::kTopography3d;
  s.pixel_um_x = s.pixel_um_y = pixel_um;
  s.values = RandomMarks(cv::Size(side, side), 3.0, 1.0, seed);
  const double c = (side - 1) / 2.0;
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x) {
      const double r = std::hypot(x - c, y - c);
      if (r > r_out_px || r < r_in_px) s.values(y, x) = kNaN;
    }
  return s;
}

// Geometry of a synthetic raw 3D casing scan, in µm and pixels.
struct RawCasing3d {
  Scan scan;
  cv::Point2d primer_center_px;
  double primer_radius_px = 0;     // radius of the flat breech-face contact region
  cv::Point2d fp_center_px;
  double fp_radius_px = 0;
};

// A raw scan of a whole primer: case head plane outside a groove, a tilted flat
// primer face carrying marks, a rounded primer edge, and a spherical FP crater
// off the primer centre.
inline RawCasing3d RawCasingScan3d(double pixel_um = 7.5, unsigned seed = 3) {
  RawCasing3d out;
  const int side = static_cast<int>(5600 / pixel_um);
  const cv::Point2d pc((side - 1) / 2.0 + 6, (side - 1) / 2.0 - 4);
  const double flat_r = 1600 / pixel_um, edge_r = 2200 / pixel_um, groove_r = 2450 / pixel_um;
  const cv::Point2d fc = pc + cv::Point2d(200 / pixel_um, -120 / pixel_um);
  const double fp_r = 550 / pixel_um;
  const cv::Mat1f marks = RandomMarks(cv::Size(side, side), 2.0, 1.0, seed);
  Scan& s = out.scan;
  s.modality = Modality::kTopography3d;
  s.pixel_um_x = s.pixel_um_y = pixel_um;
  s.values.create(side, side);
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x) {
      const double r = std::hypot(x - pc.x, y - pc.y);
      const double tilt = 0.02 * (x - pc.x) * pixel_um - 0.01 * (y - pc.y) * pixel_um;  // µm
      double z;
      if (r < flat_r) {
        z = tilt + marks(y, x);
      } else if (r < edge_r) {  // primer edge: a chamfer falling 300 µm off the plane
        const double t = (r - flat_r) / (edge_r - flat_r);
        z = tilt - 300 * t + marks(y, x);
      } else if (r < groove_r) {
        z = -230;
      } else {
        z = 150 + 0.5 * marks(y, x);  // case head
      }
      const double rf = std::hypot(x - fc.x, y - fc.y);
      if (rf < fp_r) {  // spherical crater, 120 µm deep, with its own marks
        const double u = rf / fp_r;
        z = tilt - 120 * std::sqrt(1 - u * u) + marks(y, x);
      }
      s.values(y, x) = static_cast<float>(z);
    }
  out.primer_center_px = pc;
  out.primer_radius_px = flat_r;
  out.fp_center_px = fc;
  out.fp_radius_px = fp_r;
  return out;
}

// A 2D ring-light picture: textured headstamp background, dark primer edge
// ring, bright textured primer face, dark FP aperture ring and FP crater.
inline RawCasing3d RawCasingImage2d(double pixel_um = 5.0, unsigned seed = 5) {
  RawCasing3d out;
  const int w = static_cast<int>(8000 / pixel_um), h = static_cast<int>(6000 / pixel_um);
  const cv::Point2d pc((w - 1) / 2.0 - 10, (h - 1) / 2.0 + 8);
  const double face_r = 1800 / pixel_um, ring_r = 2600 / pixel_um;
  const cv::Point2d fc = pc + cv::Point2d(-150 / pixel_um, 100 / pixel_um);
  const double ap_r = 850 / pixel_um, crater_r = 600 / pixel_um;
  const cv::Mat1f marks = RandomMarks(cv::Size(w, h), 1.5, 0.08, seed);
  Scan& s = out.scan;
  s.modality = Modality::kImage2d;
  s.format = ScanFormat::kPng;
  s.pixel_um_x = s.pixel_um_y = pixel_um;
  s.values.create(h, w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double r = std::hypot(x - pc.x, y - pc.y);
      const double rf = std::hypot(x - fc.x, y - fc.y);
      double v;
      if (rf < crater_r) v = 0.25;
      else if (rf < ap_r) v = 0.08;
      else if (r < face_r) v = 0.7;
      else if (r < ring_r) v = 0.06;
      else v = 0.35;
      v += marks(y, x);
      s.values(y, x) = static_cast<float>(std::clamp(v, 0.0, 1.0));
    }
  out.primer_center_px = pc;
  out.primer_radius_px = face_r;
  out.fp_center_px = fc;
  out.fp_radius_px = ap_r;
  return out;
}

}  // namespace ballistics::testing
