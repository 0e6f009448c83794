// `ballisticsctl inspect FILE [--json] [--pixel-um X]`: what the io stage reads
// from a scan file, before any normalization.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ballistics/io.h"
#include "commands.h"

namespace ballistics::cli {
namespace {

struct ValueRange {
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  std::size_t valid = 0;
};

ValueRange RangeOfValid(const cv::Mat1f& values) {
  ValueRange r;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int y = 0; y < values.rows; ++y) {
    const float* row = values[y];
    for (int x = 0; x < values.cols; ++x) {
      if (!std::isfinite(row[x])) continue;
      lo = std::min<double>(lo, row[x]);
      hi = std::max<double>(hi, row[x]);
      ++r.valid;
    }
  }
  if (r.valid > 0) {
    r.min = lo;
    r.max = hi;
  }
  return r;
}

// JSON has no NaN: a range of a scan without valid points is null.
nlohmann::json NumberOrNull(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

nlohmann::json ToJson(const std::string& file, const Scan& scan) {
  const ValueRange range = RangeOfValid(scan.values);
  const bool is3d = scan.modality == Modality::kTopography3d;
  nlohmann::json j;
  j["file"] = file;
  j["format"] = std::string(ScanFormatName(scan.format));
  j["modality"] = std::string(ModalityName(scan.modality));
  j["width"] = scan.width();
  j["height"] = scan.height();
  j["pixel_um_x"] = scan.pixel_um_x;
  j["pixel_um_y"] = scan.pixel_um_y;
  j["header_length_unit"] = scan.header_length_unit;
  j["data_type"] = scan.source_data_type;
  j["bit_depth"] = scan.source_bit_depth;
  j["missing_fraction"] = scan.MissingFraction();
  j["valid_points"] = range.valid;
  j["had_mask"] = scan.had_mask;
  // 3D: heights in µm; 2D: luminance in [0, 1].
  j["value_unit"] = is3d ? "um" : "luminance";
  j["value_min"] = NumberOrNull(range.min);
  j["value_max"] = NumberOrNull(range.max);
  j["scanner"] = {{"manufacturer", scan.scanner.manufacturer}, {"model", scan.scanner.model},
                  {"serial", scan.scanner.serial},             {"version", scan.scanner.version},
                  {"creator", scan.scanner.creator},           {"capture_date", scan.scanner.capture_date},
                  {"comment", scan.scanner.comment}};
  j["sha256"] = scan.sha256_hex;
  j["size_bytes"] = scan.original_size_bytes;
  return j;
}

void PrintText(const nlohmann::json& j) {
  auto str = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  std::printf("file:               %s\n", str(j["file"]).c_str());
  std::printf("format:             %s (%s)\n", str(j["format"]).c_str(), str(j["modality"]).c_str());
  std::printf("dimensions:         %d x %d points\n", j["width"].get<int>(), j["height"].get<int>());
  std::printf("pixel size:         %.6g x %.6g um\n", j["pixel_um_x"].get<double>(),
              j["pixel_um_y"].get<double>());
  std::printf("header length unit: %s\n", str(j["header_length_unit"]).c_str());
  if (!j["data_type"].get<std::string>().empty()) {
    std::printf("data type:          %s\n", str(j["data_type"]).c_str());
  } else {
    std::printf("bit depth:          %d\n", j["bit_depth"].get<int>());
  }
  std::printf("missing:            %.2f %% (%zu valid points)\n", 100.0 * j["missing_fraction"].get<double>(),
              j["valid_points"].get<std::size_t>());
  std::printf("mask applied:       %s\n", j["had_mask"].get<bool>() ? "yes" : "no");
  auto num = [](const nlohmann::json& v) {
    if (!v.is_number()) return std::string("none");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v.get<double>());
    return std::string(buf);
  };
  std::printf("value range:        %s .. %s %s\n", num(j["value_min"]).c_str(), num(j["value_max"]).c_str(),
              str(j["value_unit"]).c_str());
  const auto& s = j["scanner"];
  std::printf("scanner:            %s %s (serial %s, version %s)\n", str(s["manufacturer"]).c_str(),
              str(s["model"]).c_str(), str(s["serial"]).c_str(), str(s["version"]).c_str());
  std::printf("creator:            %s\n", str(s["creator"]).c_str());
  std::printf("capture date:       %s\n", str(s["capture_date"]).c_str());
  if (!s["comment"].get<std::string>().empty()) {
    std::printf("comment:            %s\n", str(s["comment"]).c_str());
  }
  std::printf("sha256:             %s\n", str(j["sha256"]).c_str());
  std::printf("size:               %s bytes\n", str(j["size_bytes"]).c_str());
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

void RegisterIoCommands(CLI::App& app) {
  struct Args {
    std::string file;
    bool json = false;
    std::optional<double> pixel_um;
  };
  auto args = std::make_shared<Args>();
  CLI::App* inspect = app.add_subcommand(
      "inspect", "Show what a scan file holds (format, size, pixel size, units, heights, scanner, sha256)");
  inspect->add_option("file", args->file, "X3P, PNG or TIFF file")->required();
  inspect->add_flag("--json", args->json, "Print one JSON object");
  inspect->add_option("--pixel-um", args->pixel_um, "Pixel size in um for 2D images without resolution tags")
      ->check(CLI::PositiveNumber);
  inspect->callback([args] {
    ReadOptions options;
    options.pixel_um = args->pixel_um;
    StatusOr<Scan> scan = ReadScanFile(args->file, options);
    if (!scan.ok()) {
      std::cerr << "error: " << OneLine(scan.status().ToString()) << "\n";
      const bool internal = scan.status().code() == StatusCode::kInternal;
      throw CLI::RuntimeError(internal ? kExitInternal : kExitInputError);
    }
    const nlohmann::json j = ToJson(args->file, *scan);
    if (args->json) {
      std::cout << j.dump(2) << "\n";
    } else {
      PrintText(j);
    }
  });
}

}  // namespace ballistics::cli
