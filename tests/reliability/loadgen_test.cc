// A short bounded run of bench/loadgen.cc against a real ballisticsd with
// deliberately small limits: the generator works end to end, the server stays
// up, and overload is answered with RESOURCE_EXHAUSTED (back-pressure) rather
// than queued. No timing is asserted; the measured figures are in
// docs/reliability.md "Load" (scripts/reliability.sh load).
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "reliability/reliability_harness.h"

namespace ballistics::testing {
namespace {

TEST(LoadgenTest, ShortOverloadedRunShowsBackPressure) {
  TestDatabase db;
  ASSERT_FALSE(db.url().empty());
  Tokens t = Bootstrap(db.url());
  ApiServer server;
  server.Start(db.url(), {"--max-concurrent-uploads", "1", "--max-concurrent-searches", "1",
                          "--max-queued-searches", "0"});
  ASSERT_NE(server.port(), 0);
  const std::string cmd = std::string(LOADGEN_PATH) + " --server 127.0.0.1:" + std::to_string(server.port()) +
                          " --insecure --token " + t.examiner_a + " --file " +
                          (SharedDataDir() / "fadul" / "fadul-1-1.x3p").string() +
                          " --clients 6 --seconds 4 --mix 1:1 --rerank-k 2 --deadline-s 60 --json --metrics 127.0.0.1:" +
                          std::to_string(server.metrics_port());
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;
  const auto rep = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(rep.is_object()) << out;
  EXPECT_GT(rep["upload"]["ok"].get<int>(), 0) << out;
  EXPECT_GT(rep["search"]["ok"].get<int>(), 0) << out;
  EXPECT_GT(rep["resource_exhausted"].get<int>(), 0) << "6 clients against 1 upload and 1 search slot:\n" << out;
  // Only success and back-pressure: no failures, no timeouts, no crash.
  for (const char* op : {"upload", "search"}) {
    for (const auto& [code, count] : rep[op]["codes"].items()) {
      EXPECT_TRUE(code == "OK" || code == "RESOURCE_EXHAUSTED") << op << " " << code << " x" << count;
    }
  }
  EXPECT_GT(rep["server_rss_max_bytes"].get<double>(), 0);
  EXPECT_EQ(HalfWrittenCasings(db.url()), 0);
  EXPECT_EQ(db.Count("casings"), rep["upload"]["ok"].get<int>() + 1);  // + the generator's first upload
  std::cout << out << "\n";
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

}  // namespace
}  // namespace ballistics::testing
