// API store (include/ballistics/api_store.h): tokens, audit chain, searches,
// decisions, leads. SQL stays in src/store/, as for the evidence tables.
#include "ballistics/api_store.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <nlohmann/json.hpp>

#include "pg.h"
#include "store_impl.h"

namespace ballistics::store {

class ApiDb::Impl {
 public:
  explicit Impl(std::unique_ptr<pg::Connection> c) : conn(std::move(c)) {}
  std::unique_ptr<pg::Connection> conn;
};

namespace {

// Key of the transaction-scoped advisory lock that serializes audit appends
// ("BALAUDIT" in ASCII, far from the migration lock's key).
constexpr std::int64_t kAuditLockKey = 0x42414c4155444954;

std::string Hex(const unsigned char* p, std::size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}

std::array<unsigned char, 32> Sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &n, EVP_sha256(), nullptr);
  return out;
}

// Current UTC time, microseconds, ISO 8601: the audit row's occurred_at.
std::string NowIso() {
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const std::time_t t = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us % 1000000));
  return buf;
}

// Session settings that scope a connection to a caller: libpq "options" runs
// them as SET at connection start (role first: the later settings are then
// made as ballistics_app).
std::string ScopeOptions(const Principal& who) {
  return "-c role=" + std::string(kAppRole) + " -c ballistics.agency_id=" + std::to_string(who.agency_id) +
         " -c ballistics.role=" + std::string(ApiRoleName(who.role));
}


const std::string kComparisonColumns =
    "id, search_id, agency_id, reference_casing_id, target_casing_id, list, rank, coarse_score, score, "
    "detail::text";

ComparisonRow ReadComparison(const pg::Result& r, int i) {
  ComparisonRow c;
  c.id = r.Int64(i, 0);
  c.search_id = r.Int64(i, 1);
  c.agency_id = r.Int64(i, 2);
  c.reference_casing_id = r.Int64(i, 3);
  c.target_casing_id = r.Int64(i, 4);
  c.list = r.Text(i, 5);
  c.rank = r.Int32(i, 6);
  if (!r.IsNull(i, 7)) c.coarse_score = r.Double(i, 7);
  if (!r.IsNull(i, 8)) c.score = r.Double(i, 8);
  c.detail_json = r.Text(i, 9);
  return c;
}

}  // namespace

std::string_view ApiRoleName(ApiRole r) {
  switch (r) {
    case ApiRole::kTechnician: return "technician";
    case ApiRole::kExaminer: return "examiner";
    case ApiRole::kAgencyReader: return "agency_reader";
    case ApiRole::kAdmin: return "admin";
  }
  return "?";
}

StatusOr<ApiRole> ParseApiRole(std::string_view s) {
  if (s == "technician") return ApiRole::kTechnician;
  if (s == "examiner") return ApiRole::kExaminer;
  if (s == "agency_reader" || s == "agency-reader") return ApiRole::kAgencyReader;
  if (s == "admin") return ApiRole::kAdmin;
  return InvalidArgument("unknown role '" + std::string(s) +
                         "' (expected technician, examiner, agency_reader or admin)");
}

StatusOr<std::string> ScopedUrl(const std::string& url, const Principal& who) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (!opts) {
    std::string m = err ? err : "unparsable";
    PQfreemem(err);
    return InvalidArgument("database url: " + m);
  }
  auto quote = [](const std::string& v) {
    std::string q = "'";
    for (char ch : v) {
      if (ch == '\'' || ch == '\\') q += '\\';
      q += ch;
    }
    return q + "'";
  };
  std::string out;
  std::string options;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::string(o->keyword) == "options") {
      options = o->val;
      continue;
    }
    out += std::string(o->keyword) + "=" + quote(o->val) + " ";
  }
  PQconninfoFree(opts);
  if (!options.empty()) options += " ";
  return out + "options=" + quote(options + ScopeOptions(who));
}

std::string AuditRowHash(std::int64_t seq, const std::string& occurred_at, const AuditEntry& e,
                         const std::string& prev_hash) {
  nlohmann::json content = nlohmann::json::array(
      {seq, occurred_at, e.request_id, e.token_id ? nlohmann::json(*e.token_id) : nlohmann::json(nullptr), e.actor,
       e.agency, e.role, e.method, e.status, e.records, e.detail});
  // dump() of an array is canonical: no key order to vary, fixed escaping;
  // invalid UTF-8 is replaced rather than throwing.
  const std::string text =
      prev_hash + "\n" + content.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const auto h = Sha256(text);
  return Hex(h.data(), h.size());
}

ApiDb::ApiDb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ApiDb::~ApiDb() = default;

bool ApiDb::Usable() const { return impl_->conn->Idle(); }

StatusOr<std::unique_ptr<ApiDb>> ApiDb::ConnectSystem(const std::string& url) {
  BALLISTICS_ASSIGN_OR_RETURN(auto conn, pg::Connection::Open(url));
  return std::unique_ptr<ApiDb>(new ApiDb(std::make_unique<Impl>(std::move(conn))));
}

StatusOr<std::unique_ptr<ApiDb>> ApiDb::ConnectScoped(const std::string& url, const Principal& who) {
  BALLISTICS_ASSIGN_OR_RETURN(std::string scoped, ScopedUrl(url, who));
  BALLISTICS_ASSIGN_OR_RETURN(auto conn, pg::Connection::Open(scoped));
  return std::unique_ptr<ApiDb>(new ApiDb(std::make_unique<Impl>(std::move(conn))));
}

// ---------------------------------------------------------------- agencies, tokens

StatusOr<std::int64_t> ApiDb::CreateAgency(const std::string& name) {
  if (name.empty() || name.size() > 200) {
    return InvalidArgument("agency name '" + name + "' must have 1..200 characters");
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return InvalidArgument("agency name contains a control character");
  }
  auto r = impl_->conn->Exec("create agency", "INSERT INTO agencies (name) VALUES ($1) RETURNING id",
                             {pg::Param::Text(name)});
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kAlreadyExists) return AlreadyExists("agency '" + name + "' exists already");
    return r.status();
  }
  return r->Int64(0, 0);
}

StatusOr<std::vector<AgencyRow>> ApiDb::ListAgencies() {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("list agencies", "SELECT id, name, " + pg::IsoUtc("created_at") +
                                                           " FROM agencies ORDER BY id"));
  std::vector<AgencyRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({r.Int64(i, 0), r.Text(i, 1), r.Text(i, 2)});
  return out;
}

StatusOr<std::int64_t> ApiDb::AgencyId(const std::string& name) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("find agency", "SELECT id FROM agencies WHERE name = $1",
                                                              {pg::Param::Text(name)}));
  if (r.rows() == 0) return NotFound("no agency named '" + name + "'");
  return r.Int64(0, 0);
}

StatusOr<NewToken> ApiDb::CreateToken(const std::string& agency, ApiRole role, const std::string& holder,
                                      int valid_days) {
  if (valid_days < 0) return InvalidArgument("valid_days " + std::to_string(valid_days) + " is negative");
  if (holder.empty() || holder.size() > 200) {
    return InvalidArgument("token holder '" + holder + "' must have 1..200 characters");
  }
  BALLISTICS_ASSIGN_OR_RETURN(std::int64_t agency_id, AgencyId(agency));
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) return Internal("RAND_bytes failed: no secure randomness");
  NewToken t;
  t.secret = Hex(raw, sizeof(raw));
  OPENSSL_cleanse(raw, sizeof(raw));
  const auto digest = Sha256(t.secret);
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("create token",
                        "INSERT INTO api_tokens (agency_id, role, holder, token_sha256, expires_at) "
                        "VALUES ($1, $2::api_role, $3, $4, CASE WHEN $5::int > 0 THEN now() + make_interval(days "
                        "=> $5::int) END) RETURNING id, " + pg::IsoUtc("expires_at"),
                        {pg::Param::Int(agency_id), pg::Param::Text(std::string(ApiRoleName(role))),
                         pg::Param::Text(holder), pg::Param::Bytes(digest), pg::Param::Int(valid_days)}));
  t.token_id = r.Int64(0, 0);
  if (!r.IsNull(0, 1)) t.expires_at = r.Text(0, 1);
  return t;
}

Status ApiDb::RevokeToken(std::int64_t token_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("revoke token",
                                      "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 "
                                      "RETURNING id",
                                      {pg::Param::Int(token_id)}));
  if (r.rows() == 0) return NotFound("no token with id " + std::to_string(token_id));
  return Status::Ok();
}

StatusOr<Principal> ApiDb::Authenticate(std::string_view token) {
  if (token.size() != 64 || token.find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return Unauthenticated("malformed API token (expected 64 lower-case hex characters)");
  }
  const auto digest = Sha256(token);
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("authenticate",
                        "SELECT t.id, t.agency_id, a.name, t.role::text, t.holder, t.token_sha256, "
                        "t.revoked_at IS NOT NULL, t.expires_at IS NOT NULL AND t.expires_at <= now() "
                        "FROM api_tokens t JOIN agencies a ON a.id = t.agency_id WHERE t.token_sha256 = $1",
                        {pg::Param::Bytes(digest)}, /*binary_result=*/true));
  if (r.rows() == 0) return Unauthenticated("unknown API token");
  // The index lookup already matched; compare again in constant time so that no
  // code path ever compares secret-derived bytes with an early exit.
  const auto stored = r.RawBytes(0, 5);
  if (stored.size() != digest.size() || CRYPTO_memcmp(stored.data(), digest.data(), digest.size()) != 0) {
    return Unauthenticated("unknown API token");
  }
  if (r.Bool(0, 6)) return Unauthenticated("API token " + std::to_string(r.Int64(0, 0)) + " was revoked");
  if (r.Bool(0, 7)) return Unauthenticated("API token " + std::to_string(r.Int64(0, 0)) + " has expired");
  Principal p;
  p.token_id = r.Int64(0, 0);
  p.agency_id = r.Int64(0, 1);
  p.agency = r.Text(0, 2);
  BALLISTICS_ASSIGN_OR_RETURN(p.role, ParseApiRole(r.Text(0, 3)));
  p.holder = r.Text(0, 4);
  return p;
}

StatusOr<std::int64_t> ApiDb::CasingAgencyId(std::int64_t casing_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("casing agency",
                                                              "SELECT agency_id FROM casings WHERE id = $1",
                                                              {pg::Param::Int(casing_id)}));
  if (r.rows() == 0) return NotFound("no casing with id " + std::to_string(casing_id));
  return r.Int64(0, 0);
}

StatusOr<bool> ApiDb::AgencyShares(std::int64_t owner_agency_id, std::int64_t reader_agency_id) {
  if (owner_agency_id == reader_agency_id) return true;
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("agency share",
                                      "SELECT 1 FROM agency_shares WHERE owner_agency_id = $1 AND reader_agency_id = $2",
                                      {pg::Param::Int(owner_agency_id), pg::Param::Int(reader_agency_id)}));
  return r.rows() > 0;
}

Status ApiDb::ShareAgency(const std::string& owner_agency, const std::string& reader_agency) {
  BALLISTICS_ASSIGN_OR_RETURN(std::int64_t owner, AgencyId(owner_agency));
  BALLISTICS_ASSIGN_OR_RETURN(std::int64_t reader, AgencyId(reader_agency));
  if (owner == reader) return InvalidArgument("an agency always reads its own casings");
  return impl_->conn
      ->Exec("share agency",
             "INSERT INTO agency_shares (owner_agency_id, reader_agency_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
             {pg::Param::Int(owner), pg::Param::Int(reader)})
      .status();
}

StatusOr<std::vector<std::string>> ApiDb::VisibleAgencyNames(std::int64_t reader_agency_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("visible agencies",
                                      "SELECT name FROM agencies WHERE id = $1 OR id IN (SELECT owner_agency_id FROM "
                                      "agency_shares WHERE reader_agency_id = $1) ORDER BY name",
                                      {pg::Param::Int(reader_agency_id)}));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Text(i, 0));
  return out;
}

// ---------------------------------------------------------------- audit

StatusOr<std::int64_t> ApiDb::AppendAudit(const AuditEntry& e) {
  pg::Connection& c = *impl_->conn;
  BALLISTICS_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(c));
  BALLISTICS_RETURN_IF_ERROR(
      c.Exec("audit lock", "SELECT pg_advisory_xact_lock($1)", {pg::Param::Int(kAuditLockKey)}).status());
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result last,
                              c.Exec("audit head", "SELECT seq, row_hash FROM audit_log ORDER BY seq DESC LIMIT 1"));
  const std::int64_t seq = last.rows() ? last.Int64(0, 0) + 1 : 1;
  const std::string prev = last.rows() ? last.Text(0, 1) : std::string(kAuditGenesisHash);
  const std::string at = NowIso();
  const std::string hash = AuditRowHash(seq, at, e, prev);
  BALLISTICS_RETURN_IF_ERROR(
      c.Exec("append audit",
             "INSERT INTO audit_log (seq, occurred_at, request_id, token_id, actor, agency, role, method, status, "
             "records, detail, prev_hash, row_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
             {pg::Param::Int(seq), pg::Param::Text(at), pg::Param::Text(e.request_id),
              pg::Param::Optional(e.token_id), pg::Param::Text(e.actor), pg::Param::Text(e.agency),
              pg::Param::Text(e.role), pg::Param::Text(e.method), pg::Param::Text(e.status),
              pg::Param::Text(e.records), pg::Param::Text(e.detail), pg::Param::Text(prev),
              pg::Param::Text(hash)})
          .status());
  BALLISTICS_RETURN_IF_ERROR(tx->Commit());
  return seq;
}

StatusOr<std::pair<std::int64_t, std::string>> ApiDb::AuditHead() {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("audit head", "SELECT seq, row_hash FROM audit_log ORDER BY seq DESC LIMIT 1"));
  if (r.rows() == 0) return std::make_pair(std::int64_t{0}, std::string(kAuditGenesisHash));
  return std::make_pair(r.Int64(0, 0), r.Text(0, 1));
}

StatusOr<std::string> ApiDb::AuditRowHashAt(std::int64_t seq) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("audit row", "SELECT row_hash FROM audit_log WHERE seq = $1",
                                                              {pg::Param::Int(seq)}));
  if (r.rows() == 0) return NotFound("no audit row with seq " + std::to_string(seq));
  return r.Text(0, 0);
}

StatusOr<AuditVerifyReport> ApiDb::VerifyAudit() {
  AuditVerifyReport rep;
  std::string prev(kAuditGenesisHash);
  std::int64_t expected_seq = 1;
  std::int64_t after = 0;
  // Keyset pages keep memory bounded for a long trail.
  for (;;) {
    BALLISTICS_ASSIGN_OR_RETURN(
        pg::Result r,
        impl_->conn->Exec("read audit",
                          "SELECT seq, occurred_at, request_id, token_id, actor, agency, role, method, status, "
                          "records, detail, prev_hash, row_hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 5000",
                          {pg::Param::Int(after)}));
    if (r.rows() == 0) break;
    for (int i = 0; i < r.rows(); ++i) {
      const std::int64_t seq = r.Int64(i, 0);
      AuditEntry e;
      e.request_id = r.Text(i, 2);
      if (!r.IsNull(i, 3)) e.token_id = r.Int64(i, 3);
      e.actor = r.Text(i, 4);
      e.agency = r.Text(i, 5);
      e.role = r.Text(i, 6);
      e.method = r.Text(i, 7);
      e.status = r.Text(i, 8);
      e.records = r.Text(i, 9);
      e.detail = r.Text(i, 10);
      const std::string stored_prev = r.Text(i, 11);
      const std::string stored_hash = r.Text(i, 12);
      ++rep.rows;
      auto fail = [&](const std::string& why) {
        rep.ok = false;
        rep.problem = "audit row seq " + std::to_string(seq) + ": " + why;
        return rep;
      };
      if (seq != expected_seq) {
        return fail("expected seq " + std::to_string(expected_seq) + " (rows " + std::to_string(expected_seq) +
                    ".." + std::to_string(seq - 1) + " were deleted)");
      }
      if (stored_prev != prev) return fail("prev_hash does not match the previous row's hash (row inserted or edited)");
      const std::string h = AuditRowHash(seq, r.Text(i, 1), e, prev);
      if (h != stored_hash) return fail("content does not match its hash (row edited)");
      prev = stored_hash;
      rep.head_seq = seq;
      rep.head_hash = stored_hash;
      expected_seq = seq + 1;
      after = seq;
    }
  }
  rep.ok = true;
  return rep;
}

// ---------------------------------------------------------------- scoped: uploads

StatusOr<std::pair<std::int64_t, std::string>> ApiDb::FindUploadRequest(const std::string& client_request_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("find upload request",
                                      "SELECT casing_id, sha256 FROM upload_requests WHERE client_request_id = $1 "
                                      "AND agency_id = ballistics_current_agency()",
                                      {pg::Param::Text(client_request_id)}));
  if (r.rows() == 0) return NotFound("no upload with client_request_id '" + client_request_id + "'");
  return std::make_pair(r.Int64(0, 0), r.Text(0, 1));
}

Status ApiDb::RecordUploadRequest(std::int64_t agency_id, const std::string& client_request_id,
                                  const std::string& sha256_hex, std::int64_t casing_id) {
  return impl_->conn
      ->Exec("record upload request",
             "INSERT INTO upload_requests (agency_id, client_request_id, sha256, casing_id) VALUES ($1, $2, $3, $4) "
             "ON CONFLICT (agency_id, client_request_id) DO NOTHING",
             {pg::Param::Int(agency_id), pg::Param::Text(client_request_id), pg::Param::Text(sha256_hex),
              pg::Param::Int(casing_id)})
      .status();
}

Status ApiDb::CheckCasingVisible(std::int64_t casing_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("casing visible", "SELECT 1 FROM casings WHERE id = $1",
                                                              {pg::Param::Int(casing_id)}));
  if (r.rows() == 0) return NotFound("no casing with id " + std::to_string(casing_id));
  return Status::Ok();
}

// ---------------------------------------------------------------- scoped: searches

StatusOr<std::int64_t> ApiDb::CreateSearch(std::int64_t agency_id, std::int64_t query_casing_id,
                                           const std::string& requested_by, const std::string& request_json) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("create search",
                                      "INSERT INTO searches (agency_id, query_casing_id, requested_by, request, "
                                      "instance_id) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id",
                                      {pg::Param::Int(agency_id), pg::Param::Int(query_casing_id),
                                       pg::Param::Text(requested_by), pg::Param::Text(request_json),
                                       pg::Param::Int(SearchInstanceId())}));
  return r.Int64(0, 0);
}

StatusOr<std::vector<std::int64_t>> ApiDb::FinishSearch(std::int64_t search_id, const std::string& status,
                                                        bool partial, int shards_answered, int shards_total,
                                                        std::int64_t signatures_scanned,
                                                        const std::vector<NewComparison>& comparisons,
                                                        const std::vector<int>& missing_shards) {
  pg::Connection& c = *impl_->conn;
  std::string missing = "{";
  for (std::size_t i = 0; i < missing_shards.size(); ++i) {
    missing += (i ? "," : "") + std::to_string(missing_shards[i]);
  }
  missing += "}";
  BALLISTICS_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(c));
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result s, c.Exec("finish search",
                           "UPDATE searches SET status = $2, partial = $3, shards_answered = $4, shards_total = $5, "
                           "signatures_scanned = $6, missing_shards = $7::integer[], finished_at = now() "
                           "WHERE id = $1 RETURNING agency_id, query_casing_id",
                           {pg::Param::Int(search_id), pg::Param::Text(status), pg::Param::Text(partial ? "t" : "f"),
                            pg::Param::Int(shards_answered), pg::Param::Int(shards_total),
                            pg::Param::Int(signatures_scanned), pg::Param::Text(missing)}));
  if (s.rows() == 0) return NotFound("no search with id " + std::to_string(search_id));
  const std::int64_t agency_id = s.Int64(0, 0);
  const std::int64_t query = s.Int64(0, 1);
  std::vector<std::int64_t> ids;
  for (const NewComparison& n : comparisons) {
    auto opt = [](const std::optional<double>& v) { return v ? pg::Param::Double(*v) : pg::Param::Null(); };
    BALLISTICS_ASSIGN_OR_RETURN(
        pg::Result r,
        c.Exec("insert comparison",
               "INSERT INTO comparisons (search_id, agency_id, reference_casing_id, target_casing_id, list, rank, "
               "coarse_score, score, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) RETURNING id",
               {pg::Param::Int(search_id), pg::Param::Int(agency_id), pg::Param::Int(query),
                pg::Param::Int(n.target_casing_id), pg::Param::Text(n.list), pg::Param::Int(n.rank),
                opt(n.coarse_score), opt(n.score), pg::Param::Text(n.detail_json)}));
    ids.push_back(r.Int64(0, 0));
  }
  BALLISTICS_RETURN_IF_ERROR(tx->Commit());
  return ids;
}

Status ApiDb::FailSearch(std::int64_t search_id, const std::string& reason) {
  // Cut on a UTF-8 character boundary (the column holds at most 2000 characters).
  std::string text = reason;
  if (text.size() > 2000) {
    std::size_t n = 2000;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
    text.resize(n);
  }
  // Bounded: the caller is answering a client whose search already failed,
  // and whatever broke the result's write may block this one too.
  pg::Connection& c = *impl_->conn;
  BALLISTICS_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(c));
  BALLISTICS_RETURN_IF_ERROR(c.Exec("fail search timeout", "SET LOCAL statement_timeout = '5s'").status());
  BALLISTICS_RETURN_IF_ERROR(c.Exec("fail search lock timeout", "SET LOCAL lock_timeout = '5s'").status());
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, c.Exec("fail search",
                           "UPDATE searches SET status = 'failed', failure_reason = $2, finished_at = now() "
                           "WHERE id = $1 AND status = 'running' RETURNING id",
                           {pg::Param::Int(search_id), pg::Param::Text(text)}));
  if (r.rows() == 0) return NotFound("no running search with id " + std::to_string(search_id));
  return tx->Commit();
}

std::int32_t ApiDb::SearchInstanceId() {
  // Random, not the pid: pids repeat across hosts and containers sharing one database.
  static const std::int32_t id = [] {
    std::random_device rd;
    return static_cast<std::int32_t>(std::uniform_int_distribution<std::int32_t>(1, INT32_MAX)(rd));
  }();
  return id;
}

Status ApiDb::ClaimSearchInstance() {
  return impl_->conn
      ->Exec("claim search instance", "SELECT pg_advisory_lock($1::int4, $2::int4)",
             {pg::Param::Int(kSearchInstanceLockClass), pg::Param::Int(SearchInstanceId())})
      .status();
}

StatusOr<std::int64_t> ApiDb::FailInterruptedSearches() {
  // pg_advisory_lock(int4, int4) shows in pg_locks as classid, objid, objsubid = 2.
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec(
          "fail interrupted searches",
          "UPDATE searches s SET status = 'failed', failure_reason = $1, finished_at = now() "
          "WHERE s.status = 'running' AND (s.instance_id IS NULL OR (s.instance_id <> $3 AND NOT EXISTS ("
          "SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
          "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
          "AND l.classid = $2::int4::oid AND l.objid = s.instance_id::oid))) RETURNING s.id",
          {pg::Param::Text(std::string(kInterruptedSearchReason)), pg::Param::Int(kSearchInstanceLockClass),
           pg::Param::Int(SearchInstanceId())}));
  return static_cast<std::int64_t>(r.rows());
}

StatusOr<SearchRow> ApiDb::GetSearch(std::int64_t search_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("get search",
                        "SELECT id, agency_id, query_casing_id, requested_by, status, partial, shards_answered, "
                        "shards_total, signatures_scanned, " + pg::IsoUtc("created_at") +
                            ", array_to_string(missing_shards, ','), failure_reason FROM searches WHERE id = $1",
                        {pg::Param::Int(search_id)}));
  if (r.rows() == 0) return NotFound("no search with id " + std::to_string(search_id));
  SearchRow s;
  s.id = r.Int64(0, 0);
  s.agency_id = r.Int64(0, 1);
  s.query_casing_id = r.Int64(0, 2);
  s.requested_by = r.Text(0, 3);
  s.status = r.Text(0, 4);
  s.partial = r.Bool(0, 5);
  s.shards_answered = r.Int32(0, 6);
  s.shards_total = r.Int32(0, 7);
  s.signatures_scanned = r.Int64(0, 8);
  s.created_at = r.Text(0, 9);
  const std::string missing = r.Text(0, 10);
  for (std::size_t at = 0; at < missing.size();) {
    std::size_t comma = missing.find(',', at);
    if (comma == std::string::npos) comma = missing.size();
    s.missing_shards.push_back(std::atoi(missing.c_str() + at));
    at = comma + 1;
  }
  s.failure_reason = r.Text(0, 11);
  return s;
}

StatusOr<std::vector<ComparisonRow>> ApiDb::GetSearchComparisons(std::int64_t search_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("search comparisons",
                                      "SELECT " + kComparisonColumns +
                                          " FROM comparisons WHERE search_id = $1 ORDER BY list, rank",
                                      {pg::Param::Int(search_id)}));
  std::vector<ComparisonRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(ReadComparison(r, i));
  return out;
}

StatusOr<ComparisonRow> ApiDb::GetComparison(std::int64_t comparison_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("get comparison",
                                      "SELECT " + kComparisonColumns + " FROM comparisons WHERE id = $1",
                                      {pg::Param::Int(comparison_id)}));
  if (r.rows() == 0) return NotFound("no comparison with id " + std::to_string(comparison_id));
  return ReadComparison(r, 0);
}

// ---------------------------------------------------------------- scoped: decisions, leads

StatusOr<DecisionRow> ApiDb::RecordDecision(std::int64_t agency_id, std::int64_t comparison_id,
                                            const std::string& outcome, const std::string& examiner,
                                            const std::string& notes) {
  if (outcome != "hit" && outcome != "no_hit" && outcome != "inconclusive") {
    return InvalidArgument("decision outcome '" + outcome + "' is not hit, no_hit or inconclusive");
  }
  pg::Connection& c = *impl_->conn;
  BALLISTICS_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(c));
  BALLISTICS_ASSIGN_OR_RETURN(ComparisonRow cmp, GetComparison(comparison_id));
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result d, c.Exec("insert decision",
                           "INSERT INTO decisions (comparison_id, agency_id, outcome, examiner, notes) VALUES ($1, $2, "
                           "$3::decision_outcome, $4, $5) RETURNING id, " + pg::IsoUtc("decided_at"),
                           {pg::Param::Int(comparison_id), pg::Param::Int(agency_id), pg::Param::Text(outcome),
                            pg::Param::Text(examiner), pg::Param::Text(notes)}));
  DecisionRow out;
  out.decision_id = d.Int64(0, 0);
  out.decided_at = d.Text(0, 1);
  out.comparison_id = comparison_id;
  out.outcome = outcome;
  out.examiner = examiner;
  out.notes = notes;
  if (outcome == "hit" && cmp.reference_casing_id != cmp.target_casing_id) {
    const std::int64_t a = std::min(cmp.reference_casing_id, cmp.target_casing_id);
    const std::int64_t b = std::max(cmp.reference_casing_id, cmp.target_casing_id);
    // An existing lead for the pair is kept (the first hit created it).
    BALLISTICS_ASSIGN_OR_RETURN(
        pg::Result l, c.Exec("insert lead",
                             "WITH ins AS (INSERT INTO leads (agency_id, casing_a, casing_b, decision_id) "
                             "VALUES ($1, $2, $3, $4) ON CONFLICT (agency_id, casing_a, casing_b) DO NOTHING "
                             "RETURNING id) SELECT id FROM ins UNION ALL SELECT id FROM leads WHERE agency_id = $1 "
                             "AND casing_a = $2 AND casing_b = $3 LIMIT 1",
                             {pg::Param::Int(agency_id), pg::Param::Int(a), pg::Param::Int(b),
                              pg::Param::Int(out.decision_id)}));
    if (l.rows() > 0) out.lead_id = l.Int64(0, 0);
  }
  BALLISTICS_RETURN_IF_ERROR(tx->Commit());
  return out;
}

StatusOr<std::vector<ComparisonRow>> ApiDb::ListPendingReviews(int limit) {
  if (limit <= 0 || limit > 1000) limit = 100;
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("pending reviews",
                        "SELECT " + kComparisonColumns +
                            " FROM comparisons c WHERE c.list = 'combined' AND NOT EXISTS (SELECT 1 FROM decisions d "
                            "WHERE d.comparison_id = c.id) ORDER BY c.search_id DESC, c.rank LIMIT $1",
                        {pg::Param::Int(limit)}));
  std::vector<ComparisonRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(ReadComparison(r, i));
  return out;
}

Status ApiDb::GetLinked(const std::vector<std::int64_t>& start, std::vector<LinkedCasingRow>* casings,
                        std::vector<LeadRow>* leads) {
  std::string ids = "{";
  for (std::size_t i = 0; i < start.size(); ++i) ids += (i ? "," : "") + std::to_string(start[i]);
  ids += "}";
  // UNION (not UNION ALL) makes the recursion stop on cycles of the lead graph.
  const std::string reach =
      "WITH RECURSIVE reach(casing_id) AS (SELECT unnest($1::bigint[]) UNION "
      "SELECT CASE WHEN l.casing_a = r.casing_id THEN l.casing_b ELSE l.casing_a END FROM leads l "
      "JOIN reach r ON l.casing_a = r.casing_id OR l.casing_b = r.casing_id) ";
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result c, impl_->conn->Exec("linked casings",
                                      reach + "SELECT c.id, a.name, k.case_number, c.exhibit_id, c.firearm_id "
                                              "FROM reach r JOIN casings c ON c.id = r.casing_id "
                                              "JOIN agencies a ON a.id = c.agency_id JOIN cases k ON k.id = c.case_id "
                                              "ORDER BY c.id",
                                      {pg::Param::Text(ids)}));
  for (int i = 0; i < c.rows(); ++i) {
    LinkedCasingRow row{c.Int64(i, 0), c.Text(i, 1), c.Text(i, 2), c.Text(i, 3), std::nullopt};
    if (!c.IsNull(i, 4)) row.firearm_id = c.Int64(i, 4);
    casings->push_back(std::move(row));
  }
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result l, impl_->conn->Exec("linked leads",
                                      reach + "SELECT DISTINCT l.id, l.casing_a, l.casing_b, l.decision_id, " +
                                          pg::IsoUtc("l.created_at") +
                                          " FROM leads l JOIN reach r ON l.casing_a = r.casing_id ORDER BY l.id",
                                      {pg::Param::Text(ids)}));
  for (int i = 0; i < l.rows(); ++i) {
    leads->push_back({l.Int64(i, 0), l.Int64(i, 1), l.Int64(i, 2), l.Int64(i, 3), l.Text(i, 4)});
  }
  return Status::Ok();
}

StatusOr<std::vector<std::int64_t>> ApiDb::CasingsOfCase(const std::string& agency, const std::string& case_number) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("casings of case",
                                      "SELECT c.id FROM casings c JOIN cases k ON k.id = c.case_id JOIN agencies a ON "
                                      "a.id = k.agency_id WHERE a.name = $1 AND k.case_number = $2 ORDER BY c.id",
                                      {pg::Param::Text(agency), pg::Param::Text(case_number)}));
  std::vector<std::int64_t> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Int64(i, 0));
  return out;
}

StatusOr<std::vector<std::int64_t>> ApiDb::CasingsOfFirearm(std::int64_t firearm_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r,
                              impl_->conn->Exec("casings of firearm",
                                                "SELECT id FROM casings WHERE firearm_id = $1 ORDER BY id",
                                                {pg::Param::Int(firearm_id)}));
  std::vector<std::int64_t> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Int64(i, 0));
  return out;
}

}  // namespace ballistics::store
