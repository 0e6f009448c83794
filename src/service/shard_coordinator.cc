#include "shard_coordinator.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "ballistics/store.h"
#include "server.h"
#include "shard_protocol.h"

namespace ballistics::service {
namespace {

namespace v1 = ::ballistics::v1;
using SysClock = std::chrono::system_clock;

struct Worker {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::ShardService::Stub> stub;
};

// What one worker call ended with.
struct WorkerOutcome {
  grpc::Status status;
  std::optional<v1::ShardSearchResult> result;
  double fraction = 0;  // progress 0..1 of this worker's search
};

class ShardCoordinator final : public SearchBackend {
 public:
  ShardCoordinator(std::string url, std::vector<Worker> workers, int timeout_ms)
      : url_(std::move(url)), workers_(std::move(workers)), timeout_ms_(timeout_ms) {}

  using SearchBackend::Search;
  StatusOr<SearchResults> Search(const SearchRequest& request, const SearchProgress& progress,
                                 SearchCall& call) const override;
  // Workers pick new casings up themselves (LISTEN); nothing to do here.
  Status AddCasing(std::int64_t) override { return Status::Ok(); }
  // The workers' sums (GetShardStatus), for the metrics: a worker that does
  // not answer within a second counts 0 until it does.
  std::int64_t size() const override { return Totals().signatures; }
  std::size_t memory_bytes() const override { return static_cast<std::size_t>(Totals().memory_bytes); }

 private:
  struct WorkerTotals {
    std::int64_t signatures = 0;
    std::int64_t memory_bytes = 0;
  };
  // Asked of every worker at most once per kStatusMaxAgeMs (a metrics scrape
  // reads size and memory one after the other).
  WorkerTotals Totals() const;
  StatusOr<v1::ShardSearchRequest> BuildRequest(const SearchRequest& request) const;
  std::vector<WorkerOutcome> FanOut(const std::vector<std::optional<v1::ShardSearchRequest>>& reqs,
                                    SysClock::time_point deadline, const SearchProgress& progress, SearchCall& call,
                                    double lo, double hi) const;

  static constexpr int kStatusMaxAgeMs = 2000;
  mutable std::mutex status_mu_;
  mutable std::chrono::steady_clock::time_point status_at_{};
  mutable WorkerTotals status_{};

  std::string url_;
  std::vector<Worker> workers_;
  int timeout_ms_;
};

ShardCoordinator::WorkerTotals ShardCoordinator::Totals() const {
  std::lock_guard<std::mutex> l(status_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (status_at_ != std::chrono::steady_clock::time_point{} &&
      now - status_at_ < std::chrono::milliseconds(kStatusMaxAgeMs)) {
    return status_;
  }
  WorkerTotals t;
  for (const Worker& w : workers_) {
    grpc::ClientContext ctx;
    ctx.set_deadline(SysClock::now() + std::chrono::seconds(1));
    v1::ShardStatus st;
    if (w.stub->GetShardStatus(&ctx, v1::ShardStatusRequest(), &st).ok()) {
      t.signatures += st.signatures();
      t.memory_bytes += st.memory_bytes();
    }
  }
  status_ = t;
  status_at_ = std::chrono::steady_clock::now();
  return t;
}

StatusOr<v1::ShardSearchRequest> ShardCoordinator::BuildRequest(const SearchRequest& request) const {
  v1::ShardSearchRequest out;
  const SearchQuery& q = request.query;
  if (q.breech_face || q.firing_pin) {
    if (q.breech_face) SignatureToProto(*q.breech_face, out.add_signatures());
    if (q.firing_pin) SignatureToProto(*q.firing_pin, out.add_signatures());
  } else if (q.casing_id) {
    // The query's own shard may be on a worker that is down: read its
    // signatures from the database, not from a worker.
    BALLISTICS_ASSIGN_OR_RETURN(auto st, store::Store::Connect(url_));
    BALLISTICS_ASSIGN_OR_RETURN(auto sigs, st->GetSignatures(*q.casing_id));
    if (sigs.empty()) return NotFound("search: casing " + std::to_string(*q.casing_id) + " has no signatures");
    for (const auto& s : sigs) SignatureToProto(s.signature, out.add_signatures());
  } else {
    return InvalidArgument("search: the query has neither signatures nor a casing id");
  }
  if (q.casing_id) out.set_query_casing_id(*q.casing_id);
  FilterToProto(request.filter, out.mutable_filter());
  if (q.casing_id) out.mutable_filter()->add_exclude_casing_ids(*q.casing_id);
  out.set_top_n(request.top_n);
  out.set_rerank_k(request.rerank_k);
  out.set_screen_k(request.screen_k);
  if (request.max_rotation_deg) out.set_max_rotation_deg(*request.max_rotation_deg);
  return out;
}

// Calls SearchShards on every worker whose request is set, all at once, until
// `deadline`; their progress moves the overall bar from `lo` to `hi`. A
// cancellation of the call is passed on to the workers.
std::vector<WorkerOutcome> ShardCoordinator::FanOut(const std::vector<std::optional<v1::ShardSearchRequest>>& reqs,
                                                    SysClock::time_point deadline, const SearchProgress& progress,
                                                    SearchCall& call, double lo, double hi) const {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WorkerOutcome> outcomes(workers_.size());
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts(workers_.size());
  int running = 0;
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (!reqs[i]) {
      outcomes[i].fraction = 1.0;
      continue;
    }
    contexts[i] = std::make_unique<grpc::ClientContext>();
    contexts[i]->set_deadline(deadline);
    ++running;
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (!reqs[i]) continue;
    threads.emplace_back([&, i] {
      auto reader = workers_[i].stub->SearchShards(contexts[i].get(), *reqs[i]);
      v1::ShardSearchUpdate u;
      std::optional<v1::ShardSearchResult> result;
      while (reader->Read(&u)) {
        if (u.has_progress()) {
          std::lock_guard<std::mutex> l(mu);
          outcomes[i].fraction = std::max(outcomes[i].fraction, u.progress().fraction_done());
          cv.notify_all();
        } else if (u.has_result()) {
          result = std::move(*u.mutable_result());
        }
      }
      grpc::Status st = reader->Finish();
      std::lock_guard<std::mutex> l(mu);
      outcomes[i].status = st;
      if (st.ok() && result) outcomes[i].result = std::move(result);
      outcomes[i].fraction = 1.0;
      --running;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> l(mu);
    bool cancel_sent = false;
    double last = -1;
    while (running > 0) {
      cv.wait_for(l, std::chrono::milliseconds(50));
      if (!cancel_sent && call.cancelled != nullptr && call.cancelled->load()) {
        for (auto& c : contexts) {
          if (c) c->TryCancel();
        }
        cancel_sent = true;
      }
      double sum = 0;
      for (const auto& o : outcomes) sum += o.fraction;
      const double overall = lo + (hi - lo) * sum / std::max<std::size_t>(workers_.size(), 1);
      if (progress && overall > last) {
        last = overall;
        const auto [stage, f] = StageOfOverall(overall);
        l.unlock();
        progress(stage, f);
        l.lock();
      }
    }
  }
  for (auto& t : threads) t.join();
  return outcomes;
}

// Two phases (docs/search.md, "Two-phase merge"): every worker's coarse top K,
// merged into the global top K; then each worker reranks only its share of
// that. K CMC comparisons per kind in all, as in one process, instead of K per
// worker. With screening ("Screening") a middle phase screens the workers'
// shares of the global coarse top screen K, so that the rerank gets the same
// candidates as in one process. A worker that fails a phase leaves its shards
// out (partial).
StatusOr<SearchResults> ShardCoordinator::Search(const SearchRequest& request, const SearchProgress& progress,
                                                 SearchCall& call) const {
  if (request.top_n < 1) return InvalidArgument("search: top_n=" + std::to_string(request.top_n) + " must be >= 1");
  if (request.rerank_k < 0) {
    return InvalidArgument("search: rerank_k=" + std::to_string(request.rerank_k) + " must be >= 0");
  }
  BALLISTICS_ASSIGN_OR_RETURN(const v1::ShardSearchRequest req, BuildRequest(request));
  if (progress) progress(SearchStage::kDescriptor, 1.0);

  // Each worker gets until the earlier of its own timeout and the caller's
  // deadline less a margin (storing and sending the merged result).
  const auto now = SysClock::now();
  auto deadline = now + std::chrono::milliseconds(timeout_ms_);
  if (call.deadline != SysClock::time_point::max()) {
    const auto left = call.deadline - now;
    const auto margin = std::min<SysClock::duration>(std::chrono::seconds(2), left / 10);
    deadline = std::min(deadline, call.deadline - margin);
  }
  auto failure = [&](const std::string& phase, std::size_t i, const WorkerOutcome& o) {
    return workers_[i].address + " (" + phase + "): " + std::to_string(o.status.error_code()) + " " +
           o.status.error_message();
  };

  // Phase 1: coarse top K of every worker (the coarse share of the bar). It
  // gets a third of the time left, so that a hanging worker still leaves the
  // others time for phase 2; with the default 60 s shard timeout that is 20 s,
  // against a coarse stage of 0.75 s at 1 M signatures on an idle machine and
  // 6 s under load 15 (docs/benchmarks.md, "Scale").
  v1::ShardSearchRequest coarse_req = req;
  coarse_req.set_coarse_only(true);
  const auto coarse_deadline = SysClock::now() + (deadline - SysClock::now()) / 3;
  const std::vector<WorkerOutcome> first =
      FanOut(std::vector<std::optional<v1::ShardSearchRequest>>(workers_.size(), coarse_req), coarse_deadline, progress,
             call, OverallFraction(SearchStage::kCoarse, 0.0), OverallFraction(SearchStage::kRerank, 0.0));
  if (call.cancelled != nullptr && call.cancelled->load()) return Cancelled("search cancelled");
  std::vector<std::string> failures;
  std::vector<std::set<int>> held(workers_.size());
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (first[i].result) {
      held[i].insert(first[i].result->shards().begin(), first[i].result->shards().end());
    } else {
      failures.push_back(failure("coarse", i, first[i]));
    }
  }
  if (failures.size() == workers_.size()) {
    std::string all;
    bool all_invalid = true;  // the request itself was refused: say so, not "unavailable"
    for (const auto& o : first) all_invalid = all_invalid && o.status.error_code() == grpc::INVALID_ARGUMENT;
    for (const auto& f : failures) all += (all.empty() ? "" : "; ") + f;
    if (all_invalid) return InvalidArgument("search: refused by the shard workers (" + all + ")");
    return Unavailable("search: no shard worker answered (" + all + ")");
  }

  // The global coarse top K per kind (the top screen K when screening;
  // replicas: one copy of each signature), ranked.
  const SearchEngineConfig defaults;
  const int k = request.rerank_k > 0 ? request.rerank_k : defaults.default_rerank_k;
  const int kc = CoarseKeptBeforeScreen(k, defaults.screen_coarse_share);
  const int screen_k[2] = {ScreenKFor(request, SignatureKind::kBreechFace, k, defaults),
                           ScreenKFor(request, SignatureKind::kFiringPin, k, defaults)};
  std::vector<bool> ok(workers_.size());
  for (std::size_t i = 0; i < workers_.size(); ++i) ok[i] = first[i].result.has_value();
  // Each hit goes to the first worker still answering that holds its shard.
  auto share_out = [&](const std::vector<CoarseHit>& hits, bool screen,
                       std::vector<std::optional<v1::ShardSearchRequest>>* requests) {
    for (const CoarseHit& h : hits) {
      for (std::size_t i = 0; i < workers_.size(); ++i) {
        if (!ok[i] || !held[i].count(h.shard)) continue;
        auto& r = (*requests)[i];
        if (!r) {
          r = req;
          r->set_rerank_given(true);
          r->set_screen_given(screen);
        }
        HitToProto(h, r->add_rerank());
        break;
      }
    }
  };
  SearchResults out;
  std::vector<CoarseHit> global[2];
  for (int kind = 0; kind < 2; ++kind) {
    std::vector<CoarseHit>& all = global[kind];
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (!first[i].result) continue;
      const auto& list = kind == 0 ? first[i].result->coarse_breech_face() : first[i].result->coarse_firing_pin();
      for (const auto& h : list) all.push_back(HitFromProto(h));
    }
    std::sort(all.begin(), all.end(), HitBefore);
    all.erase(std::unique(all.begin(), all.end(),
                          [](const CoarseHit& a, const CoarseHit& b) { return a.signature_id == b.signature_id; }),
              all.end());
    const int keep = screen_k[kind] > 0 ? screen_k[kind] : k;
    if (static_cast<int>(all.size()) > keep) all.resize(keep);
    for (std::size_t r = 0; r < all.size(); ++r) all[r].rank = static_cast<int>(r) + 1;
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (!first[i].result) continue;
    out.signatures_scanned += first[i].result->signatures_scanned();
    out.coarse_seconds = std::max(out.coarse_seconds, first[i].result->coarse_seconds());
  }

  // Phase 2 (screening, docs/search.md "Screening"): the coarse top kc stay;
  // each worker screens its share of the ranks below and returns its best
  // K - kc; the global best K - kc of those join the kc.
  std::vector<std::optional<v1::ShardSearchRequest>> screening(workers_.size());
  bool screens[2];  // a kind screens when it has ranks below the coarse-kept ones
  for (int kind = 0; kind < 2; ++kind) {
    screens[kind] = screen_k[kind] > 0 && static_cast<int>(global[kind].size()) > kc;
    if (!screens[kind]) continue;
    share_out(std::vector<CoarseHit>(global[kind].begin() + kc, global[kind].end()), true, &screening);
  }
  if (std::any_of(screening.begin(), screening.end(), [](const auto& r) { return r.has_value(); })) {
    const auto screen_deadline = SysClock::now() + (deadline - SysClock::now()) / 2;
    const std::vector<WorkerOutcome> screened = FanOut(screening, screen_deadline, progress, call,
                                                       OverallFraction(SearchStage::kScreen, 0.0),
                                                       OverallFraction(SearchStage::kRerank, 0.0));
    if (call.cancelled != nullptr && call.cancelled->load()) return Cancelled("search cancelled");
    std::vector<CoarseHit> by_screen[2];
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (!screening[i]) continue;
      if (!screened[i].result) {
        failures.push_back(failure("screen", i, screened[i]));
        ok[i] = false;
        continue;
      }
      out.screened += screened[i].result->screened();
      out.screen_seconds = std::max(out.screen_seconds, screened[i].result->screen_seconds());
      for (const auto& h : screened[i].result->coarse_breech_face()) by_screen[0].push_back(HitFromProto(h));
      for (const auto& h : screened[i].result->coarse_firing_pin()) by_screen[1].push_back(HitFromProto(h));
    }
    for (int kind = 0; kind < 2; ++kind) {
      if (!screens[kind]) continue;
      std::vector<CoarseHit>& s = by_screen[kind];
      std::sort(s.begin(), s.end(), ScreenedBefore);
      if (static_cast<int>(s.size()) > k - kc) s.resize(k - kc);
      for (std::size_t r = 0; r < s.size(); ++r) s[r].screen_rank = static_cast<int>(r) + 1;
      global[kind].resize(kc);
      global[kind].insert(global[kind].end(), s.begin(), s.end());
    }
  }

  // Phase 3: each worker reranks its share (workers without one are not called).
  std::vector<std::optional<v1::ShardSearchRequest>> second(workers_.size());
  for (int kind = 0; kind < 2; ++kind) share_out(global[kind], false, &second);
  const std::vector<WorkerOutcome> outcomes = FanOut(second, deadline, progress, call,
                                                     OverallFraction(SearchStage::kRerank, 0.0),
                                                     OverallFraction(SearchStage::kMerge, 0.0));
  if (call.cancelled != nullptr && call.cancelled->load()) return Cancelled("search cancelled");

  // Merge.
  std::set<int> answered;
  std::set<std::int64_t> seen_bf, seen_fp, seen_casing;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (!ok[i]) continue;
    if (second[i] && !outcomes[i].result) {
      failures.push_back(failure("rerank", i, outcomes[i]));
      continue;
    }
    answered.insert(held[i].begin(), held[i].end());
    if (!second[i]) continue;
    const v1::ShardSearchResult& r = *outcomes[i].result;
    for (const auto& c : r.breech_face()) {
      if (seen_bf.insert(c.signature_id()).second) out.breech_face.push_back(CandidateFromProto(c));
    }
    for (const auto& c : r.firing_pin()) {
      if (seen_fp.insert(c.signature_id()).second) out.firing_pin.push_back(CandidateFromProto(c));
    }
    for (const auto& cc : r.combined()) {
      if (!seen_casing.insert(cc.casing_id()).second) continue;
      CombinedCandidate c;
      c.casing_id = cc.casing_id();
      c.combined_score = cc.combined_score();
      if (cc.has_breech_face()) c.breech_face = CandidateFromProto(cc.breech_face());
      if (cc.has_firing_pin()) c.firing_pin = CandidateFromProto(cc.firing_pin());
      out.combined.push_back(std::move(c));
    }
    out.reranked += r.reranked();
    out.rerank_seconds = std::max(out.rerank_seconds, r.rerank_seconds());
  }
  if (answered.empty()) {
    std::string all;
    for (const auto& f : failures) all += (all.empty() ? "" : "; ") + f;
    return Unavailable("search: no shard worker answered (" + all + ")");
  }
  for (const auto& f : failures) spdlog::warn("search: shard worker did not answer: {}", f);
  for (auto* list : {&out.breech_face, &out.firing_pin}) {
    std::sort(list->begin(), list->end(), CandidateRanksBefore);
    if (static_cast<int>(list->size()) > request.top_n) list->resize(request.top_n);
    for (std::size_t i = 0; i < list->size(); ++i) (*list)[i].rank = static_cast<int>(i) + 1;
  }
  std::sort(out.combined.begin(), out.combined.end(), [](const CombinedCandidate& a, const CombinedCandidate& b) {
    if (a.combined_score != b.combined_score) return a.combined_score > b.combined_score;
    return a.casing_id < b.casing_id;
  });
  if (static_cast<int>(out.combined.size()) > request.top_n) out.combined.resize(request.top_n);
  for (std::size_t i = 0; i < out.combined.size(); ++i) out.combined[i].rank = static_cast<int>(i) + 1;

  out.shards_total = store::kSignatureShards;
  out.shards_answered = static_cast<int>(answered.size());
  out.partial = out.shards_answered < out.shards_total;
  call.missing_shards.clear();
  for (int s = 0; s < store::kSignatureShards; ++s) {
    if (!answered.count(s)) call.missing_shards.push_back(s);
  }
  if (progress) progress(SearchStage::kMerge, 1.0);
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<SearchBackend>> MakeShardCoordinator(const ServerConfig& config) {
  if (config.shard_workers.empty()) return InvalidArgument("coordinator: no shard workers (give shard-workers)");
  if (config.shard_timeout_ms < 1) {
    return InvalidArgument("coordinator: shard timeout " + std::to_string(config.shard_timeout_ms) +
                           " ms is not positive");
  }
  BALLISTICS_ASSIGN_OR_RETURN(
      ShardTls tls, LoadShardTls(config.insecure, config.tls_cert_file, config.tls_key_file, config.shard_ca_file));
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (tls.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    // The worker's certificate must chain to the roots (and name the worker's
    // host); ours, presented as the client certificate, is what the worker checks.
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = tls.trusted_roots;
    ssl.pem_private_key = tls.private_key;
    ssl.pem_cert_chain = tls.cert_chain;
    creds = grpc::SslCredentials(ssl);
  }
  std::vector<Worker> workers;
  for (const std::string& address : config.shard_workers) {
    if (address.empty() || address.find(':') == std::string::npos) {
      return InvalidArgument("coordinator: shard worker address '" + address + "' is not host:port");
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kShardMaxMessageBytes);
    args.SetMaxSendMessageSize(kShardMaxMessageBytes);
    // A restarted worker is used again within about a second, not after
    // gRPC's default reconnect backoff (up to two minutes).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    Worker w;
    w.address = address;
    w.channel = grpc::CreateCustomChannel(address, creds, args);
    w.stub = v1::ShardService::NewStub(w.channel);
    workers.push_back(std::move(w));
  }
  spdlog::info("search: coordinator over {} shard worker(s), timeout {} ms, {}", workers.size(),
               config.shard_timeout_ms, tls.insecure ? "PLAINTEXT" : "mutual TLS");
  return std::unique_ptr<SearchBackend>(
      new ShardCoordinator(config.database_url, std::move(workers), config.shard_timeout_ms));
}

}  // namespace ballistics::service
