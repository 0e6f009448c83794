// Shared by the service implementations: configuration, the connection pools,
// admission limits, the stream watchdog, metrics, and Call — one RPC's
// authentication, authorization, admission and audit.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <initializer_list>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ballistics/api_store.h"
#include "ballistics/store.h"
#include "ballistics/status.h"
#include "metrics.h"
#include "server.h"

namespace ballistics::service {

grpc::Status ToGrpc(const Status& s);

// A bounded pool of open PostgreSQL connections of one kind (store::ApiDb or
// store::Store), keyed by connection string: the system URL, or a scoped URL
// (one per agency and role, store::ScopedUrl). At most `capacity` connections
// are open at once, idle ones included; a caller that finds all of them busy
// waits up to `wait`, then gets RESOURCE_EXHAUSTED (retryable: back-pressure
// instead of an unbounded number of PostgreSQL backends). When every key is in
// use the least recently used idle connection of another key is closed.
//
// A connection goes back to the pool only when T::Usable() (connected, no
// transaction open). One that is not usable is closed, and so are all idle
// ones: after a PostgreSQL restart every pooled connection is dead, so the call
// that found out returns UNAVAILABLE (retryable) and the next call reconnects.
template <typename T>
class ConnPool {
 public:
  using Factory = std::function<StatusOr<std::unique_ptr<T>>(const std::string& url)>;
  ConnPool(std::string default_url, int capacity, std::chrono::milliseconds wait, Factory factory)
      : default_url_(std::move(default_url)), capacity_(capacity), wait_(wait), factory_(std::move(factory)) {}
  ~ConnPool() = default;

  class Lease {
   public:
    Lease(ConnPool* pool, std::string key, std::unique_ptr<T> db)
        : pool_(pool), key_(std::move(key)), db_(std::move(db)) {}
    Lease(Lease&& o) noexcept : pool_(o.pool_), key_(std::move(o.key_)), db_(std::move(o.db_)) { o.pool_ = nullptr; }
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_) pool_->Return(key_, std::move(db_));
    }
    T* operator->() const { return db_.get(); }
    T& operator*() const { return *db_; }
    T* get() const { return db_.get(); }
    // Kept for callers that know a status: UNAVAILABLE always means the
    // connection is gone (Usable() finds that out too on return).
    void Check(const Status&) {}

   private:
    ConnPool* pool_;
    std::string key_;
    std::unique_ptr<T> db_;
  };

  StatusOr<Lease> Acquire() { return Acquire(default_url_); }
  StatusOr<Lease> Acquire(const std::string& url) {
    std::unique_ptr<T> evicted;  // closed outside the lock
    std::unique_lock<std::mutex> l(mu_);
    const auto deadline = std::chrono::steady_clock::now() + wait_;
    for (;;) {
      for (auto it = idle_.begin(); it != idle_.end(); ++it) {
        if (it->first == url) {
          std::unique_ptr<T> db = std::move(it->second);
          idle_.erase(it);
          return Lease(this, url, std::move(db));
        }
      }
      if (open_ < capacity_) break;
      if (!idle_.empty()) {
        evicted = std::move(idle_.back().second);
        idle_.pop_back();
        --open_;
        break;
      }
      if (cv_.wait_until(l, deadline) == std::cv_status::timeout && open_ >= capacity_ && idle_.empty()) {
        return Status(StatusCode::kResourceExhausted,
                      "all " + std::to_string(capacity_) + " database connections stayed busy for " +
                          std::to_string(wait_.count()) + " ms; retry later");
      }
    }
    ++open_;
    l.unlock();
    evicted.reset();
    auto db = factory_(url);
    if (!db.ok()) {
      l.lock();
      --open_;
      cv_.notify_one();
      return db.status();
    }
    return Lease(this, url, std::move(*db));
  }

  int open() {
    std::lock_guard<std::mutex> l(mu_);
    return open_;
  }
  int idle() {
    std::lock_guard<std::mutex> l(mu_);
    return static_cast<int>(idle_.size());
  }

 private:
  void Return(const std::string& key, std::unique_ptr<T> db) {
    std::list<std::pair<std::string, std::unique_ptr<T>>> dropped;  // closed outside the lock
    {
      std::lock_guard<std::mutex> l(mu_);
      if (db && db->Usable()) {
        idle_.emplace_front(key, std::move(db));
      } else {
        --open_;
        open_ -= static_cast<int>(idle_.size());
        dropped.swap(idle_);
      }
    }
    cv_.notify_all();
  }

  const std::string default_url_;
  const int capacity_;
  const std::chrono::milliseconds wait_;
  const Factory factory_;
  std::mutex mu_;
  std::condition_variable cv_;
  int open_ = 0;
  std::list<std::pair<std::string, std::unique_ptr<T>>> idle_;  // most recently used first
};

using DbPool = ConnPool<store::ApiDb>;
using StorePool = ConnPool<store::Store>;

// Admission control for one method: at most `limit` calls in flight; the next
// one is refused with RESOURCE_EXHAUSTED at once rather than queued without
// bound (the client backs off and retries).
class Admission {
 public:
  explicit Admission(int limit) : limit_(limit) {}
  bool TryEnter() {
    int n = in_flight_.load();
    while (n < limit_) {
      if (in_flight_.compare_exchange_weak(n, n + 1)) return true;
    }
    rejected_++;
    return false;
  }
  void Leave() { in_flight_--; }
  int limit() const { return limit_; }
  int in_flight() const { return in_flight_.load(); }
  std::int64_t rejected() const { return rejected_.load(); }

 private:
  const int limit_;
  std::atomic<int> in_flight_{0};
  std::atomic<std::int64_t> rejected_{0};
};

// Cancels streaming calls that stop sending (slow-loris clients holding a slot
// and a buffer): a call registers itself, touches its entry on every message,
// and is cancelled (ServerContext::TryCancel, which ends its blocking Read) once
// it was idle longer than `idle` or ran longer than `total`. One thread checks
// every 100 ms.
class StreamWatchdog {
 public:
  StreamWatchdog();
  ~StreamWatchdog();

  class Entry {
   public:
    Entry(StreamWatchdog* w, std::uint64_t id) : w_(w), id_(id) {}
    ~Entry() { w_->Remove(id_); }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    void Touch() { w_->Touch(id_); }
    // Why the watchdog cancelled the call ("" when it did not).
    std::string Expired() { return w_->Reason(id_); }

   private:
    StreamWatchdog* w_;
    std::uint64_t id_;
  };

  std::unique_ptr<Entry> Watch(grpc::ServerContext* sc, std::chrono::milliseconds idle,
                               std::chrono::milliseconds total);

 private:
  struct Item {
    grpc::ServerContext* sc;
    std::chrono::milliseconds idle, total;
    std::chrono::steady_clock::time_point start, last;
    std::string reason;
  };
  void Touch(std::uint64_t id);
  void Remove(std::uint64_t id);
  std::string Reason(std::uint64_t id);
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::uint64_t next_ = 1;
  std::map<std::uint64_t, Item> items_;
  std::thread thread_;
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
  // System connections (authentication, audit, admin) and scoped ApiDb ones.
  std::unique_ptr<DbPool> pool;
  // Scoped store::Store connections (evidence reads and writes).
  std::unique_ptr<StorePool> store_pool;
  // Per-method admission (full method name -> limit); methods not listed are not limited.
  std::map<std::string, std::unique_ptr<Admission>> admission;
  std::unique_ptr<StreamWatchdog> watchdog;
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
  // Pooled connections that run as ballistics_app scoped to the caller's agency.
  StatusOr<DbPool::Lease> ScopedDb();
  StatusOr<StorePool::Lease> ScopedStore();
  StatusOr<std::string> ScopedUrl();

  void AddRecord(const std::string& r) { records_ += (records_.empty() ? "" : " ") + r; }
  void SetDetail(std::string d) { detail_ = std::move(d); }
  const std::string& request_id() const { return request_id_; }

  grpc::Status Finish(grpc::Status s);
  ~Call();

 private:
  Admission* admitted_ = nullptr;
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
