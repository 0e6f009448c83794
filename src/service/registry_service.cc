// RegistryService (proto/ballistics/v1/registry.proto): firearms, test-fire
// links, sales and transfers, Trace, microstamp codes, events. Design and the
// access rules: docs/registry.md.
//
// Identity (Trace, microstamp lookup with identify) goes only to an examiner or
// admin of a law-enforcement agency who names a case number; every call is
// audited by Call::Finish, and these two put the case number and reason in the
// audit detail.
#include <openssl/crypto.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <ctime>
#include <mutex>

#include "ballistics/registry.h"
#include "ballistics/registry_store.h"
#include "ballistics/v1/registry.grpc.pb.h"
#include "proto_convert.h"
#include "services.h"

namespace ballistics::service {
namespace {

using grpc::ServerContext;
using grpc::StatusCode;
namespace v1 = ::ballistics::v1;
using store::ApiRole;

constexpr const char* kPrefix = "/ballistics.v1.RegistryService/";

grpc::Status Invalid(const std::string& m) { return grpc::Status(StatusCode::INVALID_ARGUMENT, m); }

void ToProto(const store::FirearmRecord& f, v1::Firearm* p) {
  p->set_firearm_id(f.id);
  p->set_agency(f.agency);
  p->set_manufacturer(f.manufacturer);
  p->set_make(f.make);
  p->set_model(f.model);
  p->set_serial(f.serial);
  p->set_calibre(f.calibre);
  p->set_fp_shape(f.fp_shape);
  p->set_manufactured_on(f.manufactured_on.value_or(""));
}

void ToProto(const store::TransferRecord& t, v1::Transfer* p) {
  p->set_transfer_id(t.id);
  p->set_firearm_id(t.firearm_id);
  p->set_kind(t.kind);
  p->set_dealer_licence(t.dealer_licence);
  p->set_date(t.occurred_on);
  p->set_purchaser_ref_hmac(t.party_ref_hmac);
  p->set_recorded_by(t.recorded_by);
}

void ToProto(const registry::Event& e, v1::EventInfo* p) {
  p->set_event_id(e.id);
  p->set_agency(e.agency);
  p->set_incident_id(e.incident_id);
  p->set_case_number(e.case_number);
  *p->mutable_occurred_at() = TimestampFromIso(e.occurred_at);
  p->set_lat(e.lat);
  p->set_lon(e.lon);
  p->set_place(e.place);
}

void ToProto(const registry::EventLink& l, v1::EventLink* p) {
  p->set_event_a(l.event_a);
  p->set_event_b(l.event_b);
  p->set_kind(l.kind);
  p->set_ref_id(l.ref_id);
}

// Audit detail text: printable, bounded.
std::string Clean(const std::string& s) {
  std::string o;
  for (unsigned char c : s.substr(0, 200)) o += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return o;
}

class RegistryServiceImpl final : public v1::RegistryService::Service {
 public:
  explicit RegistryServiceImpl(ServiceContext& ctx) : ctx_(ctx), microstamps_(ctx.config.database_url) {
    // The purchaser-reference key comes from the environment, never from the
    // database it protects (docs/registry.md, "Privacy").
    if (const char* k = std::getenv("BALLISTICS_PURCHASER_HMAC_KEY")) hmac_key_ = k;
  }

  grpc::Status RegisterFirearm(ServerContext* sc, const v1::RegisterFirearmRequest* req, v1::Firearm* out) override {
    Call call(ctx_, sc, std::string(kPrefix) + "RegisterFirearm");
    return call.Finish(DoRegisterFirearm(call, *req, out));
  }
  grpc::Status FindFirearms(ServerContext* sc, const v1::FindFirearmsRequest* req,
                            v1::FindFirearmsResponse* out) override {
    Call call(ctx_, sc, std::string(kPrefix) + "FindFirearms");
    return call.Finish(DoFindFirearms(call, *req, out));
  }
  grpc::Status LinkTestFire(ServerContext* sc, const v1::LinkTestFireRequest* req,
                            v1::LinkTestFireResponse*) override {
    Call call(ctx_, sc, std::string(kPrefix) + "LinkTestFire");
    return call.Finish(DoLinkTestFire(call, *req));
  }
  grpc::Status RecordTransfer(ServerContext* sc, const v1::RecordTransferRequest* req, v1::Transfer* out) override {
    Call call(ctx_, sc, std::string(kPrefix) + "RecordTransfer");
    return call.Finish(DoRecordTransfer(call, *req, out));
  }
  grpc::Status Trace(ServerContext* sc, const v1::TraceRequest* req, v1::TraceResponse* out) override {
    Call call(ctx_, sc, std::string(kPrefix) + "Trace");
    return call.Finish(DoTrace(call, *req, out));
  }
  grpc::Status RegisterMicrostamp(ServerContext* sc, const v1::RegisterMicrostampRequest* req,
                                  v1::RegisterMicrostampResponse*) override {
    Call call(ctx_, sc, std::string(kPrefix) + "RegisterMicrostamp");
    return call.Finish(DoRegisterMicrostamp(call, *req));
  }
  grpc::Status ReplaceMicrostamp(ServerContext* sc, const v1::ReplaceMicrostampRequest* req,
                                 v1::ReplaceMicrostampResponse*) override {
    Call call(ctx_, sc, std::string(kPrefix) + "ReplaceMicrostamp");
    return call.Finish(DoReplaceMicrostamp(call, *req));
  }
  grpc::Status RevokeMicrostamp(ServerContext* sc, const v1::RevokeMicrostampRequest* req,
                                v1::RevokeMicrostampResponse*) override {
    Call call(ctx_, sc, std::string(kPrefix) + "RevokeMicrostamp");
    return call.Finish(DoRevokeMicrostamp(call, *req));
  }
  grpc::Status LookupMicrostamp(ServerContext* sc, const v1::LookupMicrostampRequest* req,
                                v1::LookupMicrostampResponse* out) override {
    Call call(ctx_, sc, std::string(kPrefix) + "LookupMicrostamp");
    return call.Finish(DoLookupMicrostamp(call, *req, out));
  }
  grpc::Status CreateEvent(ServerContext* sc, const v1::CreateEventRequest* req, v1::EventInfo* out) override {
    Call call(ctx_, sc, std::string(kPrefix) + "CreateEvent");
    return call.Finish(DoCreateEvent(call, *req, out));
  }
  grpc::Status AddEventCasing(ServerContext* sc, const v1::AddEventCasingRequest* req,
                              v1::AddEventCasingResponse*) override {
    Call call(ctx_, sc, std::string(kPrefix) + "AddEventCasing");
    return call.Finish(DoAddEventCasing(call, *req));
  }
  grpc::Status ConnectedEvents(ServerContext* sc, const v1::ConnectedEventsRequest* req,
                               v1::EventComponent* out) override {
    Call call(ctx_, sc, std::string(kPrefix) + "ConnectedEvents");
    return call.Finish(DoConnected(call, *req, out));
  }
  grpc::Status EventPath(ServerContext* sc, const v1::EventPathRequest* req, v1::EventPathResponse* out) override {
    Call call(ctx_, sc, std::string(kPrefix) + "EventPath");
    return call.Finish(DoPath(call, *req, out));
  }

 private:
  static grpc::Status AuthorizeWriter(Call& call) {
    return call.Authorize({ApiRole::kTechnician, ApiRole::kExaminer, ApiRole::kAdmin});
  }
  static grpc::Status AuthorizeReader(Call& call) {
    return call.Authorize({ApiRole::kExaminer, ApiRole::kAgencyReader, ApiRole::kAdmin});
  }
  // Every role passes here; CheckIdentityAccess then refuses with a reason.
  static grpc::Status AuthorizeAny(Call& call) {
    return call.Authorize({ApiRole::kTechnician, ApiRole::kExaminer, ApiRole::kAgencyReader, ApiRole::kAdmin});
  }

  StatusOr<std::unique_ptr<store::RegistryDb>> Scoped(Call& call) {
    return store::RegistryDb::ConnectScoped(ctx_.config.database_url, call.who());
  }

  // The identity rule: examiner or admin, of a law-enforcement agency, with a
  // case number. Records the case and reason in the audit detail either way.
  grpc::Status CheckIdentityAccess(Call& call, const std::string& case_number, const std::string& reason) {
    call.SetDetail("identity case_number=" + Clean(case_number) + " reason=" + Clean(reason));
    if (call.who().role != ApiRole::kExaminer && call.who().role != ApiRole::kAdmin) {
      return grpc::Status(StatusCode::PERMISSION_DENIED,
                          "role " + std::string(store::ApiRoleName(call.who().role)) +
                              " may not see firearm identities (examiner or admin of a law-enforcement agency only)");
    }
    auto sys = store::RegistryDb::ConnectSystem(ctx_.config.database_url);
    if (!sys.ok()) return ToGrpc(sys.status());
    auto le = (*sys)->IsLawEnforcement(call.who().agency_id);
    if (!le.ok()) return ToGrpc(le.status());
    if (!*le) {
      return grpc::Status(StatusCode::PERMISSION_DENIED, "agency '" + call.who().agency +
                                                             "' is not a law-enforcement agency: no firearm identities");
    }
    if (case_number.find_first_not_of(' ') == std::string::npos) {
      return grpc::Status(StatusCode::PERMISSION_DENIED,
                          "a firearm identity is given only for an investigation: case_number is required");
    }
    return grpc::Status::OK;
  }

  grpc::Status DoRegisterFirearm(Call& call, const v1::RegisterFirearmRequest& req, v1::Firearm* out) {
    grpc::Status st = AuthorizeWriter(call);
    if (!st.ok()) return st;
    const v1::Firearm& p = req.firearm();
    store::FirearmRecord f;
    f.manufacturer = p.manufacturer();
    f.make = p.make();
    f.model = p.model();
    f.serial = p.serial();
    f.calibre = p.calibre();
    f.fp_shape = p.fp_shape();
    if (!p.manufactured_on().empty()) f.manufactured_on = p.manufactured_on();
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    auto id = (*db)->RegisterFirearm(call.who().agency_id, f, call.who().holder);
    if (!id.ok()) return ToGrpc(id.status());
    call.AddRecord("firearm:" + std::to_string(*id));
    auto back = (*db)->GetFirearm(*id);
    if (!back.ok()) return ToGrpc(back.status());
    ToProto(*back, out);
    return grpc::Status::OK;
  }

  grpc::Status DoFindFirearms(Call& call, const v1::FindFirearmsRequest& req, v1::FindFirearmsResponse* out) {
    grpc::Status st = call.Authorize({ApiRole::kExaminer, ApiRole::kAdmin});
    if (!st.ok()) return st;
    call.SetDetail("serial=" + Clean(req.serial()) + " manufacturer=" + Clean(req.manufacturer()));
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    auto rows = (*db)->FindFirearms(req.manufacturer(), req.serial());
    if (!rows.ok()) return ToGrpc(rows.status());
    for (const auto& f : *rows) {
      ToProto(f, out->add_firearms());
      call.AddRecord("firearm:" + std::to_string(f.id));
    }
    return grpc::Status::OK;
  }

  grpc::Status DoLinkTestFire(Call& call, const v1::LinkTestFireRequest& req) {
    grpc::Status st = AuthorizeWriter(call);
    if (!st.ok()) return st;
    call.AddRecord("casing:" + std::to_string(req.casing_id()));
    call.AddRecord("firearm:" + std::to_string(req.firearm_id()));
    st = call.CheckCasingAccess(req.casing_id());
    if (!st.ok()) return st;
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    return ToGrpc((*db)->LinkCasing(call.who().agency_id, req.casing_id(), req.firearm_id(), call.who().holder));
  }

  grpc::Status DoRecordTransfer(Call& call, const v1::RecordTransferRequest& req, v1::Transfer* out) {
    grpc::Status st = AuthorizeWriter(call);
    if (!st.ok()) return st;
    call.AddRecord("firearm:" + std::to_string(req.firearm_id()));
    if (hmac_key_.empty()) {
      return grpc::Status(StatusCode::FAILED_PRECONDITION,
                          "the server has no purchaser HMAC key (BALLISTICS_PURCHASER_HMAC_KEY): transfers cannot "
                          "be recorded without storing the purchaser reference in clear");
    }
    auto hmac = store::PartyRefHmac(hmac_key_, req.purchaser_ref());
    if (!hmac.ok()) return ToGrpc(hmac.status());
    store::TransferRecord t;
    t.firearm_id = req.firearm_id();
    t.kind = req.kind().empty() ? "dealer_sale" : req.kind();
    t.dealer_licence = req.dealer_licence();
    t.occurred_on = req.date();
    t.party_ref_hmac = *hmac;
    t.recorded_by = call.who().holder;
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    auto id = (*db)->RecordTransfer(call.who().agency_id, t);
    if (!id.ok()) return ToGrpc(id.status());
    t.id = *id;
    call.AddRecord("transfer:" + std::to_string(*id));
    ToProto(t, out);
    return grpc::Status::OK;
  }

  grpc::Status DoTrace(Call& call, const v1::TraceRequest& req, v1::TraceResponse* out) {
    grpc::Status st = AuthorizeAny(call);
    if (!st.ok()) return st;
    st = CheckIdentityAccess(call, req.case_number(), req.reason());
    if (!st.ok()) return st;
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    std::int64_t firearm = 0;
    switch (req.start_case()) {
      case v1::TraceRequest::kFirearmId: firearm = req.firearm_id(); break;
      case v1::TraceRequest::kCasingId: {
        call.AddRecord("casing:" + std::to_string(req.casing_id()));
        auto f = (*db)->FirearmOfCasing(req.casing_id());
        if (!f.ok()) return ToGrpc(f.status());
        firearm = *f;
        break;
      }
      default: return Invalid("give a firearm_id or a casing_id to trace");
    }
    call.AddRecord("firearm:" + std::to_string(firearm));
    auto t = (*db)->Trace(firearm);
    if (!t.ok()) return ToGrpc(t.status());
    ToProto(t->firearm, out->mutable_firearm());
    for (const auto& x : t->transfers) {
      ToProto(x, out->add_transfers());
      call.AddRecord("transfer:" + std::to_string(x.id));
    }
    for (std::int64_t c : t->casings) out->add_test_fire_casing_ids(c);
    return grpc::Status::OK;
  }

  grpc::Status DoRegisterMicrostamp(Call& call, const v1::RegisterMicrostampRequest& req) {
    grpc::Status st = AuthorizeWriter(call);
    if (!st.ok()) return st;
    call.AddRecord("firearm:" + std::to_string(req.firearm_id()));
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    // The next lookup picks the code up from the change log (no reload).
    return ToGrpc((*db)->RegisterMicrostamp(call.who().agency_id, req.firearm_id(), req.fp_tip_code(),
                                            req.breech_face_code(), call.who().holder));
  }

  // Re-registration and revocation: rows of the change log (migration 0050),
  // which the live index applies at the next lookup, like a registration. The
  // store refuses codes this agency did not register (NOT_FOUND).
  grpc::Status DoReplaceMicrostamp(Call& call, const v1::ReplaceMicrostampRequest& req) {
    grpc::Status st = AuthorizeWriter(call);
    if (!st.ok()) return st;
    call.AddRecord("firearm:" + std::to_string(req.firearm_id()));
    call.SetDetail("replace reason=" + Clean(req.reason()));
    if (req.firearm_id() <= 0) return Invalid("firearm_id must be positive, got " + std::to_string(req.firearm_id()));
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    return ToGrpc((*db)->ReplaceMicrostamp(call.who().agency_id, req.firearm_id(), req.fp_tip_code(),
                                           req.breech_face_code(), req.reason(), call.who().holder));
  }

  grpc::Status DoRevokeMicrostamp(Call& call, const v1::RevokeMicrostampRequest& req) {
    grpc::Status st = AuthorizeWriter(call);
    if (!st.ok()) return st;
    call.AddRecord("firearm:" + std::to_string(req.firearm_id()));
    call.SetDetail("revoke reason=" + Clean(req.reason()));
    if (req.firearm_id() <= 0) return Invalid("firearm_id must be positive, got " + std::to_string(req.firearm_id()));
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    return ToGrpc((*db)->RevokeMicrostamp(call.who().agency_id, req.firearm_id(), req.reason(), call.who().holder));
  }

  // The index of every registered code: loaded from the system connection on
  // first use, then kept current by the changes after its watermark (base +
  // delta, compacted in the background: store::LiveMicrostampRegistry). It
  // holds every agency's codes: an answer without identify carries
  // probabilities only, and identities go to law-enforcement agencies, which
  // the registry's row-level security lets read every code anyway.
  StatusOr<std::shared_ptr<const registry::LiveMicrostampIndex>> Index() { return microstamps_.Current(); }

  grpc::Status DoLookupMicrostamp(Call& call, const v1::LookupMicrostampRequest& req,
                                  v1::LookupMicrostampResponse* out) {
    grpc::Status st = req.identify() ? AuthorizeAny(call) : AuthorizeReader(call);
    if (!st.ok()) return st;
    if (req.identify()) {
      st = CheckIdentityAccess(call, req.case_number(), req.reason());
      if (!st.ok()) return st;
    }
    std::vector<registry::StampRead> reads;
    std::string detail = req.identify() ? "" : "anonymous";
    for (const v1::StampRead& r : req.reads()) {
      registry::StampLocation loc;
      if (r.location() == v1::STAMP_FP_TIP) loc = registry::StampLocation::kFiringPinTip;
      else if (r.location() == v1::STAMP_BREECH_FACE) loc = registry::StampLocation::kBreechFace;
      else {
        return Invalid("read location " + std::to_string(r.location()) + " is not STAMP_FP_TIP or STAMP_BREECH_FACE");
      }
      const double conf = r.confidence() == 0.0 ? 0.9 : r.confidence();
      registry::StampRead sr = registry::StampRead::Parse(loc, r.text(), conf);
      if (r.confidences_size() > 0) {
        if (static_cast<std::size_t>(r.confidences_size()) != sr.chars.size()) {
          return Invalid("read '" + Clean(r.text()) + "' has " + std::to_string(sr.chars.size()) + " positions but " +
                         std::to_string(r.confidences_size()) + " confidences");
        }
        for (std::size_t i = 0; i < sr.chars.size(); ++i) sr.chars[i].confidence = r.confidences(static_cast<int>(i));
      }
      reads.push_back(std::move(sr));
      detail += " " + std::string(registry::StampLocationName(loc)) + "=" + Clean(r.text());
    }
    call.SetDetail((req.identify() ? "identity case_number=" + Clean(req.case_number()) + " reason=" +
                                         Clean(req.reason()) + " reads:"
                                   : std::string("reads:")) +
                   detail);
    if (req.top_k() < 0 || req.top_k() > 100) return Invalid("top_k " + std::to_string(req.top_k()) + " is not in 0..100");
    registry::MicrostampLookupOptions options;
    if (req.top_k() > 0) options.top_k = req.top_k();
    auto index = Index();
    if (!index.ok()) return ToGrpc(index.status());
    auto res = (*index)->Lookup(reads, options);
    if (!res.ok()) return ToGrpc(res.status());
    out->set_consistent_fp_tip_codes(res->consistent_codes[0]);
    out->set_consistent_breech_face_codes(res->consistent_codes[1]);
    out->set_consistent_firearms(res->consistent_firearms);
    out->set_tail_mass_estimate(res->tail_mass_estimate);
    out->set_registered_firearms(static_cast<std::int64_t>((*index)->size()));
    std::unique_ptr<store::RegistryDb> db;
    if (req.identify()) {
      auto d = Scoped(call);
      if (!d.ok()) return ToGrpc(d.status());
      db = std::move(*d);
    }
    int rank = 0;
    for (const auto& c : res->candidates) {
      v1::MicrostampCandidate* p = out->add_candidates();
      p->set_rank(++rank);
      p->set_posterior(c.posterior);
      p->set_log_likelihood(c.log_likelihood);
      if (db) {
        p->set_fp_tip_code(c.codes[0]);
        p->set_breech_face_code(c.codes[1]);
        auto f = db->GetFirearm(c.firearm_id);
        if (f.ok()) ToProto(*f, p->mutable_firearm());
        else p->mutable_firearm()->set_firearm_id(c.firearm_id);
        call.AddRecord("firearm:" + std::to_string(c.firearm_id));
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status DoCreateEvent(Call& call, const v1::CreateEventRequest& req, v1::EventInfo* out) {
    grpc::Status st = AuthorizeWriter(call);
    if (!st.ok()) return st;
    const v1::EventInfo& p = req.event();
    if (!p.has_occurred_at()) return Invalid("event occurred_at is required");
    registry::Event e;
    e.incident_id = p.incident_id();
    e.case_number = p.case_number();
    e.occurred_at = TimestampIso(p.occurred_at());
    e.lat = p.lat();
    e.lon = p.lon();
    e.place = p.place();
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    auto id = (*db)->CreateEvent(call.who().agency_id, e, call.who().holder);
    if (!id.ok()) return ToGrpc(id.status());
    call.AddRecord("event:" + std::to_string(*id));
    e.id = *id;
    e.agency = call.who().agency;
    ToProto(e, out);
    return grpc::Status::OK;
  }

  grpc::Status DoAddEventCasing(Call& call, const v1::AddEventCasingRequest& req) {
    grpc::Status st = AuthorizeWriter(call);
    if (!st.ok()) return st;
    call.AddRecord("event:" + std::to_string(req.event_id()));
    call.AddRecord("casing:" + std::to_string(req.casing_id()));
    st = call.CheckCasingAccess(req.casing_id());
    if (!st.ok()) return st;
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    return ToGrpc((*db)->AddEventCasing(call.who().agency_id, req.event_id(), req.casing_id()));
  }

  // The event graph is walked in SQL under row-level security (RegistryDb::
  // ConnectedEvents / EventPath): nothing is loaded whole, so a state-wide
  // graph costs what the component costs.
  grpc::Status DoConnected(Call& call, const v1::ConnectedEventsRequest& req, v1::EventComponent* out) {
    grpc::Status st = AuthorizeReader(call);
    if (!st.ok()) return st;
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    StatusOr<std::vector<std::int64_t>> start = std::vector<std::int64_t>{};
    switch (req.start_case()) {
      case v1::ConnectedEventsRequest::kEventId:
        call.AddRecord("event:" + std::to_string(req.event_id()));
        start = std::vector<std::int64_t>{req.event_id()};
        break;
      case v1::ConnectedEventsRequest::kCasingId:
        call.AddRecord("casing:" + std::to_string(req.casing_id()));
        start = (*db)->EventsOfCasing(req.casing_id());
        break;
      case v1::ConnectedEventsRequest::kFirearmId:
        call.AddRecord("firearm:" + std::to_string(req.firearm_id()));
        start = (*db)->EventsOfFirearm(req.firearm_id());
        break;
      case v1::ConnectedEventsRequest::kCaseNumber:
        call.AddRecord("case:" + call.who().agency + "/" + req.case_number());
        start = (*db)->EventsOfCase(call.who().agency, req.case_number());
        break;
      default: return Invalid("give an event_id, casing_id, firearm_id or case_number");
    }
    if (!start.ok()) return ToGrpc(start.status());
    auto walk = (*db)->ConnectedEvents(*start);
    if (!walk.ok()) return ToGrpc(walk.status());
    if (req.start_case() == v1::ConnectedEventsRequest::kEventId && walk->events.empty()) {
      return grpc::Status(StatusCode::NOT_FOUND, "event " + std::to_string(req.event_id()) + " is not visible");
    }
    if (walk->truncated) {
      call.SetDetail("truncated at " + std::to_string(store::RegistryDb::kMaxEventDepth) + " links");
    }
    for (const auto& e : walk->events) ToProto(e, out->add_events());
    for (const auto& l : walk->links) ToProto(l, out->add_links());
    out->set_geojson(walk->geojson);
    return grpc::Status::OK;
  }

  grpc::Status DoPath(Call& call, const v1::EventPathRequest& req, v1::EventPathResponse* out) {
    grpc::Status st = AuthorizeReader(call);
    if (!st.ok()) return st;
    call.AddRecord("event:" + std::to_string(req.from_event_id()));
    call.AddRecord("event:" + std::to_string(req.to_event_id()));
    auto db = Scoped(call);
    if (!db.ok()) return ToGrpc(db.status());
    auto path = (*db)->EventPath(req.from_event_id(), req.to_event_id());
    if (!path.ok()) return ToGrpc(path.status());
    for (const auto& l : *path) ToProto(l, out->add_links());
    return grpc::Status::OK;
  }

  ServiceContext& ctx_;
  std::string hmac_key_;
  store::LiveMicrostampRegistry microstamps_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeRegistryService(ServiceContext& ctx) {
  return std::make_unique<RegistryServiceImpl>(ctx);
}

}  // namespace ballistics::service
