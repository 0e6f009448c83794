#include "fft.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace ballistics::correlate_internal {

int FastFftSize(int n) {
  if (n <= 1) return 1;
  for (int m = n;; ++m) {
    int r = m;
    for (int p : {2, 3, 5}) {
      while (r % p == 0) r /= p;
    }
    if (r == 1) return m;
  }
}

namespace {

std::mutex& PlannerMutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

const FftPlan& GetPlan(int rows, int cols) {
  // Plans live for the whole process (a handful of sizes are used), so the
  // references handed out stay valid without reference counting.
  static std::map<std::pair<int, int>, std::unique_ptr<FftPlan>> cache;
  std::lock_guard<std::mutex> lock(PlannerMutex());
  auto& slot = cache[{rows, cols}];
  if (!slot) {
    auto plan = std::make_unique<FftPlan>();
    plan->rows = rows;
    plan->cols = cols;
    RealBuffer real(plan->RealSize());
    ComplexBuffer spec(plan->ComplexSize());
    auto* c = reinterpret_cast<fftwf_complex*>(spec.data());
    // FFTW_MEASURE: a few hundred milliseconds once per size (a handful of
    // sizes per process), repaid within a few comparisons; it overwrites the
    // planning arrays, which are scratch here.
    plan->r2c = fftwf_plan_dft_r2c_2d(rows, cols, real.data(), c, FFTW_MEASURE);
    plan->c2r = fftwf_plan_dft_c2r_2d(rows, cols, c, real.data(), FFTW_MEASURE);
    slot = std::move(plan);
  }
  return *slot;
}

namespace {

struct Workspace {
  RealBuffer real;
  ComplexBuffer prod;
  RealBuffer out[6];
  void Fit(const FftPlan& plan) {
    if (real.size() < plan.RealSize()) real.resize(plan.RealSize());
    if (prod.size() < plan.ComplexSize()) prod.resize(plan.ComplexSize());
    for (auto& o : out) {
      if (o.size() < plan.RealSize()) o.resize(plan.RealSize());
    }
  }
};

Workspace& ThreadWorkspace() {
  thread_local Workspace ws;
  return ws;
}

// Copies src (or its square) to the top-left of the zero-padded real buffer
// and transforms it.
void Forward(const FftPlan& plan, const cv::Mat1f& src, bool square, RealBuffer& real, ComplexBuffer* out) {
  std::fill(real.begin(), real.begin() + plan.RealSize(), 0.0f);
  for (int y = 0; y < src.rows; ++y) {
    const float* s = src[y];
    float* d = real.data() + static_cast<std::size_t>(y) * plan.cols;
    if (square) {
      for (int x = 0; x < src.cols; ++x) d[x] = s[x] * s[x];
    } else {
      std::copy(s, s + src.cols, d);
    }
  }
  out->resize(plan.ComplexSize());
  fftwf_execute_dft_r2c(plan.r2c, real.data(), reinterpret_cast<fftwf_complex*>(out->data()));
}

}  // namespace

void ComputeSpectra(const cv::Mat1f& values, const cv::Mat1f& mask, int rows, int cols,
                    MaskedSpectra* out) {
  const FftPlan& plan = GetPlan(rows, cols);
  Workspace& ws = ThreadWorkspace();
  ws.Fit(plan);
  out->rows = rows;
  out->cols = cols;
  // values are already 0 outside the mask, so f*m = f and f^2*m = f^2.
  Forward(plan, values, false, ws.real, &out->fm);
  Forward(plan, mask, false, ws.real, &out->m);
  Forward(plan, values, true, ws.real, &out->f2m);
  out->valid = cv::sum(mask)[0];
}

void MaskedNccMaps(const MaskedSpectra& t, const MaskedSpectra& i, double min_overlap, cv::Mat1f* ncc,
                   cv::Mat1f* overlap, int limit_rows, int limit_cols) {
  const FftPlan& plan = GetPlan(t.rows, t.cols);
  Workspace& ws = ThreadWorkspace();
  ws.Fit(plan);
  const std::size_t nc = plan.ComplexSize();
  // c(u) = sum_x a(x) b(x + u) = IFFT(conj(A) B)(u)
  auto correlate = [&](const ComplexBuffer& a, const ComplexBuffer& b, RealBuffer& out) {
    const std::complex<float>* pa = a.data();
    const std::complex<float>* pb = b.data();
    std::complex<float>* pp = ws.prod.data();
    for (std::size_t k = 0; k < nc; ++k) pp[k] = std::conj(pa[k]) * pb[k];
    fftwf_execute_dft_c2r(plan.c2r, reinterpret_cast<fftwf_complex*>(pp), out.data());
  };
  correlate(t.fm, i.fm, ws.out[0]);   // sum f1 m1 f2 m2
  correlate(t.fm, i.m, ws.out[1]);    // sum f1 m1 m2
  correlate(t.m, i.fm, ws.out[2]);    // sum m1 f2 m2
  correlate(t.m, i.m, ws.out[3]);     // overlap count
  correlate(t.f2m, i.m, ws.out[4]);   // sum f1^2 m1 m2
  correlate(t.m, i.f2m, ws.out[5]);   // sum m1 f2^2 m2
  ncc->create(plan.rows, plan.cols);
  if (overlap != nullptr) overlap->create(plan.rows, plan.cols);
  const double scale = 1.0 / (static_cast<double>(plan.rows) * plan.cols);
  const double min_n = std::max(min_overlap, 2.0);
  const int rows = limit_rows > 0 ? std::min(limit_rows, plan.rows) : plan.rows;
  const int cols = limit_cols > 0 ? std::min(limit_cols, plan.cols) : plan.cols;
  for (int y = 0; y < rows; ++y) {
    float* dn = (*ncc)[y];
    float* dov = overlap ? (*overlap)[y] : nullptr;
    const std::size_t row = static_cast<std::size_t>(y) * plan.cols;
    for (int x = 0; x < cols; ++x) {
      const std::size_t k = row + x;
      // The overlap count is an integer up to FFT round-off.
      const double n = static_cast<double>(static_cast<long>(ws.out[3][k] * scale + 0.5));
      if (dov) dov[x] = static_cast<float>(n);
      if (n < min_n) {
        dn[x] = -2.0f;
        continue;
      }
      const double s1 = ws.out[1][k] * scale, s2 = ws.out[2][k] * scale;
      const double num = ws.out[0][k] * scale - s1 * s2 / n;
      const double v1 = ws.out[4][k] * scale - s1 * s1 / n;
      const double v2 = ws.out[5][k] * scale - s2 * s2 / n;
      // A variance far below the mean square means a flat overlap (or float
      // round-off in the difference): no meaningful NCC there.
      const double ss1 = ws.out[4][k] * scale, ss2 = ws.out[5][k] * scale;
      if (v1 <= 1e-4 * ss1 || v2 <= 1e-4 * ss2 || v1 <= 0 || v2 <= 0) {
        dn[x] = 0.0f;
        continue;
      }
      dn[x] = static_cast<float>(std::clamp(num / std::sqrt(v1 * v2), -1.0, 1.0));
    }
  }
}

}  // namespace ballistics::correlate_internal
