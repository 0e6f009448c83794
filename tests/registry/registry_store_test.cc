// Registry store against PostgreSQL: firearms, test-fire links, sales (HMAC'd
// purchaser reference), trace, microstamp codes, events, and row-level security
// (registry rows visible to the registering agency and to law-enforcement agencies).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ballistics/api_store.h"
#include "ballistics/registry_store.h"
#include "ballistics/store.h"
#include "store/test_database.h"

namespace ballistics::store {
namespace {

constexpr const char* kKey = "0123456789abcdef-test-key";

Scan MakeScan() {
  Scan s;
  s.values = cv::Mat1f(8, 8, 1.0f);
  s.pixel_um_x = s.pixel_um_y = 6.25;
  s.header_length_unit = "m";
  return s;
}

class RegistryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    auto st = Store::Connect(db_.url());
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    store_ = std::move(*st);
    ASSERT_TRUE(store_->Migrate().ok());
    auto api = ApiDb::ConnectSystem(db_.url());
    ASSERT_TRUE(api.ok());
    state_ = *(*api)->CreateAgency("MSP");
    lab_ = *(*api)->CreateAgency("Private Lab");
    auto sys = RegistryDb::ConnectSystem(db_.url());
    ASSERT_TRUE(sys.ok());
    system_ = std::move(*sys);
    ASSERT_TRUE(system_->SetLawEnforcement("MSP", true).ok());
  }

  std::int64_t Casing(const std::string& agency, const std::string& exhibit, CasingSource src) {
    CasingMetadata m;
    m.agency = agency;
    m.case_number = "REG-1";
    m.exhibit_id = exhibit;
    m.calibre = "9mm Luger";
    m.source = src;
    m.submitted_by = "t";
    std::vector<std::uint8_t> bytes(exhibit.begin(), exhibit.end());
    auto r = store_->IngestCasing(m, MakeScan(), bytes, {});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->casing_id : 0;
  }

  std::unique_ptr<RegistryDb> Scoped(std::int64_t agency, const std::string& name, ApiRole role) {
    Principal p;
    p.agency_id = agency;
    p.agency = name;
    p.role = role;
    p.holder = "tester";
    auto r = RegistryDb::ConnectScoped(db_.url(), p);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }

  FirearmRecord Glock(const std::string& serial) {
    FirearmRecord f;
    f.manufacturer = "Glock Ges.m.b.H.";
    f.make = "Glock";
    f.model = "19 Gen5";
    f.serial = serial;
    f.calibre = "9mm Luger";
    f.fp_shape = "rectangular";
    f.manufactured_on = "2023-02-01";
    return f;
  }

  testing::TestDatabase db_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RegistryDb> system_;
  std::int64_t state_ = 0, lab_ = 0;
};

TEST_F(RegistryStoreTest, PartyRefHmacIsKeyedAndChecked) {
  auto a = PartyRefHmac(kKey, "MD-LIC-000123");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size(), 64u);
  EXPECT_EQ(*a, *PartyRefHmac(kKey, "MD-LIC-000123"));
  EXPECT_NE(*a, *PartyRefHmac("another-key-of-16+bytes", "MD-LIC-000123"));
  EXPECT_EQ(PartyRefHmac("short", "x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PartyRefHmac(kKey, "").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RegistryStoreTest, FirearmSaleTraceAndVisibility) {
  auto msp = Scoped(state_, "MSP", ApiRole::kExaminer);
  ASSERT_TRUE(msp);
  auto id = msp->RegisterFirearm(state_, Glock("AB123"), "tech");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(msp->RegisterFirearm(state_, Glock("AB123"), "tech").status().code(), StatusCode::kAlreadyExists);
  FirearmRecord bad = Glock("X1");
  bad.fp_shape = "triangle";
  auto b = msp->RegisterFirearm(state_, bad, "tech");
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("triangle"), std::string::npos);
  bad = Glock("X2");
  bad.manufactured_on = "2023-13-01";
  EXPECT_EQ(msp->RegisterFirearm(state_, bad, "tech").status().code(), StatusCode::kInvalidArgument);

  const std::int64_t tf = Casing("MSP", "TF-1", CasingSource::kTestFire);
  ASSERT_TRUE(msp->LinkCasing(state_, tf, *id, "tech").ok());
  EXPECT_EQ(msp->LinkCasing(state_, tf, *id, "tech").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(*msp->FirearmOfCasing(tf), *id);

  TransferRecord sale;
  sale.firearm_id = *id;
  sale.kind = "dealer_sale";
  sale.dealer_licence = "MD-FFL-5551";
  sale.occurred_on = "2023-06-15";
  sale.party_ref_hmac = *PartyRefHmac(kKey, "MD-LIC-000123");
  sale.recorded_by = "dealer";
  ASSERT_TRUE(msp->RecordTransfer(state_, sale).ok());
  TransferRecord no_licence = sale;
  no_licence.dealer_licence = "";
  EXPECT_EQ(msp->RecordTransfer(state_, no_licence).status().code(), StatusCode::kInvalidArgument);

  auto t = msp->Trace(*id);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->firearm.serial, "AB123");
  EXPECT_EQ(t->firearm.agency, "MSP");
  ASSERT_EQ(t->transfers.size(), 1u);
  EXPECT_EQ(t->transfers[0].dealer_licence, "MD-FFL-5551");
  EXPECT_EQ(t->transfers[0].occurred_on, "2023-06-15");
  EXPECT_EQ(t->transfers[0].party_ref_hmac, sale.party_ref_hmac);
  EXPECT_EQ(t->casings, std::vector<std::int64_t>{tf});
  // The purchaser reference itself is nowhere in the database.
  EXPECT_EQ(testing::QueryInt(db_.url(), "SELECT count(*) FROM firearm_transfers WHERE party_ref_hmac LIKE "
                                         "'%MD-LIC%' OR dealer_licence LIKE '%MD-LIC%'"),
            0);

  // Row-level security: a lab that is not law enforcement sees nothing of the
  // state's registry; once marked law enforcement it does.
  auto lab = Scoped(lab_, "Private Lab", ApiRole::kExaminer);
  EXPECT_EQ(lab->GetFirearm(*id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(lab->Trace(*id).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(lab->FindFirearms("", "AB123")->empty());
  ASSERT_TRUE(system_->SetLawEnforcement("Private Lab", true).ok());
  EXPECT_TRUE(*system_->IsLawEnforcement(lab_));
  EXPECT_TRUE(lab->GetFirearm(*id).ok());
  EXPECT_EQ(system_->SetLawEnforcement("Nobody", true).code(), StatusCode::kNotFound);
  // Writing for another agency is refused by the WITH CHECK policy.
  EXPECT_FALSE(lab->RegisterFirearm(state_, Glock("ZZ9"), "x").ok());
}

TEST_F(RegistryStoreTest, MicrostampCodes) {
  auto msp = Scoped(state_, "MSP", ApiRole::kExaminer);
  auto a = msp->RegisterFirearm(state_, Glock("M1"), "m");
  auto b = msp->RegisterFirearm(state_, Glock("M2"), "m");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(msp->RegisterMicrostamp(state_, *a, "A1B2C3D4", "012301230123", "m").ok());
  EXPECT_EQ(msp->RegisterMicrostamp(state_, *b, "A1B2C3D4", "", "m").code(), StatusCode::kAlreadyExists);
  Status bad = msp->RegisterMicrostamp(state_, *b, "A1B2C3d4", "", "m");
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("'d'"), std::string::npos) << bad.message();
  ASSERT_TRUE(msp->RegisterMicrostamp(state_, *b, "A1B2C3D5", "", "m").ok());
  std::vector<std::tuple<std::int64_t, std::string, std::string>> rows;
  ASSERT_TRUE(msp->LoadMicrostamps([&](std::int64_t f, const std::string& fp, const std::string& bf) {
                    rows.emplace_back(f, fp, bf);
                    return Status::Ok();
                  }).ok());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(std::get<2>(rows[0]), "012301230123");
  EXPECT_EQ(std::get<2>(rows[1]), "");
  EXPECT_EQ(msp->MicrostampCount(), 2);
  auto lab = Scoped(lab_, "Private Lab", ApiRole::kExaminer);
  EXPECT_EQ(lab->MicrostampCount(), 0);
}

TEST_F(RegistryStoreTest, EventsJoinThroughAFirearm) {
  auto msp = Scoped(state_, "MSP", ApiRole::kExaminer);
  const std::int64_t c1 = Casing("MSP", "S-1", CasingSource::kCrimeScene);
  const std::int64_t c2 = Casing("MSP", "S-2", CasingSource::kCrimeScene);
  registry::Event e;
  e.incident_id = "CAD-1";
  e.occurred_at = "2024-03-01T23:10:00Z";
  e.lat = 39.2904;
  e.lon = -76.6122;
  e.place = "N Ave";
  e.case_number = "REG-1";
  auto e1 = msp->CreateEvent(state_, e, "x");
  ASSERT_TRUE(e1.ok()) << e1.status().ToString();
  e.incident_id = "CAD-2";
  e.case_number = "";
  e.lat = 39.30;
  auto e2 = msp->CreateEvent(state_, e, "x");
  ASSERT_TRUE(e2.ok());
  e.incident_id = "CAD-3";
  e.case_number = "NO-SUCH-CASE";
  EXPECT_EQ(msp->CreateEvent(state_, e, "x").status().code(), StatusCode::kNotFound);
  e.case_number = "";
  e.lat = 95;
  EXPECT_EQ(msp->CreateEvent(state_, e, "x").status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(msp->AddEventCasing(state_, *e1, c1).ok());
  ASSERT_TRUE(msp->AddEventCasing(state_, *e2, c2).ok());
  EXPECT_EQ(msp->AddEventCasing(state_, *e2, c1).code(), StatusCode::kAlreadyExists);
  auto gun = msp->RegisterFirearm(state_, Glock("EV1"), "x");
  ASSERT_TRUE(gun.ok());
  ASSERT_TRUE(msp->LinkCasing(state_, c1, *gun, "x").ok());
  ASSERT_TRUE(msp->LinkCasing(state_, c2, *gun, "x").ok());
  registry::EventGraph g;
  ASSERT_TRUE(msp->LoadEventGraph(&g).ok());
  auto path = g.ShortestPath(*e1, *e2);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  ASSERT_EQ(path->size(), 1u);
  EXPECT_EQ((*path)[0].kind, "firearm");
  EXPECT_EQ((*path)[0].ref_id, *gun);
  EXPECT_EQ(g.FindEvent(*e1)->case_number, "REG-1");
  // Events follow evidence scoping: even a law-enforcement lab sees none without a share.
  ASSERT_TRUE(system_->SetLawEnforcement("Private Lab", true).ok());
  registry::EventGraph other;
  auto lab = Scoped(lab_, "Private Lab", ApiRole::kExaminer);
  ASSERT_TRUE(lab->LoadEventGraph(&other).ok());
  EXPECT_TRUE(other.Connected({*e1}).empty());
}

}  // namespace
}  // namespace ballistics::store
