// Batched inverse real FFT of ring-summed cross-spectra (see internal.h).
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <utility>

#include <fftw3.h>

#include "internal.h"

namespace ballistics::index_internal {
namespace {

std::mutex& PlannerMutex() {
  static std::mutex mu;
  return mu;
}

// One plan per (length, batch), made on scratch buffers; executed with
// fftwf_execute_dft_c2r on each scorer's own (fftwf_malloc-aligned) buffers.
fftwf_plan CachedPlan(int m, int batch) {
  static std::map<std::pair<int, int>, fftwf_plan> plans;
  std::lock_guard<std::mutex> lock(PlannerMutex());
  auto it = plans.find({m, batch});
  if (it != plans.end()) return it->second;
  const int bins = m / 2 + 1;
  auto* in = static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * bins * batch));
  auto* out = static_cast<float*>(fftwf_malloc(sizeof(float) * m * batch));
  int n[1] = {m};
  fftwf_plan p = fftwf_plan_many_dft_c2r(1, n, batch, in, nullptr, 1, bins, out, nullptr, 1, m, FFTW_ESTIMATE);
  fftwf_free(in);
  fftwf_free(out);
  if (p == nullptr) throw std::bad_alloc();
  plans.emplace(std::make_pair(m, batch), p);
  return p;
}

}  // namespace

ShiftScorer::ShiftScorer(int frequencies, int batch) : f_(frequencies), batch_(batch) {
  m_ = 64;
  while (m_ < 2 * f_ + 2) m_ *= 2;
  const int bins = m_ / 2 + 1;
  in_ = static_cast<float*>(fftwf_malloc(sizeof(float) * 2 * bins * batch_));
  out_ = static_cast<float*>(fftwf_malloc(sizeof(float) * m_ * batch_));
  if (in_ == nullptr || out_ == nullptr) throw std::bad_alloc();
  std::memset(in_, 0, sizeof(float) * 2 * bins * batch_);
  plan_ = CachedPlan(m_, batch_);
}

ShiftScorer::~ShiftScorer() {
  fftwf_free(in_);
  fftwf_free(out_);
}

void ShiftScorer::Execute() {
  fftwf_execute_dft_c2r(static_cast<fftwf_plan>(plan_), reinterpret_cast<fftwf_complex*>(in_), out_);
  // c2r may overwrite its input: restore the zero bins for the next batch.
  std::memset(in_, 0, sizeof(float) * 2 * (m_ / 2 + 1) * batch_);
}

float ShiftScorer::Max(int lane, double* shift) const {
  const float* y = out_ + static_cast<std::size_t>(lane) * m_;
  int best = 0;
  for (int s = 1; s < m_; ++s) {
    if (y[s] > y[best]) best = s;
  }
  // y[s] = X_0 + 2 Re sum_{k>=1} X_k e^{2 pi i k s / M}: a unit-norm
  // descriptor against itself gives 2 at s = 0.
  float peak = y[best];
  double offset = 0;
  const float a = y[(best + m_ - 1) % m_], c = y[(best + 1) % m_];
  const float denom = a - 2 * peak + c;
  if (denom < 0) {
    // Parabola through the three samples around the maximum: the sampled
    // peak of a band-limited correlation underestimates the true one.
    offset = 0.5 * (a - c) / denom;
    peak = static_cast<float>(peak - 0.25 * (a - c) * offset);
  }
  if (shift != nullptr) *shift = best + offset;
  return 0.5f * peak;
}

}  // namespace ballistics::index_internal
