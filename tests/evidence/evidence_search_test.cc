// Evidence strength through the real server (labels db, realdata): with a
// reference model stored (EvidenceDb, as `evidence build-reference
// --database-url` does), every search candidate's score carries its LR and
// basis, recorded with the comparison (GetSearch and GetComparison return the
// same); without one, no LR and the basis says so.
#include <gtest/gtest.h>

#include <string>

#include "ballistics/evidence.h"
#include "ballistics/preprocess.h"
#include "ballistics/v1/review.grpc.pb.h"
#include "ballistics/v1/search.grpc.pb.h"
#include "service/api_server.h"

namespace ballistics {
namespace {

using testing::Authorize;

// A reference population shaped like CMC counts (KM high, KNM low); what it
// says is irrelevant here: the test checks that the server applies the stored
// model, whatever it is, and says which one.
evidence::EvidenceModel StoredModel(const std::string& url, const std::string& name = "search-test reference",
                                    const std::string& calibre = "") {
  evidence::ReferencePopulation p;
  p.name = name;
  p.calibre = calibre;
  p.pipeline_version = std::string(kPipelineVersion);
  for (int i = 0; i < 30; ++i) p.km.push_back({10 + i % 12, 22});
  for (int i = 0; i < 300; ++i) p.knm.push_back({i % 4, 22});
  auto m = evidence::FitEvidenceModel(p);
  EXPECT_TRUE(m.ok());
  store::ReferenceModelRecord r;
  r.name = m->name;
  r.calibre = calibre;
  r.kind = m->kind;
  r.pipeline_version = m->pipeline_version;
  r.model = std::string(evidence::EvidenceModel::kModelName);
  r.params_json = evidence::ModelToJson(*m);
  auto db = store::EvidenceDb::Connect(url);
  EXPECT_TRUE(db.ok());
  EXPECT_TRUE((*db)->SaveReferenceModel(r).ok());
  return *m;
}

class EvidenceSearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    tokens_ = testing::Bootstrap(db_.url());
    server_.Start(db_.url());
    ASSERT_TRUE(server_.channel()) << server_.Log();
    for (const char* s : {"fadul-1-1", "fadul-1-2", "fadul-2-1"}) {
      auto up = testing::Upload(server_.channel(), tokens_.technician_a, testing::FadulBytes(s),
                                testing::Metadata("Agency A", "Fadul", s));
      ASSERT_TRUE(up.status.ok()) << s << ": " << up.status.error_message();
      ids_.push_back(up.response.casing_id());
    }
  }
  void TearDown() override { EXPECT_EQ(server_.Stop(), 0) << server_.Log(); }

  v1::SearchResult Search() {
    auto stub = v1::SearchService::NewStub(server_.channel());
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_a);
    v1::SearchRequest req;
    req.set_casing_id(ids_[0]);
    auto reader = stub->Search(&ctx, req);
    v1::SearchUpdate u;
    v1::SearchResult result;
    while (reader->Read(&u)) {
      if (u.has_result()) result = u.result();
    }
    const grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << server_.Log();
    return result;
  }

  testing::TestDatabase db_;
  testing::Tokens tokens_;
  testing::ApiServer server_;
  std::vector<std::int64_t> ids_;
};

TEST_F(EvidenceSearchTest, CandidatesCarryTheStoredModelsLr) {
  const evidence::EvidenceModel model = StoredModel(db_.url());
  const v1::SearchResult r = Search();
  ASSERT_EQ(r.breech_face_size(), 2) << r.DebugString();
  for (const auto& c : r.breech_face()) {
    const v1::CmcScore& s = c.breech_face();
    ASSERT_TRUE(s.has_log10_likelihood_ratio()) << s.DebugString();
    auto expected = evidence::EvaluateLr(&model, {s.cmc_count(), s.cell_count()});
    ASSERT_TRUE(expected.ok());
    EXPECT_NEAR(s.log10_likelihood_ratio(), expected->log10_lr, 1e-9);
    EXPECT_EQ(s.likelihood_ratio_basis(), expected->basis);
    EXPECT_NE(s.likelihood_ratio_basis().find("search-test reference"), std::string::npos);
  }
  // The examiner's detail view shows the same recorded LR.
  auto review = v1::ReviewService::NewStub(server_.channel());
  grpc::ClientContext ctx;
  Authorize(&ctx, tokens_.examiner_a);
  v1::GetComparisonRequest req;
  req.set_comparison_id(r.breech_face(0).comparison_id());
  v1::ComparisonDetail d;
  const grpc::Status st = review->GetComparison(&ctx, req, &d);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_NEAR(d.score().log10_likelihood_ratio(), r.breech_face(0).breech_face().log10_likelihood_ratio(), 1e-9);
}

// A model of the query casing's calibre wins over a newer any-calibre one.
TEST_F(EvidenceSearchTest, ModelOfTheQueryCalibreIsPreferred) {
  StoredModel(db_.url(), "9mm reference", "9mm Luger");
  StoredModel(db_.url(), "any-calibre reference", "");
  const v1::SearchResult r = Search();
  ASSERT_GE(r.breech_face_size(), 1) << r.DebugString();
  for (const auto& c : r.breech_face()) {
    const std::string& basis = c.breech_face().likelihood_ratio_basis();
    EXPECT_NE(basis.find("9mm reference"), std::string::npos) << basis;
  }
}

TEST_F(EvidenceSearchTest, WithoutModelNoLr) {
  const v1::SearchResult r = Search();
  ASSERT_GE(r.breech_face_size(), 1) << r.DebugString();
  for (const auto& c : r.breech_face()) {
    EXPECT_FALSE(c.breech_face().has_log10_likelihood_ratio());
    EXPECT_EQ(c.breech_face().likelihood_ratio_basis(), evidence::kNoLrBasis);
  }
}

}  // namespace
}  // namespace ballistics
