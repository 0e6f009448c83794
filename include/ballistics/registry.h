// Registry domain: microstamp code lookup and the event graph. Pure code (no
// SQL, no gRPC): the store (registry_store.h) persists firearms, codes and
// events; the service feeds them into these structures. Design and the laws
// served: docs/registry.md.
//
// Microstamping (California Penal Code 31910(b)(7), DC Code 7-2505.03): a code
// is stamped on at least two places of each casing, the firing-pin (FP) tip and
// the breech face (BF). Reads of real casings are partial: characters missing,
// look-alikes swapped (0/O, 8/B, 1/I, 5/S, 2/Z), one location worn. A lookup
// turns every read into per-position likelihoods, multiplies them across reads
// and locations (independent reads: a naive-Bayes product), and ranks the
// registered firearms by posterior probability under a uniform prior.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ballistics/status.h"

namespace ballistics::registry {

// Where on the casing a code is read.
enum class StampLocation { kFiringPinTip = 0, kBreechFace = 1 };
inline constexpr int kStampLocations = 2;
// "fp_tip", "breech_face"
std::string_view StampLocationName(StampLocation l);
// Accepts the names above, "fp" and "bf".
StatusOr<StampLocation> ParseStampLocation(std::string_view s);

// The characters a code of one location is written in, and which of them a
// reader confuses. Each position of a read of character o with confidence c
// gives the likelihood P(o | true t):
//   c                                      t == o
//   (1 - c) * lookalike_share * w(o,t)/W   t a look-alike of o (weights w, W = sum over look-alikes of o)
//   (1 - c) * (1 - lookalike_share)/(n-1-k) any other of the n characters (k look-alikes of o)
// so a row sums to 1. An unknown position is uniform (1/n) and does not discriminate.
struct Alphabet {
  std::string chars;     // distinct printable ASCII characters, at most 64
  int code_length = 0;   // every code of this location has exactly this many characters
  // Look-alike pairs (symmetric) with a relative weight > 0.
  std::vector<std::pair<std::string, double>> lookalikes;  // {"0O", 1.0}
  double lookalike_share = 0.8;  // of a misread's probability, the part that goes to look-alikes

  // FP tip: 8 characters of 0-9A-Z with the usual OCR confusions.
  static Alphabet AlphanumericFp();
  // Breech face: 12 gear teeth, each one of 4 radial lengths '0'..'3'; a worn
  // tooth reads as a neighbouring length.
  static Alphabet GearBf();
  Status Validate() const;
};

// One character position of a read.
struct ReadChar {
  std::optional<char> ch;   // nullopt: unreadable
  double confidence = 0.9;  // examiner's / OCR's probability that ch is right, in (0, 1]
};

// One partial read of one location ("8?K1 B7?Q" with confidences).
struct StampRead {
  StampLocation location = StampLocation::kFiringPinTip;
  std::vector<ReadChar> chars;  // exactly code_length entries
  // "A7?K-8B?Q"-style helper: '?' = unknown, every known char gets `confidence`.
  static StampRead Parse(StampLocation loc, std::string_view text, double confidence);
};

struct MicrostampCandidate {
  std::int64_t firearm_id = 0;
  double posterior = 0.0;   // normalized over the evaluated mass (see tail_mass_estimate)
  double log_likelihood = 0.0;
  std::string codes[kStampLocations];  // registered codes ("" when none at that location)
};

struct MicrostampLookupResult {
  std::vector<MicrostampCandidate> candidates;  // best first, at most top_k
  // Registered codes with no hard mismatch: every read character equals the
  // code's or is a look-alike of it (unknowns match anything), per location
  // and jointly (firearms consistent at every location read).
  std::int64_t consistent_codes[kStampLocations] = {0, 0};
  std::int64_t consistent_firearms = 0;
  // Posterior mass of the codes the search pruned without scoring them, as
  // expected if codes are spread uniformly over the code space (each pruned
  // subtree counts its size times its prefix likelihood times the mean
  // likelihood of the remaining positions). An estimate, not a bound: a
  // listed posterior p is about p * (1 - tail) once the pruned codes are counted.
  // -1 in consistent_firearms means more than 2^20 to intersect.
  double tail_mass_estimate = 0.0;
  std::int64_t nodes_visited = 0;  // search effort (benchmarks)
};

struct MicrostampLookupOptions {
  int top_k = 10;
  // Branches whose best completion is more than this many natural-log units
  // below the best code found are pruned (their mass goes into tail_mass_estimate).
  // ln 1000: codes a thousand times less likely than the best are not listed.
  // At confidence 0.9 a hard misread costs about 7.3 units and a look-alike
  // about 3, so when a consistent code exists, codes with a hard misread only
  // count in the tail; when none exists, the best one-misread codes are listed.
  double prune_log_ratio = 6.9;
  // How reads of both locations are searched (docs/registry.md, "Fused lookup").
  //  kPrimary: the location with the fewer expected consistent codes is walked
  //    (branch-and-bound on its own likelihood, as a one-location lookup); each
  //    firearm it lists is scored at the other location through the firearm's
  //    position there (no second walk). Its list is kPerLocation's list less the
  //    firearms only the other location's walk found (tested).
  //  kPerLocation: each location walked on its own, the union of their hits
  //    scored jointly (the first implementation; the other walk costs most).
  //  kExactJoint: one walk of the primary location whose bound adds the other
  //    location's best possible log-likelihood, every code reached scored
  //    jointly: every firearm within prune_log_ratio of the best joint
  //    likelihood is listed (exact), at 10-50x the cost of kPrimary (reference).
  enum class Fused { kPrimary, kPerLocation, kExactJoint };
  Fused fused = Fused::kPrimary;
};

// Registered codes of every location, sorted per location for prefix search.
// Build once (Add..., Build), then Lookup is const and thread-safe.
class MicrostampIndex {
 public:
  explicit MicrostampIndex(Alphabet fp = Alphabet::AlphanumericFp(), Alphabet bf = Alphabet::GearBf());

  // Either code may be empty (a firearm marked at one place only). The code is
  // checked against the alphabet; INVALID_ARGUMENT names the offending character.
  Status Add(std::int64_t firearm_id, std::string_view fp_code, std::string_view bf_code);
  void Reserve(std::size_t n);
  // Sorts; ALREADY_EXISTS names a code registered twice at one location or a firearm added twice.
  Status Build();

  // INVALID_ARGUMENT for no reads, a read of the wrong length, a character outside
  // the alphabet, a confidence outside (0,1]; FAILED_PRECONDITION before Build.
  StatusOr<MicrostampLookupResult> Lookup(const std::vector<StampRead>& reads,
                                          const MicrostampLookupOptions& options = {}) const;

  // Exact identity: the firearm carrying this code at that location, or NOT_FOUND.
  StatusOr<std::int64_t> FindExact(StampLocation loc, std::string_view code) const;

  std::size_t size() const { return firearm_ids_.size(); }
  std::size_t memory_bytes() const;
  const Alphabet& alphabet(StampLocation l) const { return loc_[static_cast<int>(l)].alphabet; }

  // One searchable part of a registry: an index and, per location, sorted
  // positions into its sorted codes that are no longer live (firearms revoked
  // or re-registered since the index was built). Internal to LiveMicrostampIndex.
  struct Segment {
    const MicrostampIndex* index = nullptr;
    const std::vector<std::uint32_t>* dead[kStampLocations] = {nullptr, nullptr};
  };
  // Lookup over the live codes of several segments (codes unique across them):
  // the same walk, ranking and probabilities as one index built from those codes.
  static StatusOr<MicrostampLookupResult> LookupSegments(const Segment* segs, int nseg,
                                                         const std::vector<StampRead>& reads,
                                                         const MicrostampLookupOptions& options);

 private:
  struct Loc {
    Alphabet alphabet;
    int bits = 0;
    int char_index[256];  // -1 outside the alphabet
    std::vector<std::uint64_t> sorted_codes;   // packed, most significant = first char
    std::vector<std::uint32_t> sorted_owner;   // firearm index of sorted_codes[i]
    std::vector<std::uint32_t> position;       // firearm index -> index into sorted (or UINT32_MAX)
    std::vector<std::uint64_t> pending;        // packed codes in Add order (before Build)
  };
  StatusOr<std::uint64_t> Pack(const Loc& l, std::string_view code) const;
  std::string Unpack(const Loc& l, std::uint64_t v) const;

  // Firearm index (Build sorts firearms by id) of an id, or -1.
  std::int64_t IndexOfFirearm(std::int64_t firearm_id) const;

  Loc loc_[kStampLocations];
  std::vector<std::int64_t> firearm_ids_;  // sorted after Build
  bool built_ = false;
  bool alphabets_checked_ = false;  // Add validates them once

  friend class LookupRun;
  friend class LiveMicrostampIndex;
};

// A registration, re-registration (new codes for a firearm, e.g. after a
// firing-pin replacement) or revocation, in the order the registry recorded it.
struct MicrostampChange {
  std::int64_t firearm_id = 0;
  std::string fp_code;  // "" when none at this location
  std::string bf_code;
  bool revoked = false;  // the firearm's codes are withdrawn (codes ignored)
};

// The registry as lookups see it while codes keep arriving: an immutable
// sorted base (a MicrostampIndex, shared between versions) plus a small delta
// of the firearms registered, re-registered or revoked since the base was
// built (their base codes marked dead). A lookup walks both as one trie, so
// its ranking, probabilities and counts are those of one index built from the
// live codes (tested). Immutable: Apply and Compact return a new version, so a
// service swaps a shared_ptr while lookups run on the old one.
// Design, and why the delta is bounded: docs/registry.md, "Incremental index".
class LiveMicrostampIndex {
 public:
  // `base` must be built. INVALID_ARGUMENT when it is not.
  static StatusOr<std::shared_ptr<const LiveMicrostampIndex>> FromBase(std::shared_ptr<const MicrostampIndex> base);

  // Applies changes in order. INVALID_ARGUMENT for a bad code (named),
  // ALREADY_EXISTS for a code live on another firearm, NOT_FOUND for revoking
  // a firearm without live codes. On error nothing is applied.
  StatusOr<std::shared_ptr<const LiveMicrostampIndex>> Apply(const std::vector<MicrostampChange>& changes) const;
  // A new base holding every live code, empty delta (seconds at 10 M codes; run off the request path).
  StatusOr<std::shared_ptr<const LiveMicrostampIndex>> Compact() const;

  StatusOr<MicrostampLookupResult> Lookup(const std::vector<StampRead>& reads,
                                          const MicrostampLookupOptions& options = {}) const;
  StatusOr<std::int64_t> FindExact(StampLocation loc, std::string_view code) const;

  std::size_t size() const;  // live firearms
  std::size_t delta_size() const { return delta_entries_.size() + dead_firearms_.size(); }
  const MicrostampIndex& base() const { return *base_; }

 private:
  LiveMicrostampIndex() = default;
  std::shared_ptr<const MicrostampIndex> base_;
  std::shared_ptr<const MicrostampIndex> delta_;       // built from delta_entries_
  std::vector<MicrostampChange> delta_entries_;        // live firearms not in the base, or re-registered; by id
  std::vector<std::uint32_t> dead_firearms_;           // base firearm indexes no longer live, sorted
  std::vector<std::uint32_t> dead_[kStampLocations];  // their base sorted positions, sorted
};

// ------------------------------------------------------------------ event graph
struct Event {
  std::int64_t id = 0;
  std::string incident_id;  // agency's incident / CAD number
  std::string occurred_at;  // ISO 8601
  double lat = 0.0;
  double lon = 0.0;
  std::string place;
  std::string case_number;
  std::string agency;
};

// Why two events are joined.
struct EventLink {
  std::int64_t event_a = 0;
  std::int64_t event_b = 0;
  std::string kind;     // "lead" (confirmed hit between casings) or "firearm" (casings of one firearm)
  std::int64_t ref_id = 0;  // lead id or firearm id
};

// Events, the casings they own, and the links between casings (leads) or to
// firearms. Build with the Add* calls, then query.
class EventGraph {
 public:
  // INVALID_ARGUMENT: id <= 0, lat outside [-90,90], lon outside [-180,180]; ALREADY_EXISTS: id taken.
  Status AddEvent(const Event& e);
  // NOT_FOUND for an unknown event.
  Status AddCasing(std::int64_t event_id, std::int64_t casing_id);
  // A confirmed hit between two casings (lead id for the explanation).
  void AddLead(std::int64_t lead_id, std::int64_t casing_a, std::int64_t casing_b);
  // A casing known to come from a firearm (test fire, or a seized gun's evidence).
  // Casings joined to it by leads count as the firearm's too (transitively).
  void AddFirearmCasing(std::int64_t firearm_id, std::int64_t casing_id);

  // Events joined by event-event links; computed lazily and cached.
  const std::vector<EventLink>& Links();

  // Events reachable from the start events (BFS), start events included, in id order.
  std::vector<std::int64_t> Connected(const std::vector<std::int64_t>& start_events);
  // Event ids owning a casing / casings of a firearm / casings of a case.
  std::vector<std::int64_t> EventsOfCasing(std::int64_t casing_id) const;
  std::vector<std::int64_t> EventsOfFirearm(std::int64_t firearm_id) const;
  std::vector<std::int64_t> EventsOfCase(const std::string& agency, const std::string& case_number) const;

  // Shortest chain of links from a to b (BFS, fewest links): the links in order
  // (empty when a == b). NOT_FOUND when an event is unknown or b is not reachable.
  StatusOr<std::vector<EventLink>> ShortestPath(std::int64_t a, std::int64_t b);

  // RFC 7946 FeatureCollection: one Point per event (properties id, incident_id,
  // occurred_at, place, case_number, agency) and one LineString per link
  // between two of these events (properties kind, ref_id). Coordinates [lon, lat].
  std::string GeoJson(const std::vector<std::int64_t>& events);

  const Event* FindEvent(std::int64_t id) const;

 private:
  std::vector<Event> events_;  // sorted by id on first query
  std::vector<std::pair<std::int64_t, std::int64_t>> event_casings_;  // (casing, event)
  std::vector<std::pair<std::int64_t, std::pair<std::int64_t, std::int64_t>>> leads_;
  std::vector<std::pair<std::int64_t, std::int64_t>> firearm_casings_;  // (firearm, casing)
  bool dirty_ = true;
  std::vector<EventLink> links_;
  void Rebuild();
  std::vector<std::pair<std::int64_t, std::int64_t>> FirearmCasingsThroughLeads() const;
  std::vector<std::vector<int>> adjacency_;  // event index -> link indexes
  int IndexOf(std::int64_t id) const;
};

// The GeoJSON of EventGraph::GeoJson for given events (any order; written by
// id) and links (in the order given; those with an end outside `events` are
// left out). Shared by the in-memory graph and the SQL walk (registry_store.h).
std::string EventsGeoJson(const std::vector<Event>& events, const std::vector<EventLink>& links);

// Order of links in EventGraph::Links(): leads first, then firearm links, each
// by (event_a, event_b, ref_id) with event_a < event_b. A breadth-first search
// that expands an event's links in this order finds the same shortest path.
inline bool EventLinkBefore(const EventLink& x, const EventLink& y) {
  const bool xl = x.kind == "lead", yl = y.kind == "lead";
  if (xl != yl) return xl;
  if (x.event_a != y.event_a) return x.event_a < y.event_a;
  if (x.event_b != y.event_b) return x.event_b < y.event_b;
  if (x.kind != y.kind) return x.kind < y.kind;
  return x.ref_id < y.ref_id;
}

}  // namespace ballistics::registry
