#include "search_backend.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "ballistics/parallel.h"
#include "ballistics/store.h"
#include "context.h"
#include "metrics.h"
#include "server.h"
#include "shard_coordinator.h"

namespace ballistics::service {

// Connections for reading rerank candidates that are not held (bounded: the
// rerank threads of the searches running at once).
class LocalSearchBackend::FetchPool {
 public:
  FetchPool(const std::string& url, int capacity)
      : pool(url, capacity, std::chrono::milliseconds(10000),
             [](const std::string& u) { return store::Store::Connect(u); }) {}
  StorePool pool;
};

namespace {

// "2024-05-01" or "2024-05-01T10:00:00Z" (as the store returns it, UTC) -> unix seconds.
std::int64_t ParseIsoUtc(const std::optional<std::string>& s) {
  if (!s) return kUnknownTime;
  std::tm tm{};
  int n = std::sscanf(s->c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                      &tm.tm_min, &tm.tm_sec);
  if (n < 3) return kUnknownTime;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(timegm(&tm));
}

SignatureRecord RecordFor(const store::SearchableSignature& s) {
  SignatureRecord r;
  r.signature_id = s.stored.id;
  r.casing_id = s.stored.casing_id;
  r.kind = s.stored.signature.kind;
  r.modality = s.stored.signature.modality;
  r.calibre = s.calibre;
  r.agency = s.agency;
  r.source = s.source;
  r.captured_at_unix = ParseIsoUtc(s.captured_at);
  r.shard = s.stored.shard;
  return r;
}

// Descriptors of a batch on up to `threads` threads (the bulk load is bound by
// this arithmetic, not by the cursor).
std::vector<StatusOr<CoarseDescriptor>> Descriptors(const std::vector<store::SearchableSignature>& batch,
                                                    int threads) {
  std::vector<StatusOr<CoarseDescriptor>> out(batch.size(), Internal("not computed"));
  ParallelFor(batch.size(), threads, [&](std::size_t i) { out[i] = ComputeDescriptor(batch[i].stored.signature); });
  return out;
}

}  // namespace

std::string SearchIndexMetrics(const SearchBackend& b) {
  std::string out =
      MetricGauge("ballistics_index_signatures", "Signatures in the search index.", "", static_cast<double>(b.size())) +
      MetricGauge("ballistics_index_bytes",
                  "Memory held by the search index: coarse descriptors and compact rerank signatures.", "",
                  static_cast<double>(b.memory_bytes()));
  const auto* local = dynamic_cast<const LocalSearchBackend*>(&b);
  if (local == nullptr) return out;  // a coordinator holds no rerank cache
  const RerankCache& c = local->rerank_cache();
  return out +
         MetricGauge("ballistics_rerank_cache_bytes",
                     "Bytes of compact signatures held for the rerank and of screen forms held for the screen.", "",
                     static_cast<double>(c.bytes())) +
         MetricGauge("ballistics_screen_forms_bytes", "Bytes of screen forms (the share of the rerank cache bytes).",
                     "", static_cast<double>(c.screen_bytes())) +
         MetricGauge("ballistics_rerank_cache_entries", "Signatures held for the rerank.", "",
                     static_cast<double>(c.held())) +
         MetricCounter("ballistics_rerank_cache_hits_total", "Rerank candidates found held.", c.hits()) +
         MetricCounter("ballistics_rerank_cache_misses_total", "Rerank candidates read from PostgreSQL (not held).",
                       c.misses()) +
         MetricCounter("ballistics_rerank_cache_evictions_total", "Signatures dropped from the rerank cache (budget).",
                       c.evictions());
}

StatusOr<std::vector<int>> ParseShardRanges(const std::string& ranges) {
  std::set<int> out;
  std::size_t start = 0;
  auto number = [](const std::string& t, const std::string& piece) -> StatusOr<int> {
    if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos || t.size() > 4) {
      return InvalidArgument("shard range '" + piece + "': '" + t + "' is not a shard number");
    }
    const int v = std::stoi(t);
    if (v >= store::kSignatureShards) {
      return InvalidArgument("shard range '" + piece + "': shard " + t + " is not in 0.." +
                             std::to_string(store::kSignatureShards - 1));
    }
    return v;
  };
  while (start <= ranges.size()) {
    std::size_t comma = ranges.find(',', start);
    if (comma == std::string::npos) comma = ranges.size();
    std::string piece = ranges.substr(start, comma - start);
    piece.erase(0, piece.find_first_not_of(" \t"));
    piece.erase(piece.find_last_not_of(" \t") + 1);
    const std::size_t dash = piece.find('-');
    if (dash == std::string::npos) {
      BALLISTICS_ASSIGN_OR_RETURN(int v, number(piece, piece));
      out.insert(v);
    } else {
      BALLISTICS_ASSIGN_OR_RETURN(int a, number(piece.substr(0, dash), piece));
      BALLISTICS_ASSIGN_OR_RETURN(int b, number(piece.substr(dash + 1), piece));
      if (b < a) return InvalidArgument("shard range '" + piece + "' is reversed");
      for (int v = a; v <= b; ++v) out.insert(v);
    }
    start = comma + 1;
  }
  return std::vector<int>(out.begin(), out.end());
}

StatusOr<std::unique_ptr<SearchBackend>> SearchBackend::Load(const std::string& url, int threads,
                                                             std::int64_t rerank_cache_mb) {
  std::vector<int> all;
  for (int i = 0; i < store::kSignatureShards; ++i) all.push_back(i);
  BALLISTICS_ASSIGN_OR_RETURN(auto b, LocalSearchBackend::Load(url, std::move(all), threads, true, rerank_cache_mb));
  return std::unique_ptr<SearchBackend>(std::move(b));
}

StatusOr<std::unique_ptr<SearchBackend>> SearchBackend::Create(const ServerConfig& config) {
  if (config.role == "coordinator") return MakeShardCoordinator(config);
  if (config.role != "single") {
    return InvalidArgument("search role '" + config.role + "' is not single or coordinator");
  }
  return Load(config.database_url, config.search_threads, config.rerank_cache_mb);
}

class LocalSearchBackend::ListenConnection {
 public:
  std::unique_ptr<store::Store> store;
};

StatusOr<std::unique_ptr<LocalSearchBackend>> LocalSearchBackend::Load(const std::string& url, std::vector<int> shards,
                                                                      int threads, bool listen,
                                                                      std::int64_t rerank_cache_mb) {
  if (shards.empty()) return InvalidArgument("search backend: no shards to hold");
  if (rerank_cache_mb < -1 || rerank_cache_mb > (std::int64_t{1} << 40)) {
    return InvalidArgument("search backend: rerank_cache_mb=" + std::to_string(rerank_cache_mb) +
                           " must be -1 (hold all), 0 (hold none) or a size in MiB");
  }
  std::unique_ptr<LocalSearchBackend> b(new LocalSearchBackend());
  b->url_ = url;
  b->shards_ = std::move(shards);
  b->shard_set_ = std::set<int>(b->shards_.begin(), b->shards_.end());
  b->threads_ = std::max(1, threads);
  b->index_ = MakeShardedIndex(store::kSignatureShards, b->threads_);
  SearchEngineConfig config;
  config.rerank_threads = b->threads_;
  RerankCacheConfig cache = RerankCacheConfigFor(config);
  if (rerank_cache_mb >= 0) cache.budget_bytes = static_cast<std::size_t>(rerank_cache_mb) << 20;
  // Two searches at once (the server's default) with their rerank threads.
  b->fetch_pool_ = std::make_unique<FetchPool>(url, 2 * b->threads_);
  b->source_ = std::make_shared<RerankCache>(cache, [p = b.get()](std::int64_t id) { return p->Fetch(id); });
  BALLISTICS_ASSIGN_OR_RETURN(b->engine_, SearchEngine::Create(b->index_, b->source_, config));

  // LISTEN first: a signature committed while the shards are being read is
  // then either in the snapshot or in the notification queue (AddCasing skips
  // the ones already present), never in neither.
  b->listen_conn_ = std::make_unique<ListenConnection>();
  if (listen) {
    BALLISTICS_ASSIGN_OR_RETURN(b->listen_conn_->store, store::Store::Connect(url));
    BALLISTICS_RETURN_IF_ERROR(b->listen_conn_->store->ListenSignatures());
  }

  const auto t0 = std::chrono::steady_clock::now();
  BALLISTICS_ASSIGN_OR_RETURN(auto st, store::Store::Connect(url));
  int skipped = 0;
  std::vector<store::SearchableSignature> batch;
  constexpr int kBatch = 64;
  auto flush = [&]() -> Status {
    auto descriptors = Descriptors(batch, b->threads_);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      store::SearchableSignature& sig = batch[i];
      if (!descriptors[i].ok()) {
        ++skipped;  // too little valid data for a coarse descriptor: not searchable
        spdlog::warn("signature {} of casing {} not indexed: {}", sig.stored.id, sig.stored.casing_id,
                     descriptors[i].status().ToString());
        continue;
      }
      BALLISTICS_RETURN_IF_ERROR(b->index_->Add(RecordFor(sig), *descriptors[i]));
      // A signature the compact form refuses is still searchable: the rerank
      // reads it from the database (and reports the error there).
      Status put = b->source_->Put(sig.stored.id, sig.stored.signature);
      if (!put.ok()) spdlog::warn("signature {} not held for the rerank: {}", sig.stored.id, put.ToString());
    }
    batch.clear();
    return Status::Ok();
  };
  Status s = st->LoadSearchableSignatures(
      b->shards_,
      [&](store::SearchableSignature&& sig) -> Status {
        batch.push_back(std::move(sig));
        if (static_cast<int>(batch.size()) >= kBatch) return flush();
        return Status::Ok();
      },
      kBatch);
  BALLISTICS_RETURN_IF_ERROR(s);
  BALLISTICS_RETURN_IF_ERROR(flush());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("search index: {} signatures of {} shard(s) loaded in {:.2f} s ({} not indexable), {} KiB coarse, "
               "{} KiB compact signatures for the rerank ({} held, budget {})",
               b->index_->Size(), b->shards_.size(), seconds, skipped, b->index_->MemoryBytes() / 1024,
               b->source_->bytes() / 1024, b->source_->held(),
               rerank_cache_mb < 0 ? std::string("all") : std::to_string(rerank_cache_mb) + " MiB");
  if (listen) b->listener_ = std::thread([p = b.get()] { p->Listen(); });
  return b;
}

LocalSearchBackend::~LocalSearchBackend() {
  stop_ = true;
  if (listener_.joinable()) listener_.join();
}

std::size_t LocalSearchBackend::memory_bytes() const { return index_->MemoryBytes() + source_->bytes(); }
std::size_t LocalSearchBackend::signature_bytes() const { return source_->bytes(); }

// A rerank candidate not held: that one signature from the database. The
// index knows its casing, the partition key, so PostgreSQL reads one row of one
// partition (not the casing's other signature, ~1 MB of float values each).
StatusOr<Signature> LocalSearchBackend::Fetch(std::int64_t signature_id) const {
  const std::optional<SignatureRecord> record = index_->FindRecord(signature_id);
  if (!record) return NotFound("signature " + std::to_string(signature_id) + " is not in the search index");
  BALLISTICS_ASSIGN_OR_RETURN(auto db, fetch_pool_->pool.Acquire());
  auto stored = db->GetSignature(record->casing_id, signature_id);
  if (!stored.ok()) {
    if (stored.status().code() != StatusCode::kNotFound) return stored.status();
    return NotFound("signature " + std::to_string(signature_id) + " of casing " + std::to_string(record->casing_id) +
                    " is no longer stored");
  }
  return std::move(stored->signature);
}

StatusOr<SearchResults> LocalSearchBackend::Search(const SearchRequest& request, const SearchProgress& progress,
                                                   SearchCall& call) const {
  BALLISTICS_ASSIGN_OR_RETURN(SearchResults out, engine_->Search(request, progress, call.cancelled));
  call.missing_shards.clear();
  for (int s = 0; s < store::kSignatureShards; ++s) {
    if (!holds(s)) call.missing_shards.push_back(s);
  }
  // The index has a slot for every shard; only the ones loaded here count.
  out.shards_total = store::kSignatureShards;
  out.shards_answered = static_cast<int>(shards_.size());
  out.partial = out.shards_answered < out.shards_total;
  return out;
}

Status LocalSearchBackend::AddCasing(std::int64_t casing_id) {
  std::lock_guard<std::mutex> l(add_mu_);
  BALLISTICS_ASSIGN_OR_RETURN(auto st, store::Store::Connect(url_));
  BALLISTICS_ASSIGN_OR_RETURN(auto sigs, st->GetSearchableSignatures(casing_id));
  for (auto& sig : sigs) {
    if (!holds(sig.stored.shard) || index_->FindRecord(sig.stored.id)) continue;
    auto d = ComputeDescriptor(sig.stored.signature);
    if (!d.ok()) {
      spdlog::warn("signature {} of casing {} not indexed: {}", sig.stored.id, casing_id, d.status().ToString());
      continue;
    }
    Status a = index_->Add(RecordFor(sig), *d);
    if (!a.ok() && a.code() != StatusCode::kAlreadyExists) return a;
    Status put = source_->Put(sig.stored.id, sig.stored.signature);
    if (!put.ok()) spdlog::warn("signature {} not held for the rerank: {}", sig.stored.id, put.ToString());
  }
  return Status::Ok();
}

// After a lost listener connection: every signature id of our shards that is
// not loaded yet (cheap: ids only), then its casing.
Status LocalSearchBackend::CatchUp() {
  BALLISTICS_ASSIGN_OR_RETURN(auto st, store::Store::Connect(url_));
  BALLISTICS_ASSIGN_OR_RETURN(auto refs, st->ListSignatureRefs(shards_));
  std::set<std::int64_t> casings;
  for (const auto& r : refs) {
    if (!index_->FindRecord(r.id)) casings.insert(r.casing_id);
  }
  for (std::int64_t c : casings) BALLISTICS_RETURN_IF_ERROR(AddCasing(c));
  if (!casings.empty()) spdlog::info("search index: caught up {} casing(s) after a lost LISTEN", casings.size());
  return Status::Ok();
}

void LocalSearchBackend::Listen() {
  auto& conn = listen_conn_->store;
  auto pause = [&] {
    for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  };
  while (!stop_) {
    if (!conn) {
      auto c = store::Store::Connect(url_);
      Status s = c.ok() ? (*c)->ListenSignatures() : c.status();
      if (s.ok()) s = CatchUp();
      if (!s.ok()) {
        spdlog::warn("search index: listener: {}; retrying", s.ToString());
        pause();
        continue;
      }
      conn = std::move(*c);
    }
    // Short waits: the destructor's stop flag is seen within 250 ms.
    auto n = conn->WaitForNotifications(250);
    if (!n.ok()) {
      spdlog::warn("search index: listener lost its connection: {}", n.status().ToString());
      conn.reset();
      continue;
    }
    std::set<std::int64_t> casings;  // a casing's BF and FP notify separately
    for (const std::string& payload : *n) {
      ++notifications_;
      const auto j = nlohmann::json::parse(payload, nullptr, false);
      if (!j.is_object() || !j.contains("casing_id") || !j.contains("partition")) {
        spdlog::warn("search index: ignoring notification '{}'", payload);
        continue;
      }
      const std::string part = j["partition"].get<std::string>();
      const auto pos = part.rfind("_p");
      if (pos == std::string::npos) continue;
      if (holds(std::atoi(part.c_str() + pos + 2))) casings.insert(j["casing_id"].get<std::int64_t>());
    }
    for (std::int64_t c : casings) {
      Status s = AddCasing(c);
      if (!s.ok()) {
        spdlog::warn("search index: casing {} from a notification: {}", c, s.ToString());
        // Reconnecting catches up by id, so a failed add is retried, not lost.
        conn.reset();
      }
    }
  }
}

}  // namespace ballistics::service
