// ballisticsd: the correlation server. Connects to PostgreSQL, applies the
// schema migrations compiled into it (refusing to start when an applied one was
// changed), serves the gRPC API (src/service/, TLS unless --insecure) until
// SIGTERM or SIGINT, then shuts down gracefully.
//
// Configuration: command-line flags, or the same names in a --config file of
// `key = value` lines (CLI11's INI format, `#` comments), e.g.
//   database-url = postgresql://ballistics@db.example/ballistics
//   log-level = info
//   listen = 0.0.0.0:50051
//   tls-cert = /etc/ballistics/server.crt
//   tls-key = /etc/ballistics/server.key
//   metrics-listen = 127.0.0.1:9464
// Roles (docs/operations.md, "Several machines"): single (default: one process
// holds every shard), shard (a worker: `shards = 0-7`, serves only the
// internal ShardService), coordinator (`shard-workers = host1:50061,host2:50061`:
// the client API, searches fanned out to the workers).
// Precedence: command line > environment (BALLISTICS_DATABASE_URL) > config file.
#include <signal.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "ballistics/store.h"
#include "search_backend.h"
#include "server.h"
#include "shard_server.h"

namespace {

struct Options {
  std::string database_url;
  std::string log_level = "info";
  int connect_timeout_s = 30;
  bool migrate = true;
  ballistics::service::ServerConfig server;
  std::string port_file;
  int max_upload_mb = 512;
  int shutdown_grace_s = 10;
  std::string role = "single";
  std::string shards;         // shard role: ranges, "0-7"
  std::string shard_workers;  // coordinator: "host:port,host:port"
};

// The database may still be starting (container orchestration, boot order):
// retry UNAVAILABLE with a capped exponential backoff until the deadline.
ballistics::StatusOr<std::unique_ptr<ballistics::store::Store>> ConnectWithRetry(const Options& o) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.connect_timeout_s);
  auto delay = std::chrono::milliseconds(250);
  for (;;) {
    auto s = ballistics::store::Store::Connect(o.database_url);
    if (s.ok() || s.status().code() != ballistics::StatusCode::kUnavailable ||
        std::chrono::steady_clock::now() + delay > deadline) {
      return s;
    }
    spdlog::warn("{}; retrying in {} ms", s.status().ToString(), delay.count());
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(4000));
  }
}

void WritePortFile(const std::string& path, int port, int metrics_port) {
  if (path.empty()) return;
  // Written to a temporary name and renamed, so a reader never sees half a file.
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << port << " " << metrics_port << "\n";
  std::rename(tmp.c_str(), path.c_str());
}

// --role shard: load the shards, serve ShardService until SIGTERM.
int RunShardWorker(const Options& o, sigset_t& shutdown_signals) {
  auto shards = ballistics::service::ParseShardRanges(o.shards);
  if (!shards.ok()) {
    spdlog::error("role shard: {}", shards.status().ToString());
    return 2;
  }
  ballistics::service::ShardServerConfig c;
  c.listen = o.server.listen;
  c.database_url = o.database_url;
  c.shards = *shards;
  c.tls_cert_file = o.server.tls_cert_file;
  c.tls_key_file = o.server.tls_key_file;
  c.ca_file = o.server.shard_ca_file;
  c.insecure = o.server.insecure;
  c.search_threads = o.server.search_threads;
  c.rerank_cache_mb = o.server.rerank_cache_mb;
  c.max_concurrent_searches = o.server.max_concurrent_searches;
  c.metrics_listen = o.server.metrics_listen;
  auto server = ballistics::service::ShardServer::Start(c);
  if (!server.ok()) {
    spdlog::error("cannot start the shard worker: {}", server.status().ToString());
    return 1;
  }
  WritePortFile(o.port_file, (*server)->port(), (*server)->metrics_port());
  spdlog::info("ready; waiting for SIGTERM");
  int sig = 0;
  sigwait(&shutdown_signals, &sig);
  spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown(std::chrono::seconds(o.shutdown_grace_s));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ballisticsd - ballistic imaging correlation server"};
  app.set_version_flag("--version", std::string("ballisticsd ") + BALLISTICS_VERSION);
  Options o;
  // A number within [lo, hi], its default shown in --help.
  auto ranged = [&app](const char* name, auto& value, const char* help, auto lo, auto hi) {
    app.add_option(name, value, help)->check(CLI::Range(lo, hi))->capture_default_str();
  };
  app.set_config("--config", "", "Config file of key = value lines (same names as the flags)");
  app.add_option("--database-url", o.database_url, "PostgreSQL URL")->envname("BALLISTICS_DATABASE_URL");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--connect-timeout-s", o.connect_timeout_s, "Keep retrying an unreachable database this long")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("!--no-migrate", o.migrate,
               "Do not apply migrations; only check that the schema is current (for read-only replicas)");
  app.add_option("--listen", o.server.listen, "gRPC address host:port (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--tls-cert", o.server.tls_cert_file, "TLS certificate chain (PEM)");
  app.add_option("--tls-key", o.server.tls_key_file, "TLS private key (PEM)");
  app.add_flag("--insecure", o.server.insecure, "Plaintext gRPC (loopback tests and the local demo only)");
  app.add_option("--metrics-listen", o.server.metrics_listen,
                 "Prometheus endpoint host:port (GET /metrics); empty = off");
  app.add_option("--port-file", o.port_file,
                 "Write the bound gRPC port (and metrics port) here once serving (for tests and scripts)");
  ranged("--max-upload-mb", o.max_upload_mb, "Largest accepted upload, MiB", 1, 1 << 16);
  ranged("--max-concurrent-searches", o.server.max_concurrent_searches, "Searches run at once", 1, 256);
  // Back-pressure and robustness limits (docs/reliability.md).
  ranged("--max-queued-searches", o.server.max_queued_searches,
         "Searches that may wait for a slot; more get RESOURCE_EXHAUSTED", 0, 4096);
  ranged("--max-concurrent-uploads", o.server.max_concurrent_uploads,
         "Uploads in flight at once; more get RESOURCE_EXHAUSTED", 1, 4096);
  ranged("--upload-idle-timeout-ms", o.server.upload_idle_timeout_ms,
         "Cancel an upload stream that sends nothing this long", 100, 3600000);
  ranged("--upload-timeout-s", o.server.upload_timeout_s, "Cancel an upload stream open this long", 1, 86400);
  ranged("--db-pool-size", o.server.db_pool_size, "Open API PostgreSQL connections at most", 2, 1000);
  ranged("--store-pool-size", o.server.store_pool_size, "Open evidence PostgreSQL connections at most", 1, 1000);
  ranged("--db-pool-wait-ms", o.server.db_pool_wait_ms,
         "Wait this long for a free connection, then RESOURCE_EXHAUSTED", 0, 600000);
  ranged("--audit-anchor-interval-s", o.server.audit_anchor_interval_s,
         "Log and publish the audit head this often (0 = off)", 0, 86400);
  app.add_option("--shutdown-grace-s", o.shutdown_grace_s, "Seconds running calls get to finish on SIGTERM")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--role", o.role, "single (all shards in this process), shard (a worker), coordinator")
      ->check(CLI::IsMember({"single", "shard", "coordinator"}))
      ->capture_default_str();
  app.add_option("--shards", o.shards, "Shard role: the shards held, e.g. 0-7 or 0-3,8");
  app.add_option("--shard-workers", o.shard_workers, "Coordinator: shard worker addresses, host:port,host:port");
  ranged("--shard-timeout-ms", o.server.shard_timeout_ms,
         "Coordinator: longest wait for a worker (a late one makes the result partial)", 1, 3600000);
  ranged("--rerank-cache-mb", o.server.rerank_cache_mb,
         "Single or shard role: MiB of compact signatures held for the CMC rerank; beyond it candidates "
         "are read from PostgreSQL (-1 = hold all, 0 = none)",
         std::int64_t{-1}, std::int64_t{1} << 30);
  app.add_option("--shard-ca", o.server.shard_ca_file,
                 "PEM roots the other side's certificate must chain to (coordinator <-> workers, mutual TLS); "
                 "default: tls-cert");

  CLI11_PARSE(app, argc, argv);
  o.server.database_url = o.database_url;
  o.server.max_upload_bytes = static_cast<std::uint64_t>(o.max_upload_mb) << 20;
  spdlog::set_level(spdlog::level::from_str(o.log_level));

  if (o.database_url.empty()) {
    spdlog::error("no database: pass --database-url, set BALLISTICS_DATABASE_URL or use --config");
    return 2;
  }
  // Block the shutdown signals before any thread exists so that every thread
  // inherits the mask and sigwait below is the only place they arrive.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGTERM);
  sigaddset(&shutdown_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);

  spdlog::info("ballisticsd {} starting", BALLISTICS_VERSION);
  auto store = ConnectWithRetry(o);
  if (!store.ok()) {
    spdlog::error("{}", store.status().ToString());
    return 1;
  }
  if (o.migrate) {
    auto report = (*store)->Migrate();
    if (!report.ok()) {
      spdlog::error("refusing to start: {}", report.status().ToString());
      return 1;
    }
    spdlog::info("database schema version {} ({} migration(s) applied now)", report->schema_version,
                 report->applied_now.size());
  } else {
    ballistics::Status check = (*store)->CheckMigrations();
    if (!check.ok()) {
      spdlog::error("refusing to start: {}", check.ToString());
      return 1;
    }
  }
  auto counts = (*store)->Counts();
  if (counts.ok()) {
    spdlog::info("{} casings, {} signatures stored", counts->casings, counts->signatures);
  }
  store->reset();  // the service opens its own connections

  if (o.role == "shard") return RunShardWorker(o, shutdown_signals);
  o.server.role = o.role;
  if (o.role == "coordinator") {
    std::stringstream list(o.shard_workers);
    for (std::string a; std::getline(list, a, ',');) {
      a.erase(0, a.find_first_not_of(" \t"));
      a.erase(a.find_last_not_of(" \t") + 1);
      if (!a.empty()) o.server.shard_workers.push_back(a);
    }
    if (o.server.shard_workers.empty()) {
      spdlog::error("role coordinator: give shard-workers (host:port,host:port)");
      return 2;
    }
  }

  auto server = ballistics::service::Server::Start(o.server);
  if (!server.ok()) {
    spdlog::error("cannot start the API: {}", server.status().ToString());
    return 1;
  }
  WritePortFile(o.port_file, (*server)->port(), (*server)->metrics_port());
  spdlog::info("ready; waiting for SIGTERM");

  int sig = 0;
  sigwait(&shutdown_signals, &sig);
  spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown(std::chrono::seconds(o.shutdown_grace_s));
  return 0;
}
