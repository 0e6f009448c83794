// The API end to end: a real ballisticsd, a real PostgreSQL, real Fadul scans.
// Upload (idempotency, malformed input), authentication, roles, agency scoping
// in the service and in PostgreSQL (row-level security), audit trail, metrics,
// graceful shutdown.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "api_server.h"
#include "ballistics/v1/admin.grpc.pb.h"

namespace ballistics {
namespace {

using testing::ApiServer;
using testing::HttpGet;
using testing::Authorize;
using testing::FadulBytes;
using testing::Metadata;
using testing::Upload;

class ApiE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    tokens_ = testing::Bootstrap(db_.url());
    ASSERT_FALSE(tokens_.examiner_b.empty());
    server_.Start(db_.url());
    ASSERT_TRUE(server_.channel()) << server_.Log();
  }
  void TearDown() override { EXPECT_EQ(server_.Stop(), 0) << server_.Log(); }

  grpc::Status GetCasing(const std::string& token, std::int64_t id, v1::Casing* out) {
    auto stub = v1::CasingService::NewStub(server_.channel());
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    v1::GetCasingRequest req;
    req.set_casing_id(id);
    return stub->GetCasing(&ctx, req, out);
  }

  testing::TestDatabase db_;
  testing::Tokens tokens_;
  ApiServer server_;
};

TEST_F(ApiE2eTest, UploadIsIdempotentAndReadableByOwnAgencyOnly) {
  const auto bytes = FadulBytes("fadul-1-1");
  auto up = Upload(server_.channel(), tokens_.technician_a, bytes, Metadata("Agency A", "C-1", "1-1"), "req-1");
  ASSERT_TRUE(up.status.ok()) << up.status.error_message() << "\n" << server_.Log();
  const std::int64_t id = up.response.casing_id();
  EXPECT_GT(id, 0);
  EXPECT_FALSE(up.response.already_existed());
  EXPECT_EQ(up.response.sha256_hex().size(), 64u);
  ASSERT_GE(up.response.signatures_size(), 1);
  EXPECT_EQ(up.response.signatures(0), v1::BREECH_FACE);

  // A retry with the same client request id: the same casing, nothing new.
  auto again = Upload(server_.channel(), tokens_.technician_a, bytes, Metadata("Agency A", "C-1", "1-1"), "req-1");
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.response.casing_id(), id);
  EXPECT_TRUE(again.response.already_existed());
  // Same id, other bytes: refused.
  auto other = Upload(server_.channel(), tokens_.technician_a, FadulBytes("fadul-1-2"),
                      Metadata("Agency A", "C-1", "1-2"), "req-1");
  EXPECT_EQ(other.status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << other.status.error_message();
  EXPECT_EQ(db_.Count("casings"), 1);
  EXPECT_EQ(db_.Count("signatures"), up.response.signatures_size());

  v1::Casing c;
  grpc::Status s = GetCasing(tokens_.examiner_a, id, &c);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(c.metadata().agency(), "Agency A");
  EXPECT_EQ(c.metadata().case_number(), "C-1");
  EXPECT_EQ(c.metadata().capture_device(), "Test confocal microscope SN 42");
  EXPECT_EQ(c.sha256_hex(), up.response.sha256_hex());
  EXPECT_EQ(c.submitted_by(), "tech-a");
  s = GetCasing(tokens_.reader_a, id, &c);
  EXPECT_TRUE(s.ok()) << s.error_message();

  // Examiner of agency B reading agency A's casing.
  s = GetCasing(tokens_.examiner_b, id, &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  s = GetCasing(tokens_.examiner_a, id + 1000, &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(ApiE2eTest, AuthenticationAndRoles) {
  const auto bytes = FadulBytes("fadul-2-1");
  v1::Casing c;
  // Missing, malformed, unknown tokens.
  {
    auto stub = v1::CasingService::NewStub(server_.channel());
    grpc::ClientContext ctx;
    v1::GetCasingRequest req;
    req.set_casing_id(1);
    EXPECT_EQ(stub->GetCasing(&ctx, req, &c).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(GetCasing("not-a-token", 1, &c).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::string wrong = tokens_.examiner_a;
  wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
  EXPECT_EQ(GetCasing(wrong, 1, &c).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto up = Upload(server_.channel(), wrong, bytes, Metadata("Agency A", "C-2", "2-1"));
  EXPECT_EQ(up.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // Wrong role: an agency reader may not upload; a technician may not administer.
  up = Upload(server_.channel(), tokens_.reader_a, bytes, Metadata("Agency A", "C-2", "2-1"));
  EXPECT_EQ(up.status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << up.status.error_message();
  {
    auto admin = v1::AdminService::NewStub(server_.channel());
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.technician_a);
    v1::CreateAgencyRequest req;
    req.set_name("Agency C");
    v1::Agency out;
    EXPECT_EQ(admin->CreateAgency(&ctx, req, &out).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // Another agency's case.
  up = Upload(server_.channel(), tokens_.technician_a, bytes, Metadata("Agency B", "C-2", "2-1"));
  EXPECT_EQ(up.status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << up.status.error_message();
  EXPECT_EQ(db_.Count("casings"), 0);

  // Tokens made through the API work; revoked ones stop working.
  auto admin = v1::AdminService::NewStub(server_.channel());
  v1::CreateTokenResponse tok;
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.admin_a);
    v1::CreateTokenRequest req;
    req.set_agency("Agency B");
    req.set_role(v1::TECHNICIAN);
    req.set_holder("tech-b2");
    grpc::Status s = admin->CreateToken(&ctx, req, &tok);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  up = Upload(server_.channel(), tok.token(), bytes, Metadata("", "B-7", "2-1"));
  ASSERT_TRUE(up.status.ok()) << up.status.error_message();
  EXPECT_EQ(GetCasing(tok.token(), up.response.casing_id(), &c).error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(c.metadata().agency(), "Agency B");
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.admin_a);
    v1::RevokeTokenRequest req;
    req.set_token_id(tok.token_id());
    v1::RevokeTokenResponse out;
    ASSERT_TRUE(admin->RevokeToken(&ctx, req, &out).ok());
  }
  EXPECT_EQ(GetCasing(tok.token(), up.response.casing_id(), &c).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Admins read every agency.
  EXPECT_EQ(GetCasing(tokens_.admin_a, up.response.casing_id(), &c).error_code(), grpc::StatusCode::OK);
}

TEST_F(ApiE2eTest, MalformedUploadIsInvalidArgumentAndStoresNothing) {
  auto bytes = FadulBytes("fadul-3-1");
  bytes.resize(bytes.size() / 3);  // truncated zip
  auto up = Upload(server_.channel(), tokens_.technician_a, bytes, Metadata("Agency A", "C-3", "3-1"), "bad-1");
  EXPECT_EQ(up.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << up.status.error_message();
  std::vector<std::uint8_t> junk(5000, 0x42);
  up = Upload(server_.channel(), tokens_.technician_a, junk, Metadata("Agency A", "C-3", "3-2"));
  EXPECT_EQ(up.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << up.status.error_message();
  // Good bytes, bad metadata (no calibre).
  auto md = Metadata("Agency A", "C-3", "3-3");
  md.set_calibre("   ");
  up = Upload(server_.channel(), tokens_.technician_a, FadulBytes("fadul-3-1"), md);
  EXPECT_EQ(up.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << up.status.error_message();
  EXPECT_NE(up.status.error_message().find("calibre"), std::string::npos) << up.status.error_message();
  // No bytes at all.
  up = Upload(server_.channel(), tokens_.technician_a, {}, Metadata("Agency A", "C-3", "3-4"));
  EXPECT_EQ(up.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << up.status.error_message();
  for (const char* t : {"agencies", "casings", "scans", "scan_blobs", "signatures", "upload_requests"}) {
    // Two agencies from the bootstrap, nothing else anywhere.
    EXPECT_EQ(db_.Count(t), std::string(t) == "agencies" ? 2 : 0) << t;
  }
}

TEST_F(ApiE2eTest, RowLevelSecurityHidesOtherAgenciesInPostgres) {
  auto a = Upload(server_.channel(), tokens_.technician_a, FadulBytes("fadul-4-1"), Metadata("Agency A", "A", "4-1"));
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  auto b = Upload(server_.channel(), tokens_.technician_b, FadulBytes("fadul-4-2"), Metadata("Agency B", "B", "4-2"));
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();

  // The scoped connection the service uses, for agency B: agency A's rows are
  // invisible whatever the SQL, and cannot be written.
  store::Principal who_b;
  who_b.agency_id = tokens_.agency_b;
  who_b.role = store::ApiRole::kExaminer;
  auto url = store::ScopedUrl(db_.url(), who_b);
  ASSERT_TRUE(url.ok());
  auto st = store::Store::Connect(*url);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  auto list = (*st)->ListCasings();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, b.response.casing_id());
  EXPECT_EQ((*st)->GetCasing(a.response.casing_id()).status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*st)->GetSignatures(a.response.casing_id())->size(), 0u);
  EXPECT_EQ(testing::QueryInt(*url, "SELECT count(*) FROM scan_blobs"), 1);
  EXPECT_EQ(testing::QueryInt(*url, "SELECT count(*) FROM casings WHERE agency_id = " +
                                        std::to_string(tokens_.agency_a)),
            0);
  EXPECT_EQ(testing::QueryInt(*url, "SELECT CASE WHEN rolsuper OR rolbypassrls THEN 1 ELSE 0 END FROM pg_roles "
                                    "WHERE rolname = current_user"),
            0);
  // The role has no access to the token and audit tables at all.
  PGconn* c = PQconnectdb(url->c_str());
  PGresult* r = PQexec(c, "SELECT count(*) FROM api_tokens");
  EXPECT_NE(PQresultStatus(r), PGRES_TUPLES_OK);
  PQclear(r);
  PQfinish(c);
  // Without any agency set (a forgotten scope), nothing is visible.
  store::Principal nobody;
  auto bare = store::ScopedUrl(db_.url(), nobody);
  EXPECT_EQ(testing::QueryInt(*bare, "SELECT count(*) FROM casings"), 0);
  // The system (owner) connection sees both.
  EXPECT_EQ(db_.Count("casings"), 2);
}

TEST_F(ApiE2eTest, EveryCallIsAuditedAndTheChainDetectsEdits) {
  v1::Casing c;
  auto up = Upload(server_.channel(), tokens_.technician_a, FadulBytes("fadul-5-1"), Metadata("Agency A", "A", "5-1"));
  ASSERT_TRUE(up.status.ok()) << up.status.error_message();
  ASSERT_TRUE(GetCasing(tokens_.examiner_a, up.response.casing_id(), &c).ok());
  EXPECT_EQ(GetCasing(tokens_.examiner_b, up.response.casing_id(), &c).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(GetCasing("bogus", 1, &c).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(db_.Count("audit_log"), 4);
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM audit_log WHERE method LIKE '%UploadScan' AND status "
                                         "= 'OK' AND records = 'casing:" +
                                             std::to_string(up.response.casing_id()) + "' AND actor = 'tech-a'"),
            1);
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM audit_log WHERE status LIKE 'PERMISSION_DENIED%' "
                                         "AND actor = 'examiner-b'"),
            1);
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM audit_log WHERE status LIKE 'UNAUTHENTICATED%' "
                                         "AND actor = 'anonymous'"),
            1);

  auto verify = [&] {
    auto admin = v1::AdminService::NewStub(server_.channel());
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.admin_a);
    v1::VerifyAuditResponse out;
    grpc::Status s = admin->VerifyAudit(&ctx, v1::VerifyAuditRequest(), &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  };
  auto rep = verify();
  EXPECT_TRUE(rep.ok()) << rep.problem();
  EXPECT_EQ(rep.rows(), 4);
  // The trigger refuses edits by the owner...
  PGconn* pc = PQconnectdb(db_.url().c_str());
  PGresult* r = PQexec(pc, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2");
  EXPECT_NE(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  PQfinish(pc);
  // ...but a superuser can bypass it; the chain catches that.
  ASSERT_TRUE(testing::ExecSql(db_.url(), "SET session_replication_role = replica; "
                                          "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2"));
  rep = verify();
  EXPECT_FALSE(rep.ok());
  EXPECT_NE(rep.problem().find("seq 2"), std::string::npos) << rep.problem();
}

TEST_F(ApiE2eTest, DeletedAuditRowIsDetected) {
  v1::Casing c;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(GetCasing(tokens_.examiner_a, 999, &c).ok());
  auto db = store::ApiDb::ConnectSystem(db_.url());
  ASSERT_TRUE(db.ok());
  auto rep = (*db)->VerifyAudit();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok) << rep->problem;
  EXPECT_EQ(rep->rows, 3);
  ASSERT_TRUE(testing::ExecSql(db_.url(), "SET session_replication_role = replica; DELETE FROM audit_log WHERE seq = 2"));
  rep = (*db)->VerifyAudit();
  ASSERT_TRUE(rep.ok());
  EXPECT_FALSE(rep->ok);
  EXPECT_NE(rep->problem.find("deleted"), std::string::npos) << rep->problem;
}

TEST_F(ApiE2eTest, MetricsEndpointCountsRequests) {
  v1::Casing c;
  EXPECT_FALSE(GetCasing(tokens_.examiner_a, 12345, &c).ok());
  const std::string body = HttpGet(server_.metrics_port(), "/metrics");
  EXPECT_NE(body.find("200 OK"), std::string::npos) << body;
  EXPECT_NE(body.find("ballistics_grpc_requests_total{method=\"/ballistics.v1.CasingService/GetCasing\",code=\"NOT_"
                      "FOUND\"} 1"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("ballistics_grpc_request_duration_seconds_count"), std::string::npos) << body;
  EXPECT_NE(HttpGet(server_.metrics_port(), "/other").find("404"), std::string::npos);
}

}  // namespace
}  // namespace ballistics
