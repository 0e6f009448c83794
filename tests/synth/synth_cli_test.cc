// `ballisticsctl synth` end to end: files, ground truth, and bad flags.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ballistics/io.h"
#include "ballistics/synth.h"
#include "run_command.h"

namespace ballistics::synth {
namespace {

using ballistics::testing::CommandRun;

CommandRun Ctl(const std::string& args) {
  return ballistics::testing::RunCommand(std::string(BALLISTICSCTL_PATH) + " " + args + " 2>&1");
}

class SynthCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("synth_cli_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

std::vector<std::vector<std::string>> ReadCsv(const std::filesystem::path& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

TEST_F(SynthCli, WritesScansThatMatchTheLibraryAndTheirTruth) {
  const CommandRun r = Ctl("synth --firearms 2 --shots-per-firearm 2 --seed 3 --threads 2 --out " + dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto rows = ReadCsv(dir_ / "ground_truth.csv");
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0][0], "scan");
  EXPECT_EQ(rows[0][1], "firearm");
  EXPECT_EQ(rows[0][2], "rotation_deg");
  EXPECT_EQ(rows[0][3], "shift_x_um");
  EXPECT_EQ(rows[0][4], "shift_y_um");
  EXPECT_EQ(rows[3][0], "synth-f0001-s01");
  EXPECT_EQ(rows[3][1], "1");
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_TRUE(std::filesystem::exists(dir_ / (rows[i][0] + ".x3p"))) << rows[i][0];
  }
  // Firearm 1 of seed 3 is MakeFirearm(3 * 2^32 + 1); shot 1 with the CLI's scan options.
  auto read = ReadScanFile(dir_ / "synth-f0001-s01.x3p");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(std::stoull(rows[3][5]), (3ull << 32) + 1);
  ShotOptions o;
  o.max_shift_um = 500.0;
  ShotTruth t;
  auto made = MakeShotScan(MakeFirearm((3ull << 32) + 1), 1, o, &t);
  ASSERT_TRUE(made.ok());
  ASSERT_EQ(read->values.size(), made->values.size());
  EXPECT_NEAR(read->pixel_um_x, 6.25, 1e-9);
  double max_err = 0.0;
  for (int y = 0; y < made->values.rows; ++y) {
    for (int x = 0; x < made->values.cols; ++x) {
      const float a = read->values(y, x), b = made->values(y, x);
      ASSERT_EQ(std::isnan(a), std::isnan(b)) << y << "," << x;
      if (!std::isnan(a)) max_err = std::max(max_err, static_cast<double>(std::abs(a - b)));
    }
  }
  EXPECT_LT(max_err, 1e-3);  // float32 metres round trip (io.h: at most 1 ulp of the µm value)
  EXPECT_NEAR(std::stod(rows[3][2]), t.rotation_deg, 1e-5);
  EXPECT_NEAR(std::stod(rows[3][3]), t.shift_x_um, 1e-3);
  EXPECT_NEAR(std::stod(rows[3][4]), t.shift_y_um, 1e-3);
}

TEST_F(SynthCli, WritesSignatures) {
  const CommandRun r = Ctl("synth --firearms 1 --shots-per-firearm 2 --seed 4 --signatures --out " + dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto read = ReadScanFile(dir_ / "synth-f0000-s02.x3p");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  const double missing = read->MissingFraction();
  EXPECT_GT(missing, 0.5);  // an annulus on a square grid
  EXPECT_LT(missing, 0.85);
}

TEST_F(SynthCli, BadFlagsAreRejected) {
  CommandRun r = Ctl("synth --firearms 0 --shots-per-firearm 2 --seed 1 --out " + dir_.string());
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("--firearms=0"), std::string::npos) << r.out;
  r = Ctl("synth --firearms 1 --shots-per-firearm 1 --seed 1 --mark-transfer 2 --out " + dir_.string());
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("mark_transfer"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "ground_truth.csv"));
  r = Ctl("synth --firearms 1 --seed 1 --out " + dir_.string());  // missing --shots-per-firearm
  EXPECT_NE(r.exit_code, 0) << r.out;
}

}  // namespace
}  // namespace ballistics::synth
