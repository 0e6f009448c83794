// Correlation engine: orientation search, cell registration, congruent
// matching cells. The pipeline and the geometry convention are described in
// include/ballistics/correlate.h; the reasoning behind the defaults in
// docs/accuracy.md.
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <immintrin.h>
#include <opencv2/imgproc.hpp>

#include "ballistics/correlate.h"
#include "fft.h"

namespace ballistics {

using correlate_internal::ComputeSpectra;
using correlate_internal::FastFftSize;
using correlate_internal::ComputeTemplateSpectra;
using correlate_internal::DirectMaskedNccAt;
using correlate_internal::MaskedNccMaps;
using correlate_internal::MaskedNccMapsOfImage;
using correlate_internal::MaskedNccRegion;
using correlate_internal::ComputeRowSpectra;
using correlate_internal::MaskedNccRadial;
using correlate_internal::RowSpectra;
using correlate_internal::MaskedSpectra;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kMaxSignatureSide = 20000;
// Interpolated mask values at least this large count as valid: with bilinear
// interpolation only points whose four neighbours are all valid reach 1.
constexpr float kMaskValid = 0.999f;

double Rad(double deg) { return deg * kPi / 180.0; }

// Angle in (-180, 180].
double WrapDeg(double d) {
  d = std::fmod(d, 360.0);
  if (d > 180.0) d -= 360.0;
  if (d <= -180.0) d += 360.0;
  return d;
}

double AngleDiffDeg(double a, double b) { return std::abs(WrapDeg(a - b)); }

// q = Rot(theta) p + t, Rot(theta) = [[c, s], [-s, c]] (OpenCV's convention:
// positive theta turns the image counter-clockwise as displayed, y down).
struct Rigid {
  double theta_deg = 0, tx = 0, ty = 0;
  cv::Point2d Rotate(cv::Point2d p) const {
    const double c = std::cos(Rad(theta_deg)), s = std::sin(Rad(theta_deg));
    return {c * p.x + s * p.y, -s * p.x + c * p.y};
  }
  cv::Point2d Apply(cv::Point2d p) const { return Rotate(p) + cv::Point2d(tx, ty); }
  Rigid Inverse() const {
    Rigid inv{-theta_deg, 0, 0};
    const cv::Point2d t = inv.Rotate({-tx, -ty});
    inv.tx = t.x;
    inv.ty = t.y;
    return inv;
  }
};

// One resolution of a signature: values normalized to zero mean and unit
// variance over the valid points (keeps float FFT sums well conditioned),
// 0 where invalid; mask 1/0.
struct Level {
  double pixel_um = 0;
  cv::Mat1f v, m;
  cv::Mat1b m4;  // 1 where the point and its right, lower and lower-right neighbours are valid
  // v with NaN where m is 0: a bilinear interpolation of it is NaN exactly
  // when one of the four neighbours is invalid (NaN times a zero weight is
  // NaN too), so the vectorized warp needs no separate look-up of m4.
  cv::Mat1f vn;
  double cx = 0, cy = 0;  // image centre in pixels
  double valid = 0;
  cv::Point2d ToPixel(cv::Point2d p_um) const { return {p_um.x / pixel_um + cx, p_um.y / pixel_um + cy}; }
};

// NaN-aware area resampling to (about) target_pixel_um; never upsamples.
Level MakeLevel(const cv::Mat1f& values, double pixel_um, double target_pixel_um) {
  cv::Mat1f v(values.size()), m(values.size());
  for (int y = 0; y < values.rows; ++y) {
    for (int x = 0; x < values.cols; ++x) {
      const float z = values(y, x);
      const bool ok = std::isfinite(z);
      v(y, x) = ok ? z : 0.0f;
      m(y, x) = ok ? 1.0f : 0.0f;
    }
  }
  Level level;
  level.pixel_um = pixel_um;
  if (target_pixel_um > pixel_um * 1.01) {
    const double f = pixel_um / target_pixel_um;
    const cv::Size size(std::max(1, static_cast<int>(std::lround(values.cols * f))),
                        std::max(1, static_cast<int>(std::lround(values.rows * f))));
    cv::Mat1f vs, ms;
    cv::resize(v, vs, size, 0, 0, cv::INTER_AREA);
    cv::resize(m, ms, size, 0, 0, cv::INTER_AREA);
    // A coarse point is valid when at least half of its footprint was.
    for (int y = 0; y < size.height; ++y) {
      for (int x = 0; x < size.width; ++x) {
        const float w = ms(y, x);
        if (w >= 0.5f) {
          vs(y, x) /= w;
          ms(y, x) = 1.0f;
        } else {
          vs(y, x) = 0.0f;
          ms(y, x) = 0.0f;
        }
      }
    }
    v = vs;
    m = ms;
    level.pixel_um = pixel_um * 0.5 *
                     (static_cast<double>(values.cols) / size.width + static_cast<double>(values.rows) / size.height);
  }
  double n = 0, sum = 0, sum2 = 0;
  for (int y = 0; y < v.rows; ++y) {
    for (int x = 0; x < v.cols; ++x) {
      if (m(y, x) > 0) {
        n += 1;
        sum += v(y, x);
        sum2 += static_cast<double>(v(y, x)) * v(y, x);
      }
    }
  }
  const double mean = n > 0 ? sum / n : 0.0;
  const double var = n > 1 ? std::max(0.0, sum2 / n - mean * mean) : 0.0;
  const double inv_sd = var > 0 ? 1.0 / std::sqrt(var) : 0.0;
  for (int y = 0; y < v.rows; ++y) {
    for (int x = 0; x < v.cols; ++x) {
      v(y, x) = m(y, x) > 0 ? static_cast<float>((v(y, x) - mean) * inv_sd) : 0.0f;
    }
  }
  level.v = v;
  level.m = m;
  level.m4 = cv::Mat1b::zeros(m.size());
  for (int y = 0; y + 1 < m.rows; ++y) {
    for (int x = 0; x + 1 < m.cols; ++x) {
      level.m4(y, x) = m(y, x) > 0 && m(y, x + 1) > 0 && m(y + 1, x) > 0 && m(y + 1, x + 1) > 0;
    }
  }
  level.vn = v.clone();
  level.vn.setTo(std::numeric_limits<float>::quiet_NaN(), m <= 0);
  level.cx = (v.cols - 1) / 2.0;
  level.cy = (v.rows - 1) / 2.0;
  level.valid = n;
  return level;
}

struct Cell {
  int row = 0, col = 0;
  cv::Point2d center_um;  // relative to the image centre
  cv::Rect fine_rect;     // the cell in the fine level (may reach past its border: zeros there)
  double valid_fraction = 0;
  double valid = 0;       // valid points in the fine level
  // The same cell on the search level (cell_search_downsample x coarser):
  // its centre (within half a search pixel of center_um), valid points and
  // template spectra at the search-region FFT size.
  cv::Point2d search_center_um;
  double search_valid = 0;
  MaskedSpectra spectra;
};

// 16 points at a time of one output row of WarpMasked over [xa, xb), where
// every source point (bx + a00 x, by + a10 x) lies inside [0, w - 1) x
// [0, h - 1): the same float operations in the same order as the per-point
// code (so the same values), the four neighbours gathered from the NaN
// plane. Points where an invalid neighbour might carry no weight (on a grid
// line) are appended to slow (*n_slow of them) for the per-point code
// (the caller's buffer holds xb - xa). The last < 16 points go in one
// iteration with a lane mask (masked-off lanes gather and store nothing):
// small warps such as RefineHit's patches are 40 points wide. Returns xb.
// (GCC 12 warns about the undefined first operand inside its own AVX-512
// conversion intrinsics: a false positive.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// fp-contract=off: GCC would otherwise fuse the multiplies and adds of the
// intrinsics into FMAs, which round once instead of twice (other values than
// the per-point code's).
__attribute__((target("avx512f"), optimize("fp-contract=off"))) int WarpRowInteriorAvx512(const float* vn, int v_step, float bx, float by,
                                                            float a00, float a10, int xa, int xb, float* pv,
                                                            float* pm, int* slow, int* n_slow) {
  const __m512 lane = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 vbx = _mm512_set1_ps(bx), vby = _mm512_set1_ps(by), va00 = _mm512_set1_ps(a00),
               va10 = _mm512_set1_ps(a10), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  const __m512i step = _mm512_set1_epi32(v_step);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  int x = xa;
  for (; x < xb; x += 16) {
    const __mmask16 live = xb - x >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (xb - x)) - 1);
    // x + lane is exact in float (x < 2^24), as static_cast<float>(x) is.
    const __m512 xf = _mm512_add_ps(_mm512_set1_ps(static_cast<float>(x)), lane);
    const __m512 fsx = _mm512_add_ps(vbx, _mm512_mul_ps(va00, xf));
    const __m512 fsy = _mm512_add_ps(vby, _mm512_mul_ps(va10, xf));
    const __m512i x0 = _mm512_cvttps_epi32(fsx), y0 = _mm512_cvttps_epi32(fsy);
    const __m512 fx = _mm512_sub_ps(fsx, _mm512_cvtepi32_ps(x0));
    const __m512 fy = _mm512_sub_ps(fsy, _mm512_cvtepi32_ps(y0));
    const __m512i k = _mm512_add_epi32(_mm512_mullo_epi32(y0, step), x0);
    // Each neighbour pair (k, k + 1) of a row is one 64-bit element: 8-lane
    // gathers of pairs, then split into the left and right neighbours (half
    // the gathered elements of four 16-lane gathers of single values).
    const __m512i k1 = _mm512_add_epi32(k, step);
    const __mmask8 live_lo = static_cast<__mmask8>(live), live_hi = static_cast<__mmask8>(live >> 8);
    const __m512 p0_lo = _mm512_castpd_ps(
        _mm512_mask_i32gather_pd(_mm512_setzero_pd(), live_lo, _mm512_castsi512_si256(k), vn, 4));
    const __m512 p0_hi = _mm512_castpd_ps(_mm512_mask_i32gather_pd(
        _mm512_setzero_pd(), live_hi, _mm512_castsi512_si256(_mm512_shuffle_i64x2(k, k, 0xee)), vn, 4));
    const __m512 p1_lo = _mm512_castpd_ps(
        _mm512_mask_i32gather_pd(_mm512_setzero_pd(), live_lo, _mm512_castsi512_si256(k1), vn, 4));
    const __m512 p1_hi = _mm512_castpd_ps(_mm512_mask_i32gather_pd(
        _mm512_setzero_pd(), live_hi, _mm512_castsi512_si256(_mm512_shuffle_i64x2(k1, k1, 0xee)), vn, 4));
    const __m512 r00 = _mm512_permutex2var_ps(p0_lo, even, p0_hi);
    const __m512 r01 = _mm512_permutex2var_ps(p0_lo, odd, p0_hi);
    const __m512 r10 = _mm512_permutex2var_ps(p1_lo, even, p1_hi);
    const __m512 r11 = _mm512_permutex2var_ps(p1_lo, odd, p1_hi);
    const __m512 gx = _mm512_sub_ps(one, fx), gy = _mm512_sub_ps(one, fy);
    // (1 - fy) * ((1 - fx) * r00 + fx * r01) + fy * ((1 - fx) * r10 + fx * r11)
    const __m512 top = _mm512_add_ps(_mm512_mul_ps(gx, r00), _mm512_mul_ps(fx, r01));
    const __m512 bottom = _mm512_add_ps(_mm512_mul_ps(gx, r10), _mm512_mul_ps(fx, r11));
    const __m512 val = _mm512_add_ps(_mm512_mul_ps(gy, top), _mm512_mul_ps(fy, bottom));
    const __mmask16 ok = _mm512_cmp_ps_mask(val, val, _CMP_ORD_Q);
    _mm512_mask_storeu_ps(pv + x, live, _mm512_maskz_mov_ps(ok, val));
    _mm512_mask_storeu_ps(pm + x, live, _mm512_maskz_mov_ps(ok, one));
    const __mmask16 on_line = _mm512_cmp_ps_mask(fx, zero, _CMP_EQ_OQ) | _mm512_cmp_ps_mask(fy, zero, _CMP_EQ_OQ);
    unsigned bits = static_cast<unsigned>(static_cast<__mmask16>(~ok) & on_line & live);
    while (bits != 0) {
      slow[(*n_slow)++] = x + __builtin_ctz(bits);
      bits &= bits - 1;
    }
  }
  return xb;
}
#pragma GCC diagnostic pop

bool HaveAvx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

// Warps the region of `level` seen through the affine map `m` (destination
// pixel -> source pixel) into v/mask: bilinear values, mask 1 only where
// every source point with a non-zero weight is valid (NaN never leaks into
// an interpolated value), 0 and value 0 elsewhere. With `spans` (one
// [begin, end) per row) only those points are written; the rest of v/mask is
// left as it was (for callers that read only parts of the canvas). One pass
// for values and mask, with the all-four-neighbours-valid flags precomputed
// per level; on AVX-512 machines the part of each row whose source points
// lie strictly inside the level goes 16 points at a time
// (WarpRowInteriorAvx512, the same values), the rest point by point.
void WarpMasked(const Level& level, const cv::Matx23d& m, cv::Size size, cv::Mat1f* v, cv::Mat1f* mask,
                const std::vector<std::pair<int, int>>* spans = nullptr) {
  v->create(size);
  mask->create(size);
  const int w = level.v.cols, h = level.v.rows;
  const cv::Mat1f& lm = level.m;
  auto valid = [&](int x, int y) { return x >= 0 && y >= 0 && x < w && y < h && lm(y, x) > 0; };
  const bool simd = HaveAvx512() && !level.vn.empty() && level.vn.isContinuous();
  thread_local std::vector<int> slow;
  slow.resize(size.width);
  // [lo, hi] of x where lo_bound + margin <= b + a x <= hi_bound - margin (a
  // margin of 0.01 pixel covers the float round-off of the source position).
  auto clip = [](double b, double a, double lo_bound, double hi_bound, double* lo, double* hi) {
    const double margin = 0.01;
    if (a == 0) {
      if (!(b >= lo_bound + margin && b <= hi_bound - margin)) *hi = *lo - 1;  // empty
      return;
    }
    double x1 = (lo_bound + margin - b) / a, x2 = (hi_bound - margin - b) / a;
    if (x1 > x2) std::swap(x1, x2);
    *lo = std::max(*lo, x1);
    *hi = std::min(*hi, x2);
  };
  for (int y = 0; y < size.height; ++y) {
    int sb = 0, se = size.width;  // the part of the row to write
    if (spans != nullptr) {
      sb = std::max(0, (*spans)[y].first);
      se = std::min(size.width, (*spans)[y].second);
      if (se <= sb) continue;
    }
    float* pv = (*v)[y];
    float* pm = (*mask)[y];
    const double bx = m(0, 1) * y + m(0, 2), by = m(1, 1) * y + m(1, 2);
    const float fbx = static_cast<float>(bx), fby = static_cast<float>(by);
    const float a00 = static_cast<float>(m(0, 0)), a10 = static_cast<float>(m(1, 0));
    auto point = [&](int x) {
      // Fast path: all four neighbours inside and valid (the bulk of the points).
      const float fsx = fbx + a00 * x, fsy = fby + a10 * x;
      if (fsx >= 0 && fsy >= 0) {
        const int x0 = static_cast<int>(fsx), y0 = static_cast<int>(fsy);
        if (x0 < w - 1 && y0 < h - 1) {
          const float fx = fsx - x0, fy = fsy - y0;
          if (level.m4(y0, x0)) {
            const float* r0 = level.v[y0] + x0;
            const float* r1 = level.v[y0 + 1] + x0;
            pv[x] = (1 - fy) * ((1 - fx) * r0[0] + fx * r0[1]) + fy * ((1 - fx) * r1[0] + fx * r1[1]);
            pm[x] = 1.0f;
            return;
          }
          // Strictly between grid points an invalid neighbour always has weight.
          if (fx > 0 && fy > 0) {
            pv[x] = 0.0f;
            pm[x] = 0.0f;
            return;
          }
        }
      } else if (fsx < -2 || fsy < -2) {
        pv[x] = 0.0f;
        pm[x] = 0.0f;
        return;
      }
      // Far past the right or lower border (the double-precision test below
      // would reject it too: floor(sx) >= w or floor(sy) >= h).
      if (fsx > w + 2 || fsy > h + 2) {
        pv[x] = 0.0f;
        pm[x] = 0.0f;
        return;
      }
      const double sx = bx + m(0, 0) * x, sy = by + m(1, 0) * x;
      const double flx = std::floor(sx), fly = std::floor(sy);
      pv[x] = 0.0f;
      pm[x] = 0.0f;
      if (!(flx >= -1 && fly >= -1 && flx < w && fly < h)) return;
      const int x0 = static_cast<int>(flx), y0 = static_cast<int>(fly);
      const float fx = static_cast<float>(sx - flx), fy = static_cast<float>(sy - fly);
      bool ok;
      if (x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1 && level.m4(y0, x0)) {
        ok = true;
      } else {
        ok = valid(x0, y0) && (fx == 0 || valid(x0 + 1, y0)) && (fy == 0 || valid(x0, y0 + 1)) &&
             (fx == 0 || fy == 0 || valid(x0 + 1, y0 + 1));
      }
      if (!ok) return;
      const float* r0 = level.v[y0] + x0;
      const float v00 = r0[0];
      const float v01 = fx > 0 ? r0[1] : 0.0f;
      const float v10 = fy > 0 ? level.v(y0 + 1, x0) : 0.0f;
      const float v11 = fx > 0 && fy > 0 ? level.v(y0 + 1, x0 + 1) : 0.0f;
      pv[x] = (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11);
      pm[x] = 1.0f;
    };
    // The footprint of the row, [fa, fb): outside it the source point lies
    // almost half a pixel or more past [-1, w) x [-1, h) (the float position
    // differs from the double one by far less), where point() gives value 0
    // and mask 0 on every path; those points are zero-filled without it. (The
    // canvases of RegisterCells and AngleProfile are larger than the target,
    // turned: a third of their points lie outside it.)
    // The points x of [a, b) whose source lies in [lo, hi_x] x [lo, hi_y]
    // (empty at a when none).
    auto sub_range = [&](int a, int b, double lo, double hi_x, double hi_y) {
      double x_lo = a, x_hi = b - 1;
      clip(bx, m(0, 0), lo, hi_x, &x_lo, &x_hi);
      clip(by, m(1, 0), lo, hi_y, &x_lo, &x_hi);
      if (!(x_hi >= x_lo)) return std::pair<int, int>(a, a);
      const int ra = std::clamp(static_cast<int>(std::ceil(x_lo)), a, b);
      return std::pair<int, int>(ra, std::clamp(static_cast<int>(std::floor(x_hi)) + 1, ra, b));
    };
    const auto [fa, fb] = sub_range(sb, se, -1.5, w + 0.5, h + 0.5);
    std::fill(pv + sb, pv + fa, 0.0f);
    std::fill(pm + sb, pm + fa, 0.0f);
    std::fill(pv + fb, pv + se, 0.0f);
    std::fill(pm + fb, pm + se, 0.0f);
    // The interior part of the row, [xa, xb), within the footprint.
    const auto [xa, xb] = simd ? sub_range(fa, fb, 0.0, w - 1.0, h - 1.0) : std::pair<int, int>(fa, fa);
    int done = xa;
    if (xb > xa) {
      int n_slow = 0;
      done = WarpRowInteriorAvx512(level.vn[0], static_cast<int>(level.vn.step1()), fbx, fby, a00, a10, xa, xb, pv,
                                   pm, slow.data(), &n_slow);
      for (int k = 0; k < n_slow; ++k) point(slow[k]);
    }
    for (int x = fa; x < xa; ++x) point(x);
    for (int x = done; x < fb; ++x) point(x);
  }
}

// The rect of src as its own image: a view when it lies inside, else a
// zero-filled copy of the overlap (into the scratch matrix).
cv::Mat1f CropOrPad(const cv::Mat1f& src, const cv::Rect& rect, cv::Mat1f* scratch) {
  const cv::Rect inside = rect & cv::Rect(0, 0, src.cols, src.rows);
  if (inside == rect) return src(rect);
  scratch->create(rect.height, rect.width);
  scratch->setTo(0.0f);
  if (inside.area() > 0) src(inside).copyTo((*scratch)(cv::Rect(inside.x - rect.x, inside.y - rect.y, inside.width,
                                                                 inside.height)));
  return *scratch;
}

// Sub-pixel offset of a peak from a parabola through three samples.
double ParabolaOffset(float a, float b, float c) {
  if (a < -1.5f || c < -1.5f) return 0.0;
  const double d = static_cast<double>(a) - 2.0 * b + c;
  if (d >= 0) return 0.0;
  return std::clamp(0.5 * (a - c) / d, -0.5, 0.5);
}

}  // namespace

class PreparedSignature {
 public:
  SignatureKind kind = SignatureKind::kBreechFace;
  Modality modality = Modality::kTopography3d;
  Level coarse;
  Level translation;  // candidate translations are found here
  Level fine;
  Level search;  // cells are located here (the fine level when cell_search_downsample is 1)
  bool refine = false;  // search level coarser than the fine one: refine every hit on the fine level
  // Coarse level unwrapped about the image centre: rows = radius (coarse
  // pixels), cols = angle (polar_bins over 360 degrees).
  cv::Mat1f polar_v, polar_m;
  int cell_side = 0;           // pixels of the fine level
  int search_cell_side = 0;    // pixels of the search level
  int margin = 0;              // search margin around a cell, search-level pixels
  int region_side = 0;         // search_cell_side + 2 * margin
  int fft_side = 0;            // FFT size of a search region
  int refine_radius = 0;       // fine pixels around a search-level hit
  int refine_fft_side = 0;     // FFT size of a refinement patch
  std::vector<Cell> cells;
  // Row spectra of the polar image unwrapped about each centre of the polar
  // centre search (PolarCentreOffsets order): the part of the orientation
  // profile that depends on one signature only, computed once here instead
  // of in every comparison where this signature is the target (12 unwraps
  // and their transforms per comparison at 200 µm / 50 µm).
  std::vector<RowSpectra> polar_spectra;
};

namespace {

// A reference cell registered in the target at one angle.
struct Hit {
  bool found = false;
  double theta_deg = 0;
  double ccf = -1;
  cv::Point2d q;  // where the cell centre was found in the target (µm from the target centre)
};

// The largest of p[0, n) and -2 (NaN ignored), in lanes that vectorize.
float RowMax(const float* p, int n) {
  float lane[8] = {-2.0f, -2.0f, -2.0f, -2.0f, -2.0f, -2.0f, -2.0f, -2.0f};
  int x = 0;
  for (; x + 8 <= n; x += 8) {
    for (int l = 0; l < 8; ++l) lane[l] = p[x + l] > lane[l] ? p[x + l] : lane[l];
  }
  float m = -2.0f;
  for (; x < n; ++x) m = p[x] > m ? p[x] : m;
  for (int l = 0; l < 8; ++l) m = lane[l] > m ? lane[l] : m;
  return m;
}

// Best peak of an NCC map over [0, n)^2, with a parabolic sub-pixel offset;
// false when no displacement had enough overlap. The peak is the first
// point in row-major order holding the largest value (the maximum of the
// rows first, then its place in the first row reaching it).
bool FindPeak(const cv::Mat1f& ncc, int n, bool subpixel, float* best_out, double* fx, double* fy) {
  float best = -2.0f;
  int bx = -1, by = -1;
  for (int y = 0; y < n; ++y) {
    const float m = RowMax(ncc[y], n);
    if (m > best) {
      best = m;
      by = y;
    }
  }
  if (by >= 0) {
    const float* row = ncc[by];
    bx = 0;
    while (!(row[bx] == best)) ++bx;
    best = row[bx];  // (the sign of a zero peak as found first)
  }
  if (bx < 0 || best < -1.5f) return false;
  *fx = bx;
  *fy = by;
  if (subpixel) {
    if (bx > 0 && bx < n - 1) *fx += ParabolaOffset(ncc(by, bx - 1), best, ncc(by, bx + 1));
    if (by > 0 && by < n - 1) *fy += ParabolaOffset(ncc(by - 1, bx), best, ncc(by + 1, bx));
  }
  *best_out = best;
  return true;
}

// Registers every cell of `ref` in `tgt` at angle theta_deg on the search
// level. The search region of a cell is centred where `center` maps the cell
// and turned by theta_deg, so the region stays centred for every angle
// tried. The target is warped into the reference frame once per angle (a
// canvas around the reference grown by the margin) and every region is a
// window of it (centred to the nearest pixel: the found position is exact).
// Only the part of the canvas that the regions cover is warped (per row, from
// the first region to the last: the corners of a round signature's grid and,
// with a stride, half of the cells hold none), and the valid points of a
// region are counted from column prefix sums of the canvas mask.
// Hits hold the position of the fine cell centre.
void RegisterCells(const PreparedSignature& ref, const PreparedSignature& tgt, const Rigid& center,
                   double theta_deg, const CorrelationConfig& config, std::vector<Hit>* hits, int stride = 1) {
  const Level& rs = ref.search;
  const Level& ts = tgt.search;
  const int s = ref.search_cell_side, margin = ref.margin, side = ref.region_side;
  const double px = rs.pixel_um;
  hits->assign(ref.cells.size(), Hit{});
  // A cell mapped by `center` and turned back by theta lands within
  // |theta - center| * radius of where it is in the reference.
  const double dtheta = Rad(std::min(90.0, AngleDiffDeg(theta_deg, center.theta_deg)));
  const int pad = margin + 2 + static_cast<int>(std::ceil(dtheta * std::hypot(rs.v.cols, rs.v.rows) / 2.0));
  const Rigid rot{theta_deg, 0, 0};
  const cv::Point2d t0(center.tx, center.ty);
  // canvas pixel c <-> reference point p = (c - pad - centre) * px <-> target point Rot p + t0.
  const cv::Point2d canvas_c(rs.cx + pad, rs.cy + pad);
  const double k = px / ts.pixel_um;
  const double c = std::cos(Rad(theta_deg)), sn = std::sin(Rad(theta_deg));
  const cv::Point2d px0 = ts.ToPixel(rot.Rotate({-canvas_c.x * px, -canvas_c.y * px}) + t0);
  const cv::Matx23d m(c * k, sn * k, px0.x, -sn * k, c * k, px0.y);
  const cv::Size canvas_size(rs.v.cols + 2 * pad, rs.v.rows + 2 * pad);
  const cv::Rect canvas_rect(0, 0, canvas_size.width, canvas_size.height);
  // The region of every cell registered here (index into ref.cells, window of the canvas).
  thread_local std::vector<std::pair<std::size_t, cv::Rect>> regions;
  thread_local std::vector<std::pair<int, int>> spans;
  regions.clear();
  spans.assign(canvas_size.height, {canvas_size.width, 0});
  const Rigid back{-theta_deg, 0, 0};
  for (std::size_t i = 0; i < ref.cells.size(); ++i) {
    const Cell& cell = ref.cells[i];
    if ((cell.row + cell.col) % stride != 0) continue;
    const cv::Point2d q_pred = center.Apply(cell.search_center_um);
    const cv::Point2d at = back.Rotate(q_pred - t0) * (1.0 / px) + canvas_c;
    const int ox = static_cast<int>(std::lround(at.x - (s - 1) / 2.0)) - margin;
    const int oy = static_cast<int>(std::lround(at.y - (s - 1) / 2.0)) - margin;
    const cv::Rect rect(ox, oy, side, side);
    regions.push_back({i, rect});
    const cv::Rect inside = rect & canvas_rect;
    for (int y = inside.y; y < inside.y + inside.height; ++y) {
      spans[y].first = std::min(spans[y].first, inside.x);
      spans[y].second = std::max(spans[y].second, inside.x + inside.width);
    }
  }
  thread_local cv::Mat1f canvas_v, canvas_m, scratch_v, scratch_m, ncc;
  WarpMasked(ts, m, canvas_size, &canvas_v, &canvas_m, &spans);
  // colsum(y, x) = valid canvas points (x, y') with y' < y and x inside the
  // span of row y': a region's valid points are the differences of two rows
  // summed over its columns (its columns lie inside the span of each of its
  // rows). Counts of 0/1 masks are exact, so the region sums are the ones
  // cv::sum of the region mask gives.
  thread_local cv::Mat1f colsum;
  colsum.create(canvas_size.height + 1, canvas_size.width);
  std::fill(colsum[0], colsum[0] + canvas_size.width, 0.0f);
  for (int y = 0; y < canvas_size.height; ++y) {
    const int sb = std::min(spans[y].first, canvas_size.width), se = std::max(spans[y].second, sb);
    const float* up = colsum[y];
    const float* pm = canvas_m[y];
    float* row = colsum[y + 1];
    for (int x = 0; x < sb; ++x) row[x] = up[x];
    for (int x = sb; x < se; ++x) row[x] = up[x] + pm[x];
    for (int x = se; x < canvas_size.width; ++x) row[x] = up[x];
  }
  for (const auto& [i, rect] : regions) {
    const Cell& cell = ref.cells[i];
    const int ox = rect.x, oy = rect.y;
    const double min_overlap = config.min_overlap_fraction * cell.search_valid;
    const cv::Rect inside = rect & canvas_rect;
    double count = 0;  // (column counts are exact in float, their sum in double)
    if (!inside.empty()) {
      const float* top = colsum[inside.y];
      const float* bottom = colsum[inside.y + inside.height];
      for (int x = inside.x; x < inside.x + inside.width; ++x) count += bottom[x] - top[x];
    }
    const double region_valid = count;
    if (region_valid < min_overlap) continue;
    const cv::Mat1f rv = CropOrPad(canvas_v, rect, &scratch_v), rm = CropOrPad(canvas_m, rect, &scratch_m);
    MaskedNccRegion(cell.spectra, rv, rm, min_overlap, 2 * margin + 1, &ncc, region_valid);
    // Template top-left at region offset u in [0, 2 * margin]^2 (the whole
    // cell inside the region; no wrap since fft_side >= side).
    float best = 0;
    double fx = 0, fy = 0;
    if (!FindPeak(ncc, 2 * margin + 1, config.subpixel, &best, &fx, &fy)) continue;
    const cv::Point2d found(ox + fx + (s - 1) / 2.0, oy + fy + (s - 1) / 2.0);
    Hit& h = (*hits)[i];
    h.found = true;
    h.theta_deg = theta_deg;
    h.ccf = best;
    h.q = rot.Rotate((found - canvas_c) * px + (cell.center_um - cell.search_center_um)) + t0;
  }
}

// Refines a search-level hit of one cell on the fine level: the fine cell is
// registered within +-refine_radius fine pixels of where it was found (a
// small patch of the target turned by the hit's angle; direct masked NCC,
// cheaper than FFTs for so few displacements). The CCF becomes the fine one
// (the NCC the thresholds are defined on).
Hit RefineHit(const PreparedSignature& ref, const PreparedSignature& tgt, const Cell& cell, const Hit& hit,
              const CorrelationConfig& config) {
  const Level& rf = ref.fine;
  const Level& tf = tgt.fine;
  const int s = ref.cell_side, r = ref.refine_radius, side = s + 2 * r;
  const double k = rf.pixel_um / tf.pixel_um;
  const double c = std::cos(Rad(hit.theta_deg)), sn = std::sin(Rad(hit.theta_deg));
  const Rigid rot{hit.theta_deg, 0, 0};
  // Patch pixel u <-> offset (u - o) * pixel from the cell centre, o = r + (s - 1) / 2.
  const double o = r + (s - 1) / 2.0;
  const cv::Point2d px0 = tf.ToPixel(rot.Rotate({-o * rf.pixel_um, -o * rf.pixel_um}) + hit.q);
  const cv::Matx23d m(c * k, sn * k, px0.x, -sn * k, c * k, px0.y);
  thread_local cv::Mat1f pv, pm, p2, t2, ncc, sv, sm;
  WarpMasked(tf, m, cv::Size(side, side), &pv, &pm);
  // The squares of the patch and its valid points in one pass (the values
  // of cv::multiply and cv::sum: float products, an exact count).
  p2.create(side, side);
  long long valid = 0;
  for (int y = 0; y < side; ++y) {
    const float* a = pv[y];
    const float* b = pm[y];
    float* q = p2[y];
    for (int x = 0; x < side; ++x) {
      q[x] = a[x] * a[x];
      valid += b[x] > 0;
    }
  }
  Hit out;
  const double min_overlap = config.min_overlap_fraction * cell.valid;
  if (static_cast<double>(valid) < min_overlap) return out;
  const cv::Mat1f tv = CropOrPad(rf.v, cell.fine_rect, &sv), tm = CropOrPad(rf.m, cell.fine_rect, &sm);
  cv::multiply(tv, tv, t2);
  // Hill climbing from the search-level position (the window's centre) to
  // the local NCC maximum: a handful of 3 x 3 neighbourhoods instead of the
  // whole (2r + 1)^2 window. ncc holds NaN where not evaluated.
  const int n = 2 * r + 1;
  ncc.create(n, n);
  ncc.setTo(std::numeric_limits<float>::quiet_NaN());
  auto at = [&](int y, int x) {
    float& v = ncc(y, x);
    if (std::isnan(v)) v = DirectMaskedNccAt(tv, tm, t2, pv, pm, p2, y, x, min_overlap);
    return v;
  };
  int by = r, bx = r;
  float best = at(by, bx);
  for (int step = 0; step <= 2 * r; ++step) {
    int ny = by, nx = bx;
    for (int y = std::max(0, by - 1); y <= std::min(n - 1, by + 1); ++y) {
      for (int x = std::max(0, bx - 1); x <= std::min(n - 1, bx + 1); ++x) {
        if (at(y, x) > best) {
          best = at(y, x);
          ny = y;
          nx = x;
        }
      }
    }
    if (ny == by && nx == bx) break;
    by = ny;
    bx = nx;
  }
  if (best < -1.5f) return out;
  double fx = bx, fy = by;
  if (config.subpixel) {
    if (bx > 0 && bx < n - 1) fx += ParabolaOffset(at(by, bx - 1), best, at(by, bx + 1));
    if (by > 0 && by < n - 1) fy += ParabolaOffset(at(by - 1, bx), best, at(by + 1, bx));
  }
  out.found = true;
  out.theta_deg = hit.theta_deg;
  out.ccf = best;
  out.q = rot.Rotate({(fx - r) * rf.pixel_um, (fy - r) * rf.pixel_um}) + hit.q;
  return out;
}

struct Consensus {
  Rigid transform;
  std::vector<bool> congruent;
  int count = 0;
  double ccf_sum = 0;
};

// std::hypot(e.x, e.y) > limit (> 0, see Validate), with hypot (slow)
// called only when the squared length is within round-off of limit^2.
bool Farther(cv::Point2d e, double limit) {
  const double d2 = e.x * e.x + e.y * e.y, l2 = limit * limit;
  if (d2 < l2 * (1 - 1e-9)) return false;
  if (d2 > l2 * (1 + 1e-9)) return true;
  return std::hypot(e.x, e.y) > limit;
}

// Cells agreeing with transform t: CCF, angle and found position.
int CountInliers(const PreparedSignature& ref, const std::vector<Hit>& hits, const Rigid& t,
                 const CorrelationConfig& config, std::vector<bool>* flags, double* ccf_sum) {
  int n = 0;
  double sum = 0;
  flags->assign(hits.size(), false);
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const Hit& h = hits[i];
    if (!h.found || h.ccf < config.ccf_threshold) continue;
    if (AngleDiffDeg(h.theta_deg, t.theta_deg) > config.angle_threshold_deg) continue;
    const cv::Point2d e = h.q - t.Apply(ref.cells[i].center_um);
    if (Farther(e, config.translation_threshold_um)) continue;
    (*flags)[i] = true;
    ++n;
    sum += h.ccf;
  }
  *ccf_sum = sum;
  return n;
}

// Least-squares rigid transform (2D Procrustes, weights = CCF) of the cell
// centres onto the positions where they were found.
Rigid FitRigid(const PreparedSignature& ref, const std::vector<Hit>& hits, const std::vector<bool>& flags) {
  double w = 0;
  cv::Point2d pm(0, 0), qm(0, 0);
  for (std::size_t i = 0; i < hits.size(); ++i) {
    if (!flags[i]) continue;
    w += hits[i].ccf;
    pm += hits[i].ccf * ref.cells[i].center_um;
    qm += hits[i].ccf * hits[i].q;
  }
  pm *= 1.0 / w;
  qm *= 1.0 / w;
  double a = 0, b = 0;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    if (!flags[i]) continue;
    const cv::Point2d p = ref.cells[i].center_um - pm, q = hits[i].q - qm;
    a += hits[i].ccf * (p.x * q.x + p.y * q.y);
    b += hits[i].ccf * (p.y * q.x - p.x * q.y);
  }
  Rigid r{std::atan2(b, a) * 180.0 / kPi, 0, 0};
  const cv::Point2d t = qm - r.Rotate(pm);
  r.tx = t.x;
  r.ty = t.y;
  return r;
}

// The rigid transform most cells agree with: every cell above the CCF
// threshold proposes its own (angle, translation); the proposal with the most
// inliers wins and is refined by a least-squares fit of its inliers (a
// deterministic, exhaustive RANSAC over the few dozen cells).
Consensus FindConsensus(const PreparedSignature& ref, const std::vector<Hit>& hits, const Rigid& fallback,
                        const CorrelationConfig& config) {
  Consensus best;
  best.transform = fallback;
  best.congruent.assign(hits.size(), false);
  std::vector<bool> flags;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const Hit& h = hits[i];
    if (!h.found || h.ccf < config.ccf_threshold) continue;
    Rigid seed{h.theta_deg, 0, 0};
    const cv::Point2d t = h.q - seed.Rotate(ref.cells[i].center_um);
    seed.tx = t.x;
    seed.ty = t.y;
    double sum = 0;
    const int n = CountInliers(ref, hits, seed, config, &flags, &sum);
    if (n > best.count || (n == best.count && sum > best.ccf_sum)) {
      best.transform = seed;
      best.count = n;
      best.ccf_sum = sum;
      best.congruent = flags;
    }
  }
  for (int iter = 0; iter < 3 && best.count >= 2; ++iter) {
    Rigid fit = FitRigid(ref, hits, best.congruent);
    // Keep the cells' own angle grid in play: the fit only moves the consensus within it.
    double sum = 0;
    const int n = CountInliers(ref, hits, fit, config, &flags, &sum);
    if (n < best.count) break;
    const bool same = flags == best.congruent;
    best.transform = fit;
    best.count = n;
    best.ccf_sum = sum;
    best.congruent = flags;
    if (same) break;
  }
  return best;
}

struct DirectionRun {
  DirectionResult result;
  Rigid transform;
  double ccf_sum = 0;
};

// Registers all cells at center.theta + k * step (k = -steps..steps), keeps
// each cell's best angle, and finds the congruent cells.
DirectionRun RunDirection(const PreparedSignature& ref, const PreparedSignature& tgt, const Rigid& center,
                          int steps, const CorrelationConfig& config) {
  std::vector<Hit> best(ref.cells.size()), hits;
  for (int k = -steps; k <= steps; ++k) {
    const double theta = WrapDeg(center.theta_deg + k * config.cell_angle_step_deg);
    RegisterCells(ref, tgt, center, theta, config, &hits);
    for (std::size_t i = 0; i < hits.size(); ++i) {
      if (hits[i].found && (!best[i].found || hits[i].ccf > best[i].ccf)) best[i] = hits[i];
    }
  }
  if (ref.refine) {
    for (std::size_t i = 0; i < best.size(); ++i) {
      if (best[i].found) best[i] = RefineHit(ref, tgt, ref.cells[i], best[i], config);
    }
  }
  const Consensus cons = FindConsensus(ref, best, center, config);
  DirectionRun run;
  run.transform = cons.transform;
  run.ccf_sum = cons.ccf_sum;
  DirectionResult& r = run.result;
  r.cmc = cons.count;
  r.cells = static_cast<int>(ref.cells.size());
  r.theta_deg = WrapDeg(cons.transform.theta_deg);
  r.dx_um = cons.transform.tx;
  r.dy_um = cons.transform.ty;
  for (std::size_t i = 0; i < ref.cells.size(); ++i) {
    const Cell& cell = ref.cells[i];
    CellResult cr;
    cr.row = cell.row;
    cr.col = cell.col;
    cr.x_um = cell.center_um.x;
    cr.y_um = cell.center_um.y;
    cr.size_um = ref.cell_side * ref.fine.pixel_um;
    cr.valid_fraction = cell.valid_fraction;
    if (best[i].found) {
      const Rigid own{best[i].theta_deg, 0, 0};
      const cv::Point2d t = best[i].q - own.Rotate(cell.center_um);
      cr.theta_deg = WrapDeg(best[i].theta_deg);
      cr.dx_um = t.x;
      cr.dy_um = t.y;
      cr.target_x_um = best[i].q.x;
      cr.target_y_um = best[i].q.y;
      cr.ccf = best[i].ccf;
    }
    cr.congruent = cons.congruent[i];
    r.cell_results.push_back(cr);
  }
  return run;
}

struct Candidate {
  Rigid transform;
  double score = -2;
};

// Polar unwrap about the image centre. With p = r (cos phi, -sin phi) (y
// down), turning the image by theta (the Rigid convention) adds theta to phi,
// so a rotation becomes a circular shift along the angle axis.
void MakePolar(const Level& level, int bins, cv::Mat1f* v, cv::Mat1f* m, cv::Point2d offset_px = {0, 0}) {
  const int radii = static_cast<int>(std::ceil(std::hypot(level.v.cols, level.v.rows) / 2.0)) + 1;
  cv::Mat1f mx(radii, bins), my(radii, bins);
  for (int j = 0; j < bins; ++j) {
    const double phi = 2.0 * kPi * j / bins;
    const double c = std::cos(phi), s = std::sin(phi);
    for (int i = 0; i < radii; ++i) {
      mx(i, j) = static_cast<float>(level.cx + offset_px.x + i * c);
      my(i, j) = static_cast<float>(level.cy + offset_px.y - i * s);
    }
  }
  cv::remap(level.v, *v, mx, my, cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
  cv::remap(level.m, *m, mx, my, cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
  for (int i = 0; i < radii; ++i) {
    for (int j = 0; j < bins; ++j) {
      if ((*m)(i, j) >= kMaskValid) {
        (*m)(i, j) = 1.0f;
      } else {
        (*m)(i, j) = 0.0f;
        (*v)(i, j) = 0.0f;
      }
    }
  }
}

// Centre offsets (coarse pixels) of the polar centre search: the even
// offsets (a grid of step 2 through the signature's own centre) within
// center_search_px of it, (0, 0) first. (The grid used to start at
// -center_search_px: for an odd radius it held only odd offsets, and with
// the radius rounded down to 3 for coarse pixels a hair over 50 µm it was
// (0, 0) and the four (+-1, +-1), which left the orientation profile of
// fadul-Q vs a turned fadul-X without its true peak in one argument order.)
std::vector<cv::Point> PolarCentreOffsets(int center_search_px) {
  std::vector<cv::Point> out{{0, 0}};
  const int reach = center_search_px / 2 * 2;
  for (int oy = -reach; oy <= reach; oy += 2) {
    for (int ox = -reach; ox <= reach; ox += 2) {
      if (ox * ox + oy * oy > center_search_px * center_search_px || (ox == 0 && oy == 0)) continue;
      out.push_back({ox, oy});
    }
  }
  return out;
}

// The polar centre search radius in coarse pixels, rounded to the nearest
// (a coarse pixel is 50 µm only up to the rounding of the resampled size).
int PolarCentreSearchPx(const CorrelationConfig& cfg, double coarse_pixel_um) {
  return static_cast<int>(std::lround(cfg.polar_center_search_um / coarse_pixel_um));
}

// Orientation profile: masked NCC of the polar images for every circular
// shift along the angle axis (one FFT correlation scores all angles), the
// best over small radial shifts. The two centres need not mark the same
// point of the casing (the crop to valid data moves them by a few hundred µm
// when a scan misses a piece of its rim), and a wrong centre smears the polar
// image; so the target is unwrapped about a small grid of centres around its
// own (offsets up to center_search_px, step 2 coarse pixels) and the best
// centre is kept for each angle. Returns one score per angle bin (-2 where
// there is too little overlap).
std::vector<double> PolarProfile(const PreparedSignature& ref, const PreparedSignature& tgt, int max_radial_shift,
                                 int center_search_px) {
  const int bins = ref.polar_v.cols;
  const std::vector<cv::Point> offsets = PolarCentreOffsets(center_search_px);
  // The prepared spectra are used when both signatures were prepared with
  // this centre search; otherwise computed here.
  const bool cached = ref.polar_spectra.size() == offsets.size() && tgt.polar_spectra.size() == offsets.size();
  RowSpectra a_own, b_own;
  const RowSpectra* a = &a_own;
  if (cached) {
    a = &ref.polar_spectra[0];  // offset (0, 0) comes first
  } else {
    ComputeRowSpectra(ref.polar_v, ref.polar_m, &a_own);
  }
  std::vector<double> profile(bins, -2.0);
  thread_local cv::Mat1f ncc, pv, pm;
  for (std::size_t k = 0; k < offsets.size(); ++k) {
    const RowSpectra* b = &b_own;
    if (cached) {
      b = &tgt.polar_spectra[k];
    } else if (k == 0) {
      // (The prepared polar image is shared and immutable: never unwrap into it.)
      ComputeRowSpectra(tgt.polar_v, tgt.polar_m, &b_own);
    } else {
      MakePolar(tgt.coarse, bins, &pv, &pm, cv::Point2d(offsets[k].x, offsets[k].y));
      ComputeRowSpectra(pv, pm, &b_own);
    }
    // Rows of ncc = radial shifts -max_radial_shift..max_radial_shift.
    MaskedNccRadial(*a, *b, 0.5 * std::min(a->valid, b->valid), max_radial_shift, &ncc);
    for (int r = 0; r < ncc.rows; ++r) {
      const float* row = ncc[r];
      for (int j = 0; j < bins; ++j) profile[j] = std::max<double>(profile[j], row[j]);
    }
  }
  return profile;
}

// The displacement of a (circular) NCC map whose correlation is the most
// significant (see AngleProfile): the local maximum with the largest
// atanh(r) * sqrt(overlap); the highest NCC when no point has r > 0.
cv::Point MostSignificantPeak(const cv::Mat1f& ncc, const cv::Mat1f& overlap) {
  const int rows = ncc.rows, cols = ncc.cols;
  cv::Point best_loc(0, 0);
  double best_z = -1;
  for (int y = 0; y < rows; ++y) {
    const float* up = ncc[(y + rows - 1) % rows];
    const float* row = ncc[y];
    const float* down = ncc[(y + 1) % rows];
    for (int x = 0; x < cols; ++x) {
      const float r = row[x];
      if (!(r > 0.0f)) continue;
      const int l = (x + cols - 1) % cols, rt = (x + 1) % cols;
      if (r < row[l] || r < row[rt] || r < up[l] || r < up[x] || r < up[rt] || r < down[l] || r < down[x] ||
          r < down[rt]) {
        continue;
      }
      const double z = std::atanh(std::min(0.999, static_cast<double>(r))) * std::sqrt(overlap(y, x));
      if (z > best_z) {
        best_z = z;
        best_loc = {x, y};
      }
    }
  }
  if (best_z < 0) cv::minMaxLoc(ncc, nullptr, nullptr, nullptr, &best_loc);
  return best_loc;
}

// Masked NCC of the whole coarse signatures for every angle of the list;
// returns, per angle, the most significant translation and its NCC.
//
// "Most significant", not "highest NCC": a masked NCC over few overlapping
// points scatters more (its standard error after Fisher's z-transform is
// 1 / sqrt(n - 3), n the number of independent points, proportional to the
// overlap area), so with the overlap allowed down to half the smaller
// signature the highest NCC is often a chance peak at a half overlap; the
// warped side also loses its border points (a warped point is valid only where
// all its neighbours were), which makes it worse in one direction of the pair
// than in the other (fadul-X turned vs fadul-8-1: the true shift was the
// second peak, 0.39 at 146 points, behind 0.41 at 76 points, in one argument
// order only). Each local maximum is scored by atanh(r) * sqrt(overlap), the
// z-score of its correlation up to a factor common to all displacements
// (the spatial correlation length of the marks, the same everywhere).
// `ref_cache` (optional) keeps the reference's spectra between calls for the
// same pair of levels.
std::vector<Candidate> AngleProfile(const Level& ref, const Level& tgt, const std::vector<double>& angles,
                                    MaskedSpectra* ref_cache = nullptr) {
  const double k = ref.pixel_um / tgt.pixel_um;
  // A canvas in the reference frame large enough for the target at any angle.
  const int side = static_cast<int>(std::ceil(std::hypot(tgt.v.cols, tgt.v.rows) / k)) + 2;
  const double cc = (side - 1) / 2.0;
  // The whole map of displacements fits without a gap (no wrap-around):
  // sizes with factors 2, 3, 5 and 7 (84 for 34 + 51 - 1 at 100 µm, where
  // FastFftSize gives 90: 13 % fewer points; the extra points were all
  // displacements without overlap).
  const int nr = correlate_internal::FastFftSizeRegion(ref.v.rows + side - 1);
  const int nc = correlate_internal::FastFftSizeRegion(ref.v.cols + side - 1);
  MaskedSpectra own;
  MaskedSpectra& ref_spec = ref_cache != nullptr ? *ref_cache : own;
  if (ref_spec.rows != nr || ref_spec.cols != nc || ref_spec.fm.empty()) ComputeSpectra(ref.v, ref.m, nr, nc, &ref_spec);
  thread_local cv::Mat1f cv_v, cv_m, ncc, overlap;
  std::vector<Candidate> out;
  out.reserve(angles.size());
  for (double theta : angles) {
    const Rigid rot{theta, 0, 0};
    const double c = std::cos(Rad(theta)), s = std::sin(Rad(theta));
    // canvas pixel x -> reference-frame point (x - cc) * pixel -> target point Rot p.
    const cv::Point2d q0 = rot.Rotate({-cc * ref.pixel_um, -cc * ref.pixel_um});
    const cv::Point2d px0 = tgt.ToPixel(q0);
    const cv::Matx23d m(c * k, s * k, px0.x, -s * k, c * k, px0.y);
    WarpMasked(tgt, m, cv::Size(side, side), &cv_v, &cv_m);
    const double min_overlap = 0.5 * std::min(ref.valid, cv::sum(cv_m)[0]);
    MaskedNccMapsOfImage(ref_spec, cv_v, cv_m, min_overlap, &ncc, &overlap);
    const cv::Point loc = MostSignificantPeak(ncc, overlap);
    const double best = ncc(loc.y, loc.x);
    // Map index -> displacement u of the reference inside the canvas (wraps for u < 0).
    const int ux = loc.x > side - 1 ? loc.x - nc : loc.x;
    const int uy = loc.y > side - 1 ? loc.y - nr : loc.y;
    const cv::Point2d w((ux + ref.cx - cc) * ref.pixel_um, (uy + ref.cy - cc) * ref.pixel_um);
    const cv::Point2d t = rot.Rotate(w);
    out.push_back({Rigid{theta, t.x, t.y}, best});
  }
  return out;
}

// Local maxima of the angle profile, best first, at least `separation` apart.
std::vector<Candidate> PickCandidates(const std::vector<Candidate>& profile, bool circular, int max_count,
                                      double separation_deg) {
  const int n = static_cast<int>(profile.size());
  std::vector<Candidate> maxima;
  for (int i = 0; i < n; ++i) {
    const bool has_l = circular || i > 0, has_r = circular || i + 1 < n;
    const double l = has_l ? profile[(i - 1 + n) % n].score : -3;
    const double r = has_r ? profile[(i + 1) % n].score : -3;
    if (profile[i].score >= l && profile[i].score >= r && profile[i].score > -1.5) maxima.push_back(profile[i]);
  }
  std::sort(maxima.begin(), maxima.end(), [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  std::vector<Candidate> picked;
  for (const Candidate& c : maxima) {
    bool near = false;
    for (const Candidate& p : picked) {
      near = near || AngleDiffDeg(c.transform.theta_deg, p.transform.theta_deg) < separation_deg;
    }
    if (!near) picked.push_back(c);
    if (static_cast<int>(picked.size()) >= max_count) break;
  }
  return picked;
}

// NCC of the whole fine signatures over their common valid points at t.
double GlobalCcf(const PreparedSignature& ref, const PreparedSignature& tgt, const Rigid& t) {
  const Level& rf = ref.fine;
  const Level& tf = tgt.fine;
  const double k = rf.pixel_um / tf.pixel_um;
  const double c = std::cos(Rad(t.theta_deg)), s = std::sin(Rad(t.theta_deg));
  const cv::Point2d px0 = tf.ToPixel(t.Apply({-rf.cx * rf.pixel_um, -rf.cy * rf.pixel_um}));
  const cv::Matx23d m(c * k, s * k, px0.x, -s * k, c * k, px0.y);
  thread_local cv::Mat1f v, mask;
  WarpMasked(tf, m, rf.v.size(), &v, &mask);
  double n = 0, sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  for (int y = 0; y < v.rows; ++y) {
    for (int x = 0; x < v.cols; ++x) {
      if (mask(y, x) <= 0 || rf.m(y, x) <= 0) continue;
      const double a = rf.v(y, x), b = v(y, x);
      n += 1;
      sa += a;
      sb += b;
      saa += a * a;
      sbb += b * b;
      sab += a * b;
    }
  }
  if (n < 16) return 0.0;
  const double cov = sab - sa * sb / n, va = saa - sa * sa / n, vb = sbb - sb * sb / n;
  if (va <= 0 || vb <= 0) return 0.0;
  return cov / std::sqrt(va * vb);
}

std::string Fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

CorrelationConfig CorrelationConfig::FiringPin() {
  CorrelationConfig c;
  // Firing-pin impressions are 0.5-2 mm across, a quarter of the breech-face
  // area or less: the grids are halved so that cells still hold a few
  // hundred points.
  c.cell_pixel_um = 6.25;
  c.coarse_pixel_um = 25.0;
  c.translation_pixel_um = 50.0;
  return c;
}

Status CorrelationConfig::Validate() const {
  auto bad = [](const std::string& field, double v, const std::string& why) {
    return InvalidArgument("correlate: config " + field + "=" + Fmt(v) + " " + why);
  };
  if (!(cell_pixel_um > 0) || !std::isfinite(cell_pixel_um)) return bad("cell_pixel_um", cell_pixel_um, "is not positive");
  if (cell_search_downsample < 1 || cell_search_downsample > 8) {
    return bad("cell_search_downsample", cell_search_downsample, "is outside [1, 8]");
  }
  if (refine_radius_px < 1 || refine_radius_px > 64) return bad("refine_radius_px", refine_radius_px, "is outside [1, 64]");
  if (!(translation_pixel_um >= coarse_pixel_um) || !std::isfinite(translation_pixel_um)) {
    return bad("translation_pixel_um", translation_pixel_um, "must be finite and >= coarse_pixel_um");
  }
  if (!(coarse_pixel_um >= cell_pixel_um) || !std::isfinite(coarse_pixel_um)) {
    return bad("coarse_pixel_um", coarse_pixel_um, "must be finite and >= cell_pixel_um");
  }
  if (cell_grid < 2 || cell_grid > 32) return bad("cell_grid", cell_grid, "is outside [2, 32]");
  if (!(min_cell_valid_fraction > 0 && min_cell_valid_fraction <= 1)) {
    return bad("min_cell_valid_fraction", min_cell_valid_fraction, "is outside (0, 1]");
  }
  if (!(search_margin_cells > 0 && search_margin_cells <= 4)) {
    return bad("search_margin_cells", search_margin_cells, "is outside (0, 4]");
  }
  if (!(min_overlap_fraction > 0 && min_overlap_fraction <= 1)) {
    return bad("min_overlap_fraction", min_overlap_fraction, "is outside (0, 1]");
  }
  if (!(coarse_angle_step_deg >= 0.1 && coarse_angle_step_deg <= 30)) {
    return bad("coarse_angle_step_deg", coarse_angle_step_deg, "is outside [0.1, 30]");
  }
  if (!(polar_center_search_um >= 0 && polar_center_search_um <= 2000)) {
    return bad("polar_center_search_um", polar_center_search_um, "is outside [0, 2000]");
  }
  if (polar_max_radial_shift < 0 || polar_max_radial_shift > 16) {
    return bad("polar_max_radial_shift", polar_max_radial_shift, "is outside [0, 16]");
  }
  if (max_candidates < 1 || max_candidates > 64) return bad("max_candidates", max_candidates, "is outside [1, 64]");
  if (!(candidate_separation_deg >= 0 && candidate_separation_deg <= 180)) {
    return bad("candidate_separation_deg", candidate_separation_deg, "is outside [0, 180]");
  }
  if (!(cell_angle_step_deg > 0 && cell_angle_step_deg <= 30)) {
    return bad("cell_angle_step_deg", cell_angle_step_deg, "is outside (0, 30]");
  }
  if (backward_cell_angle_steps < 0 || backward_cell_angle_steps > 20) {
    return bad("backward_cell_angle_steps", backward_cell_angle_steps, "is outside [0, 20]");
  }
  if (candidate_cell_stride < 1 || candidate_cell_stride > 8) {
    return bad("candidate_cell_stride", candidate_cell_stride, "is outside [1, 8]");
  }
  if (cell_angle_steps < 0 || cell_angle_steps > 20) return bad("cell_angle_steps", cell_angle_steps, "is outside [0, 20]");
  if (!(ccf_threshold > -1 && ccf_threshold < 1)) return bad("ccf_threshold", ccf_threshold, "is outside (-1, 1)");
  if (!(angle_threshold_deg >= 0 && angle_threshold_deg <= 180)) {
    return bad("angle_threshold_deg", angle_threshold_deg, "is outside [0, 180]");
  }
  if (!(translation_threshold_um > 0) || !std::isfinite(translation_threshold_um)) {
    return bad("translation_threshold_um", translation_threshold_um, "is not positive");
  }
  if (cmc_threshold < 1) return bad("cmc_threshold", cmc_threshold, "is below 1");
  return Status::Ok();
}

std::size_t PreparedSignatureBytes(const PreparedSignature& p) {
  auto mat = [](const cv::Mat& m) { return m.total() * m.elemSize(); };
  auto level = [&](const Level& l) { return mat(l.v) + mat(l.m) + mat(l.m4) + mat(l.vn); };
  std::size_t n = sizeof(PreparedSignature) + level(p.coarse) + level(p.translation) + level(p.fine) +
                  mat(p.polar_v) + mat(p.polar_m);
  if (p.refine) n += level(p.search);
  for (const RowSpectra& s : p.polar_spectra) n += s.planes.capacity() * sizeof(float);
  for (const Cell& c : p.cells) {
    n += sizeof(Cell) + (c.spectra.fm.capacity() + c.spectra.m.capacity() + c.spectra.f2m.capacity()) *
                            sizeof(std::complex<float>);
  }
  return n;
}

StatusOr<Correlator> Correlator::Create(const CorrelationConfig& config) {
  BALLISTICS_RETURN_IF_ERROR(config.Validate());
  return Correlator(config);
}

StatusOr<std::shared_ptr<const PreparedSignature>> Correlator::Prepare(const Signature& sig) const {
  const std::string who = std::string("correlate: ") + std::string(SignatureKindName(sig.kind)) + " signature: ";
  if (!(sig.pixel_um > 0) || !std::isfinite(sig.pixel_um)) {
    return InvalidArgument(who + "pixel_um=" + Fmt(sig.pixel_um) + " is not positive");
  }
  if (sig.values.empty()) return InvalidArgument(who + "values are empty");
  if (sig.values.rows > kMaxSignatureSide || sig.values.cols > kMaxSignatureSide) {
    return InvalidArgument(who + "size " + std::to_string(sig.values.cols) + "x" + std::to_string(sig.values.rows) +
                           " exceeds " + std::to_string(kMaxSignatureSide));
  }
  try {
    auto prep = std::make_shared<PreparedSignature>();
    prep->kind = sig.kind;
    prep->modality = sig.modality;
    prep->fine = MakeLevel(sig.values, sig.pixel_um, config_.cell_pixel_um);
    prep->coarse = MakeLevel(sig.values, sig.pixel_um, config_.coarse_pixel_um);
    prep->translation = MakeLevel(sig.values, sig.pixel_um, config_.translation_pixel_um);
    if (prep->coarse.valid < 16) {
      return InvalidArgument(who + "only " + Fmt(prep->coarse.valid) + " valid points at " +
                             Fmt(prep->coarse.pixel_um) + " um; at least 16 are needed");
    }
    MakePolar(prep->coarse, std::max(8, static_cast<int>(std::lround(360.0 / config_.coarse_angle_step_deg))),
              &prep->polar_v, &prep->polar_m);
    {
      const int search_px = PolarCentreSearchPx(config_, prep->coarse.pixel_um);
      const int bins = prep->polar_v.cols;
      const std::vector<cv::Point> offsets = PolarCentreOffsets(search_px);
      prep->polar_spectra.resize(offsets.size());
      cv::Mat1f pv, pm;
      for (std::size_t k = 0; k < offsets.size(); ++k) {
        if (k == 0) {
          ComputeRowSpectra(prep->polar_v, prep->polar_m, &prep->polar_spectra[k]);
        } else {
          MakePolar(prep->coarse, bins, &pv, &pm, cv::Point2d(offsets[k].x, offsets[k].y));
          ComputeRowSpectra(pv, pm, &prep->polar_spectra[k]);
        }
      }
    }
    const Level& f = prep->fine;
    const int s = std::max(4, static_cast<int>(std::lround(std::max(f.v.cols, f.v.rows) /
                                                           static_cast<double>(config_.cell_grid))));
    prep->cell_side = s;
    prep->refine = config_.cell_search_downsample > 1;
    if (prep->refine) {
      prep->search = MakeLevel(sig.values, sig.pixel_um, f.pixel_um * config_.cell_search_downsample);
      // A signature already coarser than the search grid is searched as it is.
      prep->refine = prep->search.pixel_um > f.pixel_um * 1.01;
    }
    if (!prep->refine) prep->search = prep->fine;
    const Level& sl = prep->search;
    const int ss = std::max(4, static_cast<int>(std::lround(s * f.pixel_um / sl.pixel_um)));
    prep->search_cell_side = ss;
    prep->margin = std::max(1, static_cast<int>(std::lround(config_.search_margin_cells * ss)));
    prep->region_side = ss + 2 * prep->margin;
    prep->fft_side = correlate_internal::FastFftSizeRegion(prep->region_side);
    prep->refine_radius = config_.refine_radius_px;
    prep->refine_fft_side = FastFftSize(s + 2 * config_.refine_radius_px);
    const int nx = std::max(1, static_cast<int>(std::lround(f.v.cols / static_cast<double>(s))));
    const int ny = std::max(1, static_cast<int>(std::lround(f.v.rows / static_cast<double>(s))));
    const int x0 = (f.v.cols - nx * s) / 2, y0 = (f.v.rows - ny * s) / 2;
    cv::Mat1f sv, sm;
    for (int r = 0; r < ny; ++r) {
      for (int col = 0; col < nx; ++col) {
        const cv::Rect rect(x0 + col * s, y0 + r * s, s, s);
        const cv::Mat1f cv_v = CropOrPad(f.v, rect, &sv).clone(), cv_m = CropOrPad(f.m, rect, &sm).clone();
        const double valid = cv::sum(cv_m)[0];
        const double frac = valid / (static_cast<double>(s) * s);
        if (frac < config_.min_cell_valid_fraction) continue;
        // A cell without texture cannot be registered (NCC undefined).
        cv::Scalar mean, sd;
        cv::meanStdDev(cv_v, mean, sd, cv_m > 0);
        if (sd[0] < 1e-3) continue;
        Cell cell;
        cell.row = r;
        cell.col = col;
        cell.fine_rect = rect;
        cell.valid = valid;
        cell.valid_fraction = frac;
        cell.center_um = {(rect.x + (s - 1) / 2.0 - f.cx) * f.pixel_um, (rect.y + (s - 1) / 2.0 - f.cy) * f.pixel_um};
        // The search-level cell: the ss x ss window nearest to the same centre.
        const cv::Point2d at = sl.ToPixel(cell.center_um);
        const cv::Rect srect(static_cast<int>(std::lround(at.x - (ss - 1) / 2.0)),
                             static_cast<int>(std::lround(at.y - (ss - 1) / 2.0)), ss, ss);
        const cv::Mat1f s_v = CropOrPad(sl.v, srect, &sv), s_m = CropOrPad(sl.m, srect, &sm);
        cell.search_valid = cv::sum(s_m)[0];
        cv::meanStdDev(s_v, mean, sd, s_m > 0);
        if (cell.search_valid < 4 || sd[0] < 1e-3) continue;
        cell.search_center_um = {(srect.x + (ss - 1) / 2.0 - sl.cx) * sl.pixel_um,
                                 (srect.y + (ss - 1) / 2.0 - sl.cy) * sl.pixel_um};
        ComputeTemplateSpectra(s_v, s_m, prep->fft_side, prep->fft_side, &cell.spectra);
        prep->cells.push_back(std::move(cell));
      }
    }
    if (prep->cells.empty()) {
      return InvalidArgument(who + "no cell of the " + std::to_string(nx) + "x" + std::to_string(ny) +
                             " grid has min_cell_valid_fraction=" + Fmt(config_.min_cell_valid_fraction) +
                             " valid points");
    }
    return std::shared_ptr<const PreparedSignature>(std::move(prep));
  } catch (const std::exception& e) {
    return Internal(who + "prepare failed: " + e.what());
  }
}

StatusOr<ComparisonResult> Correlator::Compare(const Signature& reference, const Signature& target,
                                               const CompareOptions& options) const {
  BALLISTICS_ASSIGN_OR_RETURN(auto r, Prepare(reference));
  BALLISTICS_ASSIGN_OR_RETURN(auto t, Prepare(target));
  return Compare(*r, *t, options);
}

StatusOr<ComparisonResult> Correlator::Compare(const PreparedSignature& ref, const PreparedSignature& tgt,
                                               const CompareOptions& options) const {
  if (ref.kind != tgt.kind) {
    return InvalidArgument("correlate: cannot compare a " + std::string(SignatureKindName(ref.kind)) +
                           " signature with a " + std::string(SignatureKindName(tgt.kind)) + " signature");
  }
  if (ref.modality != tgt.modality) {
    return InvalidArgument("correlate: cannot compare a " + std::string(ModalityName(ref.modality)) +
                           " signature with a " + std::string(ModalityName(tgt.modality)) + " signature");
  }
  const CorrelationConfig& cfg = config_;
  bool circular = true;
  double max_rot = 180.0;
  if (options.max_rotation_deg.has_value()) {
    max_rot = *options.max_rotation_deg;
    if (!(max_rot >= 0) || !std::isfinite(max_rot)) {
      return InvalidArgument("correlate: max_rotation_deg=" + Fmt(max_rot) + " is not a non-negative number");
    }
    circular = max_rot >= 180.0;
  }
  if (ref.polar_v.cols != tgt.polar_v.cols) {
    return InvalidArgument("correlate: signatures prepared with different configs (" +
                           std::to_string(ref.polar_v.cols) + " vs " + std::to_string(tgt.polar_v.cols) +
                           " angle bins)");
  }
  try {
    ComparisonResult result;
    result.kind = ref.kind;
    // Orientation candidates: maxima of the polar angle profile within the allowed range.
    const std::vector<double> polar =
        PolarProfile(ref, tgt, cfg.polar_max_radial_shift, PolarCentreSearchPx(cfg, ref.coarse.pixel_um));
    const int bins = static_cast<int>(polar.size());
    std::vector<Candidate> profile;
    for (int j = 0; j < bins; ++j) {
      const double theta = WrapDeg(360.0 * j / bins);
      if (!circular && std::abs(theta) > max_rot + 1e-9) continue;
      profile.push_back({Rigid{theta, 0, 0}, polar[j]});
    }
    if (!circular) {
      std::sort(profile.begin(), profile.end(), [](const Candidate& x, const Candidate& y) {
        return x.transform.theta_deg < y.transform.theta_deg;
      });
    }
    std::vector<Candidate> candidates =
        PickCandidates(profile, circular, cfg.max_candidates, cfg.candidate_separation_deg);
    // Let the cells decide between the orientation candidates (one angle
    // each), best polar score first. The translation of a candidate comes
    // from a Cartesian masked NCC at its angle (no assumption that the two
    // centres coincide), computed only when the candidate is checked.
    Rigid center = candidates.empty() ? Rigid{} : candidates.front().transform;
    int best_count = -1;
    double best_sum = -1;
    std::vector<Hit> hits;
    MaskedSpectra translation_ref;
    for (Candidate& cand : candidates) {
      cand.transform =
          AngleProfile(ref.translation, tgt.translation, {cand.transform.theta_deg}, &translation_ref).front().transform;
      result.candidate_angles_deg.push_back(cand.transform.theta_deg);
      RegisterCells(ref, tgt, cand.transform, cand.transform.theta_deg, cfg, &hits, cfg.candidate_cell_stride);
      const Consensus cons = FindConsensus(ref, hits, cand.transform, cfg);
      if (cons.count > best_count || (cons.count == best_count && cons.ccf_sum > best_sum)) {
        best_count = cons.count;
        best_sum = cons.ccf_sum;
        center = cons.count > 0 ? cons.transform : cand.transform;
      }
      // See CorrelationConfig::stop_at_identifying_candidate.
      if (cfg.stop_at_identifying_candidate && best_count >= cfg.cmc_threshold) break;
    }
    DirectionRun fwd = RunDirection(ref, tgt, center, cfg.cell_angle_steps, cfg);
    DirectionRun bwd = RunDirection(tgt, ref, fwd.transform.Inverse(), cfg.backward_cell_angle_steps, cfg);
    result.forward = std::move(fwd.result);
    result.backward = std::move(bwd.result);
    const bool use_fwd = result.forward.cmc <= result.backward.cmc;
    result.cmc = std::min(result.forward.cmc, result.backward.cmc);
    result.cells = use_fwd ? result.forward.cells : result.backward.cells;
    result.theta_deg = result.forward.theta_deg;
    result.dx_um = result.forward.dx_um;
    result.dy_um = result.forward.dy_um;
    result.ccf = GlobalCcf(ref, tgt, fwd.transform);
    result.identification = result.cmc >= cfg.cmc_threshold;
    return result;
  } catch (const std::exception& e) {
    return Internal(std::string("correlate: comparison failed: ") + e.what());
  }
}

StatusOr<Scan> TurnScan(const Scan& scan, double theta_deg, double dx_um, double dy_um) {
  if (scan.values.empty()) return InvalidArgument("correlate: TurnScan: the scan has no values");
  if (!(scan.pixel_um_x > 0) || !(scan.pixel_um_y > 0)) {
    return InvalidArgument("correlate: TurnScan: pixel size " + Fmt(scan.pixel_um_x) + " x " + Fmt(scan.pixel_um_y) +
                           " um is not positive");
  }
  if (!std::isfinite(theta_deg) || !std::isfinite(dx_um) || !std::isfinite(dy_um)) {
    return InvalidArgument("correlate: TurnScan: theta_deg=" + Fmt(theta_deg) + " dx_um=" + Fmt(dx_um) +
                           " dy_um=" + Fmt(dy_um) + " must be finite");
  }
  try {
    const cv::Mat1f& in = scan.values;
    cv::Mat1f v(in.size()), m(in.size());
    for (int y = 0; y < in.rows; ++y) {
      for (int x = 0; x < in.cols; ++x) {
        const bool ok = std::isfinite(in(y, x));
        v(y, x) = ok ? in(y, x) : 0.0f;
        m(y, x) = ok ? 1.0f : 0.0f;
      }
    }
    const double sx = dx_um / scan.pixel_um_x, sy = dy_um / scan.pixel_um_y;
    const int diag = static_cast<int>(std::ceil(std::hypot(in.cols, in.rows)));
    const int pad_x = (diag - in.cols) / 2 + static_cast<int>(std::ceil(std::abs(sx))) + 1;
    const int pad_y = (diag - in.rows) / 2 + static_cast<int>(std::ceil(std::abs(sy))) + 1;
    const cv::Size out(in.cols + 2 * pad_x, in.rows + 2 * pad_y);
    // Pixel sizes may differ in x and y: turn in µm, i.e. scale y by py/px around the rotation.
    const double k = scan.pixel_um_y / scan.pixel_um_x;
    const double c = std::cos(Rad(theta_deg)), s = std::sin(Rad(theta_deg));
    const double cx = (in.cols - 1) / 2.0, cy = (in.rows - 1) / 2.0;
    // forward map: (x, y) -> centre_out + R [(x - cx), (y - cy) k] with y scaled back.
    cv::Matx23d fwd(c, s * k, 0, -s / k, c, 0);
    fwd(0, 2) = pad_x + cx + sx - (c * cx + s * k * cy);
    fwd(1, 2) = pad_y + cy + sy - (-s / k * cx + c * cy);
    cv::Mat1f tv, tm;
    cv::warpAffine(v, tv, cv::Mat(fwd), out, cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
    cv::warpAffine(m, tm, cv::Mat(fwd), out, cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
    for (int y = 0; y < out.height; ++y) {
      for (int x = 0; x < out.width; ++x) {
        if (tm(y, x) < kMaskValid) tv(y, x) = std::numeric_limits<float>::quiet_NaN();
      }
    }
    Scan turned = scan;
    turned.values = tv;
    return turned;
  } catch (const std::exception& e) {
    return Internal(std::string("correlate: TurnScan failed: ") + e.what());
  }
}

cv::Mat1f MaskedNcc(const cv::Mat1f& tmpl, const cv::Mat1f& image, int min_overlap) {
  auto split = [](const cv::Mat1f& in, cv::Mat1f* v, cv::Mat1f* m) {
    v->create(in.size());
    m->create(in.size());
    for (int y = 0; y < in.rows; ++y) {
      for (int x = 0; x < in.cols; ++x) {
        const bool ok = std::isfinite(in(y, x));
        (*v)(y, x) = ok ? in(y, x) : 0.0f;
        (*m)(y, x) = ok ? 1.0f : 0.0f;
      }
    }
    // Centre and scale (the NCC does not change) to keep the float sums well conditioned.
    cv::Scalar mean, sd;
    cv::meanStdDev(*v, mean, sd, *m > 0);
    const double inv = sd[0] > 0 ? 1.0 / sd[0] : 1.0;
    for (int y = 0; y < in.rows; ++y) {
      for (int x = 0; x < in.cols; ++x) {
        if ((*m)(y, x) > 0) (*v)(y, x) = static_cast<float>(((*v)(y, x) - mean[0]) * inv);
      }
    }
  };
  cv::Mat1f tv, tm, iv, im;
  split(tmpl, &tv, &tm);
  split(image, &iv, &im);
  const int rows = tmpl.rows + image.rows - 1, cols = tmpl.cols + image.cols - 1;
  const int nr = FastFftSize(rows), nc = FastFftSize(cols);
  MaskedSpectra ts, is;
  ComputeSpectra(tv, tm, nr, nc, &ts);
  ComputeSpectra(iv, im, nr, nc, &is);
  cv::Mat1f ncc;
  MaskedNccMaps(ts, is, min_overlap, &ncc, nullptr);
  // Circular index u (template shifted by u) -> "full" output index u + tmpl - 1.
  cv::Mat1f out(rows, cols);
  for (int y = 0; y < rows; ++y) {
    const int uy = (y - (tmpl.rows - 1) + nr) % nr;
    for (int x = 0; x < cols; ++x) {
      const int ux = (x - (tmpl.cols - 1) + nc) % nc;
      const float v = ncc(uy, ux);
      out(y, x) = v < -1.5f ? 0.0f : v;
    }
  }
  return out;
}

}  // namespace ballistics
