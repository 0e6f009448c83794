// index stage on real scans: a turned Fadul scan finds its same-slide mates
// through the whole engine (coarse ring-spectrum scan over shards, CMC rerank).
// The 100,000-signature haystack version is `index_bench haystack` (too slow
// for a test on 2 cores; docs/benchmarks.md, "Search").
#include <algorithm>
#include <map>

#include <gtest/gtest.h>

#include "ballistics/correlate.h"
#include "ballistics/index.h"
#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "test_paths.h"

namespace ballistics {
namespace {

class MapSource : public SignatureSource {
 public:
  StatusOr<Signature> Load(std::int64_t id) const override {
    auto it = sigs.find(id);
    if (it == sigs.end()) return NotFound("no signature " + std::to_string(id));
    return it->second;
  }
  std::map<std::int64_t, Signature> sigs;
};

Signature FadulBf(const std::string& name, double turn_deg = 0) {
  auto scan = ReadScanFile(testing::SharedDataDir() / "fadul" / (name + ".x3p"));
  EXPECT_TRUE(scan.ok()) << name << ": " << scan.status().ToString();
  Scan s = *scan;
  if (turn_deg != 0) s = TurnScan(s, turn_deg, 0, 0).value();
  auto n = Normalize(s);
  EXPECT_TRUE(n.ok()) << name << ": " << n.status().ToString();
  return n->breech_face;
}

TEST(IndexRealdataTest, TurnedFadulScanFindsItsMatesFirst) {
  // Slide 1 (1-1, 1-2, F) among scans of slides 2, 3 and 4; the query is 1-1
  // turned by 117 degrees, so neither stage can rely on the scans' alignment.
  const std::vector<std::string> names = {"fadul-1-2", "fadul-F", "fadul-2-1", "fadul-2-2", "fadul-3-1",
                                          "fadul-3-2", "fadul-4-1", "fadul-4-2"};
  auto index = std::shared_ptr<SignatureIndex>(MakeShardedIndex(4, 2));
  auto source = std::make_shared<MapSource>();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::int64_t id = static_cast<std::int64_t>(i) + 1;
    Signature bf = FadulBf(names[i]);
    auto d = ComputeDescriptor(bf);
    ASSERT_TRUE(d.ok()) << names[i] << ": " << d.status().ToString();
    SignatureRecord r;
    r.signature_id = r.casing_id = id;
    r.shard = static_cast<int>(id % 4);
    ASSERT_TRUE(index->Add(r, *d).ok());
    source->sigs[id] = std::move(bf);
  }
  auto engine = SearchEngine::Create(index, source).value();
  SearchRequest req;
  req.query.breech_face = FadulBf("fadul-1-1", 117.0);
  req.top_n = 8;
  req.rerank_k = 8;  // all: the CMC ranking decides, the test checks the whole engine
  auto r = engine->Search(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_GE(r->breech_face.size(), 2u);
  std::vector<std::int64_t> top2 = {r->breech_face[0].casing_id, r->breech_face[1].casing_id};
  std::sort(top2.begin(), top2.end());
  EXPECT_EQ(top2, (std::vector<std::int64_t>{1, 2})) << "mates fadul-1-2 and fadul-F should rank 1 and 2";
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(r->breech_face[i].comparison.has_value());
    EXPECT_TRUE(r->breech_face[i].comparison->identification);
  }
  // The coarse stage alone already puts both mates first (no rerank needed here).
  std::vector<int> coarse_ranks;
  for (const Candidate& c : r->breech_face) {
    if (c.casing_id <= 2) coarse_ranks.push_back(c.coarse_rank);
  }
  ASSERT_EQ(coarse_ranks.size(), 2u);
  EXPECT_LE(*std::max_element(coarse_ranks.begin(), coarse_ranks.end()), 3);
}

}  // namespace
}  // namespace ballistics
