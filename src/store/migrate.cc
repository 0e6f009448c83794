// Schema migrations: db/migrations/NNNN_name.sql, forward-only, applied in order.
//
// Each migration runs in its own transaction that first takes a transaction-scoped
// advisory lock, so concurrent starts of ballisticsd/ballisticsctl serialize and
// the later ones find the work done (applying twice is a no-op). The SHA-256 of
// every applied file is recorded; a binary whose embedded file differs from what
// was applied refuses to run, because the database would not be in the state the
// code expects (pattern of Flyway/sqlx "checksum mismatch").
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "migrations_embedded.h"
#include "store_impl.h"

namespace ballistics::store {
namespace {

// Arbitrary constant identifying "ballistics schema migration" among advisory locks.
constexpr std::int64_t kMigrationLockKey = 0x62616c6c6d6967;  // "ballmig"

const char* kCreateTable = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  sha256     text NOT NULL
))sql";

struct Applied {
  std::string name;
  std::string sha256;
};

std::vector<Migration> ParseEmbedded() {
  std::vector<Migration> out;
  for (const internal::EmbeddedFile* f = internal::kEmbeddedMigrations; f->name; ++f) {
    std::string_view file(f->name);  // "0001_initial.sql", checked by the generator
    Migration m;
    std::from_chars(file.data(), file.data() + 4, m.version);
    m.name = std::string(file.substr(5, file.size() - 5 - 4));
    m.sql.assign(reinterpret_cast<const char*>(f->data), f->size);
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(), [](const Migration& a, const Migration& b) { return a.version < b.version; });
  return out;
}

Status ValidateList(const std::vector<Migration>& migrations) {
  for (std::size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version <= 0) {
      return InvalidArgument("migrate: version " + std::to_string(migrations[i].version) + " is not positive");
    }
    if (i > 0 && migrations[i].version <= migrations[i - 1].version) {
      return InvalidArgument("migrate: versions not strictly increasing at " +
                             std::to_string(migrations[i].version));
    }
  }
  return Status::Ok();
}

StatusOr<std::map<int, Applied>> ReadApplied(pg::Connection& c) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r,
                              c.Exec("read schema_migrations", "SELECT version, name, sha256 FROM schema_migrations"));
  std::map<int, Applied> out;
  for (int i = 0; i < r.rows(); ++i) out[r.Int32(i, 0)] = Applied{r.Text(i, 1), r.Text(i, 2)};
  return out;
}

// Every applied version must be known to this binary with the same name and checksum.
Status VerifyApplied(const std::map<int, Applied>& applied, const std::vector<Migration>& migrations) {
  for (const auto& [version, a] : applied) {
    auto it = std::find_if(migrations.begin(), migrations.end(),
                           [v = version](const Migration& m) { return m.version == v; });
    if (it == migrations.end()) {
      return FailedPrecondition("migrate: the database has migration " + std::to_string(version) + " (" + a.name +
                                ") which this binary does not know: it is older than the schema");
    }
    const std::string sum = MigrationChecksum(*it);
    if (a.sha256 != sum || a.name != it->name) {
      return FailedPrecondition("migrate: migration " + std::to_string(version) + "_" + it->name +
                                " was changed after it was applied (recorded " + a.name + " sha256 " + a.sha256 +
                                ", now " + sum + "); migrations are forward-only: add a new one instead");
    }
  }
  return Status::Ok();
}

}  // namespace

std::string Sha256HexOf(std::span<const unsigned char> bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * len, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 15];
  }
  return out;
}

const std::vector<Migration>& EmbeddedMigrations() {
  static const std::vector<Migration> migrations = ParseEmbedded();
  return migrations;
}

std::string MigrationChecksum(const Migration& m) {
  return Sha256HexOf({reinterpret_cast<const unsigned char*>(m.sql.data()), m.sql.size()});
}

StatusOr<MigrationReport> Store::Migrate(const std::vector<Migration>& migrations) {
  BALLISTICS_RETURN_IF_ERROR(ValidateList(migrations));
  pg::Connection& c = *impl_->conn;
  MigrationReport report;
  // One transaction per migration; the lock and the applied set are re-read each
  // time because another process may have applied the next one meanwhile.
  for (;;) {
    BALLISTICS_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(c));
    BALLISTICS_RETURN_IF_ERROR(c.Exec("migration lock", "SELECT pg_advisory_xact_lock($1)",
                                      {pg::Param::Int(kMigrationLockKey)}).status());
    BALLISTICS_RETURN_IF_ERROR(c.ExecScript("create schema_migrations", kCreateTable));
    BALLISTICS_ASSIGN_OR_RETURN(auto applied, ReadApplied(c));
    BALLISTICS_RETURN_IF_ERROR(VerifyApplied(applied, migrations));
    report.schema_version = applied.empty() ? 0 : applied.rbegin()->first;
    auto next = std::find_if(migrations.begin(), migrations.end(),
                             [&](const Migration& m) { return !applied.count(m.version); });
    if (next == migrations.end()) {
      BALLISTICS_RETURN_IF_ERROR(tx->Commit());
      return report;
    }
    if (next->version < report.schema_version) {
      return FailedPrecondition("migrate: migration " + std::to_string(next->version) + "_" + next->name +
                                " is older than the applied schema version " +
                                std::to_string(report.schema_version) + " but was never applied");
    }
    const std::string label = std::to_string(next->version) + "_" + next->name;
    BALLISTICS_RETURN_IF_ERROR(c.ExecScript("migration " + label, next->sql));
    BALLISTICS_RETURN_IF_ERROR(c.Exec("record migration " + label,
                                      "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                                      {pg::Param::Int(next->version), pg::Param::Text(next->name),
                                       pg::Param::Text(MigrationChecksum(*next))}).status());
    BALLISTICS_RETURN_IF_ERROR(tx->Commit());
    spdlog::info("store: applied migration {}", label);
    report.applied_now.push_back(next->version);
  }
}

Status Store::CheckMigrations(const std::vector<Migration>& migrations) {
  BALLISTICS_RETURN_IF_ERROR(ValidateList(migrations));
  pg::Connection& c = *impl_->conn;
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result exists, c.Exec("check schema_migrations",
                                                        "SELECT to_regclass('schema_migrations') IS NOT NULL"));
  if (!exists.Bool(0, 0)) return FailedPrecondition("store: database has no schema: run `ballisticsctl db migrate`");
  BALLISTICS_ASSIGN_OR_RETURN(auto applied, ReadApplied(c));
  BALLISTICS_RETURN_IF_ERROR(VerifyApplied(applied, migrations));
  for (const Migration& m : migrations) {
    if (!applied.count(m.version)) {
      return FailedPrecondition("store: migration " + std::to_string(m.version) + "_" + m.name +
                                " is not applied: run `ballisticsctl db migrate`");
    }
  }
  return Status::Ok();
}

}  // namespace ballistics::store
