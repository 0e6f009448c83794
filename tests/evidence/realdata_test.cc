// Evidence on real scans (label realdata): the Fadul scans of slides 1-4 (15
// scans, 105 pairs, 22 KM) are scored here with the default correlator and
// the LRs validated leave-source-out (each KM pair scored by a model fitted
// without its slide, each KNM pair without either slide). The full 780-pair
// validation is scripts/evidence.sh (docs/accuracy.md, "Evidence strength");
// here a subset keeps the test to about a minute of CPU.
// Asserts: every pair gets an LR, no KNM pair has LR > 1, no KM pair LR < 1,
// Cllr well below the neutral 1 and never below Cllr-min.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ballistics/correlate.h"
#include "ballistics/evidence.h"
#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "test_paths.h"

namespace ballistics::evidence {
namespace {

namespace fs = std::filesystem;

template <typename Fn>
void ParallelFor(std::size_t n, Fn fn) {
  cv::setNumThreads(1);
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (std::size_t i; (i = next++) < n;) fn(i);
    });
  }
  for (auto& t : pool) t.join();
}

std::map<std::string, std::string> ReadTruth(const fs::path& csv) {
  std::map<std::string, std::string> slide;
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header scan,slide,role
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string scan, s;
    std::getline(ss, scan, ',');
    std::getline(ss, s, ',');
    slide[scan] = s;
  }
  return slide;
}

TEST(EvidenceRealData, FadulLeaveOneSlideOut) {
  const fs::path dir = testing::SharedDataDir() / "fadul";
  ASSERT_TRUE(fs::exists(dir / "ground_truth.csv")) << dir;
  const auto slide = ReadTruth(dir / "ground_truth.csv");
  std::vector<std::string> names;
  for (const auto& [scan, s] : slide) {
    if (s == "1" || s == "2" || s == "3" || s == "4") names.push_back(scan);
  }
  ASSERT_EQ(names.size(), 15u);
  auto corr = Correlator::Create();
  ASSERT_TRUE(corr.ok());
  std::vector<std::shared_ptr<const PreparedSignature>> sigs(names.size());
  std::vector<std::string> errors(names.size());
  ParallelFor(names.size(), [&](std::size_t i) {
    auto scan = ReadScanFile(dir / (names[i] + ".x3p"));
    if (!scan.ok()) return void(errors[i] = scan.status().ToString());
    auto norm = Normalize(*scan);
    if (!norm.ok()) return void(errors[i] = norm.status().ToString());
    auto p = corr->Prepare(norm->breech_face);
    if (!p.ok()) return void(errors[i] = p.status().ToString());
    sigs[i] = *p;
  });
  for (std::size_t i = 0; i < names.size(); ++i) ASSERT_TRUE(errors[i].empty()) << names[i] << ": " << errors[i];

  std::vector<LabeledPair> pairs;
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t j = i + 1; j < names.size(); ++j) {
      pairs.push_back({names[i], names[j], slide.at(names[i]), slide.at(names[j]), {}});
    }
  }
  std::vector<std::string> pair_errors(pairs.size());
  std::vector<std::pair<std::size_t, std::size_t>> index;
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t j = i + 1; j < names.size(); ++j) index.emplace_back(i, j);
  }
  ParallelFor(pairs.size(), [&](std::size_t k) {
    auto r = corr->Compare(*sigs[index[k].first], *sigs[index[k].second]);
    if (!r.ok()) return void(pair_errors[k] = r.status().ToString());
    pairs[k].score = {r->cmc, r->cells};
  });
  for (std::size_t k = 0; k < pairs.size(); ++k) ASSERT_TRUE(pair_errors[k].empty()) << pair_errors[k];

  ReferencePopulation base;
  base.name = "fadul slides 1-4";
  auto cv = CrossValidate(pairs, base);
  ASSERT_TRUE(cv.ok()) << cv.status().ToString();
  std::vector<ScoredLr> lrs;
  int km = 0;
  for (const CrossValidatedPair& c : *cv) {
    ASSERT_TRUE(c.lr.available) << c.pair.reference << " vs " << c.pair.target << ": " << c.lr.basis;
    if (c.pair.SameSource()) {
      ++km;
      EXPECT_GT(c.lr.log10_lr, 0) << "misleading KM pair " << c.pair.reference << " vs " << c.pair.target
                                  << " CMC " << c.pair.score.cmc << "/" << c.pair.score.cells;
    } else {
      EXPECT_LT(c.lr.log10_lr, 0) << "misleading KNM pair " << c.pair.reference << " vs " << c.pair.target
                                  << " CMC " << c.pair.score.cmc << "/" << c.pair.score.cells;
    }
    lrs.push_back({c.pair.SameSource(), c.lr.log10_lr, c.lr.available});
  }
  EXPECT_EQ(km, 22);
  auto m = ComputeMetrics(lrs);
  ASSERT_TRUE(m.ok());
  std::printf("Fadul slides 1-4, leave-source-out: Cllr %.4f, Cllr-min %.4f, min KM log10 LR %.2f, "
              "max KNM log10 LR %.2f\n", m->cllr, m->cllr_min, m->min_log10_lr_km, m->max_log10_lr_knm);
  EXPECT_LT(m->cllr, 0.5);
  EXPECT_GE(m->cllr, m->cllr_min);
}

}  // namespace
}  // namespace ballistics::evidence
