// Enum mappings between the domain types and the API's proto enums.
#include "proto_enums.h"

#include <string>

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

}  // namespace ballistics::service
