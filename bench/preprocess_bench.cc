// preprocess: time to normalize one scan (docs/benchmarks.md, "Preprocess").
//   ninja -C build preprocess_bench && ./build/bench/preprocess_bench
// The ingest goal is >= 20 Fadul scans per second per core for read +
// normalize + store, so Normalize of a 545 x 545 Fadul file must stay well
// under 30 ms; the stage benchmarks show where the time goes.
#include <cstdlib>
#include <filesystem>
#include <string>

#include <benchmark/benchmark.h>

#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "test_paths.h"

namespace ballistics {
namespace {

Scan Load(const std::string& rel, std::optional<double> pixel_um = std::nullopt) {
  ReadOptions o;
  o.pixel_um = pixel_um;
  StatusOr<Scan> s = ReadScanFile(testing::SharedDataDir() / rel, o);
  if (!s.ok()) {
    std::fprintf(stderr, "cannot read %s: %s\n", rel.c_str(), s.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(s);
}

void BM_NormalizeFadul(benchmark::State& state) {
  const Scan scan = Load("fadul/fadul-1-1.x3p");
  for (auto _ : state) {
    auto r = Normalize(scan);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NormalizeFadul)->Unit(benchmark::kMillisecond);

void BM_ReadAndNormalizeFadul(benchmark::State& state) {
  const auto path = testing::SharedDataDir() / "fadul/fadul-1-1.x3p";
  for (auto _ : state) {
    StatusOr<Scan> s = ReadScanFile(path);
    auto r = Normalize(*s);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReadAndNormalizeFadul)->Unit(benchmark::kMillisecond);

// A DFSC annulus at 7.37 µm: adds the resampling to 6.25 µm.
void BM_NormalizeDfscCropped(benchmark::State& state) {
  const Scan scan = Load("dfsc/K013sA1_processed.x3p");
  for (auto _ : state) benchmark::DoNotOptimize(Normalize(scan));
}
BENCHMARK(BM_NormalizeDfscCropped)->Unit(benchmark::kMillisecond);

// A 2592 x 1944 NBIDE ring-light image: primer and FP segmentation, 2 signatures.
void BM_NormalizeNbide2d(benchmark::State& state) {
  const Scan scan = Load("nbide-2d/nbide-r-bf-118.png", 2.53);
  for (auto _ : state) benchmark::DoNotOptimize(Normalize(scan));
}
BENCHMARK(BM_NormalizeNbide2d)->Unit(benchmark::kMillisecond);

// Stages on the Fadul grid.
void BM_BandPassFadul(benchmark::State& state) {
  const Scan scan = Load("fadul/fadul-1-1.x3p");
  for (auto _ : state) benchmark::DoNotOptimize(GaussianBandPassNaN(scan.values, 6.25, 16, 500));
}
BENCHMARK(BM_BandPassFadul)->Unit(benchmark::kMillisecond);

void BM_LevelQuadricFadul(benchmark::State& state) {
  const Scan scan = Load("fadul/fadul-1-1.x3p");
  for (auto _ : state) benchmark::DoNotOptimize(LevelPolynomialRobust(scan.values, 2));
}
BENCHMARK(BM_LevelQuadricFadul)->Unit(benchmark::kMillisecond);

void BM_ResampleDfscToFadulGrid(benchmark::State& state) {
  const Scan scan = Load("dfsc/K013sA1_processed.x3p");
  for (auto _ : state)
    benchmark::DoNotOptimize(ResampleNaN(scan.values, scan.pixel_um_x, scan.pixel_um_y, 6.25));
}
BENCHMARK(BM_ResampleDfscToFadulGrid)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ballistics

BENCHMARK_MAIN();
