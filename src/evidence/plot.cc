// Tippett and ECE plots drawn with OpenCV (no plotting library in Debian's C++
// stack that we would rather depend on): axes, ticks, labels, legend.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "ballistics/evidence.h"

namespace ballistics::evidence {
namespace {

constexpr int kWidth = 900, kHeight = 600;
constexpr int kLeft = 90, kRight = 30, kTop = 60, kBottom = 80;
const cv::Scalar kBlack(0, 0, 0), kGrey(210, 210, 210), kKmColour(190, 90, 0), kKnmColour(20, 20, 210),
    kPavColour(190, 90, 0);
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

struct Axes {
  double x0, x1, y0, y1;
  cv::Point2d ToPixel(double x, double y) const {
    const double px = kLeft + (x - x0) / (x1 - x0) * (kWidth - kLeft - kRight);
    const double py = kHeight - kBottom - (y - y0) / (y1 - y0) * (kHeight - kTop - kBottom);
    return {px, py};
  }
};

void Text(cv::Mat& img, const std::string& s, cv::Point at, double scale, bool centred = false) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(s, kFont, scale, 1, &baseline);
  if (centred) at.x -= size.width / 2;
  cv::putText(img, s, at, kFont, scale, kBlack, 1, cv::LINE_AA);
}

// Text turned 90 degrees counter-clockwise, centred on `centre` (y-axis label).
void VerticalText(cv::Mat& img, const std::string& s, cv::Point centre, double scale) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(s, kFont, scale, 1, &baseline);
  cv::Mat3b tmp(size.height + baseline + 4, size.width + 4, cv::Vec3b(255, 255, 255));
  cv::putText(tmp, s, {2, size.height + 2}, kFont, scale, kBlack, 1, cv::LINE_AA);
  cv::Mat3b turned;
  cv::rotate(tmp, turned, cv::ROTATE_90_COUNTERCLOCKWISE);
  const cv::Rect roi(centre.x - turned.cols / 2, centre.y - turned.rows / 2, turned.cols, turned.rows);
  if ((roi & cv::Rect(0, 0, img.cols, img.rows)) == roi) turned.copyTo(img(roi));
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), std::abs(v - std::round(v)) < 1e-9 ? "%.0f" : "%.1f", v);
  return buf;
}

// Frame, grid, ticks every `x_step` / `y_step`, axis labels and title.
cv::Mat3b Frame(const Axes& ax, double x_step, double y_step, const std::string& x_label,
                const std::string& y_label, const std::string& title) {
  cv::Mat3b img(kHeight, kWidth, cv::Vec3b(255, 255, 255));
  for (double x = std::ceil(ax.x0 / x_step) * x_step; x <= ax.x1 + 1e-9; x += x_step) {
    const cv::Point2d a = ax.ToPixel(x, ax.y0), b = ax.ToPixel(x, ax.y1);
    cv::line(img, a, b, kGrey, 1, cv::LINE_AA);
    cv::line(img, a, a + cv::Point2d(0, 5), kBlack, 1, cv::LINE_AA);
    Text(img, Num(x), cv::Point(static_cast<int>(a.x), static_cast<int>(a.y) + 22), 0.5, true);
  }
  for (double y = std::ceil(ax.y0 / y_step) * y_step; y <= ax.y1 + 1e-9; y += y_step) {
    const cv::Point2d a = ax.ToPixel(ax.x0, y), b = ax.ToPixel(ax.x1, y);
    cv::line(img, a, b, kGrey, 1, cv::LINE_AA);
    cv::line(img, a, a - cv::Point2d(5, 0), kBlack, 1, cv::LINE_AA);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2g", std::abs(y) < 1e-12 ? 0.0 : y);
    Text(img, buf, cv::Point(static_cast<int>(a.x) - 45, static_cast<int>(a.y) + 5), 0.5);
  }
  cv::rectangle(img, ax.ToPixel(ax.x0, ax.y1), ax.ToPixel(ax.x1, ax.y0), kBlack, 1, cv::LINE_AA);
  Text(img, x_label, cv::Point((kLeft + kWidth - kRight) / 2, kHeight - 25), 0.6, true);
  VerticalText(img, y_label, cv::Point(25, (kTop + kHeight - kBottom) / 2), 0.6);
  Text(img, title, cv::Point(kWidth / 2, 35), 0.65, true);
  return img;
}

// Polyline, solid or dashed (dash length in pixels), clipped to the plot area.
void Curve(cv::Mat3b& img, const Axes& ax, const std::vector<cv::Point2d>& pts, const cv::Scalar& colour,
           int thickness, int dash = 0) {
  std::vector<cv::Point2d> px;
  for (const cv::Point2d& p : pts) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    px.push_back(ax.ToPixel(std::clamp(p.x, ax.x0, ax.x1), std::clamp(p.y, ax.y0, ax.y1)));
  }
  double run = 0;
  for (std::size_t i = 1; i < px.size(); ++i) {
    const double len = cv::norm(px[i] - px[i - 1]);
    if (dash == 0) {
      cv::line(img, px[i - 1], px[i], colour, thickness, cv::LINE_AA);
      continue;
    }
    // Walk the segment in dash-sized pieces, drawing every other one.
    double t = 0;
    while (t < len) {
      const double step = std::min(dash - std::fmod(run, dash), len - t);
      if (static_cast<int>(run / dash) % 2 == 0) {
        cv::line(img, px[i - 1] + (px[i] - px[i - 1]) * (t / len), px[i - 1] + (px[i] - px[i - 1]) * ((t + step) / len),
                 colour, thickness, cv::LINE_AA);
      }
      t += step;
      run += step;
    }
  }
}

void Legend(cv::Mat3b& img, const std::vector<std::pair<std::string, std::pair<cv::Scalar, int>>>& entries,
            cv::Point at) {
  int y = at.y;
  for (const auto& [label, style] : entries) {
    const cv::Point2d a(at.x, y - 5), b(at.x + 40, y - 5);
    if (style.second == 0) {
      cv::line(img, a, b, style.first, 2, cv::LINE_AA);
    } else {
      for (double x = a.x; x < b.x; x += 2.0 * style.second) {
        cv::line(img, cv::Point2d(x, a.y), cv::Point2d(std::min(x + style.second, b.x), a.y), style.first, 2,
                 cv::LINE_AA);
      }
    }
    Text(img, label, cv::Point(at.x + 50, y), 0.5);
    y += 24;
  }
}

Status Write(const cv::Mat3b& img, const std::string& path) {
  try {
    if (!cv::imwrite(path, img)) return Internal("evidence: cannot write plot " + path);
  } catch (const cv::Exception& e) {
    return Internal("evidence: cannot write plot " + path + ": " + e.what());
  }
  return Status::Ok();
}

Status CheckClasses(std::span<const ScoredLr> lrs) {
  std::size_t km = 0;
  for (const ScoredLr& s : lrs) km += s.same_source ? 1 : 0;
  if (km == 0 || km == lrs.size()) {
    return InvalidArgument("evidence: a plot needs KM and KNM pairs (got " + std::to_string(km) + " KM, " +
                           std::to_string(lrs.size() - km) + " KNM)");
  }
  return Status::Ok();
}

}  // namespace

Status WriteTippettPlot(std::span<const ScoredLr> lrs, const std::string& title, const std::string& png_path) {
  BALLISTICS_RETURN_IF_ERROR(CheckClasses(lrs));
  std::vector<double> km, knm;
  for (const ScoredLr& s : lrs) (s.same_source ? km : knm).push_back(s.log10_lr);
  std::sort(km.begin(), km.end());
  std::sort(knm.begin(), knm.end());
  const double lo = std::floor(std::min(km.front(), knm.front())) - 1;
  const double hi = std::ceil(std::max(km.back(), knm.back())) + 1;
  const Axes ax{lo, hi, 0, 1};
  cv::Mat3b img = Frame(ax, hi - lo > 12 ? 2 : 1, 0.1, "log10 LR  (x)", "share of pairs with log10 LR >= x", title);
  // Share of each class at or above x: a right-continuous step function,
  // sampled finely enough (1/400 of the range) that the steps look sharp.
  auto curve = [&](const std::vector<double>& v) {
    std::vector<cv::Point2d> pts;
    for (int i = 0; i <= 2000; ++i) {
      const double x = lo + (hi - lo) * i / 2000.0;
      const double above = static_cast<double>(v.end() - std::lower_bound(v.begin(), v.end(), x));
      pts.emplace_back(x, above / static_cast<double>(v.size()));
    }
    return pts;
  };
  Curve(img, ax, {{0, 0}, {0, 1}}, kBlack, 1, 6);
  Curve(img, ax, curve(km), kKmColour, 2);
  Curve(img, ax, curve(knm), kKnmColour, 2, 8);
  Legend(img,
         {{"known match (KM), n = " + std::to_string(km.size()), {kKmColour, 0}},
          {"known non-match (KNM), n = " + std::to_string(knm.size()), {kKnmColour, 8}}},
         cv::Point(kLeft + 20, kTop + 30));
  return Write(img, png_path);
}

Status WriteEcePlot(std::span<const ScoredLr> lrs, const std::string& title, const std::string& png_path) {
  BALLISTICS_RETURN_IF_ERROR(CheckClasses(lrs));
  const std::vector<double> pav = PavLog10Lr(lrs);
  std::vector<ScoredLr> calibrated(lrs.begin(), lrs.end()), neutral(lrs.begin(), lrs.end());
  for (std::size_t i = 0; i < lrs.size(); ++i) {
    calibrated[i].log10_lr = pav[i];
    neutral[i].log10_lr = 0;
  }
  constexpr double kLo = -3, kHi = 3;
  std::vector<cv::Point2d> sys, cal, neu;
  double y_max = 0;
  for (int i = 0; i <= 600; ++i) {
    const double o = kLo + (kHi - kLo) * i / 600.0;
    sys.emplace_back(o, EmpiricalCrossEntropy(lrs, o));
    cal.emplace_back(o, EmpiricalCrossEntropy(calibrated, o));
    neu.emplace_back(o, EmpiricalCrossEntropy(neutral, o));
    y_max = std::max({y_max, sys.back().y, neu.back().y});
  }
  const Axes ax{kLo, kHi, 0, std::max(0.1, std::ceil(y_max * 11) / 10)};
  cv::Mat3b img = Frame(ax, 1, 0.1, "prior log10 odds", "empirical cross-entropy (bits)", title);
  Curve(img, ax, neu, kBlack, 1, 4);
  Curve(img, ax, cal, kPavColour, 2, 8);
  Curve(img, ax, sys, kKnmColour, 2);
  Legend(img,
         {{"LR system", {kKnmColour, 0}},
          {"after PAV (best calibration)", {kPavColour, 8}},
          {"neutral (LR = 1)", {kBlack, 4}}},
         cv::Point(kWidth - kRight - 330, kTop + 30));
  return Write(img, png_path);
}

}  // namespace ballistics::evidence
