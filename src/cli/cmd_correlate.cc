// `ballisticsctl compare A B` and `ballisticsctl score-pairs DIR`: the
// correlate stage from the command line (files -> ReadScanFile -> Normalize ->
// Correlator::Compare, breech face and firing pin reported separately).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballistics/correlate.h"
#include "ballistics/io.h"
#include "ballistics/parallel.h"
#include "ballistics/preprocess.h"
#include "commands.h"
#include "evidence_cli.h"
#include "progress.h"

namespace ballistics::cli {
namespace {

namespace fs = std::filesystem;

std::string OneLineMessage(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

[[noreturn]] void Fail(const Status& status, const std::string& context) {
  std::cerr << "error: " << context << ": " << OneLineMessage(status.ToString()) << "\n";
  throw CLI::RuntimeError(status.code() == StatusCode::kInternal ? kExitInternal : kExitInputError);
}

// One scan, normalized and prepared for comparison.
struct PreparedScan {
  std::string name;  // file stem
  std::shared_ptr<const PreparedSignature> bf;
  std::shared_ptr<const PreparedSignature> fp;  // null when the scan has no FP signature
  double turn_deg = 0;                          // --turn-seed only
};

struct Engines {
  Correlator bf;
  Correlator fp;
};

Engines MakeEngines() {
  auto bf = Correlator::Create(CorrelationConfig{});
  auto fp = Correlator::Create(CorrelationConfig::FiringPin());
  if (!bf.ok()) Fail(bf.status(), "breech-face config");
  if (!fp.ok()) Fail(fp.status(), "firing-pin config");
  return {std::move(bf).value(), std::move(fp).value()};
}

// Reads, optionally turns (robustness check), normalizes and prepares one file.
StatusOr<PreparedScan> Load(const fs::path& path, const Engines& engines, std::optional<double> pixel_um,
                            std::optional<std::pair<double, cv::Point2d>> turn) {
  ReadOptions ro;
  ro.pixel_um = pixel_um;
  BALLISTICS_ASSIGN_OR_RETURN(Scan scan, ReadScanFile(path, ro));
  PreparedScan out;
  out.name = path.stem().string();
  if (turn.has_value()) {
    BALLISTICS_ASSIGN_OR_RETURN(scan, TurnScan(scan, turn->first, turn->second.x, turn->second.y));
    out.turn_deg = turn->first;
  }
  BALLISTICS_ASSIGN_OR_RETURN(NormalizedCasing casing, Normalize(scan));
  BALLISTICS_ASSIGN_OR_RETURN(out.bf, engines.bf.Prepare(casing.breech_face));
  if (casing.firing_pin.has_value()) {
    auto fp = engines.fp.Prepare(*casing.firing_pin);
    if (fp.ok()) out.fp = *fp;  // an unusable FP signature is reported as "no FP", not an error
  }
  return out;
}

nlohmann::json ToJson(const ComparisonResult& r) {
  auto dir = [](const DirectionResult& d) {
    nlohmann::json cells = nlohmann::json::array();
    for (const CellResult& c : d.cell_results) {
      cells.push_back({{"row", c.row},
                       {"col", c.col},
                       {"x_um", c.x_um},
                       {"y_um", c.y_um},
                       {"size_um", c.size_um},
                       {"valid_fraction", c.valid_fraction},
                       {"theta_deg", c.theta_deg},
                       {"dx_um", c.dx_um},
                       {"dy_um", c.dy_um},
                       {"target_x_um", c.target_x_um},
                       {"target_y_um", c.target_y_um},
                       {"ccf", c.ccf},
                       {"congruent", c.congruent}});
    }
    return nlohmann::json{{"cmc", d.cmc},           {"cells", d.cells}, {"theta_deg", d.theta_deg},
                          {"dx_um", d.dx_um},       {"dy_um", d.dy_um}, {"cell_results", cells}};
  };
  return {{"kind", std::string(SignatureKindName(r.kind))},
          {"cmc", r.cmc},
          {"cells", r.cells},
          {"ccf", r.ccf},
          {"theta_deg", r.theta_deg},
          {"dx_um", r.dx_um},
          {"dy_um", r.dy_um},
          {"identification", r.identification},
          {"candidate_angles_deg", r.candidate_angles_deg},
          {"forward", dir(r.forward)},
          {"backward", dir(r.backward)}};
}

void PrintText(const char* label, const ComparisonResult& r, int threshold) {
  std::printf("%s: CMC %d of %d cells (forward %d/%d, backward %d/%d) -> %s (threshold %d)\n", label, r.cmc,
              r.cells, r.forward.cmc, r.forward.cells, r.backward.cmc, r.backward.cells,
              r.identification ? "identification" : "no identification", threshold);
  std::printf("    target = reference turned %.2f deg, shifted (%.1f, %.1f) um; CCF %.3f\n", r.theta_deg, r.dx_um,
              r.dy_um, r.ccf);
}

// --reference-model FILE... / --reference-db URL: where the LRs come from. Neither:
// no LR, and the output says so next to the raw score.
struct EvidenceArgs {
  std::vector<std::string> model_files;
  std::string database_url;
  std::string calibre;
};

void AddEvidenceOptions(CLI::App* cmd, EvidenceArgs& e) {
  cmd->add_option("--reference-model", e.model_files,
                  "LR reference model JSON (evidence build-reference --out), one per kind (repeatable)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--reference-db", e.database_url,
                  "Take the LR reference models stored in this database (evidence build-reference --database-url)");
  cmd->add_option("--calibre", e.calibre, "Calibre for choosing the stored reference model (default: any)");
}

ReferenceModels LoadModels(const EvidenceArgs& e) {
  if (!e.database_url.empty() && !e.model_files.empty()) {
    std::cerr << "error: give --reference-model or --reference-db, not both\n";
    throw CLI::RuntimeError(kExitUsage);
  }
  auto m = e.database_url.empty() ? LoadReferenceModels(e.model_files)
                                  : LoadReferenceModelsFromDb(e.database_url, e.calibre);
  if (!m.ok()) Fail(m.status(), "reference model");
  return std::move(m).value();
}

evidence::LrResult Lr(const ReferenceModels& models, const ComparisonResult& r) {
  auto lr = evidence::EvaluateLr(models.For(r.kind), {r.cmc, r.cells});
  if (!lr.ok()) Fail(lr.status(), "likelihood ratio");
  return std::move(lr).value();
}

void RegisterCompare(CLI::App& app) {
  struct Args {
    std::string a, b;
    bool json = false;
    std::optional<double> max_rotation_deg;
    std::optional<double> pixel_um;
    EvidenceArgs evidence;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "compare", "Compare two scans: congruent matching cells of breech face and firing pin, with the transform");
  cmd->add_option("reference", args->a, "Reference scan (X3P, PNG or TIFF)")->required();
  cmd->add_option("target", args->b, "Target scan")->required();
  cmd->add_flag("--json", args->json, "Print one JSON object with the per-cell results");
  cmd->add_option("--max-rotation", args->max_rotation_deg,
                  "Scans are roughly aligned: search only |angle| <= DEG (default: all 360 degrees)")
      ->check(CLI::Range(0.0, 360.0));
  cmd->add_option("--pixel-um", args->pixel_um, "Pixel size in um for 2D images without resolution tags")
      ->check(CLI::PositiveNumber);
  AddEvidenceOptions(cmd, args->evidence);
  cmd->callback([args] {
    const ReferenceModels models = LoadModels(args->evidence);
    const Engines engines = MakeEngines();
    auto a = Load(args->a, engines, args->pixel_um, std::nullopt);
    if (!a.ok()) Fail(a.status(), args->a);
    auto b = Load(args->b, engines, args->pixel_um, std::nullopt);
    if (!b.ok()) Fail(b.status(), args->b);
    CompareOptions opt;
    opt.max_rotation_deg = args->max_rotation_deg;
    auto bf = engines.bf.Compare(*a->bf, *b->bf, opt);
    if (!bf.ok()) Fail(bf.status(), "breech-face comparison");
    std::optional<ComparisonResult> fp;
    if (a->fp && b->fp) {
      auto r = engines.fp.Compare(*a->fp, *b->fp, opt);
      if (!r.ok()) Fail(r.status(), "firing-pin comparison");
      fp = *r;
    }
    if (args->json) {
      nlohmann::json j{{"reference", args->a}, {"target", args->b}, {"breech_face", ToJson(*bf)}};
      j["breech_face"]["evidence"] = LrToJson(Lr(models, *bf));
      j["firing_pin"] = fp ? ToJson(*fp) : nlohmann::json();
      if (fp) j["firing_pin"]["evidence"] = LrToJson(Lr(models, *fp));
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::printf("reference: %s\ntarget:    %s\n", args->a.c_str(), args->b.c_str());
    PrintText("breech face", *bf, engines.bf.config().cmc_threshold);
    std::printf("    %s\n", FormatLr(Lr(models, *bf)).c_str());
    if (fp) {
      PrintText("firing pin ", *fp, engines.fp.config().cmc_threshold);
      std::printf("    %s\n", FormatLr(Lr(models, *fp)).c_str());
    } else {
      std::printf("firing pin : not compared (no firing-pin signature in %s)\n",
                  a->fp ? args->b.c_str() : args->a.c_str());
    }
  });
}

bool IsScanFile(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".x3p" || ext == ".png" || ext == ".tif" || ext == ".tiff";
}

void RegisterScorePairs(CLI::App& app) {
  struct Args {
    std::string dir;
    std::string out;
    int threads = 0;
    std::optional<double> max_rotation_deg;
    std::optional<double> pixel_um;
    std::optional<unsigned> turn_seed;
    std::vector<std::string> include, exclude;
    EvidenceArgs evidence;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "score-pairs", "Compare all unordered pairs of the scans in a folder and write one CSV row per pair");
  cmd->add_option("dir", args->dir, "Folder with X3P, PNG or TIFF scans")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--out", args->out, "CSV file to write")->required();
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-rotation", args->max_rotation_deg,
                  "Scans are roughly aligned: search only |angle| <= DEG (default: all 360 degrees)")
      ->check(CLI::Range(0.0, 360.0));
  cmd->add_option("--pixel-um", args->pixel_um, "Pixel size in um for 2D images without resolution tags")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--include", args->include, "Only files whose name contains this text (repeatable: any)");
  cmd->add_option("--exclude", args->exclude, "Skip files whose name contains this text (repeatable)");
  cmd->add_option("--turn-seed", args->turn_seed,
                  "Robustness check: turn every scan by a random angle (0-360 deg) and shift it by up to "
                  "+-250 um (seeded) before normalization; the angles go to extra CSV columns");
  AddEvidenceOptions(cmd, args->evidence);
  cmd->callback([args] {
    const ReferenceModels models = LoadModels(args->evidence);
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(args->dir)) {
      if (!e.is_regular_file() || !IsScanFile(e.path())) continue;
      const std::string name = e.path().filename().string();
      auto contains = [&](const std::string& t) { return name.find(t) != std::string::npos; };
      if (!args->include.empty() && std::none_of(args->include.begin(), args->include.end(), contains)) continue;
      if (std::any_of(args->exclude.begin(), args->exclude.end(), contains)) continue;
      files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.size() < 2) {
      std::cerr << "error: " << args->dir << " holds " << files.size() << " scan files; at least 2 are needed\n";
      throw CLI::RuntimeError(kExitInputError);
    }
    const int threads =
        args->threads > 0 ? args->threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    // Parallel over pairs; OpenCV's own worker threads would only oversubscribe the cores.
    cv::setNumThreads(1);
    const Engines engines = MakeEngines();
    // Turns are drawn up front, in file order, so a seed gives the same copies every run.
    std::vector<std::optional<std::pair<double, cv::Point2d>>> turns(files.size());
    if (args->turn_seed.has_value()) {
      std::mt19937 gen(*args->turn_seed);
      std::uniform_real_distribution<double> angle(0.0, 360.0), shift(-250.0, 250.0);
      for (auto& t : turns) {
        const double a = angle(gen), x = shift(gen), y = shift(gen);
        t = std::make_pair(a, cv::Point2d(x, y));
      }
    }
    std::vector<std::optional<PreparedScan>> scans(files.size());
    std::vector<Status> errors(files.size());
    {
      ProgressBar bar("normalize", files.size());
      ParallelFor(files.size(), threads, [&](std::size_t i) {
        auto s = Load(files[i], engines, args->pixel_um, turns[i]);
        if (s.ok()) {
          scans[i] = std::move(s).value();
        } else {
          errors[i] = s.status();
        }
        bar.Advance();
      });
    }
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (!errors[i].ok()) Fail(errors[i], files[i].string());
    }
    struct Pair {
      std::size_t i, j;
      ComparisonResult bf;
      std::optional<ComparisonResult> fp;
      Status status;
    };
    std::vector<Pair> pairs;
    for (std::size_t i = 0; i < files.size(); ++i) {
      for (std::size_t j = i + 1; j < files.size(); ++j) pairs.push_back({i, j, {}, std::nullopt, Status::Ok()});
    }
    CompareOptions opt;
    opt.max_rotation_deg = args->max_rotation_deg;
    {
      ProgressBar bar("score-pairs", pairs.size());
      ParallelFor(pairs.size(), threads, [&](std::size_t k) {
        Pair& p = pairs[k];
        auto r = engines.bf.Compare(*scans[p.i]->bf, *scans[p.j]->bf, opt);
        if (!r.ok()) {
          p.status = r.status();
        } else {
          p.bf = std::move(r).value();
          if (scans[p.i]->fp && scans[p.j]->fp) {
            auto f = engines.fp.Compare(*scans[p.i]->fp, *scans[p.j]->fp, opt);
            if (f.ok()) p.fp = std::move(f).value();
          }
        }
        bar.Advance();
      });
    }
    std::ofstream out(args->out);
    if (!out) {
      std::cerr << "error: cannot write " << args->out << "\n";
      throw CLI::RuntimeError(kExitInputError);
    }
    out << "reference,target,cmc,cells,ccf,theta_deg,dx_um,dy_um,cmc_forward,cmc_backward,cells_forward,"
           "cells_backward,fp_cmc,fp_cells,fp_theta_deg";
    if (args->turn_seed) out << ",turn_reference_deg,turn_target_deg";
    // Evidence strength, always last (empty LR and the reason in lr_basis without a model).
    out << ",lr,log10_lr,lr_at_bound,lr_km_pairs,lr_knm_pairs,lr_basis,fp_lr,fp_log10_lr,fp_lr_basis";
    out << "\n";
    char buf[512];
    for (const Pair& p : pairs) {
      if (!p.status.ok()) Fail(p.status, scans[p.i]->name + " vs " + scans[p.j]->name);
      const ComparisonResult& r = p.bf;
      std::snprintf(buf, sizeof(buf), "%s,%s,%d,%d,%.4f,%.3f,%.2f,%.2f,%d,%d,%d,%d", scans[p.i]->name.c_str(),
                    scans[p.j]->name.c_str(), r.cmc, r.cells, r.ccf, r.theta_deg, r.dx_um, r.dy_um, r.forward.cmc,
                    r.backward.cmc, r.forward.cells, r.backward.cells);
      out << buf;
      if (p.fp) {
        std::snprintf(buf, sizeof(buf), ",%d,%d,%.3f", p.fp->cmc, p.fp->cells, p.fp->theta_deg);
        out << buf;
      } else {
        out << ",,,";
      }
      if (args->turn_seed) {
        std::snprintf(buf, sizeof(buf), ",%.3f,%.3f", scans[p.i]->turn_deg, scans[p.j]->turn_deg);
        out << buf;
      }
      const evidence::LrResult lr = Lr(models, r);
      if (lr.available) {
        std::snprintf(buf, sizeof(buf), ",%.6g,%.4f,%d,%lld,%lld,", lr.lr, lr.log10_lr, lr.at_bound ? 1 : 0,
                      static_cast<long long>(lr.km_pairs), static_cast<long long>(lr.knm_pairs));
        out << buf;
      } else {
        out << ",,,,,";
      }
      out << lr.basis;
      if (p.fp) {
        const evidence::LrResult fp_lr = Lr(models, *p.fp);
        if (fp_lr.available) {
          std::snprintf(buf, sizeof(buf), ",%.6g,%.4f,", fp_lr.lr, fp_lr.log10_lr);
          out << buf;
        } else {
          out << ",,,";
        }
        out << fp_lr.basis;
      } else {
        out << ",,,";
      }
      out << "\n";
    }
    if (!out.flush()) {
      std::cerr << "error: writing " << args->out << " failed\n";
      throw CLI::RuntimeError(kExitInputError);
    }
    std::cerr << "wrote " << pairs.size() << " pairs of " << files.size() << " scans to " << args->out << "\n";
  });
}

}  // namespace

void RegisterCorrelateCommands(CLI::App& app) {
  RegisterCompare(app);
  RegisterScorePairs(app);
}

}  // namespace ballistics::cli
