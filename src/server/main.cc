// ballisticsd: the correlation server. Thin until the API issue lands: it
// connects to PostgreSQL, applies the schema migrations compiled into it
// (refusing to start when an applied one was changed), then waits for SIGTERM
// or SIGINT and exits cleanly.
//
// Configuration: command-line flags, or the same names in a --config file of
// `key = value` lines (CLI11's INI format, `#` comments), e.g.
//   database-url = postgresql://ballistics@db.example/ballistics
//   log-level = info
// Precedence: command line > environment (BALLISTICS_DATABASE_URL) > config file.
#include <signal.h>

#include <chrono>
#include <csignal>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "ballistics/store.h"

namespace {

struct Options {
  std::string database_url;
  std::string log_level = "info";
  int connect_timeout_s = 30;
  bool migrate = true;
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ballisticsd - ballistic imaging correlation server"};
  app.set_version_flag("--version", std::string("ballisticsd ") + BALLISTICS_VERSION);
  Options o;
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
  CLI11_PARSE(app, argc, argv);
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
  spdlog::info("ready (no network API yet); waiting for SIGTERM");

  int sig = 0;
  sigwait(&shutdown_signals, &sig);
  spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  return 0;
}
