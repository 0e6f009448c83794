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
  // Re-registration: new codes for a firearm whose codes this agency registered
  // (a firing pin or breech block replaced). Revocation: the codes withdrawn.
  // Both are rows of microstamp_changes (0050), applied to microstamp_codes by
  // its trigger. NOT_FOUND when the agency has no codes for the firearm,
  // ALREADY_EXISTS for a code another firearm carries, INVALID_ARGUMENT names a bad character.
  Status ReplaceMicrostamp(std::int64_t agency_id, std::int64_t firearm_id, const std::string& fp_code,
                           const std::string& bf_code, const std::string& reason, const std::string& by);
  Status RevokeMicrostamp(std::int64_t agency_id, std::int64_t firearm_id, const std::string& reason,
                          const std::string& by);
  // Every visible code, like LoadMicrostamps, and the change watermark of the
  // same snapshot (the last change those codes include; 0 when none).
  StatusOr<std::int64_t> LoadMicrostampSnapshot(
      const std::function<Status(std::int64_t firearm_id, const std::string& fp, const std::string& bf)>& sink);
  // The changes after `after_seq`, in order; returns the new watermark (after_seq when none).
  StatusOr<std::int64_t> LoadMicrostampChanges(std::int64_t after_seq,
                                               const std::function<Status(const registry::MicrostampChange&)>& sink);
  // `e.case_number` may be "" (no case yet); e.agency is ignored (the caller's).
  StatusOr<std::int64_t> CreateEvent(std::int64_t agency_id, const registry::Event& e, const std::string& by);
  // ALREADY_EXISTS when the casing belongs to an event already.
  Status AddEventCasing(std::int64_t agency_id, std::int64_t event_id, std::int64_t casing_id);
  // Every visible event with its casings, leads and firearm links, into `g`.
  Status LoadEventGraph(registry::EventGraph* g);

  // ---- the event graph walked in SQL (state-wide graphs: nothing loaded whole).
  // Same links and answers as registry::EventGraph on LoadEventGraph's data
  // (tested): a breadth-first walk, one set-based query per level over the
  // indexed edges (event_casings, leads both ways, firearm_casings), with the
  // casings of a firearm found by a recursive walk over leads. At most
  // max_depth levels (links from the start); `truncated` says events were left.
  struct EventWalk {
    std::vector<registry::Event> events;     // by id
    std::vector<registry::EventLink> links;  // among them, in registry::EventLinkBefore order
    bool truncated = false;
    std::string geojson;  // registry::EventsGeoJson of events and links
  };
  static constexpr int kMaxEventDepth = 64;
  StatusOr<std::vector<std::int64_t>> EventsOfCasing(std::int64_t casing_id);
  StatusOr<std::vector<std::int64_t>> EventsOfFirearm(std::int64_t firearm_id);
  // `agency` "" matches any visible agency.
  StatusOr<std::vector<std::int64_t>> EventsOfCase(const std::string& agency, const std::string& case_number);
  // Events reachable from the visible start events (start included). INVALID_ARGUMENT for max_depth < 1.
  StatusOr<EventWalk> ConnectedEvents(const std::vector<std::int64_t>& start, int max_depth = kMaxEventDepth);
  // Fewest links from a to b, oriented along the path (the path EventGraph::ShortestPath
  // returns). NOT_FOUND for an invisible event or no chain of at most max_depth links.
  StatusOr<std::vector<registry::EventLink>> EventPath(std::int64_t a, std::int64_t b,
                                                       int max_depth = kMaxEventDepth);

  class Impl;

 private:
  explicit RegistryDb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The service's microstamp index kept current from PostgreSQL: the first call
// loads every code into a base (system connection); later calls read only the
// changes after the watermark and apply them to the delta; when the delta
// exceeds max_delta, a background thread compacts it into a new base and the
// changes that arrived meanwhile are re-applied on top. Thread-safe.
// docs/registry.md, "Incremental index".
class LiveMicrostampRegistry {
 public:
  struct Options {
    // Delta size (firearms changed since the base) that starts a compaction.
    // 4096: a change costs O(delta) to apply, on the request path (3.8 ms CPU
    // at 4096 next to 10 M codes, BM_LiveApplyOne), a compaction O(registry) on
    // another core (5.5 s at 10 M, ~1.3 ms per change amortized).
    std::size_t max_delta = 4096;
    bool background = true;  // false: compact inline (tests)
  };
  struct Stats {
    std::int64_t full_loads = 0;
    std::int64_t polls = 0;
    std::int64_t changes_applied = 0;
    std::int64_t compactions = 0;
    std::int64_t watermark = 0;
  };

  LiveMicrostampRegistry(std::string system_url, Options options);
  explicit LiveMicrostampRegistry(std::string system_url) : LiveMicrostampRegistry(std::move(system_url), Options()) {}
  ~LiveMicrostampRegistry();  // waits for a running compaction
  LiveMicrostampRegistry(const LiveMicrostampRegistry&) = delete;
  LiveMicrostampRegistry& operator=(const LiveMicrostampRegistry&) = delete;

  // The index as of now: every change committed before the call is in it.
  StatusOr<std::shared_ptr<const registry::LiveMicrostampIndex>> Current();
  // Blocks until no compaction runs (tests, shutdown).
  void WaitForCompaction();
  Stats stats() const;

  class State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace ballistics::store
