// Distributions of the evidence stage against closed forms and exact sums.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "ballistics/evidence.h"

namespace ballistics::evidence {
namespace {

TEST(BinomialTails, MatchExactSums) {
  // sum_{i>=6} C(20,i) 0.05^i 0.95^(20-i), computed with Python's math.comb.
  EXPECT_NEAR(BinomialUpperTail(6, 20, 0.05), 0.0003292943245282764, 1e-15);
  EXPECT_NEAR(BinomialLowerTail(2, 10, 0.5), 0.0546875, 1e-14);
  EXPECT_DOUBLE_EQ(BinomialUpperTail(0, 10, 0.3), 1.0);
  EXPECT_DOUBLE_EQ(BinomialUpperTail(11, 10, 0.3), 0.0);
  EXPECT_DOUBLE_EQ(BinomialLowerTail(10, 10, 0.3), 1.0);
  EXPECT_DOUBLE_EQ(BinomialUpperTail(1, 10, 0.0), 0.0);
  EXPECT_NEAR(BinomialUpperTail(4, 10, 0.3) + BinomialLowerTail(3, 10, 0.3), 1.0, 1e-12);
}

TEST(ClopperPearson, ClosedForms) {
  // k = 0: upper = 1 - (alpha/2)^(1/n); k = n: lower = (alpha/2)^(1/n).
  const Interval zero = ClopperPearson(0, 10, 0.95);
  EXPECT_DOUBLE_EQ(zero.lower, 0.0);
  EXPECT_NEAR(zero.upper, 1 - std::pow(0.025, 0.1), 1e-9);
  const Interval all = ClopperPearson(10, 10, 0.95);
  EXPECT_NEAR(all.lower, std::pow(0.025, 0.1), 1e-9);
  EXPECT_DOUBLE_EQ(all.upper, 1.0);
  // Tabulated: 5 of 10 -> [0.1871, 0.8129].
  const Interval half = ClopperPearson(5, 10, 0.95);
  EXPECT_NEAR(half.lower, 0.18709, 1e-4);
  EXPECT_NEAR(half.upper, 0.81291, 1e-4);
  EXPECT_DOUBLE_EQ(half.estimate, 0.5);
  const Interval none = ClopperPearson(0, 0, 0.95);
  EXPECT_DOUBLE_EQ(none.lower, 0.0);
  EXPECT_DOUBLE_EQ(none.upper, 1.0);
}

TEST(BetaBinomial, PmfSumsToOne) {
  for (const BetaBinomial bb : {BetaBinomial{0.5, 0.5}, BetaBinomial{2, 30}, BetaBinomial{40, 8}}) {
    double sum = 0;
    for (int k = 0; k <= 25; ++k) sum += std::exp(BetaBinomialLogPmf(k, 25, bb));
    EXPECT_NEAR(sum, 1.0, 1e-10);
  }
  EXPECT_TRUE(std::isinf(BetaBinomialLogPmf(-1, 5, {1, 1})));
  EXPECT_TRUE(std::isinf(BetaBinomialLogPmf(6, 5, {1, 1})));
}

std::vector<CmcScore> Sample(const BetaBinomial& bb, int n_pairs, std::mt19937& gen) {
  std::gamma_distribution<double> ga(bb.alpha, 1.0), gb(bb.beta, 1.0);
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

TEST(BetaBinomial, FitRecoversParameters) {
  std::mt19937 gen(7);
  for (const BetaBinomial truth : {BetaBinomial{8, 2}, BetaBinomial{1.5, 25}}) {
    const std::vector<CmcScore> s = Sample(truth, 3000, gen);
    auto fit = FitBetaBinomial(s);
    ASSERT_TRUE(fit.ok()) << fit.status().ToString();
    EXPECT_NEAR(fit->Mean(), truth.Mean(), 0.01);
    const double precision = fit->alpha + fit->beta, true_precision = truth.alpha + truth.beta;
    EXPECT_GT(precision, true_precision / 1.5);
    EXPECT_LT(precision, true_precision * 1.5);
  }
}

TEST(BetaBinomial, AllZeroCountsStayFinite) {
  std::vector<CmcScore> zeros(50, CmcScore{0, 20});
  auto fit = FitBetaBinomial(zeros);
  ASSERT_TRUE(fit.ok());
  EXPECT_LT(fit->Mean(), 1e-3);
  EXPECT_TRUE(std::isfinite(BetaBinomialLogPmf(20, 20, *fit)));
}

TEST(BetaBinomial, BadInput) {
  EXPECT_EQ(FitBetaBinomial({}).status().code(), StatusCode::kInvalidArgument);
  const std::vector<CmcScore> bad = {{5, 3}};
  const Status s = FitBetaBinomial(bad).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("cmc=5 cells=3"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace ballistics::evidence
