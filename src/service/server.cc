#include "server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "context.h"
#include "search_backend.h"
#include "services.h"
#include "shard_protocol.h"

namespace ballistics::service {

class Server::Impl {
 public:
  ServiceContext ctx;
  std::vector<std::unique_ptr<grpc::Service>> services;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  int port = 0;
  bool shut_down = false;
  // Audit anchor: the head published in the log and the metrics.
  std::mutex anchor_mu;
  std::condition_variable anchor_cv;
  bool anchor_stop = false;
  std::int64_t anchor_seq = -1;
  std::string anchor_hash;
  std::thread anchor_thread;
  // Holds this process's search instance lock for its lifetime (ApiDb::ClaimSearchInstance).
  std::unique_ptr<store::ApiDb> instance_db;
};

namespace {

// Reads the audit head now and then and writes it where the database cannot
// rewrite it: the server log and the metrics (scraped and stored by
// Prometheus). Deleting the newest audit rows is then caught by
// `ballisticsctl audit verify --expect-head SEQ:HASH` with a published head.
void AnchorLoop(Server::Impl* impl) {
  const auto every = std::chrono::seconds(impl->ctx.config.audit_anchor_interval_s);
  std::unique_lock<std::mutex> l(impl->anchor_mu);
  while (!impl->anchor_stop) {
    l.unlock();
    std::optional<std::pair<std::int64_t, std::string>> head;
    {
      auto lease = impl->ctx.pool->Acquire();
      if (lease.ok()) {
        auto h = (*lease)->AuditHead();
        if (h.ok()) head = *h;
        else spdlog::warn("audit anchor: {}", h.status().ToString());
      }
    }
    l.lock();
    if (head && head->first != impl->anchor_seq) {
      impl->anchor_seq = head->first;
      impl->anchor_hash = head->second;
      spdlog::info("audit head seq={} hash={} (anchor: ballisticsctl audit verify --expect-head {}:{})", head->first,
                   head->second, head->first, head->second);
    }
    impl->anchor_cv.wait_for(l, every, [impl] { return impl->anchor_stop; });
  }
}

}  // namespace

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { Shutdown(std::chrono::milliseconds(0)); }

StatusOr<std::unique_ptr<Server>> Server::Start(const ServerConfig& config) {
  if (config.database_url.empty()) return InvalidArgument("no database url");
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (config.insecure) {
    creds = grpc::InsecureServerCredentials();
  } else {
    if (config.tls_cert_file.empty() || config.tls_key_file.empty()) {
      return InvalidArgument(
          "TLS is on by default: give tls-cert and tls-key (PEM files), or --insecure for a loopback test");
    }
    BALLISTICS_ASSIGN_OR_RETURN(std::string cert, ReadPem(config.tls_cert_file, "TLS certificate"));
    BALLISTICS_ASSIGN_OR_RETURN(std::string key, ReadPem(config.tls_key_file, "TLS key"));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(ssl);
  }

  auto impl = std::make_unique<Impl>();
  impl->ctx.config = config;
  const auto pool_wait = std::chrono::milliseconds(config.db_pool_wait_ms);
  impl->ctx.pool = std::make_unique<DbPool>(config.database_url, config.db_pool_size, pool_wait,
                                            [](const std::string& url) { return store::ApiDb::ConnectSystem(url); });
  impl->ctx.store_pool = std::make_unique<StorePool>(config.database_url, config.store_pool_size, pool_wait,
                                                     [](const std::string& url) { return store::Store::Connect(url); });
  impl->ctx.watchdog = std::make_unique<StreamWatchdog>();
  impl->ctx.admission["/ballistics.v1.IngestService/UploadScan"] =
      std::make_unique<Admission>(config.max_concurrent_uploads);
  impl->ctx.admission["/ballistics.v1.SearchService/Search"] =
      std::make_unique<Admission>(config.max_concurrent_searches + config.max_queued_searches);
  {
    // Fail at start, not at the first call, when the database is unreachable.
    BALLISTICS_ASSIGN_OR_RETURN(auto probe, impl->ctx.pool->Acquire());
  }
  // Searches left 'running' by a process that stopped mid-search (crash,
  // kill) would stay so forever: claim this process's instance, then fail the
  // running searches of instances that are gone (docs/operations.md).
  BALLISTICS_ASSIGN_OR_RETURN(impl->instance_db, store::ApiDb::ConnectSystem(config.database_url));
  BALLISTICS_RETURN_IF_ERROR(impl->instance_db->ClaimSearchInstance());
  {
    auto failed = impl->instance_db->FailInterruptedSearches();
    if (!failed.ok()) return failed.status();
    if (*failed > 0) {
      spdlog::warn("{} search(es) left running by a stopped server marked failed ({})", *failed,
                   store::kInterruptedSearchReason);
    }
  }
  impl->ctx.search_slots = std::make_unique<SearchSlots>(config.max_concurrent_searches);
  BALLISTICS_ASSIGN_OR_RETURN(impl->ctx.search, SearchBackend::Create(config));
  impl->ctx.metrics.SetGaugeSource([b = impl->ctx.search.get(), impl = impl.get()] {
    std::string g = MetricGauge("process_resident_memory_bytes", "Resident memory of ballisticsd.", "",
                                static_cast<double>(ResidentMemoryBytes()));
    g += MetricGauge("ballistics_db_connections_open", "Open PostgreSQL connections by pool.", "{pool=\"api\"}",
               impl->ctx.pool->open());
    g += "ballistics_db_connections_open{pool=\"store\"} " + std::to_string(impl->ctx.store_pool->open()) + "\n";
    bool first = true;
    for (const auto& [method, a] : impl->ctx.admission) {
      const std::string lbl = "{method=\"" + method + "\"}";
      if (first) {
        g += MetricGauge("ballistics_admission_in_flight", "Admitted calls in flight (limited methods).", lbl,
                         a->in_flight());
        g += "# HELP ballistics_admission_rejected_total Calls refused with RESOURCE_EXHAUSTED by admission.\n"
             "# TYPE ballistics_admission_rejected_total counter\n";
      } else {
        g += "ballistics_admission_in_flight" + lbl + " " + std::to_string(a->in_flight()) + "\n";
      }
      g += "ballistics_admission_rejected_total" + lbl + " " + std::to_string(a->rejected()) + "\n";
      first = false;
    }
    {
      std::lock_guard<std::mutex> l(impl->anchor_mu);
      if (impl->anchor_seq >= 0) {
        g += MetricGauge("ballistics_audit_head_seq", "Newest audit row seen by the anchor, with its hash.",
                         "{hash=\"" + impl->anchor_hash + "\"}", static_cast<double>(impl->anchor_seq));
      }
    }
    return g + SearchIndexMetrics(*b);
  });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, creds, &impl->port);
  // Chunks are at most 1 MiB; leave room for the header.
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  impl->services.push_back(MakeIngestService(impl->ctx));
  impl->services.push_back(MakeCasingService(impl->ctx));
  impl->services.push_back(MakeAdminService(impl->ctx));
  impl->services.push_back(MakeSearchService(impl->ctx));
  impl->services.push_back(MakeReviewService(impl->ctx));
  impl->services.push_back(MakeLeadService(impl->ctx));
  impl->services.push_back(MakeRegistryService(impl->ctx));
  for (auto& s : impl->services) builder.RegisterService(s.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) return Unavailable("cannot listen on " + config.listen);
  impl->server->GetHealthCheckService()->SetServingStatus(true);

  if (!config.metrics_listen.empty()) {
    BALLISTICS_ASSIGN_OR_RETURN(impl->metrics_http, MetricsHttpServer::Start(config.metrics_listen, &impl->ctx.metrics));
  }
  spdlog::info("gRPC listening on {} (port {}, {}), metrics {}", config.listen, impl->port,
               config.insecure ? "PLAINTEXT" : "TLS",
               impl->metrics_http ? "on port " + std::to_string(impl->metrics_http->port()) : std::string("off"));
  if (config.audit_anchor_interval_s > 0) impl->anchor_thread = std::thread(AnchorLoop, impl.get());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const { return impl_->port; }
int Server::metrics_port() const { return impl_->metrics_http ? impl_->metrics_http->port() : 0; }

void Server::Shutdown(std::chrono::milliseconds grace) {
  if (!impl_ || impl_->shut_down) return;
  impl_->shut_down = true;
  if (impl_->server) {
    impl_->server->GetHealthCheckService()->SetServingStatus(false);
    // Waits for running calls until the deadline, then cancels them (their
    // ServerContext::IsCancelled() turns true; searches poll it).
    impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
    impl_->server->Wait();
  }
  if (impl_->anchor_thread.joinable()) {
    {
      std::lock_guard<std::mutex> l(impl_->anchor_mu);
      impl_->anchor_stop = true;
    }
    impl_->anchor_cv.notify_all();
    impl_->anchor_thread.join();
  }
  impl_->metrics_http.reset();
  spdlog::info("gRPC server stopped");
}

}  // namespace ballistics::service
