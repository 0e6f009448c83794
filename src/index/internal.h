// Internals shared by the index sources (not a public header).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ballistics::index_internal {

// Upper bound on DescriptorConfig::frequencies (fixes the size of the
// per-block accumulators in the scan kernel).
inline constexpr int kMaxFrequencies = 128;
// Signatures per block of the flat index (one SIMD pass scores a block).
inline constexpr int kLanes = 16;

// Ring-summed cross-spectra of one block of the flat index against a query
// (flat_index.cc has the layout): xre/xim[k * kLanes + lane], k = 0..freqs-1.
void BlockCrossSpectrum(const std::int8_t* block, const std::int8_t* q, int rings, int freqs,
                        std::int32_t* xre, std::int32_t* xim);

// Max over the circular shift of Re sum_k X_k exp(2 pi i k s / M), for a batch
// of ring-summed cross-spectra X (k = 1..F), by one batched FFTW inverse real
// FFT of length M (the smallest power of two >= max(64, 2F + 2)): the circular
// cross-correlation of the polar unwraps, band-limited to F.
// Plans come from a process-wide cache built under a mutex (FFTW's planner is
// not thread-safe); execution on a scorer's own buffers is.
class ShiftScorer {
 public:
  ShiftScorer(int frequencies, int batch);
  ~ShiftScorer();
  ShiftScorer(const ShiftScorer&) = delete;
  ShiftScorer& operator=(const ShiftScorer&) = delete;

  int length() const { return m_; }
  int batch() const { return batch_; }
  // Interleaved complex bins 0..M/2 of one lane. The caller writes X_k at
  // bins 1..F (2k, 2k+1); Execute() zeroes everything afterwards.
  float* spectrum(int lane) { return in_ + static_cast<std::size_t>(lane) * 2 * (m_ / 2 + 1); }
  void Execute();
  // Normalized maximum of lane `lane` after Execute(): for unit-norm
  // descriptors, 1 = identical. `shift`, when given, receives the shift in
  // samples of length M at the maximum (parabolic sub-sample estimate) such
  // that the candidate is the query turned by -shift * 360 / M degrees.
  float Max(int lane, double* shift = nullptr) const;

 private:
  int f_, m_, batch_;
  float* in_ = nullptr;
  float* out_ = nullptr;
  void* plan_ = nullptr;
};

}  // namespace ballistics::index_internal
