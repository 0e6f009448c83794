// Store: domain structs <-> PostgreSQL rows (schema in db/migrations/).
#include "ballistics/store.h"

#include <spdlog/spdlog.h>
#include <sys/select.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "store_impl.h"

namespace ballistics {

std::string_view CasingSourceName(CasingSource s) {
  switch (s) {
    case CasingSource::kCrimeScene: return "crime_scene";
    case CasingSource::kTestFire: return "test_fire";
    case CasingSource::kRecoveredFirearm: return "recovered_firearm";
    case CasingSource::kPoliceIssued: return "police_issued";
    case CasingSource::kManufacturerTestFire: return "manufacturer_test_fire";
  }
  return "crime_scene";
}

StatusOr<CasingSource> ParseCasingSource(std::string_view s) {
  std::string norm(s);
  std::replace(norm.begin(), norm.end(), '-', '_');
  for (CasingSource c : {CasingSource::kCrimeScene, CasingSource::kTestFire, CasingSource::kRecoveredFirearm,
                         CasingSource::kPoliceIssued, CasingSource::kManufacturerTestFire}) {
    if (norm == CasingSourceName(c)) return c;
  }
  return InvalidArgument("unknown casing source '" + std::string(s) +
                         "' (expected crime-scene, test-fire, recovered-firearm, police-issued or manufacturer-test-fire)");
}

namespace store {
namespace {

// The values column holds the in-memory float32 bytes as they are; the format is
// defined as little-endian, which is what this code assumes the host to be.
static_assert(std::endian::native == std::endian::little, "signature bytes are stored little-endian");

// Bit i of byte i/8 (LSB first) = 1 where value i is finite. See 0001_initial.sql.
std::vector<std::uint8_t> PackMask(const cv::Mat1f& values) {
  const std::size_t n = values.total();
  std::vector<std::uint8_t> mask((n + 7) / 8, 0);
  std::size_t i = 0;
  for (int y = 0; y < values.rows; ++y) {
    const float* row = values[y];
    for (int x = 0; x < values.cols; ++x, ++i) {
      if (std::isfinite(row[x])) mask[i >> 3] |= static_cast<std::uint8_t>(1u << (i & 7));
    }
  }
  return mask;
}

std::span<const std::uint8_t> MatBytes(const cv::Mat1f& m) {
  return {m.ptr<std::uint8_t>(0), m.total() * sizeof(float)};
}

StatusOr<SignatureKind> ParseKind(const std::string& k) {
  if (k == "BF") return SignatureKind::kBreechFace;
  if (k == "FP") return SignatureKind::kFiringPin;
  return DataLoss("store: unknown signature kind '" + k + "'");
}

Modality ParseModality(const std::string& m) { return m == "2d" ? Modality::kImage2d : Modality::kTopography3d; }

ScanFormat ParseFormat(const std::string& f) {
  if (f == "png") return ScanFormat::kPng;
  if (f == "tiff") return ScanFormat::kTiff;
  return ScanFormat::kX3p;
}

// "signatures_p07" -> 7.
int ShardOfPartition(const std::string& name) {
  const auto pos = name.rfind("_p");
  if (pos == std::string::npos) return -1;
  return std::atoi(name.c_str() + pos + 2);
}

std::string ScannerJson(const Scan& scan) {
  nlohmann::json j = {
      {"manufacturer", scan.scanner.manufacturer},
      {"model", scan.scanner.model},
      {"serial", scan.scanner.serial},
      {"version", scan.scanner.version},
      {"creator", scan.scanner.creator},
      {"capture_date", scan.scanner.capture_date},
      {"comment", scan.scanner.comment},
      {"source_bit_depth", scan.source_bit_depth},
      {"source_data_type", scan.source_data_type},
      {"had_mask", scan.had_mask},
  };
  // Strings from files may hold invalid UTF-8; replace rather than fail the ingest.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Status ValidateSignature(const Signature& s, std::size_t index) {
  const std::string where = "store: signature " + std::to_string(index) + " (" +
                            std::string(SignatureKindName(s.kind)) + ")";
  if (s.values.empty()) return InvalidArgument(where + ": no values");
  if (!s.values.isContinuous()) return InvalidArgument(where + ": values are not a continuous matrix");
  if (s.pipeline_version.empty()) return InvalidArgument(where + ": empty pipeline_version");
  return Status::Ok();
}

// Columns of the signature queries, in the order DecodeSignatureRow reads them.
constexpr const char* kSignatureColumns =
    "id, casing_id, scan_id, kind, modality, pipeline_version, pixel_um, width, height, \"values\", "
    "valid_fraction, rms_height, valid_area_mm2";

// Signature columns then the partition's name (column 13, for the shard), from the parent table.
std::string SignatureSelect() {
  return std::string("SELECT ") + kSignatureColumns + ", tableoid::regclass::text FROM signatures ";
}

StatusOr<StoredSignature> DecodeSignatureRow(const pg::Result& r, int row, int shard) {
  StoredSignature out;
  out.id = r.Int64(row, 0);
  out.casing_id = r.Int64(row, 1);
  out.scan_id = r.Int64(row, 2);
  out.shard = shard;
  Signature& s = out.signature;
  BALLISTICS_ASSIGN_OR_RETURN(s.kind, ParseKind(r.Text(row, 3)));
  s.modality = ParseModality(r.Text(row, 4));
  s.pipeline_version = r.Text(row, 5);
  s.pixel_um = r.Double(row, 6);
  const int width = r.Int32(row, 7);
  const int height = r.Int32(row, 8);
  auto bytes = r.RawBytes(row, 9);
  if (width <= 0 || height <= 0 ||
      bytes.size() != static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * sizeof(float)) {
    return DataLoss("store: signature " + std::to_string(out.id) + ": " + std::to_string(bytes.size()) +
                    " value bytes for " + std::to_string(width) + "x" + std::to_string(height));
  }
  s.values.create(height, width);
  std::memcpy(s.values.ptr<std::uint8_t>(0), bytes.data(), bytes.size());
  s.quality.valid_fraction = r.Double(row, 10);
  s.quality.rms_height = r.Double(row, 11);
  s.quality.valid_area_mm2 = r.Double(row, 12);
  return out;
}

// Casing + scan columns of GetCasing / ListCasings, read by DecodeCasingRow.
std::string CasingSelect() {
  return "SELECT c.id, a.name, k.case_number, c.exhibit_id, c.calibre, c.source::text, " +
         pg::IsoUtc("c.captured_at") + ", c.submitted_by, c.firearm_id, " + pg::IsoUtc("c.created_at") +
         ", s.id, s.sha256, s.format, s.modality, s.pixel_um_x, s.pixel_um_y, s.width, s.height, "
         "s.header_length_unit, s.original_size_bytes, s.scanner::text, c.capture_device "
         "FROM casings c JOIN agencies a ON a.id = c.agency_id JOIN cases k ON k.id = c.case_id "
         "LEFT JOIN scans s ON s.casing_id = c.id ";
}

StoredCasing DecodeCasingRow(const pg::Result& r, int i) {
  StoredCasing c;
  c.id = r.Int64(i, 0);
  c.metadata.agency = r.Text(i, 1);
  c.metadata.case_number = r.Text(i, 2);
  c.metadata.exhibit_id = r.Text(i, 3);
  c.metadata.calibre = r.Text(i, 4);
  auto src = ParseCasingSource(r.Text(i, 5));
  c.metadata.source = src.ok() ? *src : CasingSource::kCrimeScene;
  if (!r.IsNull(i, 6)) c.metadata.captured_at = r.Text(i, 6);
  c.metadata.submitted_by = r.Text(i, 7);
  if (!r.IsNull(i, 8)) c.metadata.firearm_id = r.Int64(i, 8);
  c.created_at = r.Text(i, 9);
  c.metadata.capture_device = r.Text(i, 21);
  if (!r.IsNull(i, 10)) {
    c.scan_id = r.Int64(i, 10);
    c.sha256_hex = r.Text(i, 11);
    c.format = ParseFormat(r.Text(i, 12));
    c.modality = ParseModality(r.Text(i, 13));
    c.pixel_um_x = r.Double(i, 14);
    c.pixel_um_y = r.Double(i, 15);
    c.width = r.Int32(i, 16);
    c.height = r.Int32(i, 17);
    c.header_length_unit = r.Text(i, 18);
    c.original_size_bytes = static_cast<std::uint64_t>(r.Int64(i, 19));
    c.scanner_json = r.Text(i, 20);
  }
  return c;
}

// Attaches signature summaries to casings (one query for the whole page).
Status AttachSignatureInfo(pg::Connection& c, std::vector<StoredCasing>& casings) {
  if (casings.empty()) return Status::Ok();
  std::string ids = "{";
  for (std::size_t i = 0; i < casings.size(); ++i) ids += (i ? "," : "") + std::to_string(casings[i].id);
  ids += "}";
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, c.Exec("read signature list",
                           "SELECT casing_id, id, kind, pipeline_version, pixel_um, width, height, valid_fraction, "
                           "tableoid::regclass::text FROM signatures WHERE casing_id = ANY($1::bigint[]) "
                           "ORDER BY casing_id, kind, id",
                           {pg::Param::Text(ids)}));
  for (int i = 0; i < r.rows(); ++i) {
    const std::int64_t casing_id = r.Int64(i, 0);
    auto it = std::find_if(casings.begin(), casings.end(), [&](const StoredCasing& k) { return k.id == casing_id; });
    if (it == casings.end()) continue;
    SignatureInfo s;
    s.id = r.Int64(i, 1);
    BALLISTICS_ASSIGN_OR_RETURN(s.kind, ParseKind(r.Text(i, 2)));
    s.pipeline_version = r.Text(i, 3);
    s.pixel_um = r.Double(i, 4);
    s.width = r.Int32(i, 5);
    s.height = r.Int32(i, 6);
    s.valid_fraction = r.Double(i, 7);
    s.shard = ShardOfPartition(r.Text(i, 8));
    it->signatures.push_back(std::move(s));
  }
  return Status::Ok();
}

bool IsUniqueViolationOn(const Status& s, std::string_view constraint) {
  return s.code() == StatusCode::kAlreadyExists && s.message().find(constraint) != std::string::npos;
}

}  // namespace

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

bool Store::Usable() const { return !impl_->listening && impl_->conn->Idle(); }

StatusOr<std::unique_ptr<Store>> Store::Connect(const std::string& database_url) {
  BALLISTICS_ASSIGN_OR_RETURN(auto conn, pg::Connection::Open(database_url));
  return std::unique_ptr<Store>(new Store(std::make_unique<Impl>(std::move(conn))));
}

StatusOr<std::int64_t> Store::FindCasingBySha256(const std::string& sha256_hex) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("find scan by sha256",
                                                              "SELECT casing_id FROM scans WHERE sha256 = $1",
                                                              {pg::Param::Text(sha256_hex)}));
  if (r.rows() == 0) return NotFound("store: no scan with sha256 " + sha256_hex);
  return r.Int64(0, 0);
}

StatusOr<IngestResult> Store::IngestCasing(const CasingMetadata& md, const Scan& scan,
                                           std::span<const std::uint8_t> original_bytes,
                                           std::span<const Signature> signatures) {
  if (original_bytes.empty()) return InvalidArgument("store: ingest: no original file bytes");
  const std::string sha = Sha256HexOf(original_bytes);
  if (!scan.sha256_hex.empty() && scan.sha256_hex != sha) {
    return InvalidArgument("store: ingest: scan.sha256_hex " + scan.sha256_hex +
                           " is not the SHA-256 of the given bytes (" + sha + ")");
  }
  if (scan.values.empty()) return InvalidArgument("store: ingest: scan has no values");
  if (!(std::isfinite(scan.pixel_um_x) && scan.pixel_um_x > 0 && std::isfinite(scan.pixel_um_y) &&
        scan.pixel_um_y > 0)) {
    return InvalidArgument("store: ingest: scan pixel size " + std::to_string(scan.pixel_um_x) + " x " +
                           std::to_string(scan.pixel_um_y) + " um is not positive and finite");
  }
  for (std::size_t i = 0; i < signatures.size(); ++i) BALLISTICS_RETURN_IF_ERROR(ValidateSignature(signatures[i], i));

  // Same bytes stored before: report the existing casing, write nothing.
  auto existing = FindCasingBySha256(sha);
  if (existing.ok()) {
    IngestResult out;
    out.casing_id = *existing;
    out.already_existed = true;
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("find scan id", "SELECT id FROM scans WHERE sha256 = $1",
                                                                {pg::Param::Text(sha)}));
    if (r.rows() > 0) out.scan_id = r.Int64(0, 0);
    return out;
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();

  pg::Connection& c = *impl_->conn;
  IngestResult out;
  Status st = [&]() -> Status {
    BALLISTICS_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(c));
    // DO UPDATE (not DO NOTHING) so RETURNING yields the id also when the row
    // exists or a concurrent ingest just created it.
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result agency,
                                c.Exec("upsert agency",
                                       "INSERT INTO agencies (name) VALUES ($1) "
                                       "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                                       {pg::Param::Text(md.agency)}));
    const std::int64_t agency_id = agency.Int64(0, 0);
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result kase,
                                c.Exec("upsert case",
                                       "INSERT INTO cases (agency_id, case_number) VALUES ($1, $2) "
                                       "ON CONFLICT (agency_id, case_number) DO UPDATE SET case_number = "
                                       "EXCLUDED.case_number RETURNING id",
                                       {pg::Param::Int(agency_id), pg::Param::Text(md.case_number)}));
    const std::int64_t case_id = kase.Int64(0, 0);
    auto casing = c.Exec("insert casing",
                         "INSERT INTO casings (agency_id, case_id, exhibit_id, calibre, source, firearm_id, "
                         "captured_at, submitted_by, capture_device) VALUES ($1, $2, $3, $4, $5::casing_source, $6, "
                         "$7::timestamptz, $8, $9) RETURNING id",
                         {pg::Param::Int(agency_id), pg::Param::Int(case_id), pg::Param::Text(md.exhibit_id),
                          pg::Param::Text(md.calibre), pg::Param::Text(std::string(CasingSourceName(md.source))),
                          pg::Param::Optional(md.firearm_id), pg::Param::Optional(md.captured_at),
                          pg::Param::Text(md.submitted_by), pg::Param::Text(md.capture_device)});
    if (!casing.ok()) {
      if (IsUniqueViolationOn(casing.status(), "casings_case_id_exhibit_id_key")) {
        return AlreadyExists("store: exhibit '" + md.exhibit_id + "' of case '" + md.case_number + "' (agency '" +
                             md.agency + "') is already stored with a different scan; " +
                             casing.status().message());
      }
      return casing.status();
    }
    out.casing_id = casing->Int64(0, 0);

    BALLISTICS_ASSIGN_OR_RETURN(
        pg::Result scan_row,
        c.Exec("insert scan",
               "INSERT INTO scans (casing_id, sha256, format, modality, pixel_um_x, pixel_um_y, width, height, "
               "header_length_unit, missing_fraction, original_size_bytes, scanner) "
               "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb) RETURNING id",
               {pg::Param::Int(out.casing_id), pg::Param::Text(sha),
                pg::Param::Text(std::string(ScanFormatName(scan.format))),
                pg::Param::Text(std::string(ModalityName(scan.modality))), pg::Param::Double(scan.pixel_um_x),
                pg::Param::Double(scan.pixel_um_y), pg::Param::Int(scan.width()), pg::Param::Int(scan.height()),
                pg::Param::Text(scan.header_length_unit), pg::Param::Double(scan.MissingFraction()),
                pg::Param::Int(static_cast<std::int64_t>(original_bytes.size())),
                pg::Param::Text(ScannerJson(scan))}));
    out.scan_id = scan_row.Int64(0, 0);
    BALLISTICS_RETURN_IF_ERROR(c.Exec("insert scan bytes", "INSERT INTO scan_blobs (scan_id, bytes) VALUES ($1, $2)",
                                      {pg::Param::Int(out.scan_id), pg::Param::Bytes(original_bytes)})
                                   .status());
    for (const Signature& s : signatures) {
      const std::vector<std::uint8_t> mask = PackMask(s.values);
      BALLISTICS_ASSIGN_OR_RETURN(
          pg::Result sig,
          c.Exec("insert signature " + std::string(SignatureKindName(s.kind)),
                 "INSERT INTO signatures (casing_id, scan_id, kind, modality, pipeline_version, pixel_um, width, "
                 "height, \"values\", mask, valid_fraction, rms_height, valid_area_mm2) "
                 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                 {pg::Param::Int(out.casing_id), pg::Param::Int(out.scan_id),
                  pg::Param::Text(std::string(SignatureKindName(s.kind))),
                  pg::Param::Text(std::string(ModalityName(s.modality))), pg::Param::Text(s.pipeline_version),
                  pg::Param::Double(s.pixel_um), pg::Param::Int(s.width()), pg::Param::Int(s.height()),
                  pg::Param::Bytes(MatBytes(s.values)), pg::Param::Bytes(mask),
                  pg::Param::Double(s.quality.valid_fraction), pg::Param::Double(s.quality.rms_height),
                  pg::Param::Double(s.quality.valid_area_mm2)}));
      out.signature_ids.push_back(sig.Int64(0, 0));
    }
    return tx->Commit();
  }();
  if (st.ok()) return out;
  // A concurrent ingest of the same bytes committed first: ours was rolled back
  // as a whole after a unique violation (on scans.sha256, or earlier on the
  // exhibit when both used the same exhibit id); report theirs.
  if (st.code() == StatusCode::kAlreadyExists) {
    auto winner = FindCasingBySha256(sha);
    if (winner.ok()) {
      IngestResult dup;
      dup.casing_id = *winner;
      dup.already_existed = true;
      BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, c.Exec("find scan id", "SELECT id FROM scans WHERE sha256 = $1",
                                                       {pg::Param::Text(sha)}));
      if (r.rows() > 0) dup.scan_id = r.Int64(0, 0);
      return dup;
    }
  }
  return st;
}

StatusOr<StoredCasing> Store::GetCasing(std::int64_t casing_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("read casing", CasingSelect() + "WHERE c.id = $1",
                                                              {pg::Param::Int(casing_id)}));
  if (r.rows() == 0) return NotFound("store: no casing with id " + std::to_string(casing_id));
  std::vector<StoredCasing> one{DecodeCasingRow(r, 0)};
  BALLISTICS_RETURN_IF_ERROR(AttachSignatureInfo(*impl_->conn, one));
  return std::move(one[0]);
}

StatusOr<std::vector<StoredCasing>> Store::ListCasings(const ListCasingsOptions& o) {
  if (o.limit <= 0) return InvalidArgument("store: list casings: limit " + std::to_string(o.limit) + " is not positive");
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("list casings",
                        CasingSelect() +
                            "WHERE c.id > $1 AND ($2::text IS NULL OR a.name = $2) "
                            "AND ($3::text IS NULL OR k.case_number = $3) ORDER BY c.id LIMIT $4",
                        {pg::Param::Int(o.after_id), pg::Param::Optional(o.agency),
                         pg::Param::Optional(o.case_number), pg::Param::Int(o.limit)}));
  std::vector<StoredCasing> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(DecodeCasingRow(r, i));
  BALLISTICS_RETURN_IF_ERROR(AttachSignatureInfo(*impl_->conn, out));
  return out;
}

StatusOr<std::vector<StoredSignature>> Store::GetSignatures(std::int64_t casing_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("read signatures",
                                      SignatureSelect() + "WHERE casing_id = $1 ORDER BY kind, id",
                                      {pg::Param::Int(casing_id)}, /*binary_result=*/true));
  std::vector<StoredSignature> out;
  for (int i = 0; i < r.rows(); ++i) {
    BALLISTICS_ASSIGN_OR_RETURN(StoredSignature s, DecodeSignatureRow(r, i, ShardOfPartition(r.Text(i, 13))));
    out.push_back(std::move(s));
  }
  return out;
}

StatusOr<StoredSignature> Store::GetSignature(std::int64_t casing_id, std::int64_t signature_id) {
  // casing_id = $1 prunes to one hash partition at plan time (unnamed statements
  // are planned with their parameter values); (id, casing_id) is its primary key.
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("read signature",
                                      SignatureSelect() + "WHERE casing_id = $1 AND id = $2",
                                      {pg::Param::Int(casing_id), pg::Param::Int(signature_id)},
                                      /*binary_result=*/true));
  if (r.rows() == 0) {
    return NotFound("store: no signature " + std::to_string(signature_id) + " of casing " + std::to_string(casing_id));
  }
  return DecodeSignatureRow(r, 0, ShardOfPartition(r.Text(0, 13)));
}

StatusOr<std::vector<std::uint8_t>> Store::GetOriginalBytes(std::int64_t casing_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("read scan bytes",
                                      "SELECT b.bytes FROM scans s JOIN scan_blobs b ON b.scan_id = s.id "
                                      "WHERE s.casing_id = $1 ORDER BY s.id LIMIT 1",
                                      {pg::Param::Int(casing_id)}, /*binary_result=*/true));
  if (r.rows() == 0) return NotFound("store: no scan bytes for casing " + std::to_string(casing_id));
  return r.Bytes(0, 0);
}

StatusOr<StoreCounts> Store::Counts() {
  pg::Connection& c = *impl_->conn;
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r,
                              c.Exec("count rows",
                                     "SELECT (SELECT count(*) FROM agencies), (SELECT count(*) FROM cases), "
                                     "(SELECT count(*) FROM casings), (SELECT count(*) FROM scans), "
                                     "(SELECT count(*) FROM signatures)"));
  StoreCounts out;
  out.agencies = r.Int64(0, 0);
  out.cases = r.Int64(0, 1);
  out.casings = r.Int64(0, 2);
  out.scans = r.Int64(0, 3);
  out.signatures = r.Int64(0, 4);
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result per, c.Exec("count signatures per shard",
                                                     "SELECT tableoid::regclass::text, count(*) FROM signatures "
                                                     "GROUP BY 1"));
  for (int i = 0; i < per.rows(); ++i) {
    const int shard = ShardOfPartition(per.Text(i, 0));
    if (shard >= 0 && shard < kSignatureShards) out.signatures_per_shard[static_cast<std::size_t>(shard)] = per.Int64(i, 1);
  }
  return out;
}

namespace {

Status CheckShards(std::span<const int> shards, const char* what) {
  for (int shard : shards) {
    if (shard < 0 || shard >= kSignatureShards) {
      return InvalidArgument(std::string("store: ") + what + ": shard " + std::to_string(shard) + " is not in 0.." +
                             std::to_string(kSignatureShards - 1));
    }
  }
  return Status::Ok();
}

// "signatures_p07" for shard 7; built from a range-checked integer, never from input text.
std::string PartitionTable(int shard) {
  char table[32];
  std::snprintf(table, sizeof(table), "signatures_p%02d", shard);
  return table;
}

// Streams `select` (a query over one partition) through a binary cursor,
// batch_rows rows per FETCH, each row handed to `row_sink`.
Status StreamCursor(pg::Connection& c, const std::string& select, int batch_rows,
                    const std::function<Status(const pg::Result&, int)>& row_sink) {
  // A cursor (inside a transaction: one consistent snapshot per shard) keeps the
  // client's memory at one batch however large the shard is.
  BALLISTICS_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(c));
  BALLISTICS_RETURN_IF_ERROR(c.ExecScript("declare cursor", "DECLARE shard_cursor NO SCROLL CURSOR FOR " + select));
  const std::string fetch = "FETCH FORWARD " + std::to_string(batch_rows) + " FROM shard_cursor";
  for (;;) {
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, c.Exec("fetch signatures", fetch, {}, /*binary_result=*/true));
    for (int i = 0; i < r.rows(); ++i) BALLISTICS_RETURN_IF_ERROR(row_sink(r, i));
    if (r.rows() < batch_rows) break;
  }
  return tx->Commit();
}

// Signature columns (prefixed s.) then the casing fields a search filters on.
std::string SearchableSelect(const std::string& from_table) {
  std::string cols;
  std::string list = kSignatureColumns;
  // "id, casing_id, ..." -> "s.id, s.casing_id, ..."
  std::size_t start = 0;
  while (start < list.size()) {
    std::size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    std::string col = list.substr(start, comma - start);
    col.erase(0, col.find_first_not_of(' '));
    cols += (cols.empty() ? "s." : ", s.") + col;
    start = comma + 1;
  }
  return "SELECT " + cols + ", a.name, c.calibre, c.source::text, " + pg::IsoUtc("c.captured_at") +
         ", s.tableoid::regclass::text FROM " + from_table +
         " s JOIN casings c ON c.id = s.casing_id JOIN agencies a ON a.id = c.agency_id ";
}

StatusOr<SearchableSignature> DecodeSearchableRow(const pg::Result& r, int row) {
  SearchableSignature out;
  BALLISTICS_ASSIGN_OR_RETURN(out.stored, DecodeSignatureRow(r, row, ShardOfPartition(r.Text(row, 17))));
  out.agency = r.Text(row, 13);
  out.calibre = r.Text(row, 14);
  auto src = ParseCasingSource(r.Text(row, 15));
  out.source = src.ok() ? *src : CasingSource::kCrimeScene;
  if (!r.IsNull(row, 16)) out.captured_at = r.Text(row, 16);
  return out;
}

}  // namespace

Status Store::LoadSignatures(std::span<const int> shards, const std::function<Status(StoredSignature&&)>& sink,
                             int batch_rows) {
  if (batch_rows <= 0) return InvalidArgument("store: load signatures: batch_rows " + std::to_string(batch_rows));
  BALLISTICS_RETURN_IF_ERROR(CheckShards(shards, "load signatures"));
  for (int shard : shards) {
    BALLISTICS_RETURN_IF_ERROR(StreamCursor(
        *impl_->conn, std::string("SELECT ") + kSignatureColumns + " FROM " + PartitionTable(shard) + " ORDER BY id",
        batch_rows, [&](const pg::Result& r, int i) -> Status {
          BALLISTICS_ASSIGN_OR_RETURN(StoredSignature s, DecodeSignatureRow(r, i, shard));
          return sink(std::move(s));
        }));
  }
  return Status::Ok();
}

Status Store::LoadSearchableSignatures(std::span<const int> shards,
                                       const std::function<Status(SearchableSignature&&)>& sink, int batch_rows) {
  if (batch_rows <= 0) {
    return InvalidArgument("store: load searchable signatures: batch_rows " + std::to_string(batch_rows));
  }
  BALLISTICS_RETURN_IF_ERROR(CheckShards(shards, "load searchable signatures"));
  for (int shard : shards) {
    BALLISTICS_RETURN_IF_ERROR(StreamCursor(*impl_->conn, SearchableSelect(PartitionTable(shard)) + "ORDER BY s.id",
                                            batch_rows, [&](const pg::Result& r, int i) -> Status {
                                              BALLISTICS_ASSIGN_OR_RETURN(SearchableSignature s,
                                                                          DecodeSearchableRow(r, i));
                                              return sink(std::move(s));
                                            }));
  }
  return Status::Ok();
}

StatusOr<std::vector<SearchableSignature>> Store::GetSearchableSignatures(std::int64_t casing_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r,
                              impl_->conn->Exec("read searchable signatures",
                                                SearchableSelect("signatures") + "WHERE s.casing_id = $1 ORDER BY s.id",
                                                {pg::Param::Int(casing_id)}, /*binary_result=*/true));
  std::vector<SearchableSignature> out;
  for (int i = 0; i < r.rows(); ++i) {
    BALLISTICS_ASSIGN_OR_RETURN(SearchableSignature s, DecodeSearchableRow(r, i));
    out.push_back(std::move(s));
  }
  return out;
}

StatusOr<std::vector<SignatureRef>> Store::ListSignatureRefs(std::span<const int> shards) {
  BALLISTICS_RETURN_IF_ERROR(CheckShards(shards, "list signature ids"));
  std::vector<SignatureRef> out;
  for (int shard : shards) {
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("list signature ids",
                                                                "SELECT id, casing_id FROM " + PartitionTable(shard) +
                                                                    " ORDER BY id"));
    for (int i = 0; i < r.rows(); ++i) out.push_back({r.Int64(i, 0), r.Int64(i, 1), shard});
  }
  return out;
}

Status Store::ListenSignatures() {
  BALLISTICS_RETURN_IF_ERROR(impl_->conn->ExecScript("listen", "LISTEN " + std::string(kSignaturesChannel)));
  impl_->listening = true;
  return Status::Ok();
}

StatusOr<std::vector<std::string>> Store::WaitForNotifications(int timeout_ms) {
  if (!impl_->listening) return FailedPrecondition("store: WaitForNotifications before ListenSignatures");
  PGconn* conn = impl_->conn->get();
  std::vector<std::string> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (!PQconsumeInput(conn)) return Unavailable(std::string("store: listen: ") + PQerrorMessage(conn));
    while (PGnotify* n = PQnotifies(conn)) {
      out.emplace_back(n->extra);
      PQfreemem(n);
    }
    if (!out.empty()) return out;
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    const int sock = PQsocket(conn);
    if (sock < 0) return Unavailable("store: listen: connection has no socket");
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(sock, &fds);
    timeval tv{static_cast<time_t>(left.count() / 1000000), static_cast<suseconds_t>(left.count() % 1000000)};
    if (select(sock + 1, &fds, nullptr, nullptr, &tv) < 0 && errno != EINTR) {
      return Unavailable(std::string("store: listen: select failed: ") + std::strerror(errno));
    }
  }
}

}  // namespace store
}  // namespace ballistics
