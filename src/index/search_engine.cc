// Search engine: coarse scan of all shards -> CMC rerank of the top K on a
// thread pool -> BF, FP and combined ranked lists.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ballistics/index.h"
#include "ballistics/parallel.h"

namespace ballistics {

std::string_view SearchStageName(SearchStage s) {
  switch (s) {
    case SearchStage::kDescriptor: return "descriptor";
    case SearchStage::kCoarse: return "coarse";
    case SearchStage::kScreen: return "screen";
    case SearchStage::kRerank: return "rerank";
    case SearchStage::kMerge: return "merge";
  }
  return "unknown";
}

struct SearchEngine::Impl {
  std::shared_ptr<const SignatureIndex> index;
  std::shared_ptr<const SignatureSource> source;
  SearchEngineConfig config;
  std::optional<Correlator> bf, fp, bf_screen, fp_screen;

  const Correlator& CorrelatorFor(SignatureKind k) const {
    return k == SignatureKind::kBreechFace ? *bf : *fp;
  }
  const Correlator& ScreenCorrelatorFor(SignatureKind k) const {
    return k == SignatureKind::kBreechFace ? *bf_screen : *fp_screen;
  }

  const DescriptorConfig& DescriptorFor(SignatureKind k) const {
    return k == SignatureKind::kBreechFace ? config.breech_face_descriptor : config.firing_pin_descriptor;
  }
  StatusOr<CoarseSearchResult> Coarse(const Signature& query, const SearchFilter& filter, int k,
                                      const ScanControl& control) const;
};

// The coarse stage: the query's descriptor at the centre offsets of the
// translation search; the inner grid scans the index, the outer ring rescores
// the inner top outer_rescore_k (SearchEngineConfig has the reasoning).
StatusOr<CoarseSearchResult> SearchEngine::Impl::Coarse(const Signature& query, const SearchFilter& filter, int k,
                                                        const ScanControl& control) const {
  const int steps = config.translation_steps;
  const int outer_steps = std::max(steps, config.outer_translation_steps);
  std::vector<CoarseDescriptor> inner, outer;
  for (int iy = -outer_steps; iy <= outer_steps; ++iy) {
    for (int ix = -outer_steps; ix <= outer_steps; ++ix) {
      DescriptorConfig dc = DescriptorFor(query.kind);
      dc.centre_offset_x_um += ix * config.translation_search_um;
      dc.centre_offset_y_um += iy * config.translation_search_um;
      auto d = ComputeDescriptor(query, dc);
      if (!d.ok()) return d.status().WithContext(std::string("search: query ") + std::string(SignatureKindName(query.kind)));
      (std::max(std::abs(ix), std::abs(iy)) <= steps ? inner : outer).push_back(std::move(d).value());
    }
  }
  if (outer.empty()) return index->SearchCoarse(inner, filter, k, control);
  auto a = index->SearchCoarse(inner, filter, std::max(k, config.outer_rescore_k), control);
  if (!a.ok()) return a.status();
  // The inner top candidates, rescored with the outer ring in a small flat
  // index of their descriptors (the same scan kernels).
  auto local = MakeFlatIndex();
  for (const CoarseHit& h : a->hits) {
    std::optional<CoarseDescriptor> d = index->FindDescriptor(h.signature_id);
    if (!d) continue;  // removed since the scan
    SignatureRecord r;
    r.signature_id = h.signature_id;
    r.casing_id = h.casing_id;
    r.kind = query.kind;
    if (!local->Add(r, *d).ok()) continue;
  }
  std::unordered_map<std::int64_t, float> outer_score;
  std::vector<float> outer_sorted;
  if (local->Size() > 0) {
    auto b = local->SearchCoarse(outer, {}, static_cast<int>(local->Size()));
    if (!b.ok()) return b.status();
    for (const CoarseHit& h : b->hits) {
      outer_score[h.signature_id] = h.score;
      outer_sorted.push_back(h.score);  // best first
    }
  }
  const std::size_t n = std::min<std::size_t>({static_cast<std::size_t>(config.outer_tail_rank), a->hits.size(),
                                               outer_sorted.size()});
  // Never below 0: an outer offset is a priori the less likely one.
  const float delta = n == 0 ? 0.0f : std::max(0.0f, outer_sorted[n - 1] - a->hits[n - 1].score);
  for (CoarseHit& h : a->hits) {
    auto it = outer_score.find(h.signature_id);
    if (it != outer_score.end()) h.score = std::max(h.score, it->second - delta);
  }
  std::sort(a->hits.begin(), a->hits.end(), HitBefore);
  if (static_cast<int>(a->hits.size()) > k) a->hits.resize(k);
  return a;
}

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

bool IsCancelled(const std::atomic<bool>* c) { return c != nullptr && c->load(std::memory_order_relaxed); }

struct KindQuery {
  SignatureKind kind;
  Signature signature;
};

double CmcShare(const Candidate& c) {
  if (!c.comparison.has_value() || c.comparison->cells <= 0) return 0.0;
  return static_cast<double>(c.comparison->cmc) / c.comparison->cells;
}

}  // namespace

CorrelationConfig ScreenCorrelationConfig(const CorrelationConfig& rerank) {
  CorrelationConfig c = rerank;
  c.cell_pixel_um = rerank.cell_pixel_um * 4;
  c.coarse_pixel_um = std::max(rerank.coarse_pixel_um, c.cell_pixel_um);
  c.translation_pixel_um = std::max(rerank.translation_pixel_um, c.coarse_pixel_um);
  c.cell_search_downsample = 1;
  c.max_candidates = std::min(rerank.max_candidates, 3);
  c.cell_angle_steps = 0;
  c.polar_center_search_um = 0;
  return c;
}

int ScreenKFor(const SearchRequest& request, SignatureKind kind, int rerank_k, const SearchEngineConfig& config) {
  const int k1 = request.screen_k < 0                  ? 0
                 : request.screen_k > 0                ? request.screen_k
                 : kind == SignatureKind::kBreechFace ? config.breech_face_screen_k
                                                       : config.firing_pin_screen_k;
  return k1 > rerank_k ? k1 : 0;
}

int CoarseKeptBeforeScreen(int rerank_k, double screen_coarse_share) {
  return std::clamp(static_cast<int>(std::ceil(rerank_k * screen_coarse_share - 1e-9)), 0, rerank_k);
}

bool ScreenedBefore(const CoarseHit& a, const CoarseHit& b) {
  if (a.screen_cmc != b.screen_cmc) return a.screen_cmc > b.screen_cmc;
  if (a.screen_ccf != b.screen_ccf) return a.screen_ccf > b.screen_ccf;
  if (a.rank != b.rank) return a.rank < b.rank;
  return a.signature_id < b.signature_id;
}

bool CandidateRanksBefore(const Candidate& a, const Candidate& b) {
  const bool ca = a.comparison.has_value(), cb = b.comparison.has_value();
  if (ca != cb) return ca;
  if (ca) {
    if (a.comparison->cmc != b.comparison->cmc) return a.comparison->cmc > b.comparison->cmc;
    if (a.comparison->ccf != b.comparison->ccf) return a.comparison->ccf > b.comparison->ccf;
  }
  if (a.coarse_score != b.coarse_score) return a.coarse_score > b.coarse_score;
  return a.signature_id < b.signature_id;
}

SearchEngine::SearchEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SearchEngine::~SearchEngine() = default;

const SearchEngineConfig& SearchEngine::config() const { return impl_->config; }

StatusOr<CoarseSearchResult> SearchEngine::SearchCoarse(const Signature& query, const SearchFilter& filter, int k,
                                                        const ScanControl& control) const {
  if (k < 1) return InvalidArgument("search: coarse k=" + std::to_string(k) + " must be >= 1");
  SearchFilter f = filter;
  f.kinds = {query.kind};
  return impl_->Coarse(query, f, k, control);
}

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
  if (config.outer_translation_steps < 0 || config.outer_translation_steps > 5) {
    return InvalidArgument("search: outer_translation_steps=" + std::to_string(config.outer_translation_steps) +
                           " must be in [0, 5]");
  }
  if (config.outer_rescore_k < 1 || config.outer_rescore_k > 1000000) {
    return InvalidArgument("search: outer_rescore_k=" + std::to_string(config.outer_rescore_k) +
                           " must be in [1, 1000000]");
  }
  if (config.outer_tail_rank < 1) {
    return InvalidArgument("search: outer_tail_rank=" + std::to_string(config.outer_tail_rank) + " must be >= 1");
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
  if (config.breech_face_screen_k < 0 || config.firing_pin_screen_k < 0 || config.max_screen_k < 1 ||
      config.breech_face_screen_k > config.max_screen_k || config.firing_pin_screen_k > config.max_screen_k) {
    return InvalidArgument("search: screen K (breech face " + std::to_string(config.breech_face_screen_k) +
                           ", firing pin " + std::to_string(config.firing_pin_screen_k) + ") must be in [0, max_screen_k=" +
                           std::to_string(config.max_screen_k) + "]");
  }
  if (!(config.screen_coarse_share >= 0 && config.screen_coarse_share <= 1)) {
    return InvalidArgument("search: screen_coarse_share=" + std::to_string(config.screen_coarse_share) +
                           " must be in [0, 1]");
  }
  BALLISTICS_ASSIGN_OR_RETURN(Correlator bfs, Correlator::Create(ScreenCorrelationConfig(config.breech_face_correlation)));
  BALLISTICS_ASSIGN_OR_RETURN(Correlator fps, Correlator::Create(ScreenCorrelationConfig(config.firing_pin_correlation)));
  impl->bf_screen.emplace(std::move(bfs));
  impl->fp_screen.emplace(std::move(fps));
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
  if (request.coarse_only && request.rerank_hits) {
    return InvalidArgument("search: coarse_only and rerank_hits are the two phases of a search, not one request");
  }
  if (request.screen_only && !request.rerank_hits) {
    return InvalidArgument("search: screen_only needs the candidates to screen (rerank_hits)");
  }
  if (request.screen_k < -1 || request.screen_k > cfg.max_screen_k) {
    return InvalidArgument("search: screen_k=" + std::to_string(request.screen_k) + " must be in [-1, " +
                           std::to_string(cfg.max_screen_k) + "] (0 = default, -1 = no screening)");
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
      queries.push_back({sig->kind, *sig});
    }
    if (q.casing_id) filter.exclude_casing_ids.push_back(*q.casing_id);
  } else if (q.casing_id) {
    const std::vector<SignatureRecord> records = im.index->RecordsOfCasing(*q.casing_id);
    if (records.empty()) return NotFound("search: casing " + std::to_string(*q.casing_id) + " is not in the index");
    for (const SignatureRecord& r : records) {
      auto sig = im.source->Load(r.signature_id);
      if (!sig.ok()) return sig.status().WithContext("search: query casing " + std::to_string(*q.casing_id));
      queries.push_back({r.kind, std::move(sig).value()});
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
    const int k1 = ScreenKFor(request, kq.kind, k, cfg);
    StatusOr<CoarseSearchResult> coarse = CoarseSearchResult{};
    if (request.rerank_hits) {
      // Phase 2 or 3 of a multi-phase search: the coordinator chose the candidates.
      for (const CoarseHit& h : *request.rerank_hits) {
        const std::optional<SignatureRecord> rec = im.index->FindRecord(h.signature_id);
        if (rec && rec->kind == kq.kind) coarse->hits.push_back(h);
      }
    } else {
      coarse = im.Coarse(kq.signature, f, k1 > 0 ? k1 : k, control);
      if (coarse.ok()) {
        for (std::size_t i = 0; i < coarse->hits.size(); ++i) coarse->hits[i].rank = static_cast<int>(i) + 1;
      }
    }
    if (!coarse.ok()) return coarse.status();
    const auto t1 = Clock::now();
    out.coarse_seconds += Seconds(t0, t1);
    out.signatures_scanned += coarse->scanned;
    out.shards_answered = std::max(out.shards_answered, coarse->shards_answered);
    out.shards_total = std::max(out.shards_total, coarse->shards_total);
    out.partial = out.partial || coarse->partial();
    if (IsCancelled(cancelled)) return Cancelled("search cancelled");
    std::vector<CoarseHit>& coarse_out = kq.kind == SignatureKind::kBreechFace ? out.coarse_breech_face
                                                                               : out.coarse_firing_pin;
    if (request.coarse_only) {
      coarse_out = coarse->hits;
      continue;
    }
    CompareOptions options;
    options.max_rotation_deg = request.max_rotation_deg;
    std::vector<CoarseHit> hits = std::move(coarse->hits);

    // 3. Screening: the coarse top kc go on as they are; the cheap correlator
    //    orders the coarse ranks kc+1..screen K and its top K - kc go on too
    //    (in one process; a coordinator merges the workers' screened shares
    //    and sends the global top K back for the rerank).
    const int kc = CoarseKeptBeforeScreen(k, cfg.screen_coarse_share);
    // (Nothing below the coarse-kept ranks: nothing to screen, as a coordinator decides too.)
    if (request.screen_only || (k1 > 0 && !request.rerank_hits && static_cast<int>(hits.size()) > kc)) {
      std::vector<CoarseHit> kept;
      if (!request.screen_only) {
        const std::size_t n = std::min<std::size_t>(kc, hits.size());
        kept.assign(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(n));
        hits.erase(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(n));
      }
      const Correlator& screen = im.ScreenCorrelatorFor(kq.kind);
      auto screen_query = screen.Prepare(kq.signature);
      if (!screen_query.ok()) {
        return screen_query.status().WithContext(std::string("search: screening query ") +
                                                 std::string(SignatureKindName(kq.kind)));
      }
      std::atomic<std::size_t> done{0};
      ParallelFor(hits.size(), cfg.rerank_threads, [&](std::size_t i) {
        CoarseHit& h = hits[i];
        if (auto sig = im.source->LoadForScreen(h.signature_id, screen.config().cell_pixel_um); sig.ok()) {
          if (auto prepared = screen.Prepare(*sig); prepared.ok()) {
            if (auto r = screen.Compare(**screen_query, **prepared, options); r.ok()) {
              h.screen_cmc = r->cmc;
              h.screen_ccf = static_cast<float>(r->ccf);
            }
          }
        }
        report(SearchStage::kScreen, base + static_cast<double>(done.fetch_add(1) + 1) / hits.size() / queries.size());
      }, cancelled);
      if (IsCancelled(cancelled)) return Cancelled("search cancelled");
      std::sort(hits.begin(), hits.end(), ScreenedBefore);
      if (static_cast<int>(hits.size()) > k - kc) hits.resize(k - kc);
      for (std::size_t i = 0; i < hits.size(); ++i) hits[i].screen_rank = static_cast<int>(i) + 1;
      out.screened += static_cast<int>(done.load());
      out.screen_seconds += Seconds(t1, Clock::now());
      if (request.screen_only) {
        coarse_out = std::move(hits);
        continue;
      }
      hits.insert(hits.begin(), kept.begin(), kept.end());
    }
    const auto t2 = Clock::now();

    // 4. Rerank the (screened) coarse top K with the correlator, on a thread pool.
    const Correlator& correlator = im.CorrelatorFor(kq.kind);
    auto prepared_query = correlator.Prepare(kq.signature);
    if (!prepared_query.ok()) {
      return prepared_query.status().WithContext(std::string("search: query ") +
                                                 std::string(SignatureKindName(kq.kind)));
    }
    std::vector<Candidate>& list = lists[qi];
    list.resize(hits.size());
    std::atomic<std::size_t> done{0};
    ParallelFor(hits.size(), cfg.rerank_threads, [&](std::size_t i) {
      Candidate& c = list[i];
      c.casing_id = hits[i].casing_id;
      c.signature_id = hits[i].signature_id;
      c.shard = hits[i].shard;
      c.coarse_rank = hits[i].rank > 0 ? hits[i].rank : static_cast<int>(i) + 1;
      c.coarse_score = hits[i].score;
      c.screen_rank = hits[i].screen_rank;
      c.screen_cmc = hits[i].screen_cmc;
      auto sig = im.source->Load(hits[i].signature_id);
      if (sig.ok()) {
        auto prepared = correlator.Prepare(*sig);
        if (prepared.ok()) {
          auto r = correlator.Compare(**prepared_query, **prepared, options);
          if (r.ok()) c.comparison = std::move(r).value();
        }
      }
      report(SearchStage::kRerank, base + static_cast<double>(done.fetch_add(1) + 1) / hits.size() / queries.size());
    }, cancelled);
    if (IsCancelled(cancelled)) return Cancelled("search cancelled");
    out.reranked += static_cast<int>(hits.size());
    out.rerank_seconds += Seconds(t2, Clock::now());
    for (Candidate& c : list) c.score = c.comparison ? c.comparison->cmc : -1.0;
    std::sort(list.begin(), list.end(), CandidateRanksBefore);
    for (std::size_t i = 0; i < list.size(); ++i) list[i].rank = static_cast<int>(i) + 1;
  }

  // 5. Lists per kind and the combined ranking (per casing: the best
  //    candidate of each kind; score = sum of the CMC shares).
  std::map<std::int64_t, CombinedCandidate> by_casing;
  for (std::size_t qi = 0; qi < queries.size(); ++qi) {
    for (const Candidate& c : lists[qi]) {
      CombinedCandidate& cc = by_casing[c.casing_id];
      cc.casing_id = c.casing_id;
      auto& slot = queries[qi].kind == SignatureKind::kBreechFace ? cc.breech_face : cc.firing_pin;
      if (!slot || CandidateRanksBefore(c, *slot)) slot = c;
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
