// `ballisticsctl search-local` end to end on real scans (docs/search.md, "CLI"):
// a few Fadul scans and synthetic shots in a directory index, fadul-1-1 as
// the query; its two mates lead the breech-face list, with the screening
// stage on (the default) and off; a bad --screen-k is refused with its value.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_paths.h"

namespace ballistics {
namespace {

namespace fs = std::filesystem;

struct CtlRun {
  int exit_code = -1;
  std::string output;
};

CtlRun Ctl(const std::string& args) {
  const std::string cmd = std::string(BALLISTICSCTL_PATH) + " " + args + " 2>&1";
  CtlRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof(buf), p)) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
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
  const CtlRun screened = Ctl("search-local " + query_ + " --scans " + dir_.string() +
                              " --synthetic 60 --top 4 --rerank-k 4 --threads 2");
  ASSERT_EQ(screened.exit_code, 0) << screened.output;
  EXPECT_NE(screened.output.find("screening of 34 in"), std::string::npos) << screened.output;
  EXPECT_NE(screened.output.find("CMC rerank of 4 in"), std::string::npos) << screened.output;
  std::vector<std::string> list = BreechFaceList(screened.output);
  ASSERT_GE(list.size(), 2u) << screened.output;
  std::vector<std::string> top2(list.begin(), list.begin() + 2);
  std::sort(top2.begin(), top2.end());
  EXPECT_EQ(top2, (std::vector<std::string>{"fadul-1-2.x3p (id)", "fadul-F.x3p (id)"})) << screened.output;

  const CtlRun plain = Ctl("search-local " + query_ + " --scans " + dir_.string() +
                           " --synthetic 60 --top 4 --rerank-k 4 --screen-k -1 --threads 2");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find("screening of 0 in"), std::string::npos) << plain.output;
  list = BreechFaceList(plain.output);
  ASSERT_GE(list.size(), 2u) << plain.output;
  top2.assign(list.begin(), list.begin() + 2);
  std::sort(top2.begin(), top2.end());
  EXPECT_EQ(top2, (std::vector<std::string>{"fadul-1-2.x3p (id)", "fadul-F.x3p (id)"})) << plain.output;
}

TEST_F(SearchLocalCli, BadScreenKIsRefusedWithItsValue) {
  const CtlRun r = Ctl("search-local " + query_ + " --scans " + dir_.string() + " --screen-k -2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("-2"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ballistics
