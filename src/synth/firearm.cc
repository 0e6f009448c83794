// Firearms: parameters drawn from a seed, and their rendered breech face and firing pin.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include <opencv2/imgproc.hpp>

#include "ballistics/synth.h"
#include "fields.h"
#include "internal.h"
#include "random.h"

namespace ballistics::synth {

using internal::Spectrum;

std::string_view BreechTextureName(BreechTexture t) {
  switch (t) {
    case BreechTexture::kParallelFiled: return "parallel-filed";
    case BreechTexture::kArchedMachined: return "arched";
    case BreechTexture::kCircularTurned: return "circular";
    case BreechTexture::kGranular: return "granular";
  }
  return "unknown";
}

std::string_view FiringPinShapeName(FiringPinShape s) {
  switch (s) {
    case FiringPinShape::kCircular: return "circular";
    case FiringPinShape::kElliptical: return "elliptical";
    case FiringPinShape::kRectangular: return "rectangular";
  }
  return "unknown";
}

FirearmModel MakeFirearm(std::uint64_t firearm_seed) {
  internal::Xoshiro256pp rng(internal::StreamSeed(firearm_seed, internal::Stream::kFirearmParams));
  FirearmModel g;
  g.seed = firearm_seed;
  // Texture classes: filed and granular (blasted) faces are the most common on
  // modern pistols; turned and milled-arc faces less so. Ranges in docs/synth.md.
  const double t = rng.Uniform();
  g.texture = t < 0.3   ? BreechTexture::kParallelFiled
              : t < 0.5 ? BreechTexture::kArchedMachined
              : t < 0.7 ? BreechTexture::kCircularTurned
                        : BreechTexture::kGranular;
  // Log-uniform over the Fadul range of band-passed RMS (1.1 to 2.6 µm).
  g.mark_rms_um = std::exp(rng.Uniform(std::log(1.1), std::log(2.4)));
  g.isotropic_share = g.texture == BreechTexture::kGranular ? 1.0 : rng.Uniform(0.25, 0.6);
  g.groove_spacing_um = rng.Uniform(25.0, 120.0);
  g.mark_direction_deg = rng.Uniform(0.0, 360.0);
  g.arc_radius_um = rng.Uniform(2500.0, 8000.0);
  {
    const double r = 150.0 * std::sqrt(rng.Uniform()), a = rng.Uniform(0.0, 2.0 * std::numbers::pi);
    g.turning_center_um_x = r * std::cos(a);
    g.turning_center_um_y = r * std::sin(a);
  }
  // Measured radially averaged slopes of band-passed Fadul scans: -2.9 median (-3.1 to
  // -2.4) over 30-400 µm. The band-pass steepens the slope there, the flatter per-shot
  // primer texture flattens it; this range gives -2.9 on default shots (docs/synth.md).
  g.spectral_slope = rng.Uniform(2.6, 3.2);
  g.aperture_radius_um = rng.Uniform(1100.0, 1450.0);
  {
    const double r = 120.0 * std::sqrt(rng.Uniform()), a = rng.Uniform(0.0, 2.0 * std::numbers::pi);
    g.primer_offset_um_x = r * std::cos(a);
    g.primer_offset_um_y = r * std::sin(a);
  }
  const double s = rng.Uniform();
  g.fp_shape = s < 0.6 ? FiringPinShape::kCircular : s < 0.8 ? FiringPinShape::kElliptical
                                                             : FiringPinShape::kRectangular;
  switch (g.fp_shape) {
    case FiringPinShape::kCircular:
      g.fp_radius_um = rng.Uniform(350.0, 550.0);
      g.fp_radius_b_um = g.fp_radius_um;
      break;
    case FiringPinShape::kElliptical:
      g.fp_radius_um = rng.Uniform(450.0, 650.0);
      g.fp_radius_b_um = g.fp_radius_um * rng.Uniform(0.55, 0.8);
      break;
    case FiringPinShape::kRectangular:
      g.fp_radius_um = rng.Uniform(550.0, 750.0);
      g.fp_radius_b_um = g.fp_radius_um * rng.Uniform(0.4, 0.6);
      break;
  }
  // The aperture must hold the firing pin: keep a rim of at least 100 µm.
  g.aperture_radius_um = std::max(g.aperture_radius_um, g.fp_radius_um + 100.0);
  g.fp_angle_deg = rng.Uniform(0.0, 180.0);
  g.fp_depth_um = rng.Uniform(100.0, 220.0);
  g.fp_mark_rms_um = rng.Uniform(0.5, 1.5);
  return g;
}

FirearmModel MakeFirearmInFamily(std::uint64_t firearm_seed, std::uint64_t family_seed, double family_share) {
  FirearmModel g = MakeFirearm(family_seed);
  g.seed = firearm_seed;
  g.family_seed = family_seed;
  g.family_share = family_share;
  return g;
}

namespace internal {

Spectrum BreechIsotropicSpectrum(const FirearmModel& gun) {
  Spectrum s;
  s.slope = gun.spectral_slope;
  s.short_um = kBreechShortUm;
  s.long_um = kBreechLongUm;
  return s;
}

Spectrum FiringPinSpectrum() {
  // Flatter than the breech face: the pin tip's marks are fine turning and tool
  // marks, and the 250 µm high-pass leaves only a few long waves in a 1 mm crater.
  Spectrum s;
  s.slope = 2.0;
  s.short_um = kBreechShortUm;
  s.long_um = kFiringPinLongUm;
  return s;
}

double FiringPinNorm(const FirearmModel& gun, double x, double y) {
  const double a = gun.fp_angle_deg * std::numbers::pi / 180.0;
  const double u = (std::cos(a) * x + std::sin(a) * y) / gun.fp_radius_um;
  const double v = (-std::sin(a) * x + std::cos(a) * y) / gun.fp_radius_b_um;
  if (gun.fp_shape == FiringPinShape::kRectangular) {
    const double u2 = u * u, v2 = v * v;
    return std::sqrt(std::sqrt(u2 * u2 + v2 * v2));
  }
  return std::sqrt(u * u + v * v);
}

double FiringPinExtentUm(const FirearmModel& gun) {
  // The superellipse corner lies at 2^(-1/4) of each semi-axis: within sqrt(a^2 + b^2).
  return gun.fp_shape == FiringPinShape::kRectangular
             ? std::pow(0.5, 0.25) * std::hypot(gun.fp_radius_um, gun.fp_radius_b_um)
             : std::max(gun.fp_radius_um, gun.fp_radius_b_um);
}

Status ValidateModel(const FirearmModel& g) {
  auto positive = [](double v, const char* name) -> Status {
    if (!(v > 0.0) || !std::isfinite(v)) {
      return InvalidArgument(std::string("synth: firearm ") + name + "=" + std::to_string(v) +
                             " must be positive and finite");
    }
    return Status::Ok();
  };
  BALLISTICS_RETURN_IF_ERROR(positive(g.mark_rms_um, "mark_rms_um"));
  BALLISTICS_RETURN_IF_ERROR(positive(g.groove_spacing_um, "groove_spacing_um"));
  BALLISTICS_RETURN_IF_ERROR(positive(g.spectral_slope, "spectral_slope"));
  BALLISTICS_RETURN_IF_ERROR(positive(g.aperture_radius_um, "aperture_radius_um"));
  BALLISTICS_RETURN_IF_ERROR(positive(g.fp_radius_um, "fp_radius_um"));
  BALLISTICS_RETURN_IF_ERROR(positive(g.fp_radius_b_um, "fp_radius_b_um"));
  BALLISTICS_RETURN_IF_ERROR(positive(g.fp_depth_um, "fp_depth_um"));
  BALLISTICS_RETURN_IF_ERROR(positive(g.fp_mark_rms_um, "fp_mark_rms_um"));
  if (!(g.family_share >= 0.0 && g.family_share <= 1.0)) {
    return InvalidArgument("synth: firearm family_share=" + std::to_string(g.family_share) +
                           " is outside [0, 1]");
  }
  if (!(g.isotropic_share >= 0.0 && g.isotropic_share <= 1.0)) {
    return InvalidArgument("synth: firearm isotropic_share=" + std::to_string(g.isotropic_share) +
                           " is outside [0, 1]");
  }
  if (g.texture == BreechTexture::kArchedMachined && !(g.arc_radius_um > 0.0)) {
    return InvalidArgument("synth: firearm arc_radius_um=" + std::to_string(g.arc_radius_um) +
                           " must be positive for arched marks");
  }
  if (FiringPinExtentUm(g) > 0.5 * kFiringPinPeriodUm - 50.0) {
    return InvalidArgument("synth: firing pin of " + std::to_string(FiringPinExtentUm(g)) +
                           " µm extent exceeds the supported " +
                           std::to_string(0.5 * kFiringPinPeriodUm - 50.0) + " µm");
  }
  return Status::Ok();
}

namespace {

// Grid size for a period: even, fast for cv::dft, and fine enough for the pixel.
int GridSize(double period_um, double pixel_um) {
  return EvenDftSize(static_cast<int>(std::ceil(period_um / pixel_um - 1e-9)));
}

// The machining grooves: a 1D groove profile (spectral peak at the groove spacing)
// laid along a coordinate u(x, y) whose level lines are the grooves — straight lines
// (filed), arcs about a distant cutter centre (milled), circles about the turning
// axis — with a slowly varying depth along the grooves.
cv::Mat1f MachinedMarks(const FirearmModel& gun, int n, double pixel_um) {
  Spectrum ps;
  ps.slope = 2.0;  // a groove profile is rougher than the blasted isotropic part
  ps.short_um = kBreechShortUm;
  ps.long_um = kBreechLongUm;
  ps.peak_um = gun.groove_spacing_um;
  ps.peak_gain = 3.0;
  constexpr int kProfileSamples = 16384;
  constexpr double kProfilePeriodUm = 8192.0;  // 0.5 µm steps, longer than any u range
  const std::vector<float> profile =
      internal::KeyedProfile1D(StreamSeed(gun.seed, Stream::kBreechProfile), kProfileSamples,
                               kProfilePeriodUm, ps);
  constexpr double kDu = kProfilePeriodUm / kProfileSamples;

  // Depth modulation along the grooves: a smooth keyed field (wavelengths > ~300 µm)
  // on a coarse 64 x 64 grid over the same period, interpolated exactly onto the grid.
  Spectrum ms;
  ms.slope = 2.0;
  ms.short_um = 300.0;
  ms.long_um = 3000.0;
  const cv::Mat1f coarse = internal::KeyedField2D(StreamSeed(gun.seed, Stream::kBreechModulation), 64,
                                                  kGunPeriodUm, ms);
  cv::Mat1f modulation;
  const double s = 64.0 / n;
  cv::warpAffine(coarse, modulation, cv::Matx23d(s, 0, 0, 0, s, 0), cv::Size(n, n),
                 cv::INTER_CUBIC | cv::WARP_INVERSE_MAP, cv::BORDER_WRAP);

  const double dir = gun.mark_direction_deg * std::numbers::pi / 180.0;
  const double nx = std::cos(dir), ny = std::sin(dir);
  const double cx = gun.texture == BreechTexture::kArchedMachined ? gun.arc_radius_um * nx
                                                                  : gun.turning_center_um_x;
  const double cy = gun.texture == BreechTexture::kArchedMachined ? gun.arc_radius_um * ny
                                                                  : gun.turning_center_um_y;
  cv::Mat1f out(n, n);
  const int c0 = n / 2;
  for (int r = 0; r < n; ++r) {
    const double y = (r - c0) * pixel_um;
    float* o = out[r];
    const float* m = modulation[r];
    for (int c = 0; c < n; ++c) {
      const double x = (c - c0) * pixel_um;
      double u;
      if (gun.texture == BreechTexture::kParallelFiled) {
        u = x * nx + y * ny + 0.5 * kProfilePeriodUm;
      } else {
        u = std::hypot(x - cx, y - cy);
      }
      const double t = u / kDu;
      const double fl = std::floor(t);
      const long i0 = static_cast<long>(fl);
      const float w = static_cast<float>(t - fl);
      const float p0 = profile[static_cast<std::size_t>(((i0 % kProfileSamples) + kProfileSamples) % kProfileSamples)];
      const float p1 = profile[static_cast<std::size_t>((((i0 + 1) % kProfileSamples) + kProfileSamples) % kProfileSamples)];
      o[c] = (p0 + w * (p1 - p0)) * (1.0f + 0.4f * m[c]);
    }
  }
  // Unit RMS (the modulation raises it by sqrt(1 + 0.16)).
  const double rms = std::sqrt(cv::mean(out.mul(out))[0]);
  if (rms > 0.0) out *= 1.0 / rms;
  return out;
}

// The breech-face marks of `gun.seed` with unit RMS: isotropic part plus machining.
cv::Mat1f UnitBreechFace(const FirearmModel& gun, int n, double pixel_um) {
  cv::Mat1f bf = KeyedField2D(StreamSeed(gun.seed, Stream::kBreechIsotropic), n, kGunPeriodUm,
                              BreechIsotropicSpectrum(gun));
  if (gun.texture != BreechTexture::kGranular && gun.isotropic_share < 1.0) {
    const cv::Mat1f machined = MachinedMarks(gun, n, pixel_um);
    bf = std::sqrt(gun.isotropic_share) * bf + std::sqrt(1.0 - gun.isotropic_share) * machined;
  }
  return bf;
}

}  // namespace
}  // namespace internal

StatusOr<FirearmSurface> RenderFirearm(const FirearmModel& gun, double pixel_um) {
  using namespace internal;  // NOLINT(build/namespaces)
  if (!(pixel_um >= 0.5 && pixel_um <= 50.0)) {
    return InvalidArgument("synth: pixel_um=" + std::to_string(pixel_um) + " is outside [0.5, 50] µm");
  }
  BALLISTICS_RETURN_IF_ERROR(ValidateModel(gun));
  try {
    FirearmSurface out;
    out.model = gun;
    out.requested_pixel_um = pixel_um;
    const int n = GridSize(kGunPeriodUm, pixel_um);
    out.pixel_um = kGunPeriodUm / n;
    const int n_fp = GridSize(kFiringPinPeriodUm, pixel_um);
    out.firing_pin_pixel_um = kFiringPinPeriodUm / n_fp;

    cv::Mat1f bf = UnitBreechFace(gun, n, out.pixel_um);
    if (gun.family_share > 0.0) {
      FirearmModel family = gun;
      family.seed = gun.family_seed;
      bf = std::sqrt(1.0 - gun.family_share) * bf +
           std::sqrt(gun.family_share) * UnitBreechFace(family, n, out.pixel_um);
    }
    out.breech_face_um = bf * gun.mark_rms_um;

    out.firing_pin_um = KeyedField2D(StreamSeed(gun.seed, Stream::kFiringPinMarks), n_fp,
                                     kFiringPinPeriodUm, FiringPinSpectrum()) *
                        gun.fp_mark_rms_um;
    return out;
  } catch (const cv::Exception& e) {
    return Internal(std::string("synth: rendering firearm failed: ") + e.what());
  }
}

}  // namespace ballistics::synth
