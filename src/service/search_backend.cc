#include "search_backend.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>

#include "ballistics/store.h"

namespace ballistics::service {

class SearchBackend::MemorySource final : public SignatureSource {
 public:
  StatusOr<Signature> Load(std::int64_t signature_id) const override {
    std::shared_lock l(mu_);
    auto it = sigs_.find(signature_id);
    if (it == sigs_.end()) return NotFound("signature " + std::to_string(signature_id) + " is not loaded");
    return it->second;
  }
  void Put(std::int64_t id, Signature s) {
    std::unique_lock l(mu_);
    sigs_[id] = std::move(s);
  }
  bool Has(std::int64_t id) const {
    std::shared_lock l(mu_);
    return sigs_.count(id) > 0;
  }

 private:
  mutable std::shared_mutex mu_;
  std::map<std::int64_t, Signature> sigs_;
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

SignatureRecord RecordFor(const store::StoredCasing& c, const store::StoredSignature& s) {
  SignatureRecord r;
  r.signature_id = s.id;
  r.casing_id = s.casing_id;
  r.kind = s.signature.kind;
  r.modality = s.signature.modality;
  r.calibre = c.metadata.calibre;
  r.agency = c.metadata.agency;
  r.source = c.metadata.source;
  r.captured_at_unix = ParseIsoUtc(c.metadata.captured_at);
  r.shard = s.shard;
  return r;
}

}  // namespace

StatusOr<std::unique_ptr<SearchBackend>> SearchBackend::Load(const std::string& url, int threads) {
  std::unique_ptr<SearchBackend> b(new SearchBackend());
  b->url_ = url;
  b->index_ = MakeShardedIndex(store::kSignatureShards, threads);
  b->source_ = std::make_shared<MemorySource>();
  SearchEngineConfig config;
  config.rerank_threads = threads;
  BALLISTICS_ASSIGN_OR_RETURN(b->engine_, SearchEngine::Create(b->index_, b->source_, config));

  BALLISTICS_ASSIGN_OR_RETURN(auto st, store::Store::Connect(url));
  std::map<std::int64_t, store::StoredCasing> casings;
  store::ListCasingsOptions opt;
  for (;;) {
    BALLISTICS_ASSIGN_OR_RETURN(auto page, st->ListCasings(opt));
    if (page.empty()) break;
    opt.after_id = page.back().id;
    for (auto& c : page) casings[c.id] = std::move(c);
  }
  std::vector<int> shards;
  for (int i = 0; i < store::kSignatureShards; ++i) shards.push_back(i);
  int skipped = 0;
  Status s = st->LoadSignatures(shards, [&](store::StoredSignature&& sig) -> Status {
    auto c = casings.find(sig.casing_id);
    if (c == casings.end()) return Status::Ok();  // stored after the listing: AddCasing picks it up
    auto d = ComputeDescriptor(sig.signature);
    if (!d.ok()) {
      ++skipped;  // too little valid data for a coarse descriptor: not searchable
      spdlog::warn("signature {} of casing {} not indexed: {}", sig.id, sig.casing_id, d.status().ToString());
      return Status::Ok();
    }
    BALLISTICS_RETURN_IF_ERROR(b->index_->Add(RecordFor(c->second, sig), *d));
    b->source_->Put(sig.id, std::move(sig.signature));
    return Status::Ok();
  });
  BALLISTICS_RETURN_IF_ERROR(s);
  spdlog::info("search index: {} signatures of {} casings loaded ({} not indexable), {} KiB", b->index_->Size(),
               casings.size(), skipped, b->index_->MemoryBytes() / 1024);
  return b;
}

Status SearchBackend::AddCasing(std::int64_t casing_id) {
  std::lock_guard<std::mutex> l(add_mu_);
  BALLISTICS_ASSIGN_OR_RETURN(auto st, store::Store::Connect(url_));
  BALLISTICS_ASSIGN_OR_RETURN(store::StoredCasing c, st->GetCasing(casing_id));
  BALLISTICS_ASSIGN_OR_RETURN(auto sigs, st->GetSignatures(casing_id));
  for (auto& sig : sigs) {
    if (source_->Has(sig.id)) continue;
    auto d = ComputeDescriptor(sig.signature);
    if (!d.ok()) {
      spdlog::warn("signature {} of casing {} not indexed: {}", sig.id, casing_id, d.status().ToString());
      continue;
    }
    Status a = index_->Add(RecordFor(c, sig), *d);
    if (!a.ok() && a.code() != StatusCode::kAlreadyExists) return a;
    source_->Put(sig.id, std::move(sig.signature));
  }
  return Status::Ok();
}

}  // namespace ballistics::service
