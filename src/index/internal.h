// Internals shared by the index sources (not a public header).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <span>
#include <vector>

namespace ballistics {
struct CoarseDescriptor;
}

namespace ballistics::index_internal {

// Upper bound on DescriptorConfig::frequencies (fixes the size of the
// per-block accumulators in the scan kernel).
inline constexpr int kMaxFrequencies = 128;
// Signatures per block of the flat index (one SIMD pass scores a block).
inline constexpr int kLanes = 16;

// Position of coefficient (ring r, frequency index k) within a block of the
// flat index: frequency-major, so that the kernels' inner loop over rings
// (the sum of the cross-spectrum) reads the block contiguously. The
// kLanes (re, im) int8 pairs of that coefficient start at byte
// BlockCoeff(r, k, rings) * kLanes * 2.
inline std::size_t BlockCoeff(int r, int k, int rings) { return static_cast<std::size_t>(k) * rings + r; }

// Instruction sets of the scan kernels, chosen once at run time
// (DetectIsa; BALLISTICS_INDEX_ISA=generic|avx2|avx512 or
// BALLISTICS_INDEX_NO_AVX2=1 cap it). Only baseline x86-64 (SSE2) is assumed
// at compile time: the others are target-attribute functions.
enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Vnni = 3 };
Isa DetectIsa();
bool IsaSupported(Isa isa);

// The query variants of one search (the translation search), packed once:
// coeffs = the int8 coefficients of each variant, back to back (dim each);
// wre/wim[v * dim / 2 + BlockCoeff(r, k, rings)] = int16 pairs (q_re, q_im)
// and (q_im, -q_re) of coefficient (r, k) of variant v (the block's order),
// the multiplier words of the pmaddwd kernels.
struct PackedQueries {
  int variants = 0, dim = 0;
  std::vector<std::int8_t> coeffs;
  std::vector<std::int32_t> wre, wim;
  std::vector<float> scale;
};
PackedQueries PackQueries(std::span<const CoarseDescriptor> queries);

// Ring-summed cross-spectra of one block of the flat index against every
// query variant (flat_index.cc has the layout):
// xre/xim[(v * F + k) * kLanes + lane], k = 0..F-1 (frequency k + 1). Exact
// int32, identical for every ISA. `next` (may be null): the block scanned
// next, prefetched while this one is computed.
void BlockCrossSpectra(Isa isa, const std::int8_t* block, const PackedQueries& q, int rings, int freqs,
                       std::int32_t* xre, std::int32_t* xim, const std::int8_t* next = nullptr);

// Max over the circular shift of Re sum_k X_k exp(2 pi i k s / M) for the
// ring-summed cross-spectra X (k = 1..F) of a block's candidates, M = the
// smallest power of two >= max(64, 2F + 2): the circular cross-correlation of
// the polar unwraps, band-limited to F, sampled at M shifts with a parabolic
// refinement of the peak (lane_dft.cc). The inverse DFT and the search for
// the maximum act on all kLanes candidates at once (SIMD across candidates).
struct LaneDftPlan {
  explicit LaneDftPlan(int frequencies);
  int f = 0, m = 0, n = 0;  // frequencies, shifts (M), complex transform length N = M / 2
  std::vector<int> bitrev;
  std::vector<float> tw_re, tw_im, pos_re, pos_im, neg_re, neg_im;
};

// peak[lane] = max_s Re sum_k X_k exp(2 pi i k s / M) for the lanes of a
// block (xre/xim[k * kLanes + lane], k = 0..F-1 holding frequencies 1..F);
// shift[lane] (when not null) = the shift in samples at the maximum (parabolic
// sub-sample estimate, in [0, M)). `work` holds LaneDftWorkFloats(plan)
// floats, 64-byte aligned. Runtime dispatch: AVX-512, AVX2 + FMA, or SSE2.
void BlockShiftMax(Isa isa, const LaneDftPlan& plan, const std::int32_t* xre, const std::int32_t* xim,
                   float* work, float* peak, float* shift);

// A plan and its 64-byte aligned scratch (one per scanning thread).
class LaneScorer {
 public:
  explicit LaneScorer(int frequencies, Isa isa = DetectIsa())
      : isa_(isa),
        plan_(frequencies),
        work_(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * 2 * kLanes * plan_.n))) {
    if (work_ == nullptr) throw std::bad_alloc();
  }
  ~LaneScorer() { std::free(work_); }
  LaneScorer(const LaneScorer&) = delete;
  LaneScorer& operator=(const LaneScorer&) = delete;
  int length() const { return plan_.m; }
  void Run(const std::int32_t* xre, const std::int32_t* xim, float* peak, float* shift = nullptr) {
    BlockShiftMax(isa_, plan_, xre, xim, work_, peak, shift);
  }

 private:
  Isa isa_;
  LaneDftPlan plan_;
  float* work_;
};

}  // namespace ballistics::index_internal
