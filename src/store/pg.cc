#include "pg.h"

#include <arpa/inet.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>

namespace ballistics::store::pg {
namespace {

// Built-in type OIDs (src/include/catalog/pg_type.dat), stable across versions.
constexpr Oid kByteaOid = 17;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;

std::uint64_t ReadBigEndian(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

// libpq messages span lines ("...failed: Connection refused\n\tIs the server
// running..."); one line reads better in logs and CLI errors.
std::string TrimmedMessage(const char* m) {
  std::string s;
  for (const char* p = m ? m : ""; *p; ++p) {
    const bool space = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
    if (space) {
      if (!s.empty() && s.back() != ' ') s += ' ';
    } else {
      s += *p;
    }
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

}  // namespace

Param Param::Double(double v) {
  if (std::isnan(v)) return Text("NaN");
  if (std::isinf(v)) return Text(v > 0 ? "Infinity" : "-Infinity");
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return Text(std::string(buf, end));
}

std::int64_t Result::Int64(int row, int col) const {
  const char* v = PQgetvalue(r_.get(), row, col);
  if (PQfformat(r_.get(), col) == 0) return std::strtoll(v, nullptr, 10);
  const int n = PQgetlength(r_.get(), row, col);
  const std::uint64_t u = ReadBigEndian(v, n);
  switch (n) {
    case 2: return static_cast<std::int16_t>(u);
    case 4: return static_cast<std::int32_t>(u);
    default: return static_cast<std::int64_t>(u);
  }
}

double Result::Double(int row, int col) const {
  const char* v = PQgetvalue(r_.get(), row, col);
  if (PQfformat(r_.get(), col) == 0) {
    double d = 0.0;
    // PostgreSQL writes NaN/Infinity spelled out; strtod understands both.
    d = std::strtod(v, nullptr);
    return d;
  }
  const Oid type = PQftype(r_.get(), col);
  if (type == kFloat4Oid) return std::bit_cast<float>(static_cast<std::uint32_t>(ReadBigEndian(v, 4)));
  if (type == kFloat8Oid) return std::bit_cast<double>(ReadBigEndian(v, 8));
  return static_cast<double>(Int64(row, col));
}

bool Result::Bool(int row, int col) const {
  const char* v = PQgetvalue(r_.get(), row, col);
  if (PQfformat(r_.get(), col) == 0) return v[0] == 't';
  return v[0] != 0;
}

std::string Result::Text(int row, int col) const {
  return std::string(PQgetvalue(r_.get(), row, col), static_cast<std::size_t>(PQgetlength(r_.get(), row, col)));
}

std::span<const std::uint8_t> Result::RawBytes(int row, int col) const {
  return {reinterpret_cast<const std::uint8_t*>(PQgetvalue(r_.get(), row, col)),
          static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
}

std::vector<std::uint8_t> Result::Bytes(int row, int col) const {
  if (PQfformat(r_.get(), col) == 1 || PQftype(r_.get(), col) != kByteaOid) {
    auto raw = RawBytes(row, col);
    return {raw.begin(), raw.end()};
  }
  std::size_t n = 0;
  unsigned char* u = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_.get(), row, col)), &n);
  std::vector<std::uint8_t> out(u, u + n);
  PQfreemem(u);
  return out;
}

StatusCode CodeForSqlState(std::string_view s) {
  if (s.size() != 5) return StatusCode::kInternal;
  if (s.starts_with("08")) return StatusCode::kUnavailable;            // connection exception
  if (s == "57P01" || s == "57P02" || s == "57P03") return StatusCode::kUnavailable;  // shutdown
  // read_only_sql_transaction: a standby or a database set read-only; retryable
  // once the primary is back, and never a sign of bad input.
  if (s == "25006") return StatusCode::kUnavailable;
  if (s == "23505") return StatusCode::kAlreadyExists;                  // unique_violation
  if (s == "23503") return StatusCode::kFailedPrecondition;             // foreign_key_violation
  if (s.starts_with("23")) return StatusCode::kInvalidArgument;         // not null, check, ...
  if (s.starts_with("22")) return StatusCode::kInvalidArgument;         // data exception (bad timestamp)
  if (s == "40001" || s == "40P01") return StatusCode::kAborted;        // serialization, deadlock
  if (s.starts_with("53")) return StatusCode::kResourceExhausted;       // insufficient resources
  if (s == "57014") return StatusCode::kCancelled;                      // query_canceled
  if (s.starts_with("28")) return StatusCode::kUnauthenticated;
  if (s == "42501") return StatusCode::kPermissionDenied;
  return StatusCode::kInternal;
}

StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& url) {
  if (url.empty()) {
    return InvalidArgument("store: no database URL (pass --database-url or set BALLISTICS_DATABASE_URL)");
  }
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (!opts) {
    std::string m = TrimmedMessage(err);
    PQfreemem(err);
    return InvalidArgument("store: invalid database URL: " + m);
  }
  PQconninfoFree(opts);
  PGconn* c = PQconnectdb(url.c_str());
  if (!c) return Unavailable("store: out of memory allocating a connection");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string m = TrimmedMessage(PQerrorMessage(c));
    PQfinish(c);
    return Unavailable("store: cannot connect to the database: " + m);
  }
  std::unique_ptr<Connection> conn(new Connection(c));
  // Timestamps come back in UTC; notices (e.g. "relation already exists, skipping")
  // are not errors and would only clutter stderr.
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  BALLISTICS_RETURN_IF_ERROR(conn->ExecScript("session setup", "SET TimeZone = 'UTC'"));
  return conn;
}

Connection::~Connection() { PQfinish(conn_); }

StatusOr<Result> Connection::Check(std::string_view what, PGresult* raw) {
  Result r(raw);
  const ExecStatusType st = raw ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  if (!raw || PQstatus(conn_) == CONNECTION_BAD) {
    return Unavailable("store: " + std::string(what) + ": connection lost: " +
                       TrimmedMessage(PQerrorMessage(conn_)));
  }
  const char* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
  const char* constraint = PQresultErrorField(raw, PG_DIAG_CONSTRAINT_NAME);
  std::string m = "store: " + std::string(what) + ": " + TrimmedMessage(PQresultErrorMessage(raw));
  m += " (SQLSTATE ";
  m += state ? state : "?????";
  if (constraint) {
    m += ", constraint ";
    m += constraint;
  }
  m += ")";
  return Status(state ? CodeForSqlState(state) : StatusCode::kInternal, std::move(m));
}

StatusOr<Result> Connection::Exec(std::string_view what, const std::string& sql, const std::vector<Param>& params,
                                  bool binary_result) {
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size());
  std::vector<int> formats(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i].null() ? nullptr : params[i].data();
    lengths[i] = params[i].length();
    formats[i] = params[i].binary() ? 1 : 0;
  }
  PGresult* r = PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr, values.data(),
                             lengths.data(), formats.data(), binary_result ? 1 : 0);
  return Check(what, r);
}

Status Connection::ExecScript(std::string_view what, const std::string& sql) {
  return Check(what, PQexec(conn_, sql.c_str())).status();
}

StatusOr<std::unique_ptr<Transaction>> Transaction::Begin(Connection& c) {
  BALLISTICS_RETURN_IF_ERROR(c.ExecScript("begin", "BEGIN"));
  return std::unique_ptr<Transaction>(new Transaction(c));
}

Transaction::~Transaction() {
  if (!done_) {
    // Best effort: if the connection is gone the server has rolled back anyway.
    PQclear(PQexec(c_.get(), "ROLLBACK"));
  }
}

Status Transaction::Commit() {
  done_ = true;
  return c_.ExecScript("commit", "COMMIT");
}

}  // namespace ballistics::store::pg
