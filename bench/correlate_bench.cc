// Time per pair comparison of the correlate stage, on one core, and how it
// grows with the number of cells and angles. Synthetic breech-face-sized
// signatures (545 x 545 points at 6.25 µm, like the Fadul scans): the timing
// does not depend on the texture, only on sizes and settings. BM_CompareFadul
// times the real Fadul pairs (../shared/data) the same way.
//   ninja -C build correlate_bench && build/bench/correlate_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ballistics/correlate.h"
#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "ballistics/synth.h"
#include "correlate/synthetic.h"
#include "test_paths.h"

namespace ballistics {
namespace {

struct Pair {
  std::shared_ptr<const PreparedSignature> a, b;
};

Pair MakePair(const Correlator& corr, double turn_deg) {
  cv::Mat1f ref = testing::BandLimitedTexture(545, 7);
  testing::ApplyAnnulus(ref);
  const cv::Mat1f tgt = testing::TurnShift(ref, turn_deg, 6.0, -4.0, 20, 0.3, 0.1, 3);
  return {corr.Prepare(testing::MakeSignature(ref)).value(), corr.Prepare(testing::MakeSignature(tgt)).value()};
}

// Times Compare of one prepared pair; the pair's CMC and cell count become
// counters (a reader sees whether a "match" benchmark really matched).
void TimeCompare(benchmark::State& state, const Correlator& corr, const Pair& p, const CompareOptions& opt = {}) {
  // Warm-up outside the timing: FFTW plans are made once per size.
  const ComparisonResult warm = corr.Compare(*p.a, *p.b, opt).value();
  int cmc = 0;
  for (auto _ : state) {
    auto r = corr.Compare(*p.a, *p.b, opt);
    cmc = r->cmc;
    benchmark::DoNotOptimize(cmc);
  }
  state.counters["cmc"] = cmc;
  state.counters["cells"] = warm.cells;
}

void RunCompare(benchmark::State& state, const CorrelationConfig& cfg, const CompareOptions& opt,
                double turn_deg = 137.0) {
  // One core: no OpenCV worker threads behind the measured thread's back.
  cv::setNumThreads(1);
  const Correlator corr = Correlator::Create(cfg).value();
  TimeCompare(state, corr, MakePair(corr, turn_deg), opt);
}

// Default settings, orientation unknown (full 360 degrees): the database case.
void BM_CompareDefault(benchmark::State& state) { RunCompare(state, {}, {}); }
BENCHMARK(BM_CompareDefault)->Unit(benchmark::kMillisecond);

// Two different textures (a known non-match), orientation unknown: what most
// comparisons of a database search are. No orientation candidate wins the
// cell vote clearly, so nothing can be cut short.
void BM_CompareNonMatch(benchmark::State& state) {
  cv::setNumThreads(1);
  const Correlator corr = Correlator::Create().value();
  cv::Mat1f ref = testing::BandLimitedTexture(545, 7), other = testing::BandLimitedTexture(545, 8);
  testing::ApplyAnnulus(ref);
  testing::ApplyAnnulus(other);
  const cv::Mat1f tgt = testing::TurnShift(other, 137.0, 6.0, -4.0, 20, 0.3, 0.1, 3);
  TimeCompare(state, corr, {corr.Prepare(testing::MakeSignature(ref)).value(),
                            corr.Prepare(testing::MakeSignature(tgt)).value()});
}
BENCHMARK(BM_CompareNonMatch)->Unit(benchmark::kMillisecond);

// Roughly aligned scans: |angle| <= 30 degrees (the target is turned by 17 degrees).
void BM_CompareAligned30(benchmark::State& state) {
  CompareOptions opt;
  opt.max_rotation_deg = 30;
  RunCompare(state, {}, opt, 17.0);
}
BENCHMARK(BM_CompareAligned30)->Unit(benchmark::kMillisecond);

// The same pipeline without the speed-ups that change what is computed:
// cells located directly on the 12.5 µm grid, every cell votes for the
// orientation candidates, the backward direction swept like the forward one,
// candidate translations on the 50 µm grid (the engine before they were added).
void BM_CompareAllFine(benchmark::State& state) {
  CorrelationConfig cfg;
  cfg.cell_search_downsample = 1;
  cfg.candidate_cell_stride = 1;
  cfg.backward_cell_angle_steps = cfg.cell_angle_steps;
  cfg.translation_pixel_um = cfg.coarse_pixel_um;
  RunCompare(state, cfg, {});
}
BENCHMARK(BM_CompareAllFine)->Unit(benchmark::kMillisecond);

// Cells located on a grid 1, 2 or 4 times coarser than the 12.5 µm cell grid.
void BM_CompareSearchDownsample(benchmark::State& state) {
  CorrelationConfig cfg;
  cfg.cell_search_downsample = static_cast<int>(state.range(0));
  RunCompare(state, cfg, {});
}
BENCHMARK(BM_CompareSearchDownsample)->Arg(1)->Arg(2)->Arg(4)->Unit(benchmark::kMillisecond);

// Every n-th cell tells the orientation candidates apart.
void BM_CompareCandidateStride(benchmark::State& state) {
  CorrelationConfig cfg;
  cfg.candidate_cell_stride = static_cast<int>(state.range(0));
  RunCompare(state, cfg, {});
}
BENCHMARK(BM_CompareCandidateStride)->Arg(1)->Arg(2)->Arg(3)->Unit(benchmark::kMillisecond);

// Cells: cell_grid x cell_grid.
void BM_CompareCellGrid(benchmark::State& state) {
  CorrelationConfig cfg;
  cfg.cell_grid = static_cast<int>(state.range(0));
  RunCompare(state, cfg, {});
}
BENCHMARK(BM_CompareCellGrid)->Arg(4)->Arg(6)->Arg(8)->Arg(10)->Arg(12)->Unit(benchmark::kMillisecond);

// Angles of the orientation search: 360 / step.
void BM_CompareCoarseAngles(benchmark::State& state) {
  CorrelationConfig cfg;
  cfg.coarse_angle_step_deg = 360.0 / static_cast<double>(state.range(0));
  RunCompare(state, cfg, {});
}
BENCHMARK(BM_CompareCoarseAngles)->Arg(60)->Arg(120)->Arg(240)->Unit(benchmark::kMillisecond);

// Angles per cell in the forward registration: 2 * steps + 1 (the backward
// direction stays at one angle).
void BM_CompareCellAngles(benchmark::State& state) {
  CorrelationConfig cfg;
  cfg.cell_angle_steps = static_cast<int>(state.range(0));
  RunCompare(state, cfg, {});
}
BENCHMARK(BM_CompareCellAngles)->Arg(0)->Arg(1)->Arg(2)->Arg(4)->Unit(benchmark::kMillisecond);

// Orientation candidates checked by cell voting.
void BM_CompareCandidates(benchmark::State& state) {
  CorrelationConfig cfg;
  cfg.max_candidates = static_cast<int>(state.range(0));
  RunCompare(state, cfg, {});
}
BENCHMARK(BM_CompareCandidates)->Arg(1)->Arg(3)->Arg(6)->Arg(12)->Unit(benchmark::kMillisecond);

// Firing-pin signatures at CorrelationConfig::FiringPin(), orientation
// unknown. Fadul has no firing-pin impressions (removed in processing), so the
// pair comes from the synthetic generator (src/synth, docs/synth.md): two
// shots of one firearm (arg 0, a mate) or of two firearms (arg 1, a non-match),
// each at its own random rotation, as MakeShotSignature draws them.
void BM_CompareFiringPin(benchmark::State& state) {
  cv::setNumThreads(1);
  const Correlator corr = Correlator::Create(CorrelationConfig::FiringPin()).value();
  synth::ShotOptions shot;
  shot.kind = SignatureKind::kFiringPin;
  const synth::FirearmSurface gun = synth::RenderFirearm(synth::MakeFirearm(101), shot.pixel_um).value();
  const synth::FirearmSurface other = synth::RenderFirearm(synth::MakeFirearm(202), shot.pixel_um).value();
  const Signature sa = synth::MakeShotSignature(gun, 1, shot).value();
  const Signature sb = synth::MakeShotSignature(state.range(0) == 0 ? gun : other, 2, shot).value();
  TimeCompare(state, corr, {corr.Prepare(sa).value(), corr.Prepare(sb).value()});
  state.counters["side_px"] = sa.values.cols;
}
BENCHMARK(BM_CompareFiringPin)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// The real Fadul scans (../shared/data/fadul, 40 breech faces of 10 slides),
// read, normalized and prepared once; pairs of one truth (arg 0: same slide,
// 63 KM pairs; arg 1: different slides, 717 KNM pairs) in a fixed random
// order, one pair per iteration, orientation unknown (360 degrees) at the
// default config, so the time per iteration is the mean time per pair over
// the first N pairs of that order (--benchmark_min_time=12 covers all 717).
struct FadulSet {
  std::string error;  // why the set is unavailable, "" when loaded
  std::vector<std::shared_ptr<const PreparedSignature>> bf;
  std::vector<std::pair<int, int>> km, knm;
};

const FadulSet& Fadul(const Correlator& corr) {
  static const FadulSet set = [&] {
    namespace fs = std::filesystem;
    FadulSet out;
    const fs::path dir = testing::SharedDataDir() / "fadul";
    std::ifstream truth(dir / "ground_truth.csv");
    if (!truth) {
      out.error = "no " + (dir / "ground_truth.csv").string();
      return out;
    }
    std::vector<int> slide;
    std::string line;
    std::getline(truth, line);  // header: scan,slide,role
    while (std::getline(truth, line)) {
      std::istringstream row(line);
      std::string scan, s;
      if (!std::getline(row, scan, ',') || !std::getline(row, s, ',')) continue;
      auto read = ReadScanFile(dir / (scan + ".x3p"));
      auto norm = read.ok() ? Normalize(*read) : StatusOr<NormalizedCasing>(read.status());
      auto prep = norm.ok() ? corr.Prepare(norm->breech_face) : StatusOr<std::shared_ptr<const PreparedSignature>>(norm.status());
      if (!prep.ok()) {
        out.error = scan + ": " + prep.status().ToString();
        return out;
      }
      out.bf.push_back(*prep);
      slide.push_back(std::stoi(s));
    }
    for (int i = 0; i < static_cast<int>(slide.size()); ++i) {
      for (int j = i + 1; j < static_cast<int>(slide.size()); ++j) {
        (slide[i] == slide[j] ? out.km : out.knm).push_back({i, j});
      }
    }
    std::mt19937 gen(20261127);
    std::shuffle(out.km.begin(), out.km.end(), gen);
    std::shuffle(out.knm.begin(), out.knm.end(), gen);
    return out;
  }();
  return set;
}

void BM_CompareFadul(benchmark::State& state) {
  cv::setNumThreads(1);
  const Correlator corr = Correlator::Create().value();
  const FadulSet& set = Fadul(corr);
  if (!set.error.empty()) {
    state.SkipWithError(("Fadul scans unavailable: " + set.error).c_str());
    return;
  }
  const auto& pairs = state.range(0) == 0 ? set.km : set.knm;
  // Warm-up outside the timing: FFTW plans are made once per size.
  benchmark::DoNotOptimize(corr.Compare(*set.bf[pairs[0].first], *set.bf[pairs[0].second]));
  std::size_t k = 0;
  double cells = 0, cmc = 0;
  for (auto _ : state) {
    const auto& [a, b] = pairs[k % pairs.size()];
    auto r = corr.Compare(*set.bf[a], *set.bf[b]);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      break;
    }
    cells += r->cells;
    cmc += r->cmc;
    ++k;
  }
  const double n = static_cast<double>(std::max<std::size_t>(k, 1));
  state.counters["pairs"] = static_cast<double>(std::min(k, pairs.size()));
  state.counters["mean_cells"] = cells / n;
  state.counters["mean_cmc"] = cmc / n;
}
BENCHMARK(BM_CompareFadul)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Preparing one signature (done once per scan, reused for every comparison).
void BM_Prepare(benchmark::State& state) {
  cv::setNumThreads(1);
  const Correlator corr = Correlator::Create().value();
  cv::Mat1f ref = testing::BandLimitedTexture(545, 7);
  testing::ApplyAnnulus(ref);
  const Signature s = testing::MakeSignature(ref);
  const auto first = corr.Prepare(s).value();  // plans
  for (auto _ : state) benchmark::DoNotOptimize(corr.Prepare(s));
  // What a cache of prepared (FFT-ready) signatures holds per scan.
  state.counters["bytes"] = static_cast<double>(PreparedSignatureBytes(*first));
}
BENCHMARK(BM_Prepare)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ballistics

BENCHMARK_MAIN();
