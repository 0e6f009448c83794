#include "ballistics/ingest.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <regex>

namespace ballistics::ingest {
namespace {

std::string Trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

Status CheckText(const char* field, const std::string& value) {
  if (Trim(value).empty()) return InvalidArgument(std::string(field) + " is empty");
  if (value.size() > kMaxMetadataChars) {
    return InvalidArgument(std::string(field) + " has " + std::to_string(value.size()) + " characters (at most " +
                           std::to_string(kMaxMetadataChars) + ")");
  }
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      return InvalidArgument(std::string(field) + " '" + value + "' contains a control character");
    }
  }
  return Status::Ok();
}

Status CheckPixelUm(const char* what, double v) {
  if (!std::isfinite(v) || v <= 0.0) return InvalidArgument(std::string(what) + " " + Num(v) + " is not a positive number");
  if (v < kMinPlausiblePixelUm || v > kMaxPlausiblePixelUm) {
    return InvalidArgument(std::string(what) + " " + Num(v) + " um is outside the plausible range " +
                           Num(kMinPlausiblePixelUm) + ".." + Num(kMaxPlausiblePixelUm) +
                           " um of a cartridge-case scan (wrong unit?)");
  }
  return Status::Ok();
}

// ISO 8601 calendar date, optionally with time and zone: 2024-05-01,
// 2024-05-01T10:00, 2024-05-01T10:00:00.5Z, 2024-05-01 10:00:00+02:00.
bool IsIso8601(const std::string& s) {
  static const std::regex re(
      R"(^(\d{4})-(\d{2})-(\d{2})([T ](\d{2}):(\d{2})(:(\d{2})(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$)");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return false;
  const int month = std::stoi(m[2]), day = std::stoi(m[3]);
  if (month < 1 || month > 12 || day < 1 || day > 31) return false;
  if (m[4].matched) {
    const int hour = std::stoi(m[5]), minute = std::stoi(m[6]);
    if (hour > 23 || minute > 59) return false;
    if (m[8].matched && std::stoi(m[8]) > 60) return false;  // 60: leap second
  }
  return true;
}

}  // namespace

std::vector<Signature> PreparedScan::Signatures() const {
  std::vector<Signature> out{normalized.breech_face};
  if (normalized.firing_pin) out.push_back(*normalized.firing_pin);
  return out;
}

Status ValidatePrepareOptions(const PrepareOptions& options) {
  if (options.read.pixel_um) return CheckPixelUm("pixel size (--pixel-um)", *options.read.pixel_um);
  return Status::Ok();
}

StatusOr<PreparedScan> PrepareScan(std::vector<std::uint8_t> bytes, const PrepareOptions& options) {
  BALLISTICS_RETURN_IF_ERROR(ValidatePrepareOptions(options));
  PreparedScan p;
  p.bytes = std::move(bytes);
  StatusOr<Scan> scan = ReadScanBytes(p.bytes, options.read);
  if (!scan.ok()) return scan.status().WithContext("read");
  p.scan = std::move(*scan);
  // The file's header decides the unit; check what came out before normalizing.
  BALLISTICS_RETURN_IF_ERROR(CheckPixelUm("pixel size x", p.scan.pixel_um_x));
  BALLISTICS_RETURN_IF_ERROR(CheckPixelUm("pixel size y", p.scan.pixel_um_y));
  p.sha256_hex = p.scan.sha256_hex.empty() ? Sha256Hex(p.bytes) : p.scan.sha256_hex;
  p.scan.sha256_hex = p.sha256_hex;
  StatusOr<NormalizedCasing> n = Normalize(p.scan, options.normalize);
  if (!n.ok()) return n.status().WithContext("normalize");
  p.normalized = std::move(*n);
  return p;
}

StatusOr<PreparedScan> PrepareScanFile(const std::filesystem::path& path, const PrepareOptions& options) {
  StatusOr<std::vector<std::uint8_t>> bytes = ReadFileBytes(path, options.read.limits.max_file_bytes);
  if (!bytes.ok()) return bytes.status().WithContext(path.string());
  StatusOr<PreparedScan> p = PrepareScan(std::move(*bytes), options);
  if (!p.ok()) return p.status().WithContext(path.string());
  return p;
}

CasingMetadata NormalizedMetadata(CasingMetadata m) {
  m.agency = Trim(m.agency);
  m.case_number = Trim(m.case_number);
  m.exhibit_id = Trim(m.exhibit_id);
  m.submitted_by = Trim(m.submitted_by);
  m.capture_device = Trim(m.capture_device);
  std::string calibre;
  for (char c : Trim(m.calibre)) {
    const bool space = std::isspace(static_cast<unsigned char>(c));
    if (space && !calibre.empty() && calibre.back() == ' ') continue;
    calibre += space ? ' ' : c;
  }
  m.calibre = calibre;
  if (m.captured_at) m.captured_at = Trim(*m.captured_at);
  return m;
}

Status ValidateMetadata(const CasingMetadata& m) {
  BALLISTICS_RETURN_IF_ERROR(CheckText("agency", m.agency));
  BALLISTICS_RETURN_IF_ERROR(CheckText("case number", m.case_number));
  BALLISTICS_RETURN_IF_ERROR(CheckText("exhibit id", m.exhibit_id));
  BALLISTICS_RETURN_IF_ERROR(CheckText("calibre", m.calibre));
  BALLISTICS_RETURN_IF_ERROR(CheckText("submitted by", m.submitted_by));
  // Optional; when given, the same rules as the other text fields.
  if (!m.capture_device.empty()) BALLISTICS_RETURN_IF_ERROR(CheckText("capture device", m.capture_device));
  if (m.captured_at && !IsIso8601(*m.captured_at)) {
    return InvalidArgument("captured at '" + *m.captured_at +
                           "' is not an ISO 8601 date or date-time (e.g. 2024-05-01T10:00:00Z)");
  }
  if (m.firearm_id && *m.firearm_id <= 0) {
    return InvalidArgument("firearm id " + std::to_string(*m.firearm_id) + " is not positive");
  }
  return Status::Ok();
}

StatusOr<store::IngestResult> StorePrepared(store::Store& store, const CasingMetadata& metadata,
                                            const PreparedScan& prepared) {
  const CasingMetadata m = NormalizedMetadata(metadata);
  BALLISTICS_RETURN_IF_ERROR(ValidateMetadata(m));
  const std::vector<Signature> signatures = prepared.Signatures();
  return store.IngestCasing(m, prepared.scan, prepared.bytes, signatures);
}

}  // namespace ballistics::ingest
