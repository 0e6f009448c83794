// Calibration of the synthetic casings against the Fadul scans (docs/synth.md,
// "Calibration"): the correlation engine's CMC counts and whole-signature CCF for
// known matches (KM) and known non-matches (KNM), real and synthetic side by side.
//
//   synth_calibrate [--transfer T] [--spread S] [--contact C] [--family F] [--guns N] [--shots M]
//                   [--knm K] [--threads J] [--orientation-unknown] [--no-fadul]
//
// Fadul: all 63 KM pairs and K KNM pairs drawn with a fixed seed. Synthetic: N firearms
// x M shots (all KM pairs, K KNM pairs), rotations within +-15 degrees so relative
// rotations stay within the +-30 degrees searched (as for the roughly aligned Fadul
// scans); --orientation-unknown uses any rotation and a full-circle search for both.
// Both go through preprocess::Normalize (the synthetic signatures are wrapped as
// cropped scans) so they are treated alike.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ballistics/correlate.h"
#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "ballistics/synth.h"

namespace {

using namespace ballistics;  // NOLINT(build/namespaces)

struct Item {
  std::string name;
  int group = 0;  // slide or firearm
  std::shared_ptr<const PreparedSignature> prepared;
};

struct PairScore {
  bool km = false;
  int cmc = 0;
  double ccf = 0;
};

std::shared_ptr<const PreparedSignature> PrepareScan(const Correlator& corr, const Scan& scan, const std::string& name) {
  auto norm = Normalize(scan);
  if (!norm.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), norm.status().ToString().c_str());
    std::exit(1);
  }
  auto p = corr.Prepare(norm->breech_face);
  if (!p.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), p.status().ToString().c_str());
    std::exit(1);
  }
  return *p;
}

std::vector<PairScore> ScorePairs(const Correlator& corr, const std::vector<Item>& items, int knm_count,
                                  const CompareOptions& opt, int threads) {
  std::vector<std::pair<int, int>> km, knm;
  for (int i = 0; i < static_cast<int>(items.size()); ++i)
    for (int j = i + 1; j < static_cast<int>(items.size()); ++j)
      (items[i].group == items[j].group ? km : knm).emplace_back(i, j);
  std::mt19937 rng(20260126);
  std::shuffle(knm.begin(), knm.end(), rng);
  if (static_cast<int>(knm.size()) > knm_count) knm.resize(static_cast<std::size_t>(knm_count));
  std::vector<std::pair<int, int>> pairs = km;
  pairs.insert(pairs.end(), knm.begin(), knm.end());
  std::vector<PairScore> out(pairs.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t k = next++; k < pairs.size(); k = next++) {
      const auto [i, j] = pairs[k];
      auto r = corr.Compare(*items[i].prepared, *items[j].prepared, opt);
      out[k].km = items[i].group == items[j].group;
      if (r.ok()) {
        out[k].cmc = r->cmc;
        out[k].ccf = r->ccf;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return out;
}

void Report(const char* label, const std::vector<PairScore>& scores) {
  for (int km = 1; km >= 0; --km) {
    std::vector<int> cmc;
    std::vector<double> ccf;
    for (const auto& s : scores) {
      if (s.km != (km == 1)) continue;
      cmc.push_back(s.cmc);
      ccf.push_back(s.ccf);
    }
    if (cmc.empty()) continue;
    std::sort(cmc.begin(), cmc.end());
    std::sort(ccf.begin(), ccf.end());
    auto q = [](const auto& v, double p) { return v[static_cast<std::size_t>(p * (v.size() - 1) + 0.5)]; };
    std::printf("%-10s %-3s pairs %4zu  CMC min/p10/median/p90/max %2d %2d %2d %2d %2d   CCF p10/median/p90 %.3f %.3f %.3f\n",
                label, km ? "KM" : "KNM", cmc.size(), cmc.front(), q(cmc, 0.1), q(cmc, 0.5), q(cmc, 0.9), cmc.back(),
                q(ccf, 0.1), q(ccf, 0.5), q(ccf, 0.9));
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  double transfer = synth::ShotOptions{}.mark_transfer;
  double contact = synth::ShotOptions{}.contact_variation;
  double spread = synth::ShotOptions{}.mark_transfer_spread;
  double family = 0.0;
  int guns = 8, shots = 3, knm = 60, threads = 2;
  bool unknown = false, fadul = true;
  std::string data_dir = std::string(BALLISTICS_SHARED_DATA_DIR);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--transfer") transfer = std::stod(next());
    else if (a == "--contact") contact = std::stod(next());
    else if (a == "--spread") spread = std::stod(next());
    else if (a == "--family") family = std::stod(next());
    else if (a == "--guns") guns = std::stoi(next());
    else if (a == "--shots") shots = std::stoi(next());
    else if (a == "--knm") knm = std::stoi(next());
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--orientation-unknown") unknown = true;
    else if (a == "--no-fadul") fadul = false;
    else if (a == "--data") data_dir = next();
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const Correlator corr = Correlator::Create().value();
  CompareOptions opt;
  if (!unknown) opt.max_rotation_deg = 30.0;

  if (fadul) {
    std::vector<Item> items;
    std::ifstream gt(data_dir + "/fadul/ground_truth.csv");
    std::string line;
    std::getline(gt, line);
    while (std::getline(gt, line)) {
      std::stringstream ss(line);
      std::string scan, slide;
      std::getline(ss, scan, ',');
      std::getline(ss, slide, ',');
      auto read = ReadScanFile(data_dir + "/fadul/" + scan + ".x3p");
      if (!read.ok()) {
        std::fprintf(stderr, "%s\n", read.status().ToString().c_str());
        return 1;
      }
      Scan s = std::move(read).value();
      if (unknown) {
        // Place each scan at a random angle, as a database query would meet it.
        std::mt19937 rng(static_cast<unsigned>(items.size() + 1));
        s = TurnScan(s, std::uniform_real_distribution<double>(-180, 180)(rng), 0, 0).value();
      }
      items.push_back({scan, std::stoi(slide), PrepareScan(corr, s, scan)});
    }
    Report("fadul", ScorePairs(corr, items, knm, opt, threads));
  }

  synth::ShotOptions o;
  o.mark_transfer = transfer;
  o.contact_variation = contact;
  o.mark_transfer_spread = spread;
  o.max_rotation_deg = unknown ? 180.0 : 15.0;
  std::vector<Item> items;
  for (int g = 0; g < guns; ++g) {
    const synth::FirearmModel model =
        family > 0 ? synth::MakeFirearmInFamily(5000 + g, 4999, family) : synth::MakeFirearm(5000 + g);
    auto surface = synth::RenderFirearm(model, o.pixel_um);
    if (!surface.ok()) {
      std::fprintf(stderr, "%s\n", surface.status().ToString().c_str());
      return 1;
    }
    for (int s = 0; s < shots; ++s) {
      auto made = synth::MakeShotSignature(*surface, static_cast<std::uint64_t>(s), o);
      if (!made.ok()) {
        std::fprintf(stderr, "%s\n", made.status().ToString().c_str());
        return 1;
      }
      const Signature& sig = *made;
      Scan scan;
      scan.values = sig.values;
      scan.pixel_um_x = scan.pixel_um_y = sig.pixel_um;
      const std::string name = "synth-" + std::to_string(g) + "-" + std::to_string(s);
      items.push_back({name, g, PrepareScan(corr, scan, name)});
    }
  }
  char label[64];
  std::snprintf(label, sizeof(label), "synth T=%.2f S=%.2f C=%.2f F=%.2f", transfer, spread, contact, family);
  std::printf("%s\n", label);
  Report("synth", ScorePairs(corr, items, knm, opt, threads));
  return 0;
}
