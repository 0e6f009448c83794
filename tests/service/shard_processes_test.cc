// Coordinator and shard workers as processes on 127.0.0.1: two workers
// (`ballisticsd --role shard`, shards 0-7 and 8-15) and a coordinator (the
// client API) on one private PostgreSQL. Real Fadul scans uploaded through the
// coordinator reach the workers by LISTEN/NOTIFY; searches merge both workers
// (mates ranked first, full coverage). A worker killed before or during a
// query, or hanging (SIGSTOP), gives a result flagged partial that names its
// shards, before the client's deadline; restarted on its port it serves again
// with nothing lost (including a casing uploaded while it was down).
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "api_server.h"
#include "ballistics/v1/search.grpc.pb.h"
#include "ballistics/v1/shard.grpc.pb.h"

namespace ballistics {
namespace {

using Clock = std::chrono::steady_clock;
using testing::HttpGet;
using testing::MetricValue;
using testing::Authorize;
using testing::FadulBytes;
using testing::Metadata;
using testing::Upload;

// One ballisticsd process; SIGKILL-able and restartable with the same arguments.
class Process {
 public:
  // `args` without --insecure when TLS flags are among them.
  Process(std::string name, std::vector<std::string> args, std::string url, bool insecure = true)
      : name_(std::move(name)), args_(std::move(args)), url_(std::move(url)), insecure_(insecure) {
    dir_ = std::filesystem::temp_directory_path() / ("ballistics_shards_" + std::to_string(getpid()) + "_" + name_);
    std::filesystem::create_directories(dir_);
  }
  ~Process() {
    if (pid_ > 0) Signal(SIGKILL);
    std::filesystem::remove_all(dir_);
  }

  // Starts and waits for the port file; false (with a recorded failure) otherwise.
  bool Start(const std::vector<std::string>& extra = {}) {
    const std::string port_file = (dir_ / "port").string();
    std::filesystem::remove(port_file);
    std::fflush(nullptr);  // the child must not write the parent's buffered output again
    pid_ = fork();
    if (pid_ == 0) {
      setenv("BALLISTICS_DATABASE_URL", url_.c_str(), 1);
      const std::string log = (dir_ / "log").string();
      freopen(log.c_str(), "a", stdout);
      freopen(log.c_str(), "a", stderr);
      std::vector<std::string> a = {BALLISTICSD_PATH, "--port-file", port_file, "--connect-timeout-s", "5"};
      if (insecure_) a.push_back("--insecure");
      a.insert(a.end(), args_.begin(), args_.end());
      a.insert(a.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& s : a) argv.push_back(s.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      if (std::ifstream f(port_file); f >> port_) {
        f >> metrics_port_;
        return port_ > 0;
      }
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << name_ << " exited early:\n" << Log();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << name_ << " did not report its port within 60 s:\n" << Log();
    return false;
  }

  void Signal(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    if (sig == SIGKILL) {
      int st = 0;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }
  // SIGTERM; the exit status (0 = graceful) or -1.
  int Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    int st = 0;
    while (Clock::now() < deadline) {
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Signal(SIGKILL);
    return -1;
  }
  std::string Log() const {
    std::ifstream f(dir_ / "log");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  // The next Start listens on the port this one got (a restart in place).
  void PinPort() {
    for (std::size_t i = 0; i + 1 < args_.size(); ++i) {
      if (args_[i] == "--listen") args_[i + 1] = address();
    }
  }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::string name_;
  std::vector<std::string> args_;
  std::string url_;
  bool insecure_ = true;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
};

std::map<std::string, int> Slides() {
  std::map<std::string, int> m;
  std::ifstream f(testing::SharedDataDir() / "fadul" / "ground_truth.csv");
  std::string line;
  std::getline(f, line);
  while (std::getline(f, line)) {
    const auto a = line.find(','), b = line.find(',', a + 1);
    m[line.substr(0, a)] = std::stoi(line.substr(a + 1, b - a - 1));
  }
  return m;
}

struct SearchRun {
  grpc::Status status;
  v1::SearchResult result;
  double seconds = 0;
};

class ShardProcessesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    tokens_ = testing::Bootstrap(db_.url());
    ASSERT_FALSE(tokens_.examiner_a.empty());
    // Only the low worker serves /metrics: a worker binds it only when configured.
    low_ = std::make_unique<Process>("low", std::vector<std::string>{"--role", "shard", "--shards", "0-7",
                                                                     "--listen", "127.0.0.1:0", "--metrics-listen",
                                                                     "127.0.0.1:0"},
                                     db_.url());
    high_ = std::make_unique<Process>("high", std::vector<std::string>{"--role", "shard", "--shards", "8-15",
                                                                       "--listen", "127.0.0.1:0"},
                                      db_.url());
    ASSERT_TRUE(low_->Start());
    ASSERT_TRUE(high_->Start());
    coordinator_ = std::make_unique<Process>(
        "coordinator",
        std::vector<std::string>{"--role", "coordinator", "--listen", "127.0.0.1:0", "--shard-workers",
                                 low_->address() + "," + high_->address(), "--shard-timeout-ms", "60000",
                                 "--metrics-listen", "127.0.0.1:0"},
        db_.url());
    ASSERT_TRUE(coordinator_->Start());
    channel_ = grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    if (coordinator_) {
      EXPECT_EQ(coordinator_->Stop(), 0) << coordinator_->Log();
    }
    if (low_) {
      EXPECT_EQ(low_->Stop(), 0) << low_->Log();
    }
    if (high_) high_->Stop();
  }

  std::int64_t Put(const std::string& scan) {
    auto up = Upload(channel_, tokens_.technician_a, FadulBytes(scan), Metadata("Agency A", "Fadul", scan));
    EXPECT_TRUE(up.status.ok()) << scan << ": " << up.status.error_message() << "\n" << coordinator_->Log();
    names_[up.response.casing_id()] = scan;
    return up.response.casing_id();
  }

  // Signatures held by the worker at `address` (-1 when it does not answer).
  static std::int64_t Held(const std::string& address) {
    auto stub = v1::ShardService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ShardStatus st;
    return stub->GetShardStatus(&ctx, v1::ShardStatusRequest(), &st).ok() ? st.signatures() : -1;
  }
  // Waits until both workers together hold n signatures.
  bool WaitHeld(std::int64_t n) {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < deadline) {
      const std::int64_t a = Held(low_->address()), b = Held(high_->address());
      if (a >= 0 && b >= 0 && a + b == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // A search; `on_first_update` runs when the first streamed message arrives
  // (with `stage`: the first progress message of that stage).
  SearchRun Search(std::int64_t casing, int deadline_ms, const std::function<void()>& on_first_update = {},
                   const std::string& stage = "", int rerank_k = 0) {
    auto stub = v1::SearchService::NewStub(channel_);
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_a);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
    v1::SearchRequest req;
    req.set_casing_id(casing);
    req.set_top_n(10);
    req.set_rerank_k(rerank_k);
    const auto t0 = Clock::now();
    auto reader = stub->Search(&ctx, req);
    SearchRun run;
    v1::SearchUpdate u;
    bool first = true;
    while (reader->Read(&u)) {
      if (first && !stage.empty() && !(u.has_progress() && u.progress().stage() == stage)) continue;
      if (first && on_first_update) on_first_update();
      first = false;
      if (u.has_result()) run.result = u.result();
    }
    run.status = reader->Finish();
    run.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return run;
  }

  int ShardOf(std::int64_t casing) {
    return static_cast<int>(testing::QueryInt(
        db_.url(), "SELECT substring(tableoid::regclass::text from '_p(\\d+)$')::int FROM signatures "
                   "WHERE casing_id = " + std::to_string(casing) + " LIMIT 1"));
  }

  // The query's same-slide mates occupy the first places of the BF list,
  // restricted to the mates whose shards are in `shards`.
  void ExpectMatesFirst(const v1::SearchResult& r, std::int64_t query, const std::set<int>& shards) {
    const auto slides = Slides();
    const int slide = slides.at(names_.at(query));
    std::set<std::int64_t> mates;
    for (const auto& [id, name] : names_) {
      if (id != query && slides.at(name) == slide && shards.count(ShardOf(id))) mates.insert(id);
    }
    ASSERT_GE(r.breech_face_size(), static_cast<int>(mates.size())) << r.DebugString();
    std::set<std::int64_t> top;
    for (std::size_t i = 0; i < mates.size(); ++i) {
      EXPECT_EQ(r.breech_face(static_cast<int>(i)).rank(), static_cast<int>(i) + 1);
      top.insert(r.breech_face(static_cast<int>(i)).casing_id());
    }
    EXPECT_EQ(top, mates) << names_.at(query) << ": " << r.DebugString();
    for (const auto& c : r.breech_face()) {
      EXPECT_TRUE(shards.count(ShardOf(c.casing_id()))) << "candidate from a shard that did not answer";
      EXPECT_NE(c.casing_id(), query);
    }
  }

  testing::TestDatabase db_;
  testing::Tokens tokens_;
  std::unique_ptr<Process> low_, high_, coordinator_;
  std::shared_ptr<grpc::Channel> channel_;
  std::map<std::int64_t, std::string> names_;
};

std::set<int> Range(int a, int b) {
  std::set<int> s;
  for (int i = a; i <= b; ++i) s.insert(i);
  return s;
}

TEST_F(ShardProcessesTest, MergesWorkersFlagsPartialWhenOneIsDownAndRecovers) {
  const std::vector<std::string> scans = {"fadul-1-1", "fadul-1-2", "fadul-F", "fadul-2-1",
                                          "fadul-2-2", "fadul-C",   "fadul-3-1", "fadul-3-2"};
  std::map<std::string, std::int64_t> id;
  for (const auto& s : scans) id[s] = Put(s);
  // Uploaded through the coordinator, loaded by the workers from PostgreSQL notifications.
  ASSERT_TRUE(WaitHeld(static_cast<std::int64_t>(scans.size())))
      << low_->Log() << high_->Log();
  std::set<int> used;
  for (const auto& [n, c] : id) used.insert(ShardOf(c));
  std::printf("[ info ] the 8 casings fall into %zu shards\n", used.size());
  // The coordinator holds no index: its metrics report the workers' sums.
  {
    ASSERT_GT(coordinator_->metrics_port(), 0);
    const std::string body = HttpGet(coordinator_->metrics_port(), "/metrics");
    EXPECT_EQ(MetricValue(body, "ballistics_index_signatures"), 8.0) << body;
    EXPECT_GT(MetricValue(body, "ballistics_index_bytes"), 8 * 100000.0) << body;  // compact signatures, ~150 KB each
    // Every worker holds all of its signatures for the rerank (default budget).
    std::int64_t held = 0;
    for (const Process* w : {low_.get(), high_.get()}) {
      auto stub = v1::ShardService::NewStub(grpc::CreateChannel(w->address(), grpc::InsecureChannelCredentials()));
      grpc::ClientContext ctx;
      v1::ShardStatus st;
      ASSERT_TRUE(stub->GetShardStatus(&ctx, v1::ShardStatusRequest(), &st).ok());
      EXPECT_EQ(st.rerank_held(), st.signatures());
      EXPECT_EQ(st.rerank_misses(), 0);
      held += st.rerank_held();
    }
    EXPECT_EQ(held, 8);
  }
  // The low worker's own /metrics: its index and rerank cache (the same
  // numbers as its ShardStatus); the high worker has no metrics port.
  ASSERT_GT(low_->metrics_port(), 0);
  EXPECT_EQ(high_->metrics_port(), 0);
  const std::int64_t low_held = Held(low_->address());
  {
    const std::string body = HttpGet(low_->metrics_port(), "/metrics");
    EXPECT_NE(body.find("200 OK"), std::string::npos) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_index_signatures"), static_cast<double>(low_held)) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_rerank_cache_entries"), static_cast<double>(low_held)) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_rerank_cache_misses_total"), 0.0) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_rerank_cache_hits_total"), 0.0) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_shard_searches_total{phase=\"coarse\"}"), 0.0) << body;
    // Compact signatures are ~150 KB each (docs/search.md, "Rerank memory").
    EXPECT_GT(MetricValue(body, "ballistics_rerank_cache_bytes"), low_held * 100000.0) << body;
    EXPECT_GT(MetricValue(body, "ballistics_index_bytes"), MetricValue(body, "ballistics_rerank_cache_bytes")) << body;
    EXPECT_GT(MetricValue(body, "process_resident_memory_bytes"), 0.0) << body;
    EXPECT_NE(HttpGet(low_->metrics_port(), "/other").find("404"), std::string::npos);
  }

  // 1. Both workers up: full coverage, mates first.
  for (const char* q : {"fadul-1-1", "fadul-2-1"}) {
    SearchRun run = Search(id[q], 120000);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message() << "\n" << coordinator_->Log();
    EXPECT_FALSE(run.result.partial());
    EXPECT_EQ(run.result.shards_answered(), 16);
    EXPECT_EQ(run.result.shards_total(), 16);
    EXPECT_EQ(run.result.missing_shards_size(), 0);
    ExpectMatesFirst(run.result, id[q], Range(0, 15));
    EXPECT_GE(run.result.combined_size(), 1);
    std::printf("[ measure ] full search %s: %.2f s\n", q, run.seconds);
  }
  // The low worker answered both coarse phases; a rerank phase only where the
  // global top K (here every casing but the query: 7 < K) held one of its
  // casings, each such candidate found in its cache.
  {
    std::int64_t rerank_calls = 0, candidates = 0;
    for (const char* q : {"fadul-1-1", "fadul-2-1"}) {
      std::int64_t mine = 0;
      for (const auto& [n, c] : id) mine += n != q && ShardOf(c) <= 7;
      rerank_calls += mine > 0;
      candidates += mine;
    }
    std::printf("[ info ] low worker (shards 0-7): %lld rerank call(s), %lld candidate(s) expected\n",
                static_cast<long long>(rerank_calls), static_cast<long long>(candidates));
    const std::string body = HttpGet(low_->metrics_port(), "/metrics");
    EXPECT_EQ(MetricValue(body, "ballistics_shard_searches_total{phase=\"coarse\"}"), 2.0) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_shard_searches_total{phase=\"rerank\"}"),
              static_cast<double>(rerank_calls))
        << body;
    EXPECT_EQ(MetricValue(body, "ballistics_shard_searches_total{phase=\"full\"}"), 0.0) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_grpc_requests_total{method=\"/ballistics.v1.ShardService/SearchShards\","
                                "code=\"OK\"}"),
              static_cast<double>(2 + rerank_calls))
        << body;
    EXPECT_EQ(MetricValue(body, "ballistics_rerank_cache_hits_total"), static_cast<double>(candidates)) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_rerank_cache_misses_total"), 0.0) << body;
    EXPECT_EQ(MetricValue(body, "ballistics_searches_running"), 0.0) << body;
  }

  // 1b. Three phases (docs/search.md, "Screening"): with K = 2 the coarse top
  //     1 is kept and the workers screen their shares of coarse ranks 2-7;
  //     the screen's best joins the rerank. Both mates of fadul-1-1 lead the
  //     list of 2, and the low worker answered one screen call (it holds at
  //     least two of the other casings, so at least one of ranks 2-7).
  {
    SearchRun run = Search(id["fadul-1-1"], 120000, {}, "", 2);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message() << "\n" << coordinator_->Log();
    EXPECT_FALSE(run.result.partial());
    EXPECT_EQ(run.result.breech_face_size(), 2);
    ExpectMatesFirst(run.result, id["fadul-1-1"], Range(0, 15));
    int low_others = 0;
    for (const auto& [n, c] : id) low_others += n != "fadul-1-1" && ShardOf(c) <= 7;
    const std::string body = HttpGet(low_->metrics_port(), "/metrics");
    EXPECT_EQ(MetricValue(body, "ballistics_shard_searches_total{phase=\"screen\"}"), low_others >= 2 ? 1.0 : 0.0)
        << body;
    std::printf("[ measure ] three-phase search (K = 2): %.2f s\n", run.seconds);
  }

  // 2. Worker 8-15 killed during a query: the call still ends OK and in time.
  {
    SearchRun run = Search(id["fadul-1-1"], 60000, [&] { high_->Signal(SIGKILL); });
    ASSERT_TRUE(run.status.ok()) << run.status.error_message() << "\n" << coordinator_->Log();
    EXPECT_LT(run.seconds, 60);
    std::printf("[ measure ] worker killed during the query: %s after %.2f s\n",
                run.result.partial() ? "partial" : "complete (worker had answered)", run.seconds);
    if (run.result.partial()) {
      EXPECT_EQ(run.result.shards_answered(), 8);
      EXPECT_EQ(std::set<int>(run.result.missing_shards().begin(), run.result.missing_shards().end()), Range(8, 15));
    }
  }
  // 3. Worker down before the query: partial, naming shards 8-15, and the
  //    mates held by the other worker still first.
  {
    SearchRun run = Search(id["fadul-2-1"], 60000);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message() << "\n" << coordinator_->Log();
    EXPECT_TRUE(run.result.partial());
    EXPECT_EQ(run.result.shards_answered(), 8);
    EXPECT_EQ(run.result.shards_total(), 16);
    EXPECT_EQ(std::set<int>(run.result.missing_shards().begin(), run.result.missing_shards().end()), Range(8, 15));
    ExpectMatesFirst(run.result, id["fadul-2-1"], Range(0, 7));
    EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM searches WHERE id = " +
                                               std::to_string(run.result.search_id()) + " AND partial"),
              1);
    // GetSearch returns what was stored, the missing shards included.
    auto stub = v1::SearchService::NewStub(channel_);
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_a);
    v1::GetSearchRequest req;
    req.set_search_id(run.result.search_id());
    v1::SearchResult again;
    ASSERT_TRUE(stub->GetSearch(&ctx, req, &again).ok());
    EXPECT_TRUE(again.partial());
    EXPECT_EQ(again.status(), "done");
    EXPECT_EQ(std::set<int>(again.missing_shards().begin(), again.missing_shards().end()), Range(8, 15));
    std::printf("[ measure ] worker down: partial result in %.2f s\n", run.seconds);
  }
  // Uploaded while the worker is down.
  id["fadul-M"] = Put("fadul-M");

  // 4. Restarted on the same port: full coverage again, nothing lost (the
  //    casing uploaded meanwhile is loaded from PostgreSQL at start).
  high_->PinPort();
  ASSERT_TRUE(high_->Start()) << high_->Log();
  ASSERT_TRUE(WaitHeld(static_cast<std::int64_t>(scans.size()) + 1)) << high_->Log();
  {
    // The coordinator's channel reconnects within its 1 s backoff cap.
    SearchRun run;
    for (int attempt = 0; attempt < 20; ++attempt) {
      run = Search(id["fadul-2-1"], 120000);
      if (!run.status.ok() || !run.result.partial()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    EXPECT_FALSE(run.result.partial()) << coordinator_->Log();
    EXPECT_EQ(run.result.shards_answered(), 16);
    ExpectMatesFirst(run.result, id["fadul-2-1"], Range(0, 15));  // includes fadul-M
  }

  // 4b. Two-phase merge: worker 8-15 killed once the coordinator is in phase 2
  //     (its rerank share sent): still OK, in time, and partial naming 8-15
  //     unless the worker had already answered.
  {
    SearchRun run = Search(id["fadul-1-1"], 60000, [&] { high_->Signal(SIGKILL); }, "rerank");
    ASSERT_TRUE(run.status.ok()) << run.status.error_message() << "\n" << coordinator_->Log();
    EXPECT_LT(run.seconds, 60);
    std::printf("[ measure ] worker killed in the rerank phase: %s after %.2f s\n",
                run.result.partial() ? "partial" : "complete (worker had answered)", run.seconds);
    if (run.result.partial()) {
      EXPECT_EQ(std::set<int>(run.result.missing_shards().begin(), run.result.missing_shards().end()), Range(8, 15));
      ExpectMatesFirst(run.result, id["fadul-1-1"], Range(0, 7));
    }
    ASSERT_TRUE(high_->Start()) << high_->Log();
    ASSERT_TRUE(WaitHeld(static_cast<std::int64_t>(scans.size()) + 1)) << high_->Log();
    for (int attempt = 0; attempt < 20; ++attempt) {
      run = Search(id["fadul-2-1"], 120000);
      if (!run.status.ok() || !run.result.partial()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    EXPECT_FALSE(run.result.partial()) << coordinator_->Log();
  }

  // 5. A hanging worker (SIGSTOP): the coordinator answers, partial, before
  //    the client's deadline (workers get the deadline less a margin).
  {
    high_->Signal(SIGSTOP);
    const int deadline_ms = 20000;
    SearchRun run = Search(id["fadul-1-1"], deadline_ms);
    high_->Signal(SIGCONT);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message() << "\n" << coordinator_->Log();
    EXPECT_TRUE(run.result.partial());
    EXPECT_EQ(std::set<int>(run.result.missing_shards().begin(), run.result.missing_shards().end()), Range(8, 15));
    EXPECT_LT(run.seconds, deadline_ms / 1000.0);
    ExpectMatesFirst(run.result, id["fadul-1-1"], Range(0, 7));
    std::printf("[ measure ] hanging worker: partial result in %.2f s (deadline %d ms)\n", run.seconds, deadline_ms);
  }
}

std::string ReadText(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Self-signed pair for 127.0.0.1 (as tests/service/python_example_test.sh makes one).
bool MakePair(const std::filesystem::path& dir, const std::string& name) {
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + (dir / (name + ".key")).string() +
                          " -out " + (dir / (name + ".crt")).string() +
                          " -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
                          "2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

// Coordinator and worker with one shared self-signed pair: searches work over
// mutual TLS; the worker refuses callers without a certificate of that pair.
TEST(ShardProcessesTlsTest, MutualTlsBetweenCoordinatorAndWorker) {
  testing::TestDatabase db;
  ASSERT_FALSE(db.url().empty());
  const testing::Tokens tokens = testing::Bootstrap(db.url());
  const auto dir = std::filesystem::temp_directory_path() / ("ballistics_shards_tls_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(MakePair(dir, "site"));
  ASSERT_TRUE(MakePair(dir, "stranger"));
  const std::string crt = (dir / "site.crt").string(), key = (dir / "site.key").string();
  Process worker("tls-worker",
                 {"--role", "shard", "--shards", "0-15", "--listen", "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key},
                 db.url(), /*insecure=*/false);
  ASSERT_TRUE(worker.Start());
  Process coordinator("tls-coordinator",
                      {"--role", "coordinator", "--listen", "127.0.0.1:0", "--shard-workers", worker.address(),
                       "--tls-cert", crt, "--tls-key", key},
                      db.url(), /*insecure=*/false);
  ASSERT_TRUE(coordinator.Start());

  grpc::SslCredentialsOptions client;
  client.pem_root_certs = ReadText(crt);
  auto channel = grpc::CreateChannel(coordinator.address(), grpc::SslCredentials(client));
  std::map<std::string, std::int64_t> id;
  for (const char* s : {"fadul-1-1", "fadul-1-2", "fadul-F", "fadul-2-1"}) {
    auto up = Upload(channel, tokens.technician_a, FadulBytes(s), Metadata("Agency A", "Fadul", s));
    ASSERT_TRUE(up.status.ok()) << up.status.error_message() << coordinator.Log();
    id[s] = up.response.casing_id();
  }
  // The worker as seen with the site's client certificate, without one, and with a stranger's.
  auto status = [&](const std::string& cert, const std::string& key_file, v1::ShardStatus* out) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadText(crt);
    if (!cert.empty()) {
      o.pem_cert_chain = ReadText(cert);
      o.pem_private_key = ReadText(key_file);
    }
    auto stub = v1::ShardService::NewStub(grpc::CreateChannel(worker.address(), grpc::SslCredentials(o)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return stub->GetShardStatus(&ctx, v1::ShardStatusRequest(), out);
  };
  v1::ShardStatus st;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline && (!status(crt, key, &st).ok() || st.signatures() < 4)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(st.signatures(), 4) << worker.Log();
  EXPECT_EQ(st.shards_size(), 16);
  EXPECT_FALSE(status("", "", &st).ok()) << "a caller without a client certificate was served";
  EXPECT_FALSE(status((dir / "stranger.crt").string(), (dir / "stranger.key").string(), &st).ok())
      << "a caller with an unknown certificate was served";

  auto stub = v1::SearchService::NewStub(channel);
  grpc::ClientContext ctx;
  Authorize(&ctx, tokens.examiner_a);
  v1::SearchRequest req;
  req.set_casing_id(id["fadul-1-1"]);
  req.set_top_n(5);
  auto reader = stub->Search(&ctx, req);
  v1::SearchUpdate u;
  v1::SearchResult r;
  while (reader->Read(&u)) {
    if (u.has_result()) r = u.result();
  }
  const grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message() << coordinator.Log();
  EXPECT_FALSE(r.partial());
  EXPECT_EQ(r.shards_answered(), 16);
  ASSERT_GE(r.breech_face_size(), 2);
  EXPECT_EQ((std::set<std::int64_t>{r.breech_face(0).casing_id(), r.breech_face(1).casing_id()}),
            (std::set<std::int64_t>{id["fadul-1-2"], id["fadul-F"]}));
  EXPECT_EQ(coordinator.Stop(), 0);
  EXPECT_EQ(worker.Stop(), 0);
  std::filesystem::remove_all(dir);
}

TEST(ShardProcessesConfigTest, BadShardRangeIsRefusedWithItsValue) {
  testing::TestDatabase db;
  ASSERT_FALSE(db.url().empty());
  testing::Bootstrap(db.url());
  Process p("bad", {"--role", "shard", "--shards", "3-99", "--listen", "127.0.0.1:0"}, db.url());
  // Start() fails (the process exits); the log names the bad value.
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    EXPECT_FALSE(p.Start());
  }
  EXPECT_NE(p.Log().find("99"), std::string::npos) << p.Log();
}

}  // namespace
}  // namespace ballistics
