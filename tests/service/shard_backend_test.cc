// The search backend of a shard worker: bulk load of chosen shards from
// PostgreSQL, and LISTEN/NOTIFY pick-up of casings that ANOTHER connection
// (as another process would) stores after the load, including after the
// listener's connection was killed. Real Fadul scans.
#include <gtest/gtest.h>

#include <malloc.h>

#include <chrono>
#include <thread>

#include "ballistics/correlate.h"
#include "ballistics/ingest.h"
#include "search_backend.h"
#include "store/test_database.h"
#include "test_paths.h"

namespace ballistics::service {
namespace {

using Clock = std::chrono::steady_clock;

TEST(ParseShardRanges, RangesListsAndErrors) {
  EXPECT_EQ(*ParseShardRanges("0-7"), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(*ParseShardRanges("8-9, 3,15"), (std::vector<int>{3, 8, 9, 15}));
  EXPECT_EQ(*ParseShardRanges("5,5,4-5"), (std::vector<int>{4, 5}));
  for (const char* bad : {"", "16", "0-16", "7-3", "a", "1-", "-2", "1,,2"}) {
    auto r = ParseShardRanges(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
  EXPECT_NE(ParseShardRanges("0-16").status().message().find("16"), std::string::npos);
}

CasingMetadata Meta(const std::string& exhibit) {
  CasingMetadata m;
  m.agency = "Fadul study";
  m.case_number = "shards";
  m.exhibit_id = exhibit;
  m.calibre = "9mm Luger";
  m.source = CasingSource::kTestFire;
  m.submitted_by = "shard_backend_test";
  return m;
}

class ShardBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    auto s = store::Store::Connect(db_.url());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    writer_ = std::move(*s);
    ASSERT_TRUE(writer_->Migrate().ok());
  }

  // Stores a Fadul scan through the test's own connection; returns (casing id, shard).
  std::pair<std::int64_t, int> Put(const std::string& name) {
    auto p = ingest::PrepareScanFile(testing::SharedDataDir() / "fadul" / (name + ".x3p"));
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return {0, -1};
    auto r = ingest::StorePrepared(*writer_, Meta(name), *p);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {0, -1};
    auto c = writer_->GetCasing(r->casing_id);
    EXPECT_TRUE(c.ok() && !c->signatures.empty());
    return {r->casing_id, c.ok() && !c->signatures.empty() ? c->signatures[0].shard : -1};
  }

  // Waits until the backend holds `n` signatures; returns the seconds waited or -1.
  static double WaitForSize(const LocalSearchBackend& b, std::int64_t n, double limit_s = 20) {
    const auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < limit_s) {
      if (b.size() >= n) return std::chrono::duration<double>(Clock::now() - t0).count();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  testing::TestDatabase db_;
  std::unique_ptr<store::Store> writer_;
};

TEST_F(ShardBackendTest, BulkLoadThenOtherConnectionsIngestsBecomeSearchable) {
  const auto [c11, shard11] = Put("fadul-1-1");
  const auto [c12, shard12] = Put("fadul-1-2");
  ASSERT_GE(shard11, 0);

  std::vector<int> all, others;
  for (int s = 0; s < store::kSignatureShards; ++s) {
    all.push_back(s);
    if (s != shard11) others.push_back(s);
  }
  auto full = LocalSearchBackend::Load(db_.url(), all, 2);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  auto part = LocalSearchBackend::Load(db_.url(), others, 2);
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_EQ((*full)->size(), 2);
  // The partial backend did not load fadul-1-1's shard.
  EXPECT_EQ((*part)->size(), shard12 == shard11 ? 0 : 1);
  EXPECT_GT((*full)->memory_bytes(), (*full)->signature_bytes());

  // fadul-F (a mate of 1-1 and 1-2) stored by another connection after the load.
  const auto [cf, shard_f] = Put("fadul-F");
  const double waited = WaitForSize(**full, 3);
  ASSERT_GE(waited, 0) << "the stored casing never reached the index";
  std::printf("[ measure ] notification to searchable: %.3f s\n", waited);

  SearchRequest req;
  req.query.casing_id = cf;
  req.top_n = 5;
  auto res = (*full)->Search(req, {}, nullptr);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_EQ(res->breech_face.size(), 2u);
  EXPECT_FALSE(res->partial);
  EXPECT_EQ(res->shards_answered, store::kSignatureShards);
  std::set<std::int64_t> found{res->breech_face[0].casing_id, res->breech_face[1].casing_id};
  EXPECT_EQ(found, (std::set<std::int64_t>{c11, c12}));

  // The partial backend holds fadul-F only when it is in one of its shards,
  // and reports the missing shard.
  const std::int64_t expect_part = (shard12 == shard11 ? 0 : 1) + (shard_f == shard11 ? 0 : 1);
  if (expect_part > (*part)->size()) {
    ASSERT_GE(WaitForSize(**part, expect_part), 0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // nothing beyond its shards arrives late
  EXPECT_EQ((*part)->size(), expect_part);
  if (shard_f != shard11) {
    auto pres = (*part)->Search(req, {}, nullptr);
    ASSERT_TRUE(pres.ok()) << pres.status().ToString();
    EXPECT_TRUE(pres->partial);
    EXPECT_EQ(pres->shards_answered, store::kSignatureShards - 1);
    for (const Candidate& c : pres->breech_face) EXPECT_NE(c.casing_id, c11);
  }
  EXPECT_GT((*full)->notifications_seen(), 0);
}

TEST_F(ShardBackendTest, ListenerReconnectsAndCatchesUp) {
  Put("fadul-2-1");
  std::vector<int> all;
  for (int s = 0; s < store::kSignatureShards; ++s) all.push_back(s);
  auto b = LocalSearchBackend::Load(db_.url(), all, 1);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_EQ((*b)->size(), 1);
  // Kill the listener's server process (a restarted database, a dropped
  // connection), then store while it is away: the reconnect catches up by id.
  ASSERT_EQ(testing::QueryInt(db_.url(),
                              "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"),
            1);
  Put("fadul-2-2");
  Put("fadul-C");
  ASSERT_GE(WaitForSize(**b, 3), 0) << "not caught up after the listener's connection was killed";
}

// A worker whose rerank budget holds nothing reads every candidate from the
// database, and ranks them exactly as one that holds them all (both rerank the
// same compact form).
TEST_F(ShardBackendTest, RerankReadsCandidatesNotHeldFromTheDatabase) {
  const std::int64_t c11 = Put("fadul-1-1").first;
  const std::int64_t c12 = Put("fadul-1-2").first;
  Put("fadul-2-1");
  const std::int64_t cf = Put("fadul-F").first;
  std::vector<int> all;
  for (int s = 0; s < store::kSignatureShards; ++s) all.push_back(s);
  auto bad = LocalSearchBackend::Load(db_.url(), all, 1, /*listen=*/false, /*rerank_cache_mb=*/-2);
  ASSERT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("rerank_cache_mb=-2"), std::string::npos) << bad.status().ToString();

  auto none = LocalSearchBackend::Load(db_.url(), all, 2, /*listen=*/false, /*rerank_cache_mb=*/0);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  auto held = LocalSearchBackend::Load(db_.url(), all, 2, /*listen=*/false, /*rerank_cache_mb=*/-1);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ((*none)->size(), 4);
  EXPECT_EQ((*none)->rerank_cache().held(), 0);
  // Budget 0 still holds the screen forms (docs/search.md, "Screening"): int8
  // at 50 µm, ~4.7 KB for a Fadul breech face, no compact form.
  EXPECT_EQ((*none)->rerank_cache().screen_held(), 4);
  EXPECT_EQ((*none)->signature_bytes(), (*none)->rerank_cache().screen_bytes());
  EXPECT_GT((*none)->signature_bytes(), 4u * 3000u);
  EXPECT_LT((*none)->signature_bytes(), 4u * 6000u);
  EXPECT_EQ((*held)->rerank_cache().held(), 4);

  SearchRequest req;
  req.query.casing_id = cf;
  req.top_n = 5;
  auto a = (*none)->Search(req, {}, nullptr);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = (*held)->Search(req, {}, nullptr);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  // The query casing's signature and the three candidates, all read from the database.
  EXPECT_GE((*none)->rerank_cache().misses(), 4);
  EXPECT_EQ((*held)->rerank_cache().misses(), 0);
  ASSERT_EQ(a->breech_face.size(), 3u);
  ASSERT_EQ(b->breech_face.size(), 3u);
  std::set<std::int64_t> top2{a->breech_face[0].casing_id, a->breech_face[1].casing_id};
  EXPECT_EQ(top2, (std::set<std::int64_t>{c11, c12}));
  for (std::size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(a->breech_face[i].comparison.has_value()) << i;
    ASSERT_TRUE(b->breech_face[i].comparison.has_value()) << i;
    EXPECT_EQ(a->breech_face[i].casing_id, b->breech_face[i].casing_id) << i;
    EXPECT_EQ(a->breech_face[i].comparison->cmc, b->breech_face[i].comparison->cmc) << i;
  }
  EXPECT_TRUE(a->breech_face[0].comparison->identification);
  EXPECT_FALSE(a->breech_face[2].comparison->identification) << "fadul-2-1 is not a mate of fadul-F";
}

// What a worker holds per signature (docs/operations.md, "Memory of a worker"):
// the coarse descriptor plus the compact rerank form; for comparison the
// correlator's prepared form (registration-resolution grids and cell data),
// measured as the heap it occupies while held (mallinfo2).
TEST_F(ShardBackendTest, MemoryPerSignature) {
  const std::vector<std::string> names = {"fadul-1-1", "fadul-2-1", "fadul-3-1", "fadul-4-1"};
  for (const auto& n : names) Put(n);
  std::vector<int> all;
  for (int s = 0; s < store::kSignatureShards; ++s) all.push_back(s);
  auto b = LocalSearchBackend::Load(db_.url(), all, 1, /*listen=*/false);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_EQ((*b)->size(), static_cast<std::int64_t>(names.size()));
  const double n = static_cast<double>(names.size());
  const double total = (*b)->memory_bytes() / n, sigs = (*b)->signature_bytes() / n;
  EXPECT_GT(sigs, 0);
  EXPECT_LT(sigs, total);  // the coarse index is counted on top

  auto st = store::Store::Connect(db_.url());
  ASSERT_TRUE(st.ok());
  auto correlator = Correlator::Create();
  ASSERT_TRUE(correlator.ok());
  std::vector<Signature> signatures;
  std::size_t value_bytes = 0;
  ASSERT_TRUE((*st)->LoadSignatures(all, [&](store::StoredSignature&& s) {
                      value_bytes += s.signature.values.total() * sizeof(float);
                      signatures.push_back(std::move(s.signature));
                      return Status::Ok();
                    }).ok());
  std::vector<std::shared_ptr<const PreparedSignature>> prepared;
  const std::size_t before = mallinfo2().uordblks;
  for (const Signature& s : signatures) {
    auto p = correlator->Prepare(s);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    prepared.push_back(*p);
  }
  const double prepared_bytes = static_cast<double>(mallinfo2().uordblks - before) / n;
  EXPECT_GT(prepared_bytes, 0);
  std::printf("[ measure ] per BF signature (Fadul, %zu): held now %.0f KiB (descriptor + index %.1f KiB, "
              "compact signature %.0f KiB; float values %.0f KiB); correlator-prepared form %.0f KiB\n",
              names.size(), total / 1024, (total - sigs) / 1024, sigs / 1024, value_bytes / n / 1024,
              prepared_bytes / 1024);
}

}  // namespace
}  // namespace ballistics::service
