// The gRPC server of ballisticsd: services, authentication, audit, metrics.
// ballisticsd's main() parses its config into a ServerConfig, starts a Server
// and calls Shutdown() on SIGTERM; everything else lives here.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ballistics/status.h"

namespace ballistics::service {

struct ServerConfig {
  // host:port to listen on. Loopback by default: exposing the API is a decision.
  // Port 0 picks a free port (see Server::port()).
  std::string listen = "127.0.0.1:50051";
  // PostgreSQL URL of the schema owner (the "system" connection); evidence is
  // read and written as the non-superuser role ballistics_app under row-level
  // security (db/migrations/0010_api_security.sql).
  std::string database_url;
  // TLS: PEM certificate chain and private key. Required unless `insecure`.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Plaintext gRPC: only for loopback tests and the local demo.
  bool insecure = false;
  // host:port of the Prometheus text endpoint (GET /metrics); "" = off. Port 0 picks one.
  std::string metrics_listen;
  // Largest accepted upload (whole file), bytes.
  std::uint64_t max_upload_bytes = 512ull << 20;
  // Searches that may run at once; more wait in the queue (metric ballistics_search_queue_depth).
  int max_concurrent_searches = 2;
  // Searches that may wait for a slot; one more is refused with RESOURCE_EXHAUSTED.
  int max_queued_searches = 8;
  // Uploads in flight at once (each buffers its file); one more is refused with RESOURCE_EXHAUSTED.
  int max_concurrent_uploads = 8;
  // An upload stream that sends no message for this long, or stays open longer
  // than upload_timeout_s, is cancelled (slow-loris guard).
  int upload_idle_timeout_ms = 30000;
  int upload_timeout_s = 600;
  // Largest gRPC message accepted (upload chunks are at most 1 MiB); larger ones
  // are refused by gRPC with RESOURCE_EXHAUSTED.
  int max_message_bytes = 4 << 20;
  // Threads of the coarse scan and of the CMC rerank of one search.
  int search_threads = 2;
  // MiB of compact signatures held for the rerank (-1: all; beyond the budget
  // candidates are read from PostgreSQL; docs/search.md, "Rerank memory").
  std::int64_t rerank_cache_mb = -1;
  // Open PostgreSQL connections at most: ApiDb ones (authentication, audit,
  // admin, scoped searches and decisions) and store ones (evidence). A call
  // that finds them all busy waits db_pool_wait_ms, then gets RESOURCE_EXHAUSTED.
  int db_pool_size = 32;
  int store_pool_size = 16;
  int db_pool_wait_ms = 5000;
  // Every this many seconds the audit head (seq and hash) is logged and exposed
  // as the metric ballistics_audit_head_seq{hash="..."}, so that a copy exists
  // outside the database (anchor for `ballisticsctl audit verify --expect-head`); 0 = off.
  int audit_anchor_interval_s = 60;

  // Search topology (docs/operations.md, "Several machines"): "single" (every
  // shard in this process), "coordinator" (fans searches out to shard_workers).
  // A shard worker does not run this server (shard_server.h).
  std::string role = "single";
  // Coordinator: host:port of each shard worker.
  std::vector<std::string> shard_workers;
  // Coordinator: longest wait for a worker's answer (also bounded by the client's deadline).
  int shard_timeout_ms = 60000;
  // Coordinator: PEM roots that worker certificates must chain to; empty =
  // the coordinator's own tls_cert_file (one self-signed pair shared by all).
  // Plaintext to the workers only with `insecure`.
  std::string shard_ca_file;
};

class Server {
 public:
  // Builds the services and starts listening. INVALID_ARGUMENT for a bad
  // config (no TLS files and not insecure, unreadable files), UNAVAILABLE when
  // the address cannot be bound or the database is unreachable.
  static StatusOr<std::unique_ptr<Server>> Start(const ServerConfig& config);
  ~Server();

  int port() const;          // the bound gRPC port
  int metrics_port() const;  // the bound metrics port, 0 when off

  // Stops accepting calls, lets running calls finish until the deadline, then
  // cancels the rest (a cancelled search stops using CPU). Idempotent.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(10));

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ballistics::service
