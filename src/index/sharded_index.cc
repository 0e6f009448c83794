// Sharded decorator (faiss IndexShards): sub-indexes, one per shard; a search
// scans them on a few threads and merges their top k. A shard = a PostgreSQL
// partition of the signatures table (store::kSignatureShards).
#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "ballistics/index.h"
#include "ballistics/parallel.h"

namespace ballistics {

CoarseSearchResult MergeTopK(std::span<const CoarseSearchResult> per_shard, int k) {
  CoarseSearchResult out;
  std::size_t total = 0;
  for (const CoarseSearchResult& r : per_shard) {
    out.scanned += r.scanned;
    out.shards_answered += r.shards_answered;
    out.shards_total += r.shards_total;
    total += r.hits.size();
  }
  out.hits.reserve(total);
  for (const CoarseSearchResult& r : per_shard) out.hits.insert(out.hits.end(), r.hits.begin(), r.hits.end());
  const std::size_t keep = std::min<std::size_t>(out.hits.size(), static_cast<std::size_t>(std::max(k, 0)));
  std::partial_sort(out.hits.begin(), out.hits.begin() + keep, out.hits.end(), HitBefore);
  out.hits.resize(keep);
  return out;
}

namespace {

class ShardedIndex final : public SignatureIndex {
 public:
  ShardedIndex(std::vector<std::unique_ptr<SignatureIndex>> shards, int threads)
      : shards_(std::move(shards)), threads_(std::max(1, threads)) {}

  Status Add(const SignatureRecord& record, const CoarseDescriptor& d) override {
    if (record.shard < 0 || record.shard >= static_cast<int>(shards_.size())) {
      return InvalidArgument("index: signature " + std::to_string(record.signature_id) + ": shard " +
                             std::to_string(record.shard) + " outside [0, " + std::to_string(shards_.size()) + ")");
    }
    // Ids are unique across shards: a loader that routed one id to two shards is a bug.
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      if (static_cast<int>(i) != record.shard && shards_[i]->FindRecord(record.signature_id).has_value()) {
        return AlreadyExists("index: signature " + std::to_string(record.signature_id) + " is already in shard " +
                             std::to_string(i));
      }
    }
    return shards_[record.shard]->Add(record, d);
  }

  Status Remove(std::int64_t signature_id) override {
    for (auto& s : shards_) {
      if (s->FindRecord(signature_id).has_value()) return s->Remove(signature_id);
    }
    return NotFound("index: signature " + std::to_string(signature_id) + " is not indexed");
  }

  std::int64_t Size() const override {
    std::int64_t n = 0;
    for (const auto& s : shards_) n += s->Size();
    return n;
  }

  using SignatureIndex::SearchCoarse;
  StatusOr<CoarseSearchResult> SearchCoarse(std::span<const CoarseDescriptor> query, const SearchFilter& filter,
                                            int k, const ScanControl& control) const override {
    if (k < 1) return InvalidArgument("index: search: k=" + std::to_string(k) + " must be >= 1");
    const int n = static_cast<int>(shards_.size());
    std::vector<CoarseSearchResult> results(n);
    std::vector<Status> errors(n);
    std::atomic<std::int64_t> done_rows{0};
    std::int64_t total_rows = 0;
    std::vector<std::int64_t> rows(n);
    for (int i = 0; i < n; ++i) total_rows += rows[i] = shards_[i]->Size();
    std::mutex progress_mu;
    ParallelFor(static_cast<std::size_t>(n), threads_, [&](std::size_t i) {
      ScanControl sub;
      sub.cancelled = control.cancelled;
      if (control.progress && total_rows > 0) {
        // Shard progress in rows, reported as the share of all rows.
        sub.progress = [&, i, last = std::int64_t{0}](double f) mutable {
          const auto now = static_cast<std::int64_t>(f * rows[i]);
          const std::int64_t sum = done_rows.fetch_add(now - last) + (now - last);
          last = now;
          std::lock_guard<std::mutex> lock(progress_mu);
          control.progress(static_cast<double>(sum) / total_rows);
        };
      }
      auto r = shards_[i]->SearchCoarse(query, filter, k, sub);
      if (r.ok()) {
        results[i] = std::move(r).value();
      } else {
        errors[i] = r.status();
        results[i].shards_total = 1;  // answered nothing
      }
    });
    for (const Status& e : errors) {
      // Cancellation and bad queries are the caller's; any other shard error
      // leaves a partial result (flagged by shards_answered < shards_total).
      if (e.code() == StatusCode::kCancelled || e.code() == StatusCode::kInvalidArgument) return e;
    }
    return MergeTopK(results, k);
  }

  std::optional<SignatureRecord> FindRecord(std::int64_t signature_id) const override {
    for (const auto& s : shards_) {
      if (auto r = s->FindRecord(signature_id)) return r;
    }
    return std::nullopt;
  }

  std::optional<CoarseDescriptor> FindDescriptor(std::int64_t signature_id) const override {
    for (const auto& s : shards_) {
      if (auto d = s->FindDescriptor(signature_id)) return d;
    }
    return std::nullopt;
  }

  std::vector<SignatureRecord> RecordsOfCasing(std::int64_t casing_id) const override {
    std::vector<SignatureRecord> out;
    for (const auto& s : shards_) {
      auto r = s->RecordsOfCasing(casing_id);
      out.insert(out.end(), r.begin(), r.end());
    }
    return out;
  }

  std::size_t MemoryBytes() const override {
    std::size_t b = 0;
    for (const auto& s : shards_) b += s->MemoryBytes();
    return b;
  }

 private:
  std::vector<std::unique_ptr<SignatureIndex>> shards_;
  int threads_;
};

}  // namespace

std::unique_ptr<SignatureIndex> MakeShardedIndex(int shards, int threads) {
  std::vector<std::unique_ptr<SignatureIndex>> subs;
  for (int i = 0; i < std::max(1, shards); ++i) subs.push_back(MakeFlatIndex());
  return MakeShardedIndex(std::move(subs), threads);
}

std::unique_ptr<SignatureIndex> MakeShardedIndex(std::vector<std::unique_ptr<SignatureIndex>> shards, int threads) {
  return std::make_unique<ShardedIndex>(std::move(shards), threads);
}

}  // namespace ballistics
