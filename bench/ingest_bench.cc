// Ingest speed on the 40 Fadul scans (docs/benchmarks.md, "Ingest").
//
//   BM_PrepareScan  read X3P + SHA-256 + normalize, no database. CPU time of the
//                   whole process (OpenCV may use helper threads), so
//                   items_per_second = scans per CPU-second = scans/s per core.
//   BM_StoreScan    Store::IngestCasing of an already prepared scan (one
//                   transaction: casing, scan, original bytes, signatures) into a
//                   fresh database. Needs BALLISTICS_DATABASE_URL (scripts/bench_ingest.sh
//                   starts a private cluster). Besides the client's CPU it reports
//                   the server backend's CPU per scan (server_cpu_ms), read from
//                   /proc/<backend pid>/stat when the server runs on this machine.
//
// Per-core ingest rate = 1 / (prepare CPU + store client CPU + server CPU) per scan.
#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ballistics/ingest.h"
#include "test_paths.h"

namespace ballistics {
namespace {

const std::vector<std::vector<std::uint8_t>>& FadulBytes() {
  static const auto files = [] {
    std::vector<std::vector<std::uint8_t>> out;
    std::vector<std::filesystem::path> paths;
    for (const auto& e : std::filesystem::directory_iterator(testing::SharedDataDir() / "fadul")) {
      if (e.path().extension() == ".x3p") paths.push_back(e.path());
    }
    std::sort(paths.begin(), paths.end());
    for (const auto& p : paths) {
      auto b = ReadFileBytes(p, 1ull << 30);
      if (b.ok()) out.push_back(std::move(*b));
    }
    return out;
  }();
  return files;
}

void BM_PrepareScan(benchmark::State& state) {
  const auto& files = FadulBytes();
  if (files.empty()) {
    state.SkipWithError("no Fadul scans found under BALLISTICS_SHARED_DATA_DIR/fadul");
    return;
  }
  std::size_t i = 0;
  for (auto _ : state) {
    auto p = ingest::PrepareScan(files[i++ % files.size()]);
    if (!p.ok()) {
      state.SkipWithError(p.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(p->normalized.breech_face.values.data);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(i));
}
BENCHMARK(BM_PrepareScan)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond)->Iterations(80);

// utime + stime of a local process in seconds, or -1 when unreadable.
double ProcessCpuSeconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = s.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  long long utime = 0, stime = 0;
  // Fields after the command name start at field 3 (state); utime/stime are 14/15.
  for (int k = 3; k <= 15 && rest >> field; ++k) {
    if (k == 14) utime = std::stoll(field);
    if (k == 15) stime = std::stoll(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// libpq key=value string equal to `url` but naming database `dbname`.
std::string WithDatabase(const std::string& url, const std::string& dbname) {
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), nullptr);
  if (!opts) return "";
  std::string out;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (std::string(o->keyword) == "dbname" || !o->val) continue;
    std::string v;
    for (char ch : std::string(o->val)) {
      if (ch == '\'' || ch == '\\') v += '\\';
      v += ch;
    }
    out += std::string(o->keyword) + "='" + v + "' ";
  }
  PQconninfoFree(opts);
  return out + "dbname='" + dbname + "'";
}

bool Exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  return ok;
}

void BM_StoreScan(benchmark::State& state) {
  const char* admin_url = std::getenv("BALLISTICS_DATABASE_URL");
  if (!admin_url || !*admin_url) {
    state.SkipWithError("BALLISTICS_DATABASE_URL is not set (scripts/bench_ingest.sh starts a cluster)");
    return;
  }
  // A database of its own, dropped at the end.
  const std::string dbname = "ballistics_bench_" + std::to_string(getpid());
  PGconn* admin = PQconnectdb(admin_url);
  if (PQstatus(admin) != CONNECTION_OK || !Exec(admin, "CREATE DATABASE " + dbname)) {
    state.SkipWithError(PQerrorMessage(admin));
    PQfinish(admin);
    return;
  }
  const std::string url = WithDatabase(admin_url, dbname);
  {
    auto store = store::Store::Connect(url);
    if (!store.ok() || !(*store)->Migrate().ok()) {
      state.SkipWithError("cannot connect to or migrate the bench database");
    } else {
      std::vector<ingest::PreparedScan> prepared;
      for (const auto& b : FadulBytes()) {
        auto p = ingest::PrepareScan(b);
        if (p.ok()) prepared.push_back(std::move(*p));
      }
      PGconn* side = PQconnectdb(url.c_str());
      // The backend serving the store's connection: the only one doing ingest work.
      int backend_pid = -1;
      {
        PGresult* r = PQexec(side, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> pg_backend_pid() AND backend_type = 'client backend'");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) backend_pid = std::atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
      }
      const double server_cpu_start = backend_pid > 0 ? ProcessCpuSeconds(backend_pid) : -1;
      CasingMetadata md;
      md.agency = "bench";
      md.case_number = "bench";
      md.calibre = "9mm Luger";
      md.submitted_by = "bench";
      std::size_t i = 0;
      double paused_server_cpu = 0;
      for (auto _ : state) {
        if (i > 0 && i % prepared.size() == 0) {
          // Every scan was stored once: empty the tables so the next round inserts again.
          state.PauseTiming();
          const double before = backend_pid > 0 ? ProcessCpuSeconds(backend_pid) : 0;
          Exec(side, "TRUNCATE signatures, scan_blobs, scans, casings, cases, agencies CASCADE");
          const double after = backend_pid > 0 ? ProcessCpuSeconds(backend_pid) : 0;
          paused_server_cpu += after - before;
          state.ResumeTiming();
        }
        const ingest::PreparedScan& p = prepared[i % prepared.size()];
        md.exhibit_id = "E" + std::to_string(i);
        auto r = ingest::StorePrepared(**store, md, p);
        if (!r.ok() || r->already_existed) {
          state.SkipWithError(r.ok() ? "unexpected already_existed" : r.status().ToString().c_str());
          break;
        }
        ++i;
      }
      state.SetItemsProcessed(static_cast<std::int64_t>(i));
      if (server_cpu_start >= 0 && i > 0) {
        const double server_cpu = ProcessCpuSeconds(backend_pid) - server_cpu_start - paused_server_cpu;
        state.counters["server_cpu_ms"] = 1000.0 * server_cpu / static_cast<double>(i);
      }
      PQfinish(side);
    }
  }
  Exec(admin, "DROP DATABASE IF EXISTS " + dbname + " WITH (FORCE)");
  PQfinish(admin);
}
BENCHMARK(BM_StoreScan)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond)->Iterations(200);

}  // namespace
}  // namespace ballistics

BENCHMARK_MAIN();
