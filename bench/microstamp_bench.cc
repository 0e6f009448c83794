// Microstamp lookup latency on a synthetic registry (docs/benchmarks.md, "Microstamp").
//
// The registry holds N firearms with an 8-character FP-tip code (0-9A-Z) and a
// 12-tooth breech-face gear code (tests/registry/microstamp_synth.h). Each
// iteration looks up a fresh partial read of a random registered firearm.
//   BM_LookupFp2Unknown1Swap   FP read, 2 of 8 unknown, 1 look-alike swap (the case)
//   BM_LookupFp4Unknown        FP read, 4 of 8 unknown (many consistent codes)
//   BM_LookupFpAndBf           FP 4 unknown + 1 swap and BF 5 of 12 unknown + 1 swap, fused
//   BM_FindExact               exact code -> firearm
// Build time and memory are printed once per registry size.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>

#include "ballistics/registry.h"
#include "registry/microstamp_synth.h"

namespace {

using ballistics::registry::MicrostampIndex;
using ballistics::registry::StampLocation;
using ballistics::registry::StampRead;

const MicrostampIndex& IndexOf(std::int64_t n) {
  static std::map<std::int64_t, std::unique_ptr<MicrostampIndex>> cache;
  auto& p = cache[n];
  if (!p) {
    cache.clear();  // one registry in memory at a time
    auto& q = cache[n];
    q = std::make_unique<MicrostampIndex>();
    const auto t0 = std::chrono::steady_clock::now();
    ballistics::Status s = ballistics::testing::BuildSynthIndex(*q, n, true);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!s.ok()) std::fprintf(stderr, "build failed: %s\n", s.ToString().c_str());
    std::fprintf(stderr, "registry of %lld firearms (FP + BF codes): built in %.1f s, %.0f MiB\n",
                 static_cast<long long>(n), sec, q->memory_bytes() / 1048576.0);
    return *q;
  }
  return *p;
}

void Run(benchmark::State& state, int fp_unknown, int fp_swaps, bool with_bf) {
  const std::int64_t n = state.range(0);
  const MicrostampIndex& index = IndexOf(n);
  std::mt19937_64 rng(42);
  const auto& fa = index.alphabet(StampLocation::kFiringPinTip);
  const auto& ba = index.alphabet(StampLocation::kBreechFace);
  std::int64_t nodes = 0, lookups = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const auto u = std::uniform_int_distribution<std::uint64_t>(0, static_cast<std::uint64_t>(n - 1))(rng);
    std::vector<StampRead> reads = {ballistics::testing::DegradedRead(fa, StampLocation::kFiringPinTip,
                                                                      ballistics::testing::SynthFpCode(u), fp_unknown,
                                                                      fp_swaps, 0.9, rng)};
    if (with_bf) {
      reads.push_back(ballistics::testing::DegradedRead(ba, StampLocation::kBreechFace,
                                                        ballistics::testing::SynthBfCode(u), 5, 1, 0.8, rng));
    }
    state.ResumeTiming();
    auto r = index.Lookup(reads);
    benchmark::DoNotOptimize(r);
    if (r.ok()) nodes += r->nodes_visited;
    ++lookups;
  }
  state.counters["nodes"] = static_cast<double>(nodes) / std::max<std::int64_t>(lookups, 1);
}

void BM_LookupFp2Unknown1Swap(benchmark::State& s) { Run(s, 2, 1, false); }
void BM_LookupFp4Unknown(benchmark::State& s) { Run(s, 4, 0, false); }
void BM_LookupFpAndBf(benchmark::State& s) { Run(s, 4, 1, true); }

void BM_FindExact(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const MicrostampIndex& index = IndexOf(n);
  std::mt19937_64 rng(42);
  for (auto _ : state) {
    const auto u = std::uniform_int_distribution<std::uint64_t>(0, static_cast<std::uint64_t>(n - 1))(rng);
    auto r = index.FindExact(StampLocation::kFiringPinTip, ballistics::testing::SynthFpCode(u));
    benchmark::DoNotOptimize(r);
  }
}

// Sizes in ascending order so each registry is built once.
BENCHMARK(BM_LookupFp2Unknown1Swap)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFp4Unknown)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFpAndBf)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FindExact)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFp2Unknown1Swap)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFp4Unknown)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFpAndBf)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FindExact)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
