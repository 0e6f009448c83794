// Normalize(): the preprocess pipeline from a decoded Scan to BF / FP signatures.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <numbers>
#include <string>

#include <opencv2/imgproc.hpp>

#include "ballistics/preprocess.h"
#include "internal.h"

namespace ballistics {
namespace {

using preprocess_internal::FiniteMask;
using preprocess_internal::MaskedCopy;
using preprocess_internal::RegionMasks;

std::string Fmt(const char* format, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, a, b, c);
  return buf;
}

bool PositiveFinite(double v) { return std::isfinite(v) && v > 0; }

// 8192 x 8192 points at 6.25 µm is a 51 mm field: far beyond any cartridge head.
constexpr double kMaxSignaturePoints = 8192.0 * 8192.0;

Status ValidateConfig(const NormalizeConfig& c) {
  if (!PositiveFinite(c.target_pixel_um)) {
    return InvalidArgument(Fmt("preprocess: target_pixel_um=%g is not a positive number", c.target_pixel_um));
  }
  if (!PositiveFinite(c.bandpass_short_um) || !PositiveFinite(c.bandpass_long_um) ||
      c.bandpass_short_um >= c.bandpass_long_um) {
    return InvalidArgument(Fmt("preprocess: band-pass cutoffs short=%g um, long=%g um must be positive "
                               "with short < long", c.bandpass_short_um, c.bandpass_long_um));
  }
  if (!PositiveFinite(c.firing_pin_bandpass_long_um) || c.bandpass_short_um >= c.firing_pin_bandpass_long_um) {
    return InvalidArgument(Fmt("preprocess: firing_pin_bandpass_long_um=%g must exceed bandpass_short_um=%g",
                               c.firing_pin_bandpass_long_um, c.bandpass_short_um));
  }
  if (!(c.min_resample_support > 0 && c.min_resample_support <= 1)) {
    return InvalidArgument(Fmt("preprocess: min_resample_support=%g is not in (0, 1]", c.min_resample_support));
  }
  if (!PositiveFinite(c.primer_radius_min_um) || c.primer_radius_min_um >= c.primer_radius_max_um) {
    return InvalidArgument(Fmt("preprocess: primer radius range %g..%g um must be positive and ordered",
                               c.primer_radius_min_um, c.primer_radius_max_um));
  }
  if (!PositiveFinite(c.firing_pin_radius_min_um) || c.firing_pin_radius_min_um >= c.firing_pin_radius_max_um) {
    return InvalidArgument(Fmt("preprocess: firing-pin radius range %g..%g um must be positive and ordered",
                               c.firing_pin_radius_min_um, c.firing_pin_radius_max_um));
  }
  if (c.min_scan_side_px < 4 || !(c.min_valid_fraction >= 0 && c.min_valid_fraction < 1)) {
    return InvalidArgument(Fmt("preprocess: min_scan_side_px=%g (>= 4) or min_valid_fraction=%g (0..1) is invalid",
                               c.min_scan_side_px, c.min_valid_fraction));
  }
  if (!PositiveFinite(c.segmentation_pixel_um) || c.ransac_iterations < 1) {
    return InvalidArgument(Fmt("preprocess: segmentation_pixel_um=%g, ransac_iterations=%g are invalid",
                               c.segmentation_pixel_um, c.ransac_iterations));
  }
  return Status::Ok();
}

Status ValidateScan(const Scan& scan, const NormalizeConfig& config) {
  if (scan.values.empty()) return InvalidArgument("preprocess: the scan has no points");
  if (scan.width() < config.min_scan_side_px || scan.height() < config.min_scan_side_px) {
    return InvalidArgument(Fmt("preprocess: the scan is %gx%g points, smaller than the minimum %g points a side",
                               scan.width(), scan.height(), config.min_scan_side_px));
  }
  if (!PositiveFinite(scan.pixel_um_x) || !PositiveFinite(scan.pixel_um_y)) {
    return InvalidArgument(Fmt("preprocess: pixel size %g x %g um is not positive", scan.pixel_um_x,
                               scan.pixel_um_y));
  }
  // The common grid must be neither degenerate nor absurdly large (a wrong
  // pixel size in a file would otherwise ask for gigabytes).
  const double out_w = scan.width() * scan.pixel_um_x / config.target_pixel_um;
  const double out_h = scan.height() * scan.pixel_um_y / config.target_pixel_um;
  if (out_w < config.min_scan_side_px || out_h < config.min_scan_side_px) {
    return InvalidArgument(Fmt("preprocess: the scan covers %.0f x %.0f um, fewer than %g points a side at the "
                               "signature grid", scan.width() * scan.pixel_um_x, scan.height() * scan.pixel_um_y,
                               config.min_scan_side_px));
  }
  if (out_w * out_h > kMaxSignaturePoints) {
    return ResourceExhausted(Fmt("preprocess: the scan covers %.0f x %.0f um, more than %.0f points at the "
                                 "signature grid", scan.width() * scan.pixel_um_x,
                                 scan.height() * scan.pixel_um_y, kMaxSignaturePoints));
  }
  const double valid_fraction = 1.0 - scan.MissingFraction();
  if (valid_fraction < config.min_valid_fraction) {
    return InvalidArgument(Fmt("preprocess: only %.2f %% of the points are valid (minimum %.2f %%)",
                               100 * valid_fraction, 100 * config.min_valid_fraction));
  }
  return Status::Ok();
}

// Crops to the smallest box centred on `center` (signature pixels) that holds
// every valid point, so the primer (or FP) centre stays the signature centre:
// the correlation stage rotates about it. Parts of the box outside the data are NaN.
cv::Mat1f CropCentred(const cv::Mat1f& values, cv::Point2d center) {
  const cv::Mat1b valid = FiniteMask(values);
  if (cv::countNonZero(valid) == 0) return values.clone();
  const cv::Rect bbox = cv::boundingRect(valid);
  const double half_w = std::max(center.x - bbox.x, bbox.x + bbox.width - 1 - center.x);
  const double half_h = std::max(center.y - bbox.y, bbox.y + bbox.height - 1 - center.y);
  // Never larger than the bounding box of the whole grid around the centre.
  const int x0 = static_cast<int>(std::floor(center.x - half_w));
  const int y0 = static_cast<int>(std::floor(center.y - half_h));
  const int x1 = static_cast<int>(std::ceil(center.x + half_w));
  const int y1 = static_cast<int>(std::ceil(center.y + half_h));
  cv::Mat1f out(y1 - y0 + 1, x1 - x0 + 1, std::numeric_limits<float>::quiet_NaN());
  const cv::Rect src = cv::Rect(x0, y0, out.cols, out.rows) & cv::Rect(0, 0, values.cols, values.rows);
  values(src).copyTo(out(cv::Rect(src.x - x0, src.y - y0, src.width, src.height)));
  return out;
}

void FillQuality(Signature* s) {
  double sum2 = 0;
  std::size_t n = 0;
  for (int y = 0; y < s->values.rows; ++y) {
    const float* v = s->values[y];
    for (int x = 0; x < s->values.cols; ++x) {
      if (std::isfinite(v[x])) {
        sum2 += static_cast<double>(v[x]) * v[x];
        ++n;
      }
    }
  }
  const double total = static_cast<double>(s->values.total());
  s->quality.valid_fraction = total > 0 ? n / total : 0.0;
  s->quality.rms_height = n > 0 ? std::sqrt(sum2 / n) : 0.0;
  s->quality.valid_area_mm2 = n * s->pixel_um * s->pixel_um * 1e-6;
}

// mask (input pixels) -> signature: resample, level, band-pass, crop, metrics.
Signature MakeSignature(const Scan& scan, const cv::Mat1b& mask, cv::Point2d center_px, SignatureKind kind,
                        double long_um, const NormalizeConfig& config) {
  Signature sig;
  sig.kind = kind;
  sig.modality = scan.modality;
  sig.pipeline_version = std::string(kPipelineVersion);
  sig.pixel_um = config.target_pixel_um;
  const double t = config.target_pixel_um;
  // Resample first: every later step runs on the (usually smaller) common grid,
  // and the INTER_AREA average is the anti-alias filter of the decimation.
  cv::Mat1f v = MaskedCopy(scan.values, mask);
  if (scan.pixel_um_x != t || scan.pixel_um_y != t) {  // Fadul files are already on the grid
    v = ResampleNaN(v, scan.pixel_um_x, scan.pixel_um_y, t, config.min_resample_support);
  }
  if (scan.modality == Modality::kTopography3d) {
    v = LevelPolynomialRobust(v, config.form_removal_degree);
    // As cmcR's preProcess_ransac final selection: points farther than the
    // select band from the fitted form are not breech-face contact (flowback
    // into the FP aperture, primer edge roll-off, debris), whatever mask
    // the file came with.
    const float band = static_cast<float>(config.ransac_select_threshold_um);
    for (int y = 0; y < v.rows; ++y) {
      float* r = v[y];
      for (int x = 0; x < v.cols; ++x)
        if (std::abs(r[x]) > band) r[x] = std::numeric_limits<float>::quiet_NaN();
    }
  } else {
    // Illumination levelling for ring-light photographs: divide by the local
    // mean brightness so that marks are compared as relative contrast, not as
    // absolute grey levels that depend on lamp and exposure.
    const cv::Mat1f background = GaussianLowPassNaN(v, GaussianSigmaPx(config.illumination_long_um, t));
    for (int y = 0; y < v.rows; ++y) {
      float* r = v[y];
      const float* b = background[y];
      for (int x = 0; x < v.cols; ++x) {
        r[x] = b[x] > 1e-3f ? r[x] / b[x] - 1.f : std::numeric_limits<float>::quiet_NaN();
      }
    }
  }
  v = GaussianBandPassNaN(v, t, config.bandpass_short_um, long_um);
  const cv::Point2d center_sig((center_px.x + 0.5) * scan.pixel_um_x / t - 0.5,
                               (center_px.y + 0.5) * scan.pixel_um_y / t - 0.5);
  sig.values = CropCentred(v, center_sig);
  FillQuality(&sig);
  return sig;
}

StatusOr<NormalizedCasing> NormalizeImpl(const Scan& scan, const NormalizeConfig& config) {
  BALLISTICS_RETURN_IF_ERROR(ValidateConfig(config));
  BALLISTICS_RETURN_IF_ERROR(ValidateScan(scan, config));

  RegionMasks regions;
  const cv::Mat1b valid = FiniteMask(scan.values);
  if (preprocess_internal::DetectAlreadyCropped(valid, config, &regions.segmentation)) {
    regions.breech_face = valid;
  } else if (scan.modality == Modality::kTopography3d) {
    BALLISTICS_ASSIGN_OR_RETURN(regions, preprocess_internal::SegmentRaw3d(scan, config));
  } else {
    BALLISTICS_ASSIGN_OR_RETURN(regions, preprocess_internal::SegmentImage2d(scan, config));
  }

  NormalizedCasing out;
  out.segmentation = regions.segmentation;
  out.warnings = regions.warnings;
  out.breech_face = MakeSignature(scan, regions.breech_face, out.segmentation.primer_center_px,
                                  SignatureKind::kBreechFace, config.bandpass_long_um, config);
  if (cv::countNonZero(FiniteMask(out.breech_face.values)) == 0) {
    return InvalidArgument("preprocess: no valid breech-face point is left after segmentation and resampling");
  }
  if (regions.firing_pin) {
    Signature fp = MakeSignature(scan, *regions.firing_pin, out.segmentation.firing_pin_center_px,
                                 SignatureKind::kFiringPin, config.firing_pin_bandpass_long_um, config);
    if (cv::countNonZero(FiniteMask(fp.values)) > 0) {
      out.firing_pin = std::move(fp);
    } else {
      out.segmentation.firing_pin_found = false;
      out.warnings.push_back("firing-pin region found but it holds no valid point after resampling");
    }
  }

  // Quality warnings for the technician.
  const double scan_px = std::max(scan.pixel_um_x, scan.pixel_um_y);
  if (scan_px > config.warn_max_upsampling * config.target_pixel_um) {
    out.warnings.push_back(Fmt("scan pixel %.2f um is much coarser than the signature grid %.2f um: "
                               "fine marks are missing", scan_px, config.target_pixel_um));
  }
  if (out.breech_face.quality.valid_area_mm2 < config.warn_min_valid_area_mm2) {
    out.warnings.push_back(Fmt("breech-face valid area %.2f mm2 is below %.2f mm2: comparisons will be weak",
                               out.breech_face.quality.valid_area_mm2, config.warn_min_valid_area_mm2));
  }
  const Segmentation& seg = out.segmentation;
  const double px_um = std::sqrt(scan.pixel_um_x * scan.pixel_um_y);
  const double r_out = seg.breech_face_outer_radius_px * px_um * 1e-3;
  const double r_in = std::min(seg.breech_face_inner_radius_px * px_um * 1e-3, r_out);
  const double annulus_mm2 = std::numbers::pi * (r_out * r_out - r_in * r_in);
  if (annulus_mm2 > 0) {
    const double coverage = out.breech_face.quality.valid_area_mm2 / annulus_mm2;
    if (coverage < config.warn_min_coverage) {
      out.warnings.push_back(Fmt("only %.0f %% of the breech-face annulus (%.2f mm2) holds valid points: "
                                 "dropouts, debris or a partial scan", 100 * coverage, annulus_mm2));
    }
  }
  return out;
}

}  // namespace

StatusOr<NormalizedCasing> Normalize(const Scan& scan, const NormalizeConfig& config) {
  // Exceptions from OpenCV or the standard library stop here (docs/architecture.md, "Errors").
  try {
    return NormalizeImpl(scan, config);
  } catch (const cv::Exception& e) {
    return Internal(std::string("preprocess: OpenCV error: ") + e.what());
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("preprocess: out of memory");
  } catch (const std::exception& e) {
    return Internal(std::string("preprocess: ") + e.what());
  }
}

}  // namespace ballistics
