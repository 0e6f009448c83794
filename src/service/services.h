// The gRPC service classes (one .cc each), built by server.cc.
#pragma once

#include <memory>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include "context.h"

namespace ballistics::service {

std::unique_ptr<grpc::Service> MakeIngestService(ServiceContext& ctx);   // ingest_service.cc
std::unique_ptr<grpc::Service> MakeCasingService(ServiceContext& ctx);   // ingest_service.cc
std::unique_ptr<grpc::Service> MakeAdminService(ServiceContext& ctx);    // admin_service.cc
std::unique_ptr<grpc::Service> MakeSearchService(ServiceContext& ctx);   // search_service.cc
std::unique_ptr<grpc::Service> MakeReviewService(ServiceContext& ctx);   // review_service.cc
std::unique_ptr<grpc::Service> MakeLeadService(ServiceContext& ctx);     // review_service.cc
std::unique_ptr<grpc::Service> MakeRegistryService(ServiceContext& ctx);  // registry_service.cc

}  // namespace ballistics::service
