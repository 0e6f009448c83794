// Registry store: firearms, test-fire links, sales and transfers, microstamp
// codes and events in PostgreSQL (db/migrations/0020_registries.sql). Same two
// kinds of connection as api_store.h: the system connection manages which
// agencies are law enforcement; everything else runs scoped (ballistics_app,
// row-level security). A RegistryDb owns one connection and is not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballistics/api_store.h"
#include "ballistics/registry.h"
#include "ballistics/status.h"

namespace ballistics::store {

struct FirearmRecord {
  std::int64_t id = 0;
  std::string agency;  // registering agency (read back only)
  std::string manufacturer;
  std::string make;
  std::string model;
  std::string serial;
  std::string calibre;
  std::string fp_shape = "unknown";  // circular, elliptical, rectangular, hemispherical, unknown
  std::optional<std::string> manufactured_on;  // YYYY-MM-DD
  std::string created_at;
};

// "dealer_sale", "private_transfer", "dealer_transfer", "seizure", "return".
struct TransferRecord {
  std::int64_t id = 0;
  std::int64_t firearm_id = 0;
  std::string kind = "dealer_sale";
  std::string dealer_licence;
  std::string occurred_on;     // YYYY-MM-DD
  std::string party_ref_hmac;  // hex HMAC-SHA256 of the purchaser / receiving party reference
  std::string recorded_by;
};

struct TraceRecord {
  FirearmRecord firearm;
  std::vector<TransferRecord> transfers;  // oldest first
  std::vector<std::int64_t> casings;      // test fires and other casings linked to the firearm
};

// Hex HMAC-SHA256(key, reference): what firearm_transfers stores instead of
// the purchaser reference. INVALID_ARGUMENT for a key under 16 bytes or an
// empty / overlong (> 200) reference.
StatusOr<std::string> PartyRefHmac(std::string_view key, std::string_view reference);

class RegistryDb {
 public:
  static StatusOr<std::unique_ptr<RegistryDb>> ConnectSystem(const std::string& url);
  static StatusOr<std::unique_ptr<RegistryDb>> ConnectScoped(const std::string& url, const Principal& who);
  ~RegistryDb();
  RegistryDb(const RegistryDb&) = delete;
  RegistryDb& operator=(const RegistryDb&) = delete;

  // ---- system connection
  // Marks an agency as law enforcement (may trace), or removes the mark. NOT_FOUND for an unknown agency.
  Status SetLawEnforcement(const std::string& agency, bool law_enforcement);
  StatusOr<bool> IsLawEnforcement(std::int64_t agency_id);

  // ---- scoped connection
  // ALREADY_EXISTS for a (manufacturer, serial) registered before; INVALID_ARGUMENT names a bad field.
  StatusOr<std::int64_t> RegisterFirearm(std::int64_t agency_id, const FirearmRecord& f, const std::string& by);
  StatusOr<FirearmRecord> GetFirearm(std::int64_t firearm_id);
  // By serial (and manufacturer when not empty), as far as row-level security shows.
  StatusOr<std::vector<FirearmRecord>> FindFirearms(const std::string& manufacturer, const std::string& serial);
  // Links a casing to the firearm it was fired from. NOT_FOUND for an
  // invisible casing or firearm; ALREADY_EXISTS when the casing is linked.
  Status LinkCasing(std::int64_t agency_id, std::int64_t casing_id, std::int64_t firearm_id, const std::string& by);
  // The firearm a casing was fired from, or NOT_FOUND.
  StatusOr<std::int64_t> FirearmOfCasing(std::int64_t casing_id);
  StatusOr<std::int64_t> RecordTransfer(std::int64_t agency_id, const TransferRecord& t);
  // Firearm, transfers (oldest first) and linked casings.
  StatusOr<TraceRecord> Trace(std::int64_t firearm_id);
  // ALREADY_EXISTS for a code used by another firearm or a firearm with codes.
  Status RegisterMicrostamp(std::int64_t agency_id, std::int64_t firearm_id, const std::string& fp_code,
                            const std::string& bf_code, const std::string& by);
  // Every visible code (fp or bf may be ""), streamed in firearm order.
  Status LoadMicrostamps(const std::function<Status(std::int64_t firearm_id, const std::string& fp,
                                                    const std::string& bf)>& sink);
  std::int64_t MicrostampCount();
  // `e.case_number` may be "" (no case yet); e.agency is ignored (the caller's).
  StatusOr<std::int64_t> CreateEvent(std::int64_t agency_id, const registry::Event& e, const std::string& by);
  // ALREADY_EXISTS when the casing belongs to an event already.
  Status AddEventCasing(std::int64_t agency_id, std::int64_t event_id, std::int64_t casing_id);
  // Every visible event with its casings, leads and firearm links, into `g`.
  Status LoadEventGraph(registry::EventGraph* g);

  class Impl;

 private:
  explicit RegistryDb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ballistics::store
