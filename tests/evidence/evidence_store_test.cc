// Reference populations and LR models in PostgreSQL (label db): a model fitted
// by the evidence stage goes through the store (EvidenceDb, migration 0030) and
// comes back giving the same LRs; calibre fallback, replacement and bad input.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ballistics/evidence.h"
#include "ballistics/store.h"
#include "store/test_database.h"

namespace ballistics {
namespace {

using testing::TestDatabase;

evidence::EvidenceModel Fit(const std::string& name, const std::string& calibre, int km_cmc) {
  evidence::ReferencePopulation p;
  p.name = name;
  p.calibre = calibre;
  p.pipeline_version = "norm-test";
  for (int i = 0; i < 25; ++i) p.km.push_back({km_cmc + i % 5, 24});
  for (int i = 0; i < 60; ++i) p.knm.push_back({i % 3, 22});
  auto m = evidence::FitEvidenceModel(p);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

store::ReferenceModelRecord Record(const evidence::EvidenceModel& m) {
  store::ReferenceModelRecord r;
  r.name = m.name;
  r.kind = m.kind;
  r.calibre = m.calibre;
  r.pipeline_version = m.pipeline_version;
  r.model = std::string(evidence::EvidenceModel::kModelName);
  r.params_json = evidence::ModelToJson(m);
  for (const auto& s : m.km) r.scores.push_back({true, s.cmc, s.cells});
  for (const auto& s : m.knm) r.scores.push_back({false, s.cmc, s.cells});
  return r;
}

class EvidenceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    auto s = store::Store::Connect(db_.url());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE((*s)->Migrate().ok());
    auto e = store::EvidenceDb::Connect(db_.url());
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    edb_ = std::move(e).value();
  }
  TestDatabase db_;
  std::unique_ptr<store::EvidenceDb> edb_;
};

TEST_F(EvidenceStoreTest, RoundTripGivesTheSameLrs) {
  const evidence::EvidenceModel m = Fit("lab-9mm", "", 14);
  auto id = edb_->SaveReferenceModel(Record(m));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(db_.Count("reference_scores"), 85);
  auto rec = edb_->FindReferenceModel(SignatureKind::kBreechFace, "9mm Luger", "norm-test");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();  // falls back to the any-calibre model
  EXPECT_EQ(rec->id, *id);
  EXPECT_EQ(rec->scores.size(), 85u);
  auto back = evidence::ModelFromJson(rec->params_json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  for (int c : {0, 3, 8, 15}) {
    EXPECT_DOUBLE_EQ(evidence::EvaluateLr(&*back, {c, 24})->log10_lr, evidence::EvaluateLr(&m, {c, 24})->log10_lr);
  }
  // Other pipeline version or kind: nothing.
  EXPECT_EQ(edb_->FindReferenceModel(SignatureKind::kBreechFace, "", "norm-other").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(edb_->FindReferenceModel(SignatureKind::kFiringPin, "", "norm-test").status().code(),
            StatusCode::kNotFound);
}

TEST_F(EvidenceStoreTest, CalibreSpecificModelWinsAndSaveReplaces) {
  ASSERT_TRUE(edb_->SaveReferenceModel(Record(Fit("any", "", 14))).ok());
  ASSERT_TRUE(edb_->SaveReferenceModel(Record(Fit("nine", "9mm Luger", 12))).ok());
  auto rec = edb_->FindReferenceModel(SignatureKind::kBreechFace, "9mm Luger", "norm-test");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->name, "nine");
  auto other = edb_->FindReferenceModel(SignatureKind::kBreechFace, ".40 S&W", "norm-test");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->name, "any");
  // Same key again: replaced, not duplicated.
  ASSERT_TRUE(edb_->SaveReferenceModel(Record(Fit("nine", "9mm Luger", 16))).ok());
  EXPECT_EQ(db_.Count("reference_populations"), 2);
  EXPECT_EQ(db_.Count("evidence_models"), 2);
  EXPECT_EQ(db_.Count("reference_scores"), 170);
  auto list = edb_->ListReferenceModels();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
}

TEST_F(EvidenceStoreTest, BadInput) {
  store::ReferenceModelRecord r = Record(Fit("x", "", 14));
  r.pipeline_version = "";
  EXPECT_EQ(edb_->SaveReferenceModel(r).status().code(), StatusCode::kInvalidArgument);
  r = Record(Fit("x", "", 14));
  r.scores.push_back({true, 9, 4});  // more CMCs than cells: the schema refuses, nothing is written
  EXPECT_FALSE(edb_->SaveReferenceModel(r).ok());
  EXPECT_EQ(db_.Count("reference_populations"), 0);
  r = Record(Fit("x", "", 14));
  r.params_json = "{not json";
  EXPECT_FALSE(edb_->SaveReferenceModel(r).ok());
  EXPECT_EQ(db_.Count("reference_populations"), 0);
}

}  // namespace
}  // namespace ballistics
