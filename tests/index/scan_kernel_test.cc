// The scan kernels (src/index/internal.h): every instruction set gives the
// same cross-spectra (exact int32) and the same shift maxima as a direct
// double-precision evaluation of the band-limited circular correlation.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "ballistics/index.h"
#include "internal.h"

namespace ballistics {
namespace {

using index_internal::Isa;
using index_internal::kLanes;

CoarseDescriptor RandomQuery(std::mt19937& rng, int rings, int freqs) {
  std::uniform_int_distribution<int> u(-127, 127);
  CoarseDescriptor d;
  d.rings = rings;
  d.frequencies = freqs;
  d.scale = 0.01f;
  d.coeffs.resize(static_cast<std::size_t>(rings) * freqs * 2);
  for (auto& c : d.coeffs) c = static_cast<std::int8_t>(u(rng));
  return d;
}

// Direct evaluation: y(s) = Re sum_k X_k exp(2 pi i k s / M) at the M shifts,
// then the same parabola through the maximum and its neighbours.
float DirectPeak(const std::int32_t* xre, const std::int32_t* xim, int lane, int freqs, int m, double* shift) {
  std::vector<double> y(m, 0.0);
  for (int s = 0; s < m; ++s) {
    for (int k = 1; k <= freqs; ++k) {
      const double a = 2 * M_PI * k * s / m;
      y[s] += xre[(k - 1) * kLanes + lane] * std::cos(a) - xim[(k - 1) * kLanes + lane] * std::sin(a);
    }
  }
  int best = 0;
  for (int s = 1; s < m; ++s) {
    if (y[s] > y[best]) best = s;
  }
  double peak = y[best], offset = 0;
  const double a = y[(best + m - 1) % m], c = y[(best + 1) % m], denom = a - 2 * peak + c;
  if (denom < 0) {
    offset = 0.5 * (a - c) / denom;
    peak -= 0.25 * (a - c) * offset;
  }
  *shift = best + offset;
  return static_cast<float>(peak);
}

class ScanKernelTest : public ::testing::TestWithParam<int> {};

TEST_P(ScanKernelTest, EveryIsaMatchesTheDirectEvaluation) {
  const int freqs = GetParam();
  const int rings = 5, variants = 13;  // 13 = a chunk of 9, one of 3 and a single one
  std::mt19937 rng(freqs);
  std::vector<CoarseDescriptor> queries;
  for (int v = 0; v < variants; ++v) queries.push_back(RandomQuery(rng, rings, freqs));
  const index_internal::PackedQueries packed = index_internal::PackQueries(queries);
  std::vector<std::int8_t> block(static_cast<std::size_t>(rings) * freqs * 2 * kLanes);
  std::uniform_int_distribution<int> u(-127, 127);
  for (auto& c : block) c = static_cast<std::int8_t>(u(rng));
  const std::size_t per_variant = static_cast<std::size_t>(freqs) * kLanes;

  std::vector<std::int32_t> ref_re(per_variant * variants), ref_im(ref_re.size());
  index_internal::BlockCrossSpectra(Isa::kGeneric, block.data(), packed, rings, freqs, ref_re.data(), ref_im.data());
  // The generic kernel against the definition X_k = sum_r Q_rk conj(C_rk).
  for (int v = 0; v < variants; ++v) {
    for (int k = 0; k < freqs; ++k) {
      for (int l = 0; l < kLanes; ++l) {
        std::int64_t re = 0, im = 0;
        for (int r = 0; r < rings; ++r) {
          const int j = r * freqs + k;
          const int qr = queries[v].coeffs[2 * j], qi = queries[v].coeffs[2 * j + 1];
          const std::size_t pos = index_internal::BlockCoeff(r, k, rings);
          const int cr = block[(pos * kLanes + l) * 2], ci = block[(pos * kLanes + l) * 2 + 1];
          re += qr * cr + qi * ci;
          im += qi * cr - qr * ci;
        }
        ASSERT_EQ(ref_re[v * per_variant + k * kLanes + l], re);
        ASSERT_EQ(ref_im[v * per_variant + k * kLanes + l], im);
      }
    }
  }
  int tested = 0;
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vnni}) {
    if (!index_internal::IsaSupported(isa)) continue;
    ++tested;
    std::vector<std::int32_t> xre(ref_re.size()), xim(ref_re.size());
    index_internal::BlockCrossSpectra(isa, block.data(), packed, rings, freqs, xre.data(), xim.data());
    EXPECT_EQ(xre, ref_re) << "isa " << static_cast<int>(isa);
    EXPECT_EQ(xim, ref_im) << "isa " << static_cast<int>(isa);
    index_internal::LaneScorer scorer(freqs, isa);
    for (int v = 0; v < variants; ++v) {
      float peak[kLanes], shift[kLanes];
      scorer.Run(xre.data() + v * per_variant, xim.data() + v * per_variant, peak, shift);
      for (int l = 0; l < kLanes; ++l) {
        double direct_shift = 0;
        const std::int32_t* vre = xre.data() + v * per_variant;
        const std::int32_t* vim = xim.data() + v * per_variant;
        const float direct = DirectPeak(vre, vim, l, freqs, scorer.length(), &direct_shift);
        // Float rounding scales with sum_k |X_k| (the largest value y can take).
        double magnitude = 0;
        for (int k = 0; k < freqs; ++k) magnitude += std::hypot(vre[k * kLanes + l], vim[k * kLanes + l]);
        EXPECT_NEAR(peak[l], direct, 1e-5 * magnitude) << "isa " << static_cast<int>(isa) << " lane " << l;
        EXPECT_NEAR(std::remainder(shift[l] - direct_shift, scorer.length()), 0.0, 1e-2)
            << "isa " << static_cast<int>(isa) << " lane " << l;
      }
    }
  }
  EXPECT_GE(tested, 1);
}

// 20: M = 64; 32 (the default): M = 128 and bin N/2 gets both halves of the
// Hermitian spectrum; 40: M = 128 with overlapping halves.
INSTANTIATE_TEST_SUITE_P(Frequencies, ScanKernelTest, ::testing::Values(20, 32, 40));

}  // namespace
}  // namespace ballistics
