// The search side of ballisticsd, in one of three shapes (docs/architecture.md, "Roles"):
//
//  - single process (the default): every shard in one in-process index;
//  - shard worker (--role shard): the shards of its range, served to a
//    coordinator over ShardService (shard_server.h);
//  - coordinator (--role coordinator): no index; fans each search out to the
//    workers and merges their lists (shard_coordinator.h).
//
// LocalSearchBackend holds the coarse descriptors of its shards' signatures in
// a sharded in-memory index (include/ballistics/index.h) and the signatures
// themselves for the CMC rerank. It is filled at start by one server-side
// cursor per shard (Store::LoadSearchableSignatures: values and filter fields
// in one query, descriptors computed on `threads` threads), and kept current
// by a listener: LISTEN ballistics_signatures is issued before the bulk load,
// so a signature committed by ANY process (another ballisticsd, ballisticsctl
// ingest) during or after the load is added within about a second. After a
// lost listener connection it reconnects and catches up by id.
//
// Loaded over the system connection: the index spans every agency, because a
// search is a comparison against the whole database (the way NIBIN shares
// correlation across agencies). What a caller gets back is limited to the
// agencies it may read: the service restricts the search filter to them, and
// candidate details are read under row-level security.
//
// The signatures for the rerank are held in their compact form (RerankCache:
// the correlator's 12.5 µm cell grid, int16 heights, ~1/8 of the float grid)
// within a memory budget (--rerank-cache-mb); beyond it the least recently
// used are dropped and a candidate not held is read from PostgreSQL when it
// reaches a top K (that one signature, found by casing and id in its
// partition, on a small bounded pool of connections). docs/search.md, "Rerank memory".
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "ballistics/index.h"
#include "ballistics/status.h"

namespace ballistics::service {

struct ServerConfig;

// One search's context besides the request.
struct SearchCall {
  const std::atomic<bool>* cancelled = nullptr;  // polled; true stops the search
  // The caller's deadline: a coordinator gives its workers less than this, so
  // a partial result is back in time instead of none.
  std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();
  // Out: shards whose casings are missing from the result (none answered for them).
  std::vector<int> missing_shards;
};

class SearchBackend {
 public:
  virtual ~SearchBackend() = default;

  // Single process: every shard, loaded from the database at `url` (schema
  // owner). rerank_cache_mb: MiB of compact signatures held for the rerank,
  // -1 = all of them.
  static StatusOr<std::unique_ptr<SearchBackend>> Load(const std::string& url, int threads,
                                                       std::int64_t rerank_cache_mb = -1);
  // By config.role: a coordinator over config.shard_workers, or a local backend
  // holding config.shards.
  static StatusOr<std::unique_ptr<SearchBackend>> Create(const ServerConfig& config);

  // A search; the result says which shards answered (partial when not all).
  virtual StatusOr<SearchResults> Search(const SearchRequest& request, const SearchProgress& progress,
                                         SearchCall& call) const = 0;
  StatusOr<SearchResults> Search(const SearchRequest& request, const SearchProgress& progress,
                                 const std::atomic<bool>* cancelled) const {
    SearchCall call;
    call.cancelled = cancelled;
    return Search(request, progress, call);
  }
  // Called after an upload: makes the casing searchable now rather than when
  // the listener sees it (no-op for signatures already present, or not held here).
  virtual Status AddCasing(std::int64_t casing_id) = 0;

  virtual std::int64_t size() const = 0;
  virtual std::size_t memory_bytes() const = 0;
};

class LocalSearchBackend final : public SearchBackend {
 public:
  // Loads `shards` (each in 0..store::kSignatureShards-1) from `url`; with
  // `listen`, a thread follows new ingests until destruction.
  // rerank_cache_mb: MiB of compact signatures held for the rerank (0: none,
  // every candidate read from the database; -1: all). INVALID_ARGUMENT below -1.
  static StatusOr<std::unique_ptr<LocalSearchBackend>> Load(const std::string& url, std::vector<int> shards,
                                                            int threads, bool listen = true,
                                                            std::int64_t rerank_cache_mb = -1);
  ~LocalSearchBackend() override;

  using SearchBackend::Search;
  StatusOr<SearchResults> Search(const SearchRequest& request, const SearchProgress& progress,
                                 SearchCall& call) const override;
  Status AddCasing(std::int64_t casing_id) override;
  std::int64_t size() const override { return index_->Size(); }
  // Coarse index + the signatures kept for the rerank.
  std::size_t memory_bytes() const override;
  std::size_t signature_bytes() const;
  // The rerank's signature cache (held, hits, misses, evictions).
  const RerankCache& rerank_cache() const { return *source_; }

  const std::vector<int>& shards() const { return shards_; }
  bool holds(int shard) const { return shard_set_.count(shard) > 0; }
  const SearchEngine& engine() const { return *engine_; }
  // Notifications handled by the listener so far (tests, metrics).
  std::int64_t notifications_seen() const { return notifications_.load(); }

 private:
  class FetchPool;
  LocalSearchBackend() = default;
  StatusOr<Signature> Fetch(std::int64_t signature_id) const;
  void Listen();
  Status CatchUp();

  std::string url_;
  std::vector<int> shards_;
  std::set<int> shard_set_;
  int threads_ = 1;
  std::mutex add_mu_;
  std::shared_ptr<SignatureIndex> index_;
  std::unique_ptr<FetchPool> fetch_pool_;
  std::shared_ptr<RerankCache> source_;
  std::unique_ptr<SearchEngine> engine_;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> notifications_{0};
  std::thread listener_;
  class ListenConnection;
  std::unique_ptr<ListenConnection> listen_conn_;
};

// Prometheus lines of a search backend (its /metrics share, single and shard
// roles; a coordinator's are its workers' sums): ballistics_index_signatures,
// ballistics_index_bytes and, where an index is held here, the rerank cache
// (ballistics_rerank_cache_bytes, _entries, _hits_total, _misses_total,
// _evictions_total).
std::string SearchIndexMetrics(const SearchBackend& backend);

// "0-7", "0-3,8,10-11" -> sorted unique shard numbers; INVALID_ARGUMENT naming
// the bad piece (out of 0..store::kSignatureShards-1, reversed, not a number).
StatusOr<std::vector<int>> ParseShardRanges(const std::string& ranges);

}  // namespace ballistics::service
