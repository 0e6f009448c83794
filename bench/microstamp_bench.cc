// Microstamp lookup latency on a synthetic registry (docs/benchmarks.md, "Microstamp").
//
// The registry holds N firearms with an 8-character FP-tip code (0-9A-Z) and a
// 12-tooth breech-face gear code (tests/registry/microstamp_synth.h). Each
// iteration looks up a fresh partial read of a random registered firearm.
//   BM_LookupFp2Unknown1Swap   FP read, 2 of 8 unknown, 1 look-alike swap (the case)
//   BM_LookupFp4Unknown        FP read, 4 of 8 unknown (many consistent codes)
//   BM_LookupFpAndBf           FP 4 unknown + 1 swap and BF 5 of 12 unknown + 1 swap, fused
//                              (joint walk, the default)
//   BM_LookupFpAndBfPerLocation  the same reads, each location walked on its own (the first fused lookup)
//   BM_FindExact               exact code -> firearm
//   BM_LiveLookupFp2Unknown1Swap / BM_LiveLookupFpAndBf
//                              the read and the fused read on a live index whose delta holds
//                              4096 firearms (the compaction bound): 2048 new, 1024 re-registered,
//                              1024 revoked (docs/registry.md, "Incremental index")
//   BM_LiveApplyOne            one registration applied to that live index (delta rebuilt)
// Build, delta and compaction times and memory are printed once per registry size.
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

using ballistics::registry::LiveMicrostampIndex;
using ballistics::registry::MicrostampChange;
using ballistics::registry::MicrostampIndex;
using ballistics::registry::MicrostampLookupOptions;
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

constexpr std::int64_t kDelta = 4096;  // the service's compaction bound (docs/registry.md)

// The registry of IndexOf(n) as a live index: ids 1..n in the base, then
// kDelta changes (half new firearms, a quarter re-registered, a quarter revoked).
std::shared_ptr<const LiveMicrostampIndex> LiveOf(std::int64_t n) {
  static std::int64_t cached_n = 0;
  static std::shared_ptr<const LiveMicrostampIndex> live;
  if (cached_n == n) return live;
  live.reset();
  const MicrostampIndex& index = IndexOf(n);
  // Shares the cached index without owning it (the cache outlives the live index).
  std::shared_ptr<const MicrostampIndex> base(&index, [](const MicrostampIndex*) {});
  auto l = LiveMicrostampIndex::FromBase(base);
  std::vector<MicrostampChange> changes;
  std::uint64_t next = static_cast<std::uint64_t>(n);
  for (std::int64_t i = 0; i < kDelta / 2; ++i, ++next) {
    changes.push_back({n + 1 + i, ballistics::testing::SynthFpCode(next), ballistics::testing::SynthBfCode(next), false});
  }
  for (std::int64_t i = 0; i < kDelta / 4; ++i, ++next) {  // re-registered: new codes for firearms of the base
    changes.push_back({1 + i * 7, ballistics::testing::SynthFpCode(next), ballistics::testing::SynthBfCode(next), false});
  }
  for (std::int64_t i = 0; i < kDelta / 4; ++i) changes.push_back({3 + i * 7, "", "", true});
  const auto t0 = std::chrono::steady_clock::now();
  auto applied = (*l)->Apply(changes);
  const double apply_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!applied.ok()) std::fprintf(stderr, "apply failed: %s\n", applied.status().ToString().c_str());
  const auto t1 = std::chrono::steady_clock::now();
  auto compacted = (*applied)->Compact();
  const double compact_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::fprintf(stderr, "live index over %lld firearms: %lld changes applied in %.2f s; compaction into a new base %.1f s\n",
               static_cast<long long>(n), static_cast<long long>(kDelta), apply_s, compact_s);
  live = *applied;
  cached_n = n;
  return live;
}

template <class Index>
void Run(benchmark::State& state, const Index& index, int fp_unknown, int fp_swaps, bool with_bf,
         MicrostampLookupOptions::Fused fused = MicrostampLookupOptions::Fused::kPrimary) {
  const std::int64_t n = state.range(0);
  std::mt19937_64 rng(42);
  const auto& fa = IndexOf(n).alphabet(StampLocation::kFiringPinTip);
  const auto& ba = IndexOf(n).alphabet(StampLocation::kBreechFace);
  MicrostampLookupOptions options;
  options.fused = fused;
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
    auto r = index.Lookup(reads, options);
    benchmark::DoNotOptimize(r);
    if (r.ok()) nodes += r->nodes_visited;
    ++lookups;
  }
  state.counters["nodes"] = static_cast<double>(nodes) / std::max<std::int64_t>(lookups, 1);
}

void BM_LookupFp2Unknown1Swap(benchmark::State& s) { Run(s, IndexOf(s.range(0)), 2, 1, false); }
void BM_LookupFp4Unknown(benchmark::State& s) { Run(s, IndexOf(s.range(0)), 4, 0, false); }
void BM_LookupFpAndBf(benchmark::State& s) { Run(s, IndexOf(s.range(0)), 4, 1, true); }
void BM_LookupFpAndBfPerLocation(benchmark::State& s) {
  Run(s, IndexOf(s.range(0)), 4, 1, true, MicrostampLookupOptions::Fused::kPerLocation);
}
void BM_LiveLookupFp2Unknown1Swap(benchmark::State& s) { Run(s, *LiveOf(s.range(0)), 2, 1, false); }
void BM_LiveLookupFpAndBf(benchmark::State& s) { Run(s, *LiveOf(s.range(0)), 4, 1, true); }

void BM_LiveApplyOne(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  auto live = LiveOf(n);
  std::uint64_t next = static_cast<std::uint64_t>(n) + 2 * kDelta;
  std::int64_t id = n + 2 * kDelta;
  for (auto _ : state) {
    auto r = live->Apply({{++id, ballistics::testing::SynthFpCode(next), ballistics::testing::SynthBfCode(next), false}});
    ++next;
    benchmark::DoNotOptimize(r);
  }
}

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
BENCHMARK(BM_LookupFpAndBfPerLocation)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FindExact)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LiveLookupFp2Unknown1Swap)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LiveLookupFpAndBf)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LiveApplyOne)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFp2Unknown1Swap)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFp4Unknown)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFpAndBf)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LookupFpAndBfPerLocation)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FindExact)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LiveLookupFp2Unknown1Swap)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LiveLookupFpAndBf)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LiveApplyOne)->Arg(10'000'000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
