// Registry store (include/ballistics/registry_store.h). SQL for
// db/migrations/0020_registries.sql; row-level security does the scoping.
#include "ballistics/registry_store.h"

#include <openssl/hmac.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <set>
#include <tuple>
#include <cstdio>
#include <mutex>
#include <thread>

#include "pg.h"

namespace ballistics::store {

class RegistryDb::Impl {
 public:
  explicit Impl(std::unique_ptr<pg::Connection> c) : conn(std::move(c)) {}
  std::unique_ptr<pg::Connection> conn;

  // The recursive walks of the event graph are estimated at millions of rows
  // (PostgreSQL cannot know a lead component is small), which starts JIT
  // compilation: measured 1.2 s of LLVM per 5 ms query. Off for this
  // connection before the first walk.
  Status NoJit() {
    if (jit_off) return Status::Ok();
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, conn->Exec("jit off", "SET jit = off"));
    jit_off = true;
    return Status::Ok();
  }
  bool jit_off = false;
};

namespace {

Status NonEmpty(const std::string& what, const std::string& v) {
  if (v.find_first_not_of(" \t") == std::string::npos) return InvalidArgument(what + " is empty");
  if (v.size() > 200) return InvalidArgument(what + " '" + v.substr(0, 40) + "...' is longer than 200 characters");
  return Status::Ok();
}

// YYYY-MM-DD with plausible ranges (PostgreSQL checks the calendar).
Status IsDate(const std::string& what, const std::string& v) {
  int y = 0, m = 0, d = 0;
  char tail = 0;
  if (std::sscanf(v.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || v.size() != 10 || m < 1 || m > 12 ||
      d < 1 || d > 31 || y < 1800) {
    return InvalidArgument(what + " '" + v + "' is not a date YYYY-MM-DD");
  }
  return Status::Ok();
}

const char* kFirearmCols =
    "f.id, a.name, f.manufacturer, f.make, f.model, f.serial, f.calibre, f.fp_shape, "
    "to_char(f.manufactured_on, 'YYYY-MM-DD'), ";

FirearmRecord ReadFirearm(const pg::Result& r, int i) {
  FirearmRecord f;
  f.id = r.Int64(i, 0);
  f.agency = r.Text(i, 1);
  f.manufacturer = r.Text(i, 2);
  f.make = r.Text(i, 3);
  f.model = r.Text(i, 4);
  f.serial = r.Text(i, 5);
  f.calibre = r.Text(i, 6);
  f.fp_shape = r.Text(i, 7);
  if (!r.IsNull(i, 8)) f.manufactured_on = r.Text(i, 8);
  f.created_at = r.Text(i, 9);
  return f;
}

}  // namespace

StatusOr<std::string> PartyRefHmac(std::string_view key, std::string_view reference) {
  if (key.size() < 16) return InvalidArgument("purchaser HMAC key has " + std::to_string(key.size()) +
                                              " bytes; at least 16 are needed");
  if (reference.empty() || reference.size() > 200) {
    return InvalidArgument("purchaser reference must have 1..200 characters, not " + std::to_string(reference.size()));
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(reference.data()), reference.size(), out, &n)) {
    return Internal("HMAC-SHA256 failed");
  }
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned int i = 0; i < n; ++i) {
    s += d[out[i] >> 4];
    s += d[out[i] & 15];
  }
  return s;
}

RegistryDb::RegistryDb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegistryDb::~RegistryDb() = default;

StatusOr<std::unique_ptr<RegistryDb>> RegistryDb::ConnectSystem(const std::string& url) {
  BALLISTICS_ASSIGN_OR_RETURN(auto conn, pg::Connection::Open(url));
  return std::unique_ptr<RegistryDb>(new RegistryDb(std::make_unique<Impl>(std::move(conn))));
}

StatusOr<std::unique_ptr<RegistryDb>> RegistryDb::ConnectScoped(const std::string& url, const Principal& who) {
  BALLISTICS_ASSIGN_OR_RETURN(std::string scoped, ScopedUrl(url, who));
  BALLISTICS_ASSIGN_OR_RETURN(auto conn, pg::Connection::Open(scoped));
  return std::unique_ptr<RegistryDb>(new RegistryDb(std::make_unique<Impl>(std::move(conn))));
}

Status RegistryDb::SetLawEnforcement(const std::string& agency, bool law_enforcement) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("find agency", "SELECT id FROM agencies WHERE name = $1",
                                                               {pg::Param::Text(agency)}));
  if (r.rows() == 0) return NotFound("agency '" + agency + "' is unknown");
  const std::int64_t id = r.Int64(0, 0);
  if (law_enforcement) {
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result w, impl_->conn->Exec("mark law enforcement",
                                                                 "INSERT INTO law_enforcement_agencies (agency_id) "
                                                                 "VALUES ($1) ON CONFLICT DO NOTHING",
                                                                 {pg::Param::Int(id)}));
  } else {
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result w, impl_->conn->Exec("unmark law enforcement",
                                                                 "DELETE FROM law_enforcement_agencies WHERE agency_id = $1",
                                                                 {pg::Param::Int(id)}));
  }
  return Status::Ok();
}

StatusOr<bool> RegistryDb::IsLawEnforcement(std::int64_t agency_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("is law enforcement",
                                                               "SELECT 1 FROM law_enforcement_agencies WHERE agency_id = $1",
                                                               {pg::Param::Int(agency_id)}));
  return r.rows() > 0;
}

StatusOr<std::int64_t> RegistryDb::RegisterFirearm(std::int64_t agency_id, const FirearmRecord& f,
                                                   const std::string& by) {
  BALLISTICS_RETURN_IF_ERROR(NonEmpty("manufacturer", f.manufacturer));
  BALLISTICS_RETURN_IF_ERROR(NonEmpty("make", f.make));
  BALLISTICS_RETURN_IF_ERROR(NonEmpty("model", f.model));
  BALLISTICS_RETURN_IF_ERROR(NonEmpty("serial", f.serial));
  BALLISTICS_RETURN_IF_ERROR(NonEmpty("calibre", f.calibre));
  const std::string shape = f.fp_shape.empty() ? "unknown" : f.fp_shape;
  if (shape != "circular" && shape != "elliptical" && shape != "rectangular" && shape != "hemispherical" &&
      shape != "unknown") {
    return InvalidArgument("firing-pin shape '" + shape +
                           "' is not circular, elliptical, rectangular, hemispherical or unknown");
  }
  if (f.manufactured_on) BALLISTICS_RETURN_IF_ERROR(IsDate("manufactured_on", *f.manufactured_on));
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("register firearm",
                        "INSERT INTO firearms (agency_id, manufacturer, make, model, serial, calibre, fp_shape, "
                        "manufactured_on, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::date, $9) RETURNING id",
                        {pg::Param::Int(agency_id), pg::Param::Text(f.manufacturer), pg::Param::Text(f.make),
                         pg::Param::Text(f.model), pg::Param::Text(f.serial), pg::Param::Text(f.calibre),
                         pg::Param::Text(shape), pg::Param::Optional(f.manufactured_on), pg::Param::Text(by)}));
  return r.Int64(0, 0);
}

StatusOr<FirearmRecord> RegistryDb::GetFirearm(std::int64_t firearm_id) {
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("get firearm",
                                      std::string("SELECT ") + kFirearmCols + pg::IsoUtc("f.created_at") +
                                          " FROM firearms f JOIN agencies a ON a.id = f.agency_id WHERE f.id = $1",
                                      {pg::Param::Int(firearm_id)}));
  if (r.rows() == 0) return NotFound("firearm " + std::to_string(firearm_id) + " is unknown or not visible");
  return ReadFirearm(r, 0);
}

StatusOr<std::vector<FirearmRecord>> RegistryDb::FindFirearms(const std::string& manufacturer,
                                                              const std::string& serial) {
  BALLISTICS_RETURN_IF_ERROR(NonEmpty("serial", serial));
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("find firearms",
                        std::string("SELECT ") + kFirearmCols + pg::IsoUtc("f.created_at") +
                            " FROM firearms f JOIN agencies a ON a.id = f.agency_id WHERE f.serial = $1 "
                            "AND ($2 = '' OR f.manufacturer = $2) ORDER BY f.id",
                        {pg::Param::Text(serial), pg::Param::Text(manufacturer)}));
  std::vector<FirearmRecord> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(ReadFirearm(r, i));
  return out;
}

Status RegistryDb::LinkCasing(std::int64_t agency_id, std::int64_t casing_id, std::int64_t firearm_id,
                              const std::string& by) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result c, impl_->conn->Exec("find casing", "SELECT 1 FROM casings WHERE id = $1",
                                                               {pg::Param::Int(casing_id)}));
  if (c.rows() == 0) return NotFound("casing " + std::to_string(casing_id) + " is unknown or not visible");
  BALLISTICS_RETURN_IF_ERROR(GetFirearm(firearm_id).status());
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("link casing to firearm",
                                      "INSERT INTO firearm_casings (casing_id, firearm_id, agency_id, linked_by) "
                                      "VALUES ($1, $2, $3, $4)",
                                      {pg::Param::Int(casing_id), pg::Param::Int(firearm_id), pg::Param::Int(agency_id),
                                       pg::Param::Text(by)}));
  return Status::Ok();
}

StatusOr<std::int64_t> RegistryDb::FirearmOfCasing(std::int64_t casing_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("firearm of casing",
                                                               "SELECT firearm_id FROM firearm_casings WHERE casing_id = $1",
                                                               {pg::Param::Int(casing_id)}));
  if (r.rows() == 0) return NotFound("casing " + std::to_string(casing_id) + " is not linked to a registered firearm");
  return r.Int64(0, 0);
}

StatusOr<std::int64_t> RegistryDb::RecordTransfer(std::int64_t agency_id, const TransferRecord& t) {
  static const char* kKinds[] = {"dealer_sale", "private_transfer", "dealer_transfer", "seizure", "return"};
  bool known = false;
  for (const char* k : kKinds) known = known || t.kind == k;
  if (!known) {
    return InvalidArgument("transfer kind '" + t.kind +
                           "' is not dealer_sale, private_transfer, dealer_transfer, seizure or return");
  }
  if (t.kind == "dealer_sale") BALLISTICS_RETURN_IF_ERROR(NonEmpty("dealer licence", t.dealer_licence));
  BALLISTICS_RETURN_IF_ERROR(IsDate("transfer date", t.occurred_on));
  if (t.party_ref_hmac.size() != 64) return InvalidArgument("party reference HMAC is not 64 hex characters");
  BALLISTICS_RETURN_IF_ERROR(GetFirearm(t.firearm_id).status());
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("record transfer",
                        "INSERT INTO firearm_transfers (firearm_id, agency_id, kind, dealer_licence, occurred_on, "
                        "party_ref_hmac, recorded_by) VALUES ($1, $2, $3::firearm_transfer_kind, $4, $5::date, $6, $7) "
                        "RETURNING id",
                        {pg::Param::Int(t.firearm_id), pg::Param::Int(agency_id), pg::Param::Text(t.kind),
                         pg::Param::Text(t.dealer_licence), pg::Param::Text(t.occurred_on),
                         pg::Param::Text(t.party_ref_hmac), pg::Param::Text(t.recorded_by)}));
  return r.Int64(0, 0);
}

StatusOr<TraceRecord> RegistryDb::Trace(std::int64_t firearm_id) {
  TraceRecord t;
  BALLISTICS_ASSIGN_OR_RETURN(t.firearm, GetFirearm(firearm_id));
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("transfers of firearm",
                                      "SELECT id, firearm_id, kind::text, dealer_licence, to_char(occurred_on, "
                                      "'YYYY-MM-DD'), party_ref_hmac, recorded_by FROM firearm_transfers "
                                      "WHERE firearm_id = $1 ORDER BY occurred_on, id",
                                      {pg::Param::Int(firearm_id)}));
  for (int i = 0; i < r.rows(); ++i) {
    t.transfers.push_back({r.Int64(i, 0), r.Int64(i, 1), r.Text(i, 2), r.Text(i, 3), r.Text(i, 4), r.Text(i, 5),
                           r.Text(i, 6)});
  }
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result c, impl_->conn->Exec("casings of firearm",
                                                               "SELECT casing_id FROM firearm_casings WHERE "
                                                               "firearm_id = $1 ORDER BY casing_id",
                                                               {pg::Param::Int(firearm_id)}));
  for (int i = 0; i < c.rows(); ++i) t.casings.push_back(c.Int64(i, 0));
  return t;
}

Status RegistryDb::RegisterMicrostamp(std::int64_t agency_id, std::int64_t firearm_id, const std::string& fp_code,
                                      const std::string& bf_code, const std::string& by) {
  if (fp_code.empty() && bf_code.empty()) return InvalidArgument("no microstamp code given (fp tip or breech face)");
  // Validate against the domain alphabets so the error names the character.
  registry::MicrostampIndex probe;
  BALLISTICS_RETURN_IF_ERROR(probe.Add(firearm_id, fp_code, bf_code));
  BALLISTICS_RETURN_IF_ERROR(GetFirearm(firearm_id).status());
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("register microstamp",
                                      "INSERT INTO microstamp_codes (firearm_id, agency_id, fp_code, bf_code, created_by) "
                                      "VALUES ($1, $2, nullif($3, ''), nullif($4, ''), $5)",
                                      {pg::Param::Int(firearm_id), pg::Param::Int(agency_id), pg::Param::Text(fp_code),
                                       pg::Param::Text(bf_code), pg::Param::Text(by)}));
  return Status::Ok();
}

Status RegistryDb::LoadMicrostamps(
    const std::function<Status(std::int64_t, const std::string&, const std::string&)>& sink) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("load microstamps",
                                                               "SELECT firearm_id, coalesce(fp_code, ''), "
                                                               "coalesce(bf_code, '') FROM microstamp_codes ORDER BY "
                                                               "firearm_id"));
  for (int i = 0; i < r.rows(); ++i) BALLISTICS_RETURN_IF_ERROR(sink(r.Int64(i, 0), r.Text(i, 1), r.Text(i, 2)));
  return Status::Ok();
}

namespace {
// The firearm's codes as this connection sees them, registered by `agency_id`.
Status OwnCodesExist(pg::Connection& c, std::int64_t agency_id, std::int64_t firearm_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, c.Exec("find microstamp codes",
                                                   "SELECT 1 FROM microstamp_codes WHERE firearm_id = $1 AND "
                                                   "agency_id = $2",
                                                   {pg::Param::Int(firearm_id), pg::Param::Int(agency_id)}));
  if (r.rows() == 0) {
    return NotFound("firearm " + std::to_string(firearm_id) + " has no microstamp codes registered by this agency");
  }
  return Status::Ok();
}
}  // namespace

Status RegistryDb::ReplaceMicrostamp(std::int64_t agency_id, std::int64_t firearm_id, const std::string& fp_code,
                                     const std::string& bf_code, const std::string& reason, const std::string& by) {
  if (fp_code.empty() && bf_code.empty()) return InvalidArgument("no microstamp code given (fp tip or breech face)");
  registry::MicrostampIndex probe;
  BALLISTICS_RETURN_IF_ERROR(probe.Add(firearm_id, fp_code, bf_code));
  if (reason.size() > 200) return InvalidArgument("reason is longer than 200 characters");
  BALLISTICS_RETURN_IF_ERROR(OwnCodesExist(*impl_->conn, agency_id, firearm_id));
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("re-register microstamp",
                                      "INSERT INTO microstamp_changes (firearm_id, agency_id, kind, fp_code, bf_code, "
                                      "reason, created_by) VALUES ($1, $2, 'replace', nullif($3, ''), nullif($4, ''), "
                                      "$5, $6)",
                                      {pg::Param::Int(firearm_id), pg::Param::Int(agency_id), pg::Param::Text(fp_code),
                                       pg::Param::Text(bf_code), pg::Param::Text(reason), pg::Param::Text(by)}));
  return Status::Ok();
}

Status RegistryDb::RevokeMicrostamp(std::int64_t agency_id, std::int64_t firearm_id, const std::string& reason,
                                    const std::string& by) {
  if (reason.size() > 200) return InvalidArgument("reason is longer than 200 characters");
  BALLISTICS_RETURN_IF_ERROR(OwnCodesExist(*impl_->conn, agency_id, firearm_id));
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("revoke microstamp",
                                      "INSERT INTO microstamp_changes (firearm_id, agency_id, kind, reason, created_by) "
                                      "VALUES ($1, $2, 'revoke', $3, $4)",
                                      {pg::Param::Int(firearm_id), pg::Param::Int(agency_id), pg::Param::Text(reason),
                                       pg::Param::Text(by)}));
  return Status::Ok();
}

StatusOr<std::int64_t> RegistryDb::LoadMicrostampSnapshot(
    const std::function<Status(std::int64_t, const std::string&, const std::string&)>& sink) {
  // One statement, one snapshot: the codes and the last change they include.
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r, impl_->conn->Exec("load microstamps with watermark",
                                      "SELECT w.seq, c.firearm_id, coalesce(c.fp_code, ''), coalesce(c.bf_code, '') "
                                      "FROM (SELECT coalesce(max(seq), 0) AS seq FROM microstamp_changes) w "
                                      "LEFT JOIN microstamp_codes c ON true ORDER BY c.firearm_id"));
  std::int64_t watermark = 0;
  for (int i = 0; i < r.rows(); ++i) {
    watermark = r.Int64(i, 0);
    if (r.IsNull(i, 1)) continue;  // no codes at all
    BALLISTICS_RETURN_IF_ERROR(sink(r.Int64(i, 1), r.Text(i, 2), r.Text(i, 3)));
  }
  return watermark;
}

StatusOr<std::int64_t> RegistryDb::LoadMicrostampChanges(
    std::int64_t after_seq, const std::function<Status(const registry::MicrostampChange&)>& sink) {
  // In pages, ordered and limited: the plan is then an index range scan on the
  // primary key whatever the statistics say (right after a bulk registration,
  // before ANALYZE, the unlimited query seq-scanned 1 M rows: 80 ms a poll).
  constexpr int kPage = 10000;
  std::int64_t watermark = after_seq;
  for (;;) {
    BALLISTICS_ASSIGN_OR_RETURN(
        pg::Result r, impl_->conn->Exec("load microstamp changes",
                                        "SELECT seq, firearm_id, kind, coalesce(fp_code, ''), coalesce(bf_code, '') "
                                        "FROM microstamp_changes WHERE seq > $1 ORDER BY seq LIMIT " +
                                            std::to_string(kPage),
                                        {pg::Param::Int(watermark)}));
    for (int i = 0; i < r.rows(); ++i) {
      registry::MicrostampChange c;
      c.firearm_id = r.Int64(i, 1);
      c.revoked = r.Text(i, 2) == "revoke";
      c.fp_code = r.Text(i, 3);
      c.bf_code = r.Text(i, 4);
      BALLISTICS_RETURN_IF_ERROR(sink(c));
      watermark = r.Int64(i, 0);
    }
    if (r.rows() < kPage) return watermark;
  }
}

std::int64_t RegistryDb::MicrostampCount() {
  auto r = impl_->conn->Exec("count microstamps", "SELECT count(*) FROM microstamp_codes");
  return r.ok() ? r->Int64(0, 0) : -1;
}

StatusOr<std::int64_t> RegistryDb::CreateEvent(std::int64_t agency_id, const registry::Event& e, const std::string& by) {
  BALLISTICS_RETURN_IF_ERROR(NonEmpty("incident id", e.incident_id));
  if (!(e.lat >= -90 && e.lat <= 90)) return InvalidArgument("latitude " + std::to_string(e.lat) + " is not in [-90, 90]");
  if (!(e.lon >= -180 && e.lon <= 180)) {
    return InvalidArgument("longitude " + std::to_string(e.lon) + " is not in [-180, 180]");
  }
  if (e.occurred_at.empty()) return InvalidArgument("event time is empty");
  std::optional<std::int64_t> case_id;
  if (!e.case_number.empty()) {
    BALLISTICS_ASSIGN_OR_RETURN(pg::Result c, impl_->conn->Exec("find case",
                                                                 "SELECT id FROM cases WHERE agency_id = $1 AND "
                                                                 "case_number = $2",
                                                                 {pg::Param::Int(agency_id), pg::Param::Text(e.case_number)}));
    if (c.rows() == 0) return NotFound("case '" + e.case_number + "' is unknown to the caller's agency");
    case_id = c.Int64(0, 0);
  }
  BALLISTICS_ASSIGN_OR_RETURN(
      pg::Result r,
      impl_->conn->Exec("create event",
                        "INSERT INTO events (agency_id, incident_id, case_id, occurred_at, lat, lon, place, created_by) "
                        "VALUES ($1, $2, $3, $4::timestamptz, $5, $6, $7, $8) RETURNING id",
                        {pg::Param::Int(agency_id), pg::Param::Text(e.incident_id), pg::Param::Optional(case_id),
                         pg::Param::Text(e.occurred_at), pg::Param::Double(e.lat), pg::Param::Double(e.lon),
                         pg::Param::Text(e.place), pg::Param::Text(by)}));
  return r.Int64(0, 0);
}

Status RegistryDb::AddEventCasing(std::int64_t agency_id, std::int64_t event_id, std::int64_t casing_id) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result e, impl_->conn->Exec("find event", "SELECT 1 FROM events WHERE id = $1",
                                                               {pg::Param::Int(event_id)}));
  if (e.rows() == 0) return NotFound("event " + std::to_string(event_id) + " is unknown or not visible");
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result c, impl_->conn->Exec("find casing", "SELECT 1 FROM casings WHERE id = $1",
                                                               {pg::Param::Int(casing_id)}));
  if (c.rows() == 0) return NotFound("casing " + std::to_string(casing_id) + " is unknown or not visible");
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, impl_->conn->Exec("add casing to event",
                                                               "INSERT INTO event_casings (casing_id, event_id, agency_id) "
                                                               "VALUES ($1, $2, $3)",
                                                               {pg::Param::Int(casing_id), pg::Param::Int(event_id),
                                                                pg::Param::Int(agency_id)}));
  return Status::Ok();
}

namespace {

const std::string kEventCols = "SELECT e.id, e.incident_id, " + pg::IsoUtc("e.occurred_at") +
                               ", e.lat, e.lon, e.place, coalesce(k.case_number, ''), a.name FROM events e "
                               "JOIN agencies a ON a.id = e.agency_id LEFT JOIN cases k ON k.id = e.case_id ";

registry::Event ReadEvent(const pg::Result& ev, int i) {
  registry::Event e;
  e.id = ev.Int64(i, 0);
  e.incident_id = ev.Text(i, 1);
  e.occurred_at = ev.Text(i, 2);
  e.lat = ev.Double(i, 3);
  e.lon = ev.Double(i, 4);
  e.place = ev.Text(i, 5);
  e.case_number = ev.Text(i, 6);
  e.agency = ev.Text(i, 7);
  return e;
}

}  // namespace

Status RegistryDb::LoadEventGraph(registry::EventGraph* g) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result ev, impl_->conn->Exec("load events", kEventCols + "ORDER BY e.id"));
  for (int i = 0; i < ev.rows(); ++i) BALLISTICS_RETURN_IF_ERROR(g->AddEvent(ReadEvent(ev, i)));
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result ec, impl_->conn->Exec("load event casings",
                                                                "SELECT event_id, casing_id FROM event_casings"));
  for (int i = 0; i < ec.rows(); ++i) BALLISTICS_RETURN_IF_ERROR(g->AddCasing(ec.Int64(i, 0), ec.Int64(i, 1)));
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result l, impl_->conn->Exec("load leads", "SELECT id, casing_a, casing_b FROM leads"));
  for (int i = 0; i < l.rows(); ++i) g->AddLead(l.Int64(i, 0), l.Int64(i, 1), l.Int64(i, 2));
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result fc, impl_->conn->Exec("load firearm casings",
                                                                "SELECT firearm_id, casing_id FROM firearm_casings"));
  for (int i = 0; i < fc.rows(); ++i) g->AddFirearmCasing(fc.Int64(i, 0), fc.Int64(i, 1));
  return Status::Ok();
}

// ------------------------------------------------------------ event graph in SQL

namespace {

std::string IdArray(const std::vector<std::int64_t>& ids) {
  std::string s = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "}";
}

// Casings joined to a casing by a lead, either way round (leads store casing_a < casing_b).
constexpr const char* kLeadNeighbours =
    "CROSS JOIN LATERAL (SELECT l.casing_b AS n FROM leads l WHERE l.casing_a = c.casing_id "
    "UNION ALL SELECT l.casing_a FROM leads l WHERE l.casing_b = c.casing_id) x";

// Every link of the events in $1 (as event_id, other event, kind, ref). A lead
// joins the events of its two casings; a firearm joins every event owning one
// of its casings, a casing being the firearm's when linked to it or joined to
// one of its casings by leads, transitively (EventGraph::FirearmCasingsThroughLeads).
const std::string kLevelSql =
    std::string("WITH RECURSIVE "
                "fcas AS (SELECT ec.event_id, ec.casing_id FROM event_casings ec "
                "         WHERE ec.event_id = ANY($1::bigint[])), "
                "comp(event_id, casing_id) AS ("
                "  SELECT event_id, casing_id FROM fcas "
                "  UNION SELECT c.event_id, x.n FROM comp c ") +
    kLeadNeighbours +
    "), "
    "fir AS (SELECT DISTINCT c.event_id, fc.firearm_id FROM comp c "
    "        JOIN firearm_casings fc ON fc.casing_id = c.casing_id), "
    "fcomp(firearm_id, casing_id) AS ("
    "  SELECT fc.firearm_id, fc.casing_id FROM firearm_casings fc "
    "  WHERE fc.firearm_id IN (SELECT firearm_id FROM fir) "
    "  UNION SELECT c.firearm_id, x.n FROM fcomp c " +
    kLeadNeighbours +
    ") "
    "SELECT f.event_id, ec.event_id, 'lead', l.id FROM fcas f JOIN leads l ON l.casing_a = f.casing_id "
    "  JOIN event_casings ec ON ec.casing_id = l.casing_b JOIN events e ON e.id = ec.event_id "
    "  WHERE ec.event_id <> f.event_id "
    "UNION SELECT f.event_id, ec.event_id, 'lead', l.id FROM fcas f JOIN leads l ON l.casing_b = f.casing_id "
    "  JOIN event_casings ec ON ec.casing_id = l.casing_a JOIN events e ON e.id = ec.event_id "
    "  WHERE ec.event_id <> f.event_id "
    "UNION SELECT fi.event_id, ec.event_id, 'firearm', fi.firearm_id FROM fir fi "
    "  JOIN fcomp c ON c.firearm_id = fi.firearm_id JOIN event_casings ec ON ec.casing_id = c.casing_id "
    "  JOIN events e ON e.id = ec.event_id WHERE ec.event_id <> fi.event_id";

// The links of each frontier event, normalized (event_a < event_b) and in
// EventLinkBefore order: the order EventGraph's breadth-first search expands them.
StatusOr<std::map<std::int64_t, std::vector<registry::EventLink>>> LinksOfLevel(
    pg::Connection& c, const std::vector<std::int64_t>& frontier) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r,
                              c.Exec("event links of a level", kLevelSql, {pg::Param::Text(IdArray(frontier))}));
  std::map<std::int64_t, std::vector<registry::EventLink>> out;
  for (int i = 0; i < r.rows(); ++i) {
    registry::EventLink l;
    const std::int64_t from = r.Int64(i, 0), to = r.Int64(i, 1);
    l.event_a = std::min(from, to);
    l.event_b = std::max(from, to);
    l.kind = r.Text(i, 2);
    l.ref_id = r.Int64(i, 3);
    out[from].push_back(std::move(l));
  }
  for (auto& [e, links] : out) std::sort(links.begin(), links.end(), registry::EventLinkBefore);
  return out;
}

StatusOr<std::vector<std::int64_t>> Ids(pg::Connection& c, std::string_view what, const std::string& sql,
                                        const std::vector<pg::Param>& params) {
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result r, c.Exec(what, sql, params));
  std::vector<std::int64_t> v;
  for (int i = 0; i < r.rows(); ++i) v.push_back(r.Int64(i, 0));
  return v;
}

}  // namespace

StatusOr<std::vector<std::int64_t>> RegistryDb::EventsOfCasing(std::int64_t casing_id) {
  return Ids(*impl_->conn, "events of casing",
             "SELECT ec.event_id FROM event_casings ec JOIN events e ON e.id = ec.event_id "
             "WHERE ec.casing_id = $1 ORDER BY 1",
             {pg::Param::Int(casing_id)});
}

StatusOr<std::vector<std::int64_t>> RegistryDb::EventsOfFirearm(std::int64_t firearm_id) {
  BALLISTICS_RETURN_IF_ERROR(impl_->NoJit());
  return Ids(*impl_->conn, "events of firearm",
             std::string("WITH RECURSIVE comp(casing_id) AS (SELECT casing_id FROM firearm_casings WHERE "
                         "firearm_id = $1 UNION SELECT x.n FROM comp c ") +
                 kLeadNeighbours +
                 ") SELECT DISTINCT ec.event_id FROM comp c JOIN event_casings ec ON ec.casing_id = c.casing_id "
                 "JOIN events e ON e.id = ec.event_id ORDER BY 1",
             {pg::Param::Int(firearm_id)});
}

StatusOr<std::vector<std::int64_t>> RegistryDb::EventsOfCase(const std::string& agency, const std::string& case_number) {
  return Ids(*impl_->conn, "events of case",
             "SELECT e.id FROM events e JOIN agencies a ON a.id = e.agency_id JOIN cases k ON k.id = e.case_id "
             "WHERE k.case_number = $2 AND ($1 = '' OR a.name = $1) ORDER BY e.id",
             {pg::Param::Text(agency), pg::Param::Text(case_number)});
}

StatusOr<RegistryDb::EventWalk> RegistryDb::ConnectedEvents(const std::vector<std::int64_t>& start, int max_depth) {
  BALLISTICS_RETURN_IF_ERROR(impl_->NoJit());
  if (max_depth < 1) return InvalidArgument("event walk depth " + std::to_string(max_depth) + " is below 1");
  pg::Connection& c = *impl_->conn;
  BALLISTICS_ASSIGN_OR_RETURN(std::vector<std::int64_t> visible,
                              Ids(c, "visible events", "SELECT id FROM events WHERE id = ANY($1::bigint[])",
                                  {pg::Param::Text(IdArray(start))}));
  std::set<std::int64_t> seen;
  std::vector<std::int64_t> frontier;
  for (std::int64_t id : start) {
    if (std::binary_search(visible.begin(), visible.end(), id) && seen.insert(id).second) frontier.push_back(id);
  }
  EventWalk walk;
  std::set<std::tuple<bool, std::int64_t, std::int64_t, std::string, std::int64_t>> links;
  for (int depth = 0; !frontier.empty(); ++depth) {
    if (depth == max_depth) {
      walk.truncated = true;
      break;
    }
    BALLISTICS_ASSIGN_OR_RETURN(auto level, LinksOfLevel(c, frontier));
    std::vector<std::int64_t> next;
    for (std::int64_t e : frontier) {
      for (const registry::EventLink& l : level[e]) {
        links.insert({l.kind != "lead", l.event_a, l.event_b, l.kind, l.ref_id});
        const std::int64_t other = l.event_a == e ? l.event_b : l.event_a;
        if (seen.insert(other).second) next.push_back(other);
      }
    }
    frontier = std::move(next);
  }
  const std::vector<std::int64_t> ids(seen.begin(), seen.end());
  BALLISTICS_ASSIGN_OR_RETURN(pg::Result ev, c.Exec("events by id", kEventCols + "WHERE e.id = ANY($1::bigint[]) ORDER BY e.id",
                                                   {pg::Param::Text(IdArray(ids))}));
  for (int i = 0; i < ev.rows(); ++i) walk.events.push_back(ReadEvent(ev, i));
  for (const auto& [not_lead, a, b, kind, ref] : links) {
    // Truncated walks keep only links between listed events.
    if (walk.truncated && (!seen.count(a) || !seen.count(b))) continue;
    walk.links.push_back({a, b, kind, ref});
  }
  walk.geojson = registry::EventsGeoJson(walk.events, walk.links);
  return walk;
}

StatusOr<std::vector<registry::EventLink>> RegistryDb::EventPath(std::int64_t a, std::int64_t b, int max_depth) {
  BALLISTICS_RETURN_IF_ERROR(impl_->NoJit());
  if (max_depth < 1) return InvalidArgument("event walk depth " + std::to_string(max_depth) + " is below 1");
  pg::Connection& c = *impl_->conn;
  BALLISTICS_ASSIGN_OR_RETURN(std::vector<std::int64_t> visible,
                              Ids(c, "visible events", "SELECT id FROM events WHERE id = ANY($1::bigint[])",
                                  {pg::Param::Text(IdArray({a, b}))}));
  for (std::int64_t id : {a, b}) {
    if (!std::binary_search(visible.begin(), visible.end(), id)) {
      return NotFound("event " + std::to_string(id) + " is unknown");
    }
  }
  if (a == b) return std::vector<registry::EventLink>{};
  // via[e]: the link that first reached e (breadth-first, links in EventLinkBefore order).
  std::map<std::int64_t, registry::EventLink> via;
  std::set<std::int64_t> seen{a};
  std::vector<std::int64_t> frontier{a};
  bool found = false;
  for (int depth = 0; depth < max_depth && !frontier.empty() && !found; ++depth) {
    BALLISTICS_ASSIGN_OR_RETURN(auto level, LinksOfLevel(c, frontier));
    std::vector<std::int64_t> next;
    for (std::size_t i = 0; i < frontier.size() && !found; ++i) {
      const std::int64_t e = frontier[i];
      for (const registry::EventLink& l : level[e]) {
        const std::int64_t other = l.event_a == e ? l.event_b : l.event_a;
        if (!seen.insert(other).second) continue;
        registry::EventLink oriented = l;
        oriented.event_a = e;
        oriented.event_b = other;
        via[other] = oriented;
        next.push_back(other);
        if (other == b) {
          found = true;
          break;
        }
      }
    }
    frontier = std::move(next);
  }
  if (!found) {
    return NotFound("no chain of at most " + std::to_string(max_depth) + " links joins event " + std::to_string(a) +
                    " to event " + std::to_string(b));
  }
  std::vector<registry::EventLink> path;
  for (std::int64_t e = b; e != a; e = via[e].event_a) path.push_back(via[e]);
  std::reverse(path.begin(), path.end());
  return path;
}

// ------------------------------------------------------------ live microstamp registry

class LiveMicrostampRegistry::State {
 public:
  State(std::string url, Options o) : url(std::move(url)), options(o) {}
  const std::string url;
  const Options options;

  mutable std::mutex mu;  // everything below; held across a poll (one connection)
  std::condition_variable compaction_done;
  std::unique_ptr<RegistryDb> db;
  std::shared_ptr<const registry::LiveMicrostampIndex> current;
  std::int64_t watermark = 0;
  Stats stats;
  bool compacting = false;
  std::vector<registry::MicrostampChange> since_compaction;  // applied while a compaction runs
  std::int64_t generation = 0;                                // full loads so far
  std::thread worker;

  Status FullLoad() {
    auto base = std::make_shared<registry::MicrostampIndex>();
    BALLISTICS_ASSIGN_OR_RETURN(std::int64_t w, db->LoadMicrostampSnapshot([&](std::int64_t f, const std::string& fp,
                                                                               const std::string& bf) {
      return base->Add(f, fp, bf);
    }));
    BALLISTICS_RETURN_IF_ERROR(base->Build());
    BALLISTICS_ASSIGN_OR_RETURN(current, registry::LiveMicrostampIndex::FromBase(std::move(base)));
    watermark = w;
    ++stats.full_loads;
    ++generation;  // a compaction started before this load must not replace it
    return Status::Ok();
  }

  Status Poll() {
    std::vector<registry::MicrostampChange> changes;
    BALLISTICS_ASSIGN_OR_RETURN(std::int64_t w, db->LoadMicrostampChanges(watermark, [&](const registry::MicrostampChange& c) {
      changes.push_back(c);
      return Status::Ok();
    }));
    ++stats.polls;
    if (changes.empty()) return Status::Ok();
    auto next = current->Apply(changes);
    if (!next.ok()) {
      // The log and the index disagree (cannot happen with one writer path);
      // start over from the tables rather than serve a wrong index.
      return FullLoad();
    }
    current = *next;
    watermark = w;
    stats.changes_applied += static_cast<std::int64_t>(changes.size());
    if (compacting) since_compaction.insert(since_compaction.end(), changes.begin(), changes.end());
    return Status::Ok();
  }

  // Called with mu held by the caller through `lock`.
  void MaybeCompact(std::unique_lock<std::mutex>& lock) {
    if (compacting || current->delta_size() <= options.max_delta) return;
    compacting = true;
    since_compaction.clear();
    std::shared_ptr<const registry::LiveMicrostampIndex> snapshot = current;
    const std::int64_t started_in = generation;
    auto job = [this, snapshot, started_in] {
      auto merged = snapshot->Compact();  // the slow part, without the lock
      std::lock_guard<std::mutex> l(mu);
      if (merged.ok() && generation == started_in) {
        auto caught_up = (*merged)->Apply(since_compaction);
        if (caught_up.ok()) {
          current = *caught_up;
          ++stats.compactions;
        }
      }
      since_compaction.clear();
      compacting = false;
      compaction_done.notify_all();
    };
    if (!options.background) {
      lock.unlock();
      job();
      lock.lock();
      return;
    }
    if (worker.joinable()) worker.join();  // the previous one has finished (compacting was false)
    worker = std::thread(job);
  }
};

LiveMicrostampRegistry::LiveMicrostampRegistry(std::string system_url, Options options)
    : state_(std::make_unique<State>(std::move(system_url), options)) {}

LiveMicrostampRegistry::~LiveMicrostampRegistry() {
  WaitForCompaction();
  if (state_->worker.joinable()) state_->worker.join();
}

StatusOr<std::shared_ptr<const registry::LiveMicrostampIndex>> LiveMicrostampRegistry::Current() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mu);
  if (!s.db) {
    auto db = RegistryDb::ConnectSystem(s.url);
    if (!db.ok()) return db.status();
    s.db = std::move(*db);
  }
  Status st = s.current ? s.Poll() : s.FullLoad();
  if (!st.ok()) {
    s.db.reset();  // reconnect next time (the server may have restarted)
    return st;
  }
  s.stats.watermark = s.watermark;
  s.MaybeCompact(lock);
  return s.current;
}

void LiveMicrostampRegistry::WaitForCompaction() {
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->compaction_done.wait(lock, [&] { return !state_->compacting; });
}

LiveMicrostampRegistry::Stats LiveMicrostampRegistry::stats() const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->stats;
}

}  // namespace ballistics::store
