#include "shard_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>

#include "metrics.h"
#include "search_backend.h"
#include "shard_protocol.h"

namespace ballistics::service {
namespace {

namespace v1 = ::ballistics::v1;

grpc::Status Grpc(const Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), s.message());
}

constexpr const char* kSearchShardsMethod = "/ballistics.v1.ShardService/SearchShards";

class ShardServiceImpl final : public v1::ShardService::Service {
 public:
  ShardServiceImpl(const LocalSearchBackend& backend, int max_concurrent, Metrics& metrics)
      : backend_(backend), metrics_(metrics), free_(max_concurrent) {}

  // The searches answered, by phase (docs/search.md, "Two-phase merge"):
  // coarse (phase 1), screen (the middle phase with screening), rerank (the
  // last phase), full (one-phase call).
  std::string PhaseMetrics() const {
    std::string out =
        "# HELP ballistics_shard_searches_total Searches this worker answered (OK), by phase.\n"
        "# TYPE ballistics_shard_searches_total counter\n";
    for (int p = 0; p < 4; ++p) {
      out += "ballistics_shard_searches_total{phase=\"" + std::string(kPhases[p]) + "\"} " +
             std::to_string(served_[p].load()) + "\n";
    }
    return out;
  }

  grpc::Status GetShardStatus(grpc::ServerContext*, const v1::ShardStatusRequest*, v1::ShardStatus* out) override {
    for (int s : backend_.shards()) out->add_shards(s);
    out->set_signatures(backend_.size());
    out->set_memory_bytes(static_cast<std::int64_t>(backend_.memory_bytes()));
    out->set_rerank_held(backend_.rerank_cache().held());
    out->set_rerank_hits(backend_.rerank_cache().hits());
    out->set_rerank_misses(backend_.rerank_cache().misses());
    return grpc::Status::OK;
  }

  grpc::Status SearchShards(grpc::ServerContext* sc, const v1::ShardSearchRequest* req,
                            grpc::ServerWriter<v1::ShardSearchUpdate>* writer) override {
    const auto t0 = std::chrono::steady_clock::now();
    const grpc::Status s = Serve(sc, req, writer);
    metrics_.RecordRpc(kSearchShardsMethod, std::string(StatusCodeName(static_cast<StatusCode>(s.error_code()))),
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (s.ok()) ++served_[req->coarse_only() ? 0 : req->screen_given() ? 3 : req->rerank_given() ? 1 : 2];
    return s;
  }

 private:
  static constexpr const char* kPhases[4] = {"coarse", "rerank", "full", "screen"};

  grpc::Status Serve(grpc::ServerContext* sc, const v1::ShardSearchRequest* req,
                     grpc::ServerWriter<v1::ShardSearchUpdate>* writer) {
    SearchRequest r;
    if (req->query_casing_id() != 0) r.query.casing_id = req->query_casing_id();
    for (const auto& p : req->signatures()) {
      auto sig = SignatureFromProto(p);
      if (!sig.ok()) return Grpc(sig.status());
      auto& slot = sig->kind == SignatureKind::kBreechFace ? r.query.breech_face : r.query.firing_pin;
      if (slot) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the query has two signatures of one kind");
      slot = std::move(*sig);
    }
    if (!r.query.breech_face && !r.query.firing_pin) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the query has no signatures");
    }
    auto filter = FilterFromProto(req->filter());
    if (!filter.ok()) return Grpc(filter.status());
    r.filter = std::move(*filter);
    r.top_n = req->top_n();
    r.rerank_k = req->rerank_k();
    if (req->has_max_rotation_deg()) r.max_rotation_deg = req->max_rotation_deg();
    r.coarse_only = req->coarse_only();
    r.screen_k = req->screen_k();
    r.screen_only = req->screen_given();
    if (req->rerank_given()) {
      r.rerank_hits.emplace();
      for (const auto& h : req->rerank()) r.rerank_hits->push_back(HitFromProto(h));
    }

    if (!Acquire(sc)) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while queued");
    metrics_.searches_running++;
    // A cancellation (coordinator cancel, deadline) reaches the engine through the flag.
    const StatusOr<SearchResults> result = RunWithProgress(
        sc,
        [&](const SearchProgress& progress, const std::atomic<bool>* cancelled) {
          return backend_.Search(r, progress, cancelled);
        },
        [&](SearchStage stage, double overall) {
          v1::ShardSearchUpdate u;
          u.mutable_progress()->set_stage(std::string(SearchStageName(stage)));
          u.mutable_progress()->set_fraction_done(overall);
          return writer->Write(u);
        });
    metrics_.searches_running--;
    Release();
    if (!result.ok()) return Grpc(result.status());
    const SearchResults& res = *result;
    v1::ShardSearchUpdate u;
    v1::ShardSearchResult* out = u.mutable_result();
    for (int s : backend_.shards()) out->add_shards(s);
    for (const Candidate& c : res.breech_face) CandidateToProto(c, out->add_breech_face());
    for (const Candidate& c : res.firing_pin) CandidateToProto(c, out->add_firing_pin());
    for (const CombinedCandidate& cc : res.combined) {
      v1::ShardCombined* p = out->add_combined();
      p->set_casing_id(cc.casing_id);
      p->set_combined_score(cc.combined_score);
      if (cc.breech_face) CandidateToProto(*cc.breech_face, p->mutable_breech_face());
      if (cc.firing_pin) CandidateToProto(*cc.firing_pin, p->mutable_firing_pin());
    }
    out->set_signatures_scanned(res.signatures_scanned);
    out->set_reranked(res.reranked);
    out->set_coarse_seconds(res.coarse_seconds);
    out->set_rerank_seconds(res.rerank_seconds);
    out->set_screened(res.screened);
    out->set_screen_seconds(res.screen_seconds);
    for (const CoarseHit& h : res.coarse_breech_face) HitToProto(h, out->add_coarse_breech_face());
    for (const CoarseHit& h : res.coarse_firing_pin) HitToProto(h, out->add_coarse_firing_pin());
    if (!writer->Write(u)) return grpc::Status(grpc::StatusCode::CANCELLED, "coordinator went away");
    return grpc::Status::OK;
  }

  bool Acquire(grpc::ServerContext* sc) {
    std::unique_lock<std::mutex> l(slots_mu_);
    while (free_ == 0) {
      if (sc->IsCancelled()) return false;
      slots_cv_.wait_for(l, std::chrono::milliseconds(50));
    }
    --free_;
    return true;
  }
  void Release() {
    std::lock_guard<std::mutex> l(slots_mu_);
    ++free_;
    slots_cv_.notify_one();
  }

  const LocalSearchBackend& backend_;
  Metrics& metrics_;
  std::atomic<std::int64_t> served_[4] = {};
  std::mutex slots_mu_;
  std::condition_variable slots_cv_;
  int free_;
};

}  // namespace

class ShardServer::Impl {
 public:
  Metrics metrics;
  std::unique_ptr<LocalSearchBackend> backend;
  std::unique_ptr<ShardServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  // Last: destroyed first, it reads the members above when scraped.
  std::unique_ptr<MetricsHttpServer> metrics_http;
  int port = 0;
  bool shut_down = false;
};

ShardServer::ShardServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShardServer::~ShardServer() { Shutdown(std::chrono::milliseconds(0)); }
int ShardServer::port() const { return impl_->port; }
int ShardServer::metrics_port() const { return impl_->metrics_http ? impl_->metrics_http->port() : 0; }

StatusOr<std::unique_ptr<ShardServer>> ShardServer::Start(const ShardServerConfig& config) {
  if (config.database_url.empty()) return InvalidArgument("shard worker: no database url");
  if (config.shards.empty()) return InvalidArgument("shard worker: no shards (give shards = e.g. 0-7)");
  if (config.max_concurrent_searches < 1) {
    return InvalidArgument("shard worker: max_concurrent_searches " + std::to_string(config.max_concurrent_searches) +
                           " is not positive");
  }
  BALLISTICS_ASSIGN_OR_RETURN(ShardTls tls,
                              LoadShardTls(config.insecure, config.tls_cert_file, config.tls_key_file, config.ca_file));
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (tls.insecure) {
    creds = grpc::InsecureServerCredentials();
  } else {
    // Mutual TLS: the coordinator proves itself with a certificate chaining to
    // ca_file; a client without one is refused in the handshake.
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = tls.trusted_roots;
    ssl.pem_key_cert_pairs.push_back({tls.private_key, tls.cert_chain});
    creds = grpc::SslServerCredentials(ssl);
  }
  auto impl = std::make_unique<Impl>();
  BALLISTICS_ASSIGN_OR_RETURN(impl->backend,
                              LocalSearchBackend::Load(config.database_url, config.shards, config.search_threads,
                                                       /*listen=*/true, config.rerank_cache_mb));
  impl->service = std::make_unique<ShardServiceImpl>(*impl->backend, config.max_concurrent_searches, impl->metrics);
  impl->metrics.SetGaugeSource([p = impl.get()] {
    return MetricGauge("process_resident_memory_bytes", "Resident memory of ballisticsd.", "",
                       static_cast<double>(ResidentMemoryBytes())) +
           SearchIndexMetrics(*p->backend) + p->service->PhaseMetrics();
  });
  // Bound only when configured: the worker's gRPC port checks client
  // certificates, this plain-HTTP one nothing (operations.md, "Monitoring").
  if (!config.metrics_listen.empty()) {
    BALLISTICS_ASSIGN_OR_RETURN(impl->metrics_http, MetricsHttpServer::Start(config.metrics_listen, &impl->metrics));
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, creds, &impl->port);
  builder.SetMaxReceiveMessageSize(kShardMaxMessageBytes);
  builder.SetMaxSendMessageSize(kShardMaxMessageBytes);
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) return Unavailable("shard worker: cannot listen on " + config.listen);
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  std::string list;
  for (int s : config.shards) list += (list.empty() ? "" : ",") + std::to_string(s);
  spdlog::info("shard worker listening on {} (port {}, {}), shards {}, {} signatures, metrics {}", config.listen,
               impl->port, tls.insecure ? "PLAINTEXT" : "mutual TLS", list, impl->backend->size(),
               impl->metrics_http ? "on port " + std::to_string(impl->metrics_http->port()) : std::string("off"));
  return std::unique_ptr<ShardServer>(new ShardServer(std::move(impl)));
}

void ShardServer::Shutdown(std::chrono::milliseconds grace) {
  if (!impl_ || impl_->shut_down) return;
  impl_->shut_down = true;
  if (impl_->server) {
    impl_->server->GetHealthCheckService()->SetServingStatus(false);
    impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
    impl_->server->Wait();
  }
  // Before the backend: a scrape reads it.
  impl_->metrics_http.reset();
  impl_->backend.reset();
  spdlog::info("shard worker stopped");
}

}  // namespace ballistics::service
