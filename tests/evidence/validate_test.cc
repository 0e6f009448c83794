// Cllr, PAV, ECE, cross-validation and plots on synthetic data.
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "ballistics/evidence.h"

namespace ballistics::evidence {
namespace {

std::vector<ScoredLr> Lrs(std::vector<double> km, std::vector<double> knm) {
  std::vector<ScoredLr> out;
  for (double v : km) out.push_back({true, v, true});
  for (double v : knm) out.push_back({false, v, true});
  return out;
}

TEST(Metrics, NeutralSystemHasCllrOne) {
  auto m = ComputeMetrics(Lrs({0, 0, 0}, {0, 0}));
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(m->cllr, 1.0);
  EXPECT_DOUBLE_EQ(m->cllr_min, 1.0);  // one PAV block: the prior, LR 1
  EXPECT_EQ(m->km_misleading, 0);
  EXPECT_EQ(m->knm_misleading, 0);
}

TEST(Metrics, CllrClosedFormAndPav) {
  // Cllr = 1/2 [ mean log2(1 + 1/LR_km) + mean log2(1 + LR_knm) ].
  auto m = ComputeMetrics(Lrs({1, 2}, {-1, 0.5}));
  ASSERT_TRUE(m.ok());
  const double expected =
      0.5 * ((std::log2(1 + 0.1) + std::log2(1 + 0.01)) / 2 + (std::log2(1 + 0.1) + std::log2(1 + std::sqrt(10.0))) / 2);
  EXPECT_NEAR(m->cllr, expected, 1e-12);
  EXPECT_EQ(m->knm_misleading, 1);
  EXPECT_DOUBLE_EQ(m->rmed, 0.5);
  EXPECT_DOUBLE_EQ(m->max_log10_lr_knm, 0.5);
  // Separated classes: PAV gives +-inf, Cllr-min = 0.
  EXPECT_DOUBLE_EQ(m->cllr_min, 0.0);
  EXPECT_NEAR(m->cllr_cal, m->cllr, 1e-12);
}

TEST(Metrics, CllrMinNeverAboveCllr) {
  std::mt19937 gen(3);
  std::normal_distribution<double> km(1.0, 1.5), knm(-1.0, 1.5);
  std::vector<double> a, b;
  for (int i = 0; i < 200; ++i) a.push_back(km(gen)), b.push_back(knm(gen));
  auto lrs = Lrs(a, b);
  auto m = ComputeMetrics(lrs);
  ASSERT_TRUE(m.ok());
  EXPECT_GT(m->cllr_min, 0.0);
  EXPECT_LE(m->cllr_min, m->cllr);
  // PAV output is non-decreasing in the input score.
  const std::vector<double> pav = PavLog10Lr(lrs);
  for (std::size_t i = 0; i < lrs.size(); ++i) {
    for (std::size_t j = 0; j < lrs.size(); ++j) {
      if (lrs[i].log10_lr < lrs[j].log10_lr) {
        EXPECT_LE(pav[i], pav[j]);
      }
    }
  }
  // A badly calibrated copy (LRs 100 x too strong) discriminates the same: same Cllr-min, worse Cllr.
  for (auto& s : lrs) s.log10_lr *= 3;
  auto worse = ComputeMetrics(lrs);
  EXPECT_NEAR(worse->cllr_min, m->cllr_min, 1e-12);
  EXPECT_GT(worse->cllr, m->cllr);
}

TEST(Metrics, TiesArePooled) {
  // Same score for a KM and a KNM pair: PAV cannot separate them.
  auto lrs = Lrs({2}, {2});
  const std::vector<double> pav = PavLog10Lr(lrs);
  EXPECT_DOUBLE_EQ(pav[0], pav[1]);
  EXPECT_DOUBLE_EQ(pav[0], 0.0);
}

TEST(Metrics, BadInput) {
  EXPECT_EQ(ComputeMetrics(Lrs({1}, {})).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputeMetrics(Lrs({INFINITY}, {0})).status().code(), StatusCode::kInvalidArgument);
}

TEST(Ece, NeutralAndLimits) {
  auto neutral = Lrs({0, 0}, {0, 0});
  // Neutral system at prior odds 1: 1 bit. Far from even odds it tends to 0.
  EXPECT_NEAR(EmpiricalCrossEntropy(neutral, 0), 1.0, 1e-12);
  EXPECT_LT(EmpiricalCrossEntropy(neutral, 3), 0.02);
  // At prior odds 1 the ECE equals Cllr.
  auto lrs = Lrs({1, 2, -0.3}, {-1, 0.5, -2});
  EXPECT_NEAR(EmpiricalCrossEntropy(lrs, 0), ComputeMetrics(lrs)->cllr, 1e-12);
}

TEST(CrossValidate, KmPairsAreScoredWithoutTheirSource) {
  // 6 firearms, 4 scans each: KM scores high, KNM low. A KM pair of firearm g
  // must be scored by a model that never saw firearm g's pairs.
  std::mt19937 gen(11);
  std::uniform_int_distribution<int> km(12, 20), knm(0, 3);
  std::vector<LabeledPair> pairs;
  const int n_guns = 6, n_scans = 4;
  for (int a = 0; a < n_guns * n_scans; ++a) {
    for (int b = a + 1; b < n_guns * n_scans; ++b) {
      LabeledPair p;
      p.reference = "s" + std::to_string(a);
      p.target = "s" + std::to_string(b);
      p.reference_source = "g" + std::to_string(a / n_scans);
      p.target_source = "g" + std::to_string(b / n_scans);
      p.score = {p.SameSource() ? km(gen) : knm(gen), 24};
      pairs.push_back(p);
    }
  }
  ReferencePopulation base;
  base.name = "synthetic";
  auto cv = CrossValidate(pairs, base);
  ASSERT_TRUE(cv.ok()) << cv.status().ToString();
  ASSERT_EQ(cv->size(), pairs.size());
  // Totals: 6 x 6 = 36 KM, 240 KNM. Leaving one firearm out: 30 KM, 240 - 4*4*5 = 160 KNM.
  std::vector<ScoredLr> lrs;
  for (const CrossValidatedPair& c : *cv) {
    ASSERT_TRUE(c.lr.available) << c.lr.basis;
    if (c.pair.SameSource()) {
      EXPECT_EQ(c.lr.km_pairs, 30);
      EXPECT_EQ(c.lr.knm_pairs, 160);
      EXPECT_GT(c.lr.log10_lr, 0) << c.pair.reference << " " << c.pair.target;
    } else {
      EXPECT_EQ(c.lr.km_pairs, 24);  // two firearms left out
      EXPECT_LT(c.lr.log10_lr, 0);
    }
    lrs.push_back({c.pair.SameSource(), c.lr.log10_lr, c.lr.available});
  }
  auto m = ComputeMetrics(lrs);
  ASSERT_TRUE(m.ok());
  EXPECT_LT(m->cllr, 0.2);
  EXPECT_EQ(m->km_misleading + m->knm_misleading, 0);
}

TEST(CrossValidate, TooFewSourcesGiveNoLr) {
  // Two firearms: leaving one out leaves no KNM pair to calibrate with.
  std::vector<LabeledPair> pairs = {
      {"a1", "a2", "A", "A", {15, 20}}, {"b1", "b2", "B", "B", {14, 20}},
      {"a1", "b1", "A", "B", {1, 20}},  {"a2", "b2", "A", "B", {2, 20}}};
  auto cv = CrossValidate(pairs, ReferencePopulation{});
  ASSERT_TRUE(cv.ok());
  for (const CrossValidatedPair& c : *cv) {
    EXPECT_FALSE(c.lr.available);
    EXPECT_NE(c.lr.basis.find("no calibrated LR available"), std::string::npos) << c.lr.basis;
  }
  pairs[0].reference_source = "";
  EXPECT_EQ(CrossValidate(pairs, ReferencePopulation{}).status().code(), StatusCode::kInvalidArgument);
}

TEST(Plots, WritePngsWithContent) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("evidence_plot_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto lrs = Lrs({1.5, 2.8, 2.8, 0.7}, {-1.8, -1.2, -0.4, -1.9, 0.2});
  ASSERT_TRUE(WriteTippettPlot(lrs, "Tippett test", (dir / "t.png").string()).ok());
  ASSERT_TRUE(WriteEcePlot(lrs, "ECE test", (dir / "e.png").string()).ok());
  for (const char* f : {"t.png", "e.png"}) {
    cv::Mat img = cv::imread((dir / f).string(), cv::IMREAD_COLOR);
    ASSERT_FALSE(img.empty()) << f;
    EXPECT_EQ(img.cols, 900);
    EXPECT_EQ(img.rows, 600);
    // Both curve colours are present (blue-ish KM / PAV and red-ish KNM / system).
    int red = 0, blue = 0;
    for (int y = 0; y < img.rows; ++y) {
      for (int x = 0; x < img.cols; ++x) {
        const cv::Vec3b p = img.at<cv::Vec3b>(y, x);
        if (p[2] > 150 && p[0] < 80 && p[1] < 80) ++red;
        if (p[0] > 150 && p[2] < 80) ++blue;
      }
    }
    EXPECT_GT(red, 100) << f;
    EXPECT_GT(blue, 100) << f;
  }
  EXPECT_EQ(WriteTippettPlot(Lrs({1}, {}), "x", (dir / "x.png").string()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteEcePlot(lrs, "x", "/nonexistent-dir/x.png").code(), StatusCode::kInternal);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ballistics::evidence
