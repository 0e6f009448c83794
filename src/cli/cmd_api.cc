// API-side commands of ballisticsctl:
//   ballisticsctl admin create-agency NAME        [--database-url URL | --server H:P --token T]
//   ballisticsctl admin create-token --agency A --role R --holder H [--valid-days N] [...same]
//   ballisticsctl admin revoke-token ID           [...same]
//   ballisticsctl admin share --owner A --reader B --database-url URL   (B may read A's casings)
//   ballisticsctl audit verify [--expect-head SEQ:HASH] [--database-url URL | --server H:P --token T]
//   ballisticsctl upload FILE... --server H:P --token T --case C --calibre K [--agency A] ...
//   ballisticsctl casing get ID --server H:P --token T
//   ballisticsctl search --casing ID [--top N] [--json]        (progress bar on stderr)
//   ballisticsctl review pending | decide COMPARISON --outcome hit|no-hit|inconclusive [--notes ...]
//   ballisticsctl leads --casing ID
//   ballisticsctl report --search ID --out report.html [--top N]   (self-contained HTML)
// Admin commands talk to PostgreSQL directly when a database URL is given: that
// is how the first admin token is made (bootstrap), and such calls are written
// to the audit trail too. Everything else goes through the gRPC API.
// Client TLS: --ca-cert (PEM of the server's CA or self-signed certificate);
// --insecure only for a loopback server started with --insecure.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "ballistics/api_store.h"
#include "ballistics/evidence.h"
#include "ballistics/io.h"
#include "ballistics/v1/admin.grpc.pb.h"
#include "ballistics/v1/ingest.grpc.pb.h"
#include "ballistics/v1/leads.grpc.pb.h"
#include "ballistics/v1/review.grpc.pb.h"
#include "ballistics/v1/search.grpc.pb.h"
#include "commands.h"
#include "progress.h"

namespace ballistics::cli {
namespace {

namespace v1 = ::ballistics::v1;

constexpr const char* kUrlEnv = "BALLISTICS_DATABASE_URL";

struct ClientOptions {
  std::string server;
  std::string token;
  std::string ca_cert;
  std::string server_name;  // TLS name override (certificate for another host name)
  bool insecure = false;
  int timeout_s = 600;
};

void AddClientOptions(CLI::App* cmd, ClientOptions& o) {
  cmd->add_option("--server", o.server, "API address host:port (default: $BALLISTICS_SERVER)")
      ->envname("BALLISTICS_SERVER");
  cmd->add_option("--token", o.token, "API token (default: $BALLISTICS_TOKEN)")->envname("BALLISTICS_TOKEN");
  cmd->add_option("--ca-cert", o.ca_cert, "PEM certificate(s) to trust for the server (default: system CAs)")
      ->envname("BALLISTICS_CA_CERT");
  cmd->add_option("--tls-server-name", o.server_name, "Expected name in the server certificate");
  cmd->add_flag("--insecure", o.insecure, "Plaintext connection (only for a loopback test server)");
  cmd->add_option("--timeout-s", o.timeout_s, "Deadline of each call")->capture_default_str();
}

[[noreturn]] void Fail(const std::string& what, int exit_code) {
  std::string m = what;
  for (char& c : m) {
    if (c == '\n') c = ' ';
  }
  std::cerr << "error: " << m << "\n";
  throw CLI::RuntimeError(exit_code);
}

int ExitFor(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return kExitInputError;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitUsage;
    default:
      return kExitInternal;
  }
}

std::string CodeName(grpc::StatusCode c) { return std::string(StatusCodeName(static_cast<StatusCode>(c))); }

[[noreturn]] void FailRpc(const std::string& what, const grpc::Status& s) {
  Fail(what + ": " + CodeName(s.error_code()) + ": " + s.error_message(), ExitFor(s.error_code()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail("cannot read " + path, kExitInputError);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::shared_ptr<grpc::Channel> Connect(const ClientOptions& o) {
  if (o.server.empty()) Fail("no server: pass --server host:port or set BALLISTICS_SERVER", kExitUsage);
  if (o.token.empty()) Fail("no token: pass --token or set BALLISTICS_TOKEN", kExitUsage);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    if (!o.ca_cert.empty()) ssl.pem_root_certs = ReadFile(o.ca_cert);
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  if (!o.server_name.empty()) args.SetSslTargetNameOverride(o.server_name);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(o.server, creds, args);
}

void Prepare(grpc::ClientContext* ctx, const ClientOptions& o) {
  ctx->AddMetadata("authorization", "Bearer " + o.token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(o.timeout_s));
}

std::unique_ptr<store::ApiDb> DbOrFail(const std::string& url) {
  auto db = store::ApiDb::ConnectSystem(url);
  if (!db.ok()) Fail(db.status().ToString(), kExitDatabaseError);
  return std::move(*db);
}

// Admin actions done directly on the database are audited like API calls.
void AuditDirect(store::ApiDb& db, const std::string& method, const Status& outcome, const std::string& records,
                 const std::string& detail) {
  store::AuditEntry e;
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  const char* user = std::getenv("USER");
  e.request_id = "cli-" + std::to_string(getpid());
  e.actor = std::string("database:") + (user ? user : "?") + "@" + host;
  e.method = "ballisticsctl " + method;
  e.status = outcome.ok() ? "OK" : outcome.ToString();
  e.records = records;
  e.detail = detail;
  auto r = db.AppendAudit(e);
  if (!r.ok()) Fail("audit append failed: " + r.status().ToString(), kExitDatabaseError);
}

// ---------------------------------------------------------------- admin

struct AdminArgs {
  ClientOptions client;
  std::string url;
  std::string name;
  std::string agency;
  std::string role;
  std::string holder;
  int valid_days = 365;
  std::int64_t token_id = 0;
  bool json = false;
  std::string expect_head;  // audit verify: "SEQ:HASH" recorded outside the database
};

bool Direct(const AdminArgs& a) { return a.client.server.empty() && !a.url.empty(); }

void AddAdminTarget(CLI::App* cmd, AdminArgs& a) {
  cmd->add_option("--database-url", a.url, "Act on the database directly (bootstrap; default $BALLISTICS_DATABASE_URL)")
      ->envname(kUrlEnv);
  AddClientOptions(cmd, a.client);
}

void NeedTarget(const AdminArgs& a) {
  if (a.client.server.empty() && a.url.empty()) {
    Fail("pass --server (with an admin --token) or --database-url", kExitUsage);
  }
}

void RunCreateAgency(const AdminArgs& a) {
  NeedTarget(a);
  if (Direct(a)) {
    auto db = DbOrFail(a.url);
    auto id = db->CreateAgency(a.name);
    AuditDirect(*db, "admin create-agency", id.status(), id.ok() ? "agency:" + std::to_string(*id) : "",
                "name=" + a.name);
    if (!id.ok()) Fail(id.status().ToString(), kExitInputError);
    std::cout << "agency " << *id << " '" << a.name << "' created\n";
    return;
  }
  auto stub = v1::AdminService::NewStub(Connect(a.client));
  grpc::ClientContext ctx;
  Prepare(&ctx, a.client);
  v1::CreateAgencyRequest req;
  req.set_name(a.name);
  v1::Agency out;
  grpc::Status s = stub->CreateAgency(&ctx, req, &out);
  if (!s.ok()) FailRpc("create-agency", s);
  std::cout << "agency " << out.agency_id() << " '" << out.name() << "' created\n";
}

void RunCreateToken(const AdminArgs& a) {
  NeedTarget(a);
  auto role = store::ParseApiRole(a.role);
  if (!role.ok()) Fail(role.status().message(), kExitUsage);
  std::int64_t id = 0;
  std::string secret;
  if (Direct(a)) {
    auto db = DbOrFail(a.url);
    auto t = db->CreateToken(a.agency, *role, a.holder, a.valid_days);
    AuditDirect(*db, "admin create-token", t.status(), t.ok() ? "token:" + std::to_string(t->token_id) : "",
                "agency=" + a.agency + " role=" + a.role + " holder=" + a.holder);
    if (!t.ok()) Fail(t.status().ToString(), kExitInputError);
    id = t->token_id;
    secret = t->secret;
  } else {
    auto stub = v1::AdminService::NewStub(Connect(a.client));
    grpc::ClientContext ctx;
    Prepare(&ctx, a.client);
    v1::CreateTokenRequest req;
    req.set_agency(a.agency);
    static const std::map<store::ApiRole, v1::Role> kRoles = {{store::ApiRole::kTechnician, v1::TECHNICIAN},
                                                              {store::ApiRole::kExaminer, v1::EXAMINER},
                                                              {store::ApiRole::kAgencyReader, v1::AGENCY_READER},
                                                              {store::ApiRole::kAdmin, v1::ADMIN}};
    req.set_role(kRoles.at(*role));
    req.set_holder(a.holder);
    req.set_valid_days(a.valid_days);
    v1::CreateTokenResponse out;
    grpc::Status s = stub->CreateToken(&ctx, req, &out);
    if (!s.ok()) FailRpc("create-token", s);
    id = out.token_id();
    secret = out.token();
  }
  if (a.json) {
    std::cout << nlohmann::json{{"token_id", id}, {"token", secret}}.dump() << "\n";
  } else {
    std::cerr << "token " << id << " for " << a.holder << " (" << a.role << ", " << a.agency
              << "); the secret is shown once, on stdout:\n";
    std::cout << secret << "\n";
  }
}

void RunRevokeToken(const AdminArgs& a) {
  NeedTarget(a);
  if (Direct(a)) {
    auto db = DbOrFail(a.url);
    Status s = db->RevokeToken(a.token_id);
    AuditDirect(*db, "admin revoke-token", s, "token:" + std::to_string(a.token_id), "");
    if (!s.ok()) Fail(s.ToString(), kExitInputError);
  } else {
    auto stub = v1::AdminService::NewStub(Connect(a.client));
    grpc::ClientContext ctx;
    Prepare(&ctx, a.client);
    v1::RevokeTokenRequest req;
    req.set_token_id(a.token_id);
    v1::RevokeTokenResponse out;
    grpc::Status s = stub->RevokeToken(&ctx, req, &out);
    if (!s.ok()) FailRpc("revoke-token", s);
  }
  std::cout << "token " << a.token_id << " revoked\n";
}

struct ShareArgs {
  std::string url, owner, reader;
};

void RunShare(const ShareArgs& a) {
  if (a.url.empty()) Fail("admin share works on the database: pass --database-url", kExitUsage);
  auto db = DbOrFail(a.url);
  Status s = db->ShareAgency(a.owner, a.reader);
  AuditDirect(*db, "admin share", s, "", "owner=" + a.owner + " reader=" + a.reader);
  if (!s.ok()) Fail(s.ToString(), kExitInputError);
  std::cout << "agency '" << a.reader << "' may now read the casings of '" << a.owner << "'\n";
}

void RunAuditVerify(const AdminArgs& a) {
  NeedTarget(a);
  store::AuditVerifyReport rep;
  // --expect-head SEQ:HASH: a head published earlier (server log, metric
  // ballistics_audit_head_seq); catches deleted newest rows and a rewritten chain.
  std::int64_t anchor_seq = 0;
  std::string anchor_hash;
  if (!a.expect_head.empty()) {
    const auto colon = a.expect_head.find(':');
    char* end = nullptr;
    anchor_seq = colon == std::string::npos ? 0 : std::strtoll(a.expect_head.c_str(), &end, 10);
    if (colon == std::string::npos || end != a.expect_head.c_str() + colon || anchor_seq <= 0 ||
        a.expect_head.size() - colon - 1 != 64) {
      Fail("--expect-head '" + a.expect_head + "' is not SEQ:HASH (a positive seq and 64 hex digits)", kExitUsage);
    }
    anchor_hash = a.expect_head.substr(colon + 1);
  }
  if (Direct(a)) {
    // Read-only: verifying does not append to the trail it verifies.
    auto db = DbOrFail(a.url);
    auto r = db->VerifyAudit();
    if (!r.ok()) Fail(r.status().ToString(), kExitDatabaseError);
    rep = *r;
    if (rep.ok && anchor_seq > 0) {
      auto at = db->AuditRowHashAt(anchor_seq);
      if (!at.ok() && at.status().code() != StatusCode::kNotFound) Fail(at.status().ToString(), kExitDatabaseError);
      if (!at.ok() || *at != anchor_hash) {
        rep.ok = false;
        rep.problem = !at.ok() ? "anchored head seq " + std::to_string(anchor_seq) + " is missing: rows after seq " +
                                     std::to_string(rep.head_seq) + " were deleted"
                               : "audit row seq " + std::to_string(anchor_seq) + " has hash " + *at +
                                     ", not the anchored " + anchor_hash + " (the chain was rewritten)";
      }
    }
  } else {
    auto stub = v1::AdminService::NewStub(Connect(a.client));
    grpc::ClientContext ctx;
    Prepare(&ctx, a.client);
    v1::VerifyAuditResponse out;
    v1::VerifyAuditRequest req;
    req.set_expect_head_seq(anchor_seq);
    req.set_expect_head_hash(anchor_hash);
    grpc::Status s = stub->VerifyAudit(&ctx, req, &out);
    if (!s.ok()) FailRpc("audit verify", s);
    rep.ok = out.ok();
    rep.rows = out.rows();
    rep.head_seq = out.head_seq();
    rep.head_hash = out.head_hash();
    rep.problem = out.problem();
  }
  if (a.json) {
    std::cout << nlohmann::json{{"ok", rep.ok},           {"rows", rep.rows},       {"head_seq", rep.head_seq},
                                {"head_hash", rep.head_hash}, {"problem", rep.problem}}
                     .dump(2)
              << "\n";
  } else if (rep.ok) {
    std::cout << "audit trail intact: " << rep.rows << " rows, head seq " << rep.head_seq << " hash "
              << rep.head_hash << "\n";
  } else {
    std::cout << "audit trail BROKEN: " << rep.problem << " (" << rep.rows << " rows read)\n";
  }
  if (!rep.ok) throw CLI::RuntimeError(kExitInputError);
}

// ---------------------------------------------------------------- upload

struct UploadArgs {
  ClientOptions client;
  std::vector<std::string> files;
  std::string agency, case_number, exhibit, calibre, source = "crime-scene", captured_at;
  double pixel_um = 0;
  std::string request_prefix;
  bool json = false;
};

v1::CasingSource SourceOrFail(const std::string& s) {
  if (s == "crime-scene" || s == "crime_scene") return v1::CRIME_SCENE;
  if (s == "test-fire" || s == "test_fire") return v1::TEST_FIRE;
  if (s == "recovered-firearm" || s == "recovered_firearm") return v1::RECOVERED_FIREARM;
  if (s == "police-issued" || s == "police_issued") return v1::POLICE_ISSUED;
  if (s == "manufacturer-test-fire" || s == "manufacturer_test_fire") return v1::MANUFACTURER_TEST_FIRE;
  Fail("unknown --source '" + s + "' (crime-scene, test-fire, recovered-firearm, police-issued, manufacturer-test-fire)",
       kExitUsage);
}

void RunUpload(const UploadArgs& a) {
  const v1::CasingSource source = SourceOrFail(a.source);
  auto channel = Connect(a.client);
  auto stub = v1::IngestService::NewStub(channel);
  std::size_t total = 0;
  for (const auto& f : a.files) total += std::filesystem::exists(f) ? std::filesystem::file_size(f) : 0;
  ProgressBar progress("upload", std::max<std::size_t>(total, 1));
  nlohmann::json results = nlohmann::json::array();
  int failed = 0;
  int worst = 0;
  for (const auto& path : a.files) {
    const std::string bytes = ReadFile(path);
    const std::string sha = ballistics::Sha256Hex(
        {reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
    grpc::ClientContext ctx;
    Prepare(&ctx, a.client);
    v1::UploadScanResponse resp;
    auto writer = stub->UploadScan(&ctx, &resp);
    v1::UploadScanRequest h;
    v1::UploadHeader* hd = h.mutable_header();
    v1::CasingMetadata* md = hd->mutable_metadata();
    md->set_agency(a.agency);
    md->set_case_number(a.case_number);
    // Default exhibit id: the file name without extension (one casing per file).
    md->set_exhibit_id(a.exhibit.empty() || a.files.size() > 1 ? std::filesystem::path(path).stem().string()
                                                               : a.exhibit);
    md->set_calibre(a.calibre);
    md->set_source(source);
    md->set_pixel_um(a.pixel_um);
    // The SHA-256 makes a retried upload of the same file idempotent.
    hd->set_client_request_id(a.request_prefix + sha);
    hd->set_file_name(std::filesystem::path(path).filename().string());
    hd->set_total_bytes(bytes.size());
    hd->set_sha256_hex(sha);
    bool ok = writer->Write(h);
    constexpr std::size_t kChunk = 1 << 20;
    for (std::size_t off = 0; ok && off < bytes.size(); off += kChunk) {
      v1::UploadScanRequest c;
      const std::size_t n = std::min(kChunk, bytes.size() - off);
      c.set_chunk(bytes.data() + off, n);
      ok = writer->Write(c);
      progress.Advance(n);
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    nlohmann::json r{{"file", path}, {"sha256", sha}};
    if (s.ok()) {
      r["status"] = resp.already_existed() ? "already_present" : "stored";
      r["casing_id"] = resp.casing_id();
      r["warnings"] = std::vector<std::string>(resp.warnings().begin(), resp.warnings().end());
    } else {
      ++failed;
      worst = std::max(worst, ExitFor(s.error_code()));
      r["status"] = "rejected";
      r["error"] = CodeName(s.error_code()) + ": " + s.error_message();
    }
    results.push_back(r);
  }
  progress.Finish();
  if (a.json) {
    std::cout << results.dump(2) << "\n";
  } else {
    for (const auto& r : results) {
      if (r["status"] == "rejected") {
        std::cerr << "rejected: " << r["file"].get<std::string>() << ": " << r["error"].get<std::string>() << "\n";
      } else {
        std::cout << r["status"].get<std::string>() << ": " << r["file"].get<std::string>() << " -> casing "
                  << r["casing_id"].get<std::int64_t>() << "\n";
      }
    }
  }
  if (failed) throw CLI::RuntimeError(worst ? worst : kExitInputError);
}

struct CasingArgs {
  ClientOptions client;
  std::int64_t id = 0;
};

void RunCasingGet(const CasingArgs& a) {
  auto stub = v1::CasingService::NewStub(Connect(a.client));
  grpc::ClientContext ctx;
  Prepare(&ctx, a.client);
  v1::GetCasingRequest req;
  req.set_casing_id(a.id);
  v1::Casing c;
  grpc::Status s = stub->GetCasing(&ctx, req, &c);
  if (!s.ok()) FailRpc("casing get", s);
  nlohmann::json j{{"casing_id", c.casing_id()},       {"agency", c.metadata().agency()},
                   {"case", c.metadata().case_number()}, {"exhibit", c.metadata().exhibit_id()},
                   {"calibre", c.metadata().calibre()},  {"sha256", c.sha256_hex()},
                   {"format", c.format()},               {"modality", c.modality()},
                   {"width", c.width()},                 {"height", c.height()},
                   {"submitted_by", c.submitted_by()}};
  std::cout << j.dump(2) << "\n";
}

// ---------------------------------------------------------------- search, review, leads

struct SearchArgs {
  ClientOptions client;
  std::int64_t casing = 0;
  int top = 20;
  bool json = false;
};

nlohmann::json CandidateJson(const v1::Candidate& c) {
  auto score = [](const v1::CmcScore& s) {
    return nlohmann::json{{"cmc", s.cmc_count()},
                          {"cells", s.cell_count()},
                          {"ccf", s.ccf()},
                          {"theta_deg", s.registration().theta_deg()},
                          {"dx_um", s.registration().dx_um()},
                          {"dy_um", s.registration().dy_um()},
                          {"log10_lr", s.has_log10_likelihood_ratio() ? nlohmann::json(s.log10_likelihood_ratio())
                                                                       : nlohmann::json()},
                          {"lr_basis", s.likelihood_ratio_basis()}};
  };
  nlohmann::json j{{"rank", c.rank()},           {"casing_id", c.casing_id()},   {"agency", c.agency()},
                   {"case", c.case_number()},    {"exhibit", c.exhibit_id()},    {"score", c.score()},
                   {"coarse_score", c.coarse_score()}, {"comparison_id", c.comparison_id()}};
  if (c.has_breech_face()) j["breech_face"] = score(c.breech_face());
  if (c.has_firing_pin()) j["firing_pin"] = score(c.firing_pin());
  return j;
}

void RunSearch(const SearchArgs& a) {
  auto stub = v1::SearchService::NewStub(Connect(a.client));
  grpc::ClientContext ctx;
  Prepare(&ctx, a.client);
  v1::SearchRequest req;
  req.set_casing_id(a.casing);
  req.set_top_n(a.top);
  auto reader = stub->Search(&ctx, req);
  v1::SearchUpdate u;
  v1::SearchResult result;
  bool got = false;
  {
    ProgressBar progress("search", 1000);
    std::size_t shown = 0;
    while (reader->Read(&u)) {
      if (u.has_progress()) {
        const auto now = static_cast<std::size_t>(u.progress().fraction_done() * 1000);
        if (now > shown) progress.Advance(now - shown);
        shown = std::max(shown, now);
      } else if (u.has_result()) {
        result = u.result();
        got = true;
      }
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) FailRpc("search", s);
  if (!got) Fail("search: the server sent no result", kExitInternal);
  if (a.json) {
    nlohmann::json j{{"search_id", result.search_id()},
                     {"query_casing_id", result.query_casing_id()},
                     {"partial", result.partial()},
                     {"shards_answered", result.shards_answered()},
                     {"shards_total", result.shards_total()},
                     {"signatures_scanned", result.signatures_scanned()}};
    for (const auto& [name, list] : {std::pair{"breech_face", &result.breech_face()},
                                     std::pair{"firing_pin", &result.firing_pin()},
                                     std::pair{"combined", &result.combined()}}) {
      j[name] = nlohmann::json::array();
      for (const auto& c : *list) j[name].push_back(CandidateJson(c));
    }
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("search %lld for casing %lld: %lld signatures scanned, shards %d/%d%s\n",
              static_cast<long long>(result.search_id()), static_cast<long long>(result.query_casing_id()),
              static_cast<long long>(result.signatures_scanned()), result.shards_answered(), result.shards_total(),
              result.partial() ? " (PARTIAL: some shards did not answer)" : "");
  std::printf("%4s %8s %-14s %-12s %-16s %9s %6s %10s\n", "rank", "casing", "agency", "case", "exhibit",
              "BF CMC", "CCF", "comparison");
  for (const auto& c : result.combined()) {
    const auto& bf = c.breech_face();
    std::printf("%4d %8lld %-14.14s %-12.12s %-16.16s %4d/%-4d %6.3f %10lld\n", c.rank(),
                static_cast<long long>(c.casing_id()), c.agency().c_str(), c.case_number().c_str(),
                c.exhibit_id().c_str(), bf.cmc_count(), bf.cell_count(), bf.ccf(),
                static_cast<long long>(c.comparison_id()));
  }
}

struct ReviewArgs {
  ClientOptions client;
  std::int64_t comparison = 0;
  std::string outcome;
  std::string notes;
  int limit = 50;
};

void RunPending(const ReviewArgs& a) {
  auto stub = v1::ReviewService::NewStub(Connect(a.client));
  grpc::ClientContext ctx;
  Prepare(&ctx, a.client);
  v1::ListPendingReviewsRequest req;
  req.set_limit(a.limit);
  v1::ListPendingReviewsResponse out;
  grpc::Status s = stub->ListPendingReviews(&ctx, req, &out);
  if (!s.ok()) FailRpc("review pending", s);
  std::printf("%10s %8s %10s %10s %9s %6s\n", "comparison", "search", "query", "candidate", "BF CMC", "CCF");
  for (const auto& r : out.reviews()) {
    std::printf("%10lld %8lld %10lld %10lld %4d/%-4d %6.3f\n", static_cast<long long>(r.comparison_id()),
                static_cast<long long>(r.search_id()), static_cast<long long>(r.reference_casing_id()),
                static_cast<long long>(r.target_casing_id()), r.score().cmc_count(), r.score().cell_count(),
                r.score().ccf());
  }
}

void RunDecide(const ReviewArgs& a) {
  v1::DecisionOutcome o;
  if (a.outcome == "hit") o = v1::HIT;
  else if (a.outcome == "no-hit" || a.outcome == "no_hit") o = v1::NO_HIT;
  else if (a.outcome == "inconclusive") o = v1::INCONCLUSIVE;
  else Fail("--outcome '" + a.outcome + "' is not hit, no-hit or inconclusive", kExitUsage);
  auto stub = v1::ReviewService::NewStub(Connect(a.client));
  grpc::ClientContext ctx;
  Prepare(&ctx, a.client);
  v1::RecordDecisionRequest req;
  req.set_comparison_id(a.comparison);
  req.set_outcome(o);
  req.set_notes(a.notes);
  v1::Decision d;
  grpc::Status s = stub->RecordDecision(&ctx, req, &d);
  if (!s.ok()) FailRpc("review decide", s);
  std::cout << "decision " << d.decision_id() << " recorded by " << d.examiner();
  if (d.lead_id()) std::cout << "; lead " << d.lead_id() << " links the two casings";
  std::cout << "\n";
}

struct LeadArgs {
  ClientOptions client;
  std::int64_t casing = 0;
};

void RunLeads(const LeadArgs& a) {
  auto stub = v1::LeadService::NewStub(Connect(a.client));
  grpc::ClientContext ctx;
  Prepare(&ctx, a.client);
  v1::GetLinkedRequest req;
  req.set_casing_id(a.casing);
  v1::LinkedGraph g;
  grpc::Status s = stub->GetLinked(&ctx, req, &g);
  if (!s.ok()) FailRpc("leads", s);
  nlohmann::json j{{"casings", nlohmann::json::array()}, {"leads", nlohmann::json::array()}};
  for (const auto& c : g.casings()) {
    j["casings"].push_back({{"casing_id", c.casing_id()}, {"agency", c.agency()}, {"case", c.case_number()},
                            {"exhibit", c.exhibit_id()}});
  }
  for (const auto& l : g.leads()) {
    j["leads"].push_back({{"lead_id", l.lead_id()}, {"casing_a", l.casing_a()}, {"casing_b", l.casing_b()},
                          {"decision_id", l.decision_id()}});
  }
  std::cout << j.dump(2) << "\n";
}

// ---------------------------------------------------------------- report

std::string Base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += t[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += i + 1 < in.size() ? t[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string Html(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string Img(const std::string& png, const std::string& alt) {
  if (png.empty()) return "<p class=missing>" + Html(alt) + ": not available</p>";
  return "<img alt=\"" + Html(alt) + "\" src=\"data:image/png;base64," + Base64(png) + "\">";
}

struct ReportArgs {
  ClientOptions client;
  std::int64_t search = 0;
  std::string out;
  int top = 5;
};

// A self-contained HTML page (images inline as data: URIs, no scripts, no
// external resources) an examiner can archive with the case file.
void RunReport(const ReportArgs& a) {
  auto channel = Connect(a.client);
  auto search = v1::SearchService::NewStub(channel);
  v1::SearchResult r;
  {
    grpc::ClientContext ctx;
    Prepare(&ctx, a.client);
    v1::GetSearchRequest req;
    req.set_search_id(a.search);
    grpc::Status s = search->GetSearch(&ctx, req, &r);
    if (!s.ok()) FailRpc("report: get search", s);
  }
  v1::Casing query;
  {
    auto casings = v1::CasingService::NewStub(channel);
    grpc::ClientContext ctx;
    Prepare(&ctx, a.client);
    v1::GetCasingRequest req;
    req.set_casing_id(r.query_casing_id());
    grpc::Status s = casings->GetCasing(&ctx, req, &query);
    if (!s.ok()) FailRpc("report: query casing", s);
  }
  auto review = v1::ReviewService::NewStub(channel);
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>Search " << r.search_id()
    << "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
       "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#eee}"
       ".cand{border-top:2px solid #444;margin-top:24px;padding-top:8px}.imgs img{max-width:32%;margin-right:1%;"
       "vertical-align:top}.cellmap img{max-width:66%}.missing{color:#a00}</style></head><body>\n";
  h << "<h1>Search " << r.search_id() << ": casing " << query.casing_id() << "</h1>\n";
  h << "<p>Agency " << Html(query.metadata().agency()) << ", case " << Html(query.metadata().case_number())
    << ", exhibit " << Html(query.metadata().exhibit_id()) << ", calibre " << Html(query.metadata().calibre())
    << ". Scan SHA-256 <code>" << query.sha256_hex() << "</code>.</p>\n";
  h << "<p>" << r.signatures_scanned() << " signatures scanned; shards answered " << r.shards_answered() << " of "
    << r.shards_total() << (r.partial() ? " &mdash; <b>PARTIAL result</b>" : "") << ".</p>\n";
  std::set<std::string> bases;  // LR bases of the listed candidates
  h << "<h2>Candidates (combined ranking)</h2>\n<table><tr><th>rank</th><th>casing</th><th>agency</th>"
       "<th>case</th><th>exhibit</th><th>BF CMC / cells</th><th>BF CCF</th><th>&theta; (deg)</th>"
       "<th>dx, dy (&micro;m)</th><th>score</th><th>BF LR</th></tr>\n";
  for (const auto& c : r.combined()) {
    const auto& bf = c.breech_face();
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "<tr><td>%d</td><td>%lld</td><td>%s</td><td>%s</td><td>%s</td><td>%d / %d</td><td>%.3f</td>"
                  "<td>%.1f</td><td>%.0f, %.0f</td><td>%.3f</td>",
                  c.rank(), static_cast<long long>(c.casing_id()), Html(c.agency()).c_str(),
                  Html(c.case_number()).c_str(), Html(c.exhibit_id()).c_str(), bf.cmc_count(), bf.cell_count(),
                  bf.ccf(), bf.registration().theta_deg(), bf.registration().dx_um(), bf.registration().dy_um(),
                  c.score());
    h << buf;
    // Evidence strength next to the score, with what it rests on (never without its basis).
    if (bf.has_log10_likelihood_ratio()) {
      const double l = bf.log10_likelihood_ratio();
      std::snprintf(buf, sizeof(buf), l >= 0 ? "%.3g" : "1/%.3g", std::pow(10.0, std::abs(l)));
      h << "<td title=\"" << Html(bf.likelihood_ratio_basis()) << "\">" << buf << " (log10 " << std::round(l * 100) / 100
        << ")</td>";
    } else {
      h << "<td>none</td>";
    }
    h << "</tr>\n";
    if (!bf.likelihood_ratio_basis().empty()) bases.insert(bf.likelihood_ratio_basis());
  }
  h << "</table>\n<p>CMC: congruent matching cells (Song 2013): cells of one signature that find their best "
       "match in the other at a common rotation and translation with correlation above the threshold. "
       "LR: likelihood ratio of the CMC count, same firearm against different firearms, calibrated on a "
       "reference population and bounded by what its size supports (docs/accuracy.md, \"Evidence strength\"). "
       "Basis:</p>\n<ul>";
  for (const std::string& b : bases) h << "<li>" << Html(b) << "</li>";
  if (bases.empty()) h << "<li>" << Html(std::string(evidence::kNoLrBasis)) << "</li>";
  h << "</ul>\n";
  int shown = 0;
  for (const auto& c : r.combined()) {
    if (shown++ >= a.top) break;
    grpc::ClientContext ctx;
    Prepare(&ctx, a.client);
    v1::GetComparisonRequest req;
    req.set_comparison_id(c.comparison_id());
    v1::ComparisonDetail d;
    grpc::Status s = review->GetComparison(&ctx, req, &d);
    h << "<div class=cand><h3>Rank " << c.rank() << ": casing " << c.casing_id() << " (" << Html(c.agency())
      << ", case " << Html(c.case_number()) << ", exhibit " << Html(c.exhibit_id()) << ")</h3>\n";
    if (!s.ok()) {
      h << "<p class=missing>comparison " << c.comparison_id() << " unavailable: " << Html(s.error_message())
        << "</p></div>\n";
      continue;
    }
    int congruent = 0;
    for (const auto& cell : d.cells()) congruent += cell.congruent() ? 1 : 0;
    h << "<p>Comparison " << d.comparison_id() << ": " << d.score().cmc_count() << " CMC of "
      << d.score().cell_count() << " cells (recomputed: " << congruent << " of " << d.cells_size()
      << "), CCF " << d.score().ccf() << ", pixel " << d.pixel_um() << " &micro;m.</p>\n";
    h << "<div class=imgs>" << Img(d.reference_png(), "query signature") << Img(d.target_png(), "candidate signature")
      << Img(d.overlay_png(), "overlay at the registration (query magenta, candidate green)")
      << "</div>\n<div class=cellmap>" << Img(d.cell_map_png(), "cell map (green: congruent, red: not)")
      << "</div></div>\n";
  }
  h << "</body></html>\n";
  std::ofstream f(a.out, std::ios::binary);
  f << h.str();
  if (!f.good()) Fail("cannot write " + a.out, kExitInputError);
  std::cout << "report written to " << a.out << " (" << h.str().size() / 1024 << " KiB)\n";
}

}  // namespace

void RegisterApiCommands(CLI::App& app) {
  {
    auto a = std::make_shared<ReportArgs>();
    CLI::App* c = app.add_subcommand("report", "Self-contained HTML report of a search for the examiner (API)");
    c->add_option("--search", a->search, "Search id")->required();
    c->add_option("--out", a->out, "Output HTML file")->required();
    c->add_option("--top", a->top, "Candidates shown with images")->check(CLI::Range(1, 50))->capture_default_str();
    AddClientOptions(c, a->client);
    c->callback([a] { RunReport(*a); });
  }
  {
    auto a = std::make_shared<SearchArgs>();
    CLI::App* c = app.add_subcommand("search", "Search the database for casings matching a stored casing (API)");
    c->add_option("--casing", a->casing, "Query casing id")->required();
    c->add_option("--top", a->top, "Candidates per list")->check(CLI::Range(1, 200))->capture_default_str();
    c->add_flag("--json", a->json, "Full result as JSON");
    AddClientOptions(c, a->client);
    c->callback([a] { RunSearch(*a); });
  }
  {
    CLI::App* review = app.add_subcommand("review", "Examiner review of search candidates (API)");
    review->require_subcommand(1);
    auto p = std::make_shared<ReviewArgs>();
    CLI::App* pending = review->add_subcommand("pending", "Comparisons still without a decision");
    pending->add_option("--limit", p->limit, "At most this many")->capture_default_str();
    AddClientOptions(pending, p->client);
    pending->callback([p] { RunPending(*p); });
    auto d = std::make_shared<ReviewArgs>();
    CLI::App* decide = review->add_subcommand("decide", "Record a decision; a hit creates a lead");
    decide->add_option("comparison_id", d->comparison, "Comparison id (from search)")->required();
    decide->add_option("--outcome", d->outcome, "hit, no-hit or inconclusive")->required();
    decide->add_option("--notes", d->notes, "Examiner notes");
    AddClientOptions(decide, d->client);
    decide->callback([d] { RunDecide(*d); });
  }
  {
    auto a = std::make_shared<LeadArgs>();
    CLI::App* c = app.add_subcommand("leads", "Everything linked to a casing through hits (API, JSON)");
    c->add_option("--casing", a->casing, "Casing id")->required();
    AddClientOptions(c, a->client);
    c->callback([a] { RunLeads(*a); });
  }
  // admin
  CLI::App* admin = app.add_subcommand("admin", "Agencies and API tokens (admins; bootstrap with --database-url)");
  admin->require_subcommand(1);
  {
    auto a = std::make_shared<AdminArgs>();
    CLI::App* c = admin->add_subcommand("create-agency", "Create an agency");
    c->add_option("name", a->name, "Agency name, e.g. MDSP")->required();
    AddAdminTarget(c, *a);
    c->callback([a] { RunCreateAgency(*a); });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    CLI::App* c = admin->add_subcommand("create-token", "Create an API token (the secret is printed once)");
    c->add_option("--agency", a->agency, "Agency the token acts for")->required();
    c->add_option("--role", a->role, "technician, examiner, agency-reader or admin")->required();
    c->add_option("--holder", a->holder, "Person or system holding the token")->required();
    c->add_option("--valid-days", a->valid_days, "Days until it expires (0 = never)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    c->add_flag("--json", a->json, "Print {token_id, token} as JSON");
    AddAdminTarget(c, *a);
    c->callback([a] { RunCreateToken(*a); });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    CLI::App* c = admin->add_subcommand("revoke-token", "Revoke an API token");
    c->add_option("token_id", a->token_id, "Token id")->required();
    AddAdminTarget(c, *a);
    c->callback([a] { RunRevokeToken(*a); });
  }
  {
    auto a = std::make_shared<ShareArgs>();
    CLI::App* c = admin->add_subcommand("share", "Let one agency read another's casings (sharing by policy)");
    c->add_option("--owner", a->owner, "Agency whose casings are shared")->required();
    c->add_option("--reader", a->reader, "Agency that may read them")->required();
    c->add_option("--database-url", a->url, "PostgreSQL URL (default $BALLISTICS_DATABASE_URL)")->envname(kUrlEnv);
    c->callback([a] { RunShare(*a); });
  }
  // audit
  CLI::App* audit = app.add_subcommand("audit", "The hash-chained audit trail");
  audit->require_subcommand(1);
  {
    auto a = std::make_shared<AdminArgs>();
    CLI::App* c = audit->add_subcommand(
        "verify", "Recompute the SHA-256 chain; exit 3 and name the first bad row if any row was edited or deleted");
    c->add_flag("--json", a->json, "JSON report");
    c->add_option("--expect-head", a->expect_head,
                  "SEQ:HASH of a head recorded earlier outside the database (server log 'audit head', metric "
                  "ballistics_audit_head_seq); fails if that row is gone or differs");
    AddAdminTarget(c, *a);
    c->callback([a] { RunAuditVerify(*a); });
  }
  // upload
  {
    auto a = std::make_shared<UploadArgs>();
    CLI::App* c = app.add_subcommand("upload", "Upload scans through the API (one casing per file)");
    c->add_option("files", a->files, "X3P / PNG / TIFF files")->required()->check(CLI::ExistingFile);
    c->add_option("--agency", a->agency, "Agency (default: the token's)");
    c->add_option("--case", a->case_number, "Case number")->required();
    c->add_option("--exhibit", a->exhibit, "Exhibit id (single file; default: the file name)");
    c->add_option("--calibre", a->calibre, "Calibre, e.g. '9mm Luger'")->required();
    c->add_option("--source", a->source, "crime-scene, test-fire, recovered-firearm, police-issued")
        ->capture_default_str();
    c->add_option("--pixel-um", a->pixel_um, "Pixel size of 2D images without resolution tags, um");
    c->add_option("--request-prefix", a->request_prefix, "Prefix of the client request ids (default none)");
    c->add_flag("--json", a->json, "JSON result per file");
    AddClientOptions(c, a->client);
    c->callback([a] { RunUpload(*a); });
  }
  // casing get
  {
    CLI::App* casing = app.add_subcommand("casing", "Read stored casings through the API");
    casing->require_subcommand(1);
    auto a = std::make_shared<CasingArgs>();
    CLI::App* c = casing->add_subcommand("get", "A casing's metadata, scan and signatures (JSON)");
    c->add_option("casing_id", a->id, "Casing id")->required();
    AddClientOptions(c, a->client);
    c->callback([a] { RunCasingGet(*a); });
  }
}

}  // namespace ballistics::cli
