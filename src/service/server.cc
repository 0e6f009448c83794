#include "server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include "context.h"
#include "search_backend.h"
#include "services.h"

namespace ballistics::service {

class Server::Impl {
 public:
  ServiceContext ctx;
  std::vector<std::unique_ptr<grpc::Service>> services;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  int port = 0;
  bool shut_down = false;
};

namespace {

StatusOr<std::string> ReadText(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return InvalidArgument(std::string(what) + " '" + path + "' cannot be read");
  std::stringstream ss;
  ss << f.rdbuf();
  if (ss.str().empty()) return InvalidArgument(std::string(what) + " '" + path + "' is empty");
  return ss.str();
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
    BALLISTICS_ASSIGN_OR_RETURN(std::string cert, ReadText(config.tls_cert_file, "TLS certificate"));
    BALLISTICS_ASSIGN_OR_RETURN(std::string key, ReadText(config.tls_key_file, "TLS key"));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(ssl);
  }

  auto impl = std::make_unique<Impl>();
  impl->ctx.config = config;
  impl->ctx.pool = std::make_unique<DbPool>(config.database_url, config.db_pool_size);
  {
    // Fail at start, not at the first call, when the database is unreachable.
    BALLISTICS_ASSIGN_OR_RETURN(auto probe, impl->ctx.pool->Acquire());
  }
  impl->ctx.search_slots = std::make_unique<SearchSlots>(config.max_concurrent_searches);
  BALLISTICS_ASSIGN_OR_RETURN(impl->ctx.search, SearchBackend::Create(config));
  impl->ctx.metrics.SetGaugeSource([b = impl->ctx.search.get()] {
    return "# HELP ballistics_index_signatures Signatures in the search index.\n"
           "# TYPE ballistics_index_signatures gauge\nballistics_index_signatures " +
           std::to_string(b->size()) +
           "\n# HELP ballistics_index_bytes Memory held by the coarse index.\n"
           "# TYPE ballistics_index_bytes gauge\nballistics_index_bytes " +
           std::to_string(b->memory_bytes()) + "\n";
  });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, creds, &impl->port);
  // Chunks are at most 1 MiB; leave room for the header.
  builder.SetMaxReceiveMessageSize(4 << 20);
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
  impl_->metrics_http.reset();
  spdlog::info("gRPC server stopped");
}

}  // namespace ballistics::service
