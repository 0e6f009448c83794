// Enum mappings between the domain types (include/ballistics/surface.h,
// store.h) and the API's proto enums (proto/ballistics/v1/common.proto), one
// copy for every service (ingest, search, shard protocol).
#pragma once

#include "ballistics/status.h"
#include "ballistics/store.h"
#include "ballistics/surface.h"
#include "ballistics/v1/common.pb.h"

namespace ballistics::service {

v1::SignatureKind KindToProto(SignatureKind k);
// INVALID_ARGUMENT naming the value and `where` (e.g. "search filter").
StatusOr<SignatureKind> KindFromProto(int k, const char* where);
v1::CasingSource SourceToProto(CasingSource s);
// INVALID_ARGUMENT for CASING_SOURCE_UNSPECIFIED or an unknown value.
StatusOr<CasingSource> SourceFromProto(int s);

}  // namespace ballistics::service
