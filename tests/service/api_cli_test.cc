// ballisticsctl against a real ballisticsd: bootstrap of the first admin token
// directly on the database, tokens through the API, upload, casing get, and
// `audit verify` passing and then failing after a row is edited by SQL.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api_server.h"
#include "run_command.h"

namespace ballistics {
namespace {

struct CtlRun {
  int exit_code = -1;
  std::string out;  // stdout only
  std::string err;
};

// Runs ballisticsctl; the database URL goes through the environment (it has quotes).
CtlRun Ctl(const std::string& args, const std::string& url, const std::filesystem::path& tmp) {
  setenv("BALLISTICS_DATABASE_URL", url.c_str(), 1);
  const std::string err_file = (tmp / "stderr").string();
  const std::string cmd = std::string(BALLISTICSCTL_PATH) + " " + args + " 2>" + err_file;
  const testing::CommandRun run = testing::RunCommand(cmd);
  CtlRun r;
  r.exit_code = run.exit_code;
  r.out = run.out;
  std::ifstream f(err_file);
  std::stringstream ss;
  ss << f.rdbuf();
  r.err = ss.str();
  return r;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST(ApiCliTest, BootstrapUploadAndAuditVerify) {
  testing::TestDatabase db;
  ASSERT_FALSE(db.url().empty());
  const auto tmp = std::filesystem::temp_directory_path() / ("ballistics_api_cli_" + std::to_string(getpid()));
  std::filesystem::create_directories(tmp);

  CtlRun r = Ctl("db migrate", db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl("admin create-agency 'Agency A'", db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl("admin create-agency 'Agency A'", db.url(), tmp);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("exists already"), std::string::npos) << r.err;
  r = Ctl("admin create-token --agency 'Agency A' --role admin --holder boot --json", db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string admin = nlohmann::json::parse(r.out)["token"];
  ASSERT_EQ(admin.size(), 64u);
  r = Ctl("admin create-token --agency 'Agency A' --role wizard --holder x", db.url(), tmp);
  EXPECT_EQ(r.exit_code, 2) << r.err;

  testing::ApiServer server;
  server.Start(db.url());
  ASSERT_TRUE(server.channel()) << server.Log();
  const std::string api = " --server 127.0.0.1:" + std::to_string(server.port()) + " --insecure";

  // A technician token through the API, with the bootstrap admin token.
  r = Ctl("admin create-token --agency 'Agency A' --role technician --holder tech" + api + " --token " + admin,
          "", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string tech = Trim(r.out);
  ASSERT_EQ(tech.size(), 64u) << r.out;

  const auto scan = testing::SharedDataDir() / "fadul" / "fadul-6-1.x3p";
  r = Ctl("upload " + scan.string() + " --case K-6 --calibre '9mm Luger' --source test-fire --json" + api +
              " --token " + tech,
          "", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out << server.Log();
  const auto up = nlohmann::json::parse(r.out);
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0]["status"], "stored");
  const std::int64_t id = up[0]["casing_id"];
  // Again: idempotent.
  r = Ctl("upload " + scan.string() + " --case K-6 --calibre '9mm Luger' --source test-fire --json" + api +
              " --token " + tech,
          "", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)[0]["status"], "already_present");
  EXPECT_EQ(nlohmann::json::parse(r.out)[0]["casing_id"], id);

  r = Ctl("casing get " + std::to_string(id) + api + " --token " + tech, "", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["case"], "K-6");
  // A wrong token: refused.
  r = Ctl("casing get " + std::to_string(id) + api + " --token " + std::string(64, 'a'), "", tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("UNAUTHENTICATED"), std::string::npos) << r.err;

  // Another agency's examiner: refused until agency A shares with agency B.
  ASSERT_EQ(Ctl("admin create-agency 'Agency B'", db.url(), tmp).exit_code, 0);
  r = Ctl("admin create-token --agency 'Agency B' --role examiner --holder exb", db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string exb = Trim(r.out);
  r = Ctl("casing get " + std::to_string(id) + api + " --token " + exb, "", tmp);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  r = Ctl("admin share --owner 'Agency A' --reader 'Agency B'", db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl("casing get " + std::to_string(id) + api + " --token " + exb, "", tmp);
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // The audit trail: direct and through the API.
  r = Ctl("audit verify", db.url(), tmp);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("audit trail intact"), std::string::npos) << r.out;
  r = Ctl("audit verify --json" + api + " --token " + admin, "", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(nlohmann::json::parse(r.out)["ok"].get<bool>());
  // Rows: create-agency x3 (one failed), bootstrap create-token x2 (the bad role is
  // a usage error, refused before the database), API create-token, 2 uploads,
  // casing get x4 (one unauthenticated, one denied), share, API audit verify.
  // Direct verify writes none.
  EXPECT_EQ(db.Count("audit_log"), 14);

  ASSERT_TRUE(testing::ExecSql(db.url(), "SET session_replication_role = replica; "
                                         "UPDATE audit_log SET records = '' WHERE seq = 6"));
  r = Ctl("audit verify", db.url(), tmp);
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_NE(r.out.find("BROKEN: audit row seq 6"), std::string::npos) << r.out;

  EXPECT_EQ(server.Stop(), 0) << server.Log();
  std::filesystem::remove_all(tmp);
}

}  // namespace
}  // namespace ballistics
