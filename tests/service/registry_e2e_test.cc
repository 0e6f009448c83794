// Registry end to end through a real ballisticsd (issue 7): a Fadul scan is
// registered as a manufacturer test fire of a serial-numbered firearm with a
// dealer sale; other scans of the same slide arrive as crime-scene evidence;
// a search filtered to manufacturer test fires ranks the test fire first; the
// examiner records the hit; Trace returns the serial and the sale. Non-law-
// enforcement callers get PERMISSION_DENIED for Trace and microstamp identity;
// every lookup is in the audit trail and the chain verifies. The two scenes are
// linked as events through the firearm.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "api_server.h"
#include "ballistics/registry_store.h"
#include "ballistics/v1/registry.grpc.pb.h"
#include "ballistics/v1/review.grpc.pb.h"
#include "ballistics/v1/search.grpc.pb.h"

namespace ballistics {
namespace {

using testing::Authorize;
using testing::FadulBytes;
using testing::Upload;

constexpr const char* kHmacKey = "registry-e2e-test-key-0123456789";

v1::CasingMetadata Md(const std::string& case_number, const std::string& exhibit, v1::CasingSource src) {
  v1::CasingMetadata md;
  md.set_agency("Agency A");
  md.set_case_number(case_number);
  md.set_exhibit_id(exhibit);
  md.set_calibre("9mm Luger");
  md.set_source(src);
  return md;
}

class RegistryE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    tokens_ = testing::Bootstrap(db_.url());
    ASSERT_FALSE(tokens_.examiner_b.empty());
    auto sys = store::RegistryDb::ConnectSystem(db_.url());
    ASSERT_TRUE(sys.ok());
    ASSERT_TRUE((*sys)->SetLawEnforcement("Agency A", true).ok());  // B stays a non-LE lab
    setenv("BALLISTICS_PURCHASER_HMAC_KEY", kHmacKey, 1);  // inherited by the forked server
    server_.Start(db_.url());
    ASSERT_TRUE(server_.channel()) << server_.Log();
    reg_ = v1::RegistryService::NewStub(server_.channel());
  }
  void TearDown() override { EXPECT_EQ(server_.Stop(), 0) << server_.Log(); }

  std::int64_t Put(const std::string& scan, const std::string& case_number, v1::CasingSource src) {
    auto up = Upload(server_.channel(), tokens_.technician_a, FadulBytes(scan), Md(case_number, scan, src));
    EXPECT_TRUE(up.status.ok()) << scan << ": " << up.status.error_message();
    return up.response.casing_id();
  }

  std::int64_t Firearm(const std::string& serial) {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.technician_a);
    v1::RegisterFirearmRequest r;
    v1::Firearm* f = r.mutable_firearm();
    f->set_manufacturer("Sturm, Ruger & Co.");
    f->set_make("Ruger");
    f->set_model("P95");
    f->set_serial(serial);
    f->set_calibre("9mm Luger");
    f->set_fp_shape("hemispherical");
    v1::Firearm out;
    grpc::Status s = reg_->RegisterFirearm(&ctx, r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out.firearm_id();
  }

  void Link(std::int64_t casing, std::int64_t firearm) {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.technician_a);
    v1::LinkTestFireRequest r;
    r.set_casing_id(casing);
    r.set_firearm_id(firearm);
    v1::LinkTestFireResponse out;
    grpc::Status s = reg_->LinkTestFire(&ctx, r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  // Searches manufacturer test fires for `query`, records a hit on the best
  // breech-face candidate, returns that candidate's casing id.
  std::int64_t SearchAndHit(std::int64_t query) {
    auto stub = v1::SearchService::NewStub(server_.channel());
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.examiner_a);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
    v1::SearchRequest req;
    req.set_casing_id(query);
    req.set_top_n(5);
    req.mutable_filter()->add_sources(v1::MANUFACTURER_TEST_FIRE);
    auto reader = stub->Search(&ctx, req);
    v1::SearchUpdate u;
    v1::SearchResult result;
    while (reader->Read(&u)) {
      if (u.has_result()) result = u.result();
    }
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << server_.Log();
    if (result.breech_face_size() == 0) {
      ADD_FAILURE() << "no candidates: " << result.DebugString();
      return 0;
    }
    for (const auto& c : result.breech_face()) EXPECT_EQ(c.source(), v1::MANUFACTURER_TEST_FIRE);
    const v1::Candidate& best = result.breech_face(0);
    auto review = v1::ReviewService::NewStub(server_.channel());
    grpc::ClientContext dctx;
    Authorize(&dctx, tokens_.examiner_a);
    v1::RecordDecisionRequest d;
    d.set_comparison_id(best.comparison_id());
    d.set_outcome(v1::HIT);
    v1::Decision out;
    s = review->RecordDecision(&dctx, d, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return best.casing_id();
  }

  grpc::Status Trace(const std::string& token, std::int64_t casing, const std::string& case_number,
                     v1::TraceResponse* out) {
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    v1::TraceRequest r;
    r.set_casing_id(casing);
    r.set_case_number(case_number);
    r.set_reason("homicide investigation");
    return reg_->Trace(&ctx, r, out);
  }

  grpc::Status Lookup(const std::string& token, bool identify, const std::string& case_number,
                      v1::LookupMicrostampResponse* out) {
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    v1::LookupMicrostampRequest r;
    v1::StampRead* fp = r.add_reads();
    fp->set_location(v1::STAMP_FP_TIP);
    fp->set_text("R7?95X?8");  // true R7P95X1B: 2 unknown, 'B' read as its look-alike '8'
    v1::StampRead* bf = r.add_reads();
    bf->set_location(v1::STAMP_BREECH_FACE);
    bf->set_text("0123?1230123");
    r.set_identify(identify);
    r.set_case_number(case_number);
    return reg_->LookupMicrostamp(&ctx, r, out);
  }

  testing::TestDatabase db_;
  testing::Tokens tokens_;
  testing::ApiServer server_;
  std::unique_ptr<v1::RegistryService::Stub> reg_;
};

TEST_F(RegistryE2eTest, TestFireHitTracesToSerialAndSale) {
  // Manufacture: three Ruger slides, each test-fired and registered; the first is sold.
  const std::int64_t gun = Firearm("RUG-P95-0001");
  const std::int64_t other1 = Firearm("RUG-P95-0002");
  const std::int64_t other2 = Firearm("RUG-P95-0003");
  const std::int64_t tf = Put("fadul-1-1", "MFG-TEST-FIRES", v1::MANUFACTURER_TEST_FIRE);
  Link(tf, gun);
  Link(Put("fadul-2-1", "MFG-TEST-FIRES", v1::MANUFACTURER_TEST_FIRE), other1);
  Link(Put("fadul-3-1", "MFG-TEST-FIRES", v1::MANUFACTURER_TEST_FIRE), other2);
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.technician_a);
    v1::RecordTransferRequest r;
    r.set_firearm_id(gun);
    r.set_kind("dealer_sale");
    r.set_dealer_licence("MD-FFL-5551");
    r.set_date("2023-06-15");
    r.set_purchaser_ref("MD-LIC-000123");
    v1::Transfer t;
    grpc::Status s = reg_->RecordTransfer(&ctx, r, &t);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(t.purchaser_ref_hmac(), *store::PartyRefHmac(kHmacKey, "MD-LIC-000123"));
  }
  // Crime-scene evidence: two other scans of slide 1, at two shootings, plus a
  // scan of slide 2 (its test fire must not outrank slide 1's for these).
  const std::int64_t scene1 = Put("fadul-1-2", "HOM-2024-17", v1::CRIME_SCENE);
  const std::int64_t scene2 = Put("fadul-F", "HOM-2024-17", v1::CRIME_SCENE);

  // Search -> the test fire first among the manufacturer test fires -> hit.
  EXPECT_EQ(SearchAndHit(scene1), tf);

  // Trace by a law-enforcement examiner with the case number.
  v1::TraceResponse trace;
  grpc::Status s = Trace(tokens_.examiner_a, tf, "HOM-2024-17", &trace);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(trace.firearm().firearm_id(), gun);
  EXPECT_EQ(trace.firearm().serial(), "RUG-P95-0001");
  EXPECT_EQ(trace.firearm().manufacturer(), "Sturm, Ruger & Co.");
  ASSERT_EQ(trace.transfers_size(), 1);
  EXPECT_EQ(trace.transfers(0).kind(), "dealer_sale");
  EXPECT_EQ(trace.transfers(0).dealer_licence(), "MD-FFL-5551");
  EXPECT_EQ(trace.transfers(0).date(), "2023-06-15");
  EXPECT_EQ(trace.transfers(0).purchaser_ref_hmac(), *store::PartyRefHmac(kHmacKey, "MD-LIC-000123"));
  EXPECT_EQ(trace.test_fire_casing_ids_size(), 1);
  // The crime-scene casing is not a registered test fire: nothing to trace from it.
  v1::TraceResponse none;
  EXPECT_EQ(Trace(tokens_.examiner_a, scene1, "HOM-2024-17", &none).error_code(), grpc::StatusCode::NOT_FOUND);

  // Refusals: no case number; a reader; an examiner of a non-law-enforcement agency.
  EXPECT_EQ(Trace(tokens_.examiner_a, tf, "", &none).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Trace(tokens_.reader_a, tf, "HOM-2024-17", &none).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Trace(tokens_.examiner_b, tf, "HOM-2024-17", &none).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_FALSE(none.has_firearm());

  // Microstamp: codes registered for the gun and a near twin.
  for (auto [id, fp, bf] : {std::tuple{gun, "R7P95X1B", "012301230123"}, std::tuple{other1, "R7P95X1C", "012301230120"}}) {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.technician_a);
    v1::RegisterMicrostampRequest r;
    r.set_firearm_id(id);
    r.set_fp_tip_code(fp);
    r.set_breech_face_code(bf);
    v1::RegisterMicrostampResponse out;
    s = reg_->RegisterMicrostamp(&ctx, r, &out);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  v1::LookupMicrostampResponse ms;
  s = Lookup(tokens_.examiner_a, true, "HOM-2024-17", &ms);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_GE(ms.candidates_size(), 1);
  EXPECT_EQ(ms.candidates(0).firearm().serial(), "RUG-P95-0001");
  EXPECT_EQ(ms.candidates(0).fp_tip_code(), "R7P95X1B");
  EXPECT_GT(ms.candidates(0).posterior(), 0.5);
  EXPECT_EQ(ms.registered_firearms(), 2);
  v1::LookupMicrostampResponse anon;
  s = Lookup(tokens_.reader_a, false, "", &anon);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_GE(anon.candidates_size(), 1);
  EXPECT_FALSE(anon.candidates(0).has_firearm());
  EXPECT_TRUE(anon.candidates(0).fp_tip_code().empty());
  EXPECT_DOUBLE_EQ(anon.candidates(0).posterior(), ms.candidates(0).posterior());
  v1::LookupMicrostampResponse denied;
  EXPECT_EQ(Lookup(tokens_.examiner_b, true, "HOM-2024-17", &denied).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Lookup(tokens_.reader_a, true, "HOM-2024-17", &denied).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Lookup(tokens_.examiner_a, true, "", &denied).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied.candidates_size(), 0);

  // Events: the two shootings, linked through the gun once the second scene hits the test fire too.
  std::int64_t ev[2] = {0, 0};
  const std::int64_t scenes[2] = {scene1, scene2};
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.technician_a);
    v1::CreateEventRequest r;
    r.mutable_event()->set_incident_id("CAD-" + std::to_string(i));
    r.mutable_event()->mutable_occurred_at()->set_seconds(1714600000 + i * 86400);
    r.mutable_event()->set_lat(39.29 + 0.01 * i);
    r.mutable_event()->set_lon(-76.61);
    r.mutable_event()->set_case_number("HOM-2024-17");
    v1::EventInfo out;
    s = reg_->CreateEvent(&ctx, r, &out);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ev[i] = out.event_id();
    grpc::ClientContext ctx2;
    Authorize(&ctx2, tokens_.technician_a);
    v1::AddEventCasingRequest a;
    a.set_event_id(ev[i]);
    a.set_casing_id(scenes[i]);
    v1::AddEventCasingResponse ao;
    s = reg_->AddEventCasing(&ctx2, a, &ao);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.reader_a);
    v1::EventPathRequest r;
    r.set_from_event_id(ev[0]);
    r.set_to_event_id(ev[1]);
    v1::EventPathResponse out;
    EXPECT_EQ(reg_->EventPath(&ctx, r, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(SearchAndHit(scene2), tf);
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, tokens_.reader_a);
    v1::ConnectedEventsRequest r;
    r.set_firearm_id(gun);
    v1::EventComponent out;
    s = reg_->ConnectedEvents(&ctx, r, &out);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(out.events_size(), 2);
    ASSERT_EQ(out.links_size(), 1);
    EXPECT_EQ(out.links(0).kind(), "firearm");
    EXPECT_EQ(out.links(0).ref_id(), gun);
    auto geo = nlohmann::json::parse(out.geojson());
    EXPECT_EQ(geo["type"], "FeatureCollection");
    EXPECT_EQ(geo["features"].size(), 3u);  // 2 points + 1 line
  }

  // Every registry lookup is in the audit trail, refusals included, with the
  // case number; and the chain verifies.
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM audit_log WHERE method LIKE '%RegistryService/Trace' "
                                         "AND status = 'OK' AND detail LIKE '%case_number=HOM-2024-17%'"),
            1);
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM audit_log WHERE method LIKE '%RegistryService/Trace' "
                                         "AND status LIKE 'PERMISSION_DENIED%'"),
            3);
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM audit_log WHERE method LIKE "
                                         "'%RegistryService/LookupMicrostamp'"),
            5);
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM audit_log WHERE method LIKE "
                                         "'%RegistryService/LookupMicrostamp' AND status = 'OK' AND records LIKE "
                                         "'%firearm:" + std::to_string(gun) + "%'"),
            1);
  auto api = store::ApiDb::ConnectSystem(db_.url());
  ASSERT_TRUE(api.ok());
  auto verify = (*api)->VerifyAudit();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok) << verify->problem;
}

}  // namespace
}  // namespace ballistics
