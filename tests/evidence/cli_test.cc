// `ballisticsctl evidence validate | build-reference` and the LR columns of
// `compare` on small synthetic inputs (the real-data run is scripts/evidence.sh):
// JSON fields, plot files, model file, and clear errors for bad input.
#include <gtest/gtest.h>


#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "ballistics/evidence.h"
#include "run_command.h"

namespace ballistics {
namespace {

namespace fs = std::filesystem;

using testing::CommandRun;

CommandRun Ctl(const std::string& args) {
  // Without BALLISTICS_DATABASE_URL (scripts/test.sh exports it, and
  // build-reference would then also store into that database, which other
  // tests reset concurrently): these tests exercise the files only.
  return testing::RunCommand("env -u BALLISTICS_DATABASE_URL " + std::string(BALLISTICSCTL_PATH) + " " + args + " 2>&1");
}

class EvidenceCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("evidence_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    // 6 firearms x 4 scans: KM pairs score 12-20 of 24 cells, KNM 0-3 (drawn, seeded).
    std::mt19937 gen(5);
    std::uniform_int_distribution<int> km(12, 20), knm(0, 3);
    std::ofstream pairs(dir_ / "pairs.csv"), truth(dir_ / "truth.csv");
    pairs << "reference,target,cmc,cells,ccf,theta_deg,dx_um,dy_um,cmc_forward,cmc_backward,cells_forward,"
             "cells_backward,fp_cmc,fp_cells,fp_theta_deg\n";
    truth << "scan,gun\n";
    for (int a = 0; a < 24; ++a) {
      truth << "s" << a << ",g" << a / 4 << "\n";
      for (int b = a + 1; b < 24; ++b) {
        const int c = a / 4 == b / 4 ? km(gen) : knm(gen);
        pairs << "s" << a << ",s" << b << "," << c << ",24,0.5,0,0,0," << c << "," << c << ",24,24,,,\n";
      }
    }
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string P(const char* f) const { return (dir_ / f).string(); }
  fs::path dir_;
};

TEST_F(EvidenceCliTest, ValidateWritesMetricsAndPlots) {
  const CommandRun r = Ctl("evidence validate " + P("pairs.csv") + " --truth " + P("truth.csv") + " --name syn --out-dir " +
                    P("img") + " --lr-csv " + P("lr.csv") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["km"], 36);
  EXPECT_EQ(j["knm"], 240);
  EXPECT_EQ(j["km_misleading"], 0);
  EXPECT_EQ(j["knm_misleading"], 0);
  EXPECT_LT(j["cllr"].get<double>(), 0.2);
  EXPECT_LE(j["cllr_min"].get<double>(), j["cllr"].get<double>());
  EXPECT_EQ(j["lr_unavailable"], 0);
  EXPECT_TRUE(fs::file_size(P("img") + "/syn_tippett.png") > 1000);
  EXPECT_TRUE(fs::file_size(P("img") + "/syn_ece.png") > 1000);
  std::ifstream lr(P("lr.csv"));
  std::string header;
  std::getline(lr, header);
  EXPECT_EQ(header, "reference,target,reference_source,target_source,truth,cmc,cells,lr,log10_lr,lr_at_bound,lr_basis");
}

TEST_F(EvidenceCliTest, BuildReferenceWritesALoadableModel) {
  const CommandRun r = Ctl("evidence build-reference " + P("pairs.csv") + " --source-regex '^s([0-9])' --name syn --out " +
                    P("model.json"));
  // --source-regex '^s([0-9])' groups by the first digit: a different grouping than the truth file, still valid.
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::ifstream in(P("model.json"));
  std::stringstream ss;
  ss << in.rdbuf();
  auto m = evidence::ModelFromJson(ss.str());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "syn");
  EXPECT_EQ(m->km.size() + m->knm.size(), 276u);
}

TEST_F(EvidenceCliTest, BadInputIsRefusedClearly) {
  std::ofstream(P("short_truth.csv")) << "scan,gun\ns0,g0\n";
  CommandRun r = Ctl("evidence validate " + P("pairs.csv") + " --truth " + P("short_truth.csv"));
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("'s1' is not in the --truth file"), std::string::npos) << r.out;
  r = Ctl("evidence validate " + P("pairs.csv"));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  std::ofstream(P("bad.csv")) << "reference,target,cmc,cells\ns0,s1,9,4\n";
  r = Ctl("evidence validate " + P("bad.csv") + " --truth " + P("truth.csv"));
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("cmc=9 cells=4"), std::string::npos) << r.out;
  std::ofstream(P("not_a_model.json")) << "{}";
  r = Ctl("compare a.x3p b.x3p --reference-model " + P("not_a_model.json"));
  EXPECT_NE(r.exit_code, 0) << r.out;
}

}  // namespace
}  // namespace ballistics
