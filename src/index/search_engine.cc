// Search engine: coarse scan of all shards -> CMC rerank of the top K on a
// thread pool -> BF, FP and combined ranked lists.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "ballistics/index.h"

namespace ballistics {

std::string_view SearchStageName(SearchStage s) {
  switch (s) {
    case SearchStage::kDescriptor: return "descriptor";
    case SearchStage::kCoarse: return "coarse";
    case SearchStage::kRerank: return "rerank";
    case SearchStage::kMerge: return "merge";
  }
  return "unknown";
}

struct SearchEngine::Impl {
  std::shared_ptr<const SignatureIndex> index;
  std::shared_ptr<const SignatureSource> source;
  SearchEngineConfig config;
  std::optional<Correlator> bf, fp;

  const Correlator& CorrelatorFor(SignatureKind k) const {
    return k == SignatureKind::kBreechFace ? *bf : *fp;
  }
  const DescriptorConfig& DescriptorFor(SignatureKind k) const {
    return k == SignatureKind::kBreechFace ? config.breech_face_descriptor : config.firing_pin_descriptor;
  }
};

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

bool IsCancelled(const std::atomic<bool>* c) { return c != nullptr && c->load(std::memory_order_relaxed); }

struct KindQuery {
  SignatureKind kind;
  Signature signature;
  std::vector<CoarseDescriptor> descriptors;  // the centre offsets of the translation search
};

// Ranked list order: CMC count, then the whole-signature CCF at the
// registration, then the coarse score; candidates that could not be compared last.
bool CandidateBefore(const Candidate& a, const Candidate& b) {
  const bool ca = a.comparison.has_value(), cb = b.comparison.has_value();
  if (ca != cb) return ca;
  if (ca) {
    if (a.comparison->cmc != b.comparison->cmc) return a.comparison->cmc > b.comparison->cmc;
    if (a.comparison->ccf != b.comparison->ccf) return a.comparison->ccf > b.comparison->ccf;
  }
  if (a.coarse_score != b.coarse_score) return a.coarse_score > b.coarse_score;
  return a.signature_id < b.signature_id;
}

double CmcShare(const Candidate& c) {
  if (!c.comparison.has_value() || c.comparison->cells <= 0) return 0.0;
  return static_cast<double>(c.comparison->cmc) / c.comparison->cells;
}

}  // namespace

SearchEngine::SearchEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SearchEngine::~SearchEngine() = default;

const SearchEngineConfig& SearchEngine::config() const { return impl_->config; }

StatusOr<std::unique_ptr<SearchEngine>> SearchEngine::Create(std::shared_ptr<const SignatureIndex> index,
                                                             std::shared_ptr<const SignatureSource> source,
                                                             const SearchEngineConfig& config) {
  if (index == nullptr) return InvalidArgument("search: no index");
  if (source == nullptr) return InvalidArgument("search: no signature source");
  if (config.max_rerank_k < 1) {
    return InvalidArgument("search: max_rerank_k=" + std::to_string(config.max_rerank_k) + " must be >= 1");
  }
  if (config.default_rerank_k < 1 || config.default_rerank_k > config.max_rerank_k) {
    return InvalidArgument("search: default_rerank_k=" + std::to_string(config.default_rerank_k) +
                           " must be in [1, max_rerank_k=" + std::to_string(config.max_rerank_k) + "]");
  }
  if (config.max_top_n < 1) return InvalidArgument("search: max_top_n=" + std::to_string(config.max_top_n) + " must be >= 1");
  if (config.rerank_threads < 1 || config.rerank_threads > 256) {
    return InvalidArgument("search: rerank_threads=" + std::to_string(config.rerank_threads) + " must be in [1, 256]");
  }
  if (config.translation_steps < 0 || config.translation_steps > 5) {
    return InvalidArgument("search: translation_steps=" + std::to_string(config.translation_steps) +
                           " must be in [0, 5]");
  }
  if (!(config.translation_search_um >= 0 && config.translation_search_um <= 500)) {
    return InvalidArgument("search: translation_search_um=" + std::to_string(config.translation_search_um) +
                           " must be in [0, 500]");
  }
  BALLISTICS_RETURN_IF_ERROR(config.breech_face_descriptor.Validate().WithContext("search: breech_face_descriptor"));
  BALLISTICS_RETURN_IF_ERROR(config.firing_pin_descriptor.Validate().WithContext("search: firing_pin_descriptor"));
  auto impl = std::make_unique<Impl>();
  impl->index = std::move(index);
  impl->source = std::move(source);
  impl->config = config;
  BALLISTICS_ASSIGN_OR_RETURN(Correlator bf, Correlator::Create(config.breech_face_correlation));
  BALLISTICS_ASSIGN_OR_RETURN(Correlator fp, Correlator::Create(config.firing_pin_correlation));
  impl->bf.emplace(std::move(bf));
  impl->fp.emplace(std::move(fp));
  return std::unique_ptr<SearchEngine>(new SearchEngine(std::move(impl)));
}

StatusOr<SearchResults> SearchEngine::Search(const SearchRequest& request, const SearchProgress& progress,
                                             const std::atomic<bool>* cancelled) const {
  const Impl& im = *impl_;
  const SearchEngineConfig& cfg = im.config;
  if (request.top_n < 1 || request.top_n > cfg.max_top_n) {
    return InvalidArgument("search: top_n=" + std::to_string(request.top_n) + " must be in [1, " +
                           std::to_string(cfg.max_top_n) + "]");
  }
  if (request.rerank_k < 0 || request.rerank_k > cfg.max_rerank_k) {
    return InvalidArgument("search: rerank_k=" + std::to_string(request.rerank_k) + " must be in [0, " +
                           std::to_string(cfg.max_rerank_k) + "] (0 = default " +
                           std::to_string(cfg.default_rerank_k) + ")");
  }
  if (request.max_rotation_deg && !(*request.max_rotation_deg >= 0 && *request.max_rotation_deg <= 180)) {
    return InvalidArgument("search: max_rotation_deg=" + std::to_string(*request.max_rotation_deg) +
                           " must be in [0, 180]");
  }
  const int k = request.rerank_k == 0 ? cfg.default_rerank_k : request.rerank_k;
  auto report = [&](SearchStage s, double f) {
    if (progress) progress(s, std::clamp(f, 0.0, 1.0));
  };

  // 1. The query signatures and their descriptors.
  SearchFilter filter = request.filter;
  std::vector<KindQuery> queries;
  const SearchQuery& q = request.query;
  if (q.breech_face || q.firing_pin) {
    for (const auto* sig : {q.breech_face ? &*q.breech_face : nullptr, q.firing_pin ? &*q.firing_pin : nullptr}) {
      if (sig == nullptr) continue;
      queries.push_back({sig->kind, *sig, {}});
    }
    if (q.casing_id) filter.exclude_casing_ids.push_back(*q.casing_id);
  } else if (q.casing_id) {
    const std::vector<SignatureRecord> records = im.index->RecordsOfCasing(*q.casing_id);
    if (records.empty()) return NotFound("search: casing " + std::to_string(*q.casing_id) + " is not in the index");
    for (const SignatureRecord& r : records) {
      auto sig = im.source->Load(r.signature_id);
      if (!sig.ok()) return sig.status().WithContext("search: query casing " + std::to_string(*q.casing_id));
      queries.push_back({r.kind, std::move(sig).value(), {}});
    }
    filter.exclude_casing_ids.push_back(*q.casing_id);
  } else {
    return InvalidArgument("search: the query has neither signatures nor a casing id");
  }
  for (std::size_t i = 0; i < queries.size(); ++i) {
    for (std::size_t j = i + 1; j < queries.size(); ++j) {
      if (queries[i].kind == queries[j].kind) {
        return InvalidArgument(std::string("search: the query has two ") +
                               std::string(SignatureKindName(queries[i].kind)) + " signatures");
      }
    }
  }
  const int steps = cfg.translation_steps;
  for (KindQuery& kq : queries) {
    for (int iy = -steps; iy <= steps; ++iy) {
      for (int ix = -steps; ix <= steps; ++ix) {
        DescriptorConfig dc = im.DescriptorFor(kq.kind);
        dc.centre_offset_x_um += ix * cfg.translation_search_um;
        dc.centre_offset_y_um += iy * cfg.translation_search_um;
        auto d = ComputeDescriptor(kq.signature, dc);
        if (!d.ok()) {
          return d.status().WithContext(std::string("search: query ") + std::string(SignatureKindName(kq.kind)));
        }
        kq.descriptors.push_back(std::move(d).value());
      }
    }
  }
  report(SearchStage::kDescriptor, 1.0);

  SearchResults out;
  std::vector<std::vector<Candidate>> lists(queries.size());
  for (std::size_t qi = 0; qi < queries.size(); ++qi) {
    const KindQuery& kq = queries[qi];
    SearchFilter f = filter;
    if (!f.kinds.empty() && std::find(f.kinds.begin(), f.kinds.end(), kq.kind) == f.kinds.end()) continue;
    f.kinds = {kq.kind};
    // Signatures of another modality (3D vs 2D) are never compared.
    if (!f.modalities.empty() &&
        std::find(f.modalities.begin(), f.modalities.end(), kq.signature.modality) == f.modalities.end()) {
      continue;
    }
    f.modalities = {kq.signature.modality};

    // 2. Coarse stage over all shards.
    const auto t0 = Clock::now();
    ScanControl control;
    control.cancelled = cancelled;
    const double base = static_cast<double>(qi) / queries.size();
    if (progress) {
      control.progress = [&, base](double fr) { report(SearchStage::kCoarse, base + fr / queries.size()); };
    }
    auto coarse = im.index->SearchCoarse(kq.descriptors, f, k, control);
    if (!coarse.ok()) return coarse.status();
    const auto t1 = Clock::now();
    out.coarse_seconds += Seconds(t0, t1);
    out.signatures_scanned += coarse->scanned;
    out.shards_answered = std::max(out.shards_answered, coarse->shards_answered);
    out.shards_total = std::max(out.shards_total, coarse->shards_total);
    out.partial = out.partial || coarse->partial();
    if (IsCancelled(cancelled)) return Cancelled("search cancelled");

    // 3. Rerank the coarse top K with the correlator, on a thread pool.
    const Correlator& correlator = im.CorrelatorFor(kq.kind);
    auto prepared_query = correlator.Prepare(kq.signature);
    if (!prepared_query.ok()) {
      return prepared_query.status().WithContext(std::string("search: query ") +
                                                 std::string(SignatureKindName(kq.kind)));
    }
    const std::vector<CoarseHit>& hits = coarse->hits;
    std::vector<Candidate>& list = lists[qi];
    list.resize(hits.size());
    CompareOptions options;
    options.max_rotation_deg = request.max_rotation_deg;
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> done{0};
    auto work = [&] {
      for (std::size_t i = next.fetch_add(1); i < hits.size(); i = next.fetch_add(1)) {
        if (IsCancelled(cancelled)) return;
        Candidate& c = list[i];
        c.casing_id = hits[i].casing_id;
        c.signature_id = hits[i].signature_id;
        c.shard = hits[i].shard;
        c.coarse_rank = static_cast<int>(i) + 1;
        c.coarse_score = hits[i].score;
        auto sig = im.source->Load(hits[i].signature_id);
        if (sig.ok()) {
          auto prepared = correlator.Prepare(*sig);
          if (prepared.ok()) {
            auto r = correlator.Compare(**prepared_query, **prepared, options);
            if (r.ok()) c.comparison = std::move(r).value();
          }
        }
        report(SearchStage::kRerank,
               base + static_cast<double>(done.fetch_add(1) + 1) / hits.size() / queries.size());
      }
    };
    const int threads = std::min<int>(cfg.rerank_threads, static_cast<int>(std::max<std::size_t>(hits.size(), 1)));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (IsCancelled(cancelled)) return Cancelled("search cancelled");
    out.reranked += static_cast<int>(hits.size());
    out.rerank_seconds += Seconds(t1, Clock::now());
    for (Candidate& c : list) c.score = c.comparison ? c.comparison->cmc : -1.0;
    std::sort(list.begin(), list.end(), CandidateBefore);
    for (std::size_t i = 0; i < list.size(); ++i) list[i].rank = static_cast<int>(i) + 1;
  }

  // 4. Lists per kind and the combined ranking (per casing: the best
  //    candidate of each kind; score = sum of the CMC shares).
  std::map<std::int64_t, CombinedCandidate> by_casing;
  for (std::size_t qi = 0; qi < queries.size(); ++qi) {
    for (const Candidate& c : lists[qi]) {
      CombinedCandidate& cc = by_casing[c.casing_id];
      cc.casing_id = c.casing_id;
      auto& slot = queries[qi].kind == SignatureKind::kBreechFace ? cc.breech_face : cc.firing_pin;
      if (!slot || CandidateBefore(c, *slot)) slot = c;
    }
    std::vector<Candidate>& dst = queries[qi].kind == SignatureKind::kBreechFace ? out.breech_face : out.firing_pin;
    dst = lists[qi];
    if (static_cast<int>(dst.size()) > request.top_n) dst.resize(request.top_n);
  }
  for (auto& [id, cc] : by_casing) {
    cc.combined_score = (cc.breech_face ? CmcShare(*cc.breech_face) : 0.0) + (cc.firing_pin ? CmcShare(*cc.firing_pin) : 0.0);
    out.combined.push_back(std::move(cc));
  }
  std::sort(out.combined.begin(), out.combined.end(), [](const CombinedCandidate& a, const CombinedCandidate& b) {
    if (a.combined_score != b.combined_score) return a.combined_score > b.combined_score;
    return a.casing_id < b.casing_id;
  });
  if (static_cast<int>(out.combined.size()) > request.top_n) out.combined.resize(request.top_n);
  for (std::size_t i = 0; i < out.combined.size(); ++i) out.combined[i].rank = static_cast<int>(i) + 1;
  report(SearchStage::kMerge, 1.0);
  return out;
}

}  // namespace ballistics
