// Registry subcommands, all through the API (RegistryService) except marking a
// law-enforcement agency, which an operator does on the database (audited):
//   ballisticsctl firearm register --manufacturer M --make K --model D --serial S --calibre C [--fp-shape X]
//   ballisticsctl firearm find --serial S [--manufacturer M]
//   ballisticsctl firearm link-test-fire --casing ID --firearm ID
//   ballisticsctl firearm law-enforcement AGENCY [--remove] --database-url URL
//   ballisticsctl sale record --firearm ID --dealer-licence L --date YYYY-MM-DD --purchaser-ref R [--kind K]
//   ballisticsctl trace (--firearm ID | --casing ID) --case C [--reason R]
//   ballisticsctl microstamp register --firearm ID [--fp CODE] [--bf CODE]
//   ballisticsctl microstamp lookup [--fp READ] [--bf READ] [--confidence P] [--identify --case C]
//   ballisticsctl event create --incident I --time ISO --lat Y --lon X [--place P] [--case C]
//   ballisticsctl event add-casing --event ID --casing ID
//   ballisticsctl event connected (--event|--casing|--firearm ID | --case C) [--geojson FILE]
//   ballisticsctl event path --from ID --to ID
// Answers are printed as JSON (the API message, proto3 JSON mapping).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "ballistics/api_store.h"
#include "ballistics/registry_store.h"
#include "ballistics/v1/registry.grpc.pb.h"
#include "commands.h"

namespace ballistics::cli {
namespace {

namespace v1 = ::ballistics::v1;

struct Client {
  std::string server, token, ca_cert, server_name;
  bool insecure = false;
  int timeout_s = 120;
};

void AddClient(CLI::App* cmd, Client& c) {
  cmd->add_option("--server", c.server, "API address host:port (default: $BALLISTICS_SERVER)")
      ->envname("BALLISTICS_SERVER");
  cmd->add_option("--token", c.token, "API token (default: $BALLISTICS_TOKEN)")->envname("BALLISTICS_TOKEN");
  cmd->add_option("--ca-cert", c.ca_cert, "PEM certificate(s) to trust for the server")->envname("BALLISTICS_CA_CERT");
  cmd->add_option("--tls-server-name", c.server_name, "Expected name in the server certificate");
  cmd->add_flag("--insecure", c.insecure, "Plaintext connection (only for a loopback test server)");
  cmd->add_option("--timeout-s", c.timeout_s, "Deadline of each call")->capture_default_str();
}

[[noreturn]] void Fail(const std::string& what, int code) {
  std::cerr << "error: " << what << "\n";
  throw CLI::RuntimeError(code);
}

[[noreturn]] void FailRpc(const std::string& what, const grpc::Status& s) {
  int code = kExitInternal;
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION: code = kExitInputError; break;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED: code = kExitUsage; break;
    default: break;
  }
  Fail(what + ": " + std::string(StatusCodeName(static_cast<StatusCode>(s.error_code()))) + ": " +
           s.error_message(),
       code);
}

std::unique_ptr<v1::RegistryService::Stub> Stub(const Client& c) {
  if (c.server.empty()) Fail("no server: pass --server host:port or set BALLISTICS_SERVER", kExitUsage);
  if (c.token.empty()) Fail("no token: pass --token or set BALLISTICS_TOKEN", kExitUsage);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (c.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    if (!c.ca_cert.empty()) {
      std::ifstream f(c.ca_cert, std::ios::binary);
      if (!f) Fail("cannot read " + c.ca_cert, kExitInputError);
      std::stringstream ss;
      ss << f.rdbuf();
      ssl.pem_root_certs = ss.str();
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  if (!c.server_name.empty()) args.SetSslTargetNameOverride(c.server_name);
  return v1::RegistryService::NewStub(grpc::CreateCustomChannel(c.server, creds, args));
}

void Prepare(grpc::ClientContext* ctx, const Client& c) {
  ctx->AddMetadata("authorization", "Bearer " + c.token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(c.timeout_s));
}

void Print(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  std::cout << out;
  if (out.empty() || out.back() != '\n') std::cout << "\n";
}

// Calls one unary RPC, prints the answer or fails with the status.
template <typename Req, typename Resp, typename Fn>
void Call(const Client& c, const char* what, Fn fn, const Req& req) {
  auto stub = Stub(c);
  grpc::ClientContext ctx;
  Prepare(&ctx, c);
  Resp resp;
  grpc::Status s = fn(stub.get(), &ctx, req, &resp);
  if (!s.ok()) FailRpc(what, s);
  Print(resp);
}

google::protobuf::Timestamp ParseTime(const std::string& iso) {
  std::tm tm{};
  char z = 0;
  if (std::sscanf(iso.c_str(), "%d-%d-%dT%d:%d:%d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec, &z) != 7 ||
      z != 'Z') {
    Fail("--time '" + iso + "' is not ISO 8601 UTC (2024-05-01T22:10:00Z)", kExitUsage);
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  google::protobuf::Timestamp t;
  t.set_seconds(timegm(&tm));
  return t;
}

struct Args {
  Client client;
  v1::Firearm firearm;
  std::int64_t firearm_id = 0, casing_id = 0, event_id = 0, from = 0, to = 0;
  std::string kind = "dealer_sale", licence, date, purchaser_ref, case_number, reason, fp, bf, agency, url, geojson,
              incident, time, place;
  double confidence = 0.9, lat = 0, lon = 0;
  bool identify = false, remove = false;
  int top_k = 10;
};

void LawEnforcement(const Args& a) {
  if (a.url.empty()) Fail("law-enforcement works on the database: pass --database-url", kExitUsage);
  auto db = store::RegistryDb::ConnectSystem(a.url);
  if (!db.ok()) Fail(db.status().ToString(), kExitDatabaseError);
  Status s = (*db)->SetLawEnforcement(a.agency, !a.remove);
  // Audited like the other direct admin actions.
  auto api = store::ApiDb::ConnectSystem(a.url);
  if (!api.ok()) Fail(api.status().ToString(), kExitDatabaseError);
  store::AuditEntry e;
  const char* user = std::getenv("USER");
  e.request_id = "cli-" + std::to_string(getpid());
  e.actor = std::string("database:") + (user ? user : "?");
  e.method = "ballisticsctl firearm law-enforcement";
  e.status = s.ok() ? "OK" : s.ToString();
  e.detail = "agency=" + a.agency + (a.remove ? " removed" : " added");
  auto r = (*api)->AppendAudit(e);
  if (!r.ok()) Fail("audit append failed: " + r.status().ToString(), kExitDatabaseError);
  if (!s.ok()) Fail(s.ToString(), kExitInputError);
  std::cout << "agency '" << a.agency << "' " << (a.remove ? "is no longer" : "is now") << " law enforcement\n";
}

v1::StampRead Read(v1::StampLocation loc, const std::string& text, double confidence) {
  v1::StampRead r;
  r.set_location(loc);
  r.set_text(text);
  r.set_confidence(confidence);
  return r;
}

}  // namespace

void RegisterRegistryCommands(CLI::App& app) {
  auto a = std::make_shared<Args>();
  using S = v1::RegistryService::Stub;

  CLI::App* firearm = app.add_subcommand("firearm", "Firearm registry (register, find, link test fires)");
  firearm->require_subcommand(1);
  CLI::App* reg = firearm->add_subcommand("register", "Register a firearm as its manufacturer describes it");
  AddClient(reg, a->client);
  reg->add_option("--manufacturer", *a->firearm.mutable_manufacturer(), "Manufacturer")->required();
  reg->add_option("--make", *a->firearm.mutable_make(), "Make")->required();
  reg->add_option("--model", *a->firearm.mutable_model(), "Model")->required();
  reg->add_option("--serial", *a->firearm.mutable_serial(), "Serial number")->required();
  reg->add_option("--calibre", *a->firearm.mutable_calibre(), "Calibre, e.g. '9mm Luger'")->required();
  reg->add_option("--fp-shape", *a->firearm.mutable_fp_shape(), "circular, elliptical, rectangular, hemispherical");
  reg->add_option("--manufactured-on", *a->firearm.mutable_manufactured_on(), "YYYY-MM-DD");
  reg->callback([a] {
    v1::RegisterFirearmRequest r;
    *r.mutable_firearm() = a->firearm;
    Call<v1::RegisterFirearmRequest, v1::Firearm>(a->client, "firearm register", std::mem_fn(&S::RegisterFirearm), r);
  });
  CLI::App* find = firearm->add_subcommand("find", "Firearms by serial (law-enforcement examiners)");
  AddClient(find, a->client);
  find->add_option("--serial", *a->firearm.mutable_serial(), "Serial number")->required();
  find->add_option("--manufacturer", *a->firearm.mutable_manufacturer(), "Manufacturer");
  find->callback([a] {
    v1::FindFirearmsRequest r;
    r.set_serial(a->firearm.serial());
    r.set_manufacturer(a->firearm.manufacturer());
    Call<v1::FindFirearmsRequest, v1::FindFirearmsResponse>(a->client, "firearm find", std::mem_fn(&S::FindFirearms), r);
  });
  CLI::App* link = firearm->add_subcommand("link-test-fire", "Link an uploaded casing to the firearm that fired it");
  AddClient(link, a->client);
  link->add_option("--casing", a->casing_id, "Casing id (uploaded test fire)")->required();
  link->add_option("--firearm", a->firearm_id, "Firearm id")->required();
  link->callback([a] {
    v1::LinkTestFireRequest r;
    r.set_casing_id(a->casing_id);
    r.set_firearm_id(a->firearm_id);
    Call<v1::LinkTestFireRequest, v1::LinkTestFireResponse>(a->client, "firearm link-test-fire",
                                                            std::mem_fn(&S::LinkTestFire), r);
  });
  CLI::App* le = firearm->add_subcommand("law-enforcement", "Mark an agency as law enforcement (may trace)");
  le->add_option("agency", a->agency, "Agency name")->required();
  le->add_option("--database-url", a->url, "PostgreSQL URL (default: $BALLISTICS_DATABASE_URL)")
      ->envname("BALLISTICS_DATABASE_URL");
  le->add_flag("--remove", a->remove, "Remove the mark instead");
  le->callback([a] { LawEnforcement(*a); });

  CLI::App* sale = app.add_subcommand("sale", "Dealer sales and transfers");
  sale->require_subcommand(1);
  CLI::App* rec = sale->add_subcommand("record", "Record a dealer sale or transfer");
  AddClient(rec, a->client);
  rec->add_option("--firearm", a->firearm_id, "Firearm id")->required();
  rec->add_option("--kind", a->kind, "dealer_sale, private_transfer, dealer_transfer, seizure, return")
      ->capture_default_str();
  rec->add_option("--dealer-licence", a->licence, "Dealer licence");
  rec->add_option("--date", a->date, "YYYY-MM-DD")->required();
  rec->add_option("--purchaser-ref", a->purchaser_ref, "Purchaser reference id (stored as an HMAC)")->required();
  rec->callback([a] {
    v1::RecordTransferRequest r;
    r.set_firearm_id(a->firearm_id);
    r.set_kind(a->kind);
    r.set_dealer_licence(a->licence);
    r.set_date(a->date);
    r.set_purchaser_ref(a->purchaser_ref);
    Call<v1::RecordTransferRequest, v1::Transfer>(a->client, "sale record", std::mem_fn(&S::RecordTransfer), r);
  });

  CLI::App* trace = app.add_subcommand("trace", "Firearm -> manufacturer -> sales (law enforcement, case number)");
  AddClient(trace, a->client);
  trace->add_option("--firearm", a->firearm_id, "Firearm id");
  trace->add_option("--casing", a->casing_id, "Casing linked to a firearm (a test fire a search reached)");
  trace->add_option("--case", a->case_number, "Case number of the investigation")->required();
  trace->add_option("--reason", a->reason, "Recorded in the audit trail");
  trace->callback([a] {
    v1::TraceRequest r;
    if ((a->firearm_id > 0) == (a->casing_id > 0)) Fail("give exactly one of --firearm and --casing", kExitUsage);
    if (a->firearm_id > 0) r.set_firearm_id(a->firearm_id);
    else r.set_casing_id(a->casing_id);
    r.set_case_number(a->case_number);
    r.set_reason(a->reason);
    Call<v1::TraceRequest, v1::TraceResponse>(a->client, "trace", std::mem_fn(&S::Trace), r);
  });

  CLI::App* ms = app.add_subcommand("microstamp", "Microstamp codes (register, replace, revoke, lookup of partial reads)");
  ms->require_subcommand(1);
  CLI::App* msr = ms->add_subcommand("register", "Register a firearm's codes");
  AddClient(msr, a->client);
  msr->add_option("--firearm", a->firearm_id, "Firearm id")->required();
  msr->add_option("--fp", a->fp, "Firing-pin tip code (8 of 0-9A-Z)");
  msr->add_option("--bf", a->bf, "Breech-face gear code (12 of 0-3)");
  msr->callback([a] {
    v1::RegisterMicrostampRequest r;
    r.set_firearm_id(a->firearm_id);
    r.set_fp_tip_code(a->fp);
    r.set_breech_face_code(a->bf);
    Call<v1::RegisterMicrostampRequest, v1::RegisterMicrostampResponse>(a->client, "microstamp register",
                                                                        std::mem_fn(&S::RegisterMicrostamp), r);
  });
  CLI::App* msp = ms->add_subcommand("replace", "Re-register a firearm's codes (firing pin or breech block replaced)");
  AddClient(msp, a->client);
  msp->add_option("--firearm", a->firearm_id, "Firearm id")->required();
  msp->add_option("--fp", a->fp, "New firing-pin tip code (8 of 0-9A-Z)");
  msp->add_option("--bf", a->bf, "New breech-face gear code (12 of 0-3)");
  msp->add_option("--reason", a->reason, "Why; recorded with the change and in the audit trail");
  msp->callback([a] {
    if (a->fp.empty() && a->bf.empty()) Fail("give --fp and/or --bf", kExitUsage);
    v1::ReplaceMicrostampRequest r;
    r.set_firearm_id(a->firearm_id);
    r.set_fp_tip_code(a->fp);
    r.set_breech_face_code(a->bf);
    r.set_reason(a->reason);
    Call<v1::ReplaceMicrostampRequest, v1::ReplaceMicrostampResponse>(a->client, "microstamp replace",
                                                                      std::mem_fn(&S::ReplaceMicrostamp), r);
  });
  CLI::App* msv = ms->add_subcommand("revoke", "Withdraw a firearm's codes (lookups no longer find it)");
  AddClient(msv, a->client);
  msv->add_option("--firearm", a->firearm_id, "Firearm id")->required();
  msv->add_option("--reason", a->reason, "Why; recorded with the change and in the audit trail");
  msv->callback([a] {
    v1::RevokeMicrostampRequest r;
    r.set_firearm_id(a->firearm_id);
    r.set_reason(a->reason);
    Call<v1::RevokeMicrostampRequest, v1::RevokeMicrostampResponse>(a->client, "microstamp revoke",
                                                                    std::mem_fn(&S::RevokeMicrostamp), r);
  });
  CLI::App* msl = ms->add_subcommand("lookup", "Rank firearms for partial reads ('?' = unreadable)");
  AddClient(msl, a->client);
  msl->add_option("--fp", a->fp, "Firing-pin tip read, e.g. 'A7?K8B?Q'");
  msl->add_option("--bf", a->bf, "Breech-face read, e.g. '0123?0120?31'");
  msl->add_option("--confidence", a->confidence, "Confidence of each read character")->capture_default_str();
  msl->add_flag("--identify", a->identify, "Return identities (law enforcement with --case)");
  msl->add_option("--case", a->case_number, "Case number of the investigation");
  msl->add_option("--reason", a->reason, "Recorded in the audit trail");
  msl->add_option("--top", a->top_k, "Candidates to return")->capture_default_str();
  msl->callback([a] {
    v1::LookupMicrostampRequest r;
    if (!a->fp.empty()) *r.add_reads() = Read(v1::STAMP_FP_TIP, a->fp, a->confidence);
    if (!a->bf.empty()) *r.add_reads() = Read(v1::STAMP_BREECH_FACE, a->bf, a->confidence);
    if (r.reads_size() == 0) Fail("give --fp and/or --bf", kExitUsage);
    r.set_identify(a->identify);
    r.set_case_number(a->case_number);
    r.set_reason(a->reason);
    r.set_top_k(a->top_k);
    Call<v1::LookupMicrostampRequest, v1::LookupMicrostampResponse>(a->client, "microstamp lookup",
                                                                    std::mem_fn(&S::LookupMicrostamp), r);
  });

  CLI::App* ev = app.add_subcommand("event", "Events (incidents) and the graph linking them");
  ev->require_subcommand(1);
  CLI::App* evc = ev->add_subcommand("create", "Create an event");
  AddClient(evc, a->client);
  evc->add_option("--incident", a->incident, "Incident / CAD number")->required();
  evc->add_option("--time", a->time, "ISO 8601 UTC, e.g. 2024-05-01T22:10:00Z")->required();
  evc->add_option("--lat", a->lat, "Latitude (WGS 84)")->required();
  evc->add_option("--lon", a->lon, "Longitude (WGS 84)")->required();
  evc->add_option("--place", a->place, "Place description");
  evc->add_option("--case", a->case_number, "Case number of the caller's agency");
  evc->callback([a] {
    v1::CreateEventRequest r;
    v1::EventInfo* e = r.mutable_event();
    e->set_incident_id(a->incident);
    *e->mutable_occurred_at() = ParseTime(a->time);
    e->set_lat(a->lat);
    e->set_lon(a->lon);
    e->set_place(a->place);
    e->set_case_number(a->case_number);
    Call<v1::CreateEventRequest, v1::EventInfo>(a->client, "event create", std::mem_fn(&S::CreateEvent), r);
  });
  CLI::App* eva = ev->add_subcommand("add-casing", "Attach a casing to an event");
  AddClient(eva, a->client);
  eva->add_option("--event", a->event_id, "Event id")->required();
  eva->add_option("--casing", a->casing_id, "Casing id")->required();
  eva->callback([a] {
    v1::AddEventCasingRequest r;
    r.set_event_id(a->event_id);
    r.set_casing_id(a->casing_id);
    Call<v1::AddEventCasingRequest, v1::AddEventCasingResponse>(a->client, "event add-casing",
                                                                std::mem_fn(&S::AddEventCasing), r);
  });
  CLI::App* evn = ev->add_subcommand("connected", "Events connected through hits and firearms");
  AddClient(evn, a->client);
  evn->add_option("--event", a->event_id, "Start event id");
  evn->add_option("--casing", a->casing_id, "Start casing id");
  evn->add_option("--firearm", a->firearm_id, "Start firearm id");
  evn->add_option("--case", a->case_number, "Start case number");
  evn->add_option("--geojson", a->geojson, "Also write the GeoJSON FeatureCollection to this file");
  evn->callback([a] {
    v1::ConnectedEventsRequest r;
    if (a->event_id > 0) r.set_event_id(a->event_id);
    else if (a->casing_id > 0) r.set_casing_id(a->casing_id);
    else if (a->firearm_id > 0) r.set_firearm_id(a->firearm_id);
    else if (!a->case_number.empty()) r.set_case_number(a->case_number);
    else Fail("give --event, --casing, --firearm or --case", kExitUsage);
    auto stub = Stub(a->client);
    grpc::ClientContext ctx;
    Prepare(&ctx, a->client);
    v1::EventComponent out;
    grpc::Status s = stub->ConnectedEvents(&ctx, r, &out);
    if (!s.ok()) FailRpc("event connected", s);
    if (!a->geojson.empty()) {
      std::ofstream f(a->geojson, std::ios::binary);
      f << out.geojson();
      if (!f) Fail("cannot write " + a->geojson, kExitInputError);
    }
    Print(out);
  });
  CLI::App* evp = ev->add_subcommand("path", "Shortest chain of links between two events");
  AddClient(evp, a->client);
  evp->add_option("--from", a->from, "Event id")->required();
  evp->add_option("--to", a->to, "Event id")->required();
  evp->callback([a] {
    v1::EventPathRequest r;
    r.set_from_event_id(a->from);
    r.set_to_event_id(a->to);
    Call<v1::EventPathRequest, v1::EventPathResponse>(a->client, "event path", std::mem_fn(&S::EventPath), r);
  });
}

}  // namespace ballistics::cli
