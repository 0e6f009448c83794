// Shared by the service implementations: configuration, the system connection
// pool, metrics, and Call — one RPC's authentication, authorization and audit.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ballistics/api_store.h"
#include "ballistics/status.h"
#include "metrics.h"
#include "server.h"

namespace ballistics::service {

grpc::Status ToGrpc(const Status& s);

// A few open system connections (authentication, audit, admin). A connection
// that failed with UNAVAILABLE is dropped rather than returned.
class DbPool {
 public:
  DbPool(std::string url, int size) : url_(std::move(url)), size_(size) {}

  class Lease {
   public:
    Lease(DbPool* pool, std::unique_ptr<store::ApiDb> db) : pool_(pool), db_(std::move(db)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (pool_ && db_ && !broken_) pool_->Return(std::move(db_));
    }
    store::ApiDb* operator->() { return db_.get(); }
    // Marks the connection as unusable after an UNAVAILABLE error.
    void Check(const Status& s) {
      if (s.code() == StatusCode::kUnavailable) broken_ = true;
    }

   private:
    DbPool* pool_;
    std::unique_ptr<store::ApiDb> db_;
    bool broken_ = false;
  };

  StatusOr<Lease> Acquire();

 private:
  void Return(std::unique_ptr<store::ApiDb> db);
  std::string url_;
  int size_;
  std::mutex mu_;
  std::vector<std::unique_ptr<store::ApiDb>> idle_;
};

// Bounds the number of searches running at once; the others wait here.
class SearchSlots {
 public:
  explicit SearchSlots(int n) : free_(n) {}
  // Waits for a slot; false when `cancelled` turned true first.
  bool Acquire(const std::function<bool()>& cancelled);
  void Release();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
};

class SearchBackend;

struct ServiceContext {
  ServerConfig config;
  std::unique_ptr<DbPool> pool;
  Metrics metrics;
  std::unique_ptr<SearchBackend> search;  // null until loaded
  std::unique_ptr<SearchSlots> search_slots;
};

// One RPC. Authorize() reads `authorization: Bearer <token>` and checks the
// role; Finish() records the outcome in the audit trail and the metrics and
// returns the status to hand to gRPC. Every RPC goes through Finish, failed
// ones included (an unauthenticated probe is worth an audit row too).
class Call {
 public:
  Call(ServiceContext& ctx, grpc::ServerContext* sc, std::string method);

  grpc::Status Authorize(std::initializer_list<store::ApiRole> roles);
  const store::Principal& who() const { return who_; }
  bool is_admin() const { return who_.role == store::ApiRole::kAdmin; }

  // NOT_FOUND for an unknown casing, PERMISSION_DENIED for another agency's
  // casing that is not shared with the caller's agency.
  grpc::Status CheckCasingAccess(std::int64_t casing_id);
  // Names of the agencies whose casings the caller may read (own + shares).
  StatusOr<std::vector<std::string>> VisibleAgencies();
  // A connection that runs as ballistics_app scoped to the caller's agency.
  StatusOr<std::unique_ptr<store::ApiDb>> ScopedDb();
  StatusOr<std::string> ScopedUrl();

  void AddRecord(const std::string& r) { records_ += (records_.empty() ? "" : " ") + r; }
  void SetDetail(std::string d) { detail_ = std::move(d); }
  const std::string& request_id() const { return request_id_; }

  grpc::Status Finish(grpc::Status s);

 private:
  ServiceContext& ctx_;
  grpc::ServerContext* sc_;
  std::string method_;
  std::string request_id_;
  store::Principal who_;
  bool authenticated_ = false;
  std::string records_;
  std::string detail_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ballistics::service
