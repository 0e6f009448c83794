// ReviewService (decisions, pending reviews) and LeadService (the lead graph).
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <limits>
#include <cmath>

#include "ballistics/correlate.h"
#include "ballistics/store.h"

#include "ballistics/v1/leads.grpc.pb.h"
#include "ballistics/v1/review.grpc.pb.h"
#include "proto_convert.h"
#include "services.h"

namespace ballistics::service {
namespace {

using grpc::ServerContext;
using grpc::StatusCode;
namespace v1 = ::ballistics::v1;
using store::ApiRole;

void FillScoreFromDetail(const std::string& detail_json, v1::CmcScore* s) {
  const auto d = nlohmann::json::parse(detail_json, nullptr, false);
  if (!d.is_object()) return;
  const bool bf = d.contains("bf");
  const auto& k = bf ? d["bf"] : (d.contains("fp") ? d["fp"] : d);
  CmcScoreFromJson(k, bf ? v1::BREECH_FACE : v1::FIRING_PIN, "", s);
}

// Signature values colour-mapped over their robust range (1st..99th
// percentile of the valid points), invalid points mid grey: the picture an
// examiner compares, independent of outliers.
cv::Mat3b Colourize(const cv::Mat1f& v) {
  std::vector<float> valid;
  valid.reserve(v.total());
  for (float x : v) {
    if (std::isfinite(x)) valid.push_back(x);
  }
  cv::Mat3b out(v.size(), cv::Vec3b(128, 128, 128));
  if (valid.size() < 2) return out;
  auto pct = [&](double q) {
    auto it = valid.begin() + static_cast<std::ptrdiff_t>(q * (valid.size() - 1));
    std::nth_element(valid.begin(), it, valid.end());
    return *it;
  };
  const float lo = pct(0.01), hi = pct(0.99);
  const float span = hi > lo ? hi - lo : 1.0f;
  cv::Mat1b grey(v.size(), 0);
  for (int r = 0; r < v.rows; ++r) {
    for (int c = 0; c < v.cols; ++c) {
      const float x = v(r, c);
      if (std::isfinite(x)) grey(r, c) = cv::saturate_cast<uchar>(255.0f * (x - lo) / span);
    }
  }
  cv::Mat3b coloured;
  cv::applyColorMap(grey, coloured, cv::COLORMAP_VIRIDIS);
  coloured.copyTo(out, v == v);  // v == v is false exactly at NaN
  return out;
}

std::string Png(const cv::Mat& m) {
  std::vector<uchar> buf;
  cv::imencode(".png", m, buf);
  return std::string(buf.begin(), buf.end());
}

// The cell map: reference and target side by side, each cell of the direction
// that gave the score drawn where it is in the reference and where it
// registered in the target; green = congruent (counted in the CMC), red = not.
// Cell positions are relative to each signature's centre (correlate.h).
cv::Mat3b CellMap(const cv::Mat3b& ref, double ref_px_um, const cv::Mat3b& tgt, double tgt_px_um,
                  const DirectionResult& dir) {
  const int h = std::max(ref.rows, tgt.rows);
  cv::Mat3b canvas(h, ref.cols + 10 + tgt.cols, cv::Vec3b(255, 255, 255));
  ref.copyTo(canvas(cv::Rect(0, 0, ref.cols, ref.rows)));
  tgt.copyTo(canvas(cv::Rect(ref.cols + 10, 0, tgt.cols, tgt.rows)));
  const int thickness = std::max(1, ref.cols / 300);
  for (const CellResult& c : dir.cell_results) {
    const cv::Scalar colour = c.congruent ? cv::Scalar(0, 200, 0) : cv::Scalar(0, 0, 230);
    const double half = c.size_um / ref_px_um / 2;
    const cv::Point2d p(c.x_um / ref_px_um + ref.cols / 2.0, c.y_um / ref_px_um + ref.rows / 2.0);
    cv::rectangle(canvas, cv::Point(cvRound(p.x - half), cvRound(p.y - half)),
                  cv::Point(cvRound(p.x + half), cvRound(p.y + half)), colour, thickness);
    const double th = c.size_um / tgt_px_um / 2;
    const cv::Point2d q(c.target_x_um / tgt_px_um + tgt.cols / 2.0 + ref.cols + 10,
                        c.target_y_um / tgt_px_um + tgt.rows / 2.0);
    cv::RotatedRect rr(q, cv::Size2f(static_cast<float>(2 * th), static_cast<float>(2 * th)),
                       static_cast<float>(-c.theta_deg));
    cv::Point2f pts[4];
    rr.points(pts);
    for (int i = 0; i < 4; ++i) cv::line(canvas, pts[i], pts[(i + 1) % 4], colour, thickness);
  }
  return canvas;
}

// The target resampled onto the reference grid at the consensus registration
// (reference point p, centre-relative in um, lies on target point
// q = Rot(theta) p + t, OpenCV's rotation convention, as in src/correlate), then
// both shown in one picture: reference in magenta, target in green, so marks
// that line up look grey-white and mismatches look coloured.
cv::Mat3b Overlay(const Signature& ref, const Signature& tgt, const ComparisonResult& cmp, double* ncc) {
  const double th = cmp.theta_deg * CV_PI / 180.0, c = std::cos(th), s = std::sin(th);
  cv::Mat1f map_x(ref.values.size()), map_y(ref.values.size());
  const double crx = (ref.values.cols - 1) / 2.0, cry = (ref.values.rows - 1) / 2.0;
  const double ctx = (tgt.values.cols - 1) / 2.0, cty = (tgt.values.rows - 1) / 2.0;
  for (int y = 0; y < ref.values.rows; ++y) {
    for (int x = 0; x < ref.values.cols; ++x) {
      const double px = (x - crx) * ref.pixel_um, py = (y - cry) * ref.pixel_um;
      const double qx = c * px + s * py + cmp.dx_um, qy = -s * px + c * py + cmp.dy_um;
      map_x(y, x) = static_cast<float>(qx / tgt.pixel_um + ctx);
      map_y(y, x) = static_cast<float>(qy / tgt.pixel_um + cty);
    }
  }
  cv::Mat1f warped;
  // NaN propagates through the bilinear weights: invalid target data stays invalid.
  cv::remap(tgt.values, warped, map_x, map_y, cv::INTER_LINEAR, cv::BORDER_CONSTANT,
            cv::Scalar(std::numeric_limits<float>::quiet_NaN()));
  auto grey = [](const cv::Mat1f& v) {
    std::vector<float> valid;
    for (float x : v) {
      if (std::isfinite(x)) valid.push_back(x);
    }
    cv::Mat1b g(v.size(), 0);
    if (valid.size() < 2) return g;
    std::sort(valid.begin(), valid.end());
    const float lo = valid[valid.size() / 100], hi = valid[valid.size() * 99 / 100];
    const float span = hi > lo ? hi - lo : 1.0f;
    for (int r = 0; r < v.rows; ++r) {
      for (int k = 0; k < v.cols; ++k) {
        if (std::isfinite(v(r, k))) g(r, k) = cv::saturate_cast<uchar>(255.0f * (v(r, k) - lo) / span);
      }
    }
    return g;
  };
  const cv::Mat1b a = grey(ref.values), b = grey(warped);
  cv::Mat3b out(ref.values.size(), cv::Vec3b(255, 255, 255));
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  long n = 0;
  for (int r = 0; r < out.rows; ++r) {
    for (int k = 0; k < out.cols; ++k) {
      const bool va = std::isfinite(ref.values(r, k)), vb = std::isfinite(warped(r, k));
      if (va && vb) {
        const double x = ref.values(r, k), y = warped(r, k);
        sa += x, sb += y, saa += x * x, sbb += y * y, sab += x * y, ++n;
      }
      // BGR: reference in blue+red (magenta), target in green.
      out(r, k) = cv::Vec3b(va ? a(r, k) : 255, vb ? b(r, k) : 255, va ? a(r, k) : 255);
    }
  }
  *ncc = 0;
  if (n > 1) {
    const double cov = sab - sa * sb / n, va = saa - sa * sa / n, vb = sbb - sb * sb / n;
    if (va > 0 && vb > 0) *ncc = cov / std::sqrt(va * vb);
  }
  return out;
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
      st = RenderComparison(call, *c, out);
    }
    return call.Finish(st);
  }

  // Signatures read under row-level security; the comparison is recomputed
  // (deterministic) to get the per-cell results the search did not keep.
  grpc::Status RenderComparison(Call& call, const store::ComparisonRow& row, v1::ComparisonDetail* out) {
    const SignatureKind kind =
        out->score().kind() == v1::FIRING_PIN ? SignatureKind::kFiringPin : SignatureKind::kBreechFace;
    auto url = call.ScopedUrl();
    if (!url.ok()) return ToGrpc(url.status());
    auto st = store::Store::Connect(*url);
    if (!st.ok()) return ToGrpc(st.status());
    auto pick = [&](std::int64_t casing) -> StatusOr<Signature> {
      BALLISTICS_ASSIGN_OR_RETURN(auto sigs, (*st)->GetSignatures(casing));
      for (auto& s : sigs) {
        if (s.signature.kind == kind) return std::move(s.signature);
      }
      return NotFound("casing " + std::to_string(casing) + " has no " + std::string(SignatureKindName(kind)) +
                      " signature visible to " + call.who().agency);
    };
    auto ref = pick(row.reference_casing_id);
    if (!ref.ok()) return ToGrpc(ref.status());
    auto tgt = pick(row.target_casing_id);
    if (!tgt.ok()) return ToGrpc(tgt.status());
    auto correlator = Correlator::Create(kind == SignatureKind::kFiringPin ? CorrelationConfig::FiringPin()
                                                                           : CorrelationConfig{});
    if (!correlator.ok()) return ToGrpc(correlator.status());
    auto cmp = correlator->Compare(*ref, *tgt);
    if (!cmp.ok()) return ToGrpc(cmp.status());
    const cv::Mat3b ref_img = Colourize(ref->values), tgt_img = Colourize(tgt->values);
    out->set_reference_png(Png(ref_img));
    out->set_target_png(Png(tgt_img));
    // The direction whose CMC count is the pair's score (min of both).
    const DirectionResult& dir = cmp->forward.cmc == cmp->cmc ? cmp->forward : cmp->backward;
    const bool forward = &dir == &cmp->forward;
    out->set_cell_map_png(Png(forward ? CellMap(ref_img, ref->pixel_um, tgt_img, tgt->pixel_um, dir)
                                      : CellMap(tgt_img, tgt->pixel_um, ref_img, ref->pixel_um, dir)));
    out->set_pixel_um(ref->pixel_um);
    double overlay_ncc = 0;
    out->set_overlay_png(Png(Overlay(*ref, *tgt, *cmp, &overlay_ncc)));
    // The overlay's own correlation over the common valid area: a check that
    // the picture shows the registration the score was computed at.
    call.SetDetail("overlay_ncc=" + std::to_string(overlay_ncc) + " ccf=" + std::to_string(cmp->ccf));
    for (const CellResult& c : dir.cell_results) {
      v1::CellResult* p = out->add_cells();
      const double half = c.size_um / 2;
      const double px = forward ? ref->pixel_um : tgt->pixel_um;
      const cv::Mat1f& grid = forward ? ref->values : tgt->values;
      p->set_x_px(static_cast<int>(std::lround((c.x_um - half) / px + grid.cols / 2.0)));
      p->set_y_px(static_cast<int>(std::lround((c.y_um - half) / px + grid.rows / 2.0)));
      p->set_width_px(static_cast<int>(std::lround(c.size_um / px)));
      p->set_height_px(static_cast<int>(std::lround(c.size_um / px)));
      p->mutable_registration()->set_theta_deg(c.theta_deg);
      p->mutable_registration()->set_dx_um(c.dx_um);
      p->mutable_registration()->set_dy_um(c.dy_um);
      p->set_ccf(c.ccf);
      p->set_congruent(c.congruent);
    }
    return grpc::Status::OK;
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
    *out->mutable_decided_at() = TimestampFromIso(d->decided_at);
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
      *p->mutable_created_at() = TimestampFromIso(l.created_at);
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
