// The coordinator's three-phase search (docs/search.md, "Screening") against
// two fake shard workers on 127.0.0.1: which candidates each phase sends to
// whom, that the rerank gets the global coarse top ceil(K/2) plus the global
// best of the screen, and that a worker failing the screen phase leaves its
// shards out (flagged partial) while the other's candidates are reranked.
// Deterministic: the fakes answer from fixed lists, no engine, no database.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "search_backend.h"
#include "server.h"
#include "shard_coordinator.h"
#include "shard_protocol.h"

namespace ballistics::service {
namespace {

// A worker holding shards [first, first + 8) whose coarse list is `hits`;
// its screen CMC of a hit is screen_cmc[id]; it can be told to fail the
// screen phase. Records the hits it was sent per phase.
class FakeShard final : public v1::ShardService::Service {
 public:
  FakeShard(int first_shard, std::vector<CoarseHit> hits, std::map<std::int64_t, int> screen_cmc, bool fail_screen)
      : first_(first_shard), hits_(std::move(hits)), screen_cmc_(std::move(screen_cmc)), fail_screen_(fail_screen) {}

  grpc::Status SearchShards(grpc::ServerContext*, const v1::ShardSearchRequest* req,
                            grpc::ServerWriter<v1::ShardSearchUpdate>* writer) override {
    v1::ShardSearchUpdate u;
    v1::ShardSearchResult* r = u.mutable_result();
    for (int s = first_; s < first_ + 8; ++s) r->add_shards(s);
    std::vector<CoarseHit> given;
    for (const auto& h : req->rerank()) given.push_back(HitFromProto(h));
    {
      std::lock_guard<std::mutex> l(mu_);
      if (req->coarse_only()) {
        ++coarse_calls;
        screen_k_seen = req->screen_k();
      } else if (req->screen_given()) {
        screen_sent = given;
      } else if (req->rerank_given()) {
        rerank_sent = given;
      }
    }
    if (req->coarse_only()) {
      for (const CoarseHit& h : hits_) HitToProto(h, r->add_coarse_breech_face());
    } else if (req->screen_given()) {
      if (fail_screen_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "screen phase failed (test)");
      for (CoarseHit& h : given) {
        h.screen_cmc = screen_cmc_.count(h.signature_id) ? screen_cmc_.at(h.signature_id) : 0;
        h.screen_ccf = 0.1f;
      }
      std::sort(given.begin(), given.end(), ScreenedBefore);
      const int k = req->rerank_k(), kc = CoarseKeptBeforeScreen(k, SearchEngineConfig{}.screen_coarse_share);
      if (static_cast<int>(given.size()) > k - kc) given.resize(k - kc);
      for (std::size_t i = 0; i < given.size(); ++i) given[i].screen_rank = static_cast<int>(i) + 1;
      for (const CoarseHit& h : given) HitToProto(h, r->add_coarse_breech_face());
      r->set_screened(static_cast<int>(req->rerank_size()));
    } else {
      // The rerank: CMC = the screen CMC + 1 (any order the coordinator must keep).
      for (const CoarseHit& h : given) {
        Candidate c;
        c.casing_id = h.casing_id;
        c.signature_id = h.signature_id;
        c.shard = h.shard;
        c.coarse_rank = h.rank;
        c.coarse_score = h.score;
        c.screen_rank = h.screen_rank;
        c.screen_cmc = h.screen_cmc;
        ComparisonResult cmp;
        cmp.cmc = (screen_cmc_.count(h.signature_id) ? screen_cmc_.at(h.signature_id) : 0) + 1;
        cmp.cells = 20;
        c.comparison = cmp;
        c.score = cmp.cmc;
        CandidateToProto(c, r->add_breech_face());
      }
      r->set_reranked(static_cast<int>(given.size()));
    }
    writer->Write(u);
    return grpc::Status::OK;
  }

  std::mutex mu_;
  int coarse_calls = 0;
  int screen_k_seen = 0;
  std::optional<std::vector<CoarseHit>> screen_sent, rerank_sent;

 private:
  int first_;
  std::vector<CoarseHit> hits_;
  std::map<std::int64_t, int> screen_cmc_;
  bool fail_screen_;
};

struct RunningShard {
  std::unique_ptr<FakeShard> service;
  std::unique_ptr<grpc::Server> server;
  std::string address;
};

RunningShard Start(std::unique_ptr<FakeShard> service) {
  RunningShard s;
  s.service = std::move(service);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(s.service.get());
  s.server = b.BuildAndStart();
  s.address = "127.0.0.1:" + std::to_string(port);
  return s;
}

// Coarse hits: ids from `first_id`, shard `shard`, scores from `top` down by 0.02.
std::vector<CoarseHit> Hits(std::int64_t first_id, int n, int shard, float top) {
  std::vector<CoarseHit> out;
  for (int i = 0; i < n; ++i) {
    CoarseHit h;
    h.signature_id = first_id + i;
    h.casing_id = first_id + i;
    h.shard = shard;
    h.score = top - 0.02f * i;
    out.push_back(h);
  }
  return out;
}

std::set<std::int64_t> Ids(const std::vector<CoarseHit>& hits) {
  std::set<std::int64_t> out;
  for (const CoarseHit& h : hits) out.insert(h.signature_id);
  return out;
}

SearchRequest Query(int rerank_k) {
  SearchRequest r;
  Signature s;
  s.kind = SignatureKind::kBreechFace;
  s.pixel_um = 6.25;
  s.values = cv::Mat1f(8, 8, 0.5f);
  r.query.breech_face = s;
  r.top_n = 10;
  r.rerank_k = rerank_k;
  return r;
}

std::unique_ptr<SearchBackend> Coordinator(const std::vector<std::string>& workers) {
  ServerConfig cfg;
  cfg.role = "coordinator";
  cfg.insecure = true;
  cfg.shard_workers = workers;
  cfg.shard_timeout_ms = 10000;
  auto c = MakeShardCoordinator(cfg);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

// Worker A (shards 0-7): ids 1-10, coarse scores 0.90..0.72; worker B
// (shards 8-15): ids 101-110, 0.89..0.71. Global coarse order: 1, 101, 2,
// 102, ... With K = 4 the coarse top 2 (ids 1 and 101) are kept; the screen
// favours id 9 (A, CMC 9) and id 108 (B, CMC 8) over everything else.
TEST(ShardCoordinatorTest, ThreePhasesKeepTheCoarseTopAndTheGlobalScreenBest) {
  const std::map<std::int64_t, int> screen{{9, 9}, {108, 8}, {3, 2}, {104, 2}};
  RunningShard a = Start(std::make_unique<FakeShard>(0, Hits(1, 10, 3, 0.90f), screen, false));
  RunningShard b = Start(std::make_unique<FakeShard>(8, Hits(101, 10, 11, 0.89f), screen, false));
  auto coordinator = Coordinator({a.address, b.address});
  ASSERT_NE(coordinator, nullptr);
  SearchCall call;
  auto r = coordinator->Search(Query(4), {}, call);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->partial);
  EXPECT_EQ(r->shards_answered, 16);

  // Phase 2: each worker screens its hits below the global coarse rank 2.
  ASSERT_TRUE(a.service->screen_sent && b.service->screen_sent);
  std::set<std::int64_t> a_screen = Ids(*a.service->screen_sent), b_screen = Ids(*b.service->screen_sent);
  EXPECT_EQ(a_screen, (std::set<std::int64_t>{2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(b_screen, (std::set<std::int64_t>{102, 103, 104, 105, 106, 107, 108, 109, 110}));
  for (const CoarseHit& h : *a.service->screen_sent) EXPECT_GT(h.rank, 2) << h.signature_id;
  // Phase 3: the coarse-kept (1 on A, 101 on B) and the screen's global best two (9 on A, 108 on B).
  ASSERT_TRUE(a.service->rerank_sent && b.service->rerank_sent);
  EXPECT_EQ(Ids(*a.service->rerank_sent), (std::set<std::int64_t>{1, 9}));
  EXPECT_EQ(Ids(*b.service->rerank_sent), (std::set<std::int64_t>{101, 108}));
  ASSERT_EQ(r->breech_face.size(), 4u);
  EXPECT_EQ(r->breech_face[0].signature_id, 9);  // CMC 10
  EXPECT_EQ(r->breech_face[0].screen_rank, 1);
  EXPECT_EQ(r->breech_face[0].coarse_rank, 17);  // 9th of A, interleaved with B
  EXPECT_EQ(r->breech_face[1].signature_id, 108);
  EXPECT_EQ(r->breech_face[1].screen_rank, 2);
  std::set<std::int64_t> kept;
  for (const Candidate& c : r->breech_face) {
    if (c.screen_rank == 0) kept.insert(c.signature_id);
  }
  EXPECT_EQ(kept, (std::set<std::int64_t>{1, 101}));
  EXPECT_EQ(a.service->screen_k_seen, 0);  // the default travels as 0

  // Screening off: two phases, the coarse top 4 reranked, no screen call.
  RunningShard c = Start(std::make_unique<FakeShard>(0, Hits(1, 10, 3, 0.90f), screen, false));
  RunningShard d = Start(std::make_unique<FakeShard>(8, Hits(101, 10, 11, 0.89f), screen, false));
  auto plain = Coordinator({c.address, d.address});
  SearchRequest q = Query(4);
  q.screen_k = -1;
  SearchCall call2;
  auto p = plain->Search(q, {}, call2);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FALSE(c.service->screen_sent.has_value());
  ASSERT_TRUE(c.service->rerank_sent && d.service->rerank_sent);
  EXPECT_EQ(Ids(*c.service->rerank_sent), (std::set<std::int64_t>{1, 2}));
  EXPECT_EQ(Ids(*d.service->rerank_sent), (std::set<std::int64_t>{101, 102}));
  EXPECT_EQ(c.service->screen_k_seen, -1);
  for (RunningShard* s : {&a, &b, &c, &d}) s->server->Shutdown();
}

TEST(ShardCoordinatorTest, AWorkerFailingTheScreenPhaseLeavesItsShardsOut) {
  const std::map<std::int64_t, int> screen{{9, 9}, {108, 8}};
  RunningShard a = Start(std::make_unique<FakeShard>(0, Hits(1, 10, 3, 0.90f), screen, false));
  RunningShard b = Start(std::make_unique<FakeShard>(8, Hits(101, 10, 11, 0.89f), screen, /*fail_screen=*/true));
  auto coordinator = Coordinator({a.address, b.address});
  ASSERT_NE(coordinator, nullptr);
  SearchCall call;
  auto r = coordinator->Search(Query(4), {}, call);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->partial);
  EXPECT_EQ(r->shards_answered, 8);
  std::vector<int> missing = call.missing_shards;
  std::sort(missing.begin(), missing.end());
  EXPECT_EQ(missing, (std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15}));
  // B is not asked to rerank (not even its coarse-kept id 101); A reranks its
  // coarse-kept id 1 and the screen's best of A's share, id 9 and the next (2).
  EXPECT_FALSE(b.service->rerank_sent.has_value());
  ASSERT_TRUE(a.service->rerank_sent.has_value());
  EXPECT_EQ(Ids(*a.service->rerank_sent), (std::set<std::int64_t>{1, 9, 2}));
  for (const Candidate& c : r->breech_face) EXPECT_LT(c.shard, 8) << c.signature_id;
  ASSERT_FALSE(r->breech_face.empty());
  EXPECT_EQ(r->breech_face[0].signature_id, 9);
  for (RunningShard* s : {&a, &b}) s->server->Shutdown();
}

}  // namespace
}  // namespace ballistics::service
