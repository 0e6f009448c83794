// Database commands:
//   ballisticsctl db migrate|status [--database-url URL]
//   ballisticsctl ingest FILE... --agency A --case C --calibre K [...]
//   ballisticsctl casings list|show
// The database URL defaults to $BALLISTICS_DATABASE_URL.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballistics/ingest.h"
#include "ballistics/store.h"
#include "commands.h"
#include "progress.h"

namespace ballistics::cli {
namespace {

constexpr const char* kUrlEnv = "BALLISTICS_DATABASE_URL";

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

// Errors of the database itself (as opposed to a rejected input).
bool IsDatabaseError(const Status& s) {
  switch (s.code()) {
    case StatusCode::kUnavailable:
    case StatusCode::kInternal:
    case StatusCode::kAborted:
    case StatusCode::kUnauthenticated:
    case StatusCode::kPermissionDenied:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kCancelled:
    case StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

[[noreturn]] void Fail(const Status& s, int exit_code) {
  std::cerr << "error: " << OneLine(s.ToString()) << "\n";
  throw CLI::RuntimeError(exit_code);
}

void AddUrlOption(CLI::App* cmd, std::string& url) {
  cmd->add_option("--database-url", url, "PostgreSQL URL (default: $BALLISTICS_DATABASE_URL)")->envname(kUrlEnv);
}

std::unique_ptr<store::Store> ConnectOrFail(const std::string& url) {
  if (url.empty()) {
    Fail(InvalidArgument("no database: pass --database-url or set BALLISTICS_DATABASE_URL"), kExitUsage);
  }
  auto s = store::Store::Connect(url);
  if (!s.ok()) Fail(s.status(), kExitDatabaseError);
  return std::move(*s);
}

std::string Short(const std::string& sha) { return sha.substr(0, 12); }

std::string SizeText(const std::optional<store::SignatureInfo>& s) {
  return s ? std::to_string(s->width) + "x" + std::to_string(s->height) : "-";
}

nlohmann::json SignatureJson(const Signature& s) {
  return {{"kind", std::string(SignatureKindName(s.kind))},
          {"width", s.width()},
          {"height", s.height()},
          {"pixel_um", s.pixel_um},
          {"pipeline_version", s.pipeline_version},
          {"valid_fraction", s.quality.valid_fraction},
          {"valid_area_mm2", s.quality.valid_area_mm2}};
}

nlohmann::json CasingJson(const store::StoredCasing& c) {
  nlohmann::json sigs = nlohmann::json::array();
  for (const auto& s : c.signatures) {
    sigs.push_back({{"id", s.id},
                    {"kind", std::string(SignatureKindName(s.kind))},
                    {"width", s.width},
                    {"height", s.height},
                    {"pixel_um", s.pixel_um},
                    {"pipeline_version", s.pipeline_version},
                    {"valid_fraction", s.valid_fraction},
                    {"shard", s.shard}});
  }
  const CasingMetadata& m = c.metadata;
  return {{"id", c.id},
          {"agency", m.agency},
          {"case_number", m.case_number},
          {"exhibit_id", m.exhibit_id},
          {"calibre", m.calibre},
          {"source", std::string(CasingSourceName(m.source))},
          {"captured_at", m.captured_at ? nlohmann::json(*m.captured_at) : nlohmann::json()},
          {"submitted_by", m.submitted_by},
          {"firearm_id", m.firearm_id ? nlohmann::json(*m.firearm_id) : nlohmann::json()},
          {"created_at", c.created_at},
          {"scan",
           {{"id", c.scan_id},
            {"sha256", c.sha256_hex},
            {"format", std::string(ScanFormatName(c.format))},
            {"modality", std::string(ModalityName(c.modality))},
            {"width", c.width},
            {"height", c.height},
            {"pixel_um_x", c.pixel_um_x},
            {"pixel_um_y", c.pixel_um_y},
            {"header_length_unit", c.header_length_unit},
            {"size_bytes", c.original_size_bytes},
            {"scanner", nlohmann::json::parse(c.scanner_json, nullptr, false)}}},
          {"signatures", sigs}};
}

std::optional<store::SignatureInfo> FindKind(const store::StoredCasing& c, SignatureKind k) {
  for (const auto& s : c.signatures) {
    if (s.kind == k) return s;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- db

void RegisterDb(CLI::App& app) {
  auto url = std::make_shared<std::string>();
  CLI::App* db = app.add_subcommand("db", "Database administration");
  db->require_subcommand(1);
  CLI::App* migrate = db->add_subcommand("migrate", "Apply the schema migrations compiled into this binary");
  AddUrlOption(migrate, *url);
  migrate->callback([url] {
    auto s = ConnectOrFail(*url);
    auto r = s->Migrate();
    if (!r.ok()) Fail(r.status(), kExitDatabaseError);
    if (r->applied_now.empty()) {
      std::printf("schema up to date (version %d)\n", r->schema_version);
    } else {
      for (int v : r->applied_now) {
        for (const auto& m : store::EmbeddedMigrations()) {
          if (m.version == v) std::printf("applied %04d_%s\n", v, m.name.c_str());
        }
      }
      std::printf("schema version %d\n", r->applied_now.back());
    }
  });
  CLI::App* status = db->add_subcommand("status", "Check the schema and count what is stored");
  AddUrlOption(status, *url);
  auto json = std::make_shared<bool>(false);
  status->add_flag("--json", *json, "Print one JSON object");
  status->callback([url, json] {
    auto s = ConnectOrFail(*url);
    Status check = s->CheckMigrations();
    if (!check.ok()) Fail(check, kExitDatabaseError);
    auto c = s->Counts();
    if (!c.ok()) Fail(c.status(), kExitDatabaseError);
    const int version = store::EmbeddedMigrations().back().version;
    if (*json) {
      nlohmann::json j = {{"schema_version", version}, {"agencies", c->agencies}, {"cases", c->cases},
                          {"casings", c->casings},     {"scans", c->scans},       {"signatures", c->signatures},
                          {"signatures_per_shard", c->signatures_per_shard}};
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::printf("schema version %d (all migrations applied, checksums match)\n", version);
    std::printf("%lld agencies, %lld cases, %lld casings, %lld scans, %lld signatures\n",
                static_cast<long long>(c->agencies), static_cast<long long>(c->cases),
                static_cast<long long>(c->casings), static_cast<long long>(c->scans),
                static_cast<long long>(c->signatures));
    std::printf("signatures per shard:");
    for (auto n : c->signatures_per_shard) std::printf(" %lld", static_cast<long long>(n));
    std::printf("\n");
  });
}

// ---------------------------------------------------------------- ingest

struct IngestArgs {
  std::vector<std::string> files;
  std::string url;
  std::string agency, case_number, calibre, source = "crime-scene", exhibit, submitted_by, captured_at;
  std::optional<std::int64_t> firearm_id;
  std::optional<double> pixel_um;
  int threads = 0;
  bool json = false;
};

// One file's way through the pipeline, filled by a worker, consumed in order.
struct Slot {
  bool ready = false;
  std::string sha256_hex;
  // Set when these bytes are stored already: then nothing was normalized.
  std::optional<std::int64_t> existing_casing;
  std::optional<StatusOr<ingest::PreparedScan>> prepared;
};

void PrintFileLine(const std::string& file, std::int64_t casing_id, const std::string& sha, const std::string& bf,
                   const std::string& fp, bool already) {
  std::printf("%-28s casing %-6lld sha256 %s  BF %-9s FP %-9s %s\n",
              std::filesystem::path(file).filename().string().c_str(), static_cast<long long>(casing_id),
              Short(sha).c_str(), bf.c_str(), fp.c_str(), already ? "already present" : "new");
}

void RunIngest(const IngestArgs& a) {
  // Everything about the request is checked before any file is read or the
  // database is touched.
  auto source = ParseCasingSource(a.source);
  if (!source.ok()) Fail(source.status(), kExitUsage);
  if (!a.exhibit.empty() && a.files.size() > 1) {
    Fail(InvalidArgument("--exhibit names one casing but " + std::to_string(a.files.size()) +
                         " files were given; leave it out to use each file's name as its exhibit id"),
         kExitUsage);
  }
  std::string submitter = a.submitted_by;
  if (submitter.empty()) {
    const char* user = std::getenv("USER");
    submitter = user && *user ? user : "unknown";
  }
  std::vector<CasingMetadata> metadata(a.files.size());
  for (std::size_t i = 0; i < a.files.size(); ++i) {
    CasingMetadata m;
    m.agency = a.agency;
    m.case_number = a.case_number;
    m.calibre = a.calibre;
    m.source = *source;
    m.exhibit_id = a.exhibit.empty() ? std::filesystem::path(a.files[i]).stem().string() : a.exhibit;
    m.submitted_by = submitter;
    if (!a.captured_at.empty()) m.captured_at = a.captured_at;
    m.firearm_id = a.firearm_id;
    m = ingest::NormalizedMetadata(std::move(m));
    Status v = ingest::ValidateMetadata(m);
    if (!v.ok()) Fail(v.WithContext(a.files[i]), kExitUsage);
    metadata[i] = std::move(m);
  }
  ingest::PrepareOptions options;
  options.read.pixel_um = a.pixel_um;
  Status options_ok = ingest::ValidatePrepareOptions(options);
  if (!options_ok.ok()) Fail(options_ok, kExitUsage);

  auto store = ConnectOrFail(a.url);
  Status schema = store->CheckMigrations();
  if (!schema.ok()) Fail(schema, kExitDatabaseError);

  const std::size_t n = a.files.size();
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t threads = std::min<std::size_t>(n, a.threads > 0 ? static_cast<std::size_t>(a.threads) : hw);
  // Workers run at most `window` files ahead of the writer so memory stays bounded.
  const std::size_t window = 2 * threads;
  std::vector<Slot> slots(n);
  std::mutex mu;
  std::condition_variable cv;
  std::size_t next = 0, consumed = 0;
  bool stop = false;
  auto worker = [&] {
    // Each worker looks up SHA-256s on a connection of its own (a Store is not
    // thread-safe), so files stored before are not normalized again: a re-run
    // over the same files costs one hash and one query per file. Without the
    // connection the file is simply prepared; the writer still deduplicates.
    std::unique_ptr<store::Store> lookup;
    if (auto c = store::Store::Connect(a.url); c.ok()) lookup = std::move(*c);
    for (;;) {
      std::size_t i;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stop || next >= n || next < consumed + window; });
        if (stop || next >= n) return;
        i = next++;
      }
      Slot result;
      auto bytes = ReadFileBytes(a.files[i], options.read.limits.max_file_bytes);
      if (!bytes.ok()) {
        result.prepared.emplace(bytes.status().WithContext(a.files[i]));
      } else {
        result.sha256_hex = Sha256Hex(*bytes);
        if (lookup) {
          auto id = lookup->FindCasingBySha256(result.sha256_hex);
          if (id.ok()) result.existing_casing = *id;
        }
        if (!result.existing_casing) {
          auto p = ingest::PrepareScan(std::move(*bytes), options);
          if (!p.ok()) p = p.status().WithContext(a.files[i]);
          result.prepared.emplace(std::move(p));
        }
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        slots[i] = std::move(result);
        slots[i].ready = true;
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(worker);

  // The bar (stderr, only on a terminal) is worth it for many files; per-file
  // lines clear its line before printing so the two do not interleave.
  std::optional<ProgressBar> progress;
  if (n > 1) progress.emplace("ingest", n);
  const bool clear_bar = n > 1 && isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  nlohmann::json results = nlohmann::json::array();
  std::size_t stored = 0, present = 0, rejected = 0, db_errors = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Slot slot;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return slots[i].ready; });
      slot = std::move(slots[i]);
      slots[i] = Slot{};
      consumed = i + 1;
    }
    cv.notify_all();
    std::optional<StatusOr<ingest::PreparedScan>>& item = slot.prepared;
    nlohmann::json r = {{"file", a.files[i]}};
    Status error;
    if (slot.existing_casing) {
      auto c = store->GetCasing(*slot.existing_casing);
      if (!c.ok()) {
        error = c.status().WithContext(a.files[i]);
      } else {
        r["status"] = "already_present";
        r["casing_id"] = c->id;
        r["sha256"] = slot.sha256_hex;
        r["exhibit_id"] = c->metadata.exhibit_id;
        r["signatures"] = CasingJson(*c)["signatures"];
        ++present;
        if (!a.json) {
          if (clear_bar) std::fputs("\r\033[K", stderr);
          PrintFileLine(a.files[i], c->id, slot.sha256_hex, SizeText(FindKind(*c, SignatureKind::kBreechFace)),
                        SizeText(FindKind(*c, SignatureKind::kFiringPin)), true);
          std::fflush(stdout);
        }
      }
    } else if (!item->ok()) {
      error = item->status();
    } else {
      const ingest::PreparedScan& p = **item;
      auto res = ingest::StorePrepared(*store, metadata[i], p);
      if (!res.ok()) {
        error = res.status().WithContext(a.files[i]);
      } else {
        const auto& bf = p.normalized.breech_face;
        const auto& fp = p.normalized.firing_pin;
        r["status"] = res->already_existed ? "already_present" : "stored";
        r["casing_id"] = res->casing_id;
        r["sha256"] = p.sha256_hex;
        r["exhibit_id"] = metadata[i].exhibit_id;
        r["signatures"] = nlohmann::json::array({SignatureJson(bf)});
        if (fp) r["signatures"].push_back(SignatureJson(*fp));
        r["warnings"] = p.normalized.warnings;
        (res->already_existed ? present : stored) += 1;
        if (!a.json) {
          if (clear_bar) std::fputs("\r\033[K", stderr);
          PrintFileLine(a.files[i], res->casing_id, p.sha256_hex,
                        std::to_string(bf.width()) + "x" + std::to_string(bf.height()),
                        fp ? std::to_string(fp->width()) + "x" + std::to_string(fp->height()) : "-",
                        res->already_existed);
          for (const auto& w : p.normalized.warnings) std::printf("  warning: %s\n", w.c_str());
          std::fflush(stdout);
        }
      }
    }
    if (!error.ok()) {
      const bool db = IsDatabaseError(error);
      (db ? db_errors : rejected) += 1;
      r["status"] = db ? "database_error" : "rejected";
      r["error"] = OneLine(error.ToString());
      if (clear_bar) std::fputs("\r\033[K", stderr);
      std::cerr << (db ? "database error: " : "rejected: ") << OneLine(error.ToString()) << "\n";
    }
    results.push_back(std::move(r));
    if (progress) progress->Advance();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
  }
  cv.notify_all();
  for (auto& t : pool) t.join();
  if (progress) progress->Finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (a.json) {
    nlohmann::json j = {{"files", results},
                        {"summary",
                         {{"stored", stored},
                          {"already_present", present},
                          {"rejected", rejected},
                          {"database_errors", db_errors},
                          {"threads", threads},
                          {"seconds", seconds}}}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("%zu stored, %zu already present, %zu rejected%s in %.2f s (%zu threads, %.1f files/s)\n", stored,
                present, rejected, db_errors ? (", " + std::to_string(db_errors) + " database errors").c_str() : "",
                seconds, threads, seconds > 0 ? static_cast<double>(n) / seconds : 0.0);
  }
  if (db_errors > 0) throw CLI::RuntimeError(kExitDatabaseError);
  if (rejected > 0) throw CLI::RuntimeError(kExitInputError);
}

void RegisterIngest(CLI::App& app) {
  auto a = std::make_shared<IngestArgs>();
  CLI::App* cmd = app.add_subcommand(
      "ingest", "Read, normalize and store scans: one casing per file, one transaction per file");
  cmd->add_option("files", a->files, "X3P, PNG or TIFF files")->required()->check(CLI::ExistingFile);
  cmd->add_option("--agency", a->agency, "Submitting agency")->required();
  cmd->add_option("--case", a->case_number, "Case number (unique within the agency)")->required();
  cmd->add_option("--calibre", a->calibre, "Calibre, free text (e.g. \"9mm Luger\")")->required();
  cmd->add_option("--source", a->source, "crime-scene, test-fire, recovered-firearm or police-issued")
      ->capture_default_str();
  cmd->add_option("--exhibit", a->exhibit, "Exhibit id (one file only; default: the file name without extension)");
  cmd->add_option("--submitted-by", a->submitted_by, "Who submits (default: $USER)");
  cmd->add_option("--captured-at", a->captured_at, "When the scan was taken, ISO 8601");
  cmd->add_option("--firearm-id", a->firearm_id, "Id of the firearm a test fire came from");
  cmd->add_option("--pixel-um", a->pixel_um, "Pixel size in um for 2D images without resolution tags");
  cmd->add_option("--threads", a->threads, "Read+normalize threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", a->json, "Print one JSON object with a result per file");
  AddUrlOption(cmd, a->url);
  cmd->callback([a] { RunIngest(*a); });
}

// ---------------------------------------------------------------- casings

void RegisterCasings(CLI::App& app) {
  CLI::App* casings = app.add_subcommand("casings", "What is stored");
  casings->require_subcommand(1);

  struct ListArgs {
    std::string url, agency, case_number;
    int limit = 1000;
    bool json = false;
  };
  auto la = std::make_shared<ListArgs>();
  CLI::App* list = casings->add_subcommand("list", "List stored casings in id order");
  AddUrlOption(list, la->url);
  list->add_option("--agency", la->agency, "Only this agency");
  list->add_option("--case", la->case_number, "Only this case number");
  list->add_option("--limit", la->limit, "At most this many")->check(CLI::PositiveNumber)->capture_default_str();
  list->add_flag("--json", la->json, "Print a JSON array");
  list->callback([la] {
    auto s = ConnectOrFail(la->url);
    Status schema = s->CheckMigrations();
    if (!schema.ok()) Fail(schema, kExitDatabaseError);
    store::ListCasingsOptions o;
    if (!la->agency.empty()) o.agency = la->agency;
    if (!la->case_number.empty()) o.case_number = la->case_number;
    o.limit = la->limit;
    auto r = s->ListCasings(o);
    if (!r.ok()) Fail(r.status(), kExitDatabaseError);
    if (la->json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& c : *r) j.push_back(CasingJson(c));
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::printf("%-6s %-16s %-12s %-16s %-12s %-12s %-12s %-9s %-9s %s\n", "id", "agency", "case", "exhibit",
                "calibre", "source", "sha256", "BF", "FP", "created (UTC)");
    for (const auto& c : *r) {
      const auto& m = c.metadata;
      std::printf("%-6lld %-16s %-12s %-16s %-12s %-12s %-12s %-9s %-9s %s\n", static_cast<long long>(c.id),
                  m.agency.c_str(), m.case_number.c_str(), m.exhibit_id.c_str(), m.calibre.c_str(),
                  std::string(CasingSourceName(m.source)).c_str(), Short(c.sha256_hex).c_str(),
                  SizeText(FindKind(c, SignatureKind::kBreechFace)).c_str(),
                  SizeText(FindKind(c, SignatureKind::kFiringPin)).c_str(), c.created_at.c_str());
    }
    std::printf("%zu casings\n", r->size());
  });

  struct ShowArgs {
    std::string url;
    std::int64_t id = 0;
  };
  auto sa = std::make_shared<ShowArgs>();
  CLI::App* show = casings->add_subcommand("show", "One casing with its scan and signatures, as JSON");
  AddUrlOption(show, sa->url);
  show->add_option("id", sa->id, "Casing id")->required();
  show->callback([sa] {
    auto s = ConnectOrFail(sa->url);
    auto c = s->GetCasing(sa->id);
    if (!c.ok()) Fail(c.status(), c.status().code() == StatusCode::kNotFound ? kExitInputError : kExitDatabaseError);
    std::cout << CasingJson(*c).dump(2) << "\n";
  });
}

}  // namespace

void RegisterStoreCommands(CLI::App& app) {
  RegisterDb(app);
  RegisterIngest(app);
  RegisterCasings(app);
}

}  // namespace ballistics::cli
