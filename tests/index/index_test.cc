// index stage: descriptor invariance, filters, sharding, removal, cancellation,
// recall on synthetic casings, the search engine end to end.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "ballistics/correlate.h"
#include "ballistics/index.h"
#include "ballistics/synth.h"

namespace ballistics {
namespace {

// Synthetic BF signatures at 12.5 µm (the correlator's cell grid; 16x fewer
// pixels than 6.25 µm keeps the tests fast).
constexpr double kPixelUm = 12.5;

synth::ShotOptions Options() {
  synth::ShotOptions o;
  o.pixel_um = kPixelUm;
  return o;
}

const synth::FirearmSurface& Gun(std::uint64_t seed) {
  static std::mutex mu;
  static std::map<std::uint64_t, synth::FirearmSurface> guns;
  std::lock_guard<std::mutex> lock(mu);
  auto it = guns.find(seed);
  if (it == guns.end()) {
    it = guns.emplace(seed, synth::RenderFirearm(synth::MakeFirearm(seed), kPixelUm).value()).first;
  }
  return it->second;
}

Signature Shot(std::uint64_t gun, std::uint64_t shot) {
  return synth::MakeShotSignature(Gun(gun), gun * 1000 + shot, Options()).value();
}

// The signature turned by theta about its centre (TurnScan on a Scan view).
Signature Turned(const Signature& s, double theta_deg) {
  Scan scan;
  scan.values = s.values.clone();
  scan.pixel_um_x = scan.pixel_um_y = s.pixel_um;
  Scan t = TurnScan(scan, theta_deg, 0, 0).value();
  Signature out = s;
  out.values = t.values;
  return out;
}

SignatureRecord Record(std::int64_t id, std::int64_t casing, int shard = 0) {
  SignatureRecord r;
  r.signature_id = id;
  r.casing_id = casing;
  r.shard = shard;
  r.calibre = "9mm Luger";
  r.agency = "A";
  return r;
}

// A random descriptor (unit norm) for index mechanics tests.
CoarseDescriptor RandomDescriptor(std::mt19937& rng, SignatureKind kind = SignatureKind::kBreechFace) {
  CoarseDescriptor d;
  d.kind = kind;
  d.rings = 6;
  d.frequencies = 10;
  d.valid_rings = 6;
  d.coeffs.resize(d.rings * d.frequencies * 2);
  std::uniform_int_distribution<int> u(-127, 127);
  double e = 0;
  for (auto& c : d.coeffs) {
    c = static_cast<std::int8_t>(u(rng));
    e += double(c) * c;
  }
  d.scale = static_cast<float>(1.0 / std::sqrt(e));
  return d;
}

TEST(DescriptorTest, TurnedCopyScoresLikeItself) {
  const Signature s = Shot(1, 0);
  const CoarseDescriptor d = ComputeDescriptor(s).value();
  EXPECT_NEAR(DescriptorSimilarity(d, d), 1.0, 1e-4);
  const CoarseDescriptor other = ComputeDescriptor(Shot(2, 0)).value();
  const float unrelated = DescriptorSimilarity(d, other);
  for (double theta : {37.0, -120.0, 179.0}) {
    double shift = 0;
    const CoarseDescriptor t = ComputeDescriptor(Turned(s, theta)).value();
    const float score = DescriptorSimilarity(d, t, &shift);
    // Resampling of the turned copy loses a little: it must still score far
    // above an unrelated casing and near itself.
    EXPECT_GT(score, 0.85) << "theta " << theta;
    EXPECT_GT(score, unrelated + 0.4) << "theta " << theta;
    // The maximum is at the rotation (OpenCV convention: counter-clockwise
    // as displayed = clockwise in the sampling angle, rows down).
    double err = std::remainder(shift + theta, 360.0);
    EXPECT_LT(std::abs(err), 3.0) << "theta " << theta << " shift " << shift;
  }
}

TEST(DescriptorTest, RejectsBadInput) {
  Signature empty;
  EXPECT_EQ(ComputeDescriptor(empty).status().code(), StatusCode::kInvalidArgument);
  Signature nan = Shot(1, 0);
  nan.values.setTo(NAN);
  auto r = ComputeDescriptor(nan);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  Signature bad_px = Shot(1, 0);
  bad_px.pixel_um = -1;
  EXPECT_NE(ComputeDescriptor(bad_px).status().message().find("pixel_um=-1"), std::string::npos);
  DescriptorConfig c;
  c.angular_samples = 100;
  EXPECT_NE(c.Validate().message().find("angular_samples=100"), std::string::npos);
}

TEST(FlatIndexTest, FiltersExcludeWhatTheyShould) {
  std::mt19937 rng(3);
  auto index = MakeFlatIndex();
  std::vector<SignatureRecord> records;
  const std::vector<std::string> calibres = {"9mm Luger", ".40 S&W", ".45 ACP"};
  const std::vector<std::string> agencies = {"A", "B"};
  for (int i = 0; i < 300; ++i) {
    SignatureRecord r = Record(i + 1, 1000 + i / 2);
    r.kind = i % 5 == 0 ? SignatureKind::kFiringPin : SignatureKind::kBreechFace;
    r.modality = i % 7 == 0 ? Modality::kImage2d : Modality::kTopography3d;
    r.calibre = calibres[i % 3];
    r.agency = agencies[(i / 3) % 2];
    r.source = static_cast<CasingSource>(i % 4);
    r.captured_at_unix = i % 11 == 0 ? kUnknownTime : 1'600'000'000 + i * 1000;
    ASSERT_TRUE(index->Add(r, RandomDescriptor(rng, r.kind)).ok());
    records.push_back(r);
  }
  const CoarseDescriptor q = RandomDescriptor(rng);
  std::vector<SearchFilter> filters(7);
  filters[1].calibres = {".40 S&W"};
  filters[2].agencies = {"B"};
  filters[2].sources = {CasingSource::kTestFire, CasingSource::kPoliceIssued};
  filters[3].captured_after_unix = 1'600'050'000;
  filters[3].captured_before_unix = 1'600'200'000;
  filters[4].exclude_casing_ids = {1000, 1001, 1050};
  filters[5].calibres = {"no such calibre"};
  filters[6].modalities = {Modality::kImage2d};
  filters[6].kinds = {SignatureKind::kBreechFace};
  for (std::size_t fi = 0; fi < filters.size(); ++fi) {
    const SearchFilter& f = filters[fi];
    auto r = index->SearchCoarse(q, f, 1000).value();
    std::int64_t expected = 0;
    for (const auto& rec : records) expected += rec.kind == q.kind && f.Matches(rec);
    EXPECT_EQ(r.scanned, expected) << "filter " << fi;
    EXPECT_EQ(static_cast<std::int64_t>(r.hits.size()), expected) << "filter " << fi;
    for (const CoarseHit& h : r.hits) {
      const SignatureRecord& rec = records[h.signature_id - 1];
      EXPECT_TRUE(f.Matches(rec)) << "filter " << fi << " let signature " << h.signature_id << " through";
      EXPECT_EQ(rec.kind, SignatureKind::kBreechFace);
    }
  }
  // A kind filter that excludes the query's kind scans nothing.
  SearchFilter fp_only;
  fp_only.kinds = {SignatureKind::kFiringPin};
  EXPECT_EQ(index->SearchCoarse(q, fp_only, 10).value().scanned, 0);
}

TEST(FlatIndexTest, AddRemoveAndLookups) {
  std::mt19937 rng(4);
  auto index = MakeFlatIndex();
  std::vector<CoarseDescriptor> ds;
  for (int i = 0; i < 100; ++i) {
    ds.push_back(RandomDescriptor(rng));
    ASSERT_TRUE(index->Add(Record(i + 1, 500 + i / 3), ds.back()).ok());
  }
  EXPECT_EQ(index->Add(Record(5, 9), ds[0]).code(), StatusCode::kAlreadyExists);
  CoarseDescriptor wrong = ds[0];
  wrong.rings = 3;
  EXPECT_EQ(index->Add(Record(1000, 9), wrong).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index->Remove(12345).code(), StatusCode::kNotFound);
  for (int id : {1, 50, 100, 17}) ASSERT_TRUE(index->Remove(id).ok());
  EXPECT_EQ(index->Size(), 96);
  EXPECT_FALSE(index->FindRecord(50).has_value());
  // The slots moved by removal keep their own descriptors.
  for (int i = 0; i < 100; ++i) {
    auto d = index->FindDescriptor(i + 1);
    if (i + 1 == 1 || i + 1 == 50 || i + 1 == 100 || i + 1 == 17) continue;
    ASSERT_TRUE(d.has_value()) << i + 1;
    EXPECT_EQ(d->coeffs, ds[i].coeffs) << i + 1;
    EXPECT_FLOAT_EQ(d->scale, ds[i].scale);
  }
  // A query equal to an indexed descriptor finds it first with score 1.
  auto r = index->SearchCoarse(ds[60], {}, 3).value();
  ASSERT_FALSE(r.hits.empty());
  EXPECT_EQ(r.hits[0].signature_id, 61);
  EXPECT_NEAR(r.hits[0].score, 1.0, 1e-4);
  auto removed = index->SearchCoarse(ds[49], {}, 200).value();
  for (const auto& h : removed.hits) EXPECT_NE(h.signature_id, 50);
  EXPECT_EQ(index->RecordsOfCasing(500 + 60 / 3).size(), 3u);
  EXPECT_GT(index->MemoryBytes(), 96u * 120);
}

// The index scan (SIMD kernel, pruning, batched FFT) gives the scores of the
// one-pair DescriptorSimilarity, and scores every candidate when k = all.
TEST(FlatIndexTest, ScanScoresEqualPairwiseSimilarity) {
  std::mt19937 rng(8);
  auto index = MakeFlatIndex();
  std::vector<CoarseDescriptor> ds;
  for (int i = 0; i < 77; ++i) {
    ds.push_back(RandomDescriptor(rng));
    ASSERT_TRUE(index->Add(Record(i + 1, i + 1), ds.back()).ok());
  }
  const CoarseDescriptor q = RandomDescriptor(rng);
  auto r = index->SearchCoarse(q, {}, 77).value();
  ASSERT_EQ(r.hits.size(), 77u);
  for (const CoarseHit& h : r.hits) {
    EXPECT_NEAR(h.score, DescriptorSimilarity(q, ds[h.signature_id - 1]), 1e-5) << h.signature_id;
  }
  // Top 5 with pruning = the first 5 of the full ranking.
  auto top = index->SearchCoarse(q, {}, 5).value();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(top.hits[i].signature_id, r.hits[i].signature_id);
}

TEST(ShardedIndexTest, MergesTopKLikeAFlatIndex) {
  std::mt19937 rng(5);
  auto flat = MakeFlatIndex();
  auto sharded = MakeShardedIndex(16, 2);
  for (int i = 0; i < 3000; ++i) {
    const CoarseDescriptor d = RandomDescriptor(rng);
    const SignatureRecord r = Record(i + 1, i + 1, i % 16);
    ASSERT_TRUE(flat->Add(r, d).ok());
    ASSERT_TRUE(sharded->Add(r, d).ok());
  }
  SignatureRecord bad = Record(99999, 1, 16);
  EXPECT_EQ(sharded->Add(bad, RandomDescriptor(rng)).code(), StatusCode::kInvalidArgument);
  for (int q = 0; q < 5; ++q) {
    const CoarseDescriptor query = RandomDescriptor(rng);
    SearchFilter f;
    if (q == 4) f.exclude_casing_ids = {1, 2, 3};
    auto a = flat->SearchCoarse(query, f, 50).value();
    auto b = sharded->SearchCoarse(query, f, 50).value();
    ASSERT_EQ(a.hits.size(), b.hits.size());
    EXPECT_EQ(a.scanned, b.scanned);
    EXPECT_EQ(b.shards_answered, 16);
    EXPECT_EQ(b.shards_total, 16);
    for (std::size_t i = 0; i < a.hits.size(); ++i) {
      EXPECT_EQ(a.hits[i].signature_id, b.hits[i].signature_id) << "query " << q << " rank " << i;
      EXPECT_EQ(a.hits[i].score, b.hits[i].score);
    }
  }
  EXPECT_EQ(sharded->Size(), 3000);
  ASSERT_TRUE(sharded->Remove(77).ok());
  EXPECT_EQ(sharded->Size(), 2999);
}

TEST(ShardedIndexTest, CancellationStopsTheScan) {
  std::mt19937 rng(6);
  auto index = MakeShardedIndex(4, 2);
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(index->Add(Record(i + 1, i + 1, i % 4), RandomDescriptor(rng)).ok());
  std::atomic<bool> cancelled{true};
  ScanControl c;
  c.cancelled = &cancelled;
  EXPECT_EQ(index->SearchCoarse(RandomDescriptor(rng), {}, 10, c).status().code(), StatusCode::kCancelled);
  // Cancelled while running (from the progress callback, i.e. mid-scan).
  cancelled = false;
  std::atomic<int> calls{0};
  c.progress = [&](double) {
    if (++calls == 2) cancelled = true;
  };
  EXPECT_EQ(index->SearchCoarse(RandomDescriptor(rng), {}, 10, c).status().code(), StatusCode::kCancelled);
}

// Recall of the coarse stage on synthetic casings: for each shot, where do
// the other shots of its firearm land among all shots of 40 firearms?
TEST(RecallTest, SyntheticMatesRankHighInTheCoarseList) {
  constexpr int kGuns = 40, kShots = 3;
  auto index = MakeFlatIndex();
  std::vector<CoarseDescriptor> ds;
  for (int g = 0; g < kGuns; ++g) {
    for (int s = 0; s < kShots; ++s) {
      ds.push_back(ComputeDescriptor(Shot(100 + g, s)).value());
      ASSERT_TRUE(index->Add(Record(g * kShots + s + 1, g * kShots + s + 1), ds.back()).ok());
    }
  }
  int mates = 0, in_top5 = 0;
  for (int i = 0; i < kGuns * kShots; ++i) {
    SearchFilter f;
    f.exclude_casing_ids = {i + 1};
    auto r = index->SearchCoarse(ds[i], f, 5).value();
    for (int s = 0; s < kShots; ++s) {
      const int mate = (i / kShots) * kShots + s + 1;
      if (mate == i + 1) continue;
      ++mates;
      in_top5 += std::any_of(r.hits.begin(), r.hits.end(), [&](const CoarseHit& h) { return h.signature_id == mate; });
    }
  }
  // 5 of 119 candidates: chance would keep ~4 % of the mates.
  EXPECT_GE(in_top5, mates * 9 / 10) << in_top5 << " of " << mates << " mates in the top 5";
  std::printf("synthetic recall: %d of %d mates in the coarse top 5 of %d\n", in_top5, mates, kGuns * kShots - 1);
}

class MapSource : public SignatureSource {
 public:
  StatusOr<Signature> Load(std::int64_t id) const override {
    auto it = sigs.find(id);
    if (it == sigs.end()) return NotFound("no signature " + std::to_string(id));
    return it->second;
  }
  std::map<std::int64_t, Signature> sigs;
};

TEST(SearchEngineTest, FindsTheMateAndHonoursCancellation) {
  auto index = std::shared_ptr<SignatureIndex>(MakeShardedIndex(4, 2));
  auto source = std::make_shared<MapSource>();
  for (int g = 0; g < 12; ++g) {
    for (int s = 0; s < 2; ++s) {
      const std::int64_t id = g * 2 + s + 1;
      Signature sig = Shot(200 + g, s);
      ASSERT_TRUE(index->Add(Record(id, id, static_cast<int>(id % 4)), ComputeDescriptor(sig).value()).ok());
      source->sigs[id] = std::move(sig);
    }
  }
  auto engine = SearchEngine::Create(index, source).value();
  SearchRequest req;
  req.query.casing_id = 5;  // gun 202, shot 0; its mate is casing 6
  req.top_n = 3;
  req.rerank_k = 4;
  std::vector<SearchStage> stages;
  std::mutex mu;
  auto results = engine->Search(req, [&](SearchStage s, double) {
    std::lock_guard<std::mutex> lock(mu);
    stages.push_back(s);
  });
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_FALSE(results->breech_face.empty());
  EXPECT_EQ(results->breech_face[0].casing_id, 6);
  ASSERT_TRUE(results->breech_face[0].comparison.has_value());
  EXPECT_TRUE(results->breech_face[0].comparison->identification);
  EXPECT_EQ(results->breech_face[0].rank, 1);
  EXPECT_LE(results->breech_face.size(), 3u);
  EXPECT_EQ(results->reranked, 4);
  EXPECT_EQ(results->signatures_scanned, 23);  // the query casing itself is excluded
  EXPECT_EQ(results->shards_answered, 4);
  EXPECT_FALSE(results->partial);
  ASSERT_FALSE(results->combined.empty());
  EXPECT_EQ(results->combined[0].casing_id, 6);
  EXPECT_TRUE(std::find(stages.begin(), stages.end(), SearchStage::kRerank) != stages.end());
  for (const auto& c : results->breech_face) EXPECT_NE(c.casing_id, 5);

  // Cancelled from the first rerank progress report: the engine stops.
  std::atomic<bool> cancelled{false};
  std::atomic<int> compared{0};
  req.rerank_k = 20;
  auto t0 = std::chrono::steady_clock::now();
  auto c = engine->Search(
      req,
      [&](SearchStage s, double) {
        if (s == SearchStage::kRerank && ++compared >= 1) cancelled = true;
      },
      &cancelled);
  EXPECT_EQ(c.status().code(), StatusCode::kCancelled);
  // Each of the 2 threads finishes at most the comparison it is in.
  EXPECT_LE(compared.load(), 3);
  (void)t0;

  // Bad requests.
  SearchRequest bad = req;
  bad.top_n = 0;
  EXPECT_EQ(engine->Search(bad).status().code(), StatusCode::kInvalidArgument);
  bad = req;
  bad.query.casing_id = 4242;
  EXPECT_EQ(engine->Search(bad).status().code(), StatusCode::kNotFound);
  bad = SearchRequest{};
  EXPECT_EQ(engine->Search(bad).status().code(), StatusCode::kInvalidArgument);
}

// The two phases of a search across workers: phase 1 (coarse_only) returns
// each kind's coarse top K and reranks nothing; phase 2 (rerank_hits) reranks
// exactly the given candidates, keeps their global coarse ranks, skips ids it
// does not hold, and gives the lists a one-phase search gives.
TEST(SearchEngineTest, TwoPhasesGiveTheOnePhaseLists) {
  auto index = std::shared_ptr<SignatureIndex>(MakeShardedIndex(4, 2));
  auto source = std::make_shared<MapSource>();
  for (int g = 0; g < 8; ++g) {
    for (int s = 0; s < 2; ++s) {
      const std::int64_t id = g * 2 + s + 1;
      Signature sig = Shot(300 + g, s);
      ASSERT_TRUE(index->Add(Record(id, id, static_cast<int>(id % 4)), ComputeDescriptor(sig).value()).ok());
      source->sigs[id] = std::move(sig);
    }
  }
  auto engine = SearchEngine::Create(index, source).value();
  SearchRequest req;
  req.query.casing_id = 3;  // gun 301, shot 0; its mate is casing 4
  req.top_n = 5;
  req.rerank_k = 5;
  req.screen_k = -1;  // two phases (ThreePhasesGiveTheOnePhaseLists: with screening)
  auto one = engine->Search(req);
  ASSERT_TRUE(one.ok()) << one.status().ToString();

  SearchRequest p1 = req;
  p1.coarse_only = true;
  auto coarse = engine->Search(p1);
  ASSERT_TRUE(coarse.ok()) << coarse.status().ToString();
  EXPECT_EQ(coarse->reranked, 0);
  EXPECT_TRUE(coarse->breech_face.empty());
  ASSERT_EQ(coarse->coarse_breech_face.size(), 5u);
  EXPECT_TRUE(coarse->coarse_firing_pin.empty());
  EXPECT_EQ(coarse->signatures_scanned, one->signatures_scanned);

  SearchRequest p2 = req;
  p2.rerank_hits = coarse->coarse_breech_face;
  for (std::size_t i = 0; i < p2.rerank_hits->size(); ++i) (*p2.rerank_hits)[i].rank = static_cast<int>(i) + 11;
  CoarseHit foreign;
  foreign.signature_id = 999;  // held by another worker
  foreign.rank = 1;
  p2.rerank_hits->push_back(foreign);
  auto two = engine->Search(p2);
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(two->reranked, 5);
  ASSERT_EQ(two->breech_face.size(), one->breech_face.size());
  for (std::size_t i = 0; i < one->breech_face.size(); ++i) {
    EXPECT_EQ(two->breech_face[i].signature_id, one->breech_face[i].signature_id) << i;
    EXPECT_EQ(two->breech_face[i].coarse_rank, one->breech_face[i].coarse_rank + 10) << i;
    ASSERT_TRUE(two->breech_face[i].comparison && one->breech_face[i].comparison);
    EXPECT_EQ(two->breech_face[i].comparison->cmc, one->breech_face[i].comparison->cmc) << i;
  }
  EXPECT_EQ(two->breech_face[0].casing_id, 4);

  SearchRequest both = p2;
  both.coarse_only = true;
  EXPECT_EQ(engine->Search(both).status().code(), StatusCode::kInvalidArgument);
}

// The screening stage finds a mate the coarse stage ranks low: the mate's
// entry carries another gun's descriptor (its coarse score is a non-mate's),
// its signature is the real one. Without screening the rerank never sees it;
// with it the cell vote puts it into the rerank (screen rank 1) and the full
// CMC ranks it first. The coarse top ceil(K / 2) are kept as they were.
TEST(SearchEngineTest, ScreeningFindsAMateTheCoarseStageRanksLow) {
  auto index = std::shared_ptr<SignatureIndex>(MakeShardedIndex(4, 2));
  auto source = std::make_shared<MapSource>();
  std::vector<Signature> sigs;
  for (int g = 0; g < 15; ++g) {
    for (int s = 0; s < 2; ++s) sigs.push_back(Shot(400 + g, s));
  }
  for (std::size_t i = 0; i < sigs.size(); ++i) {
    const std::int64_t id = static_cast<std::int64_t>(i) + 1;
    // Casing 2 (gun 400, shot 1: the query's mate) is indexed under the
    // descriptor of casing 30 (gun 414, shot 1).
    const Signature& described = id == 2 ? sigs[29] : sigs[i];
    ASSERT_TRUE(index->Add(Record(id, id, static_cast<int>(id % 4)), ComputeDescriptor(described).value()).ok());
    source->sigs[id] = sigs[i];
  }
  auto engine = SearchEngine::Create(index, source).value();
  SearchRequest req;
  req.query.breech_face = Turned(sigs[0], 63.0);
  req.query.casing_id = 1;
  req.top_n = 4;
  req.rerank_k = 4;

  SearchRequest coarse_req = req;
  coarse_req.coarse_only = true;
  coarse_req.screen_k = -1;
  auto coarse = engine->Search(coarse_req);
  ASSERT_TRUE(coarse.ok()) << coarse.status().ToString();
  for (const CoarseHit& h : coarse->coarse_breech_face) EXPECT_NE(h.casing_id, 2) << "the coarse top 4 holds the mate";

  req.screen_k = -1;
  auto plain = engine->Search(req);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  for (const Candidate& c : plain->breech_face) EXPECT_NE(c.casing_id, 2);
  EXPECT_EQ(plain->screened, 0);

  req.screen_k = 40;  // more than the index holds: every other casing is screened
  std::vector<SearchStage> stages;
  std::mutex mu;
  auto screened = engine->Search(req, [&](SearchStage s, double) {
    std::lock_guard<std::mutex> lock(mu);
    stages.push_back(s);
  });
  ASSERT_TRUE(screened.ok()) << screened.status().ToString();
  EXPECT_TRUE(std::find(stages.begin(), stages.end(), SearchStage::kScreen) != stages.end());
  EXPECT_EQ(screened->screened, 29 - 2);  // all but the query and the coarse top 2
  EXPECT_EQ(screened->reranked, 4);
  ASSERT_FALSE(screened->breech_face.empty());
  const Candidate& top = screened->breech_face[0];
  EXPECT_EQ(top.casing_id, 2);
  ASSERT_TRUE(top.comparison.has_value());
  EXPECT_TRUE(top.comparison->identification);
  EXPECT_EQ(top.screen_rank, 1);
  EXPECT_GT(top.coarse_rank, 4);
  // The coarse top 2 are reranked as well, unscreened.
  int coarse_kept = 0;
  for (const Candidate& c : screened->breech_face) {
    if (c.screen_rank == 0) {
      ++coarse_kept;
      EXPECT_LE(c.coarse_rank, 2);
      EXPECT_EQ(c.screen_cmc, -1);
    }
  }
  EXPECT_EQ(coarse_kept, 2);

  SearchRequest bad = req;
  bad.screen_k = -2;
  EXPECT_EQ(engine->Search(bad).status().code(), StatusCode::kInvalidArgument);
  bad = req;
  bad.screen_only = true;  // without the hits to screen
  EXPECT_EQ(engine->Search(bad).status().code(), StatusCode::kInvalidArgument);
  SearchEngineConfig cfg;
  cfg.screen_coarse_share = 1.5;
  EXPECT_EQ(SearchEngine::Create(index, source, cfg).status().code(), StatusCode::kInvalidArgument);
  cfg = {};
  cfg.breech_face_screen_k = cfg.max_screen_k + 1;
  EXPECT_EQ(SearchEngine::Create(index, source, cfg).status().code(), StatusCode::kInvalidArgument);

  // Three phases as a coordinator runs them give the one-process list:
  // 1. the coarse top screen K; 2. the ranks below ceil(K / 2) screened in
  // two shares (as two workers would), merged in ScreenedBefore order; 3. the
  // rerank of the coarse-kept and the screened best.
  SearchRequest p1 = req;
  p1.coarse_only = true;
  auto c1 = engine->Search(p1);
  ASSERT_TRUE(c1.ok()) << c1.status().ToString();
  ASSERT_EQ(c1->coarse_breech_face.size(), 29u);
  const int kc = CoarseKeptBeforeScreen(4, SearchEngineConfig{}.screen_coarse_share);
  ASSERT_EQ(kc, 2);
  std::vector<CoarseHit> rest(c1->coarse_breech_face.begin() + kc, c1->coarse_breech_face.end());
  std::vector<CoarseHit> merged;
  for (int share = 0; share < 2; ++share) {
    SearchRequest p2 = req;
    p2.screen_only = true;
    p2.rerank_hits.emplace();
    for (std::size_t i = share; i < rest.size(); i += 2) p2.rerank_hits->push_back(rest[i]);
    auto c2 = engine->Search(p2);
    ASSERT_TRUE(c2.ok()) << c2.status().ToString();
    EXPECT_EQ(c2->reranked, 0);
    EXPECT_LE(c2->coarse_breech_face.size(), 2u);
    merged.insert(merged.end(), c2->coarse_breech_face.begin(), c2->coarse_breech_face.end());
  }
  std::sort(merged.begin(), merged.end(), ScreenedBefore);
  merged.resize(2);
  SearchRequest p3 = req;
  p3.rerank_hits.emplace(c1->coarse_breech_face.begin(), c1->coarse_breech_face.begin() + kc);
  p3.rerank_hits->insert(p3.rerank_hits->end(), merged.begin(), merged.end());
  auto c3 = engine->Search(p3);
  ASSERT_TRUE(c3.ok()) << c3.status().ToString();
  ASSERT_EQ(c3->breech_face.size(), screened->breech_face.size());
  for (std::size_t i = 0; i < c3->breech_face.size(); ++i) {
    EXPECT_EQ(c3->breech_face[i].signature_id, screened->breech_face[i].signature_id) << i;
    EXPECT_EQ(c3->breech_face[i].coarse_rank, screened->breech_face[i].coarse_rank) << i;
    ASSERT_TRUE(c3->breech_face[i].comparison && screened->breech_face[i].comparison);
    EXPECT_EQ(c3->breech_face[i].comparison->cmc, screened->breech_face[i].comparison->cmc) << i;
  }
}

// The engine's coarse stage: without the outer ring it is the index scan of
// the 3 x 3 translation variants; the outer ring only ever raises a score
// (the better of the inner score and the tail-aligned outer one) and keeps
// the list sorted; bad outer-ring settings are refused.
TEST(SearchEngineTest, CoarseStageOuterRing) {
  auto index = std::shared_ptr<SignatureIndex>(MakeShardedIndex(4, 2));
  auto source = std::make_shared<MapSource>();
  for (int g = 0; g < 20; ++g) {
    for (int s = 0; s < 3; ++s) {
      const std::int64_t id = g * 3 + s + 1;
      ASSERT_TRUE(index->Add(Record(id, id, static_cast<int>(id % 4)), ComputeDescriptor(Shot(300 + g, s)).value()).ok());
    }
  }
  const Signature query = Turned(Shot(305, 7), 63.0);  // a new shot of gun 305 (ids 16..18)
  SearchEngineConfig inner_only;
  inner_only.outer_translation_steps = 0;
  auto plain = SearchEngine::Create(index, source, inner_only).value();
  auto withring = SearchEngine::Create(index, source, SearchEngineConfig{}).value();
  const int all = 60;
  auto a = plain->SearchCoarse(query, {}, all).value();
  auto b = withring->SearchCoarse(query, {}, all).value();
  ASSERT_EQ(a.hits.size(), 60u);
  ASSERT_EQ(b.hits.size(), 60u);

  // Inner only = the index scan of the 9 variants.
  std::vector<CoarseDescriptor> variants;
  for (int iy = -1; iy <= 1; ++iy) {
    for (int ix = -1; ix <= 1; ++ix) {
      DescriptorConfig dc;
      dc.centre_offset_x_um = 40.0 * ix;
      dc.centre_offset_y_um = 40.0 * iy;
      variants.push_back(ComputeDescriptor(query, dc).value());
    }
  }
  auto direct = index->SearchCoarse(variants, {}, all).value();
  for (int i = 0; i < all; ++i) {
    EXPECT_EQ(a.hits[i].signature_id, direct.hits[i].signature_id);
    EXPECT_FLOAT_EQ(a.hits[i].score, direct.hits[i].score);
  }
  std::map<std::int64_t, float> inner_score;
  for (const CoarseHit& h : a.hits) inner_score[h.signature_id] = h.score;
  for (std::size_t i = 0; i < b.hits.size(); ++i) {
    EXPECT_GE(b.hits[i].score, inner_score.at(b.hits[i].signature_id)) << b.hits[i].signature_id;
    if (i > 0) EXPECT_FALSE(HitBefore(b.hits[i], b.hits[i - 1]));
  }
  // The mates of the query lead both lists.
  for (const auto* r : {&a, &b}) {
    for (int i = 0; i < 3; ++i) {
      EXPECT_GE(r->hits[i].signature_id, 16);
      EXPECT_LE(r->hits[i].signature_id, 18);
    }
  }

  SearchEngineConfig bad;
  bad.outer_translation_steps = 6;
  EXPECT_EQ(SearchEngine::Create(index, source, bad).status().code(), StatusCode::kInvalidArgument);
  bad = SearchEngineConfig{};
  bad.outer_rescore_k = 0;
  EXPECT_EQ(SearchEngine::Create(index, source, bad).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(withring->SearchCoarse(query, {}, 0).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ballistics
