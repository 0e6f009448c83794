// Registry store against PostgreSQL: firearms, test-fire links, sales (HMAC'd
// purchaser reference), trace, microstamp codes, events, and row-level security
// (registry rows visible to the registering agency and to law-enforcement agencies).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <random>
#include <set>
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

// The service's index follows the registry through the change log (0050):
// a code registered after the first load is found at the next lookup without
// a reload; revoked and re-registered codes stop naming their firearm; the
// index equals a fresh full load at every step, also across compactions.
TEST_F(RegistryStoreTest, LiveMicrostampRegistryFollowsTheChangeLog) {
  auto msp = Scoped(state_, "MSP", ApiRole::kExaminer);
  auto lab = Scoped(lab_, "Private Lab", ApiRole::kExaminer);
  std::vector<std::int64_t> firearms;
  for (int i = 0; i < 40; ++i) {
    auto f = msp->RegisterFirearm(state_, Glock("L" + std::to_string(i)), "m");
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    firearms.push_back(*f);
  }
  auto code = [](int i) {
    char b[9];
    std::snprintf(b, sizeof b, "K%07d", i);
    return std::string(b);
  };
  auto gear = [](int i) {
    std::string g(12, '0');
    for (int k = 11; k >= 0; --k, i /= 4) g[static_cast<std::size_t>(k)] = static_cast<char>('0' + i % 4);
    return g;
  };
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(msp->RegisterMicrostamp(state_, firearms[static_cast<std::size_t>(i)], code(i), gear(i), "m").ok());
  }
  LiveMicrostampRegistry::Options o;
  o.max_delta = 6;
  o.background = true;
  LiveMicrostampRegistry live(db_.url(), o);
  auto v0 = live.Current();
  ASSERT_TRUE(v0.ok()) << v0.status().ToString();
  EXPECT_EQ((*v0)->size(), 20u);
  EXPECT_EQ(live.stats().full_loads, 1);
  EXPECT_EQ(live.stats().watermark, 20);

  const auto fp_read = [](const std::string& c) {
    return std::vector<registry::StampRead>{
        registry::StampRead::Parse(registry::StampLocation::kFiringPinTip, c, 0.9)};
  };
  // Registered after the first load: found by the very next lookup.
  ASSERT_TRUE(msp->RegisterMicrostamp(state_, firearms[20], code(20), gear(20), "m").ok());
  auto v1 = live.Current();
  ASSERT_TRUE(v1.ok());
  auto r = (*v1)->Lookup(fp_read(code(20)));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->candidates[0].firearm_id, firearms[20]);
  EXPECT_EQ(live.stats().full_loads, 1);
  EXPECT_EQ((*v1)->delta_size(), 1u);

  // Revoked: never returned again. Re-registered: the old code names nobody.
  EXPECT_EQ(lab->RevokeMicrostamp(lab_, firearms[3], "not ours", "x").code(), StatusCode::kNotFound);
  ASSERT_TRUE(msp->RevokeMicrostamp(state_, firearms[3], "stolen before stamping", "m").ok());
  ASSERT_TRUE(msp->ReplaceMicrostamp(state_, firearms[4], code(104), gear(4), "firing pin replaced", "m").ok());
  EXPECT_EQ(msp->ReplaceMicrostamp(state_, firearms[5], code(6), "", "x", "m").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(msp->ReplaceMicrostamp(state_, firearms[5], "k0000005", "", "x", "m").code(), StatusCode::kInvalidArgument);
  auto v2 = live.Current();
  ASSERT_TRUE(v2.ok());
  for (const auto& c : (*v2)->Lookup(fp_read(code(3)))->candidates) EXPECT_NE(c.firearm_id, firearms[3]);
  for (const auto& c : (*v2)->Lookup(fp_read(code(4)))->candidates) EXPECT_NE(c.codes[0], code(4));
  EXPECT_EQ(*(*v2)->FindExact(registry::StampLocation::kFiringPinTip, code(104)), firearms[4]);
  EXPECT_EQ((*v2)->FindExact(registry::StampLocation::kFiringPinTip, code(3)).status().code(), StatusCode::kNotFound);
  // The code of the revoked firearm goes to another one.
  ASSERT_TRUE(msp->RegisterMicrostamp(state_, firearms[30], code(3), "", "m").ok());

  // Random further changes; after each batch the live index answers like a fresh full load.
  std::mt19937_64 rng(9);
  std::set<int> with_codes;
  for (int i = 0; i < 21; ++i) with_codes.insert(i);
  with_codes.erase(3);
  with_codes.insert(30);
  int next_code = 200;
  for (int batch = 0; batch < 5; ++batch) {
    for (int j = 0; j < 4; ++j) {
      const int i = static_cast<int>(rng() % 40);
      if (!with_codes.count(i)) {
        ASSERT_TRUE(msp->RegisterMicrostamp(state_, firearms[static_cast<std::size_t>(i)], code(next_code),
                                            gear(next_code), "m").ok());
        with_codes.insert(i);
      } else if (rng() % 2) {
        ASSERT_TRUE(msp->RevokeMicrostamp(state_, firearms[static_cast<std::size_t>(i)], "r", "m").ok());
        with_codes.erase(i);
      } else {
        ASSERT_TRUE(msp->ReplaceMicrostamp(state_, firearms[static_cast<std::size_t>(i)], code(next_code), "",
                                           "r", "m").ok());
      }
      ++next_code;
    }
    auto now = live.Current();
    ASSERT_TRUE(now.ok()) << now.status().ToString();
    live.WaitForCompaction();
    LiveMicrostampRegistry fresh(db_.url());
    auto want = fresh.Current();
    ASSERT_TRUE(want.ok());
    ASSERT_EQ((*now)->size(), (*want)->size());
    for (int q = 0; q < 8; ++q) {
      std::string read = code(static_cast<int>(rng() % static_cast<unsigned>(next_code)));
      read[static_cast<std::size_t>(1 + rng() % 7)] = '?';
      auto a = (*now)->Lookup(fp_read(read));
      auto b = (*want)->Lookup(fp_read(read));
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->candidates.size(), b->candidates.size()) << read;
      for (std::size_t k = 0; k < a->candidates.size(); ++k) {
        EXPECT_EQ(a->candidates[k].firearm_id, b->candidates[k].firearm_id) << read;
        EXPECT_EQ(a->candidates[k].log_likelihood, b->candidates[k].log_likelihood) << read;
      }
      EXPECT_EQ(a->consistent_codes[0], b->consistent_codes[0]) << read;
    }
  }
  const auto st = live.stats();
  EXPECT_EQ(st.full_loads, 1);  // never reloaded: every change came through the log
  EXPECT_GE(st.compactions, 1);  // max_delta 6 was exceeded
  EXPECT_GT(st.changes_applied, 20);
  auto last = live.Current();
  ASSERT_TRUE(last.ok());
  EXPECT_EQ((*last)->size(), with_codes.size());
}

// The event graph walked in SQL answers like the in-memory graph loaded
// whole, on one random graph: connected events (and their links and GeoJSON)
// of every event, casing, firearm and case, and the shortest path between
// pairs of events (the same path, link for link).
TEST_F(RegistryStoreTest, EventGraphInSqlEqualsInMemoryGraph) {
  auto msp = Scoped(state_, "MSP", ApiRole::kExaminer);
  std::mt19937_64 rng(77);
  std::vector<std::int64_t> casings, events, guns;
  for (int i = 0; i < 70; ++i) {
    casings.push_back(Casing("MSP", "G-" + std::to_string(i), CasingSource::kCrimeScene));
  }
  auto api = ApiDb::ConnectSystem(db_.url());
  ASSERT_TRUE(api.ok());
  for (int i = 0; i < 40; ++i) {
    registry::Event e;
    e.incident_id = "CAD-G" + std::to_string(i);
    e.occurred_at = "2024-03-01T23:10:00Z";
    e.lat = 39.0 + 0.01 * i;
    e.lon = -76.0 - 0.01 * i;
    e.place = "block " + std::to_string(i);
    e.case_number = i % 7 == 0 ? "REG-1" : "";
    auto id = msp->CreateEvent(state_, e, "x");
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    events.push_back(*id);
  }
  // 50 of the 70 casings belong to events (some events own two); the rest are test fires or unassigned.
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(msp->AddEventCasing(state_, events[static_cast<std::size_t>(i % 40)], casings[static_cast<std::size_t>(i)]).ok());
  }
  for (int i = 0; i < 6; ++i) {
    auto g = msp->RegisterFirearm(state_, Glock("GR" + std::to_string(i)), "x");
    ASSERT_TRUE(g.ok());
    guns.push_back(*g);
    for (int k = 0; k < 2; ++k) {
      const std::int64_t c = casings[static_cast<std::size_t>(50 + (i * 3 + k) % 20)];
      Status st = msp->LinkCasing(state_, c, *g, "x");  // a casing links to one firearm only
      ASSERT_TRUE(st.ok() || st.code() == StatusCode::kAlreadyExists) << st.ToString();
    }
  }
  // Random confirmed hits; leads need a decision, which needs a search: the
  // fixture has none, so the rows go in with foreign-key triggers off.
  std::string sql = "SET session_replication_role = replica;";
  std::set<std::pair<std::int64_t, std::int64_t>> pairs;
  while (pairs.size() < 45) {
    std::int64_t a = casings[rng() % casings.size()], b = casings[rng() % casings.size()];
    if (a == b) continue;
    pairs.insert({std::min(a, b), std::max(a, b)});
  }
  for (const auto& [a, b] : pairs) {
    sql += "INSERT INTO leads (agency_id, casing_a, casing_b, decision_id) VALUES (" + std::to_string(state_) + ", " +
           std::to_string(a) + ", " + std::to_string(b) + ", 1);";
  }
  ASSERT_TRUE(testing::ExecSql(db_.url(), sql));

  registry::EventGraph g;
  ASSERT_TRUE(msp->LoadEventGraph(&g).ok());
  int multi = 0;
  for (std::int64_t e : events) {
    auto w = msp->ConnectedEvents({e});
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    const std::vector<std::int64_t> want = g.Connected({e});
    std::vector<std::int64_t> got;
    for (const auto& ev : w->events) got.push_back(ev.id);
    EXPECT_EQ(got, want) << "event " << e;
    EXPECT_FALSE(w->truncated);
    multi += want.size() > 2;
    std::vector<std::tuple<std::int64_t, std::int64_t, std::string, std::int64_t>> lw, lg;
    for (const auto& l : w->links) lw.emplace_back(l.event_a, l.event_b, l.kind, l.ref_id);
    for (const auto& l : g.Links()) {
      if (std::binary_search(want.begin(), want.end(), l.event_a)) lg.emplace_back(l.event_a, l.event_b, l.kind, l.ref_id);
    }
    EXPECT_EQ(lw, lg) << "event " << e;
    EXPECT_EQ(w->geojson, g.GeoJson(want)) << "event " << e;
  }
  EXPECT_GE(multi, 5) << "the random graph should have components of 3+ events";
  for (std::int64_t c : casings) EXPECT_EQ(*msp->EventsOfCasing(c), g.EventsOfCasing(c)) << "casing " << c;
  for (std::int64_t f : guns) EXPECT_EQ(*msp->EventsOfFirearm(f), g.EventsOfFirearm(f)) << "firearm " << f;
  EXPECT_EQ(*msp->EventsOfCase("MSP", "REG-1"), g.EventsOfCase("MSP", "REG-1"));
  EXPECT_EQ(msp->EventsOfCase("MSP", "REG-1")->size(), 6u);
  int paths = 0;
  for (int t = 0; t < 150; ++t) {
    const std::int64_t a = events[rng() % events.size()], b = events[rng() % events.size()];
    auto want = g.ShortestPath(a, b);
    auto got = msp->EventPath(a, b);
    ASSERT_EQ(got.status().code(), want.status().code()) << a << " -> " << b;
    if (!want.ok()) continue;
    ++paths;
    ASSERT_EQ(got->size(), want->size()) << a << " -> " << b;
    for (std::size_t i = 0; i < want->size(); ++i) {
      EXPECT_EQ((*got)[i].event_a, (*want)[i].event_a);
      EXPECT_EQ((*got)[i].event_b, (*want)[i].event_b);
      EXPECT_EQ((*got)[i].kind, (*want)[i].kind);
      EXPECT_EQ((*got)[i].ref_id, (*want)[i].ref_id);
    }
  }
  EXPECT_GE(paths, 10);
  // Depth bound: a walk of one level lists the start and its neighbours only.
  std::int64_t hub = events[0];
  std::size_t best = 0;
  for (std::int64_t e : events) {
    const std::size_t n = g.Connected({e}).size();
    if (n > best) best = n, hub = e;
  }
  auto one = msp->ConnectedEvents({hub}, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_LE(one->events.size(), best);
  EXPECT_EQ(msp->ConnectedEvents({hub}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(msp->EventPath(hub, 999999).status().code(), StatusCode::kNotFound);
  // Another agency sees none of it (events follow evidence scoping).
  auto lab = Scoped(lab_, "Private Lab", ApiRole::kExaminer);
  auto none = lab->ConnectedEvents({hub});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->events.empty());
}

// Measurement, not a check (disabled; run with --gtest_also_run_disabled_tests
// and BALLISTICS_MICROSTAMP_SCALE=N, default 1000000): what a lookup after a
// registration costs the service, the full reload it used to do against the
// poll of the change log. Results: /work/notes and docs/registry.md.
TEST_F(RegistryStoreTest, DISABLED_MeasureReloadAgainstPoll) {
  const char* env = std::getenv("BALLISTICS_MICROSTAMP_SCALE");
  const long n = env ? std::atol(env) : 1000000;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string agency = std::to_string(state_);
  ASSERT_TRUE(testing::ExecSql(db_.url(),
                               "INSERT INTO firearms (agency_id, manufacturer, make, model, serial, calibre, created_by) "
                               "SELECT " + agency + ", 'M', 'K', 'X', 'S' || i, '9mm', 'bulk' FROM generate_series(1, " +
                                   std::to_string(n) + ") i;"
                               "INSERT INTO microstamp_codes (firearm_id, agency_id, fp_code, created_by) "
                               "SELECT id, " + agency + ", 'F' || lpad(id::text, 7, '0'), 'bulk' FROM firearms;"));
  const auto t1 = std::chrono::steady_clock::now();
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  LiveMicrostampRegistry live(db_.url());
  auto v = live.Current();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  const auto t2 = std::chrono::steady_clock::now();
  auto msp = Scoped(state_, "MSP", ApiRole::kExaminer);
  auto f = msp->RegisterFirearm(state_, Glock("NEW-1"), "m");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(msp->RegisterMicrostamp(state_, *f, "ZZZZ0001", "", "m").ok());
  const auto t3 = std::chrono::steady_clock::now();
  auto w = live.Current();
  ASSERT_TRUE(w.ok());
  const auto t4 = std::chrono::steady_clock::now();
  auto r = (*w)->Lookup({registry::StampRead::Parse(registry::StampLocation::kFiringPinTip, "ZZZZ00?1", 0.9)});
  const auto t5 = std::chrono::steady_clock::now();
  auto idle = live.Current();  // nothing new: the poll alone
  ASSERT_TRUE(idle.ok());
  const double idle_ms = 1e3 * secs(t5, std::chrono::steady_clock::now());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->candidates[0].firearm_id, *f);
  std::printf("%ld codes in PostgreSQL (insert %.1f s): full load into the index %.2f s (%.0f MiB); "
              "after one registration: poll + apply %.2f ms, lookup %.2f ms; poll with nothing new %.2f ms; "
              "full loads %lld\n",
              n, secs(t0, t1), secs(t1, t2), (*v)->base().memory_bytes() / 1048576.0, 1e3 * secs(t3, t4),
              1e3 * secs(t4, t5), idle_ms, static_cast<long long>(live.stats().full_loads));
}

// Measurement, not a check (disabled; run with --gtest_also_run_disabled_tests
// and BALLISTICS_EVENT_SCALE=N, default 20000): one request's cost with the
// graph loaded whole (what the service did) against the SQL walk. N events of
// one casing each, chained by leads into components of 10 events.
TEST_F(RegistryStoreTest, DISABLED_MeasureEventGraphLoadAgainstSqlWalk) {
  const char* env = std::getenv("BALLISTICS_EVENT_SCALE");
  const long n = env ? std::atol(env) : 20000;
  ASSERT_GT(Casing("MSP", "seed", CasingSource::kCrimeScene), 0);
  const std::string agency = std::to_string(state_), ns = std::to_string(n);
  ASSERT_TRUE(testing::ExecSql(
      db_.url(),
      "INSERT INTO casings (agency_id, case_id, exhibit_id, calibre, source, submitted_by) SELECT " + agency +
          ", (SELECT case_id FROM casings LIMIT 1), 'B' || i, '9mm', 'crime_scene', 'bulk' FROM generate_series(1, " +
          ns + ") i ORDER BY i;"
          "INSERT INTO events (agency_id, incident_id, occurred_at, lat, lon, created_by) SELECT " + agency +
          ", 'BULK-' || i, now(), 39 + (i % 100) * 0.001, -76 - (i / 100) * 0.0001, 'bulk' "
          "FROM generate_series(1, " + ns + ") i;"
          "INSERT INTO event_casings (casing_id, event_id, agency_id) SELECT c.id, e.id, " + agency +
          " FROM casings c JOIN events e ON e.incident_id = 'BULK-' || substr(c.exhibit_id, 2) "
          "WHERE c.exhibit_id LIKE 'B%';"
          "SET session_replication_role = replica;"
          "INSERT INTO leads (agency_id, casing_a, casing_b, decision_id) SELECT " + agency +
          ", least(c1.id, c2.id), greatest(c1.id, c2.id), 1 FROM casings c1 JOIN casings c2 "
          "ON c2.exhibit_id = 'B' || (substr(c1.exhibit_id, 2)::int + 1) "
          "WHERE c1.exhibit_id LIKE 'B%' AND substr(c1.exhibit_id, 2)::int % 10 <> 0;"
          "ANALYZE;"));
  auto msp = Scoped(state_, "MSP", ApiRole::kExaminer);
  ASSERT_TRUE(msp->EventsOfCase("", "no-such-case").ok());  // connection warm
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  // A fresh database: event ids are 1..n in incident order; start in the middle.
  const std::int64_t start = n / 2 + 1;
  const auto t0 = std::chrono::steady_clock::now();
  registry::EventGraph g;
  ASSERT_TRUE(msp->LoadEventGraph(&g).ok());
  ASSERT_NE(g.FindEvent(start), nullptr);
  ASSERT_EQ(g.FindEvent(start)->incident_id, "BULK-" + std::to_string(start));
  const std::vector<std::int64_t> comp = g.Connected({start});
  const std::string geo = g.GeoJson(comp);
  const auto t1 = std::chrono::steady_clock::now();
  auto walk = msp->ConnectedEvents({start});
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(walk.ok());
  EXPECT_EQ(walk->events.size(), comp.size());
  EXPECT_EQ(walk->geojson, geo);
  const auto t3 = std::chrono::steady_clock::now();
  auto pm = g.ShortestPath(start, comp.back());
  const auto t4 = std::chrono::steady_clock::now();
  auto ps = msp->EventPath(start, comp.back());
  const auto t5 = std::chrono::steady_clock::now();
  ASSERT_TRUE(pm.ok() && ps.ok());
  EXPECT_EQ(pm->size(), ps->size());
  std::printf("%ld events (components of %zu): connected events + GeoJSON, graph loaded whole %.1f ms, SQL walk "
              "%.1f ms; path of %zu links: in memory (graph loaded) %.3f ms, SQL %.1f ms\n",
              n, comp.size(), 1e3 * secs(t0, t1), 1e3 * secs(t1, t2), ps->size(), 1e3 * secs(t3, t4),
              1e3 * secs(t4, t5));
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
