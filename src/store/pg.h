// Thin RAII wrappers over libpq, private to the store stage. Parameterized
// queries only (PQexecParams); bytea parameters go in binary, everything else as
// text. Errors become Status with the SQLSTATE and constraint name kept.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballistics/status.h"

namespace ballistics::store::pg {

// One query parameter: NULL, text, or binary bytes (bytea).
class Param {
 public:
  static Param Null() { return Param(); }
  static Param Text(std::string s) { Param p; p.null_ = false; p.text_ = std::move(s); return p; }
  static Param Int(std::int64_t v) { return Text(std::to_string(v)); }
  // Shortest representation that reads back to the same double (std::to_chars).
  static Param Double(double v);
  // Bytes are referenced, not copied: they must outlive the query.
  static Param Bytes(std::span<const std::uint8_t> b) {
    Param p; p.null_ = false; p.binary_ = true; p.bytes_ = b; return p;
  }
  template <typename T>
  static Param Optional(const std::optional<T>& v);

  bool null() const { return null_; }
  bool binary() const { return binary_; }
  const char* data() const {
    return binary_ ? reinterpret_cast<const char*>(bytes_.data()) : text_.c_str();
  }
  int length() const { return binary_ ? static_cast<int>(bytes_.size()) : static_cast<int>(text_.size()); }

 private:
  Param() = default;
  bool null_ = true;
  bool binary_ = false;
  std::string text_;
  std::span<const std::uint8_t> bytes_;
};

template <typename T>
Param Param::Optional(const std::optional<T>& v) {
  if (!v) return Null();
  if constexpr (std::is_same_v<T, std::string>) return Text(*v);
  else return Int(*v);
}

// Owns a PGresult. Column accessors accept both text and binary result formats.
class Result {
 public:
  Result() = default;
  explicit Result(PGresult* r) : r_(r, &PQclear) {}

  int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::int64_t Int64(int row, int col) const;
  int Int32(int row, int col) const { return static_cast<int>(Int64(row, col)); }
  double Double(int row, int col) const;
  bool Bool(int row, int col) const;
  std::string Text(int row, int col) const;
  // bytea: raw bytes (binary results) or unescaped hex (text results).
  std::vector<std::uint8_t> Bytes(int row, int col) const;
  // Raw view into the result (binary bytea / text); valid while the Result lives.
  std::span<const std::uint8_t> RawBytes(int row, int col) const;
  int Column(const char* name) const { return PQfnumber(r_.get(), name); }
  PGresult* get() const { return r_.get(); }

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> r_{nullptr, &PQclear};
};

class Connection {
 public:
  // Unreachable server / bad URL -> UNAVAILABLE / INVALID_ARGUMENT.
  static StatusOr<std::unique_ptr<Connection>> Open(const std::string& url);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // `what` names the operation in error messages ("insert casing").
  StatusOr<Result> Exec(std::string_view what, const std::string& sql, const std::vector<Param>& params = {},
                        bool binary_result = false);
  // Simple-query protocol, several statements allowed, no parameters (migrations,
  // BEGIN/COMMIT).
  Status ExecScript(std::string_view what, const std::string& sql);

  PGconn* get() const { return conn_; }
  // Connected and outside any transaction: a pool may hand it to the next caller.
  bool Idle() const { return PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) == PQTRANS_IDLE; }

 private:
  explicit Connection(PGconn* c) : conn_(c) {}
  StatusOr<Result> Check(std::string_view what, PGresult* r);
  PGconn* conn_;
};

// Rolls back unless Commit() succeeded: every error path leaves nothing written.
class Transaction {
 public:
  static StatusOr<std::unique_ptr<Transaction>> Begin(Connection& c);
  ~Transaction();
  Status Commit();

 private:
  explicit Transaction(Connection& c) : c_(c) {}
  Connection& c_;
  bool done_ = false;
};

// SQLSTATE -> canonical code (class 08, shutdowns and read-only -> UNAVAILABLE, 23505 ->
// ALREADY_EXISTS, other integrity violations -> INVALID_ARGUMENT/FAILED_PRECONDITION).
StatusCode CodeForSqlState(std::string_view sqlstate);

// SQL for a timestamptz expression as the store's ISO 8601 UTC text,
// "2024-05-01T10:00:00Z" (whole seconds), whatever the session's TimeZone.
inline std::string IsoUtc(const std::string& expr) {
  return "to_char(" + expr + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";
}

}  // namespace ballistics::store::pg
