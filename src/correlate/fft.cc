#include "fft.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include <opencv2/imgproc.hpp>

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

int FastFftSizeRegion(int n) {
  // Among the sizes within n + n/8 whose factors are 2, 3, 5 and 7, the one
  // with the most factors of 2 (FFTW's fastest codelets): e.g. 56 = 2^3 7
  // runs ~15 % faster than 54 = 2 3^3 on x86-64. A fixed rule, so that every
  // process picks the same size (and the same round-off).
  int best = FastFftSize(n), best_twos = -1;
  for (int m = n; m <= n + n / 8; ++m) {
    int r = m, twos = 0;
    while (r % 2 == 0) {
      r /= 2;
      ++twos;
    }
    for (int p : {3, 5, 7}) {
      while (r % p == 0) r /= p;
    }
    if (r == 1 && twos > best_twos) {
      best = m;
      best_twos = twos;
    }
  }
  return best;
}

namespace {

std::mutex& PlannerMutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

// Planner flags of every plan: FFTW_ESTIMATE picks the algorithm from the
// sizes alone, so every process uses the same plans and gets the same
// round-off, hence the same scores. FFTW_MEASURE times candidates on the
// machine: under load its choice changed from run to run, and with it, rarely,
// a borderline cell (one Fadul non-match scored 2 in one run and 1 in the
// next). A forensic score must not depend on how busy the machine was when
// the process planned its transforms.
constexpr unsigned kPlanFlags = FFTW_ESTIMATE;

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
    plan->r2c = fftwf_plan_dft_r2c_2d(rows, cols, real.data(), c, kPlanFlags);
    plan->c2r = fftwf_plan_dft_c2r_2d(rows, cols, c, real.data(), kPlanFlags);
    slot = std::move(plan);
  }
  return *slot;
}

namespace {

// The inverse 2D transform of a region correlation split in its two passes
// so that the second one runs only on the rows that are read: the columns
// (length rows, one per complex column, in place) and then the c2r
// transforms of the first out_rows rows. For a 56 x 56 region with a 35 x 35
// displacement window this skips 21 of the 56 row transforms (an isolated
// timing of the inverse: 13.2 -> 10.6 us).
struct PrunedInverse {
  fftwf_plan columns = nullptr;  // c2c backward along dimension 0, in place
  fftwf_plan rows = nullptr;     // c2r along dimension 1, first out_rows rows
};

const PrunedInverse& GetPrunedInverse(int rows, int cols, int out_rows) {
  static std::map<std::tuple<int, int, int>, std::unique_ptr<PrunedInverse>> cache;
  std::lock_guard<std::mutex> lock(PlannerMutex());
  auto& slot = cache[{rows, cols, out_rows}];
  if (!slot) {
    auto plan = std::make_unique<PrunedInverse>();
    const int cc = cols / 2 + 1;
    RealBuffer real(static_cast<std::size_t>(rows) * cols);
    ComplexBuffer spec(static_cast<std::size_t>(rows) * cc);
    auto* c = reinterpret_cast<fftwf_complex*>(spec.data());
    const int n_rows[1] = {rows}, n_cols[1] = {cols};
    plan->columns = fftwf_plan_many_dft(1, n_rows, cc, c, nullptr, cc, 1, c, nullptr, cc, 1, FFTW_BACKWARD,
                                        kPlanFlags);
    plan->rows = fftwf_plan_many_dft_c2r(1, n_cols, out_rows, c, nullptr, 1, cc, real.data(), nullptr, 1, cols,
                                         kPlanFlags);
    slot = std::move(plan);
  }
  return *slot;
}

// Plans of the region correlation (MaskedNccRegion) on a rows x cols grid
// whose input has data in its first in_rows rows and whose output is read in
// its first out_rows rows. FFTW's real transforms of these small sizes cost
// about as much as a complex one of the same size (an isolated timing at
// 56 x 56, thread CPU time: r2c 8.7 us, c2c 8.3 us; pruned c2r inverse 5.4 us,
// pruned c2c inverse 7.2 us), so two real arrays a, b are transformed as one
// complex array a + ib and told apart by Hermitian symmetry (Press et al.,
// Numerical Recipes, 3rd ed., section 12.3.2 "FFT of two real functions
// simultaneously"): forward, A(k) = (Z(k) + conj Z(-k)) / 2 and
// B(k) = (Z(k) - conj Z(-k)) / 2i; inverse, IFFT(P + iQ) = p + iq for
// Hermitian P, Q. Rows at or past in_rows are zero, so their transforms are
// skipped (the column pass follows the row pass), and only the out_rows rows
// that are read are transformed back. All out of place: FFTW plans its
// in-place strided transforms as "buffered" ones, which copy through a
// buffer allocated on every execution.
struct RegionPlans {
  fftwf_plan c_rows = nullptr;    // c2c forward along dimension 1, first in_rows rows, packed -> packed2
  fftwf_plan c_cols = nullptr;    // c2c forward along dimension 0, all columns, packed2 -> packed
  fftwf_plan r_rows = nullptr;    // r2c along dimension 1, first in_rows rows, real -> half grid
  fftwf_plan r_cols = nullptr;    // c2c forward along dimension 0 of the half grid, half -> out
  fftwf_plan inv_cols = nullptr;  // c2c backward along dimension 0, all columns, packed -> packed2
  fftwf_plan inv_rows = nullptr;  // c2c backward along dimension 1, first out_rows rows, packed2 -> packed
  fftwf_plan h_cols = nullptr;    // c2c backward along dimension 0 of the half grid, prod -> prod2
  fftwf_plan h_rows = nullptr;    // c2r along dimension 1, first out_rows rows, prod2 -> real
};

const RegionPlans& GetRegionPlans(int rows, int cols, int in_rows, int out_rows) {
  static std::map<std::tuple<int, int, int, int>, std::unique_ptr<RegionPlans>> cache;
  std::lock_guard<std::mutex> lock(PlannerMutex());
  auto& slot = cache[{rows, cols, in_rows, out_rows}];
  if (!slot) {
    auto plan = std::make_unique<RegionPlans>();
    const int cc = cols / 2 + 1;
    RealBuffer real(static_cast<std::size_t>(rows) * cols);
    ComplexBuffer full(static_cast<std::size_t>(rows) * cols), full2(static_cast<std::size_t>(rows) * cols);
    ComplexBuffer half(static_cast<std::size_t>(rows) * cc), half2(static_cast<std::size_t>(rows) * cc);
    auto* z = reinterpret_cast<fftwf_complex*>(full.data());
    auto* z2 = reinterpret_cast<fftwf_complex*>(full2.data());
    auto* h = reinterpret_cast<fftwf_complex*>(half.data());
    auto* h2 = reinterpret_cast<fftwf_complex*>(half2.data());
    const int n_rows[1] = {rows}, n_cols[1] = {cols};
    plan->c_rows = fftwf_plan_many_dft(1, n_cols, in_rows, z, nullptr, 1, cols, z2, nullptr, 1, cols, FFTW_FORWARD,
                                       kPlanFlags);
    plan->c_cols = fftwf_plan_many_dft(1, n_rows, cols, z2, nullptr, cols, 1, z, nullptr, cols, 1, FFTW_FORWARD,
                                       kPlanFlags);
    plan->r_rows = fftwf_plan_many_dft_r2c(1, n_cols, in_rows, real.data(), nullptr, 1, cols, h, nullptr, 1, cc,
                                           kPlanFlags);
    plan->r_cols = fftwf_plan_many_dft(1, n_rows, cc, h, nullptr, cc, 1, h2, nullptr, cc, 1, FFTW_FORWARD,
                                       kPlanFlags);
    plan->inv_cols = fftwf_plan_many_dft(1, n_rows, cols, z, nullptr, cols, 1, z2, nullptr, cols, 1, FFTW_BACKWARD,
                                         kPlanFlags);
    plan->inv_rows = fftwf_plan_many_dft(1, n_cols, out_rows, z2, nullptr, 1, cols, z, nullptr, 1, cols,
                                         FFTW_BACKWARD, kPlanFlags);
    plan->h_cols = fftwf_plan_many_dft(1, n_rows, cc, h, nullptr, cc, 1, h2, nullptr, cc, 1, FFTW_BACKWARD,
                                       kPlanFlags);
    plan->h_rows = fftwf_plan_many_dft_c2r(1, n_cols, out_rows, h2, nullptr, 1, cc, real.data(), nullptr, 1, cols,
                                           kPlanFlags);
    slot = std::move(plan);
  }
  return *slot;
}

struct Workspace {
  RealBuffer real;
  ComplexBuffer prod, prod2, half, packed, packed2;
  ComplexBuffer pair[3];  // packed pairs of correlations (CorrelatePair)
  RealBuffer out[6];
  void Fit(const FftPlan& plan) {
    if (real.size() < plan.RealSize()) real.resize(plan.RealSize());
    if (prod.size() < plan.ComplexSize()) prod.resize(plan.ComplexSize());
    if (prod2.size() < plan.ComplexSize()) prod2.resize(plan.ComplexSize());
    if (half.size() < plan.ComplexSize()) half.resize(plan.ComplexSize());
    if (packed.size() < plan.RealSize()) packed.resize(plan.RealSize());
    if (packed2.size() < plan.RealSize()) packed2.resize(plan.RealSize());
    for (auto& p : pair) {
      if (p.size() < plan.RealSize()) p.resize(plan.RealSize());
    }
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

// One row of the NCC from the six correlation sums (unnormalized by `scale`,
// as FFTW's inverse leaves them). Branch-free so that it vectorizes (the
// library is built with -fno-math-errno -fno-trapping-math, so sqrt is one
// instruction and the float selects need no branches): the
// overlap count is an integer up to FFT round-off; a variance far below the
// mean square means a flat overlap (or float round-off in the difference),
// where the NCC is meaningless (0); too small an overlap gives -2 (never a peak).
__attribute__((target_clones("avx512f", "avx2", "default"))) void CombineRow(
    const float* __restrict s12, const float* __restrict s1, const float* __restrict s2,
    const float* __restrict n_raw, const float* __restrict s11, const float* __restrict s22, int cols, float scale,
    float min_n, float* __restrict out) {
  for (int x = 0; x < cols; ++x) {
    const float n = std::trunc(n_raw[x] * scale + 0.5f);
    const float inv_n = 1.0f / std::max(n, 1.0f);
    const float a = s1[x] * scale, b = s2[x] * scale;
    const float aa = s11[x] * scale, bb = s22[x] * scale;
    const float num = s12[x] * scale - a * b * inv_n;
    const float v1 = aa - a * a * inv_n, v2 = bb - b * b * inv_n;
    // (& not &&: no branch; false for NaN, like every comparison here.)
    const bool ok = (v1 > 1e-4f * aa) & (v2 > 1e-4f * bb) & (v1 > 0.0f) & (v2 > 0.0f);
    float r = num / std::sqrt(std::max(v1 * v2, 1e-30f));
    r = std::min(1.0f, std::max(-1.0f, r));
    const float valid_r = ok ? r : 0.0f;
    out[x] = n < min_n ? -2.0f : valid_r;
  }
}

// The real and imaginary parts of n complex values (interleaved floats)
// into two arrays: a packed pair of correlations (CorrelatePair) for
// CombineRow. (CombineRow reading the pair in place, with stride-2 loads,
// was 1 ulp off in a few percent of the values: the compiler handles the
// last columns of such a loop in scalar code, contracted into FMAs
// differently from the vector code; the copy keeps every value identical.)
__attribute__((target_clones("avx512f", "avx2", "default"))) void Deinterleave(const float* __restrict z, int n,
                                                                               float* __restrict re,
                                                                               float* __restrict im) {
  for (int x = 0; x < n; ++x) {
    re[x] = z[2 * x];
    im[x] = z[2 * x + 1];
  }
}

// pp = conj(a) * b, written out so that it vectorizes (std::complex's
// operator* checks for NaN/inf results, which keeps it scalar).
__attribute__((target_clones("avx512f", "avx2", "default"))) void ConjMultiply(const std::complex<float>* __restrict a,
                                                                   const std::complex<float>* __restrict b,
                                                                   std::size_t n, std::complex<float>* __restrict out) {
  const float* pa = reinterpret_cast<const float*>(a);
  const float* pb = reinterpret_cast<const float*>(b);
  float* po = reinterpret_cast<float*>(out);
  for (std::size_t k = 0; k < n; ++k) {
    const float ar = pa[2 * k], ai = pa[2 * k + 1], br = pb[2 * k], bi = pb[2 * k + 1];
    po[2 * k] = ar * br + ai * bi;
    po[2 * k + 1] = ar * bi - ai * br;
  }
}

// One row of Z = P + iQ: for the first cc columns from the row's own P, Q;
// for the rest from the mirrored point, P(-k) = conj P(k): z[i] = conj P[n - i]
// + i conj Q[n - i] for the n = cols - cc columns past the half.
__attribute__((target_clones("avx512f", "avx2", "default"))) void PackRow(const float* __restrict p,
                                                                          const float* __restrict q, int n,
                                                                          float* __restrict z) {
  for (int x = 0; x < n; ++x) {
    z[2 * x] = p[2 * x] - q[2 * x + 1];
    z[2 * x + 1] = p[2 * x + 1] + q[2 * x];
  }
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void PackRowMirrored(const float* __restrict p,
                                                                                  const float* __restrict q, int n,
                                                                                  float* __restrict z) {
  for (int i = 0; i < n; ++i) {
    const int k = n - i;
    z[2 * i] = p[2 * k] + q[2 * k + 1];
    z[2 * i + 1] = q[2 * k] - p[2 * k + 1];
  }
}

// Z = conj(A1) B1 + i conj(A2) B2 on the whole rows x cols grid from the
// half grids (rows x cc) of the four spectra, row y together with its
// mirror row -y (whose products fill each other's second half), so that the
// products stay in four short row buffers.
void PackProducts(const std::complex<float>* a1, const std::complex<float>* b1, const std::complex<float>* a2,
                  const std::complex<float>* b2, int rows, int cols, std::complex<float>* z) {
  const int cc = cols / 2 + 1, rest = cols - cc;
  thread_local std::vector<std::complex<float>> py1, py2, pm1, pm2;
  py1.resize(cc);
  py2.resize(cc);
  pm1.resize(cc);
  pm2.resize(cc);
  auto f = [](const std::vector<std::complex<float>>& v) { return reinterpret_cast<const float*>(v.data()); };
  for (int y = 0; y <= rows / 2; ++y) {
    const int my = (rows - y) % rows;
    const std::size_t ky = static_cast<std::size_t>(y) * cc, km = static_cast<std::size_t>(my) * cc;
    ConjMultiply(a1 + ky, b1 + ky, cc, py1.data());
    ConjMultiply(a2 + ky, b2 + ky, cc, py2.data());
    float* zy = reinterpret_cast<float*>(z + static_cast<std::size_t>(y) * cols);
    PackRow(f(py1), f(py2), cc, zy);
    if (my == y) {
      PackRowMirrored(f(py1), f(py2), rest, zy + 2 * cc);
      continue;
    }
    ConjMultiply(a1 + km, b1 + km, cc, pm1.data());
    ConjMultiply(a2 + km, b2 + km, cc, pm2.data());
    float* zm = reinterpret_cast<float*>(z + static_cast<std::size_t>(my) * cols);
    PackRow(f(pm1), f(pm2), cc, zm);
    PackRowMirrored(f(pm1), f(pm2), rest, zy + 2 * cc);
    PackRowMirrored(f(py1), f(py2), rest, zm + 2 * cc);
  }
}

// The half grids (rows x cc) of the spectra A, B of two real arrays from the
// spectrum Z of a + ib: A = (Z(k) + conj Z(-k)) / 2, B = (Z(k) - conj Z(-k)) / 2i.
// u: Z(k) for k = 0..n-1 of one row; v_end: the end of the mirror row, whose
// point -k (k >= 1) is v_end[-k], read backwards in place (a negative-stride
// loop that vectorizes with permutes; it was a reversed copy first).
__attribute__((target_clones("avx512f", "avx2", "default"))) void SplitRow(const float* __restrict u,
                                                                           const float* __restrict v_end, int k0,
                                                                           int n, float* __restrict a,
                                                                           float* __restrict b) {
  for (int x = k0; x < n; ++x) {
    // v = Z(-x); conj(v) = (v.re, -v.im).
    const float vr = v_end[-2 * x], vi = v_end[-2 * x + 1];
    a[2 * x] = 0.5f * (u[2 * x] + vr);
    a[2 * x + 1] = 0.5f * (u[2 * x + 1] - vi);
    b[2 * x] = 0.5f * (u[2 * x + 1] + vi);
    b[2 * x + 1] = 0.5f * (vr - u[2 * x]);
  }
}

void SplitPackedPair(const std::complex<float>* z, int rows, int cols, ComplexBuffer* a, ComplexBuffer* b) {
  const int cc = cols / 2 + 1;
  a->resize(static_cast<std::size_t>(rows) * cc);
  b->resize(static_cast<std::size_t>(rows) * cc);
  for (int y = 0; y < rows; ++y) {
    const float* zr = reinterpret_cast<const float*>(z + static_cast<std::size_t>(y) * cols);
    const float* zm = reinterpret_cast<const float*>(z + static_cast<std::size_t>((rows - y) % rows) * cols);
    float* ar = reinterpret_cast<float*>(a->data() + static_cast<std::size_t>(y) * cc);
    float* br = reinterpret_cast<float*>(b->data() + static_cast<std::size_t>(y) * cc);
    // Column 0 is its own mirror (Z(-0) = zm[0]); columns 1..cc-1 mirror to cols - k.
    SplitRow(zr, zm, 0, 1, ar, br);
    SplitRow(zr, zm + 2 * cols, 1, cc, ar, br);
  }
}

// d = (a[0], b[0], a[1], b[1], ...), b squared when `square`.
__attribute__((target_clones("avx512f", "avx2", "default"))) void InterleaveRow(const float* __restrict a,
                                                                                const float* __restrict b, int n,
                                                                                bool square, float* __restrict d) {
  if (square) {
    for (int x = 0; x < n; ++x) {
      d[2 * x] = a[x];
      d[2 * x + 1] = b[x] * b[x];
    }
  } else {
    for (int x = 0; x < n; ++x) {
      d[2 * x] = a[x];
      d[2 * x + 1] = b[x];
    }
  }
}

// Forward spectrum (half grid) of src (or its square) at the top-left of a
// zero-padded rows x cols array, src.rows = the plans' in_rows.
void ForwardRegionOne(const RegionPlans& plans, int rows, int cols, const cv::Mat1f& src, bool square,
                      RealBuffer& real, ComplexBuffer& half, ComplexBuffer* out) {
  const int cc = cols / 2 + 1;
  for (int y = 0; y < src.rows; ++y) {
    const float* s = src[y];
    float* d = real.data() + static_cast<std::size_t>(y) * cols;
    if (square) {
      for (int x = 0; x < src.cols; ++x) d[x] = s[x] * s[x];
    } else {
      std::copy(s, s + src.cols, d);
    }
    std::fill(d + src.cols, d + cols, 0.0f);
  }
  out->resize(static_cast<std::size_t>(rows) * cc);
  auto* h = reinterpret_cast<fftwf_complex*>(half.data());
  fftwf_execute_dft_r2c(plans.r_rows, real.data(), h);
  std::fill(half.begin() + static_cast<std::size_t>(src.rows) * cc, half.begin() + static_cast<std::size_t>(rows) * cc,
            std::complex<float>(0.0f, 0.0f));
  fftwf_execute_dft(plans.r_cols, h, reinterpret_cast<fftwf_complex*>(out->data()));
}

// Forward spectra (half grids) of a and of b (or its square), one complex transform.
void ForwardRegionPair(const RegionPlans& plans, int rows, int cols, const cv::Mat1f& a, const cv::Mat1f& b,
                       bool square_b, ComplexBuffer& packed, ComplexBuffer& packed2, ComplexBuffer* out_a,
                       ComplexBuffer* out_b) {
  for (int y = 0; y < a.rows; ++y) {
    // Interleaved through float pointers (std::complex stores do not vectorize).
    float* d = reinterpret_cast<float*>(packed.data() + static_cast<std::size_t>(y) * cols);
    InterleaveRow(a[y], b[y], a.cols, square_b, d);
    std::fill(d + 2 * a.cols, d + 2 * cols, 0.0f);
  }
  // The row pass writes the first a.rows rows of packed2; the rest is zero.
  std::fill(packed2.begin() + static_cast<std::size_t>(a.rows) * cols, packed2.begin() + static_cast<std::size_t>(rows) * cols,
            std::complex<float>(0.0f, 0.0f));
  auto* z = reinterpret_cast<fftwf_complex*>(packed.data());
  auto* z2 = reinterpret_cast<fftwf_complex*>(packed2.data());
  fftwf_execute_dft(plans.c_rows, z, z2);
  fftwf_execute_dft(plans.c_cols, z2, z);
  SplitPackedPair(packed.data(), rows, cols, out_a, out_b);
}

// Overlap counts of one row into `dov` (the optional output of MaskedNccMaps).
void OverlapRow(const float* n_raw, int cols, float scale, float* dov) {
  for (int x = 0; x < cols; ++x) dov[x] = std::trunc(n_raw[x] * scale + 0.5f);
}

// Correlates the six terms of a masked NCC into ws.out[0..5].
void SixCorrelations(const FftPlan& plan, const MaskedSpectra& t, const MaskedSpectra& i, Workspace& ws) {
  const std::size_t nc = plan.ComplexSize();
  // c(u) = sum_x a(x) b(x + u) = IFFT(conj(A) B)(u)
  auto correlate = [&](const ComplexBuffer& a, const ComplexBuffer& b, RealBuffer& out) {
    std::complex<float>* pp = ws.prod.data();
    ConjMultiply(a.data(), b.data(), nc, pp);
    fftwf_execute_dft_c2r(plan.c2r, reinterpret_cast<fftwf_complex*>(pp), out.data());
  };
  correlate(t.fm, i.fm, ws.out[0]);   // sum f1 m1 f2 m2
  correlate(t.fm, i.m, ws.out[1]);    // sum f1 m1 m2
  correlate(t.m, i.fm, ws.out[2]);    // sum m1 f2 m2
  correlate(t.m, i.m, ws.out[3]);     // overlap count
  correlate(t.f2m, i.m, ws.out[4]);   // sum f1^2 m1 m2
  correlate(t.m, i.f2m, ws.out[5]);   // sum m1 f2^2 m2
}

}  // namespace

void ComputeSpectra(const cv::Mat1f& values, const cv::Mat1f& mask, int rows, int cols,
                    MaskedSpectra* out) {
  const FftPlan& plan = GetPlan(rows, cols);
  Workspace& ws = ThreadWorkspace();
  ws.Fit(plan);
  out->rows = rows;
  out->cols = cols;
  out->src_rows = values.rows;
  out->src_cols = values.cols;
  // values are already 0 outside the mask, so f*m = f and f^2*m = f^2.
  Forward(plan, values, false, ws.real, &out->fm);
  Forward(plan, mask, false, ws.real, &out->m);
  Forward(plan, values, true, ws.real, &out->f2m);
  out->valid = cv::sum(mask)[0];
  out->sum_f = cv::sum(values)[0];
  out->sum_f2 = values.dot(values);
  out->full = out->valid == static_cast<double>(values.rows) * values.cols;
}

void ComputeTemplateSpectra(const cv::Mat1f& values, const cv::Mat1f& mask, int rows, int cols,
                            MaskedSpectra* out) {
  const FftPlan& plan = GetPlan(rows, cols);
  Workspace& ws = ThreadWorkspace();
  ws.Fit(plan);
  out->rows = rows;
  out->cols = cols;
  out->src_rows = values.rows;
  out->src_cols = values.cols;
  out->valid = cv::sum(mask)[0];
  out->sum_f = cv::sum(values)[0];
  out->sum_f2 = values.dot(values);
  out->full = out->valid == static_cast<double>(values.rows) * values.cols;
  Forward(plan, values, false, ws.real, &out->fm);
  Forward(plan, values, true, ws.real, &out->f2m);
  if (out->full) {
    ComplexBuffer().swap(out->m);
  } else {
    Forward(plan, mask, false, ws.real, &out->m);
  }
}

void MaskedNccMaps(const MaskedSpectra& t, const MaskedSpectra& i, double min_overlap, cv::Mat1f* ncc,
                   cv::Mat1f* overlap, int limit_rows, int limit_cols) {
  const FftPlan& plan = GetPlan(t.rows, t.cols);
  Workspace& ws = ThreadWorkspace();
  ws.Fit(plan);
  SixCorrelations(plan, t, i, ws);
  ncc->create(plan.rows, plan.cols);
  if (overlap != nullptr) overlap->create(plan.rows, plan.cols);
  const float scale = static_cast<float>(1.0 / (static_cast<double>(plan.rows) * plan.cols));
  const float min_n = static_cast<float>(std::max(min_overlap, 2.0));
  const int rows = limit_rows > 0 ? std::min(limit_rows, plan.rows) : plan.rows;
  const int cols = limit_cols > 0 ? std::min(limit_cols, plan.cols) : plan.cols;
  for (int y = 0; y < rows; ++y) {
    const std::size_t k = static_cast<std::size_t>(y) * plan.cols;
    CombineRow(&ws.out[0][k], &ws.out[1][k], &ws.out[2][k], &ws.out[3][k], &ws.out[4][k], &ws.out[5][k], cols, scale,
               min_n, (*ncc)[y]);
    if (overlap != nullptr) OverlapRow(&ws.out[3][k], cols, scale, (*overlap)[y]);
  }
}

void MaskedNccRows(const MaskedSpectra& t, const MaskedSpectra& i, double min_overlap, const std::vector<int>& rows,
                   cv::Mat1f* ncc) {
  const FftPlan& plan = GetPlan(t.rows, t.cols);
  Workspace& ws = ThreadWorkspace();
  ws.Fit(plan);
  // Only the listed rows are transformed back along dimension 1 (the column
  // pass is whole): for the polar profile, 5 radial shifts of ~60 rows.
  const int n = static_cast<int>(rows.size());
  const int cc = plan.ComplexCols();
  const PrunedInverse& inverse = GetPrunedInverse(plan.rows, plan.cols, n);
  thread_local ComplexBuffer gathered;
  gathered.resize(static_cast<std::size_t>(n) * cc);
  auto correlate = [&](const ComplexBuffer& a, const ComplexBuffer& b, RealBuffer& out) {
    ConjMultiply(a.data(), b.data(), plan.ComplexSize(), ws.prod.data());
    auto* pp = reinterpret_cast<fftwf_complex*>(ws.prod.data());
    fftwf_execute_dft(inverse.columns, pp, pp);
    for (int r = 0; r < n; ++r) {
      const int y = ((rows[r] % plan.rows) + plan.rows) % plan.rows;
      std::copy_n(ws.prod.data() + static_cast<std::size_t>(y) * cc, cc, gathered.data() + static_cast<std::size_t>(r) * cc);
    }
    fftwf_execute_dft_c2r(inverse.rows, reinterpret_cast<fftwf_complex*>(gathered.data()), out.data());
  };
  correlate(t.fm, i.fm, ws.out[0]);   // sum f1 m1 f2 m2
  correlate(t.fm, i.m, ws.out[1]);    // sum f1 m1 m2
  correlate(t.m, i.fm, ws.out[2]);    // sum m1 f2 m2
  correlate(t.m, i.m, ws.out[3]);     // overlap count
  correlate(t.f2m, i.m, ws.out[4]);   // sum f1^2 m1 m2
  correlate(t.m, i.f2m, ws.out[5]);   // sum m1 f2^2 m2
  ncc->create(n, plan.cols);
  const float scale = static_cast<float>(1.0 / (static_cast<double>(plan.rows) * plan.cols));
  const float min_n = static_cast<float>(std::max(min_overlap, 2.0));
  for (int r = 0; r < n; ++r) {
    const std::size_t k = static_cast<std::size_t>(r) * plan.cols;
    CombineRow(&ws.out[0][k], &ws.out[1][k], &ws.out[2][k], &ws.out[3][k], &ws.out[4][k], &ws.out[5][k], plan.cols,
               scale, min_n, (*ncc)[r]);
  }
}

namespace {

struct RowPlans {
  fftwf_plan r2c = nullptr;  // one row, real -> cols / 2 + 1
  fftwf_plan c2r = nullptr;  // six rows (the six correlation terms of one row shift), in place
};

const RowPlans& GetRowPlans(int cols) {
  static std::map<int, std::unique_ptr<RowPlans>> cache;
  std::lock_guard<std::mutex> lock(PlannerMutex());
  auto& slot = cache[cols];
  if (!slot) {
    auto plan = std::make_unique<RowPlans>();
    const int cc = cols / 2 + 1;
    RealBuffer real(static_cast<std::size_t>(6) * cols);
    ComplexBuffer spec(static_cast<std::size_t>(6) * cc);
    auto* c = reinterpret_cast<fftwf_complex*>(spec.data());
    plan->r2c = fftwf_plan_dft_r2c_1d(cols, real.data(), c, kPlanFlags);
    const int n[1] = {cols};
    plan->c2r = fftwf_plan_many_dft_c2r(1, n, 6, c, nullptr, 1, cc, real.data(), nullptr, 1, cols, kPlanFlags);
    slot = std::move(plan);
  }
  return *slot;
}

constexpr int kRadialBlock = 16;  // frequencies per block of RadialBlock

// Sums over the row pairs (a row r, b row r + s) of conj(A) B for the six
// terms of the masked NCC, for kRadialBlock frequencies: the 12 running sums
// stay in vector registers while the rows stream by. a[k], b[k]: the six
// planes (RowSpectra order) at the first row and frequency of the block.
__attribute__((target_clones("avx512f", "avx2", "default"))) void RadialBlock(const float* const* a,
                                                                              const float* const* b, int n_rows,
                                                                              std::size_t row_stride, float* out) {
  typedef float V __attribute__((vector_size(kRadialBlock * sizeof(float))));
  V s12r = {}, s12i = {}, s1r = {}, s1i = {}, s2r = {}, s2i = {}, nr = {}, ni = {}, s11r = {}, s11i = {}, s22r = {},
    s22i = {};
  for (int r = 0; r < n_rows; ++r) {
    const std::size_t o = static_cast<std::size_t>(r) * row_stride;
    // (Unaligned loads by memcpy; no function returning V, whose ABI depends on the clone.)
    V fr, fi, mr, mi, qr, qi, gr, gi, hr, hi, pr, pi;
    V* dst[12] = {&fr, &fi, &mr, &mi, &qr, &qi, &gr, &gi, &hr, &hi, &pr, &pi};
    for (int k = 0; k < 6; ++k) {
      __builtin_memcpy(dst[k], a[k] + o, sizeof(V));
      __builtin_memcpy(dst[6 + k], b[k] + o, sizeof(V));
    }
    // conj(x) y = (xr yr + xi yi, xr yi - xi yr)
    s12r += fr * gr + fi * gi;  // sum f1 f2
    s12i += fr * gi - fi * gr;
    s1r += fr * hr + fi * hi;  // sum f1 m2
    s1i += fr * hi - fi * hr;
    s2r += mr * gr + mi * gi;  // sum m1 f2
    s2i += mr * gi - mi * gr;
    nr += mr * hr + mi * hi;  // overlap
    ni += mr * hi - mi * hr;
    s11r += qr * hr + qi * hi;  // sum f1^2 m2
    s11i += qr * hi - qi * hr;
    s22r += mr * pr + mi * pi;  // sum m1 f2^2
    s22i += mr * pi - mi * pr;
  }
  const V* sums[12] = {&s12r, &s12i, &s1r, &s1i, &s2r, &s2i, &nr, &ni, &s11r, &s11i, &s22r, &s22i};
  for (int k = 0; k < 12; ++k) __builtin_memcpy(out + k * kRadialBlock, sums[k], sizeof(V));
}

}  // namespace

void ComputeRowSpectra(const cv::Mat1f& values, const cv::Mat1f& mask, RowSpectra* out) {
  const int rows = values.rows, cols = values.cols, cc = cols / 2 + 1;
  const RowPlans& plans = GetRowPlans(cols);
  out->rows = rows;
  out->cols = cols;
  out->stride = (cc + kRadialBlock - 1) / kRadialBlock * kRadialBlock;
  out->planes.assign(static_cast<std::size_t>(6) * rows * out->stride, 0.0f);
  thread_local RealBuffer row;
  thread_local ComplexBuffer spec;
  row.resize(cols);
  spec.resize(cc);
  for (int y = 0; y < rows; ++y) {
    auto run = [&](int plane) {
      fftwf_execute_dft_r2c(plans.r2c, row.data(), reinterpret_cast<fftwf_complex*>(spec.data()));
      float* re = out->planes.data() + (static_cast<std::size_t>(plane) * rows + y) * out->stride;
      float* im = re + static_cast<std::size_t>(rows) * out->stride;
      for (int k = 0; k < cc; ++k) {
        re[k] = spec[k].real();
        im[k] = spec[k].imag();
      }
    };
    // values are 0 where the mask is 0, so f*m = f and f^2*m = f^2.
    std::copy(values[y], values[y] + cols, row.data());
    run(0);
    std::copy(mask[y], mask[y] + cols, row.data());
    run(2);
    for (int x = 0; x < cols; ++x) row[x] = values(y, x) * values(y, x);
    run(4);
  }
  out->valid = cv::sum(mask)[0];
}

void MaskedNccRadial(const RowSpectra& t, const RowSpectra& i, double min_overlap, int max_shift, cv::Mat1f* ncc) {
  // Along the rows the correlation is a plain sum over the row pairs that
  // exist in both images, sum_r conj(T_r) I_{r+s} per frequency (no padding,
  // no transforms along the radius: the 2D version transformed all ~60 rows
  // of six terms to read back 5 of them); along the columns it stays
  // circular, one inverse transform per term and shift.
  // Same angle bins on both sides (Compare refuses signatures prepared with different configs).
  assert(t.cols == i.cols && t.stride == i.stride);
  const int cols = t.cols, cc = cols / 2 + 1, n_shifts = 2 * max_shift + 1;
  const RowPlans& plans = GetRowPlans(cols);
  thread_local ComplexBuffer acc;
  thread_local RealBuffer out;
  acc.resize(static_cast<std::size_t>(6) * cc);
  out.resize(static_cast<std::size_t>(6) * cols);
  ncc->create(n_shifts, cols);
  const float scale = static_cast<float>(1.0 / cols);
  const float min_n = static_cast<float>(std::max(min_overlap, 2.0));
  float block[12 * kRadialBlock];
  for (int si = 0; si < n_shifts; ++si) {
    const int s = si - max_shift;
    const int r0 = std::max(0, -s), r1 = std::min(t.rows, i.rows - s);
    if (r1 <= r0) {  // no pair of rows at this shift: nothing overlaps
      std::fill(acc.begin(), acc.end(), std::complex<float>(0.0f, 0.0f));
    }
    for (int k0 = 0; k0 < cc && r1 > r0; k0 += kRadialBlock) {
      const float* a[6];
      const float* b[6];
      for (int p = 0; p < 6; ++p) {
        a[p] = t.Plane(p, r0) + k0;
        b[p] = i.Plane(p, r0 + s) + k0;
      }
      RadialBlock(a, b, r1 - r0, static_cast<std::size_t>(t.stride), block);
      const int n = std::min(kRadialBlock, cc - k0);
      for (int term = 0; term < 6; ++term) {
        std::complex<float>* dst = acc.data() + static_cast<std::size_t>(term) * cc + k0;
        const float* re = block + 2 * term * kRadialBlock;
        for (int k = 0; k < n; ++k) dst[k] = {re[k], re[kRadialBlock + k]};
      }
    }
    fftwf_execute_dft_c2r(plans.c2r, reinterpret_cast<fftwf_complex*>(acc.data()), out.data());
    const float* o = out.data();
    // Terms in the order CombineRow takes them: s12, s1, s2, n, s11, s22.
    CombineRow(o, o + cols, o + 2 * cols, o + 3 * cols, o + 4 * cols, o + 5 * cols, cols, scale, min_n, (*ncc)[si]);
  }
}

namespace {

// Two correlations in one complex inverse: IFFT(conj(A1) B1 + i conj(A2) B2)
// = c1 + i c2, into `out` (rows [0, out_rows) hold it, row stride plan.cols
// complex values): c1 in the real parts, c2 in the imaginary parts (split by
// Deinterleave row by row where they are combined, while in cache). Pairs
// are chosen of similar magnitude, so that neither drowns in the other's
// round-off.
void CorrelatePair(const FftPlan& plan, const RegionPlans& plans, const ComplexBuffer& a1, const ComplexBuffer& b1,
                   const ComplexBuffer& a2, const ComplexBuffer& b2, Workspace& ws, ComplexBuffer& out) {
  PackProducts(a1.data(), b1.data(), a2.data(), b2.data(), plan.rows, plan.cols, ws.packed.data());
  auto* z = reinterpret_cast<fftwf_complex*>(ws.packed.data());
  auto* z2 = reinterpret_cast<fftwf_complex*>(ws.packed2.data());
  fftwf_execute_dft(plans.inv_cols, z, z2);
  fftwf_execute_dft(plans.inv_rows, z2, reinterpret_cast<fftwf_complex*>(out.data()));
}

}  // namespace

void MaskedNccMapsOfImage(const MaskedSpectra& t, const cv::Mat1f& values, const cv::Mat1f& mask,
                          double min_overlap, cv::Mat1f* ncc, cv::Mat1f* overlap) {
  const FftPlan& plan = GetPlan(t.rows, t.cols);
  Workspace& ws = ThreadWorkspace();
  ws.Fit(plan);
  const RegionPlans& plans = GetRegionPlans(plan.rows, plan.cols, values.rows, plan.rows);
  thread_local ComplexBuffer i_fm, i_m, i_f2m;
  ForwardRegionPair(plans, plan.rows, plan.cols, values, mask, false, ws.packed, ws.packed2, &i_fm, &i_m);
  ForwardRegionOne(plans, plan.rows, plan.cols, values, true, ws.real, ws.half, &i_f2m);
  CorrelatePair(plan, plans, t.fm, i_fm, t.m, i_m, ws, ws.pair[0]);
  CorrelatePair(plan, plans, t.fm, i_m, t.m, i_fm, ws, ws.pair[1]);
  CorrelatePair(plan, plans, t.f2m, i_m, t.m, i_f2m, ws, ws.pair[2]);
  ncc->create(plan.rows, plan.cols);
  if (overlap != nullptr) overlap->create(plan.rows, plan.cols);
  const float scale = static_cast<float>(1.0 / (static_cast<double>(plan.rows) * plan.cols));
  const float min_n = static_cast<float>(std::max(min_overlap, 2.0));
  for (int y = 0; y < plan.rows; ++y) {
    const std::size_t k = static_cast<std::size_t>(y) * plan.cols;
    // Pairs (s12, n), (s1, s2), (s11, s22).
    for (int i = 0; i < 3; ++i) {
      static constexpr int kTerms[3][2] = {{0, 3}, {1, 2}, {4, 5}};
      Deinterleave(reinterpret_cast<const float*>(ws.pair[i].data() + k), plan.cols, &ws.out[kTerms[i][0]][k],
                   &ws.out[kTerms[i][1]][k]);
    }
    CombineRow(&ws.out[0][k], &ws.out[1][k], &ws.out[2][k], &ws.out[3][k], &ws.out[4][k], &ws.out[5][k], plan.cols,
               scale, min_n, (*ncc)[y]);
    if (overlap != nullptr) OverlapRow(&ws.out[3][k], plan.cols, scale, (*overlap)[y]);
  }
}

void MaskedNccRegion(const MaskedSpectra& t, const cv::Mat1f& region_v, const cv::Mat1f& region_m,
                     double min_overlap, int limit, cv::Mat1f* ncc,
                     double region_valid) {
  const FftPlan& plan = GetPlan(t.rows, t.cols);
  Workspace& ws = ThreadWorkspace();
  ws.Fit(plan);
  const std::size_t nc = plan.ComplexSize();
  const float scale = static_cast<float>(1.0 / (static_cast<double>(plan.rows) * plan.cols));
  const int ts_r = t.src_rows, ts_c = t.src_cols;
  limit = std::min(limit, plan.rows);
  if (region_valid < 0) region_valid = cv::sum(region_m)[0];
  const bool region_full = region_valid == static_cast<double>(region_v.rows) * region_v.cols;
  const RegionPlans& plans = GetRegionPlans(plan.rows, plan.cols, region_v.rows, limit);
  // Forward transforms of the region: values always, mask unless full,
  // squares unless the template is full; two of them in one complex transform.
  thread_local ComplexBuffer i_fm, i_m, i_f2m;
  if (!region_full && !t.full) {
    ForwardRegionPair(plans, plan.rows, plan.cols, region_v, region_m, false, ws.packed, ws.packed2, &i_fm, &i_m);
    ForwardRegionOne(plans, plan.rows, plan.cols, region_v, true, ws.real, ws.half, &i_f2m);
  } else if (!region_full) {
    ForwardRegionPair(plans, plan.rows, plan.cols, region_v, region_m, false, ws.packed, ws.packed2, &i_fm, &i_m);
  } else if (!t.full) {
    ForwardRegionPair(plans, plan.rows, plan.cols, region_v, region_v, true, ws.packed, ws.packed2, &i_fm, &i_f2m);
  } else {
    ForwardRegionOne(plans, plan.rows, plan.cols, region_v, false, ws.real, ws.half, &i_fm);
  }
  // c(u) = sum_x a(x) b(x + u) = IFFT(conj(A) B)(u), one real correlation;
  // only rows [0, limit) are read (by CombineRow below).
  auto correlate = [&](const ComplexBuffer& a, const ComplexBuffer& b, RealBuffer& out) {
    ConjMultiply(a.data(), b.data(), nc, ws.prod.data());
    fftwf_execute_dft(plans.h_cols, reinterpret_cast<fftwf_complex*>(ws.prod.data()),
                      reinterpret_cast<fftwf_complex*>(ws.prod2.data()));
    fftwf_execute_dft_c2r(plans.h_rows, reinterpret_cast<fftwf_complex*>(ws.prod2.data()), out.data());
  };
  // A constant term, stored unnormalized like an FFT output.
  const std::size_t used = static_cast<std::size_t>(limit) * plan.cols;
  auto constant = [&](double v, RealBuffer& out) {
    std::fill(out.begin(), out.begin() + used, static_cast<float>(v / scale));
  };
  // Terms: 0 sum f1 f2, 1 sum f1 m2, 2 sum m1 f2, 3 overlap, 4 sum f1^2 m2, 5 sum m1 f2^2.
  // Pairs of correlations go through one packed inverse each (rows [0, limit)
  // split into their two terms row by row below, while in cache);
  // pair_terms: the terms in the real and the imaginary part of each pair.
  int n_pairs = 0;
  int pair_terms[3][2];
  auto pair = [&](const ComplexBuffer& a1, const ComplexBuffer& b1, int term1, const ComplexBuffer& a2,
                  const ComplexBuffer& b2, int term2) {
    CorrelatePair(plan, plans, a1, b1, a2, b2, ws, ws.pair[n_pairs]);
    pair_terms[n_pairs][0] = term1;
    pair_terms[n_pairs][1] = term2;
    ++n_pairs;
  };
  if (!region_full && !t.full) {
    pair(t.fm, i_fm, 0, t.m, i_m, 3);
    pair(t.fm, i_m, 1, t.m, i_fm, 2);
    pair(t.f2m, i_m, 4, t.m, i_f2m, 5);
  } else if (!region_full) {
    pair(t.fm, i_fm, 0, t.f2m, i_m, 4);
    correlate(t.fm, i_m, ws.out[1]);
  } else if (!t.full) {
    pair(t.fm, i_fm, 0, t.m, i_f2m, 5);
    correlate(t.m, i_fm, ws.out[2]);
    constant(t.sum_f, ws.out[1]);
    constant(t.sum_f2, ws.out[4]);
    constant(t.valid, ws.out[3]);
  } else {
    correlate(t.fm, i_fm, ws.out[0]);
    constant(t.sum_f, ws.out[1]);
    constant(t.sum_f2, ws.out[4]);
  }
  if (t.full) {
    // Box sums of the region over the template's footprint at each displacement.
    thread_local cv::Mat sum, sqsum, msum;
    cv::integral(region_v, sum, sqsum, CV_64F, CV_64F);
    cv::integral(region_m, msum, CV_64F);
    for (int y = 0; y < limit; ++y) {
      const double *a0 = sum.ptr<double>(y), *a1 = sum.ptr<double>(y + ts_r);
      const double *q0 = sqsum.ptr<double>(y), *q1 = sqsum.ptr<double>(y + ts_r);
      const double *m0 = msum.ptr<double>(y), *m1 = msum.ptr<double>(y + ts_r);
      const std::size_t k = static_cast<std::size_t>(y) * plan.cols;
      for (int x = 0; x < limit; ++x) {
        const int x1 = x + ts_c;
        ws.out[2][k + x] = static_cast<float>((a1[x1] - a1[x] - a0[x1] + a0[x]) / scale);
        ws.out[5][k + x] = static_cast<float>((q1[x1] - q1[x] - q0[x1] + q0[x]) / scale);
        ws.out[3][k + x] = static_cast<float>((m1[x1] - m1[x] - m0[x1] + m0[x]) / scale);
      }
    }
  }
  ncc->create(limit, limit);
  const float min_n = static_cast<float>(std::max(min_overlap, 2.0));
  for (int y = 0; y < limit; ++y) {
    const std::size_t k = static_cast<std::size_t>(y) * plan.cols;
    for (int i = 0; i < n_pairs; ++i) {
      Deinterleave(reinterpret_cast<const float*>(ws.pair[i].data() + k), limit, &ws.out[pair_terms[i][0]][k],
                   &ws.out[pair_terms[i][1]][k]);
    }
    CombineRow(&ws.out[0][k], &ws.out[1][k], &ws.out[2][k], &ws.out[3][k], &ws.out[4][k], &ws.out[5][k], limit,
               scale, min_n, (*ncc)[y]);
  }
}

namespace {

// The six sums of the masked NCC of an s_r x s_c template against the patch
// window whose rows start at p, pm, p2 (row steps in floats): per column x
// a float sum down the rows (in the order of the rows), then the columns
// summed in double (in the order of x). Sixteen columns at a time, their
// six running sums in vector registers while the rows stream by (they were
// six arrays in memory, loaded and stored for every row); the columns past
// the last whole block of sixteen the same way one at a time. The same
// operations in the same order as before, so the same values.
__attribute__((target_clones("avx512f", "avx2", "default"))) void DirectSums(
    const float* const* rows, const std::size_t* steps, int s_r, int s_c, float* __restrict col, double* terms) {
  // rows / steps: t, tm, t2, p, pm, p2.
  const float *t = rows[0], *tm = rows[1], *t2 = rows[2], *p = rows[3], *pm = rows[4], *p2 = rows[5];
  const std::size_t st = steps[0], stm = steps[1], st2 = steps[2], sp = steps[3], spm = steps[4], sp2 = steps[5];
  constexpr int kW = 16;
  typedef float V __attribute__((vector_size(kW * sizeof(float))));
  // Columns [x, x + width) summed over the rows as type T (a vector of kW
  // floats, or one float; told by a pointer, since clang refuses vector
  // arguments by value outside the AVX-512 clone), stored to col.
  auto sum_columns = [&]<typename T>(int x, const T*) {
    T a[6] = {};
    for (int y = 0; y < s_r; ++y) {
      const std::size_t yy = y;
      T vt, vtm, vt2, vp, vpm, vp2;
      __builtin_memcpy(&vt, t + yy * st + x, sizeof(T));
      __builtin_memcpy(&vtm, tm + yy * stm + x, sizeof(T));
      __builtin_memcpy(&vt2, t2 + yy * st2 + x, sizeof(T));
      __builtin_memcpy(&vp, p + yy * sp + x, sizeof(T));
      __builtin_memcpy(&vpm, pm + yy * spm + x, sizeof(T));
      __builtin_memcpy(&vp2, p2 + yy * sp2 + x, sizeof(T));
      a[0] += vt * vp;
      a[1] += vt * vpm;
      a[2] += vtm * vp;
      a[3] += vtm * vpm;
      a[4] += vt2 * vpm;
      a[5] += vtm * vp2;
    }
    for (int k = 0; k < 6; ++k) __builtin_memcpy(col + k * s_c + x, &a[k], sizeof(T));
  };
  int x0 = 0;
  for (; x0 + kW <= s_c; x0 += kW) sum_columns(x0, static_cast<const V*>(nullptr));
  for (int x = x0; x < s_c; ++x) sum_columns(x, static_cast<const float*>(nullptr));
  // Six independent double sums side by side (each in the order of x).
  double tot[6] = {};
  for (int x = 0; x < s_c; ++x) {
    for (int k = 0; k < 6; ++k) tot[k] += col[k * s_c + x];
  }
  for (int k = 0; k < 6; ++k) terms[k] = tot[k];
}

}  // namespace

float DirectMaskedNccAt(const cv::Mat1f& tv, const cv::Mat1f& tm, const cv::Mat1f& t2, const cv::Mat1f& pv,
                        const cv::Mat1f& pm, const cv::Mat1f& p2, int dy, int dx, double min_overlap) {
  const int s_r = tv.rows, s_c = tv.cols;
  thread_local std::vector<float> col;
  col.resize(static_cast<std::size_t>(6) * s_c);
  const float* rows[6] = {tv[0], tm[0], t2[0], pv[dy] + dx, pm[dy] + dx, p2[dy] + dx};
  const std::size_t steps[6] = {tv.step1(), tm.step1(), t2.step1(), pv.step1(), pm.step1(), p2.step1()};
  double sums[6];
  DirectSums(rows, steps, s_r, s_c, col.data(), sums);
  float terms[6];
  for (int k = 0; k < 6; ++k) terms[k] = static_cast<float>(sums[k]);
  float out = 0;
  // Terms in the order CombineRow takes them: s12, s1 (t m2), s2 (m1 p), n, s11, s22.
  CombineRow(&terms[0], &terms[1], &terms[2], &terms[3], &terms[4], &terms[5], 1, 1.0f,
             static_cast<float>(std::max(min_overlap, 2.0)), &out);
  return out;
}

void DirectMaskedNcc(const cv::Mat1f& tv, const cv::Mat1f& tm, const cv::Mat1f& pv, const cv::Mat1f& pm, int n,
                     double min_overlap, cv::Mat1f* ncc) {
  cv::Mat1f t2, p2;
  cv::multiply(tv, tv, t2);
  cv::multiply(pv, pv, p2);
  ncc->create(n, n);
  for (int dy = 0; dy < n; ++dy) {
    for (int dx = 0; dx < n; ++dx) (*ncc)(dy, dx) = DirectMaskedNccAt(tv, tm, t2, pv, pm, p2, dy, dx, min_overlap);
  }
}

}  // namespace ballistics::correlate_internal
