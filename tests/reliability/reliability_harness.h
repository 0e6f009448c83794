// Helpers of the fault, security and load tests: a private PostgreSQL cluster
// that a test may stop and start (the shared test cluster must not be
// restarted under the other tests), distinct upload bytes, and the integrity
// checks every scenario ends with. Everything listens on 127.0.0.1 only.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "ballistics/v1/search.grpc.pb.h"
#include "service/api_server.h"
#include "store/test_database.h"

namespace ballistics::testing {

// First column of the first row as text ("" and a recorded failure otherwise).
inline std::string QueryString(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::string v;
  PGresult* r = PQexec(c, sql.c_str());
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) v = PQgetvalue(r, 0, 0);
  else ADD_FAILURE() << sql << ": " << PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  return v;
}

inline std::string PgBin() {
  const char* e = std::getenv("BALLISTICS_PG_BIN");
  return e && *e ? e : "/usr/lib/postgresql/15/bin";
}

// Runs a shell command as the PostgreSQL owner (postgres when we are root:
// initdb refuses root). Returns the exit status.
inline int AsPgOwner(const std::string& cmd) {
  const std::string full = getuid() == 0 ? "runuser -u postgres -- " + cmd : cmd;
  return std::system((full + " >/dev/null 2>&1").c_str());
}

inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t n = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  close(fd);
  return ntohs(a.sin_port);
}

// A throw-away PostgreSQL cluster in /tmp on a free 127.0.0.1 port, with a
// database "ballistics". Stop()/Start() restart it under a running ballisticsd.
class PrivateCluster {
 public:
  PrivateCluster() {
    dir_ = std::filesystem::temp_directory_path() / ("ballistics_fault_pg_" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    if (getuid() == 0) std::system(("chown postgres:postgres " + dir_.string()).c_str());
    port_ = FreePort();
    if (AsPgOwner(PgBin() + "/initdb -D " + (dir_ / "data").string() +
                  " -U postgres --auth=trust -E UTF8 --locale=C.UTF-8") != 0) {
      ADD_FAILURE() << "initdb failed in " << dir_;
      return;
    }
    if (!Start()) return;
    ok_ = ExecSql(url("postgres"), "CREATE DATABASE ballistics");
  }
  ~PrivateCluster() {
    AsPgOwner(PgBin() + "/pg_ctl -D " + (dir_ / "data").string() + " -m immediate -w stop");
    std::filesystem::remove_all(dir_);
  }

  bool ok() const { return ok_; }
  std::string url(const std::string& db = "ballistics") const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + db;
  }
  // Fast shutdown: open transactions are rolled back, backends terminated.
  bool Stop(const std::string& mode = "fast") {
    return AsPgOwner(PgBin() + "/pg_ctl -D " + (dir_ / "data").string() + " -m " + mode + " -w -t 60 stop") == 0;
  }
  bool Start() {
    const std::string opts = "-p " + std::to_string(port_) + " -c listen_addresses=127.0.0.1 -c unix_socket_directories=" +
                             dir_.string() + " -c fsync=off -c max_connections=200";
    const bool ok = AsPgOwner(PgBin() + "/pg_ctl -D " + (dir_ / "data").string() + " -l " +
                              (dir_ / "postgres.log").string() + " -w -t 60 -o '" + opts + "' start") == 0;
    EXPECT_TRUE(ok) << "pg_ctl start failed; log in " << dir_ / "postgres.log";
    return ok;
  }

 private:
  std::filesystem::path dir_;
  int port_ = 0;
  bool ok_ = false;
};

// The X3P file with a different zip archive comment: same scan, different
// bytes (and SHA-256), so each copy is a new casing.
inline std::vector<std::uint8_t> Variant(std::vector<std::uint8_t> zip, const std::string& comment) {
  // End of central directory record: signature 0x06054b50, comment length at +20.
  for (std::size_t i = zip.size() >= 22 ? zip.size() - 22 : 0; i + 22 <= zip.size(); --i) {
    if (zip[i] == 0x50 && zip[i + 1] == 0x4b && zip[i + 2] == 0x05 && zip[i + 3] == 0x06) {
      zip.resize(i + 22);
      zip[i + 20] = static_cast<std::uint8_t>(comment.size() & 0xff);
      zip[i + 21] = static_cast<std::uint8_t>(comment.size() >> 8);
      zip.insert(zip.end(), comment.begin(), comment.end());
      return zip;
    }
    if (i == 0) break;
  }
  ADD_FAILURE() << "no zip end-of-central-directory record";
  return zip;
}

// Casings missing any part of what one ingest writes in one transaction:
// scan, original bytes, at least one signature. Must always be 0.
inline std::int64_t HalfWrittenCasings(const std::string& url) {
  return QueryInt(url,
                  "SELECT count(*) FROM casings c WHERE NOT EXISTS (SELECT 1 FROM scans s JOIN scan_blobs b ON "
                  "b.scan_id = s.id WHERE s.casing_id = c.id) OR NOT EXISTS (SELECT 1 FROM signatures g WHERE "
                  "g.casing_id = c.id)");
}

struct SearchOutcome {
  grpc::Status status;
  v1::SearchResult result;
};

inline SearchOutcome RunSearch(const std::shared_ptr<grpc::Channel>& ch, const std::string& token,
                               std::int64_t casing_id, int seconds = 120) {
  auto stub = v1::SearchService::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  v1::SearchRequest req;
  req.set_casing_id(casing_id);
  req.set_top_n(10);
  auto reader = stub->Search(&ctx, req);
  SearchOutcome out;
  v1::SearchUpdate u;
  while (reader->Read(&u)) {
    if (u.has_result()) out.result = u.result();
  }
  out.status = reader->Finish();
  return out;
}

inline bool Retryable(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::ABORTED ||
         c == grpc::StatusCode::RESOURCE_EXHAUSTED || c == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace ballistics::testing
