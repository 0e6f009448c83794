// Ring-summed cross-spectra of one block of the flat index against all the
// query variants (see internal.h and the layout in flat_index.cc).
//
// Per coefficient j = (r, k) the block holds the (re, im) int8 pairs of the
// kLanes candidates contiguously (32 bytes), so one widening load gives every
// candidate's pair as int16 and one multiply-add of pairs (pmaddwd) with the
// broadcast query pair (q_re, q_im) gives q_re c_re + q_im c_im, the real part
// of Q conj(C), for 8 (AVX2) or 16 (AVX-512) candidates; the pair
// (q_im, -q_re) gives the imaginary part. Exact int32 arithmetic: every ISA
// gives bit-identical cross-spectra.
//
// The candidate data are loaded once per coefficient for several query
// variants (the translation search): the block's bytes come from memory once
// and from registers / L1 for the other variants.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "ballistics/index.h"
#include "internal.h"

namespace ballistics::index_internal {
namespace {

// SSE2 (baseline x86-64, no dispatch needed): 4 candidates per register,
// int8 -> int16 by unpacking a byte with itself and shifting right
// arithmetically (SSE2 has no pmovsxbw); one variant at a time (8 accumulators).
void CrossSpectraSse2(const std::int8_t* __restrict block, const PackedQueries& q, int rings, int freqs,
                      std::int32_t* __restrict xre, std::int32_t* __restrict xim) {
  const std::size_t per_variant = static_cast<std::size_t>(freqs) * kLanes;
  for (int v = 0; v < q.variants; ++v) {
    for (int k = 0; k < freqs; ++k) {
      __m128i acc[8];
      for (auto& a : acc) a = _mm_setzero_si128();
      for (int r = 0; r < rings; ++r) {
        const std::size_t j = BlockCoeff(r, k, rings);
        const __m128i c0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + j * 32));
        const __m128i c1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + j * 32 + 16));
        const __m128i w[4] = {_mm_srai_epi16(_mm_unpacklo_epi8(c0, c0), 8), _mm_srai_epi16(_mm_unpackhi_epi8(c0, c0), 8),
                              _mm_srai_epi16(_mm_unpacklo_epi8(c1, c1), 8), _mm_srai_epi16(_mm_unpackhi_epi8(c1, c1), 8)};
        const std::size_t o = static_cast<std::size_t>(v) * q.dim / 2 + j;
        const __m128i wre = _mm_set1_epi32(q.wre[o]);
        const __m128i wim = _mm_set1_epi32(q.wim[o]);
        for (int i = 0; i < 4; ++i) {
          acc[i] = _mm_add_epi32(acc[i], _mm_madd_epi16(w[i], wre));
          acc[4 + i] = _mm_add_epi32(acc[4 + i], _mm_madd_epi16(w[i], wim));
        }
      }
      for (int i = 0; i < 4; ++i) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(xre + v * per_variant + k * kLanes + 4 * i), acc[i]);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(xim + v * per_variant + k * kLanes + 4 * i), acc[4 + i]);
      }
    }
  }
}

// V variants (starting at v0) at once; accumulators: 4 x V registers.
template <int V>
__attribute__((target("avx2"), always_inline)) inline void CrossSpectraAvx2Chunk(
    const std::int8_t* __restrict block, const PackedQueries& q, int v0, int rings, int freqs,
    std::int32_t* __restrict xre, std::int32_t* __restrict xim, const std::int8_t* next) {
  const std::size_t per_variant = static_cast<std::size_t>(freqs) * kLanes;
  const std::size_t slab = static_cast<std::size_t>(rings) * kLanes * 2;  // bytes of one frequency
  for (int k = 0; k < freqs; ++k) {
    if (next != nullptr) {
      for (std::size_t o = 0; o < slab; o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(next + k * slab + o), _MM_HINT_T0);
      }
    }
    __m256i acc[V][4];
    for (int v = 0; v < V; ++v) {
      for (int i = 0; i < 4; ++i) acc[v][i] = _mm256_setzero_si256();
    }
    for (int r = 0; r < rings; ++r) {
      const std::size_t j = BlockCoeff(r, k, rings);
      const __m256i c8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + j * 32));
      const __m256i c_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(c8));       // lanes 0..7
      const __m256i c_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(c8, 1));  // lanes 8..15
      for (int v = 0; v < V; ++v) {
        const std::size_t w = static_cast<std::size_t>(v0 + v) * q.dim / 2 + j;
        const __m256i wre = _mm256_set1_epi32(q.wre[w]);
        const __m256i wim = _mm256_set1_epi32(q.wim[w]);
        acc[v][0] = _mm256_add_epi32(acc[v][0], _mm256_madd_epi16(c_lo, wre));
        acc[v][1] = _mm256_add_epi32(acc[v][1], _mm256_madd_epi16(c_hi, wre));
        acc[v][2] = _mm256_add_epi32(acc[v][2], _mm256_madd_epi16(c_lo, wim));
        acc[v][3] = _mm256_add_epi32(acc[v][3], _mm256_madd_epi16(c_hi, wim));
      }
    }
    for (int v = 0; v < V; ++v) {
      std::int32_t* ar = xre + (v0 + v) * per_variant + k * kLanes;
      std::int32_t* ai = xim + (v0 + v) * per_variant + k * kLanes;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ar), acc[v][0]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ar + 8), acc[v][1]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ai), acc[v][2]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ai + 8), acc[v][3]);
    }
  }
}

__attribute__((target("avx2"))) void CrossSpectraAvx2(const std::int8_t* __restrict block, const PackedQueries& q,
                                                       int rings, int freqs, std::int32_t* __restrict xre,
                                                       std::int32_t* __restrict xim, const std::int8_t* next) {
  int v = 0;
  for (; v + 3 <= q.variants; v += 3) {
    CrossSpectraAvx2Chunk<3>(block, q, v, rings, freqs, xre, xim, v == 0 ? next : nullptr);
  }
  for (; v < q.variants; ++v) CrossSpectraAvx2Chunk<1>(block, q, v, rings, freqs, xre, xim, v == 0 ? next : nullptr);
}

// AVX-512 (BW): all 16 lanes in one register; with VNNI the multiply-add
// and the accumulation are one instruction (vpdpwssd). The same template
// body is compiled for both targets (the pragmas below), selected by kVnni.
#define BALLISTICS_AVX512_CHUNK(NAME, TARGET, VNNI)                                                              \
  template <int V>                                                                                              \
  __attribute__((target(TARGET), always_inline)) inline void NAME(                                              \
      const std::int8_t* __restrict block, const PackedQueries& q, int v0, int rings, int freqs,                \
      std::int32_t* __restrict xre, std::int32_t* __restrict xim, const std::int8_t* next) {                    \
    const std::size_t per_variant = static_cast<std::size_t>(freqs) * kLanes;                                   \
    const std::size_t slab = static_cast<std::size_t>(rings) * kLanes * 2;                                      \
    for (int k = 0; k < freqs; ++k) {                                                                           \
      if (next != nullptr) {                                                                                    \
        for (std::size_t o = 0; o < slab; o += 64) {                                                            \
          _mm_prefetch(reinterpret_cast<const char*>(next + k * slab + o), _MM_HINT_T0);                        \
        }                                                                                                       \
      }                                                                                                         \
      __m512i acc[V][2];                                                                                        \
      for (int v = 0; v < V; ++v) acc[v][0] = acc[v][1] = _mm512_setzero_si512();                              \
      for (int r = 0; r < rings; ++r) {                                                                         \
        const std::size_t j = BlockCoeff(r, k, rings);                                                          \
        const __m512i c = _mm512_cvtepi8_epi16(                                                                 \
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + j * 32)));                              \
        for (int v = 0; v < V; ++v) {                                                                           \
          const std::size_t w = static_cast<std::size_t>(v0 + v) * q.dim / 2 + j;                               \
          const __m512i wre = _mm512_set1_epi32(q.wre[w]);                                                      \
          const __m512i wim = _mm512_set1_epi32(q.wim[w]);                                                      \
          if constexpr (VNNI) {                                                                                 \
            acc[v][0] = _mm512_dpwssd_epi32(acc[v][0], c, wre);                                                 \
            acc[v][1] = _mm512_dpwssd_epi32(acc[v][1], c, wim);                                                 \
          } else {                                                                                              \
            acc[v][0] = _mm512_add_epi32(acc[v][0], _mm512_madd_epi16(c, wre));                                 \
            acc[v][1] = _mm512_add_epi32(acc[v][1], _mm512_madd_epi16(c, wim));                                 \
          }                                                                                                     \
        }                                                                                                       \
      }                                                                                                         \
      for (int v = 0; v < V; ++v) {                                                                             \
        _mm512_storeu_si512(xre + (v0 + v) * per_variant + k * kLanes, acc[v][0]);                              \
        _mm512_storeu_si512(xim + (v0 + v) * per_variant + k * kLanes, acc[v][1]);                              \
      }                                                                                                         \
    }                                                                                                           \
  }

BALLISTICS_AVX512_CHUNK(Avx512Chunk, "avx512f,avx512bw", false)
BALLISTICS_AVX512_CHUNK(VnniChunk, "avx512f,avx512bw,avx512vnni", true)
#undef BALLISTICS_AVX512_CHUNK

__attribute__((target("avx512f,avx512bw"))) void CrossSpectraAvx512(const std::int8_t* __restrict block,
                                                                     const PackedQueries& q, int rings, int freqs,
                                                                     std::int32_t* __restrict xre,
                                                                     std::int32_t* __restrict xim, const std::int8_t* next) {
  int v = 0;
  for (; v + 9 <= q.variants; v += 9) Avx512Chunk<9>(block, q, v, rings, freqs, xre, xim, v == 0 ? next : nullptr);
  for (; v + 3 <= q.variants; v += 3) Avx512Chunk<3>(block, q, v, rings, freqs, xre, xim, v == 0 ? next : nullptr);
  for (; v < q.variants; ++v) Avx512Chunk<1>(block, q, v, rings, freqs, xre, xim, v == 0 ? next : nullptr);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void CrossSpectraVnni(
    const std::int8_t* __restrict block, const PackedQueries& q, int rings, int freqs, std::int32_t* __restrict xre,
    std::int32_t* __restrict xim, const std::int8_t* next) {
  int v = 0;
  for (; v + 9 <= q.variants; v += 9) VnniChunk<9>(block, q, v, rings, freqs, xre, xim, v == 0 ? next : nullptr);
  for (; v + 3 <= q.variants; v += 3) VnniChunk<3>(block, q, v, rings, freqs, xre, xim, v == 0 ? next : nullptr);
  for (; v < q.variants; ++v) VnniChunk<1>(block, q, v, rings, freqs, xre, xim, v == 0 ? next : nullptr);
}

}  // namespace

Isa DetectIsa() {
  // BALLISTICS_INDEX_ISA=generic|avx2|avx512 caps the choice (benchmarks,
  // checks); BALLISTICS_INDEX_NO_AVX2=1 (older switch) = generic.
  static const Isa isa = [] {
    Isa best = Isa::kGeneric;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
      best = __builtin_cpu_supports("avx512vnni") ? Isa::kAvx512Vnni : Isa::kAvx512;
    }
    Isa cap = Isa::kAvx512Vnni;
    if (std::getenv("BALLISTICS_INDEX_NO_AVX2") != nullptr) cap = Isa::kGeneric;
    if (const char* e = std::getenv("BALLISTICS_INDEX_ISA")) {
      const std::string s = e;
      if (s == "generic") cap = Isa::kGeneric;
      else if (s == "avx2") cap = Isa::kAvx2;
      else if (s == "avx512") cap = Isa::kAvx512;
    }
    return static_cast<int>(best) < static_cast<int>(cap) ? best : cap;
  }();
  return isa;
}

bool IsaSupported(Isa isa) {
  switch (isa) {
    case Isa::kGeneric: return true;
    case Isa::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    case Isa::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

PackedQueries PackQueries(std::span<const CoarseDescriptor> queries) {
  PackedQueries p;
  p.variants = static_cast<int>(queries.size());
  p.dim = queries.empty() ? 0 : static_cast<int>(queries[0].coeffs.size());
  p.coeffs.reserve(static_cast<std::size_t>(p.variants) * p.dim);
  p.wre.reserve(p.coeffs.capacity() / 2);
  p.wim.reserve(p.coeffs.capacity() / 2);
  for (const CoarseDescriptor& d : queries) {
    p.scale.push_back(d.scale);
    p.coeffs.insert(p.coeffs.end(), d.coeffs.begin(), d.coeffs.end());
    const std::size_t base = p.wre.size();
    p.wre.resize(base + d.coeffs.size() / 2);
    p.wim.resize(base + d.coeffs.size() / 2);
    for (int r = 0; r < d.rings; ++r) {
      for (int k = 0; k < d.frequencies; ++k) {
        const std::size_t j = static_cast<std::size_t>(r) * d.frequencies + k;  // descriptor order
        const std::int32_t qr = d.coeffs[2 * j], qi = d.coeffs[2 * j + 1];
        // int16 pairs (lo, hi): (q_re, q_im) for the real part, (q_im, -q_re) for the imaginary.
        const std::size_t o = base + BlockCoeff(r, k, d.rings);
        p.wre[o] = static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(qr)) |
                                             (static_cast<std::uint32_t>(static_cast<std::uint16_t>(qi)) << 16));
        p.wim[o] = static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(qi)) |
                                             (static_cast<std::uint32_t>(static_cast<std::uint16_t>(-qr)) << 16));
      }
    }
  }
  return p;
}

void BlockCrossSpectra(Isa isa, const std::int8_t* block, const PackedQueries& q, int rings, int freqs,
                       std::int32_t* xre, std::int32_t* xim, const std::int8_t* next) {
  switch (isa) {
    case Isa::kAvx512Vnni: CrossSpectraVnni(block, q, rings, freqs, xre, xim, next); break;
    case Isa::kAvx512: CrossSpectraAvx512(block, q, rings, freqs, xre, xim, next); break;
    case Isa::kAvx2: CrossSpectraAvx2(block, q, rings, freqs, xre, xim, next); break;
    default: CrossSpectraSse2(block, q, rings, freqs, xre, xim); break;
  }
}

}  // namespace ballistics::index_internal
