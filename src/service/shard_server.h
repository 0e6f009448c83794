// A shard worker (`ballisticsd --role shard`): holds the shards of its range
// in memory (LocalSearchBackend: bulk load, then LISTEN for new ingests) and
// serves ShardService (proto/ballistics/v1/shard.proto) to the coordinator.
// It serves nothing else: no client API, no tokens; who may call it is decided
// by TLS (docs/operations.md, "Several machines").
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "ballistics/status.h"

namespace ballistics::service {

struct ShardServerConfig {
  std::string listen = "127.0.0.1:50061";  // port 0: any free port
  std::string database_url;                // read-only use: bulk load and LISTEN
  std::vector<int> shards;                 // the shards held (ParseShardRanges)
  // TLS as ballisticsd's: this worker's certificate and key; callers must
  // present a client certificate chaining to ca_file (empty = tls_cert_file).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string ca_file;
  bool insecure = false;
  int search_threads = 2;          // coarse scan and rerank threads of one search
  std::int64_t rerank_cache_mb = -1;  // compact rerank signatures held, MiB (-1: all)
  int max_concurrent_searches = 2;  // more wait (the coordinator's deadline bounds the wait)
  // host:port of the Prometheus text endpoint (GET /metrics); "" = off. Port 0 picks one.
  std::string metrics_listen;
};

class ShardServer {
 public:
  // Loads the shards, then listens. INVALID_ARGUMENT for a bad config,
  // UNAVAILABLE when the database or the address is not reachable.
  static StatusOr<std::unique_ptr<ShardServer>> Start(const ShardServerConfig& config);
  ~ShardServer();
  int port() const;
  int metrics_port() const;  // the bound metrics port, 0 when off
  // Stops accepting calls; running ones get `grace`, then are cancelled.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(10));

  class Impl;

 private:
  explicit ShardServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ballistics::service
