// Speed of the synthetic casing generator (docs/synth.md, "Speed").
//   ninja synth_bench && ./bench/synth_bench
// Filling an index with N signatures costs about
//   N * (MakeShotSignature) + (N / shots per firearm) * (RenderFirearm).
#include <benchmark/benchmark.h>

#include "ballistics/synth.h"

namespace ballistics::synth {
namespace {

void BM_RenderFirearm(benchmark::State& state) {
  const double pixel_um = static_cast<double>(state.range(0)) / 100.0;
  std::uint64_t seed = 0;
  for (auto _ : state) {
    auto s = RenderFirearm(MakeFirearm(seed++), pixel_um);
    benchmark::DoNotOptimize(s);
  }
  state.SetLabel("pixel_um=" + std::to_string(pixel_um));
}
BENCHMARK(BM_RenderFirearm)->Arg(625)->Arg(1250)->Unit(benchmark::kMillisecond);

// One breech-face signature from a rendered firearm (the per-shot cost), default options.
void BM_MakeShotSignature(benchmark::State& state) {
  const FirearmSurface gun = RenderFirearm(MakeFirearm(1), 6.25).value();
  ShotOptions o;
  o.deformation_um = state.range(0) ? o.deformation_um : 0.0;
  o.kind = state.range(1) ? SignatureKind::kFiringPin : SignatureKind::kBreechFace;
  std::uint64_t shot = 0;
  for (auto _ : state) {
    auto s = MakeShotSignature(gun, shot++, o);
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::string(o.kind == SignatureKind::kFiringPin ? "FP" : "BF") +
                 (o.deformation_um > 0 ? " with deformation" : " no deformation"));
}
BENCHMARK(BM_MakeShotSignature)->Args({1, 0})->Args({0, 0})->Args({1, 1})->Unit(benchmark::kMillisecond);

// A raw-like scan of the whole primer (~920 x 920 points at 6.25 µm with the CLI's 500 µm shift).
void BM_MakeShotScan(benchmark::State& state) {
  const FirearmSurface gun = RenderFirearm(MakeFirearm(2), 6.25).value();
  ShotOptions o;
  o.max_shift_um = 500.0;
  std::uint64_t shot = 0;
  for (auto _ : state) {
    auto s = MakeShotScan(gun, shot++, o);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_MakeShotScan)->Unit(benchmark::kMillisecond);

// Filling an index: per signature, firearms of state.range(0) shots each (render included).
void BM_FillIndexPerSignature(benchmark::State& state) {
  const int shots = static_cast<int>(state.range(0));
  std::uint64_t seed = 100;
  std::int64_t made = 0;
  for (auto _ : state) {
    const FirearmSurface gun = RenderFirearm(MakeFirearm(seed++), 6.25).value();
    for (int s = 0; s < shots; ++s) {
      auto sig = MakeShotSignature(gun, static_cast<std::uint64_t>(s));
      benchmark::DoNotOptimize(sig);
    }
    made += shots;
  }
  state.SetItemsProcessed(made);
  // Rate inverted: CPU seconds per signature.
  state.counters["time_per_signature"] = benchmark::Counter(static_cast<double>(made),
                                                          benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_FillIndexPerSignature)->Arg(1)->Arg(10)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ballistics::synth
