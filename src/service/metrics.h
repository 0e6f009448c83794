// Prometheus text-format metrics (exposition format 0.0.4) and a tiny HTTP
// responder for GET /metrics on a loopback port. Deliberately minimal: one
// connection at a time, no keep-alive, request line only; anything but
// GET /metrics gets 404.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "ballistics/status.h"

namespace ballistics::service {

class Metrics {
 public:
  // Counts one finished RPC and its latency.
  void RecordRpc(const std::string& method, const std::string& code, double seconds);
  std::atomic<std::int64_t> uploads_in_flight{0};
  std::atomic<std::int64_t> searches_running{0};
  std::atomic<std::int64_t> search_queue_depth{0};
  std::atomic<std::int64_t> upload_bytes_total{0};
  // Gauges computed when scraped (index size from the search engine or the database).
  void SetGaugeSource(std::function<std::string()> f) {
    std::lock_guard<std::mutex> l(mu_);
    gauges_ = std::move(f);
  }
  std::string Render();

 private:
  struct Latency {
    std::int64_t count = 0;
    double sum = 0;
    // Cumulative histogram buckets (le), seconds.
    std::int64_t buckets[8] = {};
  };
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::int64_t> requests_;
  std::map<std::string, Latency> latency_;
  std::function<std::string()> gauges_;
};

// One sample with its HELP and TYPE lines (labels: "" or `{k="v"}`).
std::string MetricGauge(const std::string& name, const std::string& help, const std::string& labels, double v);
std::string MetricCounter(const std::string& name, const std::string& help, std::int64_t v);
// Resident set size of this process (VmRSS of /proc/self/status), bytes; 0 when unknown.
std::int64_t ResidentMemoryBytes();

class MetricsHttpServer {
 public:
  // Binds host:port (port 0 = any free one) and serves on a background thread.
  static StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& listen, Metrics* metrics);
  ~MetricsHttpServer();
  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  void Loop();
  Metrics* metrics_ = nullptr;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace ballistics::service
