// IngestService.UploadScan and CasingService.GetCasing.

#include <cstdio>
#include <ctime>

#include "ballistics/ingest.h"
#include "ballistics/io.h"
#include "ballistics/store.h"
#include "ballistics/v1/ingest.grpc.pb.h"
#include "proto_convert.h"
#include "search_backend.h"
#include "services.h"

namespace ballistics::service {
namespace {

using grpc::ServerContext;
using grpc::StatusCode;
namespace v1 = ::ballistics::v1;
using store::ApiRole;

constexpr const char* kUpload = "/ballistics.v1.IngestService/UploadScan";
constexpr const char* kGetCasing = "/ballistics.v1.CasingService/GetCasing";

grpc::Status Invalid(const std::string& m) { return grpc::Status(StatusCode::INVALID_ARGUMENT, m); }

class IngestServiceImpl final : public v1::IngestService::Service {
 public:
  explicit IngestServiceImpl(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::Status UploadScan(ServerContext* sc, grpc::ServerReader<v1::UploadScanRequest>* reader,
                          v1::UploadScanResponse* resp) override {
    Call call(ctx_, sc, kUpload);
    ctx_.metrics.uploads_in_flight++;
    grpc::Status s = Upload(call, sc, reader, resp);
    ctx_.metrics.uploads_in_flight--;
    return call.Finish(s);
  }

 private:
  grpc::Status Upload(Call& call, ServerContext* sc, grpc::ServerReader<v1::UploadScanRequest>* reader,
                      v1::UploadScanResponse* resp) {
    grpc::Status st = call.Authorize({ApiRole::kTechnician, ApiRole::kExaminer, ApiRole::kAdmin});
    if (!st.ok()) return st;
    // Slow-loris guard: a stream that stops sending is cancelled (the Read
    // below then returns false) instead of holding its slot and buffer forever.
    auto watch = ctx_.watchdog->Watch(sc, std::chrono::milliseconds(ctx_.config.upload_idle_timeout_ms),
                                      std::chrono::seconds(ctx_.config.upload_timeout_s));
    auto expired = [&]() -> grpc::Status {
      return grpc::Status(StatusCode::DEADLINE_EXCEEDED, "upload stream stopped: " + watch->Expired());
    };
    v1::UploadScanRequest msg;
    if (!reader->Read(&msg)) {
      if (!watch->Expired().empty()) return expired();
      return Invalid("empty upload: no header message");
    }
    watch->Touch();
    if (!msg.has_header()) return Invalid("the first message of an upload must carry the header");
    const v1::UploadHeader header = msg.header();
    const std::uint64_t limit = ctx_.config.max_upload_bytes;
    if (header.total_bytes() > limit) {
      return grpc::Status(StatusCode::RESOURCE_EXHAUSTED, "upload of " + std::to_string(header.total_bytes()) +
                                                              " bytes is over the limit of " + std::to_string(limit));
    }
    call.SetDetail("file_name=" + header.file_name() + " client_request_id=" + header.client_request_id() +
                   " capture_device=" + header.metadata().capture_device());

    // Metadata first: a bad one is refused before the bytes are read.
    const v1::CasingMetadata& pm = header.metadata();
    CasingMetadata md;
    md.agency = pm.agency().empty() ? call.who().agency : pm.agency();
    if (!call.is_admin() && md.agency != call.who().agency) {
      return grpc::Status(StatusCode::PERMISSION_DENIED, "a token of agency '" + call.who().agency +
                                                             "' may not upload for agency '" + md.agency + "'");
    }
    md.case_number = pm.case_number();
    md.exhibit_id = pm.exhibit_id();
    md.capture_device = pm.capture_device();
    md.calibre = pm.calibre();
    auto source = SourceFromProto(pm.source());
    if (!source.ok()) return ToGrpc(source.status());
    md.source = *source;
    if (pm.has_captured_at()) md.captured_at = TimestampIso(pm.captured_at());
    md.submitted_by = call.who().holder;
    md = ingest::NormalizedMetadata(std::move(md));
    if (Status v = ingest::ValidateMetadata(md); !v.ok()) return ToGrpc(v.WithContext("metadata"));
    if (header.client_request_id().size() > 200) return Invalid("client_request_id is longer than 200 characters");
    ingest::PrepareOptions options;
    if (pm.pixel_um() != 0.0) options.read.pixel_um = pm.pixel_um();
    if (Status v = ingest::ValidatePrepareOptions(options); !v.ok()) return ToGrpc(v);

    std::vector<std::uint8_t> bytes;
    if (header.total_bytes() > 0) bytes.reserve(header.total_bytes());
    if (!msg.chunk().empty()) bytes.insert(bytes.end(), msg.chunk().begin(), msg.chunk().end());
    while (reader->Read(&msg)) {
      watch->Touch();
      if (msg.has_header()) return Invalid("a second header message arrived after the data started");
      if (bytes.size() + msg.chunk().size() > limit) {
        return grpc::Status(StatusCode::RESOURCE_EXHAUSTED,
                            "upload is over the limit of " + std::to_string(limit) + " bytes");
      }
      bytes.insert(bytes.end(), msg.chunk().begin(), msg.chunk().end());
      ctx_.metrics.upload_bytes_total += static_cast<std::int64_t>(msg.chunk().size());
    }
    if (!watch->Expired().empty()) return expired();
    if (sc->IsCancelled()) return grpc::Status(StatusCode::CANCELLED, "upload cancelled by the client");
    watch.reset();  // the stream is read; what follows is bounded by the server's own work
    if (bytes.empty()) return Invalid("upload carried no file bytes");
    if (header.total_bytes() > 0 && header.total_bytes() != bytes.size()) {
      return Invalid("header announced " + std::to_string(header.total_bytes()) + " bytes but " +
                     std::to_string(bytes.size()) + " arrived");
    }
    const std::string sha = Sha256Hex(bytes);
    if (!header.sha256_hex().empty() && header.sha256_hex() != sha) {
      return Invalid("sha256_hex " + header.sha256_hex() + " does not match the received bytes (" + sha + ")");
    }

    auto db = call.ScopedDb();
    if (!db.ok()) return ToGrpc(db.status());
    if (!header.client_request_id().empty()) {
      auto prior = (*db)->FindUploadRequest(header.client_request_id());
      if (prior.ok()) {
        if (prior->second != sha) {
          return grpc::Status(StatusCode::ALREADY_EXISTS, "client_request_id '" + header.client_request_id() +
                                                              "' was used before for other bytes (sha256 " +
                                                              prior->second + ")");
        }
        resp->set_casing_id(prior->first);
        resp->set_sha256_hex(sha);
        resp->set_already_existed(true);
        call.AddRecord("casing:" + std::to_string(prior->first));
        return grpc::Status::OK;
      }
      if (prior.status().code() != ballistics::StatusCode::kNotFound) return ToGrpc(prior.status());
    }

    // Read + normalize (CPU; no database). Any failure here is the file's fault.
    auto prepared = ingest::PrepareScan(std::move(bytes), options);
    if (!prepared.ok()) {
      // The reader calls a corrupt file DATA_LOSS; at this edge the corrupt
      // bytes are the caller's input, so they are INVALID_ARGUMENT (the message
      // keeps the reader's reason). Size limits stay RESOURCE_EXHAUSTED.
      Status p = prepared.status();
      if (p.code() == ballistics::StatusCode::kDataLoss) p = InvalidArgument(p.message());
      return ToGrpc(p);
    }
    if (sc->IsCancelled()) return grpc::Status(StatusCode::CANCELLED, "upload cancelled by the client");

    // Atomicity: StorePrepared writes casing, scan, bytes and signatures in one
    // transaction (store::Store::IngestCasing), so any failure, a PostgreSQL
    // restart or this process dying included, leaves nothing. The request id is
    // recorded after that commit; if that write is lost the client's retry
    // finds the casing by its SHA-256 (already_existed) and records it then.
    auto store = call.ScopedStore();
    if (!store.ok()) return ToGrpc(store.status());
    auto res = ingest::StorePrepared(**store, md, *prepared);
    if (!res.ok()) return ToGrpc(res.status());
    if (!header.client_request_id().empty()) {
      Status r = (*db)->RecordUploadRequest(call.who().agency_id, header.client_request_id(), sha, res->casing_id);
      if (!r.ok()) return ToGrpc(r);
    }
    call.AddRecord("casing:" + std::to_string(res->casing_id));
    if (ctx_.search) {
      // Searchable from now on. A failure here does not undo the upload (it is
      // stored); the next server start indexes it.
      Status a = ctx_.search->AddCasing(res->casing_id);
      if (!a.ok()) call.SetDetail("not indexed yet: " + a.ToString());
    }
    resp->set_casing_id(res->casing_id);
    resp->set_sha256_hex(prepared->sha256_hex);
    resp->set_already_existed(res->already_existed);
    for (const std::string& w : prepared->normalized.warnings) resp->add_warnings(w);
    for (const Signature& sig : prepared->Signatures()) resp->add_signatures(KindToProto(sig.kind));
    return grpc::Status::OK;
  }

  ServiceContext& ctx_;
};

class CasingServiceImpl final : public v1::CasingService::Service {
 public:
  explicit CasingServiceImpl(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::Status GetCasing(ServerContext* sc, const v1::GetCasingRequest* req, v1::Casing* out) override {
    Call call(ctx_, sc, kGetCasing);
    return call.Finish(Get(call, req, out));
  }

 private:
  grpc::Status Get(Call& call, const v1::GetCasingRequest* req, v1::Casing* out) {
    grpc::Status st = call.Authorize(
        {ApiRole::kTechnician, ApiRole::kExaminer, ApiRole::kAgencyReader, ApiRole::kAdmin});
    if (!st.ok()) return st;
    call.AddRecord("casing:" + std::to_string(req->casing_id()));
    st = call.CheckCasingAccess(req->casing_id());
    if (!st.ok()) return st;
    // Read under row-level security: even if the check above had a bug, another
    // agency's row would come back NOT_FOUND here.
    auto store = call.ScopedStore();
    if (!store.ok()) return ToGrpc(store.status());
    auto c = (*store)->GetCasing(req->casing_id());
    if (!c.ok()) return ToGrpc(c.status());
    out->set_casing_id(c->id);
    v1::CasingMetadata* m = out->mutable_metadata();
    m->set_agency(c->metadata.agency);
    m->set_case_number(c->metadata.case_number);
    m->set_exhibit_id(c->metadata.exhibit_id);
    m->set_capture_device(c->metadata.capture_device);
    m->set_calibre(c->metadata.calibre);
    m->set_source(SourceToProto(c->metadata.source));
    out->set_sha256_hex(c->sha256_hex);
    out->set_format(std::string(ScanFormatName(c->format)));
    out->set_modality(std::string(ModalityName(c->modality)));
    out->set_pixel_um_x(c->pixel_um_x);
    out->set_pixel_um_y(c->pixel_um_y);
    out->set_width(c->width);
    out->set_height(c->height);
    for (const auto& s : c->signatures) out->add_signatures(KindToProto(s.kind));
    out->set_submitted_by(c->metadata.submitted_by);
    return grpc::Status::OK;
  }

  ServiceContext& ctx_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeIngestService(ServiceContext& ctx) {
  return std::make_unique<IngestServiceImpl>(ctx);
}
std::unique_ptr<grpc::Service> MakeCasingService(ServiceContext& ctx) {
  return std::make_unique<CasingServiceImpl>(ctx);
}

}  // namespace ballistics::service
