#include "context.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

namespace ballistics::service {

grpc::Status ToGrpc(const Status& s) {
  // StatusCode is numbered like grpc::StatusCode (include/ballistics/status.h).
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
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
  // Authentication only reads: after a PostgreSQL restart the pooled
  // connection may be dead (the pool then drops all idle ones), so one retry on
  // a fresh connection hides the restart from calls that start after it.
  StatusOr<store::Principal> p = Unavailable("not tried");
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto lease = ctx_.pool->Acquire();
    if (!lease.ok()) return ToGrpc(lease.status());
    p = (*lease)->Authenticate(v.substr(kBearer.size()));
    if (p.status().code() != StatusCode::kUnavailable) break;
  }
  if (!p.ok()) return ToGrpc(p.status());
  who_ = std::move(*p);
  authenticated_ = true;
  bool allowed = false;
  for (store::ApiRole r : roles) allowed = allowed || r == who_.role;
  if (!allowed) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "role " + std::string(store::ApiRoleName(who_.role)) + " may not call " + method_);
  }
  auto adm = ctx_.admission.find(method_);
  if (adm != ctx_.admission.end()) {
    if (!adm->second->TryEnter()) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "server busy: " + std::to_string(adm->second->limit()) + " calls of " + method_ +
                              " in flight already; retry with backoff");
    }
    admitted_ = adm->second.get();
  }
  return grpc::Status::OK;
}

Call::~Call() {
  if (admitted_) admitted_->Leave();
}

grpc::Status Call::CheckCasingAccess(std::int64_t casing_id) {
  auto lease = ctx_.pool->Acquire();
  if (!lease.ok()) return ToGrpc(lease.status());
  auto owner = (*lease)->CasingAgencyId(casing_id);
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
  return (*lease)->VisibleAgencyNames(who_.agency_id);
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

StreamWatchdog::StreamWatchdog() : thread_([this] { Loop(); }) {}

StreamWatchdog::~StreamWatchdog() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::unique_ptr<StreamWatchdog::Entry> StreamWatchdog::Watch(grpc::ServerContext* sc, std::chrono::milliseconds idle,
                                                             std::chrono::milliseconds total) {
  std::lock_guard<std::mutex> l(mu_);
  const auto now = std::chrono::steady_clock::now();
  const std::uint64_t id = next_++;
  items_[id] = Item{sc, idle, total, now, now, ""};
  return std::make_unique<Entry>(this, id);
}

void StreamWatchdog::Touch(std::uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = items_.find(id);
  if (it != items_.end()) it->second.last = std::chrono::steady_clock::now();
}

void StreamWatchdog::Remove(std::uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  items_.erase(id);
}

std::string StreamWatchdog::Reason(std::uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = items_.find(id);
  return it == items_.end() ? "" : it->second.reason;
}

void StreamWatchdog::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    cv_.wait_for(l, std::chrono::milliseconds(100));
    const auto now = std::chrono::steady_clock::now();
    for (auto& [id, it] : items_) {
      if (!it.reason.empty()) continue;
      const auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
      if (now - it.last > it.idle) {
        it.reason = "no message for " + std::to_string(ms(now - it.last)) + " ms (idle limit " +
                    std::to_string(it.idle.count()) + " ms)";
      } else if (now - it.start > it.total) {
        it.reason = "stream open for " + std::to_string(ms(now - it.start)) + " ms (limit " +
                    std::to_string(it.total.count()) + " ms)";
      }
      // Ends the handler's blocking Read (it returns false); the entry stays
      // until the handler removes it, so the ServerContext is still alive here.
      if (!it.reason.empty()) it.sc->TryCancel();
    }
  }
}

StatusOr<DbPool::Lease> Call::ScopedDb() {
  BALLISTICS_ASSIGN_OR_RETURN(std::string url, ScopedUrl());
  return ctx_.pool->Acquire(url);
}

StatusOr<StorePool::Lease> Call::ScopedStore() {
  BALLISTICS_ASSIGN_OR_RETURN(std::string url, ScopedUrl());
  return ctx_.store_pool->Acquire(url);
}

StatusOr<std::string> Call::ScopedUrl() { return store::ScopedUrl(ctx_.config.database_url, who_); }

grpc::Status Call::Finish(grpc::Status s) {
  // The admission slot is free before the audit write: the work is done.
  if (admitted_) {
    admitted_->Leave();
    admitted_ = nullptr;
  }
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
  Status audit = Unavailable("not tried");
  {
    auto lease = ctx_.pool->Acquire();
    audit = lease.ok() ? (*lease)->AppendAudit(e).status() : lease.status();
  }
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
