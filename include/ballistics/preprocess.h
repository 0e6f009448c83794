// preprocess stage: Scan -> normalized breech-face (BF) and firing-pin (FP) signatures.
//
// One pipeline for every input (see docs/preprocess.md for the parameters and
// the literature behind each default):
//   1. segmentation: is the scan already cropped to the breech-face annulus
//      (Fadul / CSAFE processed files)? If not, find the primer and the
//      firing-pin impression (3D: RANSAC plane of the breech face + circle fit;
//      2D: primer and FP circles on the smoothed image);
//   2. levelling by a robust plane fit (3D) or illumination levelling (2D);
//   3. resampling to a common grid (target_pixel_um) so scanners compare;
//   4. Gaussian band-pass (ISO 16610-61) with missing data handled by
//      normalized convolution;
//   5. crop to the bounding box of valid data, quality metrics.
// Validity is carried as NaN in Signature::values throughout.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include "ballistics/status.h"
#include "ballistics/surface.h"

namespace ballistics {

// Bump on any change that alters signatures: stored signatures of another
// version must be recomputed before they are compared with new ones.
inline constexpr std::string_view kPipelineVersion = "norm-1";

// Every parameter of the pipeline with its default, in one place.
struct NormalizeConfig {
  // --- common grid and filter ---
  // All signatures are resampled to this grid (the Fadul/NIST native 6.25 µm)
  // so that scans from different scanners compare point for point.
  double target_pixel_um = 6.25;
  // Gaussian low-pass cutoff wavelength (removes noise); cmcR / x3ptools default.
  double bandpass_short_um = 16.0;
  // Gaussian high-pass cutoff wavelength (removes form and waviness).
  double bandpass_long_um = 500.0;
  // High-pass cutoff for the firing-pin signature. An FP impression is a
  // crater ~1 mm across whose bowl shape would pass a 500 um high-pass and
  // swamp the marks; half that removes the bowl (a project choice, see docs).
  double firing_pin_bandpass_long_um = 250.0;
  // After resampling, a point stays valid only when at least this share of
  // its footprint was valid in the input (the resampled validity mask).
  double min_resample_support = 0.5;
  // 3D form removal before the band-pass: robust polynomial of this degree
  // (1 = plane as in cmcR; 2 = quadric, also removes the primer's bulge and
  // the FP crater's bowl, which a Gaussian high-pass leaks near missing data).
  int form_removal_degree = 2;

  // --- input checks ---
  int min_scan_side_px = 32;              // smaller scans are rejected
  double min_valid_fraction = 0.02;       // scans with fewer finite points are rejected

  // --- "already cropped" detection (Fadul-style annulus files) ---
  // A scan counts as cropped to the BF annulus when one invalid region inside
  // the convex hull of its valid points (the FP hole) covers at least this
  // share of the hull: Fadul annuli 0.3-0.5, raw scans with dropouts < 0.05.
  double cropped_min_hole_fraction = 0.15;

  // --- segmentation of raw scans (calibre-agnostic ranges, µm) ---
  // Primer radius: small pistol primers are 4.45 mm across, large rifle
  // 5.33 mm, .50 BMG 8.9 mm; the lower end allows for a partly visible primer.
  double primer_radius_min_um = 1500.0;
  double primer_radius_max_um = 4500.0;
  // Firing-pin impression radius (including the aperture shear/flowback ring).
  double firing_pin_radius_min_um = 250.0;
  double firing_pin_radius_max_um = 1600.0;
  // The FP impression centre must lie within this share of the primer radius
  // from the primer centre.
  double firing_pin_max_offset_fraction = 0.5;
  // Segmentation works on a coarse copy of the scan at this pixel size.
  double segmentation_pixel_um = 20.0;
  // RANSAC plane of the breech face (cmcR preProcess_ransac defaults, µm).
  int ransac_iterations = 300;
  double ransac_inlier_threshold_um = 1.0;       // candidate-plane inlier band
  double ransac_select_threshold_um = 20.0;      // final band around the plane kept as breech face
  unsigned ransac_seed = 20240611;               // fixed: the pipeline is deterministic
  // Points deeper than this below the BF plane are firing-pin impression candidates.
  double firing_pin_depth_um = 20.0;
  // The FP circle is grown by this factor before it is cut out of the BF
  // (removes the shear/rounded rim around the impression, as cmcR does).
  double firing_pin_dilation = 1.1;
  // The BF region ends at this share of the primer radius (primer edge is rounded).
  double primer_shrink = 0.92;

  // --- 2D images ---
  // Illumination levelling: the large-scale background (Gaussian low-pass at
  // this wavelength) is divided out before the band-pass.
  double illumination_long_um = 500.0;
  // The smoothing used to find primer and FP circles in 2D images.
  double segmentation_smoothing_um = 60.0;
  // The FP crater rim must raise the median brightness by at least this much
  // (luminance 0..1) to count as found.
  double firing_pin_min_contrast = 0.05;

  // --- quality warnings ---
  double warn_min_valid_area_mm2 = 1.5;
  // Warn when valid BF points cover less than this share of the BF annulus
  // (dropouts, debris, a partial scan). Reference files: 0.67-0.97, except
  // fadul-8-1 (0.45), a crescent missing the top third: warned, correctly.
  double warn_min_coverage = 0.5;
  double warn_max_upsampling = 2.0;      // scan pixel coarser than this x target
};

// Where things were found, in pixels of the INPUT scan, for display and audit.
struct Segmentation {
  // The input was a pre-processed breech-face annulus (e.g. the Fadul files):
  // no segmentation was done, the valid points are the breech face. The primer
  // fields then hold the annulus' outer circle (fitted to its outer rim) and
  // the FP fields the largest empty circle in the hole (firing_pin_found stays
  // false: no FP data exist).
  bool already_cropped = false;
  cv::Point2d primer_center_px;
  double primer_radius_px = 0;
  bool firing_pin_found = false;
  cv::Point2d firing_pin_center_px;
  double firing_pin_radius_px = 0;
  // The annulus the BF signature was taken from (outer: about the primer
  // centre; inner: the hole cut around the FP, which includes the aperture
  // ring). Its area is the reference of the coverage warning.
  double breech_face_outer_radius_px = 0;
  double breech_face_inner_radius_px = 0;
};

struct NormalizedCasing {
  Signature breech_face;
  std::optional<Signature> firing_pin;   // absent (not an error) when the scan has no FP impression
  Segmentation segmentation;
  std::vector<std::string> warnings;     // quality warnings for the technician (low valid fraction, ...)
};

// The whole pipeline. Errors: INVALID_ARGUMENT for an empty, too small or
// all-NaN scan, a non-positive pixel size, a bad config, or a raw scan in
// which no primer can be found.
StatusOr<NormalizedCasing> Normalize(const Scan& scan, const NormalizeConfig& config = {});

// A picture a person can look at: BF and FP signatures side by side at the
// same scale, colour-mapped (robust 1..99 % range), invalid = grey.
cv::Mat3b RenderSignatures(const NormalizedCasing& casing);

// The input scan in grey (robust range; scaled down to at most max_side
// pixels) with the segmentation drawn on it: primer circle red, FP circle
// blue, the hole of a pre-cropped annulus yellow. For auditing the segmentation.
cv::Mat3b RenderSegmentation(const Scan& scan, const Segmentation& segmentation, int max_side = 1024);

// ---- Building blocks (public for tests and tools; all NaN-aware) ----

// ISO 16610-61 Gaussian filter: the standard deviation in pixels of the
// Gaussian weighting function for cutoff wavelength cutoff_um:
//   sigma = cutoff * sqrt(ln 2 / 2) / pi / pixel.
double GaussianSigmaPx(double cutoff_um, double pixel_um);

// Gaussian low-pass of the valid points of `values` (NaN = invalid) by
// normalized convolution: G*(v*w) / G*(w). Invalid points stay NaN; a valid
// point's result depends only on valid points. Large sigmas run on a
// decimated grid (the result differs from the direct filter by under 1 %
// of the signal, see tests/preprocess/filter_test.cc).
cv::Mat1f GaussianLowPassNaN(const cv::Mat1f& values, double sigma_px);

// Band-pass = low-pass(short) - low-pass(long), NaN-aware, at pixel_um.
cv::Mat1f GaussianBandPassNaN(const cv::Mat1f& values, double pixel_um, double short_um,
                              double long_um);

// Robust plane z = a*x + b*y + c over the valid points (iteratively reweighted
// least squares with Tukey's biweight, scale from the MAD). Returns the values
// minus the plane (NaN kept).
cv::Mat1f LevelPlaneRobust(const cv::Mat1f& values);
// The same for a polynomial form of degree 0 (offset), 1 (plane) or 2 (quadric):
// form removal before the band-pass (the F-operator of ISO 25178-2).
cv::Mat1f LevelPolynomialRobust(const cv::Mat1f& values, int degree);

// Resamples from (pixel_um_x, pixel_um_y) to a square grid of target_pixel_um
// (INTER_AREA when shrinking, INTER_LINEAR when growing), resampling the
// validity mask the same way; points with support < min_support become NaN.
cv::Mat1f ResampleNaN(const cv::Mat1f& values, double pixel_um_x, double pixel_um_y,
                      double target_pixel_um, double min_support = 0.5);

}  // namespace ballistics
