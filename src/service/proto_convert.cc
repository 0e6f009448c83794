// Conversions between domain values and the API's proto types.
#include "proto_convert.h"

#include <cstdio>
#include <ctime>
#include <string>

#include <nlohmann/json.hpp>

namespace ballistics::service {

v1::SignatureKind KindToProto(SignatureKind k) {
  return k == SignatureKind::kBreechFace ? v1::BREECH_FACE : v1::FIRING_PIN;
}

StatusOr<SignatureKind> KindFromProto(int k, const char* where) {
  if (k == v1::BREECH_FACE) return SignatureKind::kBreechFace;
  if (k == v1::FIRING_PIN) return SignatureKind::kFiringPin;
  return InvalidArgument(std::string(where) + ": signature kind " + std::to_string(k) +
                         " is not BREECH_FACE or FIRING_PIN");
}

v1::CasingSource SourceToProto(CasingSource s) {
  switch (s) {
    case CasingSource::kCrimeScene: return v1::CRIME_SCENE;
    case CasingSource::kTestFire: return v1::TEST_FIRE;
    case CasingSource::kRecoveredFirearm: return v1::RECOVERED_FIREARM;
    case CasingSource::kPoliceIssued: return v1::POLICE_ISSUED;
    case CasingSource::kManufacturerTestFire: return v1::MANUFACTURER_TEST_FIRE;
  }
  return v1::CASING_SOURCE_UNSPECIFIED;
}

StatusOr<CasingSource> SourceFromProto(int s) {
  switch (s) {
    case v1::CRIME_SCENE: return CasingSource::kCrimeScene;
    case v1::TEST_FIRE: return CasingSource::kTestFire;
    case v1::RECOVERED_FIREARM: return CasingSource::kRecoveredFirearm;
    case v1::POLICE_ISSUED: return CasingSource::kPoliceIssued;
    // Registered at manufacture; RegistryService.LinkTestFire ties it to the firearm.
    case v1::MANUFACTURER_TEST_FIRE: return CasingSource::kManufacturerTestFire;
    default: return InvalidArgument("source " + std::to_string(s) + " is not set or unknown");
  }
}

std::string TimestampIso(const google::protobuf::Timestamp& t) {
  const std::time_t s = static_cast<std::time_t>(t.seconds());
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

google::protobuf::Timestamp TimestampFromIso(const std::string& iso) {
  std::tm tm{};
  google::protobuf::Timestamp t;
  if (std::sscanf(iso.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec) >= 3) {
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    t.set_seconds(timegm(&tm));
  }
  return t;
}

void CmcScoreFromJson(const nlohmann::json& j, v1::SignatureKind kind, std::string_view basis_if_absent,
                      v1::CmcScore* out) {
  out->set_kind(kind);
  out->set_cmc_count(j.value("cmc", 0));
  out->set_cell_count(j.value("cells", 0));
  out->set_ccf(j.value("ccf", 0.0));
  out->mutable_registration()->set_theta_deg(j.value("theta_deg", 0.0));
  out->mutable_registration()->set_dx_um(j.value("dx_um", 0.0));
  out->mutable_registration()->set_dy_um(j.value("dy_um", 0.0));
  // Evidence strength as recorded at search time (AddEvidence); absent when no
  // calibrated model was available.
  if (j.contains("log10_lr") && j["log10_lr"].is_number()) out->set_log10_likelihood_ratio(j["log10_lr"].get<double>());
  const std::string basis = j.value("lr_basis", std::string(basis_if_absent));
  if (!basis.empty()) out->set_likelihood_ratio_basis(basis);
}

}  // namespace ballistics::service
