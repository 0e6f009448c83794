// Faults under a real ballisticsd (issue 8, "Faults"): PostgreSQL restarted in
// the middle of an upload and of a search, the server SIGKILLed during a stream
// of uploads, a read-only database and a full disk. Every scenario ends with
// the same checks: no half-written casing, every acknowledged casing stored and
// searchable, the audit chain intact, and the retry of a failed call succeeds
// without a duplicate. Results are in docs/reliability.md "Faults".
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <atomic>
#include <mutex>
#include <set>

#include "ballistics/v1/admin.grpc.pb.h"
#include "reliability/reliability_harness.h"

namespace ballistics::testing {
namespace {

// Blocks until a backend of database `db` sleeps in pg_sleep (our fault
// trigger), i.e. the server is inside the transaction we want to break.
bool WaitForSleepingBackend(const std::string& admin_url, const std::string& db, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (QueryInt(admin_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db +
                                "' AND wait_event = 'PgSleep'") > 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Retries a retryable failure a few times with backoff, as a client should.
UploadOutcome UploadWithRetry(const std::shared_ptr<grpc::Channel>& ch, const std::string& token,
                              const std::vector<std::uint8_t>& bytes, const v1::CasingMetadata& md,
                              const std::string& request_id, int* attempts = nullptr) {
  UploadOutcome o;
  for (int i = 0; i < 6; ++i) {
    if (attempts) ++*attempts;
    o = Upload(ch, token, bytes, md, request_id);
    if (o.status.ok() || !Retryable(o.status.error_code())) return o;
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << i));
  }
  return o;
}

bool AuditIntact(const std::string& url) {
  auto db = store::ApiDb::ConnectSystem(url);
  if (!db.ok()) return false;
  auto rep = (*db)->VerifyAudit();
  EXPECT_TRUE(rep.ok()) << rep.status().ToString();
  if (rep.ok() && !rep->ok) ADD_FAILURE() << rep->problem;
  return rep.ok() && rep->ok;
}

class PgRestartTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new PrivateCluster(); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static PrivateCluster* cluster_;
};
PrivateCluster* PgRestartTest::cluster_ = nullptr;

// PostgreSQL restarts (fast shutdown) twice during uploads: once while the
// client is still streaming, once inside the ingest transaction (held there by
// a trigger that sleeps). The client sees OK or a retryable status, never a
// half-written casing; the retry with the same client_request_id stores the
// casing once.
TEST_F(PgRestartTest, UploadSurvivesRestart) {
  ASSERT_TRUE(cluster_->ok());
  const std::string url = cluster_->url();
  Tokens t = Bootstrap(url);
  ApiServer server;
  server.Start(url);
  ASSERT_NE(server.port(), 0);
  const auto fadul = FadulBytes("fadul-1-1");
  ASSERT_FALSE(fadul.empty());

  auto first = Upload(server.channel(), t.technician_a, Variant(fadul, "a"), Metadata("Agency A", "F-1", "a"), "req-a");
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();

  // (1) Restart between two chunks of the stream.
  const auto bytes_b = Variant(fadul, "b");
  {
    auto stub = v1::IngestService::NewStub(server.channel());
    grpc::ClientContext ctx;
    Authorize(&ctx, t.technician_a);
    v1::UploadScanResponse resp;
    auto w = stub->UploadScan(&ctx, &resp);
    v1::UploadScanRequest h;
    *h.mutable_header()->mutable_metadata() = Metadata("Agency A", "F-1", "b");
    h.mutable_header()->set_client_request_id("req-b");
    h.mutable_header()->set_total_bytes(bytes_b.size());
    ASSERT_TRUE(w->Write(h));
    const std::size_t half = bytes_b.size() / 2;
    v1::UploadScanRequest c1;
    c1.set_chunk(bytes_b.data(), half);
    ASSERT_TRUE(w->Write(c1));
    ASSERT_TRUE(cluster_->Stop());
    ASSERT_TRUE(cluster_->Start());
    v1::UploadScanRequest c2;
    c2.set_chunk(bytes_b.data() + half, bytes_b.size() - half);
    w->Write(c2);
    w->WritesDone();
    grpc::Status st = w->Finish();
    EXPECT_TRUE(st.ok() || Retryable(st.error_code())) << st.error_code() << " " << st.error_message();
  }
  auto retry_b = UploadWithRetry(server.channel(), t.technician_a, bytes_b, Metadata("Agency A", "F-1", "b"), "req-b");
  ASSERT_TRUE(retry_b.status.ok()) << retry_b.status.error_message();

  // (2) Restart inside the ingest transaction: the casing and scan rows are
  // inserted, the original bytes are being written (trigger sleeps 30 s).
  ASSERT_TRUE(ExecSql(url,
                      "CREATE FUNCTION fault_sleep() RETURNS trigger LANGUAGE plpgsql AS "
                      "$$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$; "
                      "CREATE TRIGGER fault_sleep BEFORE INSERT ON scan_blobs FOR EACH ROW "
                      "EXECUTE FUNCTION fault_sleep()"));
  const auto bytes_c = Variant(fadul, "c");
  UploadOutcome during;
  std::thread client([&] { during = Upload(server.channel(), t.technician_a, bytes_c, Metadata("Agency A", "F-1", "c"), "req-c"); });
  const bool inside = WaitForSleepingBackend(cluster_->url("postgres"), "ballistics", 60);
  EXPECT_TRUE(inside) << "the upload never reached the scan_blobs insert";
  ASSERT_TRUE(cluster_->Stop());
  ASSERT_TRUE(cluster_->Start());
  client.join();
  EXPECT_FALSE(during.status.ok());
  EXPECT_TRUE(Retryable(during.status.error_code())) << during.status.error_code() << " " << during.status.error_message();
  EXPECT_EQ(QueryInt(url, "SELECT count(*) FROM casings WHERE exhibit_id = 'c'"), 0) << "half-written casing";
  EXPECT_EQ(HalfWrittenCasings(url), 0);

  ASSERT_TRUE(ExecSql(url, "DROP TRIGGER fault_sleep ON scan_blobs"));
  auto retry_c = UploadWithRetry(server.channel(), t.technician_a, bytes_c, Metadata("Agency A", "F-1", "c"), "req-c");
  ASSERT_TRUE(retry_c.status.ok()) << retry_c.status.error_message();
  EXPECT_FALSE(retry_c.response.already_existed());
  auto again_c = Upload(server.channel(), t.technician_a, bytes_c, Metadata("Agency A", "F-1", "c"), "req-c");
  ASSERT_TRUE(again_c.status.ok()) << again_c.status.error_message();
  EXPECT_TRUE(again_c.response.already_existed());
  EXPECT_EQ(again_c.response.casing_id(), retry_c.response.casing_id());

  EXPECT_EQ(QueryInt(url, "SELECT count(*) FROM casings"), 3);
  EXPECT_EQ(HalfWrittenCasings(url), 0);
  EXPECT_TRUE(AuditIntact(url));
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

// PostgreSQL restarts while a search stores its result (a trigger holds the
// UPDATE of the search row): the client gets UNAVAILABLE, the retry succeeds
// and finds the mate.
TEST_F(PgRestartTest, SearchSurvivesRestart) {
  ASSERT_TRUE(cluster_->ok());
  ASSERT_TRUE(ExecSql(cluster_->url("postgres"), "CREATE DATABASE search_restart"));
  const std::string url = cluster_->url("search_restart");
  Tokens t = Bootstrap(url);
  ApiServer server;
  server.Start(url);
  ASSERT_NE(server.port(), 0);
  auto a = Upload(server.channel(), t.technician_a, FadulBytes("fadul-1-1"), Metadata("Agency A", "S-1", "1"));
  auto b = Upload(server.channel(), t.technician_a, FadulBytes("fadul-1-2"), Metadata("Agency A", "S-1", "2"));
  ASSERT_TRUE(a.status.ok() && b.status.ok()) << a.status.error_message() << b.status.error_message();

  ASSERT_TRUE(ExecSql(url,
                      "CREATE FUNCTION fault_sleep() RETURNS trigger LANGUAGE plpgsql AS "
                      "$$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$; "
                      "CREATE TRIGGER fault_sleep BEFORE UPDATE ON searches FOR EACH STATEMENT "
                      "EXECUTE FUNCTION fault_sleep()"));
  SearchOutcome during;
  std::thread client([&] { during = RunSearch(server.channel(), t.examiner_a, a.response.casing_id()); });
  const bool inside = WaitForSleepingBackend(cluster_->url("postgres"), "search_restart", 120);
  EXPECT_TRUE(inside) << "the search never reached storing its result";
  ASSERT_TRUE(cluster_->Stop());
  ASSERT_TRUE(cluster_->Start());
  client.join();
  EXPECT_EQ(during.status.error_code(), grpc::StatusCode::UNAVAILABLE) << during.status.error_message();
  EXPECT_EQ(QueryInt(url, "SELECT count(*) FROM comparisons"), 0) << "comparisons of a failed search were kept";

  ASSERT_TRUE(ExecSql(url, "DROP TRIGGER fault_sleep ON searches"));
  SearchOutcome retry;
  for (int i = 0; i < 5; ++i) {
    retry = RunSearch(server.channel(), t.examiner_a, a.response.casing_id());
    if (retry.status.ok() || !Retryable(retry.status.error_code())) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  ASSERT_TRUE(retry.status.ok()) << retry.status.error_message();
  ASSERT_GT(retry.result.combined_size(), 0);
  EXPECT_EQ(retry.result.combined(0).casing_id(), b.response.casing_id());
  EXPECT_EQ(HalfWrittenCasings(url), 0);
  EXPECT_TRUE(AuditIntact(url));
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

// ballisticsd is SIGKILLed while 4 clients upload. After a restart every
// acknowledged casing is stored whole and searchable (the index loaded at
// start holds all their signatures); the clients' retries of the calls that
// failed store each of those once.
TEST(ServerKillTest, AcknowledgedUploadsSurviveSigkill) {
  TestDatabase db;
  ASSERT_FALSE(db.url().empty());
  Tokens t = Bootstrap(db.url());
  ApiServer server;
  server.Start(db.url());
  ASSERT_NE(server.port(), 0);
  const auto fadul = FadulBytes("fadul-2-1");
  ASSERT_FALSE(fadul.empty());

  std::mutex mu;
  std::map<std::string, std::int64_t> acked;  // request id -> casing id
  std::set<std::string> failed;
  std::atomic<bool> stop{false};
  std::atomic<int> acked_count{0};
  auto channel = server.channel();
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; !stop && i < 50; ++i) {
        const std::string id = "kill-" + std::to_string(c) + "-" + std::to_string(i);
        auto o = Upload(channel, t.technician_a, Variant(fadul, id), Metadata("Agency A", "K-1", id), id);
        std::lock_guard<std::mutex> l(mu);
        if (o.status.ok()) {
          acked[id] = o.response.casing_id();
          acked_count++;
        } else {
          failed.insert(id);
          if (!Retryable(o.status.error_code())) {
            ADD_FAILURE() << id << ": " << o.status.error_code() << " " << o.status.error_message();
          }
        }
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (acked_count < 10 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Clients finish the call they are in (killed under them) and stop: the
  // failed ones are the uploads in flight at the kill.
  stop = true;
  server.Kill();
  for (auto& th : clients) th.join();
  ASSERT_GE(acked.size(), 10u);

  ApiServer again;
  again.Start(db.url());
  ASSERT_NE(again.port(), 0);
  // Acknowledged: all there, whole.
  int lost = 0;
  auto casings = v1::CasingService::NewStub(again.channel());
  for (const auto& [id, casing_id] : acked) {
    grpc::ClientContext ctx;
    Authorize(&ctx, t.technician_a);
    v1::GetCasingRequest req;
    req.set_casing_id(casing_id);
    v1::Casing out;
    grpc::Status st = casings->GetCasing(&ctx, req, &out);
    if (!st.ok() || out.metadata().exhibit_id() != id || out.signatures_size() == 0) ++lost;
  }
  EXPECT_EQ(lost, 0) << "acknowledged casings lost after SIGKILL";
  EXPECT_EQ(HalfWrittenCasings(db.url()), 0);
  // Searchable: a search from one acknowledged casing lists the others (same scan).
  auto s = RunSearch(again.channel(), t.examiner_a, acked.begin()->second);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_GT(s.result.combined_size(), 0);
  // The failed ones: the client's retry stores each once (or finds the
  // casing committed just before the kill).
  for (const std::string& id : failed) {
    auto o = UploadWithRetry(again.channel(), t.technician_a, Variant(fadul, id), Metadata("Agency A", "K-1", id), id);
    EXPECT_TRUE(o.status.ok()) << id << ": " << o.status.error_message();
  }
  EXPECT_EQ(db.Count("casings"), static_cast<std::int64_t>(acked.size() + failed.size()));
  EXPECT_EQ(HalfWrittenCasings(db.url()), 0);
  EXPECT_TRUE(AuditIntact(db.url()));
  std::cout << "[ reliability ] sigkill: acknowledged " << acked.size() << ", in flight/failed " << failed.size()
            << ", lost " << lost << "\n";
  EXPECT_EQ(again.Stop(), 0) << again.Log();
}

// The database turns read-only under a running server: uploads fail with a
// clear, retryable UNAVAILABLE naming the cause, nothing is written; once it is
// writable again the same upload succeeds.
TEST(ReadOnlyDatabaseTest, ClearErrorAndRecovery) {
  TestDatabase db;
  ASSERT_FALSE(db.url().empty());
  Tokens t = Bootstrap(db.url());
  ApiServer server;
  server.Start(db.url());
  ASSERT_NE(server.port(), 0);
  const auto fadul = FadulBytes("fadul-3-1");
  auto first = Upload(server.channel(), t.technician_a, Variant(fadul, "1"), Metadata("Agency A", "R-1", "1"), "ro-1");
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();

  const std::string admin = TestDatabaseUrl();
  const std::string name = QueryString(db.url(), "SELECT current_database()");
  auto terminate = [&] {
    // New sessions pick up the database setting; pooled ones must reconnect.
    QueryInt(admin, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" + name + "'");
  };
  ASSERT_TRUE(ExecSql(admin, "ALTER DATABASE " + name + " SET default_transaction_read_only = on"));
  terminate();
  // The first call may meet a pooled connection that was terminated
  // (UNAVAILABLE "connection lost"); the next ones reach the read-only database.
  UploadOutcome ro;
  for (int i = 0; i < 3; ++i) {
    ro = Upload(server.channel(), t.technician_a, Variant(fadul, "2"), Metadata("Agency A", "R-1", "2"), "ro-2");
    if (ro.status.error_message().find("read-only") != std::string::npos) break;
    EXPECT_EQ(ro.status.error_code(), grpc::StatusCode::UNAVAILABLE) << ro.status.error_message();
  }
  EXPECT_EQ(ro.status.error_code(), grpc::StatusCode::UNAVAILABLE) << ro.status.error_message();
  EXPECT_NE(ro.status.error_message().find("read-only"), std::string::npos) << ro.status.error_message();
  EXPECT_EQ(db.Count("casings"), 1);

  ASSERT_TRUE(ExecSql(admin, "ALTER DATABASE " + name + " RESET default_transaction_read_only"));
  terminate();
  auto rw = UploadWithRetry(server.channel(), t.technician_a, Variant(fadul, "2"), Metadata("Agency A", "R-1", "2"), "ro-2");
  ASSERT_TRUE(rw.status.ok()) << rw.status.error_message();
  EXPECT_EQ(db.Count("casings"), 2);
  EXPECT_EQ(HalfWrittenCasings(db.url()), 0);
  EXPECT_TRUE(AuditIntact(db.url()));
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

// The disk under the database fills up: a database whose tablespace is a 40 MiB
// tmpfs. Uploads fail with RESOURCE_EXHAUSTED ("No space left on device"),
// nothing half-written, every acknowledged casing intact; after the tmpfs
// grows, the failed upload succeeds. Needs root (mount, CREATE TABLESPACE
// in a directory owned by postgres): skipped otherwise.
TEST(DiskFullTest, ClearErrorNoCorruption) {
  if (getuid() != 0) GTEST_SKIP() << "disk-full needs root to mount a tmpfs";
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("ballistics_full_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=40m,mode=0700") != 0) {
    std::filesystem::remove(dir);
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  }
  std::system(("chown postgres:postgres " + dir.string()).c_str());
  const std::string admin = TestDatabaseUrl();
  const std::string tag = std::to_string(getpid());
  const std::string ts = "full_ts_" + tag, name = "full_db_" + tag;
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{[&] {
    ExecSql(admin, "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    ExecSql(admin, "DROP TABLESPACE IF EXISTS " + ts);
    umount2(dir.c_str(), MNT_DETACH);
    std::filesystem::remove(dir);
  }};
  ASSERT_TRUE(ExecSql(admin, "CREATE TABLESPACE " + ts + " LOCATION '" + dir.string() + "'"));
  ASSERT_TRUE(ExecSql(admin, "CREATE DATABASE " + name + " TABLESPACE " + ts));
  const std::string url = WithDatabase(admin, name);
  Tokens t = Bootstrap(url);
  ApiServer server;
  server.Start(url, {"--audit-anchor-interval-s", "0"});
  ASSERT_NE(server.port(), 0);

  const auto fadul = FadulBytes("fadul-4-1");
  std::vector<std::int64_t> acked;
  UploadOutcome full;
  std::string full_id;
  for (int i = 0; i < 60; ++i) {
    const std::string id = "full-" + std::to_string(i);
    auto o = Upload(server.channel(), t.technician_a, Variant(fadul, id), Metadata("Agency A", "D-1", id), id);
    if (!o.status.ok()) {
      full = o;
      full_id = id;
      break;
    }
    acked.push_back(o.response.casing_id());
  }
  ASSERT_FALSE(full_id.empty()) << "40 MiB never filled up";
  EXPECT_EQ(full.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << full.status.error_message();
  EXPECT_NE(full.status.error_message().find("No space left on device"), std::string::npos)
      << full.status.error_message();
  EXPECT_EQ(HalfWrittenCasings(url), 0);
  EXPECT_EQ(QueryInt(url, "SELECT count(*) FROM casings"), static_cast<std::int64_t>(acked.size()));

  // More room: the same upload goes through, once.
  ASSERT_EQ(mount("tmpfs", dir.c_str(), "tmpfs", MS_REMOUNT, "size=200m,mode=0700"), 0) << std::strerror(errno);
  auto o = UploadWithRetry(server.channel(), t.technician_a, Variant(fadul, full_id), Metadata("Agency A", "D-1", full_id),
                           full_id);
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(QueryInt(url, "SELECT count(*) FROM casings"), static_cast<std::int64_t>(acked.size() + 1));
  EXPECT_EQ(HalfWrittenCasings(url), 0);
  EXPECT_TRUE(AuditIntact(url));
  std::cout << "[ reliability ] disk full after " << acked.size() << " uploads: " << full.status.error_message()
            << "\n";
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

}  // namespace
}  // namespace ballistics::testing
