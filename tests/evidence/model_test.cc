// Fitting the evidence model and evaluating LRs on synthetic reference populations.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "ballistics/evidence.h"

namespace ballistics::evidence {
namespace {

std::vector<CmcScore> Sample(double alpha, double beta, int n_pairs, unsigned seed) {
  std::mt19937 gen(seed);
  std::gamma_distribution<double> ga(alpha, 1.0), gb(beta, 1.0);
  std::uniform_int_distribution<int> cells(16, 28);
  std::vector<CmcScore> out;
  for (int i = 0; i < n_pairs; ++i) {
    const double x = ga(gen), y = gb(gen);
    const int n = cells(gen);
    std::binomial_distribution<int> bin(n, x / (x + y));
    out.push_back({bin(gen), n});
  }
  return out;
}

ReferencePopulation Population(int n_km, int n_knm) {
  ReferencePopulation p;
  p.name = "synthetic";
  p.pipeline_version = "test-1";
  p.km = Sample(14, 6, n_km, 1);    // mean 0.7: a KM pair has ~70 % congruent cells
  p.knm = Sample(1, 19, n_knm, 2);  // mean 0.05: chance congruence
  return p;
}

TEST(EvidenceModel, LrRisesWithCmcAndStaysWithinElub) {
  auto m = FitEvidenceModel(Population(60, 700));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->small_reference);
  EXPECT_LT(m->log10_lr_lower, 0);
  EXPECT_GT(m->log10_lr_upper, 0);
  double previous = -1e9;
  for (int c = 0; c <= 20; ++c) {
    auto lr = EvaluateLr(&*m, {c, 20});
    ASSERT_TRUE(lr.ok());
    EXPECT_TRUE(lr->available);
    EXPECT_GE(lr->log10_lr_unbounded, previous) << "cmc " << c;
    previous = lr->log10_lr_unbounded;
    EXPECT_GE(lr->log10_lr, m->log10_lr_lower);
    EXPECT_LE(lr->log10_lr, m->log10_lr_upper);
    EXPECT_NEAR(lr->lr, std::pow(10.0, lr->log10_lr), 1e-9 * lr->lr);
    EXPECT_EQ(lr->km_pairs, 60);
    EXPECT_EQ(lr->knm_pairs, 700);
    EXPECT_NE(lr->basis.find("60 KM / 700 KNM"), std::string::npos) << lr->basis;
  }
  // The extremes are far beyond what 60 / 700 pairs support: clamped.
  EXPECT_TRUE(EvaluateLr(&*m, {20, 20})->at_bound);
  EXPECT_TRUE(EvaluateLr(&*m, {0, 20})->at_bound);
  EXPECT_LT(EvaluateLr(&*m, {1, 20})->log10_lr, 0);
  EXPECT_GT(EvaluateLr(&*m, {14, 20})->log10_lr, 0);
}

TEST(EvidenceModel, ElubOfSeparatedDataFollowsReferenceSizes) {
  // Perfectly separated classes: the bounds depend only on the sizes,
  // UB = (N_KNM + 1) N_KM / (N_KM + 1), LB = (N_KNM + 1) / ((N_KM + 1) N_KNM).
  ReferencePopulation p;
  p.km.assign(30, {18, 20});
  p.knm.assign(200, {1, 20});
  p.km.push_back({15, 20});
  p.knm.push_back({2, 20});
  auto m = FitEvidenceModel(p);
  ASSERT_TRUE(m.ok());
  const double nk = 31, nn = 201;
  EXPECT_NEAR(m->log10_lr_upper, std::log10((nn + 1) * nk / (nk + 1)), 0.002);
  EXPECT_NEAR(m->log10_lr_lower, std::log10((nn + 1) / ((nk + 1) * nn)), 0.002);
}

TEST(EvidenceModel, SmallPopulationIsBoundedAndFlagged) {
  auto m = FitEvidenceModel(Population(2, 5));
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->small_reference);
  // With 2 KM and 5 KNM pairs no LR beyond (5 + 1) * 2 / 3 = 4 is supported.
  EXPECT_LE(m->log10_lr_upper, std::log10(4.0) + 1e-9);
  EXPECT_GE(m->log10_lr_lower, std::log10(6.0 / 15.0) - 1e-9);
  auto lr = EvaluateLr(&*m, {20, 20});
  ASSERT_TRUE(lr.ok());
  EXPECT_TRUE(lr->small_reference);
  EXPECT_LE(lr->lr, 4.0 + 1e-9);
  EXPECT_NE(lr->basis.find("SMALL REFERENCE"), std::string::npos) << lr->basis;
}

TEST(EvidenceModel, NoReferenceNoLr) {
  auto lr = EvaluateLr(nullptr, {12, 20});
  ASSERT_TRUE(lr.ok());
  EXPECT_FALSE(lr->available);
  EXPECT_EQ(lr->basis, kNoLrBasis);
  ReferencePopulation only_knm = Population(0, 50);
  EXPECT_EQ(FitEvidenceModel(only_knm).status().code(), StatusCode::kFailedPrecondition);
  ReferencePopulation only_km = Population(50, 0);
  EXPECT_EQ(FitEvidenceModel(only_km).status().code(), StatusCode::kFailedPrecondition);
}

TEST(EvidenceModel, BadInput) {
  auto m = FitEvidenceModel(Population(30, 30));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(EvaluateLr(&*m, {5, 0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluateLr(&*m, {-1, 10}).status().code(), StatusCode::kInvalidArgument);
  EvidenceConfig bad;
  bad.confidence = 1.5;
  const Status s = FitEvidenceModel(Population(30, 30), bad).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("confidence"), std::string::npos);
  ReferencePopulation broken = Population(30, 30);
  broken.km.push_back({9, 4});
  EXPECT_EQ(FitEvidenceModel(broken).status().code(), StatusCode::kInvalidArgument);
}

TEST(EvidenceModel, ErrorRatesCountTheReference) {
  ReferencePopulation p;
  p.km = {{3, 20}, {15, 20}, {16, 20}, {18, 20}};  // one false negative at C >= 6
  p.knm = {{0, 20}, {1, 20}, {2, 20}, {6, 20}};    // one false positive
  auto m = FitEvidenceModel(p);
  ASSERT_TRUE(m.ok());
  const ErrorRates& e = m->rates;
  EXPECT_EQ(e.false_negatives, 1);
  EXPECT_EQ(e.false_positives, 1);
  EXPECT_DOUBLE_EQ(e.empirical_fnr.estimate, 0.25);
  EXPECT_NEAR(e.p_knm.estimate, 9.0 / 80.0, 1e-12);
  EXPECT_NEAR(e.binomial_fpr.estimate, BinomialUpperTail(6, 20, 9.0 / 80.0), 1e-12);
  EXPECT_LE(e.binomial_fpr.lower, e.binomial_fpr.estimate);
  EXPECT_GE(e.binomial_fpr.upper, e.binomial_fpr.estimate);
  EXPECT_LE(e.binomial_fnr.lower, e.binomial_fnr.estimate);
  EXPECT_GE(e.binomial_fnr.upper, e.binomial_fnr.estimate);
  // Chance tail of one pair: P(Bin(20, p_KNM) >= 6).
  auto lr = EvaluateLr(&*m, {6, 20});
  EXPECT_NEAR(lr->chance_tail.estimate, BinomialUpperTail(6, 20, 9.0 / 80.0), 1e-12);
}

TEST(EvidenceModel, JsonRoundTrip) {
  ReferencePopulation p = Population(40, 300);
  p.calibre = "9mm Luger";
  p.kind = SignatureKind::kFiringPin;
  auto m = FitEvidenceModel(p);
  ASSERT_TRUE(m.ok());
  auto back = ModelFromJson(ModelToJson(*m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->kind, SignatureKind::kFiringPin);
  EXPECT_EQ(back->calibre, "9mm Luger");
  EXPECT_EQ(back->km.size(), 40u);
  EXPECT_DOUBLE_EQ(back->log10_lr_upper, m->log10_lr_upper);
  EXPECT_DOUBLE_EQ(EvaluateLr(&*back, {9, 22})->log10_lr, EvaluateLr(&*m, {9, 22})->log10_lr);

  EXPECT_EQ(ModelFromJson("not json").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ModelFromJson("{\"format\": \"other\"}").status().code(), StatusCode::kInvalidArgument);
  std::string text = ModelToJson(*m);
  text.replace(text.find("\"FP\""), 4, "\"XX\"");
  const Status s = ModelFromJson(text).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("XX"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace ballistics::evidence
