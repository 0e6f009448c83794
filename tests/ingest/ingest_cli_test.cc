// `ballisticsctl ingest` end to end against a fresh database: good files go in,
// a corrupt one is rejected with a clear message and a non-zero exit code, a
// second run stores nothing new, bad flags store nothing.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "ballistics/io.h"
#include "store/test_database.h"
#include "run_command.h"
#include "test_paths.h"

namespace ballistics {
namespace {

using testing::CommandRun;

CommandRun Ctl(const std::string& args, const std::string& url) {
  // The connection string contains single quotes; pass it through the environment.
  setenv("BALLISTICS_DATABASE_URL", url.c_str(), 1);
  return testing::RunCommand(std::string(BALLISTICSCTL_PATH) + " " + args + " 2>&1");
}

class IngestCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    tmp_ = std::filesystem::temp_directory_path() / ("ballistics_cli_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(tmp_);
    const CommandRun m = Ctl("db migrate", db_.url());
    ASSERT_EQ(m.exit_code, 0) << m.out;
  }
  void TearDown() override { std::filesystem::remove_all(tmp_); }
  testing::TestDatabase db_;
  std::filesystem::path tmp_;
};

TEST_F(IngestCliTest, CorruptFileIsRejectedOthersStored) {
  const auto fadul = testing::SharedDataDir() / "fadul";
  // A truncated copy of a real scan in a temporary directory.
  auto bytes = ReadFileBytes(fadul / "fadul-4-1.x3p", 1ull << 30);
  ASSERT_TRUE(bytes.ok());
  const auto corrupt = tmp_ / "corrupt.x3p";
  std::ofstream(corrupt, std::ios::binary).write(reinterpret_cast<const char*>(bytes->data()),
                                                 static_cast<std::streamsize>(bytes->size() / 3));
  const std::string files = (fadul / "fadul-4-1.x3p").string() + " " + corrupt.string() + " " +
                            (fadul / "fadul-4-2.x3p").string();
  const std::string flags = " --agency 'Test PD' --case C1 --calibre 9mm --source test-fire --threads 2";
  CommandRun r = Ctl("ingest " + files + flags, db_.url());
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("rejected: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("corrupt.x3p"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 stored, 0 already present, 1 rejected"), std::string::npos) << r.out;
  EXPECT_EQ(db_.Count("casings"), 2);

  // Again, JSON: both present already, the corrupt one still rejected.
  r = Ctl("ingest " + files + flags + " --json", db_.url());
  EXPECT_EQ(r.exit_code, 3) << r.out;
  const auto json_start = r.out.find("{\n");
  ASSERT_NE(json_start, std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(json_start));
  EXPECT_EQ(j["summary"]["already_present"], 2);
  EXPECT_EQ(j["summary"]["stored"], 0);
  EXPECT_EQ(j["files"][1]["status"], "rejected");
  EXPECT_EQ(j["files"][0]["status"], "already_present");
  EXPECT_EQ(db_.Count("casings"), 2);

  r = Ctl("casings list --json", db_.url());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["exhibit_id"], "fadul-4-1");
  EXPECT_EQ(list[0]["source"], "test_fire");
  EXPECT_EQ(list[0]["signatures"][0]["kind"], "BF");
}

TEST_F(IngestCliTest, BadFlagsStoreNothing) {
  const auto file = (testing::SharedDataDir() / "fadul" / "fadul-5-1.x3p").string();
  CommandRun r = Ctl("ingest " + file + " --agency A --case C --calibre 9mm --pixel-um nan", db_.url());
  EXPECT_NE(r.exit_code, 0) << r.out;
  r = Ctl("ingest " + file + " --agency A --case C --calibre ' '", db_.url());
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("calibre"), std::string::npos) << r.out;
  r = Ctl("ingest " + file + " --agency A --case C --calibre 9mm --source street", db_.url());
  EXPECT_EQ(r.exit_code, 2) << r.out;
  r = Ctl("ingest " + file + " --agency A --case C --calibre 9mm --captured-at tomorrow", db_.url());
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_EQ(db_.Count("casings"), 0);
}

TEST_F(IngestCliTest, UnreachableDatabaseIsADatabaseError) {
  const auto file = (testing::SharedDataDir() / "fadul" / "fadul-5-1.x3p").string();
  CommandRun r = Ctl("ingest " + file + " --agency A --case C --calibre 9mm --database-url "
              "'postgresql://x@127.0.0.1:1/x?connect_timeout=2'", db_.url());
  EXPECT_EQ(r.exit_code, 4) << r.out;
  EXPECT_NE(r.out.find("UNAVAILABLE"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ballistics
