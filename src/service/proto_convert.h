// Conversions between domain values and the API's proto types, one copy for
// every service (ingest, search, review, registry, shard protocol): the enums
// of proto/ballistics/v1/common.proto and timestamps (the store speaks ISO 8601
// UTC text, the API google.protobuf.Timestamp).
#pragma once

#include <string>
#include <string_view>

#include <google/protobuf/timestamp.pb.h>
#include <nlohmann/json_fwd.hpp>

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

// "YYYY-MM-DDTHH:MM:SSZ" (UTC, whole seconds).
std::string TimestampIso(const google::protobuf::Timestamp& t);
// Reads the date and time fields of an ISO 8601 UTC text as the store writes
// it; a text without a date gives the epoch.
google::protobuf::Timestamp TimestampFromIso(const std::string& iso);

// A CmcScore from the JSON a search records for one kind of a comparison
// (search_service.cc, ScoreJson: cmc, cells, ccf, theta_deg, dx_um, dy_um,
// log10_lr, lr_basis); missing numbers read 0, a missing log10_lr stays unset,
// a missing lr_basis becomes `basis_if_absent` ("" leaves it empty).
void CmcScoreFromJson(const nlohmann::json& j, v1::SignatureKind kind, std::string_view basis_if_absent,
                      v1::CmcScore* out);

}  // namespace ballistics::service
