// RenderSignatures(): a picture of the signatures for a person to look at.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "ballistics/preprocess.h"

namespace ballistics {
namespace {

const cv::Vec3b kInvalidGrey(128, 128, 128);
constexpr int kHeaderPx = 22;
constexpr int kGapPx = 12;

// Viridis colour map, robust range (1st..99th percentile of the valid values)
// so one spike does not flatten the rest; invalid = grey.
cv::Mat3b Colourize(const Signature& s) {
  std::vector<float> vals;
  vals.reserve(s.values.total());
  for (int y = 0; y < s.values.rows; ++y)
    for (int x = 0; x < s.values.cols; ++x)
      if (std::isfinite(s.values(y, x))) vals.push_back(s.values(y, x));
  float lo = 0, hi = 1;
  if (!vals.empty()) {
    const std::size_t i_lo = vals.size() / 100, i_hi = vals.size() - 1 - vals.size() / 100;
    std::nth_element(vals.begin(), vals.begin() + i_lo, vals.end());
    lo = vals[i_lo];
    std::nth_element(vals.begin(), vals.begin() + i_hi, vals.end());
    hi = vals[i_hi];
    if (!(hi > lo)) hi = lo + 1;
  }
  cv::Mat1b grey(s.values.size());
  for (int y = 0; y < s.values.rows; ++y)
    for (int x = 0; x < s.values.cols; ++x) {
      const float v = s.values(y, x);
      grey(y, x) = std::isfinite(v) ? cv::saturate_cast<std::uint8_t>(255.0 * (v - lo) / (hi - lo)) : 0;
    }
  cv::Mat3b out;
  cv::applyColorMap(grey, out, cv::COLORMAP_VIRIDIS);
  for (int y = 0; y < s.values.rows; ++y)
    for (int x = 0; x < s.values.cols; ++x)
      if (!std::isfinite(s.values(y, x))) out(y, x) = kInvalidGrey;
  return out;
}

std::string Caption(const Signature& s) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %dx%d @%.2fum valid %.0f%%", std::string(SignatureKindName(s.kind)).c_str(),
                s.width(), s.height(), s.pixel_um, 100 * s.quality.valid_fraction);
  return buf;
}

}  // namespace

cv::Mat3b RenderSignatures(const NormalizedCasing& casing) {
  std::vector<const Signature*> sigs{&casing.breech_face};
  if (casing.firing_pin) sigs.push_back(&*casing.firing_pin);
  // Same µm scale for both panels (they share pixel_um), so sizes compare.
  int width = 0, height = 0;
  for (const Signature* s : sigs) {
    width += std::max(s->width(), 260) + kGapPx;
    height = std::max(height, s->height());
  }
  width -= kGapPx;
  cv::Mat3b canvas(height + kHeaderPx, std::max(width, 1), cv::Vec3b(255, 255, 255));
  int x0 = 0;
  for (const Signature* s : sigs) {
    if (!s->values.empty()) {
      const cv::Mat3b panel = Colourize(*s);
      panel.copyTo(canvas(cv::Rect(x0, kHeaderPx, panel.cols, panel.rows)));
    }
    cv::putText(canvas, Caption(*s), cv::Point(x0 + 2, 15), cv::FONT_HERSHEY_SIMPLEX, 0.42,
                cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    x0 += std::max(s->width(), 260) + kGapPx;
  }
  return canvas;
}

cv::Mat3b RenderSegmentation(const Scan& scan, const Segmentation& seg, int max_side) {
  if (scan.values.empty()) return {};
  const double scale = std::min(1.0, static_cast<double>(std::max(max_side, 16)) /
                                         std::max(scan.width(), scan.height()));
  cv::Mat1f small;
  if (scale < 1.0) {
    small = ResampleNaN(scan.values, 1.0, 1.0, 1.0 / scale, 0.5);
  } else {
    small = scan.values;
  }
  Signature tmp;  // reuse the robust colour range
  tmp.values = small;
  const cv::Mat3b colour = Colourize(tmp);
  cv::Mat1b grey;
  cv::cvtColor(colour, grey, cv::COLOR_BGR2GRAY);
  cv::Mat3b out;
  cv::cvtColor(grey, out, cv::COLOR_GRAY2BGR);
  const int thickness = std::max(1, cvRound(std::max(out.cols, out.rows) / 400.0));
  auto draw = [&](cv::Point2d c, double r, cv::Scalar colour_bgr) {
    if (r <= 0) return;
    const double sx = static_cast<double>(out.cols) / scan.width(), sy = static_cast<double>(out.rows) / scan.height();
    cv::circle(out, cv::Point(cvRound((c.x + 0.5) * sx - 0.5), cvRound((c.y + 0.5) * sy - 0.5)),
               cvRound(r * std::sqrt(sx * sy)), colour_bgr, thickness, cv::LINE_8);
  };
  draw(seg.primer_center_px, seg.primer_radius_px, cv::Scalar(0, 0, 255));
  draw(seg.firing_pin_center_px, seg.firing_pin_radius_px,
       seg.firing_pin_found ? cv::Scalar(255, 0, 0) : cv::Scalar(0, 220, 255));
  return out;
}

}  // namespace ballistics
