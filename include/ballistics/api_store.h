// API store: what the gRPC service keeps in PostgreSQL besides the evidence
// itself — API tokens and agencies (auth), the hash-chained audit trail,
// searches, examiner decisions and leads. Schema: db/migrations/0010_api_security.sql.
//
// Two kinds of connection (see that migration):
//   * System (ApiDb::ConnectSystem): the database URL's own user. Authenticates
//     tokens, manages agencies and tokens, appends and verifies the audit trail.
//     Never used to read evidence.
//   * Scoped (ApiDb::ConnectScoped): runs as the non-superuser role
//     ballistics_app with the caller's agency and role as session settings, so
//     PostgreSQL row-level security limits every query to what that agency may
//     see, whatever the SQL says. ScopedUrl() gives the same for a store::Store.
//
// An ApiDb owns one connection and is not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballistics/status.h"

namespace ballistics::store {

inline constexpr std::string_view kAppRole = "ballistics_app";
// failure_reason of a search left 'running' by a process that is gone.
inline constexpr std::string_view kInterruptedSearchReason =
    "interrupted: the server stopped before the search finished";
// Class key (first int4) of the per-process search instance advisory locks.
inline constexpr std::int32_t kSearchInstanceLockClass = 0x5345;  // "SE"

enum class ApiRole { kTechnician, kExaminer, kAgencyReader, kAdmin };
// "technician", "examiner", "agency_reader", "admin" (the SQL enum labels).
std::string_view ApiRoleName(ApiRole r);
// Accepts the labels above and "agency-reader".
StatusOr<ApiRole> ParseApiRole(std::string_view s);

// Who is calling: the token's agency and role.
struct Principal {
  std::int64_t token_id = 0;
  std::int64_t agency_id = 0;
  std::string agency;
  ApiRole role = ApiRole::kAgencyReader;
  std::string holder;
};

// `url` (libpq URL or key=value string) rewritten to log in as the same user,
// then SET ROLE ballistics_app and set ballistics.agency_id / ballistics.role for
// the whole session (libpq "options"). INVALID_ARGUMENT for an unparsable URL.
StatusOr<std::string> ScopedUrl(const std::string& url, const Principal& who);

struct AgencyRow {
  std::int64_t id = 0;
  std::string name;
  std::string created_at;  // ISO 8601 UTC
};

struct NewToken {
  std::int64_t token_id = 0;
  std::string secret;                     // 64 hex characters; only ever returned here
  std::optional<std::string> expires_at;  // ISO 8601 UTC
};

// One audit row's content (the chain fields are added by AppendAudit).
struct AuditEntry {
  std::string request_id;
  std::optional<std::int64_t> token_id;
  std::string actor;    // token holder, or "anonymous"
  std::string agency;   // caller's agency name, or ""
  std::string role;     // caller's role, or ""
  std::string method;   // "/ballistics.v1.IngestService/UploadScan", "cli admin create-token"
  std::string status;   // "OK" or "PERMISSION_DENIED: ..."
  std::string records;  // "casing:12 search:3"
  std::string detail;
};

struct AuditVerifyReport {
  bool ok = false;
  std::int64_t rows = 0;
  std::int64_t head_seq = 0;
  std::string head_hash;
  std::string problem;  // first inconsistency, "" when ok
};

// SHA-256 of the empty chain's predecessor: 64 zeros.
inline constexpr std::string_view kAuditGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";
// row_hash = hex SHA-256 of (prev_hash + "\n" + content_json), content_json being
// the canonical JSON array [seq, occurred_at, request_id, token_id|null, actor,
// agency, role, method, status, records, detail]. Public so a verifier outside
// this code base can be written from the header alone.
std::string AuditRowHash(std::int64_t seq, const std::string& occurred_at, const AuditEntry& e,
                         const std::string& prev_hash);

struct DecisionRow {
  std::int64_t decision_id = 0;
  std::int64_t comparison_id = 0;
  std::string outcome;  // "hit", "no_hit", "inconclusive"
  std::string examiner;
  std::string notes;
  std::string decided_at;
  std::int64_t lead_id = 0;  // 0 when no lead was created
};

struct ComparisonRow {
  std::int64_t id = 0;
  std::int64_t search_id = 0;
  std::int64_t agency_id = 0;
  std::int64_t reference_casing_id = 0;
  std::int64_t target_casing_id = 0;
  std::string list;  // "BF", "FP", "combined"
  int rank = 0;
  std::optional<double> coarse_score;
  std::optional<double> score;
  std::string detail_json;
};

struct NewComparison {
  std::int64_t target_casing_id = 0;
  std::string list;
  int rank = 0;
  std::optional<double> coarse_score;
  std::optional<double> score;
  std::string detail_json = "{}";
};

struct SearchRow {
  std::int64_t id = 0;
  std::int64_t agency_id = 0;
  std::int64_t query_casing_id = 0;
  std::string requested_by;
  std::string status;
  bool partial = false;
  int shards_answered = 0;
  int shards_total = 0;
  std::int64_t signatures_scanned = 0;
  std::string created_at;
  std::vector<int> missing_shards;  // of a partial search (migration 0060)
  std::string failure_reason;       // of a failed one; '' otherwise
};

struct LinkedCasingRow {
  std::int64_t casing_id = 0;
  std::string agency;
  std::string case_number;
  std::string exhibit_id;
  std::optional<std::int64_t> firearm_id;
};

struct LeadRow {
  std::int64_t id = 0;
  std::int64_t casing_a = 0;
  std::int64_t casing_b = 0;
  std::int64_t decision_id = 0;
  std::string created_at;
};

struct PendingReviewRow {
  ComparisonRow comparison;
};

class ApiDb {
 public:
  static StatusOr<std::unique_ptr<ApiDb>> ConnectSystem(const std::string& url);
  static StatusOr<std::unique_ptr<ApiDb>> ConnectScoped(const std::string& url, const Principal& who);
  ~ApiDb();
  ApiDb(const ApiDb&) = delete;
  ApiDb& operator=(const ApiDb&) = delete;
  // Connected and outside any transaction: safe to hand to the next caller of a
  // connection pool. False after the server went away (restart, terminated backend).
  bool Usable() const;

  // ---- system connection: agencies, tokens, authentication
  // ALREADY_EXISTS for a taken name; INVALID_ARGUMENT for an empty/overlong one.
  StatusOr<std::int64_t> CreateAgency(const std::string& name);
  StatusOr<std::vector<AgencyRow>> ListAgencies();
  // NOT_FOUND for an unknown agency name.
  StatusOr<std::int64_t> AgencyId(const std::string& name);
  // A new random 32-byte token (OpenSSL RAND_bytes); only its SHA-256 is stored.
  // valid_days 0 = no expiry; negative = INVALID_ARGUMENT.
  StatusOr<NewToken> CreateToken(const std::string& agency, ApiRole role, const std::string& holder,
                                 int valid_days);
  Status RevokeToken(std::int64_t token_id);
  // UNAUTHENTICATED for a malformed, unknown, revoked or expired token (the
  // message says which, never echoing the secret). The stored hash is compared
  // in constant time (CRYPTO_memcmp) after the index lookup.
  StatusOr<Principal> Authenticate(std::string_view token);
  // Owning agency of a casing, bypassing row-level security (system
  // connection only): lets the service answer PERMISSION_DENIED rather than
  // NOT_FOUND for another agency's casing. NOT_FOUND for an unknown id.
  StatusOr<std::int64_t> CasingAgencyId(std::int64_t casing_id);
  // True when reader may read owner's casings (same agency or a share).
  StatusOr<bool> AgencyShares(std::int64_t owner_agency_id, std::int64_t reader_agency_id);
  // Lets reader_agency read owner_agency's casings (searches of the reader then
  // include them). NOT_FOUND for an unknown agency; idempotent.
  Status ShareAgency(const std::string& owner_agency, const std::string& reader_agency);
  // Names of the agency and of the agencies sharing their casings with it.
  StatusOr<std::vector<std::string>> VisibleAgencyNames(std::int64_t reader_agency_id);

  // ---- system connection: audit trail
  // Appends one row, chained to the previous one, under a transaction-scoped
  // advisory lock (rows chain in seq order even with concurrent writers).
  // Returns the new row's seq.
  StatusOr<std::int64_t> AppendAudit(const AuditEntry& entry);
  // Recomputes every row's hash in seq order.
  StatusOr<AuditVerifyReport> VerifyAudit();
  // The newest row's seq and hash without verifying anything ({0, genesis} when empty).
  StatusOr<std::pair<std::int64_t, std::string>> AuditHead();
  // The stored hash of row `seq`; NOT_FOUND when there is no such row.
  StatusOr<std::string> AuditRowHashAt(std::int64_t seq);

  // ---- scoped connection (row-level security applies)
  // Upload idempotency: the casing stored for (caller's agency, client_request_id)
  // and its sha256, or NOT_FOUND.
  StatusOr<std::pair<std::int64_t, std::string>> FindUploadRequest(const std::string& client_request_id);
  Status RecordUploadRequest(std::int64_t agency_id, const std::string& client_request_id,
                             const std::string& sha256_hex, std::int64_t casing_id);
  // NOT_FOUND when the casing is not visible to the caller.
  Status CheckCasingVisible(std::int64_t casing_id);
  StatusOr<std::int64_t> CreateSearch(std::int64_t agency_id, std::int64_t query_casing_id,
                                      const std::string& requested_by, const std::string& request_json);
  // Stores the finished search and its candidates; returns comparison ids in input order.
  StatusOr<std::vector<std::int64_t>> FinishSearch(std::int64_t search_id, const std::string& status, bool partial,
                                                   int shards_answered, int shards_total,
                                                   std::int64_t signatures_scanned,
                                                   const std::vector<NewComparison>& comparisons,
                                                   const std::vector<int>& missing_shards = {});
  // Marks a search that is still 'running' as 'failed' with the reason (cut to
  // 2000 characters), in its own transaction bounded to 5 s: for a search
  // whose result could not be stored. NOT_FOUND when no running search has the id.
  Status FailSearch(std::int64_t search_id, const std::string& reason);
  // This process's search instance id (random, positive, fixed for the
  // process): CreateSearch stores it on the row. See ClaimSearchInstance.
  static std::int32_t SearchInstanceId();
  // System connection, held for the process's lifetime: takes the session
  // advisory lock that says "instance SearchInstanceId() is alive"
  // (db/migrations/0070_search_instance.sql).
  Status ClaimSearchInstance();
  // System connection: marks 'failed' (kInterruptedSearchReason) every
  // 'running' search whose instance holds no lock (its process stopped before
  // the search finished) or that has no instance; returns how many.
  StatusOr<std::int64_t> FailInterruptedSearches();
  StatusOr<SearchRow> GetSearch(std::int64_t search_id);
  StatusOr<std::vector<ComparisonRow>> GetSearchComparisons(std::int64_t search_id);
  StatusOr<ComparisonRow> GetComparison(std::int64_t comparison_id);
  // Records a decision; a hit also creates (or reuses) the lead linking the two
  // casings, in the same transaction.
  StatusOr<DecisionRow> RecordDecision(std::int64_t agency_id, std::int64_t comparison_id,
                                       const std::string& outcome, const std::string& examiner,
                                       const std::string& notes);
  // Combined-list comparisons of the caller's searches without any decision, newest search first, best rank first.
  StatusOr<std::vector<ComparisonRow>> ListPendingReviews(int limit);
  // Everything linked to the start casings through leads, transitively
  // (WITH RECURSIVE over the lead graph), as far as row-level security shows it.
  Status GetLinked(const std::vector<std::int64_t>& start_casings, std::vector<LinkedCasingRow>* casings,
                   std::vector<LeadRow>* leads);
  // Casing ids of a case (caller's agency unless admin) / of a firearm.
  StatusOr<std::vector<std::int64_t>> CasingsOfCase(const std::string& agency, const std::string& case_number);
  StatusOr<std::vector<std::int64_t>> CasingsOfFirearm(std::int64_t firearm_id);

  class Impl;

 private:
  explicit ApiDb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ballistics::store
