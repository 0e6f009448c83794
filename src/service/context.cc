#include "context.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

namespace ballistics::service {

grpc::Status ToGrpc(const Status& s) {
  // StatusCode is numbered like grpc::StatusCode (include/ballistics/status.h).
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}

StatusOr<DbPool::Lease> DbPool::Acquire() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!idle_.empty()) {
      auto db = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(db));
    }
  }
  BALLISTICS_ASSIGN_OR_RETURN(auto db, store::ApiDb::ConnectSystem(url_));
  return Lease(this, std::move(db));
}

void DbPool::Return(std::unique_ptr<store::ApiDb> db) {
  std::lock_guard<std::mutex> l(mu_);
  if (static_cast<int>(idle_.size()) < size_) idle_.push_back(std::move(db));
}

namespace {

std::string RandomHex(int bytes) {
  std::vector<unsigned char> b(static_cast<std::size_t>(bytes));
  RAND_bytes(b.data(), bytes);
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

std::string CodeName(grpc::StatusCode c) {
  return std::string(StatusCodeName(static_cast<StatusCode>(c)));
}

}  // namespace

Call::Call(ServiceContext& ctx, grpc::ServerContext* sc, std::string method)
    : ctx_(ctx), sc_(sc), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {
  // A client-chosen request id (x-request-id) ties client logs to the audit
  // trail; otherwise one is made up. Only printable ASCII, at most 100 chars.
  const auto& md = sc->client_metadata();
  auto it = md.find("x-request-id");
  if (it != md.end()) {
    std::string v(it->second.data(), it->second.size());
    bool ok = !v.empty() && v.size() <= 100;
    for (unsigned char c : v) ok = ok && c > 0x20 && c < 0x7f;
    if (ok) request_id_ = v;
  }
  if (request_id_.empty()) request_id_ = RandomHex(12);
  sc->AddInitialMetadata("x-request-id", request_id_);
}

grpc::Status Call::Authorize(std::initializer_list<store::ApiRole> roles) {
  const auto& md = sc_->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata");
  }
  std::string_view v(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (v.substr(0, kBearer.size()) != kBearer) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "authorization metadata is not 'Bearer <token>'");
  }
  auto lease = ctx_.pool->Acquire();
  if (!lease.ok()) return ToGrpc(lease.status());
  auto p = (*lease)->Authenticate(v.substr(kBearer.size()));
  lease->Check(p.status());
  if (!p.ok()) return ToGrpc(p.status());
  who_ = std::move(*p);
  authenticated_ = true;
  for (store::ApiRole r : roles) {
    if (r == who_.role) return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      "role " + std::string(store::ApiRoleName(who_.role)) + " may not call " + method_);
}

grpc::Status Call::CheckCasingAccess(std::int64_t casing_id) {
  auto lease = ctx_.pool->Acquire();
  if (!lease.ok()) return ToGrpc(lease.status());
  auto owner = (*lease)->CasingAgencyId(casing_id);
  lease->Check(owner.status());
  if (!owner.ok()) return ToGrpc(owner.status());
  if (is_admin()) return grpc::Status::OK;
  auto shared = (*lease)->AgencyShares(*owner, who_.agency_id);
  if (!shared.ok()) return ToGrpc(shared.status());
  if (!*shared) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "casing " + std::to_string(casing_id) + " belongs to another agency than " + who_.agency);
  }
  return grpc::Status::OK;
}

StatusOr<std::vector<std::string>> Call::VisibleAgencies() {
  auto lease = ctx_.pool->Acquire();
  if (!lease.ok()) return lease.status();
  auto v = (*lease)->VisibleAgencyNames(who_.agency_id);
  lease->Check(v.status());
  return v;
}

bool SearchSlots::Acquire(const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> l(mu_);
  while (free_ == 0) {
    if (cancelled()) return false;
    cv_.wait_for(l, std::chrono::milliseconds(100));
  }
  --free_;
  return true;
}

void SearchSlots::Release() {
  {
    std::lock_guard<std::mutex> l(mu_);
    ++free_;
  }
  cv_.notify_one();
}

StatusOr<std::unique_ptr<store::ApiDb>> Call::ScopedDb() {
  return store::ApiDb::ConnectScoped(ctx_.config.database_url, who_);
}

StatusOr<std::string> Call::ScopedUrl() { return store::ScopedUrl(ctx_.config.database_url, who_); }

grpc::Status Call::Finish(grpc::Status s) {
  store::AuditEntry e;
  e.request_id = request_id_;
  if (authenticated_) {
    e.token_id = who_.token_id;
    e.actor = who_.holder;
    e.agency = who_.agency;
    e.role = std::string(store::ApiRoleName(who_.role));
  } else {
    e.actor = "anonymous";
  }
  e.method = method_;
  e.status = s.ok() ? "OK" : CodeName(s.error_code()) + ": " + s.error_message();
  e.records = records_;
  e.detail = detail_;
  // An access that cannot be recorded is refused: the audit trail is part of
  // the chain of custody, so its failure turns the call into an error.
  auto lease = ctx_.pool->Acquire();
  Status audit = lease.ok() ? (*lease)->AppendAudit(e).status() : lease.status();
  if (lease.ok()) lease->Check(audit);
  if (!audit.ok()) {
    spdlog::error("request {} {}: audit append failed: {}", request_id_, method_, audit.ToString());
    if (s.ok()) s = grpc::Status(grpc::StatusCode::UNAVAILABLE, "audit trail unavailable; call refused");
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  ctx_.metrics.RecordRpc(method_, CodeName(s.error_code()), secs);
  if (s.ok()) {
    spdlog::info("request_id={} method={} actor={} agency={} status=OK records=\"{}\" ms={:.1f}", request_id_,
                 method_, e.actor, e.agency, records_, secs * 1e3);
  } else {
    spdlog::warn("request_id={} method={} actor={} agency={} status={} message=\"{}\" ms={:.1f}", request_id_,
                 method_, e.actor, e.agency, CodeName(s.error_code()), s.error_message(), secs * 1e3);
  }
  return s;
}

}  // namespace ballistics::service
