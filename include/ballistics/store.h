// Store: the PostgreSQL adapter. Domain code hands it domain structs (casing
// metadata, Scan, Signature) and gets domain structs back; no SQL leaves
// src/store/. Schema: db/migrations/ (embedded into the binaries at build time).
//
// Errors (docs/architecture.md): database unreachable or connection lost ->
// UNAVAILABLE; constraint violations -> INVALID_ARGUMENT / ALREADY_EXISTS /
// FAILED_PRECONDITION; unknown ids -> NOT_FOUND. Messages keep PostgreSQL's
// SQLSTATE and constraint name: "store: insert casing: ... (SQLSTATE 23505,
// constraint casings_case_id_exhibit_id_key)".
//
// A Store owns one connection and is not thread-safe: use one Store per thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballistics/status.h"
#include "ballistics/surface.h"

namespace ballistics {

// Where a casing comes from (PostgreSQL enum casing_source; later issues add values).
// kManufacturerTestFire: fired by the manufacturer at manufacture and linked to
// the firearm's registry record (migration 0020, docs/registry.md).
enum class CasingSource { kCrimeScene, kTestFire, kRecoveredFirearm, kPoliceIssued, kManufacturerTestFire };
// "crime_scene", "test_fire", "recovered_firearm", "police_issued", "manufacturer_test_fire" (the SQL enum labels).
std::string_view CasingSourceName(CasingSource s);
// Accepts the labels above and their dashed CLI spellings ("crime-scene").
StatusOr<CasingSource> ParseCasingSource(std::string_view s);

// What the submitter says about a casing. Validation of the values (non-empty
// agency, case, calibre, ISO 8601 captured_at) is done by the ingest stage
// before the store is touched; the schema's CHECK constraints are the backstop.
struct CasingMetadata {
  std::string agency;
  std::string case_number;        // unique within the agency
  std::string exhibit_id;         // unique within the case
  std::string calibre;            // e.g. "9mm Luger"
  CasingSource source = CasingSource::kCrimeScene;
  std::string capture_device;     // instrument/camera make, model, serial; "" = not given
  std::optional<std::string> captured_at;  // ISO 8601 ("2024-05-01" or "2024-05-01T10:00:00Z")
  std::string submitted_by;
  std::optional<std::int64_t> firearm_id;  // firearms table comes with a later issue
};

namespace store {

// Signatures are hash-partitioned by casing into this many partitions
// (signatures_p00 .. signatures_p15); one partition = one shard.
inline constexpr int kSignatureShards = 16;
// LISTEN channel the insert trigger notifies; payload JSON {"id","casing_id","partition"}.
inline constexpr std::string_view kSignaturesChannel = "ballistics_signatures";

// One migration file db/migrations/NNNN_name.sql.
struct Migration {
  int version = 0;     // NNNN
  std::string name;    // "initial"
  std::string sql;
};
// The files of db/migrations/, in version order, as compiled into this binary.
const std::vector<Migration>& EmbeddedMigrations();
// Hex SHA-256 of a migration's SQL text: what schema_migrations records.
std::string MigrationChecksum(const Migration& m);

struct MigrationReport {
  std::vector<int> applied_now;  // versions applied by this call (empty: already up to date)
  int schema_version = 0;        // highest applied version afterwards
};

struct IngestResult {
  std::int64_t casing_id = 0;
  std::int64_t scan_id = 0;
  bool already_existed = false;  // same sha256 was stored before: nothing written
  std::vector<std::int64_t> signature_ids;  // empty when already_existed
};

struct SignatureInfo {
  std::int64_t id = 0;
  SignatureKind kind = SignatureKind::kBreechFace;
  std::string pipeline_version;
  double pixel_um = 0.0;
  int width = 0;
  int height = 0;
  double valid_fraction = 0.0;
  int shard = -1;  // partition index 0..kSignatureShards-1
};

struct StoredCasing {
  std::int64_t id = 0;
  CasingMetadata metadata;
  std::string created_at;        // ISO 8601 UTC
  // The scan (one per casing for now).
  std::int64_t scan_id = 0;
  std::string sha256_hex;
  ScanFormat format = ScanFormat::kX3p;
  Modality modality = Modality::kTopography3d;
  double pixel_um_x = 0.0;
  double pixel_um_y = 0.0;
  int width = 0;
  int height = 0;
  std::string header_length_unit;
  std::uint64_t original_size_bytes = 0;
  std::string scanner_json;      // manufacturer, model, ... as a JSON object
  std::vector<SignatureInfo> signatures;
};

// A signature read back, bit-exact (the float bytes memcmp-equal to what was stored).
struct StoredSignature {
  std::int64_t id = 0;
  std::int64_t casing_id = 0;
  std::int64_t scan_id = 0;
  int shard = -1;
  Signature signature;
};

// A signature with the casing fields a search filters on (what an index needs
// besides the values), read in one query.
struct SearchableSignature {
  StoredSignature stored;
  std::string agency;
  std::string calibre;
  CasingSource source = CasingSource::kCrimeScene;
  std::optional<std::string> captured_at;  // ISO 8601 UTC, as in CasingMetadata
};

// Ids only (a shard worker's catch-up after a lost LISTEN connection).
struct SignatureRef {
  std::int64_t id = 0;
  std::int64_t casing_id = 0;
  int shard = -1;
};

struct ListCasingsOptions {
  std::optional<std::string> agency;
  std::optional<std::string> case_number;
  std::int64_t after_id = 0;     // keyset pagination: casings with id > after_id
  int limit = 1000;
};

struct StoreCounts {
  std::int64_t agencies = 0;
  std::int64_t cases = 0;
  std::int64_t casings = 0;
  std::int64_t scans = 0;
  std::int64_t signatures = 0;
  std::array<std::int64_t, kSignatureShards> signatures_per_shard{};
};

class Store {
 public:
  // database_url: a libpq URL or key=value string. Unreachable -> UNAVAILABLE.
  static StatusOr<std::unique_ptr<Store>> Connect(const std::string& database_url);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  // Connected, outside any transaction and not listening: safe to hand to the
  // next caller of a connection pool. False after the server went away.
  bool Usable() const;

  // Applies the migrations not yet applied, each in its own transaction, under a
  // transaction-scoped advisory lock: safe to run twice and concurrently. Refuses
  // (FAILED_PRECONDITION) when an applied migration's checksum or name differs
  // from the given one, or the database has versions this binary does not know.
  StatusOr<MigrationReport> Migrate(const std::vector<Migration>& migrations = EmbeddedMigrations());
  // Like Migrate but changes nothing: OK only if every migration is applied unchanged.
  Status CheckMigrations(const std::vector<Migration>& migrations = EmbeddedMigrations());

  // Stores one casing in one transaction: agency and case (created on first use),
  // casing, scan, original bytes and signatures. Nothing is written on any error.
  // Idempotent by SHA-256 of original_bytes: if those bytes were stored before,
  // returns the existing casing with already_existed = true and writes nothing.
  // scan.sha256_hex, when set, must equal the SHA-256 of original_bytes.
  StatusOr<IngestResult> IngestCasing(const CasingMetadata& metadata, const Scan& scan,
                                      std::span<const std::uint8_t> original_bytes,
                                      std::span<const Signature> signatures);

  // Casing with its scan summary and signature list; NOT_FOUND for an unknown id.
  StatusOr<StoredCasing> GetCasing(std::int64_t casing_id);
  // Existing casing id whose scan has this SHA-256 (hex), or NOT_FOUND.
  StatusOr<std::int64_t> FindCasingBySha256(const std::string& sha256_hex);
  // All signatures of a casing with their values (empty vector if it has none).
  StatusOr<std::vector<StoredSignature>> GetSignatures(std::int64_t casing_id);
  // One signature with its values. casing_id is the partition key: PostgreSQL
  // reads only that casing's partition (by its primary key there) and no other
  // signature of the casing. NOT_FOUND when no signature has this id in this casing.
  StatusOr<StoredSignature> GetSignature(std::int64_t casing_id, std::int64_t signature_id);
  // The original file bytes of a casing's scan.
  StatusOr<std::vector<std::uint8_t>> GetOriginalBytes(std::int64_t casing_id);
  // Casings in id order (without signature values).
  StatusOr<std::vector<StoredCasing>> ListCasings(const ListCasingsOptions& options = {});
  StatusOr<StoreCounts> Counts();

  // Bulk read for shard workers: streams every signature of the given shards
  // (partition indexes) through a binary cursor, `batch_rows` rows per fetch, in
  // (shard, id) order. Stops at the first non-OK Status returned by `sink`.
  Status LoadSignatures(std::span<const int> shards,
                        const std::function<Status(StoredSignature&&)>& sink, int batch_rows = 64);

  // Like LoadSignatures, with the casing's filter fields joined in (one
  // server-side binary cursor per shard, `batch_rows` rows per FETCH).
  Status LoadSearchableSignatures(std::span<const int> shards,
                                  const std::function<Status(SearchableSignature&&)>& sink, int batch_rows = 64);
  // The same for one casing (empty vector if it has no signatures).
  StatusOr<std::vector<SearchableSignature>> GetSearchableSignatures(std::int64_t casing_id);
  // Ids of every signature of the given shards, in (shard, id) order.
  StatusOr<std::vector<SignatureRef>> ListSignatureRefs(std::span<const int> shards);

  // LISTEN on kSignaturesChannel, then wait up to timeout_ms for notifications;
  // returns the payloads received (possibly none).
  Status ListenSignatures();
  StatusOr<std::vector<std::string>> WaitForNotifications(int timeout_ms);

  class Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace store
}  // namespace ballistics

// ---- Evidence strength: reference populations and LR models ----
// Schema: db/migrations/0030_reference_populations.sql; implementation
// src/store/evidence_store.cc. The model itself is domain data of the evidence
// stage (evidence::ModelToJson / ModelFromJson); the store keeps its JSON and the
// population's scores and knows nothing of the statistics.
namespace ballistics::store {

struct ReferenceScoreRow {
  bool same_source = false;
  int cmc = 0;
  int cells = 0;
};

struct ReferenceModelRecord {
  std::int64_t id = 0;             // evidence_models.id (set by the store)
  std::int64_t population_id = 0;  // set by the store
  std::string name;
  SignatureKind kind = SignatureKind::kBreechFace;
  std::string calibre;             // "" = any calibre
  std::string pipeline_version;
  std::string model;               // e.g. "beta-binomial CMC + ELUB"
  std::string params_json;         // evidence::ModelToJson
  std::vector<ReferenceScoreRow> scores;
  std::string created_at;          // ISO 8601 UTC (set by the store)
};

// One connection, not thread-safe (like Store).
class EvidenceDb {
 public:
  // Unreachable -> UNAVAILABLE.
  static StatusOr<std::unique_ptr<EvidenceDb>> Connect(const std::string& database_url);
  ~EvidenceDb();
  EvidenceDb(const EvidenceDb&) = delete;
  EvidenceDb& operator=(const EvidenceDb&) = delete;

  // Population, scores and model in one transaction; replaces an earlier one of
  // the same (name, kind, calibre, pipeline_version). Returns the model id.
  // INVALID_ARGUMENT for empty name/version/params or a score the schema rejects.
  StatusOr<std::int64_t> SaveReferenceModel(const ReferenceModelRecord& record);
  // The newest model for this kind and pipeline version: of this calibre if one
  // exists, else of any calibre (""); scores filled. NOT_FOUND when none.
  StatusOr<ReferenceModelRecord> FindReferenceModel(SignatureKind kind, const std::string& calibre,
                                                    const std::string& pipeline_version);
  // Every stored model, newest first, without scores.
  StatusOr<std::vector<ReferenceModelRecord>> ListReferenceModels();
  // Connected and no transaction open (a pooled connection may be reused).
  bool Usable() const;

  class Impl;

 private:
  explicit EvidenceDb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ballistics::store
