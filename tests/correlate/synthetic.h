// Synthetic breech-face-like signatures for the correlate tests: band-limited
// random textures on an annulus with NaN outside, and copies of them turned,
// shifted, noised and partly masked the way a second scan of the same casing
// would be.
#pragma once

#include <cmath>
#include <limits>
#include <random>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "ballistics/surface.h"

namespace ballistics::testing {

// Band-limited Gaussian texture (difference of Gaussians) with unit RMS.
inline cv::Mat1f BandLimitedTexture(int side, unsigned seed, double short_sigma_px = 1.5,
                                    double long_sigma_px = 25.0) {
  cv::Mat1f noise(side, side);
  cv::RNG rng(seed);
  rng.fill(noise, cv::RNG::NORMAL, 0.0, 1.0);
  cv::Mat1f lo, hi;
  cv::GaussianBlur(noise, lo, cv::Size(), short_sigma_px);
  cv::GaussianBlur(noise, hi, cv::Size(), long_sigma_px);
  cv::Mat1f t = lo - hi;
  cv::Scalar mean, sd;
  cv::meanStdDev(t, mean, sd);
  return (t - mean[0]) / sd[0];
}

// NaN outside the annulus inner_frac * half .. outer_frac * half about the centre.
inline void ApplyAnnulus(cv::Mat1f& v, double outer_frac = 0.95, double inner_frac = 0.3) {
  const double cx = (v.cols - 1) / 2.0, cy = (v.rows - 1) / 2.0, half = std::min(v.cols, v.rows) / 2.0;
  for (int y = 0; y < v.rows; ++y) {
    for (int x = 0; x < v.cols; ++x) {
      const double r = std::hypot(x - cx, y - cy);
      if (r > outer_frac * half || r < inner_frac * half) v(y, x) = std::numeric_limits<float>::quiet_NaN();
    }
  }
}

inline Signature MakeSignature(const cv::Mat1f& values, double pixel_um = 6.25,
                               SignatureKind kind = SignatureKind::kBreechFace) {
  Signature s;
  s.kind = kind;
  s.modality = Modality::kTopography3d;
  s.pixel_um = pixel_um;
  s.values = values.clone();
  return s;
}

// The reference turned by theta_deg (OpenCV convention) about its centre and
// shifted by (sx, sy) pixels, on a canvas grown by `pad` pixels on each side
// (so the expected transform is exactly theta, shift * pixel); NaN mask turned
// with the values; noise of rms `noise` added; a disc of radius
// `hole_frac` * side blanked at a random place (partial mask).
inline cv::Mat1f TurnShift(const cv::Mat1f& ref, double theta_deg, double sx, double sy, int pad, double noise,
                           double hole_frac, unsigned seed) {
  cv::Mat1f v(ref.size()), m(ref.size());
  for (int y = 0; y < ref.rows; ++y) {
    for (int x = 0; x < ref.cols; ++x) {
      const bool ok = std::isfinite(ref(y, x));
      v(y, x) = ok ? ref(y, x) : 0.0f;
      m(y, x) = ok ? 1.0f : 0.0f;
    }
  }
  const cv::Size out(ref.cols + 2 * pad, ref.rows + 2 * pad);
  const cv::Point2d c((ref.cols - 1) / 2.0, (ref.rows - 1) / 2.0);
  cv::Mat M = cv::getRotationMatrix2D(c, theta_deg, 1.0);
  M.at<double>(0, 2) += pad + sx;
  M.at<double>(1, 2) += pad + sy;
  cv::Mat1f tv, tm;
  cv::warpAffine(v, tv, M, out, cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
  cv::warpAffine(m, tm, M, out, cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, static_cast<float>(noise));
  std::uniform_real_distribution<double> ud(0.3, 0.7);
  const double hx = ud(gen) * out.width, hy = ud(gen) * out.height, hr = hole_frac * ref.cols;
  cv::Mat1f res(out);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      const bool ok = tm(y, x) >= 0.999f && std::hypot(x - hx, y - hy) > hr;
      res(y, x) = ok ? tv(y, x) + nd(gen) : std::numeric_limits<float>::quiet_NaN();
    }
  }
  return res;
}

}  // namespace ballistics::testing
