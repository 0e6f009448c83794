// ballisticsctl registry subcommands against a real ballisticsd: firearm
// register, law-enforcement mark (on the database), sale record, microstamp
// register and lookup (anonymous, identify), trace refusals and success,
// events with GeoJSON export; exit codes (2 = refused, 3 = bad input).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "api_server.h"

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
  CtlRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
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

}  // namespace
}  // namespace ballistics
