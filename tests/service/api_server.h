// Test harness for the API: a fresh database (migrated, with agencies and
// tokens made directly through the system connection, as `ballisticsctl admin`
// does at bootstrap) and a real ballisticsd on a free 127.0.0.1 port, stopped
// with SIGTERM at the end (its exit code is checked: graceful shutdown).
#pragma once

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "ballistics/api_store.h"
#include "ballistics/io.h"
#include "ballistics/store.h"
#include "ballistics/v1/ingest.grpc.pb.h"
#include "store/test_database.h"
#include "test_paths.h"

namespace ballistics::testing {

class ApiServer {
 public:
  // Starts ballisticsd with extra flags; ASSERT-style failures are recorded.
  void Start(const std::string& database_url, const std::vector<std::string>& extra = {}) {
    dir_ = std::filesystem::temp_directory_path() /
           ("ballistics_api_" + std::to_string(getpid()) + "_" + std::to_string(counter_++));
    std::filesystem::create_directories(dir_);
    const std::string port_file = (dir_ / "port").string();
    pid_ = fork();
    if (pid_ == 0) {
      setenv("BALLISTICS_DATABASE_URL", database_url.c_str(), 1);
      const std::string log = (dir_ / "server.log").string();
      freopen(log.c_str(), "w", stdout);
      freopen(log.c_str(), "a", stderr);
      std::vector<std::string> args = {BALLISTICSD_PATH, "--listen", "127.0.0.1:0", "--insecure",
                                       "--port-file", port_file, "--metrics-listen", "127.0.0.1:0",
                                       "--connect-timeout-s", "5"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (std::ifstream f(port_file); f >> port_ >> metrics_port_) break;
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "ballisticsd exited early:\n" << Log();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (port_ <= 0) {
      ADD_FAILURE() << "ballisticsd did not report its port within 60 s:\n" << Log();
      return;
    }
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
  }

  // SIGTERM, then the exit status (0 = clean shutdown), or -1.
  int Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    int st = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return -1;
  }

  // Kills the server without a shutdown (SIGKILL: no handler, no flush) and reaps it.
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }

  ~ApiServer() {
    Stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string Log() const {
    std::ifstream f(dir_ / "server.log");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::filesystem::path dir_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Agencies "Agency A" and "Agency B" with one token per role (A) and an examiner of B.
struct Tokens {
  std::string admin_a, technician_a, examiner_a, reader_a, examiner_b, technician_b;
  std::int64_t agency_a = 0, agency_b = 0;
};

inline Tokens Bootstrap(const std::string& url) {
  Tokens t;
  auto store = store::Store::Connect(url);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) return t;
  auto m = (*store)->Migrate();
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  auto db = store::ApiDb::ConnectSystem(url);
  EXPECT_TRUE(db.ok()) << db.status().ToString();
  if (!db.ok()) return t;
  t.agency_a = (*db)->CreateAgency("Agency A").value();
  t.agency_b = (*db)->CreateAgency("Agency B").value();
  auto make = [&](const char* agency, store::ApiRole role, const char* holder) {
    auto tok = (*db)->CreateToken(agency, role, holder, 30);
    EXPECT_TRUE(tok.ok()) << tok.status().ToString();
    return tok.ok() ? tok->secret : std::string();
  };
  t.admin_a = make("Agency A", store::ApiRole::kAdmin, "admin-a");
  t.technician_a = make("Agency A", store::ApiRole::kTechnician, "tech-a");
  t.examiner_a = make("Agency A", store::ApiRole::kExaminer, "examiner-a");
  t.reader_a = make("Agency A", store::ApiRole::kAgencyReader, "reader-a");
  t.examiner_b = make("Agency B", store::ApiRole::kExaminer, "examiner-b");
  t.technician_b = make("Agency B", store::ApiRole::kTechnician, "tech-b");
  return t;
}

inline void Authorize(grpc::ClientContext* ctx, const std::string& token) {
  ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
}

struct UploadOutcome {
  grpc::Status status;
  v1::UploadScanResponse response;
};

// Streams `bytes` in 256 KiB chunks after a header with this metadata.
inline UploadOutcome Upload(const std::shared_ptr<grpc::Channel>& ch, const std::string& token, const std::vector<std::uint8_t>& bytes,
                            const v1::CasingMetadata& md, const std::string& client_request_id = "") {
  auto stub = v1::IngestService::NewStub(ch);
  grpc::ClientContext ctx;
  Authorize(&ctx, token);
  UploadOutcome out;
  auto writer = stub->UploadScan(&ctx, &out.response);
  v1::UploadScanRequest h;
  *h.mutable_header()->mutable_metadata() = md;
  h.mutable_header()->set_client_request_id(client_request_id);
  h.mutable_header()->set_total_bytes(bytes.size());
  bool ok = writer->Write(h);
  constexpr std::size_t kChunk = 256 << 10;
  for (std::size_t off = 0; ok && off < bytes.size(); off += kChunk) {
    v1::UploadScanRequest c;
    c.set_chunk(bytes.data() + off, std::min(kChunk, bytes.size() - off));
    ok = writer->Write(c);
  }
  writer->WritesDone();
  out.status = writer->Finish();
  return out;
}

inline v1::CasingMetadata Metadata(const std::string& agency, const std::string& case_number,
                                   const std::string& exhibit) {
  v1::CasingMetadata md;
  md.set_agency(agency);
  md.set_case_number(case_number);
  md.set_exhibit_id(exhibit);
  md.set_calibre("9mm Luger");
  md.set_source(v1::TEST_FIRE);
  md.set_capture_device("Test confocal microscope SN 42");
  return md;
}

inline std::vector<std::uint8_t> FadulBytes(const std::string& name) {
  auto b = ReadFileBytes(SharedDataDir() / "fadul" / (name + ".x3p"), 1ull << 30);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? *b : std::vector<std::uint8_t>{};
}

// GET http://127.0.0.1:port/path, the whole response ("" when nothing answers).
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
    send(fd, req.data(), req.size(), 0);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return out;
}

// The value of an unlabelled metric in a Prometheus text body, or -1.
inline double MetricValue(const std::string& body, const std::string& name) {
  const std::string key = "\n" + name + " ";
  const auto at = body.find(key);
  return at == std::string::npos ? -1 : std::atof(body.c_str() + at + key.size());
}

}  // namespace ballistics::testing
