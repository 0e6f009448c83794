// `ballisticsctl normalize FILE [--out out.png] [--overlay seg.png] [--pixel-um X] [--json]`:
// runs the preprocess stage on one scan, writes a picture of the BF / FP
// signatures (and of the segmentation drawn on the input) and prints what was
// found (sizes, valid fractions, FP, warnings).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "commands.h"

namespace ballistics::cli {
namespace {

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

[[noreturn]] void Fail(const Status& status) {
  std::cerr << "error: " << OneLine(status.ToString()) << "\n";
  throw CLI::RuntimeError(status.code() == StatusCode::kInternal ? kExitInternal : kExitInputError);
}

// Writes render() to path when path is set; a failure is an input error (exit 3).
template <typename Render>
void WritePng(const std::string& path, Render render) {
  if (path.empty()) return;
  bool written = false;
  try {
    written = cv::imwrite(path, render());
  } catch (const cv::Exception& e) {
    std::cerr << "error: cannot write " << path << ": " << OneLine(e.what()) << "\n";
    throw CLI::RuntimeError(kExitInputError);
  }
  if (!written) {
    std::cerr << "error: cannot write " << path << "\n";
    throw CLI::RuntimeError(kExitInputError);
  }
}

nlohmann::json SignatureJson(const Signature& s) {
  return {{"kind", std::string(SignatureKindName(s.kind))},
          {"modality", std::string(ModalityName(s.modality))},
          {"pipeline_version", s.pipeline_version},
          {"width", s.width()},
          {"height", s.height()},
          {"pixel_um", s.pixel_um},
          {"valid_fraction", s.quality.valid_fraction},
          {"rms_height", s.quality.rms_height},
          {"valid_area_mm2", s.quality.valid_area_mm2}};
}

nlohmann::json ToJson(const std::string& file, const Scan& scan, const NormalizedCasing& c, double ms) {
  const Segmentation& s = c.segmentation;
  nlohmann::json j;
  j["file"] = file;
  j["scan"] = {{"width", scan.width()}, {"height", scan.height()}, {"pixel_um_x", scan.pixel_um_x},
               {"pixel_um_y", scan.pixel_um_y}, {"modality", std::string(ModalityName(scan.modality))},
               {"missing_fraction", scan.MissingFraction()}, {"had_mask", scan.had_mask}};
  j["segmentation"] = {{"already_cropped", s.already_cropped},
                       {"primer_center_px", {s.primer_center_px.x, s.primer_center_px.y}},
                       {"primer_radius_px", s.primer_radius_px},
                       {"firing_pin_found", s.firing_pin_found},
                       {"firing_pin_center_px", {s.firing_pin_center_px.x, s.firing_pin_center_px.y}},
                       {"firing_pin_radius_px", s.firing_pin_radius_px},
                       {"breech_face_outer_radius_px", s.breech_face_outer_radius_px},
                       {"breech_face_inner_radius_px", s.breech_face_inner_radius_px}};
  j["breech_face"] = SignatureJson(c.breech_face);
  j["firing_pin"] = c.firing_pin ? SignatureJson(*c.firing_pin) : nlohmann::json();
  j["warnings"] = c.warnings;
  j["normalize_ms"] = ms;
  return j;
}

void PrintSignature(const char* label, const Signature& s) {
  std::printf("%-20s%d x %d at %.2f um, valid %.1f %% (%.2f mm2), rms %.3g %s\n", label, s.width(), s.height(),
              s.pixel_um, 100 * s.quality.valid_fraction, s.quality.valid_area_mm2, s.quality.rms_height,
              s.modality == Modality::kTopography3d ? "um" : "(relative intensity)");
}

void PrintText(const std::string& file, const Scan& scan, const NormalizedCasing& c, double ms) {
  const Segmentation& s = c.segmentation;
  std::printf("file:               %s\n", file.c_str());
  std::printf("scan:               %d x %d at %.4g x %.4g um, %s, %.1f %% missing%s\n", scan.width(),
              scan.height(), scan.pixel_um_x, scan.pixel_um_y, std::string(ModalityName(scan.modality)).c_str(),
              100 * scan.MissingFraction(), scan.had_mask ? ", mask applied" : "");
  std::printf("already cropped:    %s\n", s.already_cropped ? "yes (pre-processed breech-face annulus)" : "no");
  std::printf("primer:             centre (%.1f, %.1f) px, radius %.1f px\n", s.primer_center_px.x,
              s.primer_center_px.y, s.primer_radius_px);
  if (s.firing_pin_found) {
    std::printf("firing pin:         found, centre (%.1f, %.1f) px, radius %.1f px\n", s.firing_pin_center_px.x,
                s.firing_pin_center_px.y, s.firing_pin_radius_px);
  } else {
    std::printf("firing pin:         not found\n");
  }
  PrintSignature("breech face:", c.breech_face);
  if (c.firing_pin) PrintSignature("firing-pin sig.:", *c.firing_pin);
  std::printf("pipeline version:   %s\n", c.breech_face.pipeline_version.c_str());
  std::printf("normalize time:     %.1f ms\n", ms);
  for (const std::string& w : c.warnings) std::printf("warning:            %s\n", w.c_str());
}

}  // namespace

void RegisterPreprocessCommands(CLI::App& app) {
  struct Args {
    std::string file;
    std::string out;
    std::string overlay;
    bool json = false;
    std::optional<double> pixel_um;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "normalize", "Segment, level, band-pass and resample one scan into BF / FP signatures; draw them");
  cmd->add_option("file", args->file, "X3P, PNG or TIFF file")->required();
  cmd->add_option("--out", args->out, "Write the signatures picture here (PNG)");
  cmd->add_option("--overlay", args->overlay, "Write the input with the primer / FP circles drawn on it (PNG)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->add_option("--pixel-um", args->pixel_um, "Pixel size in um for 2D images without resolution tags")
      ->check(CLI::PositiveNumber);
  cmd->callback([args] {
    ReadOptions options;
    options.pixel_um = args->pixel_um;
    StatusOr<Scan> scan = ReadScanFile(args->file, options);
    if (!scan.ok()) Fail(scan.status());
    const auto t0 = std::chrono::steady_clock::now();
    StatusOr<NormalizedCasing> casing = Normalize(*scan);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!casing.ok()) Fail(casing.status().WithContext(args->file));
    WritePng(args->out, [&] { return RenderSignatures(*casing); });
    WritePng(args->overlay, [&] { return RenderSegmentation(*scan, casing->segmentation); });
    if (args->json) {
      std::cout << ToJson(args->file, *scan, *casing, ms).dump(2) << "\n";
    } else {
      PrintText(args->file, *scan, *casing, ms);
    }
  });
}

}  // namespace ballistics::cli
