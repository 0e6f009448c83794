// A fresh PostgreSQL database per test, created in the cluster named by
// BALLISTICS_TEST_DATABASE_URL (scripts/test.sh starts a private one) and dropped
// afterwards, so db tests can run in parallel (ctest -j). Without that variable
// the test FAILS: a db test that silently skips would hide a broken setup.
#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "test_paths.h"

namespace ballistics::testing {

// libpq connection string equal to `url` but for database `dbname`.
inline std::string WithDatabase(const std::string& url, const std::string& dbname) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (!opts) {
    std::string m = err ? err : "?";
    PQfreemem(err);
    ADD_FAILURE() << "bad BALLISTICS_TEST_DATABASE_URL: " << m;
    return "";
  }
  std::string out;
  auto quote = [](const std::string& v) {
    std::string q = "'";
    for (char ch : v) {
      if (ch == '\'' || ch == '\\') q += '\\';
      q += ch;
    }
    return q + "'";
  };
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (std::string(o->keyword) == "dbname" || !o->val) continue;
    out += std::string(o->keyword) + "=" + quote(o->val) + " ";
  }
  PQconninfoFree(opts);
  return out + "dbname=" + quote(dbname);
}

// Runs one statement and returns the first column of the first row as int64 (or -1).
inline std::int64_t QueryInt(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::int64_t v = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) v = std::strtoll(PQgetvalue(r, 0, 0), nullptr, 10);
    else ADD_FAILURE() << sql << ": " << PQerrorMessage(c);
    PQclear(r);
  } else {
    ADD_FAILURE() << "connect: " << PQerrorMessage(c);
  }
  PQfinish(c);
  return v;
}

inline bool ExecSql(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  bool ok = false;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, sql.c_str());
    ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) ADD_FAILURE() << sql << ": " << PQerrorMessage(c);
    PQclear(r);
  } else {
    ADD_FAILURE() << "connect: " << PQerrorMessage(c);
  }
  PQfinish(c);
  return ok;
}

class TestDatabase {
 public:
  // Empty url() (and a recorded failure) when no test cluster is configured.
  TestDatabase() {
    admin_ = TestDatabaseUrl();
    if (admin_.empty()) {
      ADD_FAILURE() << "BALLISTICS_TEST_DATABASE_URL is not set: db tests need the PostgreSQL that "
                       "./scripts/test.sh starts";
      return;
    }
    static std::atomic<int> counter{0};
    std::random_device rd;
    name_ = "ballistics_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(rd() % 100000);
    if (!ExecSql(admin_, "CREATE DATABASE " + name_)) {
      name_.clear();
      return;
    }
    url_ = WithDatabase(admin_, name_);
  }
  ~TestDatabase() {
    if (!name_.empty()) ExecSql(admin_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  }
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& url() const { return url_; }
  std::int64_t Count(const std::string& table) const { return QueryInt(url_, "SELECT count(*) FROM " + table); }

 private:
  std::string admin_;
  std::string name_;
  std::string url_;
};

}  // namespace ballistics::testing
