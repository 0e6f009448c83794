// Domain types shared by every stage of the data path:
//   file bytes --io--> Scan --preprocess--> Signature(s) --correlate--> scores
//
// Units are in the names: lengths in micrometres (µm) everywhere inside the
// server, whatever the file said (X3P files write metres or micrometres).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <opencv2/core.hpp>

namespace ballistics {

enum class ScanFormat { kX3p, kPng, kTiff };
std::string_view ScanFormatName(ScanFormat f);  // "x3p", "png", "tiff"

// 3D topography (heights) or a 2D photograph (reflected light intensity).
// Signatures of different modalities are never compared with each other.
enum class Modality { kTopography3d, kImage2d };
std::string_view ModalityName(Modality m);  // "3d", "2d"

// What the capture device wrote about itself (X3P Record2, TIFF tags).
struct ScannerInfo {
  std::string manufacturer;
  std::string model;
  std::string serial;
  std::string version;
  std::string creator;
  std::string capture_date;  // as written in the file (ISO 8601 for X3P)
  std::string comment;
};

// A decoded scan, before normalization.
struct Scan {
  ScanFormat format = ScanFormat::kX3p;
  Modality modality = Modality::kTopography3d;
  // rows = y (X3P "NW" origin: row 0 is the top), cols = x.
  // 3D: height in µm. 2D: luminance scaled to [0, 1]. NaN = missing point.
  cv::Mat1f values;
  double pixel_um_x = 0.0;
  double pixel_um_y = 0.0;
  // Length unit the file's header used: "m" or "um" for X3P, "" for images
  // whose pixel size came from the caller, "tiff-resolution" when read from tags.
  std::string header_length_unit;
  int source_bit_depth = 0;          // 2D only: 8 or 16
  std::string source_data_type;      // X3P: "D", "F", "I" or "L"
  bool had_mask = false;             // X3P bindata/mask.png was present and applied
  ScannerInfo scanner;
  std::string sha256_hex;            // of the original file bytes (chain of custody)
  std::uint64_t original_size_bytes = 0;

  int width() const { return values.cols; }
  int height() const { return values.rows; }
  double MissingFraction() const;    // share of NaN points, 0..1
};

enum class SignatureKind { kBreechFace, kFiringPin };
std::string_view SignatureKindName(SignatureKind k);  // "BF", "FP"

struct QualityMetrics {
  double valid_fraction = 0.0;     // valid points / all points of the signature grid
  double rms_height = 0.0;         // RMS of the band-passed values over valid points (µm for 3D)
  double valid_area_mm2 = 0.0;     // area actually carrying marks
};

// A normalized, comparable signature of one region of a casing (breech face or
// firing pin), on a square-pixel grid of `pixel_um`. NaN = no valid data there;
// this is the single source of truth for validity (the store derives the mask
// column from it, so the two cannot disagree).
struct Signature {
  SignatureKind kind = SignatureKind::kBreechFace;
  Modality modality = Modality::kTopography3d;
  std::string pipeline_version;
  double pixel_um = 0.0;
  cv::Mat1f values;                // band-passed height (µm) or intensity; NaN = invalid
  QualityMetrics quality;

  int width() const { return values.cols; }
  int height() const { return values.rows; }
  cv::Mat1b ValidMask() const;     // 255 where values is finite, else 0
};

}  // namespace ballistics
