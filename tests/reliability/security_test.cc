// Security cases against a real ballisticsd (issue 8, "Security"; the table in
// docs/reliability.md lists them): forged, expired and revoked tokens, role
// escalation, cross-agency reads, SQL injection through every string field,
// oversize messages, slow-loris upload streams, admission back-pressure and
// the anchored audit head.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "ballistics/v1/admin.grpc.pb.h"
#include "ballistics/v1/leads.grpc.pb.h"
#include "ballistics/v1/review.grpc.pb.h"
#include "reliability/reliability_harness.h"

namespace ballistics::testing {
namespace {

using grpc::StatusCode;

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    t_ = Bootstrap(db_.url());
    server_.Start(db_.url(), {"--upload-idle-timeout-ms", "1000", "--upload-timeout-s", "4",
                              "--max-concurrent-uploads", "2", "--audit-anchor-interval-s", "1"});
    ASSERT_NE(server_.port(), 0);
    ch_ = server_.channel();
    auto up = Upload(ch_, t_.technician_a, FadulBytes("fadul-1-1"), Metadata("Agency A", "SEC-1", "1"));
    ASSERT_TRUE(up.status.ok()) << up.status.error_message();
    casing_a_ = up.response.casing_id();
  }
  void TearDown() override { EXPECT_EQ(server_.Stop(), 0) << server_.Log(); }

  grpc::Status GetCasing(const std::string& token, std::int64_t id, v1::Casing* out = nullptr) {
    auto stub = v1::CasingService::NewStub(ch_);
    grpc::ClientContext ctx;
    if (!token.empty()) Authorize(&ctx, token);
    v1::GetCasingRequest req;
    req.set_casing_id(id);
    v1::Casing c;
    return stub->GetCasing(&ctx, req, out ? out : &c);
  }
  grpc::Status CreateToken(const std::string& token, v1::Role role, const std::string& holder,
                           v1::CreateTokenResponse* out = nullptr, const std::string& agency = "Agency A") {
    auto stub = v1::AdminService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    v1::CreateTokenRequest req;
    req.set_agency(agency);
    req.set_role(role);
    req.set_holder(holder);
    req.set_valid_days(1);
    v1::CreateTokenResponse r;
    return stub->CreateToken(&ctx, req, out ? out : &r);
  }
  grpc::Status VerifyAudit(const std::string& token, std::int64_t seq, const std::string& hash,
                           v1::VerifyAuditResponse* out) {
    auto stub = v1::AdminService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    v1::VerifyAuditRequest req;
    req.set_expect_head_seq(seq);
    req.set_expect_head_hash(hash);
    return stub->VerifyAudit(&ctx, req, out);
  }

  TestDatabase db_;
  Tokens t_;
  ApiServer server_;
  std::shared_ptr<grpc::Channel> ch_;
  std::int64_t casing_a_ = 0;
};

TEST_F(SecurityTest, ForgedExpiredRevokedTokens) {
  const std::string forged(64, 'a');
  std::string flipped = t_.technician_a;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  for (const std::string& tok : {forged, flipped, std::string("not-hex-at-all"), std::string("")}) {
    grpc::Status s = GetCasing(tok, casing_a_);
    EXPECT_EQ(s.error_code(), StatusCode::UNAUTHENTICATED) << tok << ": " << s.error_message();
    if (!tok.empty()) {
      EXPECT_EQ(s.error_message().find(tok), std::string::npos) << "secret echoed";
    }
  }
  {  // Not a bearer token.
    auto stub = v1::CasingService::NewStub(ch_);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Basic " + t_.technician_a);
    v1::GetCasingRequest req;
    req.set_casing_id(casing_a_);
    v1::Casing c;
    EXPECT_EQ(stub->GetCasing(&ctx, req, &c).error_code(), StatusCode::UNAUTHENTICATED);
  }
  // Expired: a token whose expiry passed (time moved by SQL instead of waiting a day).
  v1::CreateTokenResponse fresh;
  ASSERT_TRUE(CreateToken(t_.admin_a, v1::TECHNICIAN, "short-lived", &fresh).ok());
  ASSERT_TRUE(GetCasing(fresh.token(), casing_a_).ok());
  ASSERT_TRUE(ExecSql(db_.url(), "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = " +
                                     std::to_string(fresh.token_id())));
  grpc::Status expired = GetCasing(fresh.token(), casing_a_);
  EXPECT_EQ(expired.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(expired.error_message().find("expired"), std::string::npos) << expired.error_message();
  // Revoked through the API: refused from the next call on.
  v1::CreateTokenResponse victim;
  ASSERT_TRUE(CreateToken(t_.admin_a, v1::EXAMINER, "leaver", &victim).ok());
  ASSERT_TRUE(GetCasing(victim.token(), casing_a_).ok());
  {
    auto stub = v1::AdminService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.admin_a);
    v1::RevokeTokenRequest req;
    req.set_token_id(victim.token_id());
    v1::RevokeTokenResponse r;
    ASSERT_TRUE(stub->RevokeToken(&ctx, req, &r).ok());
  }
  grpc::Status revoked = GetCasing(victim.token(), casing_a_);
  EXPECT_EQ(revoked.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(revoked.error_message().find("revoked"), std::string::npos) << revoked.error_message();
}

TEST_F(SecurityTest, RoleEscalationRefused) {
  // Technician and examiner calling admin RPCs, including minting an admin token.
  for (const std::string& tok : {t_.technician_a, t_.examiner_a, t_.reader_a}) {
    EXPECT_EQ(CreateToken(tok, v1::ADMIN, "me-as-admin").error_code(), StatusCode::PERMISSION_DENIED);
    v1::VerifyAuditResponse r;
    EXPECT_EQ(VerifyAudit(tok, 0, "", &r).error_code(), StatusCode::PERMISSION_DENIED);
    auto stub = v1::AdminService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, tok);
    v1::CreateAgencyRequest req;
    req.set_name("Rogue");
    v1::Agency a;
    EXPECT_EQ(stub->CreateAgency(&ctx, req, &a).error_code(), StatusCode::PERMISSION_DENIED);
  }
  // A technician may not search; a reader may not upload or record decisions.
  EXPECT_EQ(RunSearch(ch_, t_.technician_a, casing_a_).status.error_code(), StatusCode::PERMISSION_DENIED);
  auto up = Upload(ch_, t_.reader_a, Variant(FadulBytes("fadul-1-1"), "r"), Metadata("Agency A", "SEC-1", "r"));
  EXPECT_EQ(up.status.error_code(), StatusCode::PERMISSION_DENIED);
  auto s = RunSearch(ch_, t_.examiner_a, casing_a_);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  {
    auto stub = v1::ReviewService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.reader_a);
    v1::RecordDecisionRequest req;
    req.set_comparison_id(1);
    req.set_outcome(v1::HIT);
    v1::Decision d;
    EXPECT_EQ(stub->RecordDecision(&ctx, req, &d).error_code(), StatusCode::PERMISSION_DENIED);
  }
  // A technician uploading for another agency.
  auto other = Upload(ch_, t_.technician_a, Variant(FadulBytes("fadul-1-1"), "x"), Metadata("Agency B", "SEC-1", "x"));
  EXPECT_EQ(other.status.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(db_.Count("decisions"), 0);
  EXPECT_EQ(db_.Count("casings"), 1);
}

TEST_F(SecurityTest, CrossAgencyReadsRefused) {
  EXPECT_EQ(GetCasing(t_.examiner_b, casing_a_).error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(GetCasing(t_.technician_b, casing_a_).error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(RunSearch(ch_, t_.examiner_b, casing_a_).status.error_code(), StatusCode::PERMISSION_DENIED);
  auto mine = RunSearch(ch_, t_.examiner_a, casing_a_);
  ASSERT_TRUE(mine.status.ok()) << mine.status.error_message();
  {  // A's search and its comparisons are invisible to B (row-level security).
    auto stub = v1::SearchService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.examiner_b);
    v1::GetSearchRequest req;
    req.set_search_id(mine.result.search_id());
    v1::SearchResult r;
    EXPECT_EQ(stub->GetSearch(&ctx, req, &r).error_code(), StatusCode::NOT_FOUND);
  }
  {  // B's search with a filter naming agency A.
    auto b = Upload(ch_, t_.technician_b, FadulBytes("fadul-1-2"), Metadata("Agency B", "SEC-B", "1"));
    ASSERT_TRUE(b.status.ok()) << b.status.error_message();
    auto stub = v1::SearchService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.examiner_b);
    v1::SearchRequest req;
    req.set_casing_id(b.response.casing_id());
    req.mutable_filter()->add_agencies("Agency A");
    auto reader = stub->Search(&ctx, req);
    v1::SearchUpdate u;
    while (reader->Read(&u)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), StatusCode::PERMISSION_DENIED);
    // B's own search does not list A's casing (same firearm: it would rank first).
    auto own = RunSearch(ch_, t_.examiner_b, b.response.casing_id());
    ASSERT_TRUE(own.status.ok()) << own.status.error_message();
    for (const auto& c : own.result.combined()) EXPECT_NE(c.casing_id(), casing_a_);
  }
  {  // Leads by A's case number, asked by B for agency A.
    auto stub = v1::LeadService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.examiner_b);
    v1::GetLinkedRequest req;
    req.set_case_number("SEC-1");
    req.set_agency("Agency A");
    v1::LinkedGraph g;
    grpc::Status s = stub->GetLinked(&ctx, req, &g);
    if (s.ok()) {
      EXPECT_EQ(g.casings_size(), 0);
    } else {
      EXPECT_TRUE(s.error_code() == StatusCode::PERMISSION_DENIED || s.error_code() == StatusCode::NOT_FOUND)
          << s.error_code() << " " << s.error_message();
    }
  }
}

// Hostile strings go through every string field of the API as parameters,
// never as SQL: each call either stores the text verbatim or refuses it as
// INVALID_ARGUMENT, and no SQL error reaches the client.
TEST_F(SecurityTest, SqlInjectionStoredVerbatim) {
  const std::vector<std::string> nasties = {
      "'; DROP TABLE casings; --", "' OR '1'='1", "\"); SELECT pg_sleep(30); --",
      "Robert'); DELETE FROM audit_log; --", "$1::text", "\\' ; TRUNCATE scans CASCADE; --",
      "1; UPDATE api_tokens SET role = 'admin'", "%s%n%x", "\xe2\x80\x8f\xd8\xa7 unicode \xf0\x9f\x94\xab"};
  auto no_sql_leak = [](const grpc::Status& s, const std::string& what) {
    EXPECT_EQ(s.error_message().find("syntax error"), std::string::npos) << what << ": " << s.error_message();
    EXPECT_EQ(s.error_message().find("SQLSTATE 42"), std::string::npos) << what << ": " << s.error_message();
    EXPECT_TRUE(s.ok() || s.error_code() == StatusCode::INVALID_ARGUMENT || s.error_code() == StatusCode::NOT_FOUND ||
                s.error_code() == StatusCode::PERMISSION_DENIED)
        << what << ": " << s.error_code() << " " << s.error_message();
  };
  const auto fadul = FadulBytes("fadul-1-1");
  int n = 0;
  for (const std::string& x : nasties) {
    const std::string tag = std::to_string(n++);
    // Upload metadata, file name, request id, capture device (admin may name any agency).
    v1::CasingMetadata md = Metadata(x, x, x + tag);
    md.set_calibre(x);
    md.set_capture_device(x);
    auto stub = v1::IngestService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.admin_a);
    v1::UploadScanResponse resp;
    auto w = stub->UploadScan(&ctx, &resp);
    v1::UploadScanRequest h;
    const auto bytes = Variant(fadul, "inj" + tag);
    *h.mutable_header()->mutable_metadata() = md;
    h.mutable_header()->set_file_name(x);
    h.mutable_header()->set_client_request_id(x.substr(0, 50) + tag);
    h.mutable_header()->set_total_bytes(bytes.size());
    w->Write(h);
    v1::UploadScanRequest data;
    data.set_chunk(bytes.data(), bytes.size());
    w->Write(data);
    w->WritesDone();
    grpc::Status s = w->Finish();
    no_sql_leak(s, "upload " + x);
    if (s.ok()) {
      v1::Casing c;
      ASSERT_TRUE(GetCasing(t_.admin_a, resp.casing_id(), &c).ok());
      EXPECT_EQ(c.metadata().case_number(), x);
      EXPECT_EQ(c.metadata().exhibit_id(), x + tag);
      EXPECT_EQ(c.metadata().calibre(), x);
      EXPECT_EQ(c.metadata().agency(), x);
    }
    // Admin strings: agency name, token holder.
    {
      auto admin = v1::AdminService::NewStub(ch_);
      grpc::ClientContext c2;
      Authorize(&c2, t_.admin_a);
      v1::CreateAgencyRequest req;
      req.set_name("agency " + x);
      v1::Agency a;
      grpc::Status st = admin->CreateAgency(&c2, req, &a);
      no_sql_leak(st, "agency " + x);
      if (st.ok()) {
        EXPECT_EQ(a.name(), "agency " + x);
      }
      no_sql_leak(CreateToken(t_.admin_a, v1::TECHNICIAN, x), "holder " + x);
    }
    // Search filter strings.
    {
      auto search = v1::SearchService::NewStub(ch_);
      grpc::ClientContext c3;
      Authorize(&c3, t_.examiner_a);
      v1::SearchRequest req;
      req.set_casing_id(casing_a_);
      req.mutable_filter()->add_calibres(x);
      auto reader = search->Search(&c3, req);
      v1::SearchUpdate u;
      while (reader->Read(&u)) {
      }
      no_sql_leak(reader->Finish(), "calibre filter " + x);
    }
    // Leads by case number and agency.
    {
      auto leads = v1::LeadService::NewStub(ch_);
      grpc::ClientContext c4;
      Authorize(&c4, t_.examiner_a);
      v1::GetLinkedRequest req;
      req.set_case_number(x);
      v1::LinkedGraph g;
      no_sql_leak(leads->GetLinked(&c4, req, &g), "case number " + x);
    }
    // Request id metadata (ends up in the audit trail).
    {
      auto cs = v1::CasingService::NewStub(ch_);
      grpc::ClientContext c5;
      Authorize(&c5, t_.technician_a);
      c5.AddMetadata("x-request-id", "rid" + tag);
      v1::GetCasingRequest req;
      req.set_casing_id(casing_a_);
      v1::Casing c;
      no_sql_leak(cs->GetCasing(&c5, req, &c), "request id");
    }
  }
  // Decision notes.
  auto s = RunSearch(ch_, t_.examiner_a, casing_a_);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  if (s.result.combined_size() > 0) {
    auto review = v1::ReviewService::NewStub(ch_);
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.examiner_a);
    v1::RecordDecisionRequest req;
    req.set_comparison_id(s.result.combined(0).comparison_id());
    req.set_outcome(v1::INCONCLUSIVE);
    req.set_notes(nasties[0] + nasties[3]);
    v1::Decision d;
    grpc::Status st = review->RecordDecision(&ctx, req, &d);
    no_sql_leak(st, "notes");
    if (st.ok()) {
      EXPECT_EQ(d.notes(), nasties[0] + nasties[3]);
    }
  }
  // Nothing was dropped, truncated or escalated; the audit chain is intact.
  EXPECT_GE(db_.Count("casings"), 1);
  EXPECT_GE(db_.Count("scans"), 1);
  EXPECT_EQ(QueryInt(db_.url(), "SELECT count(*) FROM api_tokens WHERE role = 'admin'"), 1);
  auto sys = store::ApiDb::ConnectSystem(db_.url());
  ASSERT_TRUE(sys.ok());
  auto rep = (*sys)->VerifyAudit();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok) << rep->problem;
}

TEST_F(SecurityTest, OversizeMessagesRefused) {
  auto stub = v1::IngestService::NewStub(ch_);
  {  // One message over the 4 MiB gRPC limit.
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.technician_a);
    v1::UploadScanResponse r;
    auto w = stub->UploadScan(&ctx, &r);
    v1::UploadScanRequest h;
    *h.mutable_header()->mutable_metadata() = Metadata("Agency A", "BIG", "1");
    w->Write(h);
    v1::UploadScanRequest big;
    big.set_chunk(std::string(5 << 20, 'x'));
    w->Write(big);
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), StatusCode::RESOURCE_EXHAUSTED);
  }
  {  // Announced size over --max-upload-mb (default 512 MiB).
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.technician_a);
    v1::UploadScanResponse r;
    auto w = stub->UploadScan(&ctx, &r);
    v1::UploadScanRequest h;
    *h.mutable_header()->mutable_metadata() = Metadata("Agency A", "BIG", "2");
    h.mutable_header()->set_total_bytes(1ull << 40);
    w->Write(h);
    w->WritesDone();
    grpc::Status s = w->Finish();
    EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  }
  {  // Overlong fields.
    auto up = Upload(ch_, t_.technician_a, Variant(FadulBytes("fadul-1-1"), "long"),
                     Metadata("Agency A", std::string(100000, 'c'), "3"));
    EXPECT_EQ(up.status.error_code(), StatusCode::INVALID_ARGUMENT) << up.status.error_message();
    auto rid = Upload(ch_, t_.technician_a, Variant(FadulBytes("fadul-1-1"), "rid"), Metadata("Agency A", "BIG", "4"),
                      std::string(5000, 'r'));
    EXPECT_EQ(rid.status.error_code(), StatusCode::INVALID_ARGUMENT) << rid.status.error_message();
  }
  EXPECT_EQ(db_.Count("casings"), 1);
}

// A client that opens an upload and stops sending (or trickles) is cut off
// after the idle limit (1 s here) or the stream limit (4 s here), and its
// admission slot is free again.
TEST_F(SecurityTest, SlowLorisUploadsCutOff) {
  auto stub = v1::IngestService::NewStub(ch_);
  auto slow = [&](bool trickle) {
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.technician_a);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::UploadScanResponse r;
    auto w = stub->UploadScan(&ctx, &r);
    v1::UploadScanRequest h;
    *h.mutable_header()->mutable_metadata() = Metadata("Agency A", "SLOW", trickle ? "t" : "i");
    h.mutable_header()->set_total_bytes(1000);
    const auto start = std::chrono::steady_clock::now();
    bool ok = w->Write(h);
    // Idle: nothing more. Trickle: one byte every 500 ms (under the idle limit).
    for (int i = 0; ok && trickle && i < 40; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      v1::UploadScanRequest c;
      c.set_chunk("x");
      ok = w->Write(c);
    }
    grpc::Status s = w->Finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return std::make_pair(s, secs);
  };
  auto [idle, idle_s] = slow(false);
  EXPECT_FALSE(idle.ok());
  EXPECT_TRUE(idle.error_code() == StatusCode::CANCELLED || idle.error_code() == StatusCode::DEADLINE_EXCEEDED)
      << idle.error_code() << " " << idle.error_message();
  EXPECT_LT(idle_s, 25.0) << "cut off by the client's deadline, not the server";
  auto [trickle, trickle_s] = slow(true);
  EXPECT_FALSE(trickle.ok());
  EXPECT_LT(trickle_s, 19.0) << "the trickle ran to its end; the stream limit did not apply";
  EXPECT_NE(server_.Log().find("upload stream stopped"), std::string::npos);
  // Both slots are free again: two uploads at once are admitted.
  auto a = Upload(ch_, t_.technician_a, Variant(FadulBytes("fadul-1-1"), "after"), Metadata("Agency A", "SLOW", "ok"));
  EXPECT_TRUE(a.status.ok()) << a.status.error_message();
}

// Over --max-concurrent-uploads: RESOURCE_EXHAUSTED at once, not a queue.
TEST_F(SecurityTest, AdmissionRefusesOverLimit) {
  auto stub = v1::IngestService::NewStub(ch_);
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientWriter<v1::UploadScanRequest>>> open;
  v1::UploadScanResponse r[2];
  for (int i = 0; i < 2; ++i) {  // hold both slots (header sent, no data yet; under the 1 s idle limit)
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    Authorize(ctxs.back().get(), t_.technician_a);
    open.push_back(stub->UploadScan(ctxs.back().get(), &r[i]));
    v1::UploadScanRequest h;
    *h.mutable_header()->mutable_metadata() = Metadata("Agency A", "ADM", std::to_string(i));
    ASSERT_TRUE(open.back()->Write(h));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // both admitted by now
  auto third = Upload(ch_, t_.technician_a, Variant(FadulBytes("fadul-1-1"), "3rd"), Metadata("Agency A", "ADM", "3"));
  EXPECT_EQ(third.status.error_code(), StatusCode::RESOURCE_EXHAUSTED) << third.status.error_message();
  for (auto& w : open) {
    w->WritesDone();
    w->Finish();
  }
  const std::string metrics = HttpGet(server_.metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("ballistics_admission_rejected_total{method=\"/ballistics.v1.IngestService/UploadScan\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("process_resident_memory_bytes"), std::string::npos);
}

// Deleting the newest audit rows leaves a shorter, self-consistent chain that
// a plain verify accepts; verification against an anchored head (published in
// the server log and metrics) catches it, through the API and the CLI.
TEST_F(SecurityTest, AnchoredAuditHeadCatchesDeletedNewestRows) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(GetCasing(t_.technician_a, casing_a_).ok());
  v1::VerifyAuditResponse head;
  ASSERT_TRUE(VerifyAudit(t_.admin_a, 0, "", &head).ok());
  ASSERT_TRUE(head.ok()) << head.problem();
  const std::int64_t seq = head.head_seq();
  const std::string hash = head.head_hash();
  // The server publishes its head: log line and metric (anchor every 1 s here).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string metrics;
  while (std::chrono::steady_clock::now() < deadline &&
         (metrics = HttpGet(server_.metrics_port(), "/metrics")).find("ballistics_audit_head_seq{hash=") ==
             std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_NE(metrics.find("ballistics_audit_head_seq{hash=\""), std::string::npos);
  EXPECT_NE(server_.Log().find("audit head seq="), std::string::npos);

  for (int i = 0; i < 3; ++i) ASSERT_TRUE(GetCasing(t_.technician_a, casing_a_).ok());
  v1::VerifyAuditResponse grown;
  ASSERT_TRUE(VerifyAudit(t_.admin_a, seq, hash, &grown).ok());
  EXPECT_TRUE(grown.ok()) << grown.problem();
  EXPECT_GT(grown.head_seq(), seq);

  // An attacker with superuser rights removes the anchored row and all after it.
  ASSERT_TRUE(ExecSql(db_.url(), "SET session_replication_role = replica; DELETE FROM audit_log WHERE seq >= " +
                                     std::to_string(seq)));
  auto sys = store::ApiDb::ConnectSystem(db_.url());
  ASSERT_TRUE(sys.ok());
  auto plain = (*sys)->VerifyAudit();
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->ok) << "a shorter chain is self-consistent: " << plain->problem;
  v1::VerifyAuditResponse anchored;
  ASSERT_TRUE(VerifyAudit(t_.admin_a, seq, hash, &anchored).ok());
  EXPECT_FALSE(anchored.ok());
  EXPECT_NE(anchored.problem().find("anchored head seq " + std::to_string(seq) + " is missing"), std::string::npos)
      << anchored.problem();
  // The CLI, directly on the database: exit 3 (broken) with the anchor, 0 without.
  auto run = [&](const std::string& extra) {
    const std::string cmd = std::string(BALLISTICSCTL_PATH) + " audit verify --database-url \"" + db_.url() + "\" " +
                            extra + " >/dev/null 2>&1";
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  EXPECT_EQ(run(""), 0);
  EXPECT_EQ(run("--expect-head " + std::to_string(seq) + ":" + hash), 3);
  EXPECT_EQ(run("--expect-head 1:" + std::string(64, '0')), 3);  // row 1 exists with another hash
  EXPECT_EQ(run("--expect-head nonsense"), 2);
}

}  // namespace
}  // namespace ballistics::testing
