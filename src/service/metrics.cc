#include "metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ballistics::service {
namespace {

constexpr double kBucketsS[8] = {0.005, 0.025, 0.1, 0.5, 2.5, 10, 60, 600};

// Label values escaped as the exposition format asks (backslash, quote, newline).
std::string Esc(const std::string& v) {
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

}  // namespace

std::string MetricGauge(const std::string& name, const std::string& help, const std::string& labels, double v) {
  std::ostringstream o;
  o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n" << name << labels << " ";
  // Byte counts and sizes exactly (the stream's default 6 digits would round them).
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) {
    o << static_cast<std::int64_t>(v);
  } else {
    o << v;
  }
  o << "\n";
  return o.str();
}

std::string MetricCounter(const std::string& name, const std::string& help, std::int64_t v) {
  return "# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " + std::to_string(v) + "\n";
}

std::int64_t ResidentMemoryBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return 0;
}

void Metrics::RecordRpc(const std::string& method, const std::string& code, double seconds) {
  std::lock_guard<std::mutex> l(mu_);
  ++requests_[{method, code}];
  Latency& lat = latency_[method];
  ++lat.count;
  lat.sum += seconds;
  for (int i = 0; i < 8; ++i) {
    if (seconds <= kBucketsS[i]) ++lat.buckets[i];
  }
}

std::string Metrics::Render() {
  std::ostringstream o;
  std::function<std::string()> gauges;
  {
    std::lock_guard<std::mutex> l(mu_);
    o << "# HELP ballistics_grpc_requests_total Finished RPCs by method and status code.\n"
         "# TYPE ballistics_grpc_requests_total counter\n";
    for (const auto& [k, v] : requests_) {
      o << "ballistics_grpc_requests_total{method=\"" << Esc(k.first) << "\",code=\"" << Esc(k.second) << "\"} "
        << v << "\n";
    }
    o << "# HELP ballistics_grpc_request_duration_seconds RPC latency.\n"
         "# TYPE ballistics_grpc_request_duration_seconds histogram\n";
    for (const auto& [m, lat] : latency_) {
      for (int i = 0; i < 8; ++i) {
        o << "ballistics_grpc_request_duration_seconds_bucket{method=\"" << Esc(m) << "\",le=\"" << kBucketsS[i]
          << "\"} " << lat.buckets[i] << "\n";
      }
      o << "ballistics_grpc_request_duration_seconds_bucket{method=\"" << Esc(m) << "\",le=\"+Inf\"} " << lat.count
        << "\n";
      o << "ballistics_grpc_request_duration_seconds_sum{method=\"" << Esc(m) << "\"} " << lat.sum << "\n";
      o << "ballistics_grpc_request_duration_seconds_count{method=\"" << Esc(m) << "\"} " << lat.count << "\n";
    }
    gauges = gauges_;
  }
  o << "# HELP ballistics_uploads_in_flight Uploads being received or processed.\n"
       "# TYPE ballistics_uploads_in_flight gauge\nballistics_uploads_in_flight "
    << uploads_in_flight.load() << "\n";
  o << "# HELP ballistics_upload_bytes_total Bytes received by UploadScan.\n"
       "# TYPE ballistics_upload_bytes_total counter\nballistics_upload_bytes_total "
    << upload_bytes_total.load() << "\n";
  o << "# HELP ballistics_searches_running Searches executing now.\n"
       "# TYPE ballistics_searches_running gauge\nballistics_searches_running "
    << searches_running.load() << "\n";
  o << "# HELP ballistics_search_queue_depth Searches waiting for a free slot.\n"
       "# TYPE ballistics_search_queue_depth gauge\nballistics_search_queue_depth "
    << search_queue_depth.load() << "\n";
  if (gauges) o << gauges();
  return o.str();
}

StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& listen, Metrics* metrics) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("metrics address '" + listen + "' is not host:port");
  const std::string host = listen.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    return InvalidArgument("metrics address '" + listen + "' has no numeric port");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("metrics host '" + host + "' is not an IPv4 address");
  }
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->metrics_ = metrics;
  s->fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->fd_ < 0) return Unavailable(std::string("metrics socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(s->fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(s->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(s->fd_, 16) != 0) {
    return Unavailable("metrics: cannot listen on " + listen + ": " + std::strerror(errno));
  }
  socklen_t len = sizeof(addr);
  getsockname(s->fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  s->port_ = ntohs(addr.sin_port);
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
}

void MetricsHttpServer::Loop() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    // Read the request head with a short timeout; a slow client cannot stall us long.
    timeval tv{2, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string req;
    char buf[1024];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192) {
      const ssize_t n = recv(c, buf, sizeof(buf), 0);
      if (n <= 0) break;
      req.append(buf, static_cast<std::size_t>(n));
    }
    std::string status = "404 Not Found", type = "text/plain", body = "not found\n";
    if (req.rfind("GET /metrics ", 0) == 0 || req.rfind("GET /metrics?", 0) == 0) {
      status = "200 OK";
      type = "text/plain; version=0.0.4";
      body = metrics_->Render();
    }
    const std::string head = "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
                             "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    const std::string out = head + body;
    std::size_t off = 0;
    while (off < out.size()) {
      const ssize_t n = send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    close(c);
  }
}

}  // namespace ballistics::service
