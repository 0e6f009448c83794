// SearchService: Search (server streaming: progress, then the result) and GetSearch.
#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <thread>

#include "ballistics/evidence.h"
#include "ballistics/index.h"
#include "ballistics/preprocess.h"
#include "ballistics/store.h"
#include "ballistics/v1/search.grpc.pb.h"
#include "search_backend.h"
#include "shard_protocol.h"
#include "services.h"

namespace ballistics::service {
namespace {

using grpc::ServerContext;
using grpc::StatusCode;
namespace v1 = ::ballistics::v1;
using store::ApiRole;
using nlohmann::json;

constexpr const char* kSearch = "/ballistics.v1.SearchService/Search";
constexpr const char* kGetSearch = "/ballistics.v1.SearchService/GetSearch";

json ScoreJson(const Candidate& c) {
  json j{{"signature_id", c.signature_id}, {"coarse_score", c.coarse_score}, {"coarse_rank", c.coarse_rank},
         {"score", c.score}};
  if (c.comparison) {
    const ComparisonResult& r = *c.comparison;
    j["kind"] = std::string(SignatureKindName(r.kind));
    j["cmc"] = r.cmc;
    j["cells"] = r.cells;
    j["ccf"] = r.ccf;
    j["theta_deg"] = r.theta_deg;
    j["dx_um"] = r.dx_um;
    j["dy_um"] = r.dy_um;
    j["identification"] = r.identification;
  }
  return j;
}

// The stored reference models (`ballisticsctl evidence build-reference
// --database-url`) for the current pipeline version; a kind without one gets no LR.
struct EvidenceModels {
  std::optional<evidence::EvidenceModel> bf, fp;
};

EvidenceModels LoadEvidenceModels(store::EvidenceDb& db, const std::string& calibre) {
  EvidenceModels out;
  for (SignatureKind kind : {SignatureKind::kBreechFace, SignatureKind::kFiringPin}) {
    auto rec = db.FindReferenceModel(kind, calibre, std::string(kPipelineVersion));
    if (!rec.ok()) continue;
    auto m = evidence::ModelFromJson(rec->params_json);
    if (m.ok()) (kind == SignatureKind::kBreechFace ? out.bf : out.fp) = std::move(m).value();
  }
  return out;
}

// Adds the LR and its basis to a score's detail JSON (kept with the comparison).
json AddEvidence(const EvidenceModels& models, json j) {
  if (!j.contains("cmc") || !j.contains("cells")) return j;
  const bool bf = j.value("kind", std::string("BF")) == "BF";
  const auto& m = bf ? models.bf : models.fp;
  auto lr = evidence::EvaluateLr(m ? &*m : nullptr, {j["cmc"].get<int>(), j["cells"].get<int>()});
  if (!lr.ok()) return j;
  if (lr->available) j["log10_lr"] = lr->log10_lr;
  j["lr_basis"] = lr->basis;
  return j;
}

// Casing metadata read under row-level security (a pooled scoped connection),
// cached per search.
class CasingInfo {
 public:
  explicit CasingInfo(store::Store& st) : st_(st) {}
  const store::StoredCasing* Get(std::int64_t id) {
    auto it = cache_.find(id);
    if (it == cache_.end()) {
      auto c = st_.GetCasing(id);
      it = cache_.emplace(id, c.ok() ? std::optional<store::StoredCasing>(std::move(*c)) : std::nullopt).first;
    }
    return it->second ? &*it->second : nullptr;
  }

 private:
  store::Store& st_;
  std::map<std::int64_t, std::optional<store::StoredCasing>> cache_;
};

void FillCandidate(CasingInfo& info, std::int64_t casing_id, v1::Candidate* c) {
  c->set_casing_id(casing_id);
  if (const store::StoredCasing* s = info.Get(casing_id)) {
    c->set_agency(s->metadata.agency);
    c->set_case_number(s->metadata.case_number);
    c->set_exhibit_id(s->metadata.exhibit_id);
    c->set_calibre(s->metadata.calibre);
    c->set_source(SourceToProto(s->metadata.source));
  }
}

// Builds the proto lists from stored comparison rows (the same path for Search
// and GetSearch, so both return exactly what was recorded).
void FillLists(const std::vector<store::ComparisonRow>& rows, CasingInfo& info, v1::SearchResult* out) {
  for (const auto& row : rows) {
    const json d = json::parse(row.detail_json, nullptr, false);
    v1::Candidate* c = row.list == "BF" ? out->add_breech_face()
                       : row.list == "FP" ? out->add_firing_pin()
                                          : out->add_combined();
    FillCandidate(info, row.target_casing_id, c);
    c->set_rank(row.rank);
    c->set_comparison_id(row.id);
    if (row.score) c->set_score(*row.score);
    if (row.coarse_score) c->set_coarse_score(*row.coarse_score);
    // No basis recorded: no calibrated model was available, and the basis says so.
    if (d.is_object() && d.contains("bf")) {
      CmcScoreFromJson(d["bf"], v1::BREECH_FACE, evidence::kNoLrBasis, c->mutable_breech_face());
    }
    if (d.is_object() && d.contains("fp")) {
      CmcScoreFromJson(d["fp"], v1::FIRING_PIN, evidence::kNoLrBasis, c->mutable_firing_pin());
    }
  }
}

class SearchServiceImpl final : public v1::SearchService::Service {
 public:
  // The evidence connections (reference models) are pooled like the others:
  // at most one per running search and one spare, keyed by the scoped URL.
  explicit SearchServiceImpl(ServiceContext& ctx)
      : ctx_(ctx),
        evidence_pool_(ctx.config.database_url, std::max(1, ctx.config.max_concurrent_searches) + 1,
                       std::chrono::milliseconds(ctx.config.db_pool_wait_ms),
                       [](const std::string& url) { return store::EvidenceDb::Connect(url); }) {}

  grpc::Status Search(ServerContext* sc, const v1::SearchRequest* req,
                      grpc::ServerWriter<v1::SearchUpdate>* writer) override {
    Call call(ctx_, sc, kSearch);
    return call.Finish(Run(call, sc, *req, writer));
  }

  grpc::Status GetSearch(ServerContext* sc, const v1::GetSearchRequest* req, v1::SearchResult* out) override {
    Call call(ctx_, sc, kGetSearch);
    return call.Finish(Get(call, *req, out));
  }

 private:
  grpc::Status Run(Call& call, ServerContext* sc, const v1::SearchRequest& req,
                   grpc::ServerWriter<v1::SearchUpdate>* writer) {
    grpc::Status st = call.Authorize({ApiRole::kExaminer, ApiRole::kAdmin});
    if (!st.ok()) return st;
    call.AddRecord("casing:" + std::to_string(req.casing_id()));
    st = call.CheckCasingAccess(req.casing_id());
    if (!st.ok()) return st;
    if (!ctx_.search) return grpc::Status(StatusCode::UNAVAILABLE, "the search index is not loaded");
    if (req.top_n() < 0 || req.top_n() > 200) {
      return grpc::Status(StatusCode::INVALID_ARGUMENT, "top_n " + std::to_string(req.top_n()) + " is not in 0..200");
    }
    if (req.rerank_k() < 0) {
      return grpc::Status(StatusCode::INVALID_ARGUMENT, "rerank_k " + std::to_string(req.rerank_k()) + " is negative");
    }
    if (req.screen_k() < -1) {
      return grpc::Status(StatusCode::INVALID_ARGUMENT,
                          "screen_k " + std::to_string(req.screen_k()) + " is below -1 (-1 = no screening)");
    }

    ballistics::SearchRequest r;
    r.query.casing_id = req.casing_id();
    r.top_n = req.top_n() ? req.top_n() : 20;
    r.rerank_k = req.rerank_k();
    r.screen_k = req.screen_k();
    const v1::SearchFilter& f = req.filter();
    for (int k : f.kinds()) {
      auto kind = KindFromProto(k, "search filter");
      if (!kind.ok()) return ToGrpc(kind.status());
      r.filter.kinds.push_back(*kind);
    }
    for (const auto& c : f.calibres()) r.filter.calibres.push_back(c);
    for (int s : f.sources()) {
      auto src = SourceFromProto(s);
      if (!src.ok()) return ToGrpc(src.status());
      r.filter.sources.push_back(*src);
    }
    if (f.has_captured_after()) r.filter.captured_after_unix = f.captured_after().seconds();
    if (f.has_captured_before()) r.filter.captured_before_unix = f.captured_before().seconds();
    // Agency scoping of the candidates: only agencies the caller may read.
    if (call.is_admin()) {
      for (const auto& a : f.agencies()) r.filter.agencies.push_back(a);
    } else {
      auto visible = call.VisibleAgencies();
      if (!visible.ok()) return ToGrpc(visible.status());
      for (const auto& a : f.agencies()) {
        if (std::find(visible->begin(), visible->end(), a) == visible->end()) {
          return grpc::Status(StatusCode::PERMISSION_DENIED, "agency '" + a + "' does not share with " +
                                                                 call.who().agency);
        }
      }
      r.filter.agencies = f.agencies().empty() ? *visible
                                               : std::vector<std::string>(f.agencies().begin(), f.agencies().end());
    }

    auto db = call.ScopedDb();
    if (!db.ok()) return ToGrpc(db.status());
    std::string request_json;
    (void)google::protobuf::util::MessageToJsonString(req, &request_json);
    auto search_id = (*db)->CreateSearch(call.who().agency_id, req.casing_id(), call.who().holder, request_json);
    if (!search_id.ok()) return ToGrpc(search_id.status());
    call.AddRecord("search:" + std::to_string(*search_id));

    // Queue for a slot; a client that gives up while waiting leaves the queue.
    ctx_.metrics.search_queue_depth++;
    const bool got = ctx_.search_slots->Acquire([sc] { return sc->IsCancelled(); });
    ctx_.metrics.search_queue_depth--;
    if (!got) {
      (void)(*db)->FinishSearch(*search_id, "cancelled", false, 0, 0, 0, {});
      return grpc::Status(StatusCode::CANCELLED, "search cancelled while queued");
    }
    ctx_.metrics.searches_running++;

    // Cancellation (client cancel or deadline) reaches the engine through the
    // flag it polls; a coordinator also gets the deadline for its workers.
    SearchCall search_call;
    search_call.deadline = sc->deadline();
    StatusOr<SearchResults> result = RunWithProgress(
        sc,
        [&](const SearchProgress& progress, const std::atomic<bool>* cancelled) {
          search_call.cancelled = cancelled;
          return ctx_.search->Search(r, progress, search_call);
        },
        [&](SearchStage stage, double overall) {
          v1::SearchUpdate u;
          u.mutable_progress()->set_stage(std::string(SearchStageName(stage)));
          u.mutable_progress()->set_fraction_done(overall);
          return writer->Write(u);
        });
    ctx_.search_slots->Release();
    ctx_.metrics.searches_running--;

    if (!result.ok()) {
      const bool was_cancelled = result.status().code() == ballistics::StatusCode::kCancelled;
      if (was_cancelled) {
        (void)(*db)->FinishSearch(*search_id, "cancelled", false, 0, 0, 0, {});
      } else {
        MarkFailed(call, **db, *search_id, result.status().ToString());
      }
      if (was_cancelled && sc->IsCancelled()) {
        return grpc::Status(StatusCode::CANCELLED, "search cancelled by the client or its deadline");
      }
      return ToGrpc(result.status());
    }
    const SearchResults& res = *result;
    // The reference model of the query casing's calibre when one is stored
    // (marks differ by calibre and action), else the any-calibre one.
    // Without a connection the scores carry no LR (the basis says so), as before.
    auto store_conn = call.ScopedStore();
    std::string query_calibre;
    if (store_conn.ok()) {
      if (auto c = (*store_conn)->GetCasing(req.casing_id()); c.ok()) query_calibre = c->metadata.calibre;
    }
    EvidenceModels evidence_models;
    if (auto evidence_url = call.ScopedUrl(); evidence_url.ok()) {
      if (auto edb = evidence_pool_.Acquire(*evidence_url); edb.ok()) {
        evidence_models = LoadEvidenceModels(**edb, query_calibre);
      }
    }
    auto scored = [&](const Candidate& c) { return AddEvidence(evidence_models, ScoreJson(c)); };

    std::vector<store::NewComparison> rows;
    auto add = [&](const Candidate& c, const char* list, json detail) {
      store::NewComparison n;
      n.target_casing_id = c.casing_id;
      n.list = list;
      n.rank = c.rank;
      n.coarse_score = c.coarse_score;
      n.score = c.score;
      n.detail_json = detail.dump();
      rows.push_back(std::move(n));
    };
    for (const Candidate& c : res.breech_face) add(c, "BF", json{{"bf", scored(c)}});
    for (const Candidate& c : res.firing_pin) add(c, "FP", json{{"fp", scored(c)}});
    for (const CombinedCandidate& cc : res.combined) {
      store::NewComparison n;
      n.target_casing_id = cc.casing_id;
      n.list = "combined";
      n.rank = cc.rank;
      n.score = cc.combined_score;
      json d = json::object();
      if (cc.breech_face) d["bf"] = scored(*cc.breech_face);
      if (cc.firing_pin) d["fp"] = scored(*cc.firing_pin);
      n.detail_json = d.dump();
      rows.push_back(std::move(n));
    }
    auto ids = (*db)->FinishSearch(*search_id, "done", res.partial, res.shards_answered, res.shards_total,
                                   res.signatures_scanned, rows, search_call.missing_shards);
    if (!ids.ok()) {
      // The result's transaction rolled back: the row must not stay 'running'.
      MarkFailed(call, **db, *search_id, "storing the result failed: " + ids.status().ToString());
      return ToGrpc(ids.status());
    }
    auto stored = (*db)->GetSearchComparisons(*search_id);
    if (!stored.ok()) return ToGrpc(stored.status());

    if (!store_conn.ok()) return ToGrpc(store_conn.status());
    CasingInfo info(**store_conn);
    v1::SearchUpdate u;
    v1::SearchResult* out = u.mutable_result();
    out->set_search_id(*search_id);
    out->set_query_casing_id(req.casing_id());
    FillLists(*stored, info, out);
    out->set_shards_answered(res.shards_answered);
    out->set_shards_total(res.shards_total);
    out->set_partial(res.partial);
    for (int shard : search_call.missing_shards) out->add_missing_shards(shard);
    if (res.partial) {
      std::string missing;
      for (int shard : search_call.missing_shards) missing += (missing.empty() ? "" : ",") + std::to_string(shard);
      call.SetDetail("partial: shards " + missing + " did not answer");
    }
    out->set_signatures_scanned(res.signatures_scanned);
    if (!writer->Write(u)) return grpc::Status(StatusCode::CANCELLED, "client went away before the result");
    return grpc::Status::OK;
  }

  grpc::Status Get(Call& call, const v1::GetSearchRequest& req, v1::SearchResult* out) {
    grpc::Status st = call.Authorize({ApiRole::kExaminer, ApiRole::kAgencyReader, ApiRole::kAdmin});
    if (!st.ok()) return st;
    call.AddRecord("search:" + std::to_string(req.search_id()));
    auto db = call.ScopedDb();
    if (!db.ok()) return ToGrpc(db.status());
    auto s = (*db)->GetSearch(req.search_id());  // row-level security: other agencies' searches are NOT_FOUND
    if (!s.ok()) return ToGrpc(s.status());
    auto rows = (*db)->GetSearchComparisons(req.search_id());
    if (!rows.ok()) return ToGrpc(rows.status());
    auto st_conn = call.ScopedStore();
    if (!st_conn.ok()) return ToGrpc(st_conn.status());
    CasingInfo info(**st_conn);
    out->set_search_id(s->id);
    out->set_query_casing_id(s->query_casing_id);
    FillLists(*rows, info, out);
    out->set_shards_answered(s->shards_answered);
    out->set_shards_total(s->shards_total);
    out->set_partial(s->partial);
    for (int shard : s->missing_shards) out->add_missing_shards(shard);
    out->set_signatures_scanned(s->signatures_scanned);
    out->set_status(s->status);
    out->set_failure_reason(s->failure_reason);
    return grpc::Status::OK;
  }

  // Marks the search failed with the reason; when its own connection cannot
  // (the error that failed the search may have broken it), on a fresh one.
  static void MarkFailed(Call& call, store::ApiDb& db, std::int64_t search_id, const std::string& reason) {
    Status s = db.FailSearch(search_id, reason);
    if (!s.ok() && s.code() != ballistics::StatusCode::kNotFound) {
      auto fresh = call.ScopedDb();
      s = fresh.ok() ? (*fresh)->FailSearch(search_id, reason) : fresh.status();
    }
    if (!s.ok()) spdlog::error("search {}: could not be marked failed ({}): {}", search_id, reason, s.ToString());
  }

  ServiceContext& ctx_;
  ConnPool<store::EvidenceDb> evidence_pool_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeSearchService(ServiceContext& ctx) {
  return std::make_unique<SearchServiceImpl>(ctx);
}

}  // namespace ballistics::service
