// `ballisticsctl search-local` end to end on real scans (docs/search.md, "CLI"):
// a few Fadul scans and synthetic shots in a directory index, fadul-1-1 as
// the query; its two mates lead the breech-face list, with the screening
// stage on (the default) and off; a bad --screen-k is refused with its value.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "run_command.h"
#include "test_paths.h"

namespace ballistics {
namespace {

namespace fs = std::filesystem;

testing::CommandRun Ctl(const std::string& args) {
  return testing::RunCommand(std::string(BALLISTICSCTL_PATH) + " " + args + " 2>&1");
}

// The casing names of the breech-face list's rows, in order.
std::vector<std::string> BreechFaceList(const std::string& out) {
  std::vector<std::string> names;
  std::istringstream in(out);
  std::string line;
  bool in_list = false;
  while (std::getline(in, line)) {
    if (line == "breech face") {
      in_list = true;
      continue;
    }
    if (!in_list) continue;
    if (line.empty()) break;
    std::istringstream row(line);
    std::string rank, name;
    if (!(row >> rank >> name) || rank == "rank") continue;
    names.push_back(name + (line.find("identification") != std::string::npos ? " (id)" : ""));
  }
  return names;
}

class SearchLocalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path fadul = testing::SharedDataDir() / "fadul";
    if (!fs::exists(fadul / "fadul-1-1.x3p")) GTEST_SKIP() << "no Fadul scans at " << fadul;
    dir_ = fs::temp_directory_path() / ("search_local_cli_test_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // Links, not copies: the real data stays in ../shared/data.
    for (const char* n : {"fadul-1-1", "fadul-1-2", "fadul-F", "fadul-2-1", "fadul-3-1", "fadul-4-1", "fadul-5-1"}) {
      fs::create_symlink(fadul / (std::string(n) + ".x3p"), dir_ / (std::string(n) + ".x3p"));
    }
    query_ = (dir_ / "fadul-1-1.x3p").string();
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
  std::string query_;
};

TEST_F(SearchLocalCli, MatesLeadWithAndWithoutScreening) {
  // K = 4: the coarse top 2 are kept, the screen orders the other 34 breech faces.
  const testing::CommandRun screened = Ctl("search-local " + query_ + " --scans " + dir_.string() +
                              " --synthetic 60 --top 4 --rerank-k 4 --threads 2");
  ASSERT_EQ(screened.exit_code, 0) << screened.out;
  EXPECT_NE(screened.out.find("screening of 34 in"), std::string::npos) << screened.out;
  EXPECT_NE(screened.out.find("CMC rerank of 4 in"), std::string::npos) << screened.out;
  std::vector<std::string> list = BreechFaceList(screened.out);
  ASSERT_GE(list.size(), 2u) << screened.out;
  std::vector<std::string> top2(list.begin(), list.begin() + 2);
  std::sort(top2.begin(), top2.end());
  EXPECT_EQ(top2, (std::vector<std::string>{"fadul-1-2.x3p (id)", "fadul-F.x3p (id)"})) << screened.out;

  const testing::CommandRun plain = Ctl("search-local " + query_ + " --scans " + dir_.string() +
                           " --synthetic 60 --top 4 --rerank-k 4 --screen-k -1 --threads 2");
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  EXPECT_NE(plain.out.find("screening of 0 in"), std::string::npos) << plain.out;
  list = BreechFaceList(plain.out);
  ASSERT_GE(list.size(), 2u) << plain.out;
  top2.assign(list.begin(), list.begin() + 2);
  std::sort(top2.begin(), top2.end());
  EXPECT_EQ(top2, (std::vector<std::string>{"fadul-1-2.x3p (id)", "fadul-F.x3p (id)"})) << plain.out;
}

TEST_F(SearchLocalCli, BadScreenKIsRefusedWithItsValue) {
  const testing::CommandRun r = Ctl("search-local " + query_ + " --scans " + dir_.string() + " --screen-k -2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("-2"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ballistics
