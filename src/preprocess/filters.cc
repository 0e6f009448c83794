// NaN-aware building blocks: Gaussian filters by normalized convolution,
// robust plane levelling, resampling with a validity mask.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include <Eigen/Dense>
#include <opencv2/imgproc.hpp>

#include "ballistics/preprocess.h"
#include "internal.h"

namespace ballistics {
namespace {

using preprocess_internal::FiniteMask;

// Splits values into (values * w, w) with w = 1 at finite points, 0 elsewhere.
void SplitWeighted(const cv::Mat1f& values, cv::Mat1f* weighted, cv::Mat1f* weights) {
  weighted->create(values.size());
  weights->create(values.size());
  for (int y = 0; y < values.rows; ++y) {
    const float* v = values[y];
    float* vw = (*weighted)[y];
    float* w = (*weights)[y];
    for (int x = 0; x < values.cols; ++x) {
      const bool ok = std::isfinite(v[x]);
      vw[x] = ok ? v[x] : 0.f;
      w[x] = ok ? 1.f : 0.f;
    }
  }
}

// Direct separable Gaussian, zero outside the image (= invalid there).
void BlurDirect(const cv::Mat1f& src, cv::Mat1f* dst, double sigma_px) {
  const int half = std::max(1, static_cast<int>(std::ceil(4.0 * sigma_px)));
  const cv::Mat kernel = cv::getGaussianKernel(2 * half + 1, sigma_px, CV_32F);
  cv::sepFilter2D(src, *dst, CV_32F, kernel, kernel, cv::Point(-1, -1), 0, cv::BORDER_CONSTANT);
}

// Sigma above which the Gaussian runs on a decimated grid. A direct 545x545
// blur with sigma 15 px costs ~121 taps per pass; decimating by k cuts it k^3-fold.
constexpr double kDecimateAboveSigma = 6.0;
// Sigma (in coarse pixels) the decimated grid keeps at least.
constexpr double kCoarseSigma = 3.0;

// Gaussian of large sigma on a grid decimated by an integer k:
//   k x k box average (variance k^2/12 per axis) -> Gaussian of sigma_c on the
//   coarse grid (variance (k*sigma_c)^2) -> bilinear upsampling (a triangle
//   kernel of variance k^2/6 for the interpolated smooth field).
// sigma_c is chosen so the three variances add up to sigma^2. Applied
// identically to numerator and denominator of the normalized convolution.
void BlurDecimated(const cv::Mat1f& src, cv::Mat1f* dst, double sigma_px) {
  const int k = std::max(2, static_cast<int>(std::floor(sigma_px / kCoarseSigma)));
  // One zero (= invalid) coarse pixel of margin on every side, so bilinear
  // upsampling never extrapolates at the image border (where numerator and
  // denominator both change fastest).
  const int cw = (src.cols + k - 1) / k + 2;
  const int ch = (src.rows + k - 1) / k + 2;
  cv::Mat1f padded;
  cv::copyMakeBorder(src, padded, k, ch * k - src.rows - k, k, cw * k - src.cols - k, cv::BORDER_CONSTANT, 0);
  cv::Mat1f coarse;
  cv::resize(padded, coarse, cv::Size(cw, ch), 0, 0, cv::INTER_AREA);  // exact k x k means
  const double sigma_c = std::sqrt(std::max(0.25, sigma_px * sigma_px / (k * k) - 0.25));
  cv::Mat1f coarse_blur;
  BlurDirect(coarse, &coarse_blur, sigma_c);
  cv::Mat1f up;
  cv::resize(coarse_blur, up, cv::Size(cw * k, ch * k), 0, 0, cv::INTER_LINEAR);
  *dst = up(cv::Rect(k, k, src.cols, src.rows)).clone();
}

void Blur(const cv::Mat1f& src, cv::Mat1f* dst, double sigma_px) {
  if (sigma_px > kDecimateAboveSigma) {
    BlurDecimated(src, dst, sigma_px);
  } else {
    BlurDirect(src, dst, sigma_px);
  }
}

}  // namespace

double GaussianSigmaPx(double cutoff_um, double pixel_um) {
  // ISO 16610-61 / ISO 11562: s(x) = 1/(alpha*lc) exp(-pi (x/(alpha*lc))^2), alpha = sqrt(ln2/pi);
  // as a normal density its standard deviation is alpha*lc/sqrt(2 pi) = lc*sqrt(ln2/2)/pi.
  return cutoff_um * std::sqrt(std::numbers::ln2 / 2.0) / std::numbers::pi / pixel_um;
}

cv::Mat1f GaussianLowPassNaN(const cv::Mat1f& values, double sigma_px) {
  cv::Mat1f out(values.size());
  if (values.empty()) return out;
  if (!(sigma_px > 0.2)) {  // kernel narrower than a pixel: identity
    values.copyTo(out);
    return out;
  }
  cv::Mat1f vw, w, vw_blur, w_blur;
  SplitWeighted(values, &vw, &w);
  Blur(vw, &vw_blur, sigma_px);
  Blur(w, &w_blur, sigma_px);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int y = 0; y < values.rows; ++y) {
    const float* wr = w[y];
    const float* n = vw_blur[y];
    const float* d = w_blur[y];
    float* o = out[y];
    for (int x = 0; x < values.cols; ++x) {
      o[x] = (wr[x] > 0.f && d[x] > 1e-6f) ? n[x] / d[x] : nan;
    }
  }
  return out;
}

cv::Mat1f GaussianBandPassNaN(const cv::Mat1f& values, double pixel_um, double short_um,
                              double long_um) {
  // Same as GaussianLowPassNaN(short) - GaussianLowPassNaN(long), sharing the
  // weighted split and writing one output: half the temporaries (on a Fadul
  // grid, fresh 1.2 MB buffers cost more in page faults than the filtering).
  cv::Mat1f out(values.size());
  if (values.empty()) return out;
  const double sigma_s = GaussianSigmaPx(short_um, pixel_um);
  const double sigma_l = GaussianSigmaPx(long_um, pixel_um);
  cv::Mat1f vw, w, ns, ds, nl, dl;
  SplitWeighted(values, &vw, &w);
  const bool identity_short = !(sigma_s > 0.2);
  if (!identity_short) {
    Blur(vw, &ns, sigma_s);
    Blur(w, &ds, sigma_s);
  }
  Blur(vw, &nl, sigma_l);
  Blur(w, &dl, sigma_l);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int y = 0; y < values.rows; ++y) {
    const float* v = values[y];
    const float* wr = w[y];
    const float* a = identity_short ? nullptr : ns[y];
    const float* b = identity_short ? nullptr : ds[y];
    const float* c = nl[y];
    const float* d = dl[y];
    float* o = out[y];
    for (int x = 0; x < values.cols; ++x) {
      if (wr[x] > 0.f && d[x] > 1e-6f && (identity_short || b[x] > 1e-6f)) {
        o[x] = (identity_short ? v[x] : a[x] / b[x]) - c[x] / d[x];
      } else {
        o[x] = nan;
      }
    }
  }
  return out;
}

cv::Mat1f LevelPlaneRobust(const cv::Mat1f& values) { return LevelPolynomialRobust(values, 1); }

namespace {

// Polynomial terms at (u, v): 1 | 1 u v | 1 u v u^2 uv v^2.
template <int N>
inline void Terms(double u, double v, double* t) {
  t[0] = 1.0;
  if constexpr (N >= 3) {
    t[1] = u;
    t[2] = v;
  }
  if constexpr (N >= 6) {
    t[3] = u * u;
    t[4] = u * v;
    t[5] = v * v;
  }
}

// Robust polynomial fit with N terms (fixed size: no allocation in the loops).
template <int N>
cv::Mat1f LevelPolynomialRobustN(const cv::Mat1f& values) {
  using Vec = Eigen::Matrix<double, N, 1>;
  using Design = Eigen::Matrix<double, Eigen::Dynamic, N>;
  // Subsample to at most ~6k points: a plane or quadric has 3 or 6
  // parameters, more points only cost time.
  const double n_valid = static_cast<double>(cv::countNonZero(FiniteMask(values)));
  if (n_valid < 2 * N) return values.clone();
  const int stride = std::max(1, static_cast<int>(std::ceil(std::sqrt(n_valid / 6000.0))));
  // Coordinates centred and scaled to [-0.5, 0.5] for conditioning.
  const double cx = values.cols / 2.0, cy = values.rows / 2.0;
  const double s = 1.0 / std::max(values.cols, values.rows);
  std::vector<double> tv;
  std::vector<double> zv;
  for (int y = 0; y < values.rows; y += stride) {
    const float* v = values[y];
    for (int x = 0; x < values.cols; x += stride) {
      if (!std::isfinite(v[x])) continue;
      double row[N];
      Terms<N>((x - cx) * s, (y - cy) * s, row);
      tv.insert(tv.end(), row, row + N);
      zv.push_back(v[x]);
    }
  }
  const Eigen::Index n = static_cast<Eigen::Index>(zv.size());
  if (n < 2 * N) return values.clone();
  const Design t = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, N, (N == 1 ? Eigen::ColMajor : Eigen::RowMajor)>>(
      tv.data(), n, N);
  const Eigen::Map<const Eigen::VectorXd> z(zv.data(), n);
  // IRLS with Tukey's biweight (c = 4.685: 95 % efficiency at the normal),
  // scale = 1.4826 * MAD of the residuals (Huber & Ronchetti, Robust
  // Statistics, 2009). Outliers (debris, deep marks, dropout rims) get zero
  // weight instead of tilting the fit.
  Eigen::VectorXd w = Eigen::VectorXd::Ones(n);
  std::vector<double> absr(static_cast<std::size_t>(n));
  Vec p = Vec::Zero();
  for (int iter = 0; iter < 10; ++iter) {
    const Design tw = w.asDiagonal() * t;
    const Eigen::Matrix<double, N, N> a = t.transpose() * tw;
    const Vec b = tw.transpose() * z;
    const Vec np = a.ldlt().solve(b);
    if (!np.allFinite()) break;
    const double change = (np - p).cwiseAbs().maxCoeff();
    p = np;
    const Eigen::VectorXd r = z - t * p;
    for (Eigen::Index i = 0; i < n; ++i) absr[i] = std::abs(r[i]);
    auto mid = absr.begin() + n / 2;
    std::nth_element(absr.begin(), mid, absr.end());
    const double scale = 1.4826 * *mid;
    if (!(scale > 0)) break;  // more than half the points fit exactly: done
    const double c = 4.685 * scale;
    for (Eigen::Index i = 0; i < n; ++i) {
      const double u = r[i] / c;
      w[i] = std::abs(u) < 1.0 ? (1 - u * u) * (1 - u * u) : 0.0;
    }
    if (iter > 0 && change < 1e-6 * (1.0 + p.cwiseAbs().maxCoeff())) break;
  }
  // Subtract the fit row by row: along a row the polynomial is
  // q0 + q1 u + q2 u^2 with coefficients depending on v only.
  double coef[6] = {0, 0, 0, 0, 0, 0};
  for (int k = 0; k < N; ++k) coef[k] = p[k];
  cv::Mat1f out(values.size());
  for (int y = 0; y < values.rows; ++y) {
    const double v = (y - cy) * s;
    const double q0 = coef[0] + coef[2] * v + coef[5] * v * v;
    const double q1 = coef[1] + coef[4] * v;
    const double q2 = coef[3];
    const float* in = values[y];
    float* o = out[y];
    for (int x = 0; x < values.cols; ++x) {
      const double u = (x - cx) * s;
      o[x] = static_cast<float>(in[x] - (q0 + u * (q1 + u * q2)));
    }
  }
  return out;
}

}  // namespace

cv::Mat1f LevelPolynomialRobust(const cv::Mat1f& values, int degree) {
  if (degree <= 0) return LevelPolynomialRobustN<1>(values);
  if (degree == 1) return LevelPolynomialRobustN<3>(values);
  return LevelPolynomialRobustN<6>(values);
}

cv::Mat1f ResampleNaN(const cv::Mat1f& values, double pixel_um_x, double pixel_um_y,
                      double target_pixel_um, double min_support) {
  const double fx = pixel_um_x / target_pixel_um;
  const double fy = pixel_um_y / target_pixel_um;
  if (std::abs(fx - 1.0) < 1e-6 && std::abs(fy - 1.0) < 1e-6) return values.clone();
  // dsize = Size() makes cv::resize use fx, fy exactly (the output size is
  // rounded); passing a rounded dsize instead would change the pixel size by
  // up to half a pixel over the whole width (0.35 % for a 120-pixel scan).
  // INTER_AREA averages the footprint when shrinking (an anti-alias box
  // filter); it degenerates to nearest-like behaviour when growing, where
  // bilinear interpolation is the right choice.
  const int interp = (fx <= 1.0 && fy <= 1.0) ? cv::INTER_AREA : cv::INTER_LINEAR;
  cv::Mat1f vw, w, vw_r, w_r;
  SplitWeighted(values, &vw, &w);
  cv::resize(vw, vw_r, cv::Size(), fx, fy, interp);
  cv::resize(w, w_r, cv::Size(), fx, fy, interp);
  const cv::Size dsize = w_r.size();
  cv::Mat1f out(dsize);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float support = static_cast<float>(std::max(min_support, 1e-6));
  for (int y = 0; y < dsize.height; ++y) {
    const float* n = vw_r[y];
    const float* d = w_r[y];
    float* o = out[y];
    for (int x = 0; x < dsize.width; ++x) o[x] = d[x] >= support ? n[x] / d[x] : nan;
  }
  return out;
}

namespace preprocess_internal {

cv::Mat1b FiniteMask(const cv::Mat1f& values) {
  cv::Mat1b mask(values.size());
  for (int y = 0; y < values.rows; ++y) {
    const float* v = values[y];
    std::uint8_t* m = mask[y];
    for (int x = 0; x < values.cols; ++x) m[x] = std::isfinite(v[x]) ? 255 : 0;
  }
  return mask;
}

cv::Mat1f MaskedCopy(const cv::Mat1f& values, const cv::Mat1b& mask) {
  cv::Mat1f out(values.size(), std::numeric_limits<float>::quiet_NaN());
  values.copyTo(out, mask);
  return out;
}

cv::Mat1b DiskMask(cv::Size size, const Circle& c) {
  cv::Mat1b mask(size, std::uint8_t{0});
  cv::circle(mask, cv::Point(cvRound(c.center.x * 16), cvRound(c.center.y * 16)),
             cvRound(c.radius * 16), cv::Scalar(255), cv::FILLED, cv::LINE_8, 4);
  return mask;
}

cv::Mat1f SubtractPlane(const cv::Mat1f& values, const cv::Vec3d& plane, double scale) {
  cv::Mat1f out(values.size());
  for (int y = 0; y < values.rows; ++y) {
    const float* v = values[y];
    float* o = out[y];
    const double yy = y * scale;
    for (int x = 0; x < values.cols; ++x) {
      o[x] = static_cast<float>(v[x] - (plane[0] * x * scale + plane[1] * yy + plane[2]));
    }
  }
  return out;
}

cv::Vec3d RansacPlane(const cv::Mat1f& values, const cv::Mat1b& sample_mask, int iterations,
                      double inlier_threshold, unsigned seed) {
  std::vector<cv::Point3d> pts;
  for (int y = 0; y < values.rows; ++y) {
    const float* v = values[y];
    const std::uint8_t* m = sample_mask.empty() ? nullptr : sample_mask[y];
    for (int x = 0; x < values.cols; ++x) {
      if (std::isfinite(v[x]) && (m == nullptr || m[x])) pts.emplace_back(x, y, v[x]);
    }
  }
  if (pts.size() < 3) return {0, 0, 0};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> pick(0, pts.size() - 1);
  std::size_t best_count = 0;
  cv::Vec3d best(0, 0, 0);
  for (int it = 0; it < iterations; ++it) {
    const cv::Point3d& a = pts[pick(rng)];
    const cv::Point3d& b = pts[pick(rng)];
    const cv::Point3d& c = pts[pick(rng)];
    // Plane through three points: z = p0 x + p1 y + p2.
    const double det = (b.x - a.x) * (c.y - a.y) - (c.x - a.x) * (b.y - a.y);
    if (std::abs(det) < 1e-9) continue;
    const double p0 = ((b.z - a.z) * (c.y - a.y) - (c.z - a.z) * (b.y - a.y)) / det;
    const double p1 = ((b.x - a.x) * (c.z - a.z) - (c.x - a.x) * (b.z - a.z)) / det;
    const double p2 = a.z - p0 * a.x - p1 * a.y;
    std::size_t count = 0;
    for (const auto& p : pts) count += std::abs(p.z - (p0 * p.x + p1 * p.y + p2)) < inlier_threshold;
    if (count > best_count) {
      best_count = count;
      best = {p0, p1, p2};
    }
  }
  // Least-squares refit on the inliers of the best candidate (as cmcR does).
  Eigen::Matrix3d A = Eigen::Matrix3d::Zero();
  Eigen::Vector3d rhs = Eigen::Vector3d::Zero();
  for (const auto& p : pts) {
    if (std::abs(p.z - (best[0] * p.x + best[1] * p.y + best[2])) >= inlier_threshold) continue;
    const Eigen::Vector3d row(p.x, p.y, 1.0);
    A.noalias() += row * row.transpose();
    rhs.noalias() += p.z * row;
  }
  if (best_count >= 3) {
    const Eigen::Vector3d sol = A.ldlt().solve(rhs);
    if (sol.allFinite()) best = {sol.x(), sol.y(), sol.z()};
  }
  return best;
}

}  // namespace preprocess_internal
}  // namespace ballistics
