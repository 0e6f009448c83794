// io stage: time to read real scans (docs/io.md, "Speed").
//   ninja -C build io_bench && ./build/bench/io_bench
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "ballistics/io.h"
#include "test_paths.h"

namespace ballistics {
namespace {

std::filesystem::path Data(const char* rel) { return testing::SharedDataDir() / rel; }

void ReadFile(benchmark::State& state, const char* rel) {
  for (auto _ : state) {
    auto scan = ReadScanFile(Data(rel));
    if (!scan.ok()) {
      state.SkipWithError(scan.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(scan->values.data);
  }
  state.SetBytesProcessed(state.iterations() * std::filesystem::file_size(Data(rel)));
}

// One Fadul scan (545 x 545 float64 in metres, 650 KB zip): disk + inflate + MD5 + SHA-256 + decode.
void BM_ReadFadulFile(benchmark::State& state) { ReadFile(state, "fadul/fadul-1-1.x3p"); }
BENCHMARK(BM_ReadFadulFile)->Unit(benchmark::kMillisecond);

// Same file already in memory, without and with the MD5 checks.
void BM_ReadFadulBytes(benchmark::State& state) {
  auto bytes = ReadFileBytes(Data("fadul/fadul-1-1.x3p"), 1ull << 30);
  ReadOptions options;
  options.verify_md5 = state.range(0) != 0;
  for (auto _ : state) {
    auto scan = ReadScanBytes(*bytes, options);
    benchmark::DoNotOptimize(scan.ok());
  }
  state.SetLabel(options.verify_md5 ? "verify_md5" : "no_md5");
}
BENCHMARK(BM_ReadFadulBytes)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);

// Raw DFSC scan: 769 x 749 float32 in µm with a mask.png.
void BM_ReadDfscRawWithMask(benchmark::State& state) { ReadFile(state, "dfsc/K013sA1.x3p"); }
BENCHMARK(BM_ReadDfscRawWithMask)->Unit(benchmark::kMillisecond);

// 2592 x 1944 8-bit PNG.
void BM_ReadNbidePng(benchmark::State& state) { ReadFile(state, "nbide-2d/nbide-r-bf-118.png"); }
BENCHMARK(BM_ReadNbidePng)->Unit(benchmark::kMillisecond);

void BM_WriteFadulX3p(benchmark::State& state) {
  auto scan = ReadScanFile(Data("fadul/fadul-1-1.x3p"));
  const char type = state.range(0) == 8 ? 'D' : 'F';
  for (auto _ : state) {
    auto bytes = WriteX3pBytes(*scan, type);
    benchmark::DoNotOptimize(bytes.ok());
  }
  state.SetLabel(std::string(1, type));
}
BENCHMARK(BM_WriteFadulX3p)->Arg(8)->Arg(4)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ballistics
