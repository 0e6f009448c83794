#include "fields.h"

#include <array>
#include <cmath>
#include <numbers>
#include <utility>

#include <opencv2/core.hpp>

#include "random.h"

namespace ballistics::synth::internal {
namespace {

// ISO 16610-61 Gaussian filter constant: alpha = sqrt(ln 2 / pi), so the low-pass
// transmits 50 % of the amplitude at the cutoff wavelength.
const double kGaussAlpha = std::sqrt(std::log(2.0) / std::numbers::pi);

// Fills an OpenCV CCS-packed spectrum (the layout cv::dft uses for real 2D
// transforms, see the cv::dft documentation) with coef(kx, ky) -> (re, im), where
// kx in [0, cols/2] and ky in (-rows/2, rows/2] are signed frequency indices.
// Entries that CCS stores as real only (kx = 0 or cols/2 with ky = 0 or rows/2)
// take the real part. The DC term is set to zero.
template <typename Coef>
void FillCcs(cv::Mat1f& ccs, Coef&& coef) {
  const int rows = ccs.rows;
  const int cols = ccs.cols;
  const int half_rows = rows / 2;
  for (int side = 0; side < 2; ++side) {
    const int c = side == 0 ? 0 : cols - 1;
    const int kx = side == 0 ? 0 : cols / 2;
    ccs(0, c) = side == 0 ? 0.0f : coef(kx, 0).first;
    for (int i = 1; i < half_rows; ++i) {
      const auto [re, im] = coef(kx, i);
      ccs(2 * i - 1, c) = re;
      ccs(2 * i, c) = im;
    }
    ccs(rows - 1, c) = coef(kx, half_rows).first;
  }
  for (int r = 0; r < rows; ++r) {
    float* row = ccs[r];
    const int ky = r <= half_rows ? r : r - rows;
    for (int j = 1; j < cols / 2; ++j) {
      const auto [re, im] = coef(j, ky);
      row[2 * j - 1] = re;
      row[2 * j] = im;
    }
  }
}

// Scales to unit RMS (the mean is zero: the DC coefficient is zero).
void NormalizeRms(float* data, std::size_t count) {
  double sum_sq = 0.0;
  for (std::size_t i = 0; i < count; ++i) sum_sq += static_cast<double>(data[i]) * data[i];
  const double rms = std::sqrt(sum_sq / static_cast<double>(count));
  if (rms <= 0.0) return;
  const float scale = static_cast<float>(1.0 / rms);
  for (std::size_t i = 0; i < count; ++i) data[i] *= scale;
}

std::pair<float, float> HashedCoefficient(std::uint64_t key, int kx, int ky, float amplitude) {
  const std::uint64_t h = HashKey(key, kx, ky);
  return {amplitude * UnitVarianceUniform(static_cast<std::uint32_t>(h)),
          amplitude * UnitVarianceUniform(static_cast<std::uint32_t>(h >> 32))};
}

}  // namespace

double SpectrumAmplitude(const Spectrum& s, double f) {
  if (f <= 0.0) return 0.0;
  double a = std::pow(f, -0.5 * s.slope);
  if (s.peak_um > 0.0 && s.peak_gain > 0.0) {
    const double l = std::log(f * s.peak_um);
    a *= 1.0 + s.peak_gain * std::exp(-0.5 * l * l / (s.peak_width * s.peak_width));
  }
  if (s.short_um > 0.0) {
    const double x = kGaussAlpha * s.short_um * f;
    a *= std::exp(-std::numbers::pi * x * x);
  }
  if (s.long_um > 0.0) {
    const double x = kGaussAlpha * s.long_um * f;
    a *= 1.0 - std::exp(-std::numbers::pi * x * x);
  }
  return a;
}

cv::Mat1f KeyedField2D(std::uint64_t key, int n, double period_um, const Spectrum& s) {
  // The amplitude depends on |k| only: tabulate it in steps of 1/8 of a frequency
  // index and interpolate (pow and exp per coefficient would dominate the cost). The
  // table is in units of the period, so it is the same for every n.
  constexpr double kStep = 0.125;
  const double df = 1.0 / period_um;
  const int table_size = static_cast<int>(std::ceil(0.5 * n * std::sqrt(2.0) / kStep)) + 3;
  std::vector<float> table(static_cast<std::size_t>(table_size));
  for (int i = 0; i < table_size; ++i) table[static_cast<std::size_t>(i)] = static_cast<float>(SpectrumAmplitude(s, df * kStep * i));
  cv::Mat1f ccs(n, n);
  FillCcs(ccs, [&](int kx, int ky) {
    const double t = std::sqrt(static_cast<double>(kx) * kx + static_cast<double>(ky) * ky) / kStep;
    const auto i = static_cast<std::size_t>(t);
    const float w = static_cast<float>(t - static_cast<double>(i));
    const float a = table[i] + w * (table[i + 1] - table[i]);
    return HashedCoefficient(key, kx, ky, a);
  });
  cv::Mat1f field;
  cv::dft(ccs, field, cv::DFT_INVERSE | cv::DFT_REAL_OUTPUT);
  NormalizeRms(field.ptr<float>(), field.total());
  return field;
}

std::vector<float> KeyedProfile1D(std::uint64_t key, int n, double period_um, const Spectrum& s) {
  cv::Mat1f ccs(1, n);
  const double df = 1.0 / period_um;
  ccs(0, 0) = 0.0f;
  for (int k = 1; k < n / 2; ++k) {
    const auto [re, im] = HashedCoefficient(key, k, 0, static_cast<float>(SpectrumAmplitude(s, df * k)));
    ccs(0, 2 * k - 1) = re;
    ccs(0, 2 * k) = im;
  }
  ccs(0, n - 1) = HashedCoefficient(key, n / 2, 0, static_cast<float>(SpectrumAmplitude(s, df * n / 2))).first;
  cv::Mat1f out;
  cv::dft(ccs, out, cv::DFT_INVERSE | cv::DFT_REAL_OUTPUT | cv::DFT_ROWS);
  std::vector<float> profile(out.begin(), out.end());
  NormalizeRms(profile.data(), profile.size());
  return profile;
}

namespace {

struct AmplitudeTable {
  int rows = 0, cols = 0;
  double pixel_um = 0.0;
  Spectrum s;
  cv::Mat1f amplitude;  // CCS layout
  bool Matches(int r, int c, double p, const Spectrum& o) const {
    return rows == r && cols == c && pixel_um == p && s.slope == o.slope && s.short_um == o.short_um &&
           s.long_um == o.long_um && s.peak_um == o.peak_um && s.peak_gain == o.peak_gain &&
           s.peak_width == o.peak_width;
  }
};

const cv::Mat1f& CachedAmplitude(int rows, int cols, double pixel_um, const Spectrum& s) {
  // A few entries cover one shot (noise, contact, deformation, dropouts); per thread, so
  // no locking and no cross-thread effect on results.
  constexpr int kEntries = 8;
  thread_local std::array<AmplitudeTable, kEntries> cache;
  thread_local int next = 0;
  for (const auto& e : cache) {
    if (!e.amplitude.empty() && e.Matches(rows, cols, pixel_um, s)) return e.amplitude;
  }
  AmplitudeTable& e = cache[static_cast<std::size_t>(next)];
  next = (next + 1) % kEntries;
  e.rows = rows;
  e.cols = cols;
  e.pixel_um = pixel_um;
  e.s = s;
  e.amplitude.create(rows, cols);
  const double dfx = 1.0 / (cols * pixel_um);
  const double dfy = 1.0 / (rows * pixel_um);
  FillCcs(e.amplitude, [&](int kx, int ky) {
    const double fx = dfx * kx, fy = dfy * ky;
    const float a = static_cast<float>(SpectrumAmplitude(s, std::sqrt(fx * fx + fy * fy)));
    return std::pair<float, float>{a, a};
  });
  return e.amplitude;
}

}  // namespace

cv::Mat1f StreamField2D(std::uint64_t seed, int rows, int cols, double pixel_um, const Spectrum& s) {
  const cv::Mat1f& amp = CachedAmplitude(rows, cols, pixel_um, s);
  cv::Mat1f ccs(rows, cols);
  Xoshiro256pp rng(seed);
  const float* a = amp.ptr<float>();
  float* c = ccs.ptr<float>();
  const std::size_t count = ccs.total();
  std::size_t i = 0;
  for (; i + 1 < count; i += 2) {
    const std::uint64_t bits = rng.Next();
    c[i] = a[i] * UnitVarianceUniform(static_cast<std::uint32_t>(bits));
    c[i + 1] = a[i + 1] * UnitVarianceUniform(static_cast<std::uint32_t>(bits >> 32));
  }
  if (i < count) c[i] = a[i] * UnitVarianceUniform(static_cast<std::uint32_t>(rng.Next()));
  cv::Mat1f field;
  cv::dft(ccs, field, cv::DFT_INVERSE | cv::DFT_REAL_OUTPUT);
  NormalizeRms(field.ptr<float>(), field.total());
  return field;
}

int EvenDftSize(int n) {
  int m = std::max(n, 2);
  while (true) {
    m = cv::getOptimalDFTSize(m);
    if (m % 2 == 0) return m;
    ++m;
  }
}

}  // namespace ballistics::synth::internal
