// Internal helpers of the preprocess stage (not part of the public API).
#pragma once

#include <optional>
#include <string>

#include <opencv2/core.hpp>

#include "ballistics/preprocess.h"

namespace ballistics::preprocess_internal {

// Validity of a float image: 255 where finite.
cv::Mat1b FiniteMask(const cv::Mat1f& values);

// values where mask != 0, NaN elsewhere.
cv::Mat1f MaskedCopy(const cv::Mat1f& values, const cv::Mat1b& mask);

// A circle in pixel coordinates.
struct Circle {
  cv::Point2d center;
  double radius = 0;
};

// Filled disk mask of a circle on a grid of `size`.
cv::Mat1b DiskMask(cv::Size size, const Circle& c);

// Result of segmenting a scan into breech face and firing pin, at input resolution.
struct RegionMasks {
  Segmentation segmentation;
  cv::Mat1b breech_face;                 // 255 = BF point
  std::optional<cv::Mat1b> firing_pin;   // 255 = FP point
  std::vector<std::string> warnings;
};

// Detects a Fadul-style cropped annulus (NaN outside and in the FP hole).
// Fills segmentation (already_cropped, primer circle, FP hole) when it is one.
bool DetectAlreadyCropped(const cv::Mat1b& valid, const NormalizeConfig& config,
                          Segmentation* segmentation);

// Segmentation of raw scans. Return INVALID_ARGUMENT when no primer is found.
StatusOr<RegionMasks> SegmentRaw3d(const Scan& scan, const NormalizeConfig& config);
StatusOr<RegionMasks> SegmentImage2d(const Scan& scan, const NormalizeConfig& config);

// Plane fit by RANSAC (cmcR preProcess_ransac) on the valid points of
// `values`, refined by least squares on the inliers. Returns (a, b, c) of
// z = a*x + b*y + c in pixel coordinates. sample_mask restricts the points the
// candidate planes are drawn from and scored on (empty = all valid points).
cv::Vec3d RansacPlane(const cv::Mat1f& values, const cv::Mat1b& sample_mask, int iterations,
                      double inlier_threshold, unsigned seed);

// values - plane (NaN kept).
cv::Mat1f SubtractPlane(const cv::Mat1f& values, const cv::Vec3d& plane, double scale = 1.0);

}  // namespace ballistics::preprocess_internal
