// ballisticsctl registry subcommands against a real ballisticsd: firearm
// register, law-enforcement mark (on the database), sale record, microstamp
// register and lookup (anonymous, identify), trace refusals and success,
// events with GeoJSON export; microstamp replace and revoke (the live index
// follows them; roles, unknown firearm, bad code, audit); exit codes
// (2 = refused, 3 = bad input).
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "api_server.h"
#include "run_command.h"

namespace ballistics {
namespace {

struct CtlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

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

TEST(RegistryCliTest, FirearmSaleMicrostampTraceEvents) {
  testing::TestDatabase db;
  ASSERT_FALSE(db.url().empty());
  const testing::Tokens tok = testing::Bootstrap(db.url());
  ASSERT_FALSE(tok.examiner_a.empty());
  setenv("BALLISTICS_PURCHASER_HMAC_KEY", "registry-cli-test-key-0123456789", 1);
  testing::ApiServer server;
  server.Start(db.url());
  ASSERT_TRUE(server.channel()) << server.Log();
  const auto tmp = server.dir();
  const std::string at = " --server 127.0.0.1:" + std::to_string(server.port()) + " --insecure --token ";

  CtlRun r = Ctl("firearm register --manufacturer Ruger --make Ruger --model P95 --serial SN-1 --calibre '9mm Luger' "
                 "--fp-shape hemispherical" + at + tok.technician_a, db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto gun = nlohmann::json::parse(r.out);
  const std::string id = gun["firearm_id"].get<std::string>();  // int64 is a JSON string in proto3
  r = Ctl("firearm register --manufacturer Ruger --make Ruger --model P95 --serial SN-2 --calibre 9mm --fp-shape star" +
          at + tok.technician_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("star"), std::string::npos) << r.err;

  r = Ctl("sale record --firearm " + id + " --dealer-licence MD-FFL-1 --date 2023-06-15 --purchaser-ref LIC-9" + at +
          tok.technician_a, db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("LIC-9"), std::string::npos) << "the reference itself must not come back";
  r = Ctl("microstamp register --firearm " + id + " --fp R7P95X1B --bf 012301230123" + at + tok.technician_a, db.url(),
          tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // Not law enforcement yet: identity refused (exit 2); anonymous lookup works.
  r = Ctl("microstamp lookup --fp 'R7?95X?8' --identify --case HOM-1" + at + tok.examiner_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  r = Ctl("microstamp lookup --fp 'R7?95X?8'" + at + tok.reader_a, db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto anon = nlohmann::json::parse(r.out);
  ASSERT_EQ(anon["candidates"].size(), 1u);
  EXPECT_FALSE(anon["candidates"][0].contains("firearm"));

  r = Ctl("firearm law-enforcement 'Agency A'", db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl("microstamp lookup --fp 'R7?95X?8' --identify --case HOM-1" + at + tok.examiner_a, db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["candidates"][0]["firearm"]["serial"], "SN-1");
  r = Ctl("trace --firearm " + id + " --case HOM-1" + at + tok.reader_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = Ctl("trace --firearm " + id + " --case HOM-1 --reason test" + at + tok.examiner_a, db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto t = nlohmann::json::parse(r.out);
  EXPECT_EQ(t["firearm"]["serial"], "SN-1");
  EXPECT_EQ(t["transfers"][0]["dealer_licence"], "MD-FFL-1");
  EXPECT_EQ(t["transfers"][0]["purchaser_ref_hmac"].get<std::string>().size(), 64u);

  r = Ctl("event create --incident CAD-1 --time 2024-05-01T22:10:00Z --lat 39.29 --lon -76.61 --place 'N Ave'" + at +
          tok.technician_a, db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string ev = nlohmann::json::parse(r.out)["event_id"].get<std::string>();
  r = Ctl("event create --incident CAD-2 --time yesterday --lat 0 --lon 0" + at + tok.technician_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const std::string geo = (tmp / "component.geojson").string();
  r = Ctl("event connected --event " + ev + " --geojson " + geo + at + tok.reader_a, db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream gf(geo);
  auto g = nlohmann::json::parse(gf);
  EXPECT_EQ(g["type"], "FeatureCollection");
  ASSERT_EQ(g["features"].size(), 1u);
  EXPECT_DOUBLE_EQ(g["features"][0]["geometry"]["coordinates"][0].get<double>(), -76.61);
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

// Firearms an exact fp-tip read finds: identified candidates carrying that
// code. (Every registered firearm is a candidate, an inconsistent one with a
// small posterior, so the candidate list alone does not say "found".) Also
// checks that the count of consistent codes agrees.
std::vector<std::string> IdentifiedFirearms(const std::string& fp, const std::string& at_examiner,
                                            const std::string& url, const std::filesystem::path& tmp) {
  CtlRun r = Ctl("microstamp lookup --fp " + fp + " --identify --case HOM-7" + at_examiner, url, tmp);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> ids;
  if (r.exit_code != 0) return ids;
  const auto j = nlohmann::json::parse(r.out);
  if (j.contains("candidates")) {
    for (const auto& c : j["candidates"]) {
      if (c.value("fp_tip_code", "") == fp) ids.push_back(c["firearm"]["firearm_id"].get<std::string>());
    }
  }
  const std::string consistent = j.value("consistent_fp_tip_codes", "0");  // int64: a JSON string; 0 is omitted
  EXPECT_EQ(consistent, std::to_string(ids.size())) << r.out;
  return ids;
}

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

TEST(RegistryCliTest, MicrostampReplaceAndRevoke) {
  testing::TestDatabase db;
  ASSERT_FALSE(db.url().empty());
  const testing::Tokens tok = testing::Bootstrap(db.url());
  ASSERT_FALSE(tok.technician_a.empty());
  testing::ApiServer server;
  server.Start(db.url());
  ASSERT_TRUE(server.channel()) << server.Log();
  const auto tmp = server.dir();
  const std::string at = " --server 127.0.0.1:" + std::to_string(server.port()) + " --insecure --token ";

  std::string ids[2];
  const char* fps[2] = {"R7P95X1B", "K4M22Q7Z"};
  const char* bfs[2] = {"012301230123", "321032103210"};
  for (int i = 0; i < 2; ++i) {
    CtlRun r = Ctl("firearm register --manufacturer Ruger --make Ruger --model P95 --serial SN-" + std::to_string(i) +
                       " --calibre 9mm --fp-shape hemispherical" + at + tok.technician_a,
                   db.url(), tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ids[i] = nlohmann::json::parse(r.out)["firearm_id"].get<std::string>();
    r = Ctl("microstamp register --firearm " + ids[i] + " --fp " + fps[i] + " --bf " + bfs[i] + at + tok.technician_a,
            db.url(), tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_EQ(Ctl("firearm law-enforcement 'Agency A'", db.url(), tmp).exit_code, 0);
  const std::string examiner = at + tok.examiner_a;
  ASSERT_TRUE(Contains(IdentifiedFirearms(fps[0], examiner, db.url(), tmp), ids[0]));
  ASSERT_TRUE(Contains(IdentifiedFirearms(fps[1], examiner, db.url(), tmp), ids[1]));

  // Refusals: a reader may not change codes; another agency's technician does
  // not see this agency's codes; unknown firearm; bad code.
  CtlRun r = Ctl("microstamp replace --firearm " + ids[0] + " --fp T3Q81Z5D" + at + tok.reader_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  r = Ctl("microstamp revoke --firearm " + ids[1] + at + tok.reader_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  r = Ctl("microstamp revoke --firearm " + ids[1] + at + tok.technician_b, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  r = Ctl("microstamp replace --firearm 987654321 --fp T3Q81Z5D" + at + tok.technician_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("987654321"), std::string::npos) << r.err;
  r = Ctl("microstamp revoke --firearm 987654321" + at + tok.technician_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  r = Ctl("microstamp replace --firearm " + ids[0] + " --fp 'T3Q81Z5#'" + at + tok.technician_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
  r = Ctl("microstamp replace --firearm " + ids[0] + at + tok.technician_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 2) << r.err;  // neither --fp nor --bf
  // Nothing changed by the refused calls.
  EXPECT_TRUE(Contains(IdentifiedFirearms(fps[0], examiner, db.url(), tmp), ids[0]));
  EXPECT_TRUE(Contains(IdentifiedFirearms(fps[1], examiner, db.url(), tmp), ids[1]));

  // Replace: the new code finds the firearm, the old one no longer does.
  r = Ctl("microstamp replace --firearm " + ids[0] + " --fp T3Q81Z5D --bf 230123012301 --reason 'firing pin replaced'" +
              at + tok.technician_a,
          db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(IdentifiedFirearms("T3Q81Z5D", examiner, db.url(), tmp), ids[0]));
  EXPECT_FALSE(Contains(IdentifiedFirearms(fps[0], examiner, db.url(), tmp), ids[0]));

  // Revoke: the code no longer finds its firearm; revoking again is NOT_FOUND.
  r = Ctl("microstamp revoke --firearm " + ids[1] + " --reason 'slide destroyed'" + at + tok.examiner_a, db.url(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(Contains(IdentifiedFirearms(fps[1], examiner, db.url(), tmp), ids[1]));
  EXPECT_TRUE(Contains(IdentifiedFirearms("T3Q81Z5D", examiner, db.url(), tmp), ids[0]));
  r = Ctl("microstamp revoke --firearm " + ids[1] + at + tok.technician_a, db.url(), tmp);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;

  // Audited, refusals included, with the reason.
  EXPECT_EQ(testing::QueryInt(db.url(), "SELECT count(*) FROM audit_log WHERE method LIKE "
                                        "'%RegistryService/ReplaceMicrostamp' AND status LIKE 'PERMISSION_DENIED%'"),
            1);
  EXPECT_EQ(testing::QueryInt(db.url(), "SELECT count(*) FROM audit_log WHERE method LIKE "
                                        "'%RegistryService/RevokeMicrostamp' AND status = 'OK' AND detail LIKE "
                                        "'%slide destroyed%' AND records LIKE '%firearm:" + ids[1] + "%'"),
            1);
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

}  // namespace
}  // namespace ballistics
