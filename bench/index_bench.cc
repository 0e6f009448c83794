// Search at scale (docs/benchmarks.md, "Search"; docs/search.md).
//
//   index_bench recall   [--synthetic N] [--distinct D] [--seed S]
//       Real scans (all of fadul/ and dfsc/) in a haystack of N synthetic BF
//       signatures; every real scan, turned by a random angle, is a query: at
//       which coarse rank do its true mates land? Recall at K, also counted
//       over the mates that brute-force CMC (query vs mate, any orientation)
//       identifies; and the engine's own rerank set (coarse top K/2 plus the
//       screening stage's best of the coarse top 500, docs/search.md
//       "Screening"): which identified mates reach the CMC rerank (--screened 0
//       skips this search). BENCH_ZNORM=M (experiment, docs/search.md "Why two DFSC
//       mates stay out"): candidate-side Z-norm against a cohort of M synthetic
//       shots, ranking the whole list (slow: every query scores every entry).
//   index_bench centre   --query NAME --mate NAME [--synthetic N] [--distinct D]
//       Oracle check of the descriptor centre for one real mate pair: the
//       mate's coarse rank and the scores it would need, and the descriptor
//       score with the query's ring centre moved to where the CMC registration
//       puts the mate's centre (and the best offset on a +-160 µm grid).
//   index_bench haystack [--synthetic N] [--distinct D] [--rerank-k K] [--queries fadul|all]
//       The must-show: full searches (coarse + CMC rerank of K) of every
//       turned Fadul scan; for how many queries are all same-slide mates in the top 10?
//   index_bench kernel   [--sizes 200000] [--distinct D] [--scramble 0|1]
//       Scan cost on one thread in CPU time (immune to other processes on a
//       shared machine): one flat index, 1 and 9 query variants, against a
//       plain sweep of the same bytes, per instruction set the CPU has.
//   index_bench scale    [--sizes 10000,100000,1000000] [--distinct D] [--rerank-k K] [--scramble 0|1]
//       Query latency (coarse, screen, rerank, end to end; and end to end
//       without the screening stage, side by side), bytes of RAM per
//       signature, coarse-scan throughput vs a plain memory sweep of the same
//       bytes. The screen's and rerank's signatures are held compact
//       (RerankCache), as a shard worker holds them.
//   index_bench compact  [--hold-pixel UM] [--threads T] [--rerank-k K] [--runs R] [--pairs 0|1]
//                        [--database-url URL]
//       Rerank memory (docs/search.md, "Rerank memory"): every pair of the 40
//       Fadul scans compared (CMC) with float signatures and with their compact
//       form (CompactSignatureOf at --hold-pixel, default the BF cell grid
//       12.5 µm): identification decisions and CMC differences, bytes per
//       signature; then the rerank of K = 50 candidates through the engine with
//       the signatures held as float, held compact, and fetched on every load
//       (a RerankCache of budget 0 whose fetch hands over the float signature:
//       the compaction cost of a miss, without the database read) and, with
//       --database-url URL (the Fadul scans are stored there first, once),
//       fetched on every load from PostgreSQL as a worker over budget does.
//
// Synthetic haystack: D distinct synthetic breech-face shots (10 per firearm)
// are generated at --synth-pixel (default 25 µm, the descriptor's own grid;
// their descriptors are what the index holds) and, when N > D, replicated with
// new ids (every replica is a distinct entry; its signature is its original's).
// The rerank regenerates a synthetic candidate's signature at 6.25 µm from its
// seeds (SyntheticSource), as a store would load it. scale and kernel turn
// the replicas into distinct non-mates (Scrambled, --scramble 1, the
// default) so that the timing does not profit from duplicates.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <sys/resource.h>
#include <time.h>
#include <unordered_map>
#include <vector>

#include "ballistics/correlate.h"
#include "ballistics/index.h"
#include "ballistics/ingest.h"
#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "ballistics/synth.h"
#include "test_paths.h"

namespace ballistics {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// BENCH_DESCRIPTOR="coarse_px,lowpass,ring_step,rings,freqs,ring_min,fit_rim[,taper]" overrides the BF
// descriptor defaults on both sides, index and query (parameter studies of docs/search.md).
DescriptorConfig BfConfig() {
  DescriptorConfig c;
  if (const char* e = std::getenv("BENCH_DESCRIPTOR")) {
    int rim = 1;
    std::sscanf(e, "%lf,%lf,%lf,%d,%d,%lf,%d,%lf", &c.coarse_pixel_um, &c.lowpass_um, &c.ring_step_um, &c.rings,
                &c.frequencies, &c.ring_min_um, &rim, &c.edge_taper_um);
    c.fit_rim_centre = rim != 0;
    if (Status st = c.Validate(); !st.ok()) {
      std::fprintf(stderr, "BENCH_DESCRIPTOR=%s: %s\n", e, st.ToString().c_str());
      std::exit(2);
    }
  }
  return c;
}

// BENCH_TRANSLATION="steps,step_um[,outer_steps[,outer_rescore_k]]" overrides the engine's query-side
// translation search (parameter studies of docs/search.md).
SearchEngineConfig EngineConfig() {
  SearchEngineConfig c;
  c.breech_face_descriptor = BfConfig();  // BENCH_DESCRIPTOR applies to the query side too
  if (const char* e = std::getenv("BENCH_TRANSLATION")) {
    std::sscanf(e, "%d,%lf,%d,%d", &c.translation_steps, &c.translation_search_um, &c.outer_translation_steps,
                &c.outer_rescore_k);
  }
  return c;
}

// The query's descriptors at the engine's translation-search offsets.
std::vector<CoarseDescriptor> QueryVariants(const Signature& sig, int steps, double step_um) {
  std::vector<CoarseDescriptor> out;
  for (int iy = -steps; iy <= steps; ++iy) {
    for (int ix = -steps; ix <= steps; ++ix) {
      DescriptorConfig c = BfConfig();
      c.centre_offset_x_um = ix * step_um;
      c.centre_offset_y_um = iy * step_um;
      out.push_back(ComputeDescriptor(sig, c).value());
    }
  }
  return out;
}

constexpr std::int64_t kSyntheticBase = 1'000'000;  // ids of synthetic signatures start here
constexpr int kShotsPerGun = 10;

struct Args {
  std::string mode;
  std::int64_t synthetic = 100000;
  int distinct = 20000;
  int rerank_k = 0;
  double synth_pixel_um = 25.0;
  std::uint64_t seed = 7;
  std::string queries = "fadul";
  std::vector<std::int64_t> sizes = {10000, 100000, 1000000};
  int threads = 2;
  bool cmc = true;
  bool scramble = true;  // scale, kernel: replicas are Scrambled (distinct non-mates)
  double hold_pixel_um = -1;  // compact: -1 = RerankPixelUm of the BF correlation config
  std::string database_url;   // compact: also the rerank with every candidate read from PostgreSQL
  int runs = 5;               // compact: searches per rerank mode
  bool screened = true;       // recall: also run the engine's search (screen + rerank) per query
  bool pairs = true;          // compact: compare all Fadul pairs (0: only the rerank timing)
  std::string pair_query, pair_mate;  // centre: the real scans of one mate pair (file stems)
};

Args Parse(int argc, char** argv) {
  Args a;
  if (argc < 2) {
    std::fprintf(stderr, "usage: index_bench recall|haystack|scale [options] (see the file header)\n");
    std::exit(2);
  }
  a.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--synthetic") a.synthetic = std::stoll(v);
    else if (k == "--distinct") a.distinct = std::stoi(v);
    else if (k == "--rerank-k") a.rerank_k = std::stoi(v);
    else if (k == "--synth-pixel") a.synth_pixel_um = std::stod(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--queries") a.queries = v;
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--cmc") a.cmc = v != "0";
    else if (k == "--screened") a.screened = v != "0";
    else if (k == "--scramble") a.scramble = v != "0";
    else if (k == "--hold-pixel") a.hold_pixel_um = std::stod(v);
    else if (k == "--database-url") a.database_url = v;
    else if (k == "--runs") a.runs = std::stoi(v);
    else if (k == "--pairs") a.pairs = v != "0";
    else if (k == "--query") a.pair_query = v;
    else if (k == "--mate") a.pair_mate = v;
    else if (k == "--sizes") {
      a.sizes.clear();
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) a.sizes.push_back(std::stoll(item));
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

// ---- real scans ----

struct RealScan {
  std::string name;
  std::string group;  // same group = same firearm (mates)
  bool fadul = false;
  Scan scan;
  Signature bf;
  CoarseDescriptor descriptor;
};

std::vector<RealScan> LoadRealScans() {
  std::vector<RealScan> out;
  const fs::path data = testing::SharedDataDir();
  std::ifstream gt(data / "fadul" / "ground_truth.csv");
  std::string line;
  std::getline(gt, line);
  std::vector<std::pair<std::string, std::string>> files;
  while (std::getline(gt, line)) {
    std::stringstream ss(line);
    std::string scan, slide;
    std::getline(ss, scan, ',');
    std::getline(ss, slide, ',');
    files.emplace_back((data / "fadul" / (scan + ".x3p")).string(), "fadul-slide-" + slide);
  }
  std::vector<fs::path> dfsc;
  for (const auto& e : fs::directory_iterator(data / "dfsc")) {
    if (e.path().extension() == ".x3p") dfsc.push_back(e.path());
  }
  std::sort(dfsc.begin(), dfsc.end());
  // DFSC names are K<firearm number><...>: the K number is the firearm.
  for (const auto& p : dfsc) files.emplace_back(p.string(), "dfsc-" + p.stem().string().substr(0, 4));
  for (const auto& [path, group] : files) {
    RealScan r;
    r.name = fs::path(path).stem().string();
    r.group = group;
    r.fadul = group.rfind("fadul", 0) == 0;
    auto scan = ReadScanFile(path);
    if (!scan.ok()) {
      std::fprintf(stderr, "skip %s: %s\n", r.name.c_str(), scan.status().ToString().c_str());
      continue;
    }
    auto n = Normalize(*scan);
    if (!n.ok()) {
      std::fprintf(stderr, "skip %s: %s\n", r.name.c_str(), n.status().ToString().c_str());
      continue;
    }
    auto d = ComputeDescriptor(n->breech_face, BfConfig());
    if (!d.ok()) {
      std::fprintf(stderr, "skip %s: %s\n", r.name.c_str(), d.status().ToString().c_str());
      continue;
    }
    r.scan = std::move(scan).value();
    r.bf = std::move(n->breech_face);
    r.descriptor = std::move(d).value();
    out.push_back(std::move(r));
  }
  return out;
}

// ---- synthetic haystack ----

synth::ShotOptions SynthOptions(double pixel_um) {
  synth::ShotOptions o;
  o.pixel_um = pixel_um;
  return o;
}

std::uint64_t GunSeed(int distinct_index) { return 5'000'000 + distinct_index / kShotsPerGun; }
std::uint64_t ShotSeed(int distinct_index) { return 9'000'000 + distinct_index; }

// BENCH_SYNTH_CACHE=DIR keeps the synthetic descriptors of a (count, pixel,
// descriptor config) setting in DIR between runs of a parameter study that
// changes only the query side.
std::string CachePath(int distinct, double pixel_um) {
  const char* dir = std::getenv("BENCH_SYNTH_CACHE");
  if (dir == nullptr) return "";
  // Keyed by every descriptor setting (not "default"): a cache made before a
  // default changed is then not read back. A change of the descriptor code
  // itself still needs a fresh directory.
  const DescriptorConfig c = BfConfig();
  char d[256];
  std::snprintf(d, sizeof(d), "%g,%g,%g,%d,%d,%d,%g,%d,%g", c.coarse_pixel_um, c.lowpass_um, c.ring_step_um, c.rings,
                c.frequencies, c.angular_samples, c.ring_min_um, c.fit_rim_centre ? 1 : 0, c.edge_taper_um);
  std::string key = std::to_string(distinct) + "_" + std::to_string(pixel_um) + "_" + d;
  for (char& c : key) {
    if (c == ',' || c == '.') c = '_';
  }
  return std::string(dir) + "/synth_" + key + ".bin";
}

std::vector<CoarseDescriptor> SyntheticDescriptorsUncached(int distinct, double pixel_um, int threads);

// Descriptors of `distinct` synthetic shots, on `threads` threads.
std::vector<CoarseDescriptor> SyntheticDescriptors(int distinct, double pixel_um, int threads) {
  const std::string path = CachePath(distinct, pixel_um);
  if (!path.empty()) {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::vector<CoarseDescriptor> out(distinct);
      for (CoarseDescriptor& d : out) {
        std::int32_t head[3];
        in.read(reinterpret_cast<char*>(head), sizeof(head));
        in.read(reinterpret_cast<char*>(&d.scale), sizeof(d.scale));
        d.rings = head[0];
        d.frequencies = head[1];
        d.valid_rings = head[2];
        d.coeffs.resize(static_cast<std::size_t>(d.rings) * d.frequencies * 2);
        in.read(reinterpret_cast<char*>(d.coeffs.data()), static_cast<std::streamsize>(d.coeffs.size()));
      }
      if (in) {
        std::fprintf(stderr, "synthetic descriptors from %s\n", path.c_str());
        return out;
      }
    }
  }
  std::vector<CoarseDescriptor> out = SyntheticDescriptorsUncached(distinct, pixel_um, threads);
  if (!path.empty()) {
    std::ofstream o(path, std::ios::binary);
    for (const CoarseDescriptor& d : out) {
      const std::int32_t head[3] = {d.rings, d.frequencies, d.valid_rings};
      o.write(reinterpret_cast<const char*>(head), sizeof(head));
      o.write(reinterpret_cast<const char*>(&d.scale), sizeof(d.scale));
      o.write(reinterpret_cast<const char*>(d.coeffs.data()), static_cast<std::streamsize>(d.coeffs.size()));
    }
  }
  return out;
}

std::vector<CoarseDescriptor> SyntheticDescriptorsUncached(int distinct, double pixel_um, int threads) {
  std::vector<CoarseDescriptor> out(distinct);
  std::atomic<int> next_gun{0};
  const int guns = (distinct + kShotsPerGun - 1) / kShotsPerGun;
  auto work = [&] {
    for (int g = next_gun.fetch_add(1); g < guns; g = next_gun.fetch_add(1)) {
      auto surface = synth::RenderFirearm(synth::MakeFirearm(GunSeed(g * kShotsPerGun)), pixel_um).value();
      for (int s = 0; s < kShotsPerGun && g * kShotsPerGun + s < distinct; ++s) {
        const int i = g * kShotsPerGun + s;
        auto sig = synth::MakeShotSignature(surface, ShotSeed(i), SynthOptions(pixel_um)).value();
        out[i] = ComputeDescriptor(sig, BfConfig()).value();
      }
      if (g % 200 == 0) std::fprintf(stderr, "\rsynthetic descriptors: %d / %d", g * kShotsPerGun, distinct);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  std::fprintf(stderr, "\rsynthetic descriptors: %d / %d\n", distinct, distinct);
  return out;
}

// Real signatures held in memory; synthetic ones regenerated from their seeds
// at 6.25 µm (a small cache of rendered firearms).
class BenchSource : public SignatureSource {
 public:
  BenchSource(std::map<std::int64_t, Signature> real, int distinct) : real_(std::move(real)), distinct_(distinct) {}
  StatusOr<Signature> Load(std::int64_t id) const override {
    if (auto it = real_.find(id); it != real_.end()) return it->second;
    if (id < kSyntheticBase) return NotFound("no signature " + std::to_string(id));
    const int i = static_cast<int>((id - kSyntheticBase) % distinct_);
    std::shared_ptr<const synth::FirearmSurface> gun = Gun(GunSeed(i));
    return synth::MakeShotSignature(*gun, ShotSeed(i), SynthOptions(6.25));
  }

 private:
  std::shared_ptr<const synth::FirearmSurface> Gun(std::uint64_t seed) const {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = guns_.find(seed); it != guns_.end()) return it->second;
    }
    auto g = std::make_shared<const synth::FirearmSurface>(
        synth::RenderFirearm(synth::MakeFirearm(seed), 6.25).value());
    std::lock_guard<std::mutex> lock(mu_);
    if (guns_.size() > 256) guns_.clear();
    guns_[seed] = g;
    return g;
  }
  std::map<std::int64_t, Signature> real_;
  int distinct_;
  mutable std::mutex mu_;
  mutable std::map<std::uint64_t, std::shared_ptr<const synth::FirearmSurface>> guns_;
};

SignatureRecord RecordFor(std::int64_t id, int shard) {
  static const char* kCalibres[] = {"9mm Luger", ".40 S&W", ".45 ACP", ".380 ACP"};
  SignatureRecord r;
  r.signature_id = id;
  r.casing_id = id;
  r.shard = shard;
  r.calibre = kCalibres[id % 4];
  r.agency = "agency-" + std::to_string(id % 50);
  r.source = static_cast<CasingSource>(id % 4);
  r.captured_at_unix = 1'500'000'000 + (id % 100000) * 3600;
  return r;
}

// A replica made a distinct casing: every ring of the descriptor turned by
// its own random angle (the ring's spectrum kept, the coherence across rings,
// which is what makes two casings match, destroyed). Exact duplicates would
// make the timing of the scan unrealistically good: with D distinct
// descriptors and N / D copies of each, the k-th best score is the
// best non-mate's, and the sum |X_k| bound prunes almost every inverse DFT.
CoarseDescriptor Scrambled(const CoarseDescriptor& d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  CoarseDescriptor out = d;
  double energy = 0;
  for (int r = 0; r < d.rings; ++r) {
    const double theta = std::uniform_real_distribution<double>(0, 2 * M_PI)(rng);
    const double c1 = std::cos(theta), s1 = std::sin(theta);
    double c = 1, s = 0;  // cos, sin of k * theta by the angle-addition recurrence
    for (int k = 1; k <= d.frequencies; ++k) {
      const std::size_t o = (static_cast<std::size_t>(r) * d.frequencies + (k - 1)) * 2;
      const double cn = c * c1 - s * s1;
      s = s * c1 + c * s1;
      c = cn;
      const double re = d.coeffs[o] * c + d.coeffs[o + 1] * s, im = d.coeffs[o + 1] * c - d.coeffs[o] * s;
      out.coeffs[o] = static_cast<std::int8_t>(std::clamp(std::lround(re), -127L, 127L));
      out.coeffs[o + 1] = static_cast<std::int8_t>(std::clamp(std::lround(im), -127L, 127L));
      energy += double(out.coeffs[o]) * out.coeffs[o] + double(out.coeffs[o + 1]) * out.coeffs[o + 1];
    }
  }
  out.scale = static_cast<float>(1.0 / std::sqrt(energy));
  return out;
}

// Entries from..to-1: entry n holds descriptor n % D; with `scramble`, the
// copies beyond the first D are Scrambled (distinct non-mates).
void FillSynthetic(SignatureIndex& index, const std::vector<CoarseDescriptor>& ds, std::int64_t from,
                   std::int64_t to, bool scramble = false) {
  for (std::int64_t n = from; n < to; ++n) {
    const std::int64_t id = kSyntheticBase + n;
    const CoarseDescriptor& d = ds[n % ds.size()];
    const bool copy = scramble && n >= static_cast<std::int64_t>(ds.size());
    Status s = index.Add(RecordFor(id, static_cast<int>(id % store::kSignatureShards)), copy ? Scrambled(d, id) : d);
    if (!s.ok()) {
      std::fprintf(stderr, "add: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  }
}

// Real scans: ids 1..R (signature id = casing id), their turned copies as queries.
struct RealSetup {
  std::vector<RealScan> real;
  std::vector<Signature> turned;          // per real scan: the scan turned, normalized
  std::vector<double> turn_deg;
};

RealSetup LoadAndTurn(std::uint64_t seed) {
  RealSetup s;
  const auto t0 = Clock::now();
  s.real = LoadRealScans();
  std::mt19937_64 rng(seed);
  for (const RealScan& r : s.real) {
    const double theta = std::uniform_real_distribution<double>(-180, 180)(rng);
    Scan t = TurnScan(r.scan, theta, 0, 0).value();
    auto n = Normalize(t).value();
    s.turned.push_back(std::move(n.breech_face));
    s.turn_deg.push_back(theta);
  }
  std::printf("real scans: %zu (read, normalized, turned: %.1f s)\n", s.real.size(), Since(t0));
  return s;
}

std::unique_ptr<SignatureIndex> BuildHaystack(const RealSetup& rs, const Args& a) {
  auto index = MakeShardedIndex(store::kSignatureShards, a.threads);
  for (std::size_t i = 0; i < rs.real.size(); ++i) {
    const std::int64_t id = static_cast<std::int64_t>(i) + 1;
    SignatureRecord r = RecordFor(id, static_cast<int>(id % store::kSignatureShards));
    if (!index->Add(r, rs.real[i].descriptor).ok()) std::exit(1);
  }
  const auto t0 = Clock::now();
  const int distinct = static_cast<int>(std::min<std::int64_t>(a.distinct, a.synthetic));
  const auto ds = SyntheticDescriptors(distinct, a.synth_pixel_um, a.threads);
  const double gen_s = Since(t0);
  const auto t1 = Clock::now();
  FillSynthetic(*index, ds, 0, a.synthetic);
  std::printf("haystack: %lld synthetic (%d distinct, generated at %.2f µm in %.1f s = %.2f ms each on %d threads; "
              "index filled in %.1f s)\n",
              static_cast<long long>(a.synthetic), distinct, a.synth_pixel_um, gen_s, 1000 * gen_s / distinct,
              a.threads, Since(t1));
  return index;
}

int Recall(const Args& a) {
  const RealSetup rs = LoadAndTurn(a.seed);
  std::shared_ptr<SignatureIndex> index = BuildHaystack(rs, a);
  // The engine's coarse stage (translation search, outer ring); its source is
  // not used (no rerank here: the CMC of each mate pair is computed below).
  auto engine = SearchEngine::Create(index, std::make_shared<BenchSource>(std::map<std::int64_t, Signature>{}, 1),
                                     EngineConfig())
                    .value();
  auto bf = Correlator::Create().value();
  // The engine as a worker runs it (compact signatures held for the screen
  // and the rerank; synthetic ones generated on the first load).
  std::map<std::int64_t, Signature> real_sigs;
  for (std::size_t i = 0; i < rs.real.size(); ++i) real_sigs[static_cast<std::int64_t>(i) + 1] = rs.real[i].bf;
  auto generator = std::make_shared<BenchSource>(std::move(real_sigs),
                                                 static_cast<int>(std::min<std::int64_t>(a.distinct, a.synthetic)));
  auto held = std::make_shared<RerankCache>(RerankCacheConfigFor(EngineConfig()),
                                            [generator](std::int64_t id) { return generator->Load(id); });
  auto searcher = SearchEngine::Create(index, held, EngineConfig()).value();
  const int rerank_k = a.rerank_k > 0 ? a.rerank_k : searcher->config().default_rerank_k;
  int rerank_ident = 0, rerank_kept = 0, rerank_kept_by_screen = 0;
  double search_s = 0, screen_s = 0, rerank_s = 0;
  const std::vector<int> ks = {1, 5, 10, 20, 50, 100, 200, 500, 1000};
  const int kmax = ks.back();
  // BENCH_ZNORM=M (experiment): candidate-side score normalization (Z-norm):
  // each distinct indexed descriptor's mean and spread of scores against a
  // cohort of M synthetic shots from guns outside the haystack; a hit's score
  // becomes (s - mean) / spread before ranking.
  const int znorm = std::getenv("BENCH_ZNORM") ? std::atoi(std::getenv("BENCH_ZNORM")) : 0;
  const int distinct = static_cast<int>(std::min<std::int64_t>(a.distinct, a.synthetic));
  auto key_of = [&](std::int64_t id) { return id < kSyntheticBase ? id : kSyntheticBase + (id - kSyntheticBase) % distinct; };
  std::unordered_map<std::int64_t, std::pair<double, double>> zstat;
  if (znorm > 0) {
    auto all = MakeFlatIndex();
    auto add = [&](std::int64_t id) {
      SignatureRecord r = RecordFor(id, 0);
      if (auto d = index->FindDescriptor(id)) (void)all->Add(r, *d);
    };
    for (std::size_t i = 0; i < rs.real.size(); ++i) add(static_cast<std::int64_t>(i) + 1);
    for (int n = 0; n < distinct; ++n) add(kSyntheticBase + n);
    std::unordered_map<std::int64_t, std::pair<double, double>> sums;
    for (int i = 0; i < znorm; ++i) {
      auto gun = synth::RenderFirearm(synth::MakeFirearm(7'000'000 + i), a.synth_pixel_um).value();
      auto sig = synth::MakeShotSignature(gun, 8'000'000 + i, SynthOptions(a.synth_pixel_um)).value();
      const SearchEngineConfig ec = EngineConfig();
      auto hits = all->SearchCoarse(QueryVariants(sig, ec.translation_steps, ec.translation_search_um), {},
                                    static_cast<int>(all->Size()))
                      .value();
      for (const CoarseHit& h : hits.hits) {
        sums[h.signature_id].first += h.score;
        sums[h.signature_id].second += double(h.score) * h.score;
      }
    }
    for (const auto& [id, s] : sums) {
      const double mu = s.first / znorm, var = std::max(1e-12, s.second / znorm - mu * mu);
      zstat[id] = {mu, std::sqrt(var)};
    }
    std::printf("z-norm: cohort of %d synthetic shots, stats for %zu descriptors\n", znorm, zstat.size());
  }
  int mates = 0, cmc_mates = 0;
  std::vector<int> kept(ks.size(), 0), kept_cmc(ks.size(), 0);
  std::vector<int> all_ranks;
  double coarse_s = 0;
  for (std::size_t q = 0; q < rs.real.size(); ++q) {
    const std::string& group = rs.real[q].group;
    SearchFilter f;
    f.exclude_casing_ids = {static_cast<std::int64_t>(q) + 1};
    const auto t0 = Clock::now();
    auto r = engine->SearchCoarse(rs.turned[q], f, znorm > 0 ? static_cast<int>(index->Size()) : kmax).value();
    coarse_s += Since(t0);
    if (znorm > 0) {
      for (CoarseHit& h : r.hits) {
        const auto& st = zstat.at(key_of(h.signature_id));
        h.score = static_cast<float>((h.score - st.first) / st.second);
      }
      std::sort(r.hits.begin(), r.hits.end(), HitBefore);
      r.hits.resize(std::min<std::size_t>(r.hits.size(), kmax));
    }
    auto pq = bf.Prepare(rs.turned[q]).value();
    std::vector<Candidate> reranked;
    if (a.screened) {
      SearchRequest req;
      req.query.breech_face = rs.turned[q];
      req.filter = f;
      req.top_n = rerank_k;
      req.rerank_k = rerank_k;
      const auto ts = Clock::now();
      auto res = searcher->Search(req);
      if (!res.ok()) {
        std::fprintf(stderr, "search: %s\n", res.status().ToString().c_str());
        return 1;
      }
      search_s += Since(ts);
      screen_s += res->screen_seconds;
      rerank_s += res->rerank_seconds;
      reranked = std::move(res->breech_face);
    }
    for (std::size_t m = 0; m < rs.real.size(); ++m) {
      if (m == q || rs.real[m].group != group) continue;
      // The same physical casing scanned twice (DFSC raw and processed
      // files) counts as a mate too: it must be found.
      int rank = kmax + 1;
      for (std::size_t i = 0; i < r.hits.size(); ++i) {
        if (r.hits[i].signature_id == static_cast<std::int64_t>(m) + 1) rank = static_cast<int>(i) + 1;
      }
      auto pm = bf.Prepare(rs.real[m].bf);
      bool cmc_found = false;
      int cmc = -1;
      if (pm.ok() && a.cmc) {
        auto c = bf.Compare(*pq, **pm);
        if (c.ok()) {
          cmc = c->cmc;
          cmc_found = c->identification;
        }
      }
      ++mates;
      cmc_mates += cmc_found;
      all_ranks.push_back(rank);
      for (std::size_t i = 0; i < ks.size(); ++i) {
        kept[i] += rank <= ks[i];
        kept_cmc[i] += cmc_found && rank <= ks[i];
      }
      std::printf("  %-22s -> %-22s coarse rank %5s  CMC %2d%s", rs.real[q].name.c_str(), rs.real[m].name.c_str(),
                  rank > kmax ? ">1000" : std::to_string(rank).c_str(), cmc, cmc_found ? " (identified)" : "");
      if (a.screened) {
        auto it = std::find_if(reranked.begin(), reranked.end(), [&](const Candidate& c) {
          return c.signature_id == static_cast<std::int64_t>(m) + 1;
        });
        if (it == reranked.end()) {
          std::printf("  not reranked");
        } else {
          std::printf("  reranked (%s), final rank %d, CMC %d",
                      it->screen_rank > 0 ? ("screen rank " + std::to_string(it->screen_rank)).c_str() : "coarse-kept",
                      it->rank, it->comparison ? it->comparison->cmc : -1);
        }
        if (cmc_found) {
          ++rerank_ident;
          rerank_kept += it != reranked.end();
          rerank_kept_by_screen += it != reranked.end() && it->screen_rank > 0;
        }
      }
      std::printf("\n");
    }
    std::fflush(stdout);
  }
  std::printf("\nqueries: %zu real scans turned by random angles; index: %lld signatures; coarse %.3f s/query\n",
              rs.real.size(), static_cast<long long>(index->Size()), coarse_s / rs.real.size());
  if (a.screened) {
    std::printf("engine search (coarse top %d kept, screening of the coarse top %d fills the rest of K = %d): "
                "%d of %d identified mates reach the rerank (%.1f %%; %d of them by the screen); "
                "%.2f s/query (screen %.2f s, rerank %.2f s, first loads generate synthetic signatures)\n",
                CoarseKeptBeforeScreen(rerank_k, searcher->config().screen_coarse_share),
                searcher->config().breech_face_screen_k, rerank_k, rerank_kept, rerank_ident,
                rerank_ident ? 100.0 * rerank_kept / rerank_ident : 0.0, rerank_kept_by_screen,
                search_s / rs.real.size(), screen_s / rs.real.size(), rerank_s / rs.real.size());
  }
  std::printf("| K | mates kept (all %d) | mates kept (%d identified by full CMC) |\n|---|---|---|\n", mates,
              cmc_mates);
  for (std::size_t i = 0; i < ks.size(); ++i) {
    std::printf("| %d | %d (%.1f %%) | %d (%.1f %%) |\n", ks[i], kept[i], 100.0 * kept[i] / mates, kept_cmc[i],
                cmc_mates ? 100.0 * kept_cmc[i] / cmc_mates : 0.0);
  }
  return 0;
}

// Oracle check of the descriptor centre for one mate pair: where does the
// mate rank, which score would it need for the top 50, and what does the
// query descriptor score against it with its ring centre moved to where the
// CMC registration puts the mate's centre (and at the best offset of a dense
// grid)? If the oracle score clears the top-50 score, the centre is what
// loses the pair; if not, the content differs.
int Centre(const Args& a) {
  const RealSetup rs = LoadAndTurn(a.seed);
  std::shared_ptr<SignatureIndex> index = BuildHaystack(rs, a);
  auto find = [&](const std::string& name) {
    for (std::size_t i = 0; i < rs.real.size(); ++i) {
      if (rs.real[i].name == name) return static_cast<int>(i);
    }
    std::fprintf(stderr, "no real scan %s\n", name.c_str());
    std::exit(2);
  };
  const int q = find(a.pair_query), m = find(a.pair_mate);
  auto engine = SearchEngine::Create(index, std::make_shared<BenchSource>(std::map<std::int64_t, Signature>{}, 1),
                                     EngineConfig())
                    .value();
  SearchFilter f;
  f.exclude_casing_ids = {q + 1};
  auto r = engine->SearchCoarse(rs.turned[q], f, static_cast<int>(std::min<std::int64_t>(1000, index->Size() - 1))).value();
  int rank = 0;
  for (std::size_t i = 0; i < r.hits.size(); ++i) {
    if (r.hits[i].signature_id == m + 1) rank = static_cast<int>(i) + 1;
  }
  std::printf("%s (turned %.1f deg) -> %s: coarse rank %s of %lld; scores at rank", rs.real[q].name.c_str(),
              rs.turn_deg[q], rs.real[m].name.c_str(), rank ? std::to_string(rank).c_str() : ">1000",
              static_cast<long long>(index->Size()));
  for (std::size_t i : {1, 2, 3, 5, 10, 50, 1000}) {
    if (i <= r.hits.size()) std::printf(" %zu: %.3f", i, r.hits[i - 1].score);
  }
  std::printf("\n");
  for (std::size_t i = 0; i < std::min<std::size_t>(5, r.hits.size()); ++i) {
    const std::int64_t id = r.hits[i].signature_id;
    std::printf("  rank %zu: %s %.3f\n", i + 1,
                id <= static_cast<std::int64_t>(rs.real.size()) ? rs.real[id - 1].name.c_str() : "synthetic",
                r.hits[i].score);
  }
  auto bf = Correlator::Create().value();
  auto c = bf.Compare(rs.turned[q], rs.real[m].bf).value();
  const cv::Point2d cq = DescriptorCentreUm(rs.turned[q]).value(), cm = DescriptorCentreUm(rs.real[m].bf).value();
  // correlate.h: mate = Rot(theta) query + d, Rot = [[c, s], [-s, c]]; the
  // query point that lands on the mate's centre is Rot^T (cm - d).
  const double t = c.theta_deg * M_PI / 180.0, ct = std::cos(t), st = std::sin(t);
  const double ex = cm.x - c.dx_um, ey = cm.y - c.dy_um;
  const cv::Point2d want(ct * ex - st * ey, st * ex + ct * ey);
  const cv::Point2d off = want - cq;
  std::printf("CMC %d (theta %.1f deg, d = (%.0f, %.0f) um); query centre (%.0f, %.0f), mate centre (%.0f, %.0f); "
              "oracle offset (%.0f, %.0f) um = %.0f um\n",
              c.cmc, c.theta_deg, c.dx_um, c.dy_um, cq.x, cq.y, cm.x, cm.y, off.x, off.y, std::hypot(off.x, off.y));
  auto score_at = [&](double ox, double oy) {
    DescriptorConfig dc = BfConfig();
    dc.centre_offset_x_um = ox;
    dc.centre_offset_y_um = oy;
    auto d = ComputeDescriptor(rs.turned[q], dc);
    return d.ok() ? DescriptorSimilarity(*d, rs.real[m].descriptor) : -2.0f;
  };
  std::printf("descriptor score vs mate: at the query's own centre %.3f, at the oracle offset %.3f\n",
              score_at(0, 0), score_at(off.x, off.y));
  float best = -2;
  double bx = 0, by = 0;
  for (double oy = -160; oy <= 160; oy += 20) {
    for (double ox = -160; ox <= 160; ox += 20) {
      const float s = score_at(ox, oy);
      if (s > best) best = s, bx = ox, by = oy;
    }
  }
  std::printf("best on a +-160 um grid (20 um steps): %.3f at (%.0f, %.0f) um\n", best, bx, by);
  return 0;
}

int Haystack(const Args& a) {
  const RealSetup rs = LoadAndTurn(a.seed);
  std::shared_ptr<SignatureIndex> index = BuildHaystack(rs, a);
  std::map<std::int64_t, Signature> real;
  for (std::size_t i = 0; i < rs.real.size(); ++i) real[static_cast<std::int64_t>(i) + 1] = rs.real[i].bf;
  auto source = std::make_shared<BenchSource>(std::move(real), static_cast<int>(std::min<std::int64_t>(a.distinct, a.synthetic)));
  SearchEngineConfig cfg = EngineConfig();
  cfg.rerank_threads = a.threads;
  auto engine = SearchEngine::Create(index, source, cfg).value();
  int queries = 0, all_in_top10 = 0, mates_total = 0, mates_in_top10 = 0;
  double total_s = 0;
  for (std::size_t q = 0; q < rs.real.size(); ++q) {
    if (a.queries == "fadul" && !rs.real[q].fadul) continue;
    SearchRequest req;
    req.query.breech_face = rs.turned[q];
    req.query.casing_id = static_cast<std::int64_t>(q) + 1;  // excluded from its own results
    req.top_n = 10;
    req.rerank_k = a.rerank_k;
    const auto t0 = Clock::now();
    auto r = engine->Search(req);
    const double s = Since(t0);
    total_s += s;
    if (!r.ok()) {
      std::printf("%s: %s\n", rs.real[q].name.c_str(), r.status().ToString().c_str());
      continue;
    }
    ++queries;
    int mates = 0, found = 0;
    std::string missing;
    for (std::size_t m = 0; m < rs.real.size(); ++m) {
      if (m == q || rs.real[m].group != rs.real[q].group) continue;
      ++mates;
      const bool in = std::any_of(r->breech_face.begin(), r->breech_face.end(), [&](const Candidate& c) {
        return c.casing_id == static_cast<std::int64_t>(m) + 1;
      });
      found += in;
      if (!in) missing += " " + rs.real[m].name;
    }
    mates_total += mates;
    mates_in_top10 += found;
    all_in_top10 += found == mates;
    std::printf("  %-20s turned %7.1f deg: %d/%d mates in top 10 (coarse %.2f s, screen %d in %.1f s, rerank %d in "
                "%.1f s)%s%s\n",
                rs.real[q].name.c_str(), rs.turn_deg[q], found, mates, r->coarse_seconds, r->screened,
                r->screen_seconds, r->reranked, r->rerank_seconds, missing.empty() ? "" : " missing:", missing.c_str());
    std::fflush(stdout);
  }
  std::printf("\n%d of %d queries have all their mates in the top 10 (%d of %d mates); index %lld signatures, "
              "rerank K=%d, mean %.1f s/query\n",
              all_in_top10, queries, mates_in_top10, mates_total, static_cast<long long>(index->Size()),
              a.rerank_k ? a.rerank_k : cfg.default_rerank_k, total_s / std::max(queries, 1));
  return 0;
}

// A plain sweep of `bytes` bytes on `threads` threads (sum of 64-bit words).
double MemorySweepSeconds(const std::vector<std::uint64_t>& buf, int threads) {
  std::vector<std::uint64_t> sums(threads, 0);
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  const std::size_t n = buf.size();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::uint64_t s = 0;
      for (std::size_t i = n * t / threads; i < n * (t + 1) / threads; ++i) s += buf[i];
      sums[t] = s;
    });
  }
  for (auto& th : pool) th.join();
  const double secs = Since(t0);
  if (std::accumulate(sums.begin(), sums.end(), std::uint64_t{0}) == 42) std::printf(" ");
  return secs;
}

// CPU seconds of the whole process (all threads): on a shared machine the
// wall-clock time of a search includes waiting for other people's processes.
double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int Kernel(const Args& a) {
  const auto ds = SyntheticDescriptors(a.distinct, a.synth_pixel_um, a.threads);
  const std::int64_t size = a.sizes.empty() ? 200000 : a.sizes[0];
  auto index = MakeFlatIndex();
  FillSynthetic(*index, ds, 0, size, a.scramble);
  auto gun = synth::RenderFirearm(synth::MakeFirearm(GunSeed(7)), 6.25).value();
  const Signature sig = synth::MakeShotSignature(gun, 77'000'000, SynthOptions(6.25)).value();
  const SearchEngineConfig engine;
  const double td = ThreadCpuSeconds();
  const std::vector<CoarseDescriptor> variants =
      QueryVariants(sig, engine.translation_steps, engine.translation_search_um);
  std::printf("query descriptors (%zu variants, %d x %d px at %.2f um): %.3f s CPU\n", variants.size(),
              sig.values.cols, sig.values.rows, sig.pixel_um, ThreadCpuSeconds() - td);
  {
    // The rerank's unit of work: Prepare of a candidate + Compare (any orientation).
    auto bf = Correlator::Create().value();
    const Signature other = synth::MakeShotSignature(gun, 77'000'001, SynthOptions(6.25)).value();
    auto pq = bf.Prepare(sig).value();
    (void)bf.Compare(*pq, *bf.Prepare(other).value());  // first call: FFTW plans (FFTW_MEASURE)
    double t0 = ThreadCpuSeconds();
    auto pc = bf.Prepare(other).value();
    const double prep = ThreadCpuSeconds() - t0;
    t0 = ThreadCpuSeconds();
    auto c = bf.Compare(*pq, *pc);
    const double cmp = ThreadCpuSeconds() - t0;
    std::printf("rerank unit (one thread, CPU): Prepare %.3f s + Compare %.3f s (CMC %d)\n", prep, cmp,
                c.ok() ? c->cmc : -1);
  }
  const std::size_t bytes = static_cast<std::size_t>(size) * ds[0].coeffs.size();
  std::vector<std::uint64_t> buf(bytes / 8, 1);
  double sweep = 1e9;
  std::uint64_t sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = ThreadCpuSeconds();
    std::uint64_t sum = 0;
    for (std::uint64_t x : buf) sum += x;
    sink += sum;
    sweep = std::min(sweep, ThreadCpuSeconds() - t0);
  }
  auto scan = [&](std::span<const CoarseDescriptor> q) {
    double best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
      const double t0 = ThreadCpuSeconds();
      auto r = index->SearchCoarse(q, {}, 50);
      if (!r.ok()) std::exit(1);
      best = std::min(best, ThreadCpuSeconds() - t0);
    }
    return best;
  };
  const double one = scan(std::span<const CoarseDescriptor>(variants.data() + variants.size() / 2, 1));
  const double nine = scan(variants);
  {
    // The engine's coarse stage (descriptors of all offsets, inner scan, outer
    // ring on the inner top outer_rescore_k) on this one-thread flat index.
    std::shared_ptr<SignatureIndex> shared(std::move(index));
    for (int outer : {0, 2}) {
      SearchEngineConfig cfg;
      cfg.outer_translation_steps = outer;
      auto engine = SearchEngine::Create(shared, std::make_shared<BenchSource>(std::map<std::int64_t, Signature>{}, 1),
                                         cfg)
                        .value();
      double best = 1e9;
      for (int rep = 0; rep < 3; ++rep) {
        const double t0 = ThreadCpuSeconds();
        if (!engine->SearchCoarse(sig, {}, 50).ok()) std::exit(1);
        best = std::min(best, ThreadCpuSeconds() - t0);
      }
      std::printf("engine coarse stage, outer ring %s: %.3f s CPU (best of 3)\n", outer ? "on" : "off", best);
    }
    index = nullptr;
  }
  std::printf("%lld signatures, %zu descriptor bytes, one thread, CPU time (best of 3)%s\n",
              static_cast<long long>(size), bytes, sink == 42 ? " " : "");
  std::printf("| sweep s | scan s, 1 variant | sweep/scan | scan s, %zu variants | ns per candidate-variant |\n"
              "|---|---|---|---|---|\n| %.3f | %.3f | %.2f | %.3f | %.1f |\n",
              variants.size(), sweep, one, sweep / one, nine, 1e9 * nine / size / variants.size());
  return 0;
}

int Scale(const Args& a) {
  const int distinct = a.distinct;
  const auto t0 = Clock::now();
  const auto ds = SyntheticDescriptors(distinct, a.synth_pixel_um, a.threads);
  const double gen_s = Since(t0);
  std::printf("synthetic: %d distinct BF descriptors generated at %.2f µm in %.1f s (%.2f ms each, %d threads)\n",
              distinct, a.synth_pixel_um, gen_s, 1000 * gen_s / distinct, a.threads);
  // Queries: shots of firearms in the haystack (their mates are there), turned by the generator.
  std::shared_ptr<SignatureIndex> index = MakeShardedIndex(store::kSignatureShards, a.threads);
  // The screen's and the rerank's signatures are held compact, as a shard
  // worker holds them (RerankCache); the first (cold) search generates them.
  auto generator = std::make_shared<BenchSource>(std::map<std::int64_t, Signature>{}, distinct);
  SearchEngineConfig cfg = EngineConfig();
  cfg.rerank_threads = a.threads;
  auto source = std::make_shared<RerankCache>(RerankCacheConfigFor(cfg),
                                              [generator](std::int64_t id) { return generator->Load(id); });
  auto engine = SearchEngine::Create(index, source, cfg).value();
  const int k = a.rerank_k ? a.rerank_k : cfg.default_rerank_k;
  std::printf("| signatures | RAM bytes/signature | fill s | coarse scan s, 1 descriptor (median of 3) | sweep s | "
              "scan/sweep throughput | engine coarse s | screen K | screen s | rerank K | rerank s | end to end s | "
              "end to end CPU s (all threads) | end to end s, cold source | end to end s without screening |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::int64_t filled = 0;
  for (std::int64_t size : a.sizes) {
    const auto tf = Clock::now();
    FillSynthetic(*index, ds, filled, size, a.scramble);
    const double fill_s = Since(tf);
    filled = size;
    const std::size_t bytes = index->MemoryBytes();
    // Coarse-only latency over 5 queries (new shots of firearms in the haystack).
    std::vector<double> coarse;
    for (int q = 0; q < 3; ++q) {
      const int i = (q * 7919) % distinct;
      auto gun = synth::RenderFirearm(synth::MakeFirearm(GunSeed(i)), 6.25).value();
      auto sig = synth::MakeShotSignature(gun, 77'000'000 + q, SynthOptions(6.25)).value();
      auto d = ComputeDescriptor(sig).value();
      const auto tc = Clock::now();
      auto r = index->SearchCoarse(d, {}, k);
      coarse.push_back(Since(tc));
      if (!r.ok()) return 1;
    }
    std::sort(coarse.begin(), coarse.end());
    const double coarse_s = coarse[coarse.size() / 2];
    // The same number of descriptor bytes, swept plainly.
    const std::size_t desc_bytes = static_cast<std::size_t>(size) * ds[0].coeffs.size();
    std::vector<std::uint64_t> buf(desc_bytes / 8, 1);
    double sweep = 1e9;
    for (int rep = 0; rep < 3; ++rep) sweep = std::min(sweep, MemorySweepSeconds(buf, a.threads));
    buf.clear();
    buf.shrink_to_fit();
    // End to end: one full search with rerank of K.
    auto gun = synth::RenderFirearm(synth::MakeFirearm(GunSeed(123)), 6.25).value();
    SearchRequest req;
    req.query.breech_face = synth::MakeShotSignature(gun, 88'000'000, SynthOptions(6.25)).value();
    req.rerank_k = k;
    // Cold: the rerank's signatures are generated on the fly (synthetic
    // generator); then the same search with them in memory (a shard worker).
    const auto tc = Clock::now();
    auto cold = engine->Search(req);
    const double cold_s = Since(tc);
    if (!cold.ok()) {
      std::printf("search: %s\n", cold.status().ToString().c_str());
      return 1;
    }
    const double cpu0 = ProcessCpuSeconds();
    const auto te = Clock::now();
    auto r = engine->Search(req);
    const double e2e = Since(te);
    const double e2e_cpu = ProcessCpuSeconds() - cpu0;
    if (!r.ok()) {
      std::printf("search: %s\n", r.status().ToString().c_str());
      return 1;
    }
    // The same search without the screening stage (the coarse top K reranked), side by side.
    SearchRequest plain = req;
    plain.screen_k = -1;
    const auto tp = Clock::now();
    auto p = engine->Search(plain);
    const double plain_s = Since(tp);
    if (!p.ok()) return 1;
    std::printf("| %lld | %.0f | %.1f | %.3f | %.3f | %.2f | %.2f | %d | %.2f | %d | %.2f | %.2f | %.1f | %.1f | %.2f |\n",
                static_cast<long long>(size), static_cast<double>(bytes) / size, fill_s, coarse_s, sweep,
                sweep / coarse_s, r->coarse_seconds, r->screened, r->screen_seconds, k, r->rerank_seconds, e2e, e2e_cpu,
                cold_s, plain_s);
    std::fflush(stdout);
  }
  return 0;
}


// ---- compact: rerank memory ----

class MapSource : public SignatureSource {
 public:
  StatusOr<Signature> Load(std::int64_t id) const override {
    auto it = sigs.find(id);
    if (it == sigs.end()) return NotFound("no signature " + std::to_string(id));
    return it->second;
  }
  std::map<std::int64_t, Signature> sigs;
};

int Compact(const Args& a) {
  const fs::path data = testing::SharedDataDir() / "fadul";
  std::ifstream gt(data / "ground_truth.csv");
  std::string line;
  std::getline(gt, line);
  std::vector<std::string> names, slides;
  while (std::getline(gt, line)) {
    std::stringstream ss(line);
    std::string scan, slide;
    std::getline(ss, scan, ',');
    std::getline(ss, slide, ',');
    names.push_back(scan);
    slides.push_back(slide);
  }
  const CorrelationConfig cc;
  const double hold = a.hold_pixel_um >= 0 ? a.hold_pixel_um : RerankPixelUm(cc);
  const Correlator correlator = Correlator::Create(cc).value();
  const int n = static_cast<int>(names.size());
  std::vector<Signature> full(n);
  std::vector<CompactSignature> compact(n);
  std::vector<std::shared_ptr<const PreparedSignature>> pf(n), pc(n);
  double float_bytes = 0, compact_bytes = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    full[i] = Normalize(ReadScanFile(data / (names[i] + ".x3p")).value()).value().breech_face;
    compact[i] = CompactSignatureOf(full[i], hold).value();
    float_bytes += full[i].values.total() * sizeof(float);
    compact_bytes += compact[i].bytes();
    pf[i] = correlator.Prepare(full[i]).value();
    pc[i] = correlator.Prepare(ExpandSignature(compact[i])).value();
  }
  std::printf("fadul scans: %d (read, normalized, compacted, prepared: %.1f s); hold pixel %.3f um\n", n, Since(t0),
              hold);
  std::printf("bytes per BF signature: float grid %.0f (%dx%d typical), compact %.0f (%.1fx smaller)\n",
              float_bytes / n, full[0].values.cols, full[0].values.rows, compact_bytes / n, float_bytes / compact_bytes);

  struct Pair {
    int i, j;
    bool km;
    int cmc_f = -1, cmc_c = -1;
    bool id_f = false, id_c = false;
    double theta_f = 0, theta_c = 0;
  };
  std::vector<Pair> pairs;
  for (int i = 0; i < n && a.pairs; ++i) {
    for (int j = i + 1; j < n; ++j) pairs.push_back({i, j, slides[i] == slides[j]});
  }
  std::atomic<std::size_t> next{0};
  const auto t1 = Clock::now();
  auto work = [&] {
    for (std::size_t p = next.fetch_add(1); p < pairs.size(); p = next.fetch_add(1)) {
      Pair& q = pairs[p];
      auto f = correlator.Compare(*pf[q.i], *pf[q.j]);
      auto c = correlator.Compare(*pc[q.i], *pc[q.j]);
      if (f.ok()) {
        q.cmc_f = f->cmc;
        q.id_f = f->identification;
        q.theta_f = f->theta_deg;
      }
      if (c.ok()) {
        q.cmc_c = c->cmc;
        q.id_c = c->identification;
        q.theta_c = c->theta_deg;
      }
      if (p % 50 == 0) std::fprintf(stderr, "\rpairs %zu / %zu", p, pairs.size());
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < a.threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  std::fprintf(stderr, "\n");
  std::printf("pairs compared twice: %zu in %.1f s\n", pairs.size(), Since(t1));
  for (int km = 1; km >= 0 && a.pairs; --km) {
    int count = 0, id_f = 0, id_c = 0, differ = 0, max_diff = 0, changed = 0, failed = 0;
    double sum_diff = 0, max_theta = 0;
    std::string worst;
    for (const Pair& q : pairs) {
      if (q.km != (km == 1)) continue;
      ++count;
      if (q.cmc_f < 0 || q.cmc_c < 0) {
        ++failed;
        continue;
      }
      id_f += q.id_f;
      id_c += q.id_c;
      differ += q.id_f != q.id_c;
      const int d = std::abs(q.cmc_f - q.cmc_c);
      changed += d != 0;
      sum_diff += d;
      if (d > max_diff) {
        max_diff = d;
        worst = names[q.i] + " vs " + names[q.j] + " (" + std::to_string(q.cmc_f) + " -> " +
                std::to_string(q.cmc_c) + ")";
      }
      if (q.id_f && q.id_c) {
        double dt = std::fmod(std::abs(q.theta_f - q.theta_c), 360.0);
        max_theta = std::max(max_theta, std::min(dt, 360.0 - dt));
      }
    }
    std::printf("%s: %d pairs, identified float %d, compact %d, decisions differing %d, CMC changed in %d, "
                "max |dCMC| %d%s%s, mean |dCMC| %.3f, max |dtheta| of pairs identified by both %.2f deg, "
                "comparison failed %d\n",
                km ? "KM" : "KNM", count, id_f, id_c, differ, changed, max_diff, worst.empty() ? "" : " at ",
                worst.c_str(), count - failed > 0 ? sum_diff / (count - failed) : 0.0, max_theta, failed);
  }

  // Rerank of K candidates through the engine: fadul-1-1 (turned by 117 deg)
  // against K entries cycling over the other 39 scans.
  const int k = a.rerank_k > 0 ? a.rerank_k : 50;
  auto index = std::shared_ptr<SignatureIndex>(MakeShardedIndex(4, a.threads));
  auto float_source = std::make_shared<MapSource>();
  RerankCacheConfig held_cfg;
  held_cfg.breech_face_pixel_um = hold;
  auto held = std::make_shared<RerankCache>(held_cfg);
  RerankCacheConfig none_cfg = held_cfg;
  none_cfg.budget_bytes = 0;
  auto fetched = std::make_shared<RerankCache>(none_cfg, [&](std::int64_t id) { return float_source->Load(id); });
  for (int e = 0; e < k; ++e) {
    const int s = 1 + e % (n - 1);  // skip scan 0 (the query)
    const std::int64_t id = e + 1;
    SignatureRecord r;
    r.signature_id = r.casing_id = id;
    r.shard = e % 4;
    if (!index->Add(r, ComputeDescriptor(full[s]).value()).ok()) return 1;
    float_source->sigs[id] = full[s];
    if (!held->Put(id, full[s]).ok()) return 1;
  }
  // PostgreSQL: the Fadul casings stored (once; a second run finds them by
  // their SHA-256), entry -> casing, fetched on a small pool of connections.
  std::vector<std::int64_t> casing_of_scan(n, 0);
  std::mutex db_mu;
  std::vector<std::unique_ptr<store::Store>> idle_db;
  std::shared_ptr<RerankCache> from_db;
  if (!a.database_url.empty()) {
    auto st = store::Store::Connect(a.database_url);
    if (!st.ok() || !(*st)->Migrate().ok()) {
      std::fprintf(stderr, "database %s: %s\n", a.database_url.c_str(), st.status().ToString().c_str());
      return 1;
    }
    const auto ts = Clock::now();
    for (int i = 0; i < n; ++i) {
      CasingMetadata m;
      m.agency = "Fadul study";
      m.case_number = "index_bench";
      m.exhibit_id = names[i];
      m.calibre = "9mm Luger";
      m.source = CasingSource::kTestFire;
      m.submitted_by = "index_bench";
      auto prepared = ingest::PrepareScanFile(data / (names[i] + ".x3p"));
      auto r = prepared.ok() ? ingest::StorePrepared(**st, m, *prepared) : prepared.status();
      if (!r.ok()) {
        std::fprintf(stderr, "store %s: %s\n", names[i].c_str(), r.status().ToString().c_str());
        return 1;
      }
      casing_of_scan[i] = r->casing_id;
    }
    std::printf("fadul casings in the database (%.1f s)\n", Since(ts));
    auto fetch = [&](std::int64_t id) -> StatusOr<Signature> {
      const int scan = 1 + static_cast<int>((id - 1) % (n - 1));
      std::unique_ptr<store::Store> db;
      {
        std::lock_guard<std::mutex> l(db_mu);
        if (!idle_db.empty()) {
          db = std::move(idle_db.back());
          idle_db.pop_back();
        }
      }
      if (!db) {
        BALLISTICS_ASSIGN_OR_RETURN(db, store::Store::Connect(a.database_url));
      }
      auto sigs = db->GetSignatures(casing_of_scan[scan]);
      {
        std::lock_guard<std::mutex> l(db_mu);
        idle_db.push_back(std::move(db));
      }
      if (!sigs.ok()) return sigs.status();
      for (auto& s : *sigs) {
        if (s.signature.kind == SignatureKind::kBreechFace) return std::move(s.signature);
      }
      return NotFound("no BF signature");
    };
    from_db = std::make_shared<RerankCache>(none_cfg, fetch);
  }
  SearchRequest req;
  req.query.breech_face = Normalize(TurnScan(ReadScanFile(data / (names[0] + ".x3p")).value(), 117, 0, 0).value())
                              .value()
                              .breech_face;
  req.top_n = 10;
  req.rerank_k = k;
  SearchEngineConfig ec;
  ec.rerank_threads = a.threads;
  // The modes take turns (run r of every mode, then run r + 1), so that a
  // change of the machine's load hits all of them alike; wall time of the
  // rerank stage and the process's CPU time (all threads; PostgreSQL's own
  // CPU is not in it) per search.
  std::vector<std::pair<const char*, std::shared_ptr<const SignatureSource>>> modes = {
      {"float held", float_source}, {"compact held", held}, {"compact, fetched every load", fetched}};
  if (from_db) modes.emplace_back("compact, read from PostgreSQL", from_db);
  std::vector<std::unique_ptr<SearchEngine>> engines;
  for (const auto& m : modes) engines.push_back(SearchEngine::Create(index, m.second, ec).value());
  std::vector<std::vector<double>> wall(modes.size()), cpu(modes.size());
  std::vector<int> top_cmc(modes.size(), 0);
  for (int run = 0; run < a.runs; ++run) {
    for (std::size_t m = 0; m < modes.size(); ++m) {
      const double c0 = ProcessCpuSeconds();
      auto r = engines[m]->Search(req);
      if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", modes[m].first, r.status().ToString().c_str());
        return 1;
      }
      cpu[m].push_back(ProcessCpuSeconds() - c0);
      wall[m].push_back(r->rerank_seconds);
      top_cmc[m] = r->breech_face.empty() || !r->breech_face[0].comparison ? -1 : r->breech_face[0].comparison->cmc;
    }
  }
  std::printf("rerank of K = %d on %d threads, %d runs per mode, median (min-max):\n", k, a.threads, a.runs);
  for (std::size_t m = 0; m < modes.size(); ++m) {
    std::sort(wall[m].begin(), wall[m].end());
    std::sort(cpu[m].begin(), cpu[m].end());
    const std::size_t mid = wall[m].size() / 2;
    std::printf("  %-30s wall %.2f s (%.2f-%.2f), CPU %.2f s (%.2f-%.2f); top CMC %d\n", modes[m].first,
                wall[m][mid], wall[m].front(), wall[m].back(), cpu[m][mid], cpu[m].front(), cpu[m].back(),
                top_cmc[m]);
  }
  std::printf("fetched-mode cache: %lld misses, %lld held\n", static_cast<long long>(fetched->misses()),
              static_cast<long long>(fetched->held()));
  return 0;
}
}  // namespace
}  // namespace ballistics

int main(int argc, char** argv) {
  const ballistics::Args a = ballistics::Parse(argc, argv);
  if (a.mode == "recall") return ballistics::Recall(a);
  if (a.mode == "haystack") return ballistics::Haystack(a);
  if (a.mode == "centre") return ballistics::Centre(a);
  if (a.mode == "scale") return ballistics::Scale(a);
  if (a.mode == "kernel") return ballistics::Kernel(a);
  if (a.mode == "compact") return ballistics::Compact(a);
  std::fprintf(stderr, "unknown mode %s\n", a.mode.c_str());
  return 2;
}
