// libFuzzer harness: the request validation of the gRPC handlers, without a
// server. The first input byte picks the message, the rest is its protobuf
// wire encoding, parsed as the server's gRPC layer parses it:
//   even: UploadScanRequest (IngestService.UploadScan's header message),
//   odd:  SearchRequest (SearchService.Search).
// The enum and timestamp conversions are the service's own (src/service/proto_convert.cc, compiled
// into this harness); the rest of the mapping below mirrors
// src/service/ingest_service.cc and search_service.cc (Upload / Run up to the
// database) and calls the same domain validation: ingest::NormalizedMetadata + ValidateMetadata +
// ValidatePrepareOptions for uploads, SearchEngine::Search's request checks
// (run against an empty index) for searches. The request is also rendered to
// JSON as the search handler stores it.
//
// Oracle: accepted metadata obeys ingest.h's rules (non-empty, at most
// kMaxMetadataChars, no control characters) and normalizing is idempotent;
// every refusal is INVALID_ARGUMENT / NOT_FOUND with a message.
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>

#include "ballistics/index.h"
#include "ballistics/ingest.h"
#include "ballistics/v1/ingest.pb.h"
#include "ballistics/v1/search.pb.h"
#include "fuzz_util.h"
#include "proto_convert.h"

namespace {

using namespace ballistics;
namespace v1 = ::ballistics::v1;

void CheckAccepted(const std::string& field, const std::string& v) {
  if (v.empty() || v.size() > ingest::kMaxMetadataChars) fuzz::Fail(field + " accepted with length " + std::to_string(v.size()));
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7f) fuzz::Fail(field + " accepted with a control character");
  }
}

void Upload(const v1::UploadScanRequest& msg) {
  if (!msg.has_header()) return;
  const v1::CasingMetadata& pm = msg.header().metadata();
  CasingMetadata md;
  md.agency = pm.agency().empty() ? "fuzz-agency" : pm.agency();
  md.case_number = pm.case_number();
  md.exhibit_id = pm.exhibit_id();
  md.calibre = pm.calibre();
  const StatusOr<CasingSource> source = service::SourceFromProto(pm.source());
  if (!source.ok()) {
    if (source.status().code() != StatusCode::kInvalidArgument || source.status().message().empty()) {
      fuzz::Fail("source refused with " + source.status().ToString());
    }
    return;  // the handler refuses it before validation
  }
  md.source = *source;
  if (service::SourceToProto(md.source) != pm.source()) fuzz::Fail("source mapping does not round-trip");
  if (pm.has_captured_at()) md.captured_at = service::TimestampIso(pm.captured_at());
  md.submitted_by = "fuzz-user";
  md = ingest::NormalizedMetadata(std::move(md));
  const Status v = ingest::ValidateMetadata(md);
  if (v.ok()) {
    CheckAccepted("agency", md.agency);
    CheckAccepted("case_number", md.case_number);
    CheckAccepted("exhibit_id", md.exhibit_id);
    CheckAccepted("calibre", md.calibre);
    const CasingMetadata again = ingest::NormalizedMetadata(md);
    if (again.calibre != md.calibre || again.case_number != md.case_number || again.agency != md.agency) {
      fuzz::Fail("NormalizedMetadata is not idempotent");
    }
  } else if (v.code() != StatusCode::kInvalidArgument || v.message().empty()) {
    fuzz::Fail("metadata refused with " + v.ToString());
  }
  ingest::PrepareOptions options;
  if (pm.pixel_um() != 0.0) options.read.pixel_um = pm.pixel_um();
  const Status p = ingest::ValidatePrepareOptions(options);
  if (p.ok() && options.read.pixel_um &&
      !(*options.read.pixel_um >= ingest::kMinPlausiblePixelUm && *options.read.pixel_um <= ingest::kMaxPlausiblePixelUm)) {
    fuzz::Fail("pixel_um " + std::to_string(*options.read.pixel_um) + " accepted");
  }
}

class NoSignatures final : public SignatureSource {
 public:
  StatusOr<Signature> Load(std::int64_t id) const override { return NotFound("no signature " + std::to_string(id)); }
};

const SearchEngine& Engine() {
  static const std::unique_ptr<SearchEngine> engine = [] {
    auto e = SearchEngine::Create(std::shared_ptr<const SignatureIndex>(MakeFlatIndex()),
                                  std::make_shared<NoSignatures>());
    if (!e.ok()) fuzz::Fail("engine: " + e.status().ToString());
    return std::move(e).value();
  }();
  return *engine;
}

void Search(const v1::SearchRequest& req) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(req, &json);
  // The handler's own range checks come first.
  if (req.top_n() < 0 || req.top_n() > 200 || req.rerank_k() < 0) return;
  SearchRequest r;
  r.query.casing_id = req.casing_id();
  r.top_n = req.top_n() ? req.top_n() : 20;
  r.rerank_k = req.rerank_k();
  const v1::SearchFilter& f = req.filter();
  for (int k : f.kinds()) {
    const StatusOr<SignatureKind> kind = service::KindFromProto(k, "search filter");
    if (!kind.ok()) return;  // INVALID_ARGUMENT from the handler
    if (service::KindToProto(*kind) != k) fuzz::Fail("kind mapping does not round-trip");
    r.filter.kinds.push_back(*kind);
  }
  for (int s : f.sources()) {
    const StatusOr<CasingSource> src = service::SourceFromProto(s);
    if (!src.ok()) return;
    r.filter.sources.push_back(*src);
  }
  for (const auto& c : f.calibres()) r.filter.calibres.push_back(c);
  for (const auto& a : f.agencies()) r.filter.agencies.push_back(a);
  if (f.has_captured_after()) r.filter.captured_after_unix = f.captured_after().seconds();
  if (f.has_captured_before()) r.filter.captured_before_unix = f.captured_before().seconds();
  const StatusOr<SearchResults> res = Engine().Search(r);
  if (res.ok()) fuzz::Fail("search of an empty index succeeded");
  const StatusCode c = res.status().code();
  if ((c != StatusCode::kInvalidArgument && c != StatusCode::kNotFound) || res.status().message().empty()) {
    fuzz::Fail("search refused with " + res.status().ToString());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const void* body = data + 1;
  const int body_size = static_cast<int>(size - 1);
  if (data[0] % 2 == 0) {
    v1::UploadScanRequest msg;
    if (msg.ParseFromArray(body, body_size)) Upload(msg);
  } else {
    v1::SearchRequest msg;
    if (msg.ParseFromArray(body, body_size)) Search(msg);
  }
  return 0;
}
