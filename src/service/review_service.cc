// ReviewService (decisions, pending reviews) and LeadService (the lead graph).
#include <nlohmann/json.hpp>

#include "ballistics/v1/leads.grpc.pb.h"
#include "ballistics/v1/review.grpc.pb.h"
#include "services.h"

namespace ballistics::service {
namespace {

using grpc::ServerContext;
using grpc::StatusCode;
namespace v1 = ::ballistics::v1;
using store::ApiRole;

google::protobuf::Timestamp ParseTs(const std::string& iso) {
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

void FillScoreFromDetail(const std::string& detail_json, v1::CmcScore* s) {
  const auto d = nlohmann::json::parse(detail_json, nullptr, false);
  if (!d.is_object()) return;
  const bool bf = d.contains("bf");
  const auto& k = bf ? d["bf"] : (d.contains("fp") ? d["fp"] : d);
  s->set_kind(bf ? v1::BREECH_FACE : v1::FIRING_PIN);
  s->set_cmc_count(k.value("cmc", 0));
  s->set_cell_count(k.value("cells", 0));
  s->set_ccf(k.value("ccf", 0.0));
  s->mutable_registration()->set_theta_deg(k.value("theta_deg", 0.0));
  s->mutable_registration()->set_dx_um(k.value("dx_um", 0.0));
  s->mutable_registration()->set_dy_um(k.value("dy_um", 0.0));
}

class ReviewServiceImpl final : public v1::ReviewService::Service {
 public:
  explicit ReviewServiceImpl(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::Status GetComparison(ServerContext* sc, const v1::GetComparisonRequest* req,
                             v1::ComparisonDetail* out) override {
    Call call(ctx_, sc, "/ballistics.v1.ReviewService/GetComparison");
    grpc::Status st = call.Authorize({ApiRole::kExaminer, ApiRole::kAgencyReader, ApiRole::kAdmin});
    if (st.ok()) {
      call.AddRecord("comparison:" + std::to_string(req->comparison_id()));
      auto db = call.ScopedDb();
      if (!db.ok()) return call.Finish(ToGrpc(db.status()));
      auto c = (*db)->GetComparison(req->comparison_id());
      if (!c.ok()) return call.Finish(ToGrpc(c.status()));
      out->set_comparison_id(c->id);
      out->set_reference_casing_id(c->reference_casing_id);
      out->set_target_casing_id(c->target_casing_id);
      FillScoreFromDetail(c->detail_json, out->mutable_score());
      // Images and the per-cell map are not rendered yet (see docs/api.md).
    }
    return call.Finish(st);
  }

  grpc::Status RecordDecision(ServerContext* sc, const v1::RecordDecisionRequest* req, v1::Decision* out) override {
    Call call(ctx_, sc, "/ballistics.v1.ReviewService/RecordDecision");
    return call.Finish(Decide(call, *req, out));
  }

  grpc::Status ListPendingReviews(ServerContext* sc, const v1::ListPendingReviewsRequest* req,
                                  v1::ListPendingReviewsResponse* out) override {
    Call call(ctx_, sc, "/ballistics.v1.ReviewService/ListPendingReviews");
    grpc::Status st = call.Authorize({ApiRole::kExaminer, ApiRole::kAgencyReader, ApiRole::kAdmin});
    if (!st.ok()) return call.Finish(st);
    if (!req->agency().empty() && req->agency() != call.who().agency && !call.is_admin()) {
      return call.Finish(grpc::Status(StatusCode::PERMISSION_DENIED,
                                      "pending reviews of agency '" + req->agency() + "' are not yours to list"));
    }
    auto db = call.ScopedDb();
    if (!db.ok()) return call.Finish(ToGrpc(db.status()));
    auto rows = (*db)->ListPendingReviews(req->limit());
    if (!rows.ok()) return call.Finish(ToGrpc(rows.status()));
    for (const auto& r : *rows) {
      v1::PendingReview* p = out->add_reviews();
      p->set_comparison_id(r.id);
      p->set_search_id(r.search_id);
      p->set_reference_casing_id(r.reference_casing_id);
      p->set_target_casing_id(r.target_casing_id);
      FillScoreFromDetail(r.detail_json, p->mutable_score());
    }
    return call.Finish(grpc::Status::OK);
  }

 private:
  grpc::Status Decide(Call& call, const v1::RecordDecisionRequest& req, v1::Decision* out) {
    grpc::Status st = call.Authorize({ApiRole::kExaminer, ApiRole::kAdmin});
    if (!st.ok()) return st;
    call.AddRecord("comparison:" + std::to_string(req.comparison_id()));
    std::string outcome;
    switch (req.outcome()) {
      case v1::HIT: outcome = "hit"; break;
      case v1::NO_HIT: outcome = "no_hit"; break;
      case v1::INCONCLUSIVE: outcome = "inconclusive"; break;
      default: return grpc::Status(StatusCode::INVALID_ARGUMENT, "decision outcome is not set");
    }
    if (req.notes().size() > 10000) return grpc::Status(StatusCode::INVALID_ARGUMENT, "notes over 10000 characters");
    auto db = call.ScopedDb();
    if (!db.ok()) return ToGrpc(db.status());
    // Row-level security: another agency's comparison is NOT_FOUND here.
    auto d = (*db)->RecordDecision(call.who().agency_id, req.comparison_id(), outcome, call.who().holder,
                                   req.notes());
    if (!d.ok()) return ToGrpc(d.status());
    call.AddRecord("decision:" + std::to_string(d->decision_id));
    if (d->lead_id) call.AddRecord("lead:" + std::to_string(d->lead_id));
    call.SetDetail("outcome=" + outcome);
    out->set_decision_id(d->decision_id);
    out->set_comparison_id(d->comparison_id);
    out->set_outcome(req.outcome());
    out->set_examiner(d->examiner);
    out->set_notes(d->notes);
    *out->mutable_decided_at() = ParseTs(d->decided_at);
    out->set_lead_id(d->lead_id);
    return grpc::Status::OK;
  }

  ServiceContext& ctx_;
};

class LeadServiceImpl final : public v1::LeadService::Service {
 public:
  explicit LeadServiceImpl(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::Status GetLinked(ServerContext* sc, const v1::GetLinkedRequest* req, v1::LinkedGraph* out) override {
    Call call(ctx_, sc, "/ballistics.v1.LeadService/GetLinked");
    return call.Finish(Linked(call, *req, out));
  }

 private:
  grpc::Status Linked(Call& call, const v1::GetLinkedRequest& req, v1::LinkedGraph* out) {
    grpc::Status st = call.Authorize({ApiRole::kExaminer, ApiRole::kAgencyReader, ApiRole::kAdmin});
    if (!st.ok()) return st;
    auto db = call.ScopedDb();
    if (!db.ok()) return ToGrpc(db.status());
    std::vector<std::int64_t> start;
    switch (req.start_case()) {
      case v1::GetLinkedRequest::kCasingId: {
        call.AddRecord("casing:" + std::to_string(req.casing_id()));
        st = call.CheckCasingAccess(req.casing_id());
        if (!st.ok()) return st;
        start.push_back(req.casing_id());
        break;
      }
      case v1::GetLinkedRequest::kCaseNumber: {
        const std::string agency = req.agency().empty() ? call.who().agency : req.agency();
        call.AddRecord("case:" + agency + "/" + req.case_number());
        auto ids = (*db)->CasingsOfCase(agency, req.case_number());
        if (!ids.ok()) return ToGrpc(ids.status());
        if (ids->empty()) {
          return grpc::Status(StatusCode::NOT_FOUND, "no casings of case '" + req.case_number() + "' of agency '" +
                                                         agency + "' visible to " + call.who().agency);
        }
        start = *ids;
        break;
      }
      case v1::GetLinkedRequest::kFirearmId: {
        call.AddRecord("firearm:" + std::to_string(req.firearm_id()));
        auto ids = (*db)->CasingsOfFirearm(req.firearm_id());
        if (!ids.ok()) return ToGrpc(ids.status());
        start = *ids;
        break;
      }
      default:
        return grpc::Status(StatusCode::INVALID_ARGUMENT, "give a casing_id, case_number or firearm_id");
    }
    std::vector<store::LinkedCasingRow> casings;
    std::vector<store::LeadRow> leads;
    Status s = (*db)->GetLinked(start, &casings, &leads);
    if (!s.ok()) return ToGrpc(s);
    for (const auto& c : casings) {
      v1::LinkedCasing* p = out->add_casings();
      p->set_casing_id(c.casing_id);
      p->set_agency(c.agency);
      p->set_case_number(c.case_number);
      p->set_exhibit_id(c.exhibit_id);
      if (c.firearm_id) p->set_firearm_id(*c.firearm_id);
    }
    for (const auto& l : leads) {
      v1::Lead* p = out->add_leads();
      p->set_lead_id(l.id);
      p->set_casing_a(l.casing_a);
      p->set_casing_b(l.casing_b);
      p->set_decision_id(l.decision_id);
      *p->mutable_created_at() = ParseTs(l.created_at);
    }
    return grpc::Status::OK;
  }

  ServiceContext& ctx_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeReviewService(ServiceContext& ctx) {
  return std::make_unique<ReviewServiceImpl>(ctx);
}
std::unique_ptr<grpc::Service> MakeLeadService(ServiceContext& ctx) {
  return std::make_unique<LeadServiceImpl>(ctx);
}

}  // namespace ballistics::service
