#include "ballistics/surface.h"

#include <cmath>

namespace ballistics {

std::string_view ScanFormatName(ScanFormat f) {
  switch (f) {
    case ScanFormat::kX3p: return "x3p";
    case ScanFormat::kPng: return "png";
    case ScanFormat::kTiff: return "tiff";
  }
  return "unknown";
}

std::string_view ModalityName(Modality m) {
  return m == Modality::kTopography3d ? "3d" : "2d";
}

std::string_view SignatureKindName(SignatureKind k) {
  return k == SignatureKind::kBreechFace ? "BF" : "FP";
}

double Scan::MissingFraction() const {
  if (values.empty()) return 1.0;
  std::size_t missing = 0;
  for (int y = 0; y < values.rows; ++y) {
    const float* row = values[y];
    for (int x = 0; x < values.cols; ++x) missing += std::isnan(row[x]) ? 1 : 0;
  }
  return static_cast<double>(missing) / static_cast<double>(values.total());
}

cv::Mat1b Signature::ValidMask() const {
  cv::Mat1b mask(values.size(), std::uint8_t{0});
  for (int y = 0; y < values.rows; ++y) {
    const float* row = values[y];
    std::uint8_t* m = mask[y];
    for (int x = 0; x < values.cols; ++x) m[x] = std::isfinite(row[x]) ? 255 : 0;
  }
  return mask;
}

}  // namespace ballistics
