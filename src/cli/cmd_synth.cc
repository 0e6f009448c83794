// `ballisticsctl synth --firearms N --shots-per-firearm M --seed S --out DIR`:
// synthetic test fires with ground truth (src/synth, docs/synth.md).
//
// Writes one X3P per shot (raw-like scans by default, or already normalized-like
// breech-face signatures with --signatures) named synth-f0003-s01.x3p, and
// DIR/ground_truth.csv with one line per file.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ballistics/io.h"
#include "ballistics/synth.h"
#include "commands.h"
#include "progress.h"

namespace ballistics::cli {
namespace {

struct SynthArgs {
  int firearms = 10;
  int shots_per_firearm = 2;
  std::uint64_t seed = 1;
  std::string out;
  double pixel_um = 6.25;
  bool signatures = false;
  double mark_transfer = synth::ShotOptions{}.mark_transfer;
  double max_rotation_deg = synth::ShotOptions{}.max_rotation_deg;
  double max_shift_um = -1.0;  // < 0: the default of the chosen output
  double max_dropout_fraction = synth::ShotOptions{}.max_dropout_fraction;
  double flowback_um = synth::ShotOptions{}.flowback_um;
  double family_share = 0.0;
  int threads = 0;
};

// Firearm f of a run with seed S: seed S * 2^32 + f, so runs with different seeds
// never share a firearm (for f < 2^32), and any gun can be rebuilt from the CSV.
std::uint64_t FirearmSeed(std::uint64_t run_seed, int firearm) {
  return (run_seed << 32) + static_cast<std::uint64_t>(firearm);
}

std::string FileName(int firearm, int shot) {
  char name[64];
  std::snprintf(name, sizeof(name), "synth-f%04d-s%02d.x3p", firearm, shot);
  return name;
}

struct Row {
  std::string file;
  int firearm = 0;
  synth::ShotTruth truth;
  synth::FirearmModel model;
};

[[noreturn]] void Fail(const std::string& message, int code) {
  std::cerr << "synth: " << message << "\n";
  throw CLI::RuntimeError(code);
}

void Run(const SynthArgs& a) {
  if (a.firearms < 1 || a.shots_per_firearm < 1) {
    Fail("--firearms=" + std::to_string(a.firearms) + " and --shots-per-firearm=" +
             std::to_string(a.shots_per_firearm) + " must both be at least 1",
         kExitInputError);
  }
  if (a.shots_per_firearm > 99) {
    Fail("--shots-per-firearm=" + std::to_string(a.shots_per_firearm) + " exceeds 99 (file names hold 2 digits)",
         kExitInputError);
  }
  if (!(a.family_share >= 0.0 && a.family_share <= 1.0)) {
    Fail("--family-share=" + std::to_string(a.family_share) + " is outside [0, 1]", kExitInputError);
  }
  if (a.firearms > 9999) {
    Fail("--firearms=" + std::to_string(a.firearms) + " exceeds 9999 (file names hold 4 digits)", kExitInputError);
  }
  synth::ShotOptions options;
  options.pixel_um = a.pixel_um;
  options.mark_transfer = a.mark_transfer;
  options.max_rotation_deg = a.max_rotation_deg;
  options.max_dropout_fraction = a.max_dropout_fraction;
  options.flowback_um = a.flowback_um;
  options.min_dropout_fraction = std::min(options.min_dropout_fraction, a.max_dropout_fraction);
  // Raw scans are placed anywhere within half a millimetre; signatures are centred.
  options.max_shift_um = a.max_shift_um >= 0.0 ? a.max_shift_um : (a.signatures ? 50.0 : 500.0);
  // Check the options once, before creating anything.
  {
    synth::FirearmModel probe = synth::MakeFirearm(FirearmSeed(a.seed, 0));
    synth::ShotOptions tiny = options;
    auto surface = synth::RenderFirearm(probe, options.pixel_um);
    if (!surface.ok()) Fail(surface.status().message(), kExitInputError);
    auto check = synth::MakeShotSignature(*surface, 0, tiny);
    if (!check.ok()) Fail(check.status().message(), kExitInputError);
  }
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  if (ec) Fail("cannot create --out directory " + a.out + ": " + ec.message(), kExitInputError);

  const int total = a.firearms * a.shots_per_firearm;
  std::vector<Row> rows(static_cast<std::size_t>(total));
  ProgressBar progress("synth", static_cast<std::size_t>(total));
  std::atomic<int> next_firearm{0};
  std::mutex error_mu;
  std::string first_error;
  auto worker = [&] {
    for (int f = next_firearm++; f < a.firearms; f = next_firearm++) {
      {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!first_error.empty()) return;
      }
      // With --family-share every firearm of the run is a sibling of one family (the
      // family seed is the run's firearm "-1": S * 2^32 + 2^32 - 1).
      const synth::FirearmModel model =
          a.family_share > 0.0
              ? synth::MakeFirearmInFamily(FirearmSeed(a.seed, f), FirearmSeed(a.seed, 0) + 0xffffffffull,
                                           a.family_share)
              : synth::MakeFirearm(FirearmSeed(a.seed, f));
      auto surface = synth::RenderFirearm(model, options.pixel_um);
      Status status = surface.status();
      for (int s = 0; status.ok() && s < a.shots_per_firearm; ++s) {
        Row& row = rows[static_cast<std::size_t>(f * a.shots_per_firearm + s)];
        row.file = FileName(f, s + 1);
        row.firearm = f;
        row.model = model;
        Scan scan;
        if (a.signatures) {
          auto sig = synth::MakeShotSignature(*surface, static_cast<std::uint64_t>(s + 1), options, &row.truth);
          status = sig.status();
          if (!status.ok()) break;
          scan.values = sig->values;
          scan.pixel_um_x = scan.pixel_um_y = sig->pixel_um;
          scan.scanner.manufacturer = "ballistics";
          scan.scanner.model = "synthetic casing generator";
          scan.scanner.version = std::string(synth::kSynthVersion);
          scan.scanner.comment = "synthetic breech-face signature, band-passed 16-500 um";
        } else {
          auto made = synth::MakeShotScan(*surface, static_cast<std::uint64_t>(s + 1), options, &row.truth);
          status = made.status();
          if (!status.ok()) break;
          scan = std::move(made).value();
        }
        status = WriteX3pFile(scan, std::filesystem::path(a.out) / row.file, 'F');
        progress.Advance();
      }
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.empty()) first_error = status.ToString();
        return;
      }
    }
  };
  const int threads = std::clamp(a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency()),
                                 1, std::max(1, a.firearms));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  progress.Finish();
  if (!first_error.empty()) Fail(first_error, kExitInternal);

  const std::filesystem::path csv_path = std::filesystem::path(a.out) / "ground_truth.csv";
  std::ofstream csv(csv_path);
  csv << "scan,firearm,rotation_deg,shift_x_um,shift_y_um,firearm_seed,shot_seed,texture,fp_shape,"
         "missing_fraction\n";
  char line[512];
  for (const Row& r : rows) {
    std::snprintf(line, sizeof(line), "%s,%d,%.6f,%.4f,%.4f,%llu,%llu,%s,%s,%.5f\n",
                  r.file.substr(0, r.file.size() - 4).c_str(), r.firearm, r.truth.rotation_deg,
                  r.truth.shift_x_um, r.truth.shift_y_um, static_cast<unsigned long long>(r.truth.firearm_seed),
                  static_cast<unsigned long long>(r.truth.shot_seed),
                  std::string(synth::BreechTextureName(r.model.texture)).c_str(),
                  std::string(synth::FiringPinShapeName(r.model.fp_shape)).c_str(), r.truth.missing_fraction);
    csv << line;
  }
  csv.close();
  if (!csv) Fail("cannot write " + csv_path.string(), kExitInternal);
  std::cout << "wrote " << total << " " << (a.signatures ? "signatures" : "scans") << " of " << a.firearms
            << " firearms and ground_truth.csv to " << a.out << "\n";
}

}  // namespace

void RegisterSynthCommands(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd = app.add_subcommand("synth", "Write synthetic test fires (X3P) with ground truth");
  cmd->add_option("--firearms", args->firearms, "Number of firearms")->required();
  cmd->add_option("--shots-per-firearm", args->shots_per_firearm, "Test fires per firearm")->required();
  cmd->add_option("--seed", args->seed, "Run seed (firearm f has seed S*2^32+f)")->required();
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--pixel-um", args->pixel_um, "Pixel size in um")->capture_default_str();
  cmd->add_flag("--signatures", args->signatures,
                "Write normalized-like breech-face signatures instead of raw-like scans");
  cmd->add_option("--mark-transfer", args->mark_transfer,
                  "Share of the mark variance that is the firearm's (0..1)")->capture_default_str();
  cmd->add_option("--max-rotation-deg", args->max_rotation_deg, "Rotation uniform in +-this")
      ->capture_default_str();
  cmd->add_option("--max-shift-um", args->max_shift_um,
                  "Shift radius (default: 500 for scans, 50 for signatures)");
  cmd->add_option("--max-dropout", args->max_dropout_fraction, "Largest missing share of the region")
      ->capture_default_str();
  cmd->add_option("--flowback-um", args->flowback_um, "Height of the primer flow-back into the aperture (scans)")
      ->capture_default_str();
  cmd->add_option("--family-share", args->family_share,
                  "Make all firearms siblings of one family sharing this share of their marks (0..1)")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores)");
  cmd->callback([args] { Run(*args); });
}

}  // namespace ballistics::cli
