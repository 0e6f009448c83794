// The in-process search index of ballisticsd: every stored signature's coarse
// descriptor in a sharded in-memory index (include/ballistics/index.h), built
// from PostgreSQL at start and extended after each upload, and the signatures
// themselves for the CMC rerank.
//
// Loaded over the system connection: the index spans every agency, because a
// search is a comparison against the whole database (the way NIBIN shares
// correlation across agencies). What a caller gets back is limited to the
// agencies it may read: the service restricts the search filter to them, and
// candidate details are read under row-level security.
//
// Known limit: the full signatures are held in memory (fine for thousands of
// casings, not millions); a store-backed SignatureSource with a cache is next.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "ballistics/index.h"
#include "ballistics/status.h"

namespace ballistics::service {

class SearchBackend {
 public:
  // Loads everything from the database at `url` (schema owner).
  static StatusOr<std::unique_ptr<SearchBackend>> Load(const std::string& url, int threads);

  // Adds a newly stored casing's signatures (no-op for those already present).
  Status AddCasing(std::int64_t casing_id);

  const SearchEngine& engine() const { return *engine_; }
  std::int64_t size() const { return index_->Size(); }
  std::size_t memory_bytes() const { return index_->MemoryBytes(); }

 private:
  class MemorySource;
  SearchBackend() = default;
  std::string url_;
  std::mutex add_mu_;
  std::shared_ptr<SignatureIndex> index_;
  std::shared_ptr<MemorySource> source_;
  std::unique_ptr<SearchEngine> engine_;
};

}  // namespace ballistics::service
