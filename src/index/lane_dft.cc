// Lane-parallel shift scoring (see internal.h): the circular cross-correlation
// of kLanes candidates at once, as one inverse DFT whose every arithmetic
// operation acts on a vector of the kLanes candidates (structure of arrays).
//
// Why not FFTW: a 128-point inverse real FFT per candidate through FFTW costs
// a plan call, copies into and out of its buffers and a scalar search for the
// maximum; the scan then ran at ~0.3 of memory bandwidth. Here the transform
// and the maximum search are SIMD across candidates (16 floats = one AVX-512,
// two AVX or four SSE registers per value), so the scan is bound by memory again.
//
// The transform: y[s] = Re sum_{k=1..F} X_k w^{ks}, w = exp(2 pi i / M), is a
// real sequence of length M = 2N. Its even and odd samples are packed into
// one complex sequence u[n] = y[2n] + i y[2n+1], the inverse N-point DFT of
//   U_j = H_j (1 + i w^j) + H_{j-N} (1 + i w^{j-N}),
// with H_k = X_k / 2 (k > 0), H_{-k} = conj(X_k) / 2 (the Hermitian spectrum
// of y; the standard real-FFT packing, e.g. Press et al., Numerical Recipes
// 12.3). The N-point transform is an iterative radix-2 decimation in time
// (Cooley & Tukey 1965) on bit-reversed input.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "internal.h"

namespace ballistics::index_internal {
namespace {

// One value of all kLanes candidates is kLanes floats in a row; the kernel
// works on it as H = kLanes / W vectors of W floats (W = 16 for AVX-512, 8 for
// AVX, 4 for SSE): GCC's generic vectors wider than the target's registers
// are not lowered well (comparisons and selects go scalar).
template <int W>
struct Vec {
  typedef float F __attribute__((vector_size(4 * W)));
  typedef std::int32_t I __attribute__((vector_size(4 * W)));
};

// The whole kernel; instantiated in functions compiled for several targets.
template <int W>
inline __attribute__((always_inline)) void ShiftMaxImpl(const LaneDftPlan& p, const std::int32_t* xre,
                                                        const std::int32_t* xim, float* work, float* peak,
                                                        float* shift) {
  using V = typename Vec<W>::F;
  using VI = typename Vec<W>::I;
  constexpr int H = kLanes / W;
  const int n = p.n;
  // re[j * H + h], im[j * H + h]: the lanes h * W .. h * W + W - 1 of U_j.
  V* re = reinterpret_cast<V*>(work);
  V* im = re + static_cast<std::size_t>(n) * H;
  const V zero = {};
  for (int j = 0; j < n * H; ++j) {
    re[j] = zero;
    im[j] = zero;
  }
  // Spectrum packing into bit-reversed positions:
  // U_k += X_k * P_k ; U_{N-k} += conj(X_k) * Q_k.
  for (int k = 1; k <= p.f; ++k) {
    const int a = p.bitrev[k] * H, b = p.bitrev[n - k] * H;
    const float pr = p.pos_re[k], pi = p.pos_im[k], qr = p.neg_re[k], qi = p.neg_im[k];
    for (int h = 0; h < H; ++h) {
      VI ir, ii;
      std::memcpy(&ir, xre + (k - 1) * kLanes + h * W, sizeof(ir));
      std::memcpy(&ii, xim + (k - 1) * kLanes + h * W, sizeof(ii));
      const V xr = __builtin_convertvector(ir, V), xi = __builtin_convertvector(ii, V);
      re[a + h] += xr * pr - xi * pi;
      im[a + h] += xr * pi + xi * pr;
      re[b + h] += xr * qr + xi * qi;
      im[b + h] += xr * qi - xi * qr;
    }
  }
  // Radix-2 DIT butterflies, inverse sign.
  for (int len = 2; len <= n; len <<= 1) {
    const int half = len / 2, step = n / len;
    for (int i = 0; i < n; i += len) {
      for (int j = 0; j < half; ++j) {
        const float wr = p.tw_re[j * step], wi = p.tw_im[j * step];
        const int ia = (i + j) * H, ib = (i + j + half) * H;
        for (int h = 0; h < H; ++h) {
          const V br = re[ib + h], bi = im[ib + h];
          const V tr = br * wr - bi * wi;
          const V ti = br * wi + bi * wr;
          const V ar = re[ia + h], ai = im[ia + h];
          re[ib + h] = ar - tr;
          im[ib + h] = ai - ti;
          re[ia + h] = ar + tr;
          im[ia + h] = ai + ti;
        }
      }
    }
  }
  // Maximum over the M shifts per lane: y[2j] = re[j], y[2j+1] = im[j]
  // (first maximum in shift order, as a scalar search would find).
  V best[H];
  VI arg[H];
  for (int h = 0; h < H; ++h) {
    best[h] = re[h];
    arg[h] = VI{};
  }
  for (int j = 0; j < n; ++j) {
    for (int h = 0; h < H; ++h) {
      if (j > 0) {
        const VI m = re[j * H + h] > best[h];
        best[h] = m ? re[j * H + h] : best[h];
        arg[h] = m ? VI{} + 2 * j : arg[h];
      }
      const VI m = im[j * H + h] > best[h];
      best[h] = m ? im[j * H + h] : best[h];
      arg[h] = m ? VI{} + (2 * j + 1) : arg[h];
    }
  }
  const int mlen = 2 * n;
  const float* fre = reinterpret_cast<const float*>(re);
  const float* fim = reinterpret_cast<const float*>(im);
  auto y = [&](int s, int lane) { return (s % 2 == 0 ? fre : fim)[(s / 2) * kLanes + lane]; };
  for (int l = 0; l < kLanes; ++l) {
    const int s = arg[l / W][l % W];
    float pk = best[l / W][l % W];
    double offset = 0;
    const float a = y((s + mlen - 1) % mlen, l), c = y((s + 1) % mlen, l);
    const float denom = a - 2 * pk + c;
    if (denom < 0) {
      // Parabola through the three samples around the maximum: the sampled
      // peak of a band-limited correlation underestimates the true one.
      offset = 0.5 * (a - c) / denom;
      pk = static_cast<float>(pk - 0.25 * (a - c) * offset);
    }
    peak[l] = pk;
    if (shift != nullptr) shift[l] = static_cast<float>(s + offset);
  }
}

void ShiftMaxGeneric(const LaneDftPlan& p, const std::int32_t* xre, const std::int32_t* xim, float* work,
                     float* peak, float* shift) {
  ShiftMaxImpl<4>(p, xre, xim, work, peak, shift);
}

__attribute__((target("avx2,fma"))) void ShiftMaxAvx2(const LaneDftPlan& p, const std::int32_t* xre,
                                                       const std::int32_t* xim, float* work, float* peak,
                                                       float* shift) {
  ShiftMaxImpl<8>(p, xre, xim, work, peak, shift);
}

__attribute__((target("avx512f"))) void ShiftMaxAvx512(const LaneDftPlan& p, const std::int32_t* xre,
                                                        const std::int32_t* xim, float* work, float* peak,
                                                        float* shift) {
  ShiftMaxImpl<16>(p, xre, xim, work, peak, shift);
}

}  // namespace

LaneDftPlan::LaneDftPlan(int frequencies) : f(frequencies) {
  m = 64;
  while (m < 2 * f + 2) m *= 2;
  n = m / 2;
  int bits = 0;
  while ((1 << bits) < n) ++bits;
  bitrev.resize(n);
  for (int i = 0; i < n; ++i) {
    int r = 0;
    for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
    bitrev[i] = r;
  }
  tw_re.resize(n / 2);
  tw_im.resize(n / 2);
  for (int j = 0; j < n / 2; ++j) {
    tw_re[j] = static_cast<float>(std::cos(2 * M_PI * j / n));
    tw_im[j] = static_cast<float>(std::sin(2 * M_PI * j / n));
  }
  pos_re.assign(f + 1, 0.0f);
  pos_im.assign(f + 1, 0.0f);
  neg_re.assign(f + 1, 0.0f);
  neg_im.assign(f + 1, 0.0f);
  for (int k = 1; k <= f; ++k) {
    // P_k = (1 + i w^k) / 2, Q_k = (1 + i w^{-k}) / 2, w = exp(2 pi i / M).
    const double c = std::cos(2 * M_PI * k / m), s = std::sin(2 * M_PI * k / m);
    pos_re[k] = static_cast<float>(0.5 * (1 - s));
    pos_im[k] = static_cast<float>(0.5 * c);
    neg_re[k] = static_cast<float>(0.5 * (1 + s));
    neg_im[k] = static_cast<float>(0.5 * c);
  }
}

void BlockShiftMax(Isa isa, const LaneDftPlan& plan, const std::int32_t* xre, const std::int32_t* xim,
                   float* work, float* peak, float* shift) {
  switch (isa) {
    case Isa::kAvx512Vnni:
    case Isa::kAvx512: ShiftMaxAvx512(plan, xre, xim, work, peak, shift); break;
    case Isa::kAvx2: ShiftMaxAvx2(plan, xre, xim, work, peak, shift); break;
    default: ShiftMaxGeneric(plan, xre, xim, work, peak, shift); break;
  }
}

}  // namespace ballistics::index_internal
