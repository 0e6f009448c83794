// Search and the examiner workflow through the real server: upload Fadul
// scans, search (progress stream, then the result), mates ranked first, record
// a hit, see the lead; agency scoping of the candidates; deadlines.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>

#include "api_server.h"
#include "ballistics/api_store.h"
#include "ballistics/v1/leads.grpc.pb.h"
#include "ballistics/v1/review.grpc.pb.h"
#include "ballistics/v1/search.grpc.pb.h"

namespace ballistics {
namespace {

using testing::HttpGet;
using testing::MetricValue;
using testing::Authorize;
using testing::FadulBytes;
using testing::Metadata;
using testing::Upload;

// scan name -> slide, from the data set's own ground truth.
std::map<std::string, int> Slides() {
  std::map<std::string, int> m;
  std::ifstream f(testing::SharedDataDir() / "fadul" / "ground_truth.csv");
  std::string line;
  std::getline(f, line);
  while (std::getline(f, line)) {
    const auto a = line.find(','), b = line.find(',', a + 1);
    m[line.substr(0, a)] = std::stoi(line.substr(a + 1, b - a - 1));
  }
  return m;
}

class ApiSearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    tokens_ = testing::Bootstrap(db_.url());
    ASSERT_FALSE(tokens_.examiner_b.empty());
    server_.Start(db_.url());
    ASSERT_TRUE(server_.channel()) << server_.Log();
  }
  void TearDown() override { EXPECT_EQ(server_.Stop(), 0) << server_.Log(); }

  std::int64_t Put(const std::string& token, const std::string& agency, const std::string& scan) {
    auto up = Upload(server_.channel(), token, FadulBytes(scan), Metadata(agency, "Fadul", scan));
    EXPECT_TRUE(up.status.ok()) << scan << ": " << up.status.error_message();
    names_[up.response.casing_id()] = scan;
    return up.response.casing_id();
  }

  struct SearchRun {
    grpc::Status status;
    std::vector<v1::SearchProgress> progress;
    v1::SearchResult result;
    bool got_result = false;
  };
  SearchRun Search(const std::string& token, std::int64_t casing, int deadline_ms = 300000) {
    auto stub = v1::SearchService::NewStub(server_.channel());
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
    v1::SearchRequest req;
    req.set_casing_id(casing);
    req.set_top_n(10);
    auto reader = stub->Search(&ctx, req);
    SearchRun run;
    v1::SearchUpdate u;
    while (reader->Read(&u)) {
      if (u.has_progress()) run.progress.push_back(u.progress());
      if (u.has_result()) {
        run.result = u.result();
        run.got_result = true;
      }
    }
    run.status = reader->Finish();
    return run;
  }

  testing::TestDatabase db_;
  testing::Tokens tokens_;
  testing::ApiServer server_;
  std::map<std::int64_t, std::string> names_;
};

TEST_F(ApiSearchTest, MatesRankFirstHitBecomesLead) {
  const auto slides = Slides();
  const std::int64_t query = Put(tokens_.technician_a, "Agency A", "fadul-1-1");
  for (const char* s : {"fadul-1-2", "fadul-F", "fadul-2-1", "fadul-C", "fadul-3-1", "fadul-3-2"}) {
    Put(tokens_.technician_a, "Agency A", s);
  }
  // A mate of 2-1 and C in agency B: agency A's searches must never show it.
  const std::int64_t b_casing = Put(tokens_.technician_b, "Agency B", "fadul-2-2");

  SearchRun run = Search(tokens_.examiner_a, query);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message() << "\n" << server_.Log();
  ASSERT_TRUE(run.got_result);
  EXPECT_FALSE(run.progress.empty());
  for (std::size_t i = 1; i < run.progress.size(); ++i) {
    EXPECT_GE(run.progress[i].fraction_done(), run.progress[i - 1].fraction_done());
  }
  const v1::SearchResult& r = run.result;
  EXPECT_GT(r.search_id(), 0);
  EXPECT_FALSE(r.partial());
  EXPECT_EQ(r.shards_answered(), r.shards_total());
  ASSERT_GE(r.breech_face_size(), 2) << r.DebugString();
  // The two mates of fadul-1-1 (same slide) are the top two breech-face candidates.
  std::set<int> top_slides;
  for (int i = 0; i < 2; ++i) {
    const auto& c = r.breech_face(i);
    EXPECT_EQ(c.rank(), i + 1);
    EXPECT_EQ(slides.at(names_.at(c.casing_id())), 1) << "rank " << i + 1 << ": " << names_.at(c.casing_id());
    EXPECT_EQ(c.agency(), "Agency A");
    EXPECT_EQ(c.breech_face().kind(), v1::BREECH_FACE);
    EXPECT_GT(c.breech_face().cell_count(), 0);
  }
  for (const auto& c : r.breech_face()) {
    EXPECT_NE(c.casing_id(), b_casing);
    EXPECT_NE(c.casing_id(), query);
  }
  for (const auto& c : r.combined()) EXPECT_NE(c.casing_id(), b_casing);
  EXPECT_EQ(r.breech_face(0).breech_face().cmc_count() >= r.breech_face(1).breech_face().cmc_count(), true);

  // GetSearch returns what was recorded.
  {
    auto stub = v1::SearchService::NewStub(server_.channel());
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.reader_a);
    v1::GetSearchRequest req;
    req.set_search_id(r.search_id());
    v1::SearchResult again;
    ASSERT_TRUE(stub->GetSearch(&ctx, req, &again).ok());
    ASSERT_EQ(again.breech_face_size(), r.breech_face_size());
    EXPECT_EQ(again.breech_face(0).casing_id(), r.breech_face(0).casing_id());
    EXPECT_EQ(again.breech_face(0).comparison_id(), r.breech_face(0).comparison_id());
  }

  // Pending reviews, a hit, the lead.
  auto review = v1::ReviewService::NewStub(server_.channel());
  int pending_before = 0;
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_a);
    v1::ListPendingReviewsResponse out;
    ASSERT_TRUE(review->ListPendingReviews(&ctx, v1::ListPendingReviewsRequest(), &out).ok());
    pending_before = out.reviews_size();
    EXPECT_EQ(pending_before, r.combined_size());
  }
  const v1::Candidate& best = r.combined(0);
  v1::Decision decision;
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_a);
    v1::RecordDecisionRequest req;
    req.set_comparison_id(best.comparison_id());
    req.set_outcome(v1::HIT);
    req.set_notes("agreement of breech-face marks");
    grpc::Status s = review->RecordDecision(&ctx, req, &decision);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(decision.lead_id(), 0);
    EXPECT_EQ(decision.examiner(), "examiner-a");
  }
  {
    // Another agency cannot decide on this comparison (row-level security: not found).
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_b);
    v1::RecordDecisionRequest req;
    req.set_comparison_id(best.comparison_id());
    req.set_outcome(v1::NO_HIT);
    v1::Decision d;
    EXPECT_EQ(review->RecordDecision(&ctx, req, &d).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_a);
    v1::ListPendingReviewsResponse out;
    ASSERT_TRUE(review->ListPendingReviews(&ctx, v1::ListPendingReviewsRequest(), &out).ok());
    EXPECT_EQ(out.reviews_size(), pending_before - 1);
  }
  auto leads = v1::LeadService::NewStub(server_.channel());
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.reader_a);
    v1::GetLinkedRequest req;
    req.set_casing_id(query);
    v1::LinkedGraph g;
    ASSERT_TRUE(leads->GetLinked(&ctx, req, &g).ok());
    ASSERT_EQ(g.leads_size(), 1);
    EXPECT_EQ(g.leads(0).lead_id(), decision.lead_id());
    std::set<std::int64_t> ids;
    for (const auto& c : g.casings()) ids.insert(c.casing_id());
    EXPECT_EQ(ids, (std::set<std::int64_t>{query, best.casing_id()}));
  }
  {
    // Transitively: a hit from the candidate to a third casing links all three.
    SearchRun second = Search(tokens_.examiner_a, best.casing_id());
    ASSERT_TRUE(second.status.ok()) << second.status.error_message();
    const v1::Candidate* third = nullptr;
    for (const auto& c : second.result.combined()) {
      if (c.casing_id() != query) {
        third = &c;
        break;
      }
    }
    ASSERT_NE(third, nullptr);
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_a);
    v1::RecordDecisionRequest req;
    req.set_comparison_id(third->comparison_id());
    req.set_outcome(v1::HIT);
    v1::Decision d;
    ASSERT_TRUE(review->RecordDecision(&ctx, req, &d).ok());
    grpc::ClientContext ctx2;
    Authorize(&ctx2, tokens_.examiner_a);
    v1::GetLinkedRequest lreq;
    lreq.set_casing_id(query);
    v1::LinkedGraph g;
    ASSERT_TRUE(leads->GetLinked(&ctx2, lreq, &g).ok());
    EXPECT_EQ(g.casings_size(), 3);
    EXPECT_EQ(g.leads_size(), 2);
  }

  // Examiner of agency B searching with agency A's casing.
  SearchRun denied = Search(tokens_.examiner_b, query);
  EXPECT_EQ(denied.status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << denied.status.error_message();
  // Technicians do not search.
  EXPECT_EQ(Search(tokens_.technician_a, query).status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // A deadline too short to finish: the call ends with DEADLINE_EXCEEDED and no
  // search is left running on the server (it was told to stop, or never began).
  SearchRun late = Search(tokens_.examiner_a, query, 30);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << late.status.error_message();
  bool stopped = false;
  for (int i = 0; i < 100 && !stopped; ++i) {
    stopped = testing::QueryInt(db_.url(), "SELECT count(*) FROM searches WHERE status = 'running'") == 0;
    if (!stopped) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(stopped) << server_.Log();
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM searches WHERE status = 'done'"), 2);
}


// A search whose result cannot be stored (a fault: every insert into
// comparisons raises, so the result's transaction rolls back) is marked failed
// with the reason instead of staying 'running'; GetSearch says so. With the
// fault gone, the next search is stored.
TEST_F(ApiSearchTest, SearchWhoseResultCannotBeStoredIsMarkedFailed) {
  const std::int64_t query = Put(tokens_.technician_a, "Agency A", "fadul-1-1");
  Put(tokens_.technician_a, "Agency A", "fadul-1-2");
  ASSERT_TRUE(testing::ExecSql(db_.url(),
                               "CREATE FUNCTION fault_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                               "$$BEGIN RAISE EXCEPTION 'fault: comparisons refused'; END$$"));
  ASSERT_TRUE(testing::ExecSql(db_.url(), "CREATE TRIGGER fault_refuse BEFORE INSERT ON comparisons "
                                          "FOR EACH ROW EXECUTE FUNCTION fault_refuse()"));
  SearchRun run = Search(tokens_.examiner_a, query);
  EXPECT_FALSE(run.status.ok());
  EXPECT_FALSE(run.got_result);
  EXPECT_NE(run.status.error_message().find("fault: comparisons refused"), std::string::npos)
      << run.status.error_message();
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM searches WHERE status = 'running'"), 0);
  const std::int64_t id = testing::QueryInt(db_.url(), "SELECT max(id) FROM searches WHERE status = 'failed'");
  ASSERT_GT(id, 0) << server_.Log();
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM comparisons"), 0);  // nothing half-written

  auto stub = v1::SearchService::NewStub(server_.channel());
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.reader_a);
    v1::GetSearchRequest req;
    req.set_search_id(id);
    v1::SearchResult r;
    ASSERT_TRUE(stub->GetSearch(&ctx, req, &r).ok());
    EXPECT_EQ(r.status(), "failed");
    EXPECT_NE(r.failure_reason().find("storing the result failed"), std::string::npos) << r.failure_reason();
    EXPECT_NE(r.failure_reason().find("fault: comparisons refused"), std::string::npos) << r.failure_reason();
    EXPECT_EQ(r.breech_face_size(), 0);
  }

  ASSERT_TRUE(testing::ExecSql(db_.url(), "DROP TRIGGER fault_refuse ON comparisons"));
  SearchRun again = Search(tokens_.examiner_a, query);
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM searches WHERE status = 'done'"), 1);
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.reader_a);
    v1::GetSearchRequest req;
    req.set_search_id(again.result.search_id());
    v1::SearchResult r;
    ASSERT_TRUE(stub->GetSearch(&ctx, req, &r).ok());
    EXPECT_EQ(r.status(), "done");
    EXPECT_EQ(r.failure_reason(), "");
    EXPECT_EQ(r.missing_shards_size(), 0);
    EXPECT_EQ(r.breech_face_size(), again.result.breech_face_size());
  }
}

// A ballisticsd that stops mid-search (crash, kill) leaves its search
// 'running'. The next server to start fails the running searches whose
// process is gone (no instance lock held), with the reason, and leaves alone
// the running search of a live server and the finished ones.
TEST_F(ApiSearchTest, SearchesLeftRunningByAStoppedServerAreFailedAtStart) {
  const std::int64_t casing = Put(tokens_.technician_a, "Agency A", "fadul-1-1");
  Put(tokens_.technician_a, "Agency A", "fadul-1-2");
  // This database's instance locks (other tests' servers may share the cluster).
  const std::string instance_lock =
      "FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND database = (SELECT oid FROM "
      "pg_database WHERE datname = current_database()) AND classid = " +
      std::to_string(store::kSearchInstanceLockClass);
  ASSERT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) " + instance_lock), 1) << server_.Log();
  const std::int64_t live = testing::QueryInt(db_.url(), "SELECT objid::bigint " + instance_lock);
  // A search records the instance of the server that runs it.
  SearchRun run = Search(tokens_.examiner_a, casing);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT instance_id FROM searches WHERE id = " +
                                             std::to_string(run.result.search_id())),
            live);

  const std::string gone = std::to_string(live == 1 ? 2 : live - 1);  // holds no lock
  auto insert = [&](const std::string& status, const std::string& instance) {
    return testing::QueryInt(
        db_.url(), "INSERT INTO searches (agency_id, query_casing_id, requested_by, status, instance_id, finished_at) "
                   "SELECT agency_id, id, 'test', '" + status + "', " + instance + ", " +
                       (status == "running" ? "NULL" : "now()") + " FROM casings WHERE id = " +
                       std::to_string(casing) + " RETURNING id");
  };
  const std::int64_t orphan = insert("running", gone);
  const std::int64_t legacy = insert("running", "NULL");  // from before migration 0070
  const std::int64_t alive = insert("running", std::to_string(live));
  const std::int64_t done = insert("done", gone);
  auto status_of = [&](std::int64_t id) {
    return testing::QueryInt(db_.url(), "SELECT CASE status WHEN 'running' THEN 0 WHEN 'failed' THEN 1 WHEN 'done' "
                                        "THEN 2 ELSE 3 END FROM searches WHERE id = " + std::to_string(id));
  };
  auto interrupted = [&](std::int64_t id) {
    return testing::QueryInt(db_.url(), "SELECT count(*) FROM searches WHERE status = 'failed' AND finished_at IS "
                                        "NOT NULL AND failure_reason = '" +
                                            std::string(store::kInterruptedSearchReason) +
                                            "' AND id = " + std::to_string(id)) == 1;
  };

  // A second server (another coordinator on the same database) starts.
  testing::ApiServer second;
  second.Start(db_.url());
  ASSERT_TRUE(second.channel()) << second.Log();
  EXPECT_TRUE(interrupted(orphan));
  EXPECT_TRUE(interrupted(legacy));
  EXPECT_EQ(status_of(alive), 0) << "the search of a live server was failed";
  EXPECT_EQ(status_of(done), 2);
  EXPECT_EQ(status_of(run.result.search_id()), 2);
  EXPECT_EQ(second.Stop(), 0) << second.Log();

  // The live server stops with its search still 'running'; the next start fails it.
  EXPECT_EQ(server_.Stop(), 0) << server_.Log();
  EXPECT_EQ(status_of(alive), 0);
  server_.Start(db_.url());
  ASSERT_TRUE(server_.channel()) << server_.Log();
  EXPECT_TRUE(interrupted(alive));
  EXPECT_EQ(status_of(done), 2);
  EXPECT_EQ(status_of(run.result.search_id()), 2);
}

// The rerank signature cache is on /metrics (single role): every signature is
// held with the default budget, so a search's candidates are hits, no misses.
TEST_F(ApiSearchTest, MetricsReportTheRerankCache) {
  const std::int64_t query = Put(tokens_.technician_a, "Agency A", "fadul-1-1");
  Put(tokens_.technician_a, "Agency A", "fadul-1-2");
  SearchRun run = Search(tokens_.examiner_a, query);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_GT(server_.metrics_port(), 0);
  const std::string body = HttpGet(server_.metrics_port(), "/metrics");
  const double signatures = MetricValue(body, "ballistics_index_signatures");
  EXPECT_GT(signatures, 0) << body;
  EXPECT_EQ(MetricValue(body, "ballistics_rerank_cache_entries"), signatures) << body;
  EXPECT_GT(MetricValue(body, "ballistics_rerank_cache_bytes"), 0) << body;
  EXPECT_GT(MetricValue(body, "ballistics_rerank_cache_hits_total"), 0) << body;
  EXPECT_EQ(MetricValue(body, "ballistics_rerank_cache_misses_total"), 0) << body;
  EXPECT_EQ(MetricValue(body, "ballistics_rerank_cache_evictions_total"), 0) << body;
  EXPECT_NE(body.find("# TYPE ballistics_rerank_cache_hits_total counter"), std::string::npos) << body;
}

}  // namespace
}  // namespace ballistics
