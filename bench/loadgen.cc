// ballistics_loadgen: a bounded load generator for ballisticsd (issue 8, "Load";
// docs/reliability.md). N client threads mix uploads and searches against one
// server for a fixed time; each call has a deadline. Reports throughput, p50 /
// p99 latency per operation, status codes (RESOURCE_EXHAUSTED = the server's
// back-pressure) and the server's resident memory, sampled from its metrics
// endpoint (process_resident_memory_bytes).
//
//   ballistics_loadgen --server 127.0.0.1:50051 --insecure --token T --file scan.x3p \
//       --clients 8 --seconds 30 --mix 1:3 --metrics 127.0.0.1:9464 [--json]
//
// Uploads send the file with a unique zip comment (a new casing each time, same
// scan); searches query casings uploaded by this run. Exit 0 when it ran, 1 on
// bad flags or when the server cannot be reached at all.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ballistics/v1/ingest.grpc.pb.h"
#include "ballistics/v1/search.grpc.pb.h"

namespace {

namespace v1 = ::ballistics::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string server = "127.0.0.1:50051";
  bool insecure = false;
  std::string ca_file;
  std::string token;
  std::string file;
  int clients = 4;
  double seconds = 10;
  std::string mix = "1:1";
  std::string metrics;
  int rerank_k = 5;
  int deadline_s = 60;
  std::string agency;
  bool json = false;
};

// Same scan, new bytes: the zip end-of-central-directory comment (a new casing).
std::string WithComment(const std::string& zip, const std::string& comment) {
  for (std::size_t i = zip.size() >= 22 ? zip.size() - 22 : std::string::npos; i != std::string::npos; --i) {
    if (zip.compare(i, 4, "PK\x05\x06") == 0) {
      std::string out = zip.substr(0, i + 22);
      out[i + 20] = static_cast<char>(comment.size() & 0xff);
      out[i + 21] = static_cast<char>(comment.size() >> 8);
      return out + comment;
    }
    if (i == 0) break;
  }
  return zip + comment;  // not a zip: still new bytes
}

std::string HttpGet(const std::string& host_port, const std::string& path) {
  const auto colon = host_port.rfind(':');
  if (colon == std::string::npos) return "";
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::atoi(host_port.c_str() + colon + 1)));
  inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &a.sin_addr);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
    send(fd, req.data(), req.size(), 0);
    char buf[8192];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return out;
}

double MetricValue(const std::string& body, const std::string& name) {
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::atof(line.c_str() + name.size() + 1);
  }
  return 0;
}

struct OpStats {
  std::vector<double> ok_ms;
  std::map<std::string, std::int64_t> codes;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[k];
}

std::string CodeName(grpc::StatusCode c) {
  static const char* names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                                "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i <= 16 ? names[i] : std::to_string(i);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ballistics_loadgen - bounded mixed upload/search load against ballisticsd"};
  Options o;
  app.add_option("--server", o.server, "ballisticsd host:port")->capture_default_str();
  app.add_flag("--insecure", o.insecure, "Plaintext gRPC (loopback)");
  app.add_option("--ca", o.ca_file, "PEM roots for TLS (default: system roots)");
  app.add_option("--token", o.token, "Bearer token (examiner or admin: uploads and searches)")->required();
  app.add_option("--file", o.file, "Scan file to upload (X3P)")->required()->check(CLI::ExistingFile);
  app.add_option("--clients", o.clients, "Concurrent clients")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--seconds", o.seconds, "Duration")->check(CLI::Range(0.5, 3600.0))->capture_default_str();
  app.add_option("--mix", o.mix, "upload:search weights, e.g. 1:3")->capture_default_str();
  app.add_option("--metrics", o.metrics, "Server metrics host:port, for its resident memory");
  app.add_option("--rerank-k", o.rerank_k, "Candidates each search reranks")->capture_default_str();
  app.add_option("--deadline-s", o.deadline_s, "Deadline of each call")->capture_default_str();
  app.add_option("--agency", o.agency, "Agency of the uploads (default: the token's)");
  app.add_flag("--json", o.json, "JSON report on stdout");
  CLI11_PARSE(app, argc, argv);

  int w_up = 1, w_search = 1;
  if (std::sscanf(o.mix.c_str(), "%d:%d", &w_up, &w_search) != 2 || w_up < 0 || w_search < 0 || w_up + w_search == 0) {
    std::cerr << "--mix '" << o.mix << "' is not UPLOAD:SEARCH with non-negative weights\n";
    return 1;
  }
  std::ifstream f(o.file, std::ios::binary);
  const std::string scan((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (scan.empty()) {
    std::cerr << "cannot read " << o.file << "\n";
    return 1;
  }
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    if (!o.ca_file.empty()) {
      std::ifstream c(o.ca_file);
      ssl.pem_root_certs.assign(std::istreambuf_iterator<char>(c), std::istreambuf_iterator<char>());
    }
    creds = grpc::SslCredentials(ssl);
  }
  const std::string run_id = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  std::mutex mu;
  std::vector<std::int64_t> casings;  // uploaded by this run, searched by the searches
  OpStats up_stats, search_stats;
  std::atomic<int> seq{0};

  // One channel per client: like independent clients, each with its own connection.
  auto upload = [&](v1::IngestService::Stub& stub) {
    const std::string id = "loadgen-" + run_id + "-" + std::to_string(seq++);
    const std::string bytes = WithComment(scan, id);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + o.token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(o.deadline_s));
    v1::UploadScanResponse resp;
    auto w = stub.UploadScan(&ctx, &resp);
    v1::UploadScanRequest h;
    auto* md = h.mutable_header()->mutable_metadata();
    md->set_agency(o.agency);
    md->set_case_number("LOADGEN-" + run_id);
    md->set_exhibit_id(id);
    md->set_calibre("9mm Luger");
    md->set_source(v1::TEST_FIRE);
    h.mutable_header()->set_client_request_id(id);
    h.mutable_header()->set_total_bytes(bytes.size());
    bool ok = w->Write(h);
    constexpr std::size_t kChunk = 256 << 10;
    for (std::size_t off = 0; ok && off < bytes.size(); off += kChunk) {
      v1::UploadScanRequest c;
      c.set_chunk(bytes.substr(off, kChunk));
      ok = w->Write(c);
    }
    w->WritesDone();
    grpc::Status s = w->Finish();
    if (s.ok()) {
      std::lock_guard<std::mutex> l(mu);
      casings.push_back(resp.casing_id());
    }
    return s;
  };
  auto search = [&](v1::SearchService::Stub& stub, std::mt19937& rng) {
    std::int64_t q = 0;
    {
      std::lock_guard<std::mutex> l(mu);
      if (!casings.empty()) q = casings[rng() % casings.size()];
    }
    if (q == 0) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "nothing uploaded yet");
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + o.token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(o.deadline_s));
    v1::SearchRequest req;
    req.set_casing_id(q);
    req.set_top_n(10);
    req.set_rerank_k(o.rerank_k);
    auto r = stub.Search(&ctx, req);
    v1::SearchUpdate u;
    while (r->Read(&u)) {
    }
    return r->Finish();
  };

  // A first upload so that searches have something to query.
  {
    auto ch = grpc::CreateChannel(o.server, creds);
    auto stub = v1::IngestService::NewStub(ch);
    grpc::Status s = upload(*stub);
    if (!s.ok()) {
      std::cerr << "first upload failed: " << CodeName(s.error_code()) << ": " << s.error_message() << "\n";
      return 1;
    }
  }

  std::atomic<bool> done{false};
  double rss_max = 0, rss_start = 0;
  if (!o.metrics.empty()) rss_start = rss_max = MetricValue(HttpGet(o.metrics, "/metrics"), "process_resident_memory_bytes");
  std::thread sampler([&] {
    while (!done && !o.metrics.empty()) {
      rss_max = std::max(rss_max, MetricValue(HttpGet(o.metrics, "/metrics"), "process_resident_memory_bytes"));
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  });
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      grpc::ChannelArguments args;
      args.SetInt("loadgen.client", c);  // distinct args: a connection of its own
      auto ch = grpc::CreateCustomChannel(o.server, creds, args);
      auto ingest = v1::IngestService::NewStub(ch);
      auto searcher = v1::SearchService::NewStub(ch);
      std::mt19937 rng(static_cast<unsigned>(c) * 7919u + 1);
      while (Clock::now() < end) {
        const bool is_upload = static_cast<int>(rng() % static_cast<unsigned>(w_up + w_search)) < w_up;
        const auto t0 = Clock::now();
        grpc::Status s = is_upload ? upload(*ingest) : search(*searcher, rng);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        {
          std::lock_guard<std::mutex> l(mu);
          OpStats& st = is_upload ? up_stats : search_stats;
          st.codes[CodeName(s.error_code())]++;
          if (s.ok()) st.ok_ms.push_back(ms);
        }
        // A refused call backs off briefly, as a client should (not a tight retry loop).
        if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 30));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  done = true;
  sampler.join();
  double rss_end = o.metrics.empty() ? 0 : MetricValue(HttpGet(o.metrics, "/metrics"), "process_resident_memory_bytes");
  rss_max = std::max(rss_max, rss_end);

  auto op_json = [&](const OpStats& s) {
    nlohmann::json j;
    j["ok"] = s.ok_ms.size();
    j["per_s"] = static_cast<double>(s.ok_ms.size()) / elapsed;
    j["p50_ms"] = Percentile(s.ok_ms, 0.50);
    j["p99_ms"] = Percentile(s.ok_ms, 0.99);
    j["codes"] = s.codes;
    return j;
  };
  nlohmann::json rep;
  rep["clients"] = o.clients;
  rep["seconds"] = elapsed;
  rep["mix"] = o.mix;
  rep["upload"] = op_json(up_stats);
  rep["search"] = op_json(search_stats);
  const auto exhausted = [](const OpStats& s) {
    auto it = s.codes.find("RESOURCE_EXHAUSTED");
    return it == s.codes.end() ? 0 : it->second;
  };
  rep["resource_exhausted"] = exhausted(up_stats) + exhausted(search_stats);
  rep["server_rss_start_bytes"] = rss_start;
  rep["server_rss_max_bytes"] = rss_max;
  rep["server_rss_end_bytes"] = rss_end;
  if (o.json) {
    std::cout << rep.dump(2) << "\n";
  } else {
    std::printf("%d clients, %.1f s, mix upload:search %s\n", o.clients, elapsed, o.mix.c_str());
    for (const auto& [name, s] : {std::pair<const char*, const OpStats&>{"upload", up_stats}, {"search", search_stats}}) {
      std::printf("  %-7s ok %6zu  %7.2f/s  p50 %8.1f ms  p99 %8.1f ms  codes:", name, s.ok_ms.size(),
                  static_cast<double>(s.ok_ms.size()) / elapsed, Percentile(s.ok_ms, 0.5), Percentile(s.ok_ms, 0.99));
      for (const auto& [c, n] : s.codes) std::printf(" %s=%lld", c.c_str(), static_cast<long long>(n));
      std::printf("\n");
    }
    std::printf("  RESOURCE_EXHAUSTED (back-pressure): %lld\n",
                static_cast<long long>(exhausted(up_stats) + exhausted(search_stats)));
    if (!o.metrics.empty()) {
      std::printf("  server RSS: start %.0f MiB, max %.0f MiB, end %.0f MiB\n", rss_start / 1048576.0,
                  rss_max / 1048576.0, rss_end / 1048576.0);
    }
  }
  return 0;
}
