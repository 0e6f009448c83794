// Test fires: the firearm's marks as transferred onto one primer, as a signature or
// as a raw-like scan.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "ballistics/synth.h"
#include "fields.h"
#include "internal.h"
#include "random.h"

namespace ballistics::synth {
namespace {

using internal::Spectrum;
using internal::Stream;
using internal::StreamSeed;

constexpr double kDegToRad = std::numbers::pi / 180.0;

Status CheckRange(double v, double lo, double hi, const char* name) {
  if (!(v >= lo && v <= hi)) {
    return InvalidArgument(std::string("synth: ") + name + "=" + std::to_string(v) + " is outside [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return Status::Ok();
}

Status ValidateOptions(const ShotOptions& o) {
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.pixel_um, 0.5, 50.0, "pixel_um"));
  if (o.size_px < 0 || o.size_px > 20000) {
    return InvalidArgument("synth: size_px=" + std::to_string(o.size_px) + " is outside [0, 20000]");
  }
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.max_rotation_deg, 0.0, 180.0, "max_rotation_deg"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.max_shift_um, 0.0, 10000.0, "max_shift_um"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.primer_play_um, 0.0, 500.0, "primer_play_um"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.mark_transfer, 0.0, 1.0, "mark_transfer"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.mark_transfer_spread, 0.0, 1.0, "mark_transfer_spread"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.contact_variation, 0.0, 1.0, "contact_variation"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.primer_slope_delta, 0.0, 3.0, "primer_slope_delta"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.deformation_um, 0.0, 100.0, "deformation_um"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.noise_um, 0.0, 100.0, "noise_um"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.min_dropout_fraction, 0.0, 0.95, "min_dropout_fraction"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.max_dropout_fraction, 0.0, 0.95, "max_dropout_fraction"));
  if (o.min_dropout_fraction > o.max_dropout_fraction) {
    return InvalidArgument("synth: min_dropout_fraction=" + std::to_string(o.min_dropout_fraction) +
                           " exceeds max_dropout_fraction=" + std::to_string(o.max_dropout_fraction));
  }
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.annulus_outer_um, 100.0, 10000.0, "annulus_outer_um"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.radius_jitter_um, 0.0, 200.0, "radius_jitter_um"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.primer_radius_um, 100.0, 10000.0, "primer_radius_um"));
  if (o.primer_radius_um < o.annulus_outer_um) {
    return InvalidArgument("synth: primer_radius_um=" + std::to_string(o.primer_radius_um) +
                           " is smaller than annulus_outer_um=" + std::to_string(o.annulus_outer_um));
  }
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.primer_edge_drop_um, 0.0, 2000.0, "primer_edge_drop_um"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.flowback_um, -500.0, 500.0, "flowback_um"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.max_tilt_deg, 0.0, 30.0, "max_tilt_deg"));
  BALLISTICS_RETURN_IF_ERROR(CheckRange(o.max_measurable_slope_deg, 0.0, 89.0, "max_measurable_slope_deg"));
  return Status::Ok();
}

// Everything random about one shot that is not a field.
struct ShotParams {
  double rotation_rad = 0.0;
  double tx = 0.0, ty = 0.0;         // shift of the gun frame in the image (µm)
  double ex = 0.0, ey = 0.0;         // primer centre in the gun frame (µm)
  double r_in = 0.0, r_out = 0.0;    // BF annulus radii
  double dropout = 0.0;
  double ramp_x = 0.0, ramp_y = 0.0; // contact ramp direction / outer radius
  double tilt_x = 0.0, tilt_y = 0.0; // scan plane slopes
  double offset_um = 0.0;            // scan height offset
  double transfer = 0.0;             // this shot's mark transfer
};

std::uint64_t ShotKey(const FirearmModel& gun, std::uint64_t shot_seed) {
  return internal::HashKey(gun.seed, static_cast<std::int64_t>(shot_seed), 0x5407);
}

ShotParams DrawShot(const FirearmModel& gun, std::uint64_t key, const ShotOptions& o) {
  internal::Xoshiro256pp rng(StreamSeed(key, Stream::kShotParams));
  ShotParams p;
  p.rotation_rad = rng.Uniform(-o.max_rotation_deg, o.max_rotation_deg) * kDegToRad;
  {
    const double r = o.max_shift_um * std::sqrt(rng.Uniform()), a = rng.Uniform(0.0, 2 * std::numbers::pi);
    p.tx = r * std::cos(a);
    p.ty = r * std::sin(a);
  }
  {
    const double r = o.primer_play_um * std::sqrt(rng.Uniform()), a = rng.Uniform(0.0, 2 * std::numbers::pi);
    p.ex = gun.primer_offset_um_x + r * std::cos(a);
    p.ey = gun.primer_offset_um_y + r * std::sin(a);
  }
  p.r_in = gun.aperture_radius_um + rng.Uniform(-1.0, 1.0) * o.radius_jitter_um;
  p.r_out = o.annulus_outer_um + rng.Uniform(-1.0, 1.0) * o.radius_jitter_um;
  p.dropout = rng.Uniform(o.min_dropout_fraction, o.max_dropout_fraction);
  {
    const double a = rng.Uniform(0.0, 2 * std::numbers::pi);
    p.ramp_x = std::cos(a) / p.r_out;
    p.ramp_y = std::sin(a) / p.r_out;
  }
  {
    const double slope = std::tan(rng.Uniform(0.0, o.max_tilt_deg) * kDegToRad);
    const double a = rng.Uniform(0.0, 2 * std::numbers::pi);
    p.tilt_x = slope * std::cos(a);
    p.tilt_y = slope * std::sin(a);
    p.offset_um = rng.Uniform(-20.0, 20.0);
  }
  p.transfer = std::max(0.0, o.mark_transfer - o.mark_transfer_spread * rng.Uniform());
  return p;
}

double SmoothStep(double e0, double e1, double x) {
  const double t = std::clamp((x - e0) / (e1 - e0), 0.0, 1.0);
  return t * t * (3.0 - 2.0 * t);
}

// A smooth random field over a side x side image, generated on a grid `factor` times
// coarser (its spectrum stops well below that grid's Nyquist) and looked up with
// bilinear interpolation (cv::resize's pixel-centre convention, clamped borders).
class CoarseField {
 public:
  // Bilinear weights of one image row; At(c) is the value at column c.
  struct Row {
    const float* r0 = nullptr;
    const float* r1 = nullptr;
    float wy = 0.0f;
    const int* x0 = nullptr;
    const float* wx = nullptr;
    float At(int c) const {
      const int i = x0[c];
      const float w = wx[c];
      const float top = r0[i] + w * (r0[i + 1] - r0[i]);
      const float bottom = r1[i] + w * (r1[i + 1] - r1[i]);
      return top + wy * (bottom - top);
    }
  };

  CoarseField() = default;
  CoarseField(std::uint64_t seed, int side, double pixel_um, int factor, const Spectrum& s) {
    const int n = internal::EvenDftSize((side + factor - 1) / factor);
    f_ = internal::StreamField2D(seed, n, n, pixel_um * side / n, s);
    scale_ = static_cast<double>(n) / side;
    x0_.resize(static_cast<std::size_t>(side));
    wx_.resize(static_cast<std::size_t>(side));
    for (int c = 0; c < side; ++c) {
      Interp(c, &x0_[static_cast<std::size_t>(c)], &wx_[static_cast<std::size_t>(c)]);
    }
  }
  bool empty() const { return f_.empty(); }
  int size() const { return f_.cols; }
  // Image pixel coordinate of coarse node i.
  double NodeToPixel(int i) const { return (i + 0.5) / scale_ - 0.5; }
  float& Node(int r, int c) { return f_(r, c); }
  Row RowAt(int r) const {
    Row row;
    int y0;
    Interp(r, &y0, &row.wy);
    row.r0 = f_[y0];
    row.r1 = f_[y0 + 1];
    row.x0 = x0_.data();
    row.wx = wx_.data();
    return row;
  }
  float At(int r, int c) const { return RowAt(r).At(c); }

 private:
  void Interp(int i, int* i0, float* w) const {
    const double x = std::clamp((i + 0.5) * scale_ - 0.5, 0.0, f_.cols - 1.0);
    *i0 = std::min(static_cast<int>(x), f_.cols - 2);
    *w = static_cast<float>(x - *i0);
  }

  cv::Mat1f f_;
  double scale_ = 1.0;
  std::vector<int> x0_;
  std::vector<float> wx_;
};

// Bilinear sample of a periodic gun-frame map at map pixel (x, y).
float SamplePeriodic(const cv::Mat1f& m, double x, double y) {
  // Truncation plus a correction instead of std::floor: without SSE4.1 floor is a
  // library call, and this is the innermost loop.
  int x0 = static_cast<int>(x), y0 = static_cast<int>(y);
  x0 -= x < x0;
  y0 -= y < y0;
  const float wx = static_cast<float>(x - x0), wy = static_cast<float>(y - y0);
  int x1 = x0 + 1, y1 = y0 + 1;
  if (x0 < 0 || y0 < 0 || x1 >= m.cols || y1 >= m.rows) {
    auto wrap = [](int v, int n) { return ((v % n) + n) % n; };
    x0 = wrap(x0, m.cols);
    x1 = wrap(x1, m.cols);
    y0 = wrap(y0, m.rows);
    y1 = wrap(y1, m.rows);
  }
  const float* r0 = m[y0];
  const float* r1 = m[y1];
  const float top = r0[x0] + wx * (r0[x1] - r0[x0]);
  const float bottom = r1[x0] + wx * (r1[x1] - r1[x0]);
  return top + wy * (bottom - top);
}

// The per-shot geometry: image pixel -> gun-frame µm (rotation, shift and a smooth
// deformation field), and lookups of gun-frame maps there.
class ShotGeometry {
 public:
  ShotGeometry(int side, double pixel_um, const ShotParams& p, std::uint64_t key, double deformation_um)
      : pixel_um_(pixel_um), p_(p) {
    centre_ = 0.5 * (side - 1);
    cos_ = std::cos(p.rotation_rad);
    sin_ = std::sin(p.rotation_rad);
    deformation_um_ = static_cast<float>(deformation_um);
    if (deformation_um > 0.0) {
      Spectrum ds;
      ds.slope = 0.0;
      ds.short_um = 600.0;  // displacements vary over ~1 mm: a slightly dished primer
      ds.long_um = 0.0;
      dx_ = CoarseField(StreamSeed(key, Stream::kShotDeformX), side, pixel_um, 16, ds);
      dy_ = CoarseField(StreamSeed(key, Stream::kShotDeformY), side, pixel_um, 16, ds);
    }
  }

  // Image-frame µm of a pixel.
  double Qx(int c) const { return (c - centre_) * pixel_um_; }
  double Qy(int r) const { return (r - centre_) * pixel_um_; }
  // Gun-frame µm of an image point, without deformation.
  double Px(double qx, double qy) const { return cos_ * (qx - p_.tx) + sin_ * (qy - p_.ty); }
  double Py(double qx, double qy) const { return -sin_ * (qx - p_.tx) + cos_ * (qy - p_.ty); }
  // Deformation rows (empty Row pointers when there is no deformation).
  bool deformed() const { return !dx_.empty(); }
  CoarseField::Row DxRow(int r) const { return dx_.RowAt(r); }
  CoarseField::Row DyRow(int r) const { return dy_.RowAt(r); }
  float deformation_um() const { return deformation_um_; }
  // Gun-frame µm of pixel (r, c), deformation included.
  void GunPoint(int r, int c, double qx, double qy, double* px, double* py) const {
    *px = Px(qx, qy);
    *py = Py(qx, qy);
    if (!dx_.empty()) {
      *px += deformation_um_ * dx_.At(r, c);
      *py += deformation_um_ * dy_.At(r, c);
    }
  }
  // Value of a gun-frame map (centre pixel (cols/2, rows/2), spacing map_pixel_um).
  static float Lookup(const cv::Mat1f& map, double map_pixel_um, double px, double py) {
    return SamplePeriodic(map, map.cols / 2 + px / map_pixel_um, map.rows / 2 + py / map_pixel_um);
  }

 private:
  double pixel_um_;
  ShotParams p_;
  double centre_ = 0.0, cos_ = 1.0, sin_ = 0.0;
  float deformation_um_ = 0.0f;
  CoarseField dx_, dy_;
};

// Contact weight in [1 - variation, 1]: a smooth random field plus a ramp across
// the face (the primer seated at a slight angle to the breech face). Built on the
// coarse grid (the ramp is linear, so interpolating it is exact away from the clamp).
CoarseField ContactWeight(std::uint64_t key, int side, double pixel_um, const ShotParams& p, double variation,
                          const ShotGeometry& g) {
  if (variation <= 0.0) return {};
  Spectrum cs;
  cs.slope = 2.0;
  cs.short_um = 400.0;
  cs.long_um = 4000.0;
  CoarseField w(StreamSeed(key, Stream::kShotContact), side, pixel_um, 8, cs);
  for (int r = 0; r < w.size(); ++r) {
    const double qy = pixel_um * (w.NodeToPixel(r) - 0.5 * (side - 1)) - p.ty;
    for (int c = 0; c < w.size(); ++c) {
      const double qx = pixel_um * (w.NodeToPixel(c) - 0.5 * (side - 1)) - p.tx;
      const double ramp = qx * p.ramp_x + qy * p.ramp_y;
      const double loss = std::clamp(0.5 + 0.35 * w.Node(r, c) + 0.35 * ramp, 0.0, 1.0);
      w.Node(r, c) = static_cast<float>(1.0 - variation * loss);
    }
  }
  return w;
}

CoarseField DropoutField(std::uint64_t key, int side, double pixel_um) {
  Spectrum bs;
  bs.slope = 1.0;
  bs.short_um = 120.0;  // blobs ~100 µm and larger, like the holes in the Fadul scans
  bs.long_um = 0.0;
  return CoarseField(StreamSeed(key, Stream::kShotDropout), side, pixel_um, 4, bs);
}

// Column range [first, second) of each row that a circle (pixel units) covers: the
// region lies inside it, so the loops skip the rest of the grid.
using RowSpans = std::vector<std::pair<int, int>>;
RowSpans CircleSpans(int side, double cx, double cy, double radius) {
  RowSpans spans(static_cast<std::size_t>(side), {0, 0});
  for (int r = 0; r < side; ++r) {
    const double dy = r - cy;
    if (std::abs(dy) >= radius) continue;
    const double half = std::sqrt(radius * radius - dy * dy);
    const int lo = std::max(0, static_cast<int>(std::floor(cx - half)));
    const int hi = std::min(side, static_cast<int>(std::ceil(cx + half)) + 1);
    if (lo < hi) spans[static_cast<std::size_t>(r)] = {lo, hi};
  }
  return spans;
}

// Threshold on the dropout field so that `fraction` of the region goes missing:
// the quantile over every other row and column of the region (within ~0.5 %).
template <typename InRegion>
float DropoutThreshold(const CoarseField& blobs, int side, double fraction, InRegion&& in_region,
                       const RowSpans* spans = nullptr) {
  if (fraction <= 0.0 || blobs.empty()) return std::numeric_limits<float>::infinity();
  std::vector<float> v;
  v.reserve(static_cast<std::size_t>(side) * side / 4);
  for (int r = 0; r < side; r += 2) {
    const int lo = spans ? (*spans)[static_cast<std::size_t>(r)].first : 0;
    const int hi = spans ? (*spans)[static_cast<std::size_t>(r)].second : side;
    const CoarseField::Row row = blobs.RowAt(r);
    for (int c = lo + (lo & 1); c < hi; c += 2) {
      if (in_region(r, c)) v.push_back(row.At(c));
    }
  }
  if (v.empty()) return std::numeric_limits<float>::infinity();
  const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>((1.0 - fraction) * v.size()));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// Per-shot primer texture with the firearm's spectrum (looks like marks, new each
// shot). Half resolution on fine grids: its spectrum is nearly empty above 25 µm.
CoarseField PrimerTexture(std::uint64_t seed, int side, double pixel_um, Spectrum s, double slope_delta) {
  s.slope = std::max(0.0, s.slope - slope_delta);
  return CoarseField(seed, side, pixel_um, pixel_um < 8.0 ? 2 : 1, s);
}

void FillTruth(ShotTruth* truth, const FirearmModel& gun, std::uint64_t shot_seed, const ShotParams& p,
               double missing) {
  if (!truth) return;
  truth->firearm_seed = gun.seed;
  truth->shot_seed = shot_seed;
  truth->rotation_deg = p.rotation_rad / kDegToRad;
  truth->shift_x_um = p.tx;
  truth->shift_y_um = p.ty;
  truth->primer_offset_um_x = p.ex;
  truth->primer_offset_um_y = p.ey;
  truth->inner_radius_um = p.r_in;
  truth->outer_radius_um = p.r_out;
  truth->mark_transfer = p.transfer;
  truth->dropout_fraction = p.dropout;
  truth->missing_fraction = missing;
}

int AutoSide(double radius_um, double pixel_um) {
  return 2 * static_cast<int>(std::ceil(radius_um / pixel_um)) + 1;
}

Status CheckSurface(const FirearmSurface& gun, const ShotOptions& o) {
  if (gun.breech_face_um.empty() || gun.firing_pin_um.empty()) {
    return InvalidArgument("synth: firearm surface is empty (use RenderFirearm)");
  }
  if (std::abs(gun.requested_pixel_um - o.pixel_um) > 1e-9 * o.pixel_um) {
    return InvalidArgument("synth: firearm rendered for pixel_um=" + std::to_string(gun.requested_pixel_um) +
                           " but the shot asks pixel_um=" + std::to_string(o.pixel_um));
  }
  return Status::Ok();
}

// Shared by both signature kinds: the region test, the transferred map, the
// primer's own texture and its RMS.
template <typename InRegion>
Signature RenderSignature(SignatureKind kind, const FirearmModel& m, std::uint64_t key, const ShotParams& p,
                          int side, const ShotOptions& o, const cv::Mat1f& map, double map_pixel_um,
                          const Spectrum& primer_spectrum, Stream primer_stream, double rms_um,
                          InRegion&& in_region, const RowSpans& spans, double* missing_fraction) {
  const ShotGeometry geo(side, o.pixel_um, p, key, o.deformation_um);
  const CoarseField primer = PrimerTexture(StreamSeed(key, primer_stream), side, o.pixel_um, primer_spectrum, o.primer_slope_delta);
  const CoarseField contact = ContactWeight(key, side, o.pixel_um, p, o.contact_variation, geo);
  CoarseField blobs;
  float threshold = std::numeric_limits<float>::infinity();
  if (p.dropout > 0.0) {
    blobs = DropoutField(key, side, o.pixel_um);
    threshold = DropoutThreshold(blobs, side, p.dropout, in_region, &spans);
  }
  // Transferred marks (a share of the variance) plus the primer's own texture (the rest).
  const float a = static_cast<float>(std::sqrt(p.transfer));
  const float b = static_cast<float>(std::sqrt(1.0 - p.transfer) * rms_um);
  internal::Xoshiro256pp white(StreamSeed(key, Stream::kShotWhiteNoise));
  const float noise = static_cast<float>(o.noise_um);
  const float nan = std::numeric_limits<float>::quiet_NaN();

  Signature sig;
  sig.kind = kind;
  sig.modality = Modality::kTopography3d;
  sig.pipeline_version = std::string(kSynthVersion);
  sig.pixel_um = o.pixel_um;
  sig.values.create(side, side);
  sig.values.setTo(nan);
  std::size_t region_count = 0, missing = 0;
  double sum_sq = 0.0;
  const bool has_blobs = !blobs.empty(), has_contact = !contact.empty(), deformed = geo.deformed();
  const float deformation = geo.deformation_um();
  const double map_scale = 1.0 / map_pixel_um;
  const double map_cx = map.cols / 2, map_cy = map.rows / 2;
  // Tiles of 16 x 64 pixels: a rotated tile reads a compact patch of the gun map,
  // which stays in L1 (row by row, each row crosses ~600 cache lines of the map).
  constexpr int kTileRows = 16, kTileCols = 64;
  for (int r0 = 0; r0 < side; r0 += kTileRows) {
    const int r1 = std::min(side, r0 + kTileRows);
    for (int c0 = 0; c0 < side; c0 += kTileCols) {
      const int c1 = std::min(side, c0 + kTileCols);
      for (int r = r0; r < r1; ++r) {
        const auto [span_lo, span_hi] = spans[static_cast<std::size_t>(r)];
        const int first = std::max(c0, span_lo), last = std::min(c1, span_hi);
        if (first >= last) continue;
        float* out = sig.values[r];
        const double qy = geo.Qy(r);
        const CoarseField::Row primer_row = primer.RowAt(r);
        const CoarseField::Row contact_row = has_contact ? contact.RowAt(r) : CoarseField::Row{};
        const CoarseField::Row blob_row = has_blobs ? blobs.RowAt(r) : CoarseField::Row{};
        const CoarseField::Row dx_row = deformed ? geo.DxRow(r) : CoarseField::Row{};
        const CoarseField::Row dy_row = deformed ? geo.DyRow(r) : CoarseField::Row{};
        double row_sum_sq = 0.0;  // a local accumulator stays in a register
        // Gun-frame coordinates are linear along the row: step them.
        const double px0 = geo.Px(geo.Qx(first), qy), py0 = geo.Py(geo.Qx(first), qy);
        const double dpx = geo.Px(geo.Qx(first + 1), qy) - px0, dpy = geo.Py(geo.Qx(first + 1), qy) - py0;
        for (int c = first; c < last; ++c) {
          if (!in_region(r, c)) continue;
          ++region_count;
          if (has_blobs && blob_row.At(c) > threshold) {
            ++missing;
            continue;
          }
          double px = px0 + (c - first) * dpx, py = py0 + (c - first) * dpy;
          if (deformed) {
            px += deformation * dx_row.At(c);
            py += deformation * dy_row.At(c);
          }
          const float mark = SamplePeriodic(map, map_cx + px * map_scale, map_cy + py * map_scale);
          const float v = a * mark * (has_contact ? contact_row.At(c) : 1.0f) + b * primer_row.At(c);
          row_sum_sq += static_cast<double>(v) * v;
          out[c] = v;
        }
        sum_sq += row_sum_sq;
      }
    }
  }
  // Keep the firearm's RMS whatever the contact: where the face did not press, the
  // primer's own texture shows instead (band-passed real scans keep ~1.6 µm RMS).
  const std::size_t valid = region_count - missing;
  const float gain = valid && sum_sq > 0.0 ? static_cast<float>(rms_um / std::sqrt(sum_sq / valid)) : 1.0f;
  double final_sum_sq = 0.0;
  for (int r = 0; r < side; ++r) {
    float* out = sig.values[r];
    double row_sum_sq = 0.0;
    for (int c = spans[static_cast<std::size_t>(r)].first; c < spans[static_cast<std::size_t>(r)].second; ++c) {
      if (std::isnan(out[c])) continue;
      float v = out[c] * gain;
      if (noise > 0.0f) v += noise * internal::UnitVarianceUniform(static_cast<std::uint32_t>(white.Next()));
      out[c] = v;
      row_sum_sq += static_cast<double>(v) * v;
    }
    final_sum_sq += row_sum_sq;
  }
  sig.quality.valid_fraction = static_cast<double>(valid) / static_cast<double>(sig.values.total());
  sig.quality.rms_height = valid ? std::sqrt(final_sum_sq / static_cast<double>(valid)) : 0.0;
  sig.quality.valid_area_mm2 = static_cast<double>(valid) * sig.pixel_um * sig.pixel_um * 1e-6;
  *missing_fraction = region_count ? static_cast<double>(missing) / static_cast<double>(region_count) : 0.0;
  return sig;
}

StatusOr<Signature> BreechFaceSignature(const FirearmSurface& gun, std::uint64_t shot_seed,
                                        const ShotOptions& o, ShotTruth* truth) {
  const FirearmModel& m = gun.model;
  const std::uint64_t key = ShotKey(m, shot_seed);
  const ShotParams p = DrawShot(m, key, o);
  const double offset = std::hypot(m.primer_offset_um_x, m.primer_offset_um_y) + o.primer_play_um;
  const int side = o.size_px > 0 ? o.size_px
                                 : AutoSide(o.annulus_outer_um + o.radius_jitter_um + offset + o.max_shift_um,
                                            o.pixel_um);
  // Region: inside the primer's flat (centred on the primer) and outside the aperture
  // (centred on the firing-pin axis); both move with the casing.
  const double centre = 0.5 * (side - 1);
  const double pcx = (std::cos(p.rotation_rad) * p.ex - std::sin(p.rotation_rad) * p.ey + p.tx) / o.pixel_um + centre;
  const double pcy = (std::sin(p.rotation_rad) * p.ex + std::cos(p.rotation_rad) * p.ey + p.ty) / o.pixel_um + centre;
  const double fcx = p.tx / o.pixel_um + centre, fcy = p.ty / o.pixel_um + centre;
  const double out2 = (p.r_out / o.pixel_um) * (p.r_out / o.pixel_um);
  const double in2 = (p.r_in / o.pixel_um) * (p.r_in / o.pixel_um);
  auto in_region = [&](int r, int c) {
    const double dp = (c - pcx) * (c - pcx) + (r - pcy) * (r - pcy);
    const double df = (c - fcx) * (c - fcx) + (r - fcy) * (r - fcy);
    return dp < out2 && df > in2;
  };
  const RowSpans spans = CircleSpans(side, pcx, pcy, std::sqrt(out2));
  double missing = 0.0;
  Signature sig = RenderSignature(SignatureKind::kBreechFace, m, key, p, side, o, gun.breech_face_um, gun.pixel_um,
                                  internal::BreechIsotropicSpectrum(m), Stream::kShotNoise, m.mark_rms_um,
                                  in_region, spans, &missing);
  FillTruth(truth, m, shot_seed, p, missing);
  return sig;
}

StatusOr<Signature> FiringPinSignature(const FirearmSurface& gun, std::uint64_t shot_seed,
                                       const ShotOptions& o, ShotTruth* truth) {
  const FirearmModel& m = gun.model;
  const std::uint64_t key = ShotKey(m, shot_seed);
  const ShotParams p = DrawShot(m, key, o);
  const double extent = internal::FiringPinExtentUm(m);
  const int side = o.size_px > 0 ? o.size_px : AutoSide(extent + o.max_shift_um + 2 * o.pixel_um, o.pixel_um);
  const ShotGeometry geo(side, o.pixel_um, p, key, 0.0);
  const double reach2 = (extent / o.pixel_um + 1.0) * (extent / o.pixel_um + 1.0);
  const double centre = 0.5 * (side - 1);
  const double fcx = p.tx / o.pixel_um + centre, fcy = p.ty / o.pixel_um + centre;
  auto in_region = [&](int r, int c) {
    if ((c - fcx) * (c - fcx) + (r - fcy) * (r - fcy) > reach2) return false;
    const double qx = geo.Qx(c), qy = geo.Qy(r);
    return internal::FiringPinNorm(m, geo.Px(qx, qy), geo.Py(qx, qy)) < 1.0;
  };
  const RowSpans spans = CircleSpans(side, fcx, fcy, std::sqrt(reach2));
  double missing = 0.0;
  Signature sig = RenderSignature(SignatureKind::kFiringPin, m, key, p, side, o, gun.firing_pin_um,
                                  gun.firing_pin_pixel_um, internal::FiringPinSpectrum(),
                                  Stream::kShotFiringPinNoise, m.fp_mark_rms_um, in_region, spans, &missing);
  FillTruth(truth, m, shot_seed, p, missing);
  return sig;
}

}  // namespace

StatusOr<Signature> MakeShotSignature(const FirearmSurface& gun, std::uint64_t shot_seed,
                                      const ShotOptions& options, ShotTruth* truth) {
  BALLISTICS_RETURN_IF_ERROR(ValidateOptions(options));
  BALLISTICS_RETURN_IF_ERROR(CheckSurface(gun, options));
  try {
    return options.kind == SignatureKind::kFiringPin ? FiringPinSignature(gun, shot_seed, options, truth)
                                                     : BreechFaceSignature(gun, shot_seed, options, truth);
  } catch (const cv::Exception& e) {
    return Internal(std::string("synth: making a signature failed: ") + e.what());
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("synth: out of memory making a signature of size_px=" +
                             std::to_string(options.size_px));
  }
}

StatusOr<Signature> MakeShotSignature(const FirearmModel& gun, std::uint64_t shot_seed,
                                      const ShotOptions& options, ShotTruth* truth) {
  BALLISTICS_RETURN_IF_ERROR(ValidateOptions(options));
  BALLISTICS_ASSIGN_OR_RETURN(FirearmSurface surface, RenderFirearm(gun, options.pixel_um));
  return MakeShotSignature(surface, shot_seed, options, truth);
}

StatusOr<Scan> MakeShotScan(const FirearmSurface& gun, std::uint64_t shot_seed, const ShotOptions& o,
                            ShotTruth* truth) {
  BALLISTICS_RETURN_IF_ERROR(ValidateOptions(o));
  BALLISTICS_RETURN_IF_ERROR(CheckSurface(gun, o));
  try {
    const FirearmModel& m = gun.model;
    const std::uint64_t key = ShotKey(m, shot_seed);
    const ShotParams p = DrawShot(m, key, o);
    const double offset = std::hypot(m.primer_offset_um_x, m.primer_offset_um_y) + o.primer_play_um;
    const int side = o.size_px > 0 ? o.size_px
                                   : AutoSide(o.primer_radius_um + offset + o.max_shift_um + 60.0, o.pixel_um);
    const ShotGeometry geo(side, o.pixel_um, p, key, o.deformation_um);
    const CoarseField primer = PrimerTexture(StreamSeed(key, Stream::kShotNoise), side, o.pixel_um,
                                             internal::BreechIsotropicSpectrum(m), o.primer_slope_delta);
    const CoarseField contact = ContactWeight(key, side, o.pixel_um, p, o.contact_variation, geo);
    const double pcx = std::cos(p.rotation_rad) * p.ex - std::sin(p.rotation_rad) * p.ey + p.tx;
    const double pcy = std::sin(p.rotation_rad) * p.ex + std::cos(p.rotation_rad) * p.ey + p.ty;
    const double a = std::sqrt(p.transfer);
    const double b = std::sqrt(1.0 - p.transfer) * m.mark_rms_um;
    const double rp = o.primer_radius_um;

    cv::Mat1f z(side, side);
    cv::Mat1b region(side, side);
    std::size_t region_count = 0;
    for (int r = 0; r < side; ++r) {
      const double qy = geo.Qy(r);
      for (int c = 0; c < side; ++c) {
        const double qx = geo.Qx(c);
        const double rho = std::hypot(qx - pcx, qy - pcy);
        region(r, c) = rho < rp ? 1 : 0;
        if (rho >= rp) {
          z(r, c) = std::numeric_limits<float>::quiet_NaN();
          continue;
        }
        ++region_count;
        double px, py;
        geo.GunPoint(r, c, qx, qy, &px, &py);
        const double rf = std::hypot(px, py);
        // Breech-face marks where the primer met the face: outside the aperture, on the flat.
        const double contact_w = SmoothStep(p.r_in - 20.0, p.r_in + 20.0, rf) *
                                 (1.0 - SmoothStep(p.r_out - 40.0, p.r_out + 80.0, rho));
        double h = b * primer.At(r, c);
        if (contact_w > 0.0) {
          h += contact_w * a * ShotGeometry::Lookup(gun.breech_face_um, gun.pixel_um, px, py) *
               (contact.empty() ? 1.0 : contact.At(r, c));
        }
        // Primer metal flows back into the firing-pin aperture: a raised plateau.
        h += o.flowback_um * (1.0 - SmoothStep(p.r_in - 60.0, p.r_in + 20.0, rf));
        // Firing-pin crater: a paraboloid bowl of the pin's footprint, with the pin's marks.
        const double s = internal::FiringPinNorm(m, px, py);
        if (s < 1.0) {
          h -= m.fp_depth_um * (1.0 - s * s);
          h += (1.0 - SmoothStep(0.85, 1.0, s)) * a *
               ShotGeometry::Lookup(gun.firing_pin_um, gun.firing_pin_pixel_um, px, py);
        }
        // Rounded primer edge.
        if (rho > p.r_out) {
          const double e = (rho - p.r_out) / (rp - p.r_out);
          h -= o.primer_edge_drop_um * e * e;
        }
        // Scanner: tilt and height offset.
        h += p.tilt_x * qx + p.tilt_y * qy + p.offset_um;
        z(r, c) = static_cast<float>(h);
      }
    }
    // Optical scanners lose steep flanks.
    cv::Mat1b steep;
    if (o.max_measurable_slope_deg > 0.0) {
      cv::Mat1f zf;
      cv::patchNaNs(zf = z.clone(), 0.0);
      cv::Mat1f gx, gy;
      cv::Sobel(zf, gx, CV_32F, 1, 0, 3, 1.0 / (8.0 * o.pixel_um));
      cv::Sobel(zf, gy, CV_32F, 0, 1, 3, 1.0 / (8.0 * o.pixel_um));
      cv::Mat1f mag;
      cv::magnitude(gx, gy, mag);
      steep = mag > std::tan(o.max_measurable_slope_deg * kDegToRad);
    }
    CoarseField blobs;
    float threshold = std::numeric_limits<float>::infinity();
    if (p.dropout > 0.0) {
      blobs = DropoutField(key, side, o.pixel_um);
      threshold = DropoutThreshold(blobs, side, p.dropout, [&](int r, int c) { return region(r, c) != 0; });
    }
    internal::Xoshiro256pp white(StreamSeed(key, Stream::kShotWhiteNoise));
    std::size_t missing = 0;
    for (int r = 0; r < side; ++r) {
      for (int c = 0; c < side; ++c) {
        if (!region(r, c)) continue;
        if ((!blobs.empty() && blobs.At(r, c) > threshold) || (!steep.empty() && steep(r, c))) {
          z(r, c) = std::numeric_limits<float>::quiet_NaN();
          ++missing;
        } else if (o.noise_um > 0.0) {
          z(r, c) += static_cast<float>(o.noise_um * white.Normal());
        }
      }
    }
    Scan scan;
    scan.format = ScanFormat::kX3p;
    scan.modality = Modality::kTopography3d;
    scan.values = z;
    scan.pixel_um_x = o.pixel_um;
    scan.pixel_um_y = o.pixel_um;
    scan.source_data_type = "F";
    scan.scanner.manufacturer = "ballistics";
    scan.scanner.model = "synthetic casing generator";
    scan.scanner.version = std::string(kSynthVersion);
    scan.scanner.creator = "ballistics::synth";
    char comment[160];
    std::snprintf(comment, sizeof(comment), "synthetic test fire: firearm_seed=%llu shot_seed=%llu",
                  static_cast<unsigned long long>(m.seed), static_cast<unsigned long long>(shot_seed));
    scan.scanner.comment = comment;
    FillTruth(truth, m, shot_seed, p, region_count ? static_cast<double>(missing) / region_count : 0.0);
    return scan;
  } catch (const cv::Exception& e) {
    return Internal(std::string("synth: making a scan failed: ") + e.what());
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("synth: out of memory making a scan of size_px=" + std::to_string(o.size_px));
  }
}

StatusOr<Scan> MakeShotScan(const FirearmModel& gun, std::uint64_t shot_seed, const ShotOptions& options,
                            ShotTruth* truth) {
  BALLISTICS_RETURN_IF_ERROR(ValidateOptions(options));
  BALLISTICS_ASSIGN_OR_RETURN(FirearmSurface surface, RenderFirearm(gun, options.pixel_um));
  return MakeShotScan(surface, shot_seed, options, truth);
}

cv::Matx23d GunToImagePixels(const ShotTruth& t, cv::Size size, double pixel_um) {
  const double a = t.rotation_deg * kDegToRad;
  const double c = std::cos(a) / pixel_um, s = std::sin(a) / pixel_um;
  return {c, -s, t.shift_x_um / pixel_um + 0.5 * (size.width - 1),
          s, c, t.shift_y_um / pixel_um + 0.5 * (size.height - 1)};
}

cv::Matx23d ImageToImagePixels(const ShotTruth& from, cv::Size from_size, const ShotTruth& to, cv::Size to_size,
                               double pixel_um) {
  // pixel(from) -> gun µm: the inverse of GunToImagePixels(from); then forward into `to`.
  cv::Matx23d f = GunToImagePixels(from, from_size, pixel_um);
  cv::Matx23d f_inv;
  cv::invertAffineTransform(f, f_inv);
  const cv::Matx23d g = GunToImagePixels(to, to_size, pixel_um);
  const cv::Matx33d g3(g(0, 0), g(0, 1), g(0, 2), g(1, 0), g(1, 1), g(1, 2), 0, 0, 1);
  const cv::Matx33d f3(f_inv(0, 0), f_inv(0, 1), f_inv(0, 2), f_inv(1, 0), f_inv(1, 1), f_inv(1, 2), 0, 0, 1);
  const cv::Matx33d m = g3 * f3;
  return {m(0, 0), m(0, 1), m(0, 2), m(1, 0), m(1, 1), m(1, 2)};
}

}  // namespace ballistics::synth
