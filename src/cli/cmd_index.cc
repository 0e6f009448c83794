// `ballisticsctl search-local FILE --scans DIR [--synthetic N] [--top N]`: an
// offline search (no server, no database) of one scan against the scans of a
// directory, optionally inside a haystack of synthetic casings: the same
// SearchEngine the server uses (coarse ring-spectrum scan, CMC rerank of K).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ballistics/index.h"
#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "ballistics/synth.h"
#include "commands.h"
#include "progress.h"

namespace ballistics::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kSyntheticBase = 1'000'000'000;  // ids of synthetic haystack signatures
constexpr int kShotsPerGun = 10;

[[noreturn]] void Fail(const Status& status, const std::string& context, int code = kExitInputError) {
  std::string m = status.ToString();
  std::replace(m.begin(), m.end(), '\n', ' ');
  std::cerr << "error: " << context << ": " << m << "\n";
  throw CLI::RuntimeError(status.code() == StatusCode::kInternal ? kExitInternal : code);
}

bool IsScanFile(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".x3p" || ext == ".png" || ext == ".tif" || ext == ".tiff";
}

// Scans of the directory (held in memory) and synthetic shots regenerated
// from their seeds when the rerank asks for them.
class LocalSource : public SignatureSource {
 public:
  StatusOr<Signature> Load(std::int64_t id) const override {
    if (auto it = signatures.find(id); it != signatures.end()) return it->second;
    if (id < kSyntheticBase) return NotFound("search-local: no signature " + std::to_string(id));
    const std::int64_t i = id - kSyntheticBase;
    auto gun = synth::RenderFirearm(synth::MakeFirearm(GunSeed(i)), 6.25);
    if (!gun.ok()) return gun.status();
    synth::ShotOptions o;
    o.kind = i % 2 == 0 ? SignatureKind::kBreechFace : SignatureKind::kFiringPin;
    return synth::MakeShotSignature(*gun, ShotSeed(i), o);
  }
  static std::uint64_t GunSeed(std::int64_t i) { return 7'000'000 + static_cast<std::uint64_t>(i / 2 / kShotsPerGun); }
  static std::uint64_t ShotSeed(std::int64_t i) { return 8'000'000 + static_cast<std::uint64_t>(i / 2); }

  std::map<std::int64_t, Signature> signatures;
};

struct Args {
  std::string file;
  std::string scans;
  int top = 10;
  int synthetic = 0;
  int rerank_k = 0;
  int screen_k = 0;
  std::optional<double> max_rotation_deg;
  std::optional<double> pixel_um;
  int threads = 0;
};

void Run(const Args& a) {
  auto source = std::make_shared<LocalSource>();
  std::shared_ptr<SignatureIndex> index = MakeShardedIndex(store::kSignatureShards, 2);
  std::map<std::int64_t, std::string> names;  // casing id -> file name
  ReadOptions ro;
  ro.pixel_um = a.pixel_um;

  // The directory's scans: one casing each, BF and FP signatures.
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(a.scans, ec)) {
    if (e.is_regular_file() && IsScanFile(e.path())) files.push_back(e.path());
  }
  if (ec) Fail(InvalidArgument("cannot list directory " + a.scans + ": " + ec.message()), "--scans");
  std::sort(files.begin(), files.end());
  const fs::path query_path = fs::weakly_canonical(a.file);
  std::int64_t next_id = 1;
  int skipped = 0;
  {
    ProgressBar bar("indexing scans", files.size());
    for (const fs::path& p : files) {
      bar.Advance();
      if (fs::weakly_canonical(p) == query_path) continue;  // the query is not its own candidate
      auto scan = ReadScanFile(p, ro);
      auto casing = scan.ok() ? Normalize(*scan) : StatusOr<NormalizedCasing>(scan.status());
      if (!casing.ok()) {
        std::cerr << "warning: skipped " << p.filename().string() << ": " << casing.status().ToString() << "\n";
        ++skipped;
        continue;
      }
      const std::int64_t casing_id = next_id;
      names[casing_id] = p.filename().string();
      std::vector<const Signature*> sigs = {&casing->breech_face};
      if (casing->firing_pin) sigs.push_back(&*casing->firing_pin);
      for (const Signature* s : sigs) {
        auto d = ComputeDescriptor(*s);
        if (!d.ok()) continue;  // too little data on the rings: not searchable, not an error
        SignatureRecord r;
        r.signature_id = next_id++;
        r.casing_id = casing_id;
        r.kind = s->kind;
        r.modality = s->modality;
        r.shard = static_cast<int>(r.signature_id % store::kSignatureShards);
        Status st = index->Add(r, *d);
        if (!st.ok()) Fail(st, p.string(), kExitInternal);
        source->signatures[r.signature_id] = *s;
      }
      if (next_id == casing_id) next_id = casing_id + 1;
    }
  }

  // Synthetic haystack: descriptors at the descriptor's own 25 µm grid (fast),
  // signatures regenerated at 6.25 µm for the rerank.
  if (a.synthetic > 0) {
    ProgressBar bar("synthetic haystack", a.synthetic);
    std::atomic<int> next{0};
    std::mutex mu;
    Status failure;
    auto work = [&] {
      std::uint64_t gun_seed = 0;
      std::optional<synth::FirearmSurface> gun;
      for (int i = next.fetch_add(1); i < a.synthetic; i = next.fetch_add(1)) {
        if (!gun || gun_seed != LocalSource::GunSeed(i)) {
          gun_seed = LocalSource::GunSeed(i);
          gun = synth::RenderFirearm(synth::MakeFirearm(gun_seed), 25.0).value();
        }
        synth::ShotOptions o;
        o.pixel_um = 25.0;
        o.kind = i % 2 == 0 ? SignatureKind::kBreechFace : SignatureKind::kFiringPin;
        auto sig = synth::MakeShotSignature(*gun, LocalSource::ShotSeed(i), o);
        auto d = sig.ok() ? ComputeDescriptor(*sig) : StatusOr<CoarseDescriptor>(sig.status());
        bar.Advance();
        if (!d.ok()) continue;
        SignatureRecord r;
        r.signature_id = kSyntheticBase + i;
        r.casing_id = kSyntheticBase + i / 2;
        r.kind = o.kind;
        r.shard = i % store::kSignatureShards;
        std::lock_guard<std::mutex> lock(mu);
        Status st = index->Add(r, *d);
        if (!st.ok()) failure = st;
      }
    };
    std::vector<std::thread> pool;
    pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (!failure.ok()) Fail(failure, "synthetic haystack", kExitInternal);
  }

  // The query.
  auto scan = ReadScanFile(a.file, ro);
  if (!scan.ok()) Fail(scan.status(), a.file);
  auto casing = Normalize(*scan);
  if (!casing.ok()) Fail(casing.status(), a.file);
  SearchRequest req;
  req.query.breech_face = casing->breech_face;
  req.query.firing_pin = casing->firing_pin;
  req.top_n = a.top;
  req.rerank_k = a.rerank_k;
  req.screen_k = a.screen_k;
  req.max_rotation_deg = a.max_rotation_deg;
  SearchEngineConfig cfg;
  cfg.rerank_threads = a.threads > 0 ? a.threads : std::max(1u, std::thread::hardware_concurrency());
  // As a server worker holds them: compact forms for the rerank, screen forms
  // for the screen, each signature read (or generated) once.
  auto held = std::make_shared<RerankCache>(RerankCacheConfigFor(cfg),
                                            [source](std::int64_t id) { return source->Load(id); });
  auto engine = SearchEngine::Create(index, held, cfg);
  if (!engine.ok()) Fail(engine.status(), "search engine", kExitInternal);
  std::optional<ProgressBar> bar;
  std::mutex bar_mu;
  int last_pct = 0;
  auto results = (*engine)->Search(req, [&](SearchStage stage, double f) {
    if (stage != SearchStage::kRerank) return;
    std::lock_guard<std::mutex> lock(bar_mu);
    if (!bar) bar.emplace("rerank (CMC)", 100);
    const int pct = static_cast<int>(f * 100);
    if (pct > last_pct) {
      bar->Advance(pct - last_pct);
      last_pct = pct;
    }
  });
  bar.reset();
  if (!results.ok()) Fail(results.status(), "search");

  auto name = [&](std::int64_t casing_id) {
    if (auto it = names.find(casing_id); it != names.end()) return it->second;
    return "synthetic-" + std::to_string(casing_id - kSyntheticBase);
  };
  std::printf("query: %s\nindex: %lld signatures (%zu scans from %s%s, %d synthetic), %lld scanned; "
              "coarse %.2f s, screening of %d in %.1f s, CMC rerank of %d in %.1f s\n",
              a.file.c_str(), static_cast<long long>(index->Size()), names.size(), a.scans.c_str(),
              skipped ? (", " + std::to_string(skipped) + " skipped").c_str() : "", a.synthetic,
              static_cast<long long>(results->signatures_scanned), results->coarse_seconds, results->screened,
              results->screen_seconds, results->reranked, results->rerank_seconds);
  auto print_list = [&](const char* title, const std::vector<Candidate>& list) {
    if (list.empty()) return;
    std::printf("\n%s\n rank  casing                          CMC  cells  theta_deg  coarse(rank)\n", title);
    for (const Candidate& c : list) {
      if (c.comparison) {
        std::printf(" %4d  %-30s %4d  %5d  %9.1f  %.3f(%d)%s\n", c.rank, name(c.casing_id).c_str(), c.comparison->cmc,
                    c.comparison->cells, c.comparison->theta_deg, c.coarse_score, c.coarse_rank,
                    c.comparison->identification ? "  identification" : "");
      } else {
        std::printf(" %4d  %-30s    -      -          -  %.3f(%d)  (not comparable)\n", c.rank,
                    name(c.casing_id).c_str(), c.coarse_score, c.coarse_rank);
      }
    }
  };
  print_list("breech face", results->breech_face);
  print_list("firing pin", results->firing_pin);
  if (!results->combined.empty()) {
    std::printf("\ncombined (BF + FP CMC share)\n rank  casing                          score\n");
    for (const CombinedCandidate& c : results->combined) {
      std::printf(" %4d  %-30s %.3f\n", c.rank, name(c.casing_id).c_str(), c.combined_score);
    }
  }
}

}  // namespace

void RegisterIndexCommands(CLI::App& app) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "search-local",
      "Offline search of one scan against the scans of a directory (+ a synthetic haystack): coarse "
      "rotation-invariant scan, then CMC rerank of the top K");
  cmd->add_option("file", args->file, "Query scan (X3P, PNG or TIFF)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--scans", args->scans, "Directory of scans to search (the query file itself is skipped)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--top", args->top, "Length of each ranked list")->check(CLI::Range(1, 1000));
  cmd->add_option("--synthetic", args->synthetic, "Add N synthetic signatures (BF and FP alternately) as a haystack")
      ->check(CLI::Range(0, 10'000'000));
  cmd->add_option("--rerank-k", args->rerank_k, "Candidates per kind reranked by CMC (0 = default)")
      ->check(CLI::Range(0, 5000));
  cmd->add_option("--screen-k", args->screen_k,
                  "Coarse candidates per kind the screening stage orders for the rerank (0 = default, -1 = none)")
      ->check(CLI::Range(-1, 20000));
  cmd->add_option("--max-rotation", args->max_rotation_deg, "Search only |angle| <= DEG in the CMC rerank")
      ->check(CLI::Range(0.0, 180.0));
  cmd->add_option("--pixel-um", args->pixel_um, "Pixel size in um for 2D images without resolution tags")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--threads", args->threads, "Rerank threads (default: all cores)")->check(CLI::Range(0, 256));
  cmd->callback([args] { Run(*args); });
}

}  // namespace ballistics::cli
