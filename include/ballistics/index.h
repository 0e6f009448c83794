// index stage: search at scale. A rotation-invariant coarse descriptor per
// signature, an in-memory index scanned at close to memory bandwidth, and a
// search engine that reranks the coarse top K with the correlator (CMC).
//
//   Signature --ComputeDescriptor--> CoarseDescriptor --SignatureIndex::Add
//   query --SearchCoarse (all shards, filters first)--> top K ids
//         --Correlator::Compare (thread pool)--> ranked BF / FP / combined lists
//
// The coarse descriptor (docs/search.md has the measurements behind every
// default): the signature is smoothed and resampled to a coarse grid, unwrapped
// into rings about the centre of its valid data (the primer axis to within the
// primer play), so that a rotation of the casing becomes a circular shift along
// each ring. Per ring an FFT along the angle keeps the low angular frequencies
// (phase included). The similarity of two descriptors is the normalized circular
// cross-correlation summed over rings, maximised over the shift:
//   s(q, c) = max_shift sum_r Re IFFT(Q_r * conj(C_r))[shift] / (|Q| |C|),
// computed as one small inverse FFT of the ring-summed cross-spectrum per
// candidate (the phase-correlation idea of Kuglin & Hines 1975 applied to the
// polar unwrap as in Fourier-Mellin registration, Reddy & Chatterji 1996, but
// keeping the phase so it discriminates far better than magnitudes alone).
//
// Domain code only: no SQL, no gRPC. A loader (store::Store::LoadSignatures, a
// shard worker) fills an index from (SignatureRecord, Signature) pairs or from
// precomputed descriptors.
//
// Thread safety: SignatureIndex implementations allow concurrent SearchCoarse
// calls; Add/Remove take an exclusive lock (a search sees the index before or
// after an Add, never half of it). SearchEngine::Search may be called from any
// number of threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ballistics/correlate.h"
#include "ballistics/status.h"
#include "ballistics/store.h"  // CasingSource (enum only: the index does not link the store)
#include "ballistics/surface.h"

namespace ballistics {

// ---------------------------------------------------------------------------
// Records and filters
// ---------------------------------------------------------------------------

inline constexpr std::int64_t kUnknownTime = std::numeric_limits<std::int64_t>::min();

// What the index keeps about one signature besides its descriptor: ids and the
// filter fields (the same values as the casings / signatures tables).
struct SignatureRecord {
  std::int64_t signature_id = 0;   // unique in the index
  std::int64_t casing_id = 0;
  SignatureKind kind = SignatureKind::kBreechFace;
  Modality modality = Modality::kTopography3d;
  std::string calibre;             // e.g. "9mm Luger"
  std::string agency;
  CasingSource source = CasingSource::kCrimeScene;
  std::int64_t captured_at_unix = kUnknownTime;  // seconds since 1970 UTC; kUnknownTime = not given
  int shard = 0;                   // partition 0..store::kSignatureShards-1
};

// Empty vector / nullopt = no restriction on that field. A signature passes
// when it passes every restriction. Signatures without a capture time never
// pass a date restriction.
struct SearchFilter {
  std::vector<SignatureKind> kinds;
  std::vector<Modality> modalities;      // the engine restricts to the query's modality
  std::vector<std::string> calibres;     // exact match
  std::vector<std::string> agencies;     // exact match
  std::vector<CasingSource> sources;
  std::optional<std::int64_t> captured_after_unix;   // inclusive
  std::optional<std::int64_t> captured_before_unix;  // exclusive
  std::vector<std::int64_t> exclude_casing_ids;      // e.g. the query casing itself

  bool Matches(const SignatureRecord& record) const;
};

// ---------------------------------------------------------------------------
// Coarse descriptor
// ---------------------------------------------------------------------------

struct DescriptorConfig {
  // The signature is low-passed (ISO 16610-61 Gaussian, this cutoff) and
  // resampled to coarse_pixel_um before the polar unwrap. With the signature's
  // 500 µm high-pass the descriptor sees 125-500 µm (docs/search.md,
  // "Descriptor band": 250 µm lost raw vs processed files of one casing).
  double coarse_pixel_um = 25.0;
  double lowpass_um = 125.0;
  // Centre of the rings: true = circle fit to the inner rim of the valid
  // region (the firing-pin aperture of a BF annulus: the gun frame the marks
  // are registered to), or to the outer rim of a disk (an FP impression);
  // false = centre of the bounding box of the valid data.
  bool fit_rim_centre = true;
  // Valid points closer than this to the edge of the valid region are
  // weighted down linearly to 0 at the edge (apodization: the edges carry
  // crop-dependent energy, see docs/search.md "The centre"); 0 = off. One
  // low-pass cutoff (lowpass_um): the width over which the Gaussian filter
  // mixes the edge into the data. It was 250 µm with the former 250 µm
  // low-pass and stayed 250 when the low-pass moved to 125 µm; back to one
  // cutoff, no identified mate lost a rank (docs/search.md, "Why two K002
  // mates stay out").
  double edge_taper_um = 125.0;
  // Offset of the ring centre from the estimated one (a query-side
  // translation search computes the query at a few offsets).
  double centre_offset_x_um = 0.0;
  double centre_offset_y_um = 0.0;
  // Rings: radii ring_min_um + i * ring_step_um, i = 0..rings-1, about the
  // centre of the bounding box of the signature's valid data.
  double ring_min_um = 450.0;
  double ring_step_um = 75.0;
  int rings = 24;
  // Points per ring (a power of two; the angular FFT length) and the angular
  // frequencies kept, 1..frequencies (DC dropped: band-passed marks have zero mean).
  // 64 resolve the 125 µm cutoff out to r = 1.3 mm (2 pi r / 64; 213 µm at the
  // outer ring).
  int angular_samples = 256;
  int frequencies = 64;
  // A ring counts only when at least this share of its points is valid;
  // invalid points inside a counted ring are 0 (the band-passed mean).
  double min_ring_valid_fraction = 0.2;
  // A descriptor with fewer counted rings is rejected (nothing to compare).
  int min_valid_rings = 2;

  // Defaults for firing-pin signatures (an impression ~1 mm across: finer rings).
  static DescriptorConfig FiringPin();
  Status Validate() const;  // INVALID_ARGUMENT naming the field
};

// A descriptor: rings x frequencies complex coefficients, quantized to int8
// (re, im interleaved, ring-major), normalized so that the float vector has
// unit L2 norm; `scale` maps int8 back to that float vector.
struct CoarseDescriptor {
  SignatureKind kind = SignatureKind::kBreechFace;
  int rings = 0;
  int frequencies = 0;
  float scale = 0.0f;                 // float value = int8 value * scale
  std::vector<std::int8_t> coeffs;    // size rings * frequencies * 2
  int valid_rings = 0;

  std::size_t bytes() const { return coeffs.size() + sizeof(float); }
};

// INVALID_ARGUMENT for an empty signature, a bad pixel size, too little valid
// data on the rings, or a bad config.
StatusOr<CoarseDescriptor> ComputeDescriptor(const Signature& signature, const DescriptorConfig& config);
// Picks DescriptorConfig{} or DescriptorConfig::FiringPin() by signature.kind.
StatusOr<CoarseDescriptor> ComputeDescriptor(const Signature& signature);

// Centre of the descriptor's rings in µm from the centre of the signature grid
// (x right, y down; the config's centre offsets not applied): the firing-pin
// aperture of a breech-face annulus, the outer rim of a firing-pin disk (see
// docs/search.md, "The centre"). Errors as ComputeDescriptor.
StatusOr<cv::Point2d> DescriptorCentreUm(const Signature& signature, const DescriptorConfig& config = {});

// Rotation-invariant similarity in [-1, 1] (1: identical up to a rotation);
// -2 (below any score) when the shapes differ. The same arithmetic the index
// scan uses, one pair at a time (tests, tools). `best_shift_deg`, when given,
// receives the rotation of c relative to q at the maximum.
float DescriptorSimilarity(const CoarseDescriptor& q, const CoarseDescriptor& c,
                           double* best_shift_deg = nullptr);

// ---------------------------------------------------------------------------
// Index (faiss-like: an interface, a flat implementation, a sharded decorator)
// ---------------------------------------------------------------------------

struct CoarseHit {
  std::int64_t signature_id = 0;
  std::int64_t casing_id = 0;
  float score = 0.0f;   // DescriptorSimilarity(query, candidate)
  int shard = 0;
  int rank = 0;         // 1-based position in a merged list (two-phase search); 0 = its position here
  // Screening stage (SearchEngineConfig::breech_face_screen_k): the cheap
  // correlator's congruent cells and whole-signature CCF; -1 = not screened.
  int screen_cmc = -1;
  float screen_ccf = 0.0f;
  int screen_rank = 0;  // 1-based position in the screened list; 0 = not screened
};

// Higher score first; ties by signature id (deterministic across shardings).
bool HitBefore(const CoarseHit& a, const CoarseHit& b);
// The order of the screened list: screen CMC, then screen CCF, then the
// coarse rank, then signature id. Shared by the engine and a coordinator
// merging shard workers' screened shares.
bool ScreenedBefore(const CoarseHit& a, const CoarseHit& b);

struct CoarseSearchResult {
  std::vector<CoarseHit> hits;       // best first, at most k
  std::int64_t scanned = 0;          // descriptors scored (passed the filter)
  int shards_answered = 0;
  int shards_total = 0;
  bool partial() const { return shards_answered < shards_total; }
};

// Stops a long scan: checked between blocks of descriptors.
struct ScanControl {
  const std::atomic<bool>* cancelled = nullptr;
  // Called with the share of the scan done (0..1), from the scanning thread(s).
  std::function<void(double)> progress;
};

class SignatureIndex {
 public:
  virtual ~SignatureIndex() = default;

  // ALREADY_EXISTS for a signature_id present; INVALID_ARGUMENT when the
  // descriptor's shape differs from the index's (first Add fixes it per kind).
  virtual Status Add(const SignatureRecord& record, const CoarseDescriptor& descriptor) = 0;
  // NOT_FOUND for an unknown id.
  virtual Status Remove(std::int64_t signature_id) = 0;
  virtual std::int64_t Size() const = 0;

  // Top k of the signatures passing `filter` and of the query's kind, by
  // DescriptorSimilarity. `query` holds one descriptor, or the same signature
  // at several centre offsets (a translation search, see
  // SearchEngineConfig::translation_search_um): a candidate's score is the
  // maximum over them (all must have the same kind and shape).
  // CANCELLED when control.cancelled became true.
  virtual StatusOr<CoarseSearchResult> SearchCoarse(std::span<const CoarseDescriptor> query,
                                                    const SearchFilter& filter, int k,
                                                    const ScanControl& control = {}) const = 0;
  StatusOr<CoarseSearchResult> SearchCoarse(const CoarseDescriptor& query, const SearchFilter& filter, int k,
                                            const ScanControl& control = {}) const {
    return SearchCoarse(std::span<const CoarseDescriptor>(&query, 1), filter, k, control);
  }

  // Records and descriptors held (for a query by casing id).
  virtual std::optional<SignatureRecord> FindRecord(std::int64_t signature_id) const = 0;
  virtual std::optional<CoarseDescriptor> FindDescriptor(std::int64_t signature_id) const = 0;
  virtual std::vector<SignatureRecord> RecordsOfCasing(std::int64_t casing_id) const = 0;

  // Heap bytes held (descriptors, ids, filter fields, lookup tables).
  virtual std::size_t MemoryBytes() const = 0;
};

// All descriptors of one kind in contiguous blocks, structure-of-arrays within
// a block (see src/index/flat_index.cc), filter fields in parallel arrays.
// Strings (calibre, agency) are interned to small integer codes.
std::unique_ptr<SignatureIndex> MakeFlatIndex();

// Owns `shards` sub-indexes; Add routes by record.shard (INVALID_ARGUMENT when
// out of range); SearchCoarse scans the shards on up to `threads` threads and
// merges their top k (the coordinator merges remote shards the same way, with
// MergeTopK). Sub-indexes are flat unless given.
std::unique_ptr<SignatureIndex> MakeShardedIndex(int shards, int threads);
std::unique_ptr<SignatureIndex> MakeShardedIndex(std::vector<std::unique_ptr<SignatureIndex>> shards, int threads);

// Merges per-shard results (each best first) into the overall top k.
CoarseSearchResult MergeTopK(std::span<const CoarseSearchResult> per_shard, int k);

// ---------------------------------------------------------------------------
// Search engine: coarse stage, rerank with the correlator, merge
// ---------------------------------------------------------------------------

// Where the engine gets the full signatures of the candidates it reranks (the
// store, a shard worker's cache, the synthetic generator). Must be thread-safe.
class SignatureSource {
 public:
  virtual ~SignatureSource() = default;
  // NOT_FOUND for an unknown id.
  virtual StatusOr<Signature> Load(std::int64_t signature_id) const = 0;
  // The signature for the screening stage, whose correlator resamples it to
  // pixel_um anyway: a source holding a coarse form at that grid returns it
  // (RerankCache's screen forms); the default is Load.
  virtual StatusOr<Signature> LoadForScreen(std::int64_t signature_id, double pixel_um) const {
    (void)pixel_um;
    return Load(signature_id);
  }
};

// ---------------------------------------------------------------------------
// Rerank memory: a compact form of the signatures held for the CMC rerank
// ---------------------------------------------------------------------------

// A signature as the rerank needs it, in ~1/8 of the float grid's bytes
// (docs/search.md, "Rerank memory"):
//  - resampled (area average, NaN-aware: a point is valid where at least half
//    of its footprint was, exactly as the correlator builds its grids) to
//    `hold_pixel_um` when that is coarser than the signature's pixel: the
//    correlator registers cells on CorrelationConfig::cell_pixel_um (12.5 µm
//    for a breech face) and everything else on coarser grids, so the 6.25 µm
//    points are never used as they are;
//  - heights quantized to int16, height = offset + step * q with one
//    (offset, step) per signature spanning its own range (step = range / 65534:
//    ~0.2 nm for a 12 µm band-passed range, far below a 3D microscope's noise),
//    and kCompactInvalid as the NaN sentinel.
// Quality metrics are not kept (the rerank does not use them).
inline constexpr std::int16_t kCompactInvalid = std::numeric_limits<std::int16_t>::min();

struct CompactSignature {
  SignatureKind kind = SignatureKind::kBreechFace;
  Modality modality = Modality::kTopography3d;
  std::string pipeline_version;
  double pixel_um = 0.0;
  int rows = 0, cols = 0;
  float offset = 0.0f;  // height of q = 0
  float step = 0.0f;    // height per unit of q
  std::vector<std::int16_t> heights;  // rows * cols, row-major; kCompactInvalid = NaN

  // Heap and object bytes held.
  std::size_t bytes() const { return sizeof(*this) + heights.capacity() * sizeof(std::int16_t) + pipeline_version.capacity(); }
};

// hold_pixel_um <= the signature's pixel (or 0) keeps its grid. INVALID_ARGUMENT
// for an empty signature, a bad pixel size, a negative or non-finite
// hold_pixel_um, or one so coarse that nothing is left.
StatusOr<CompactSignature> CompactSignatureOf(const Signature& signature, double hold_pixel_um);
// The float signature back (quality metrics zero).
Signature ExpandSignature(const CompactSignature& compact);

// The grid the rerank registers cells on for a kind: what a compact rerank
// form should be held at.
double RerankPixelUm(const CorrelationConfig& config);

// A SignatureSource holding compact signatures within a memory budget. Beyond
// the budget the least recently used ones are dropped, and a Load of a
// signature not held calls `fetch` (a shard worker: PostgreSQL) and keeps the
// result (least recently used out). Thread-safe. Two concurrent misses of the
// same id may both fetch (harmless: the same data).
struct RerankCacheConfig {
  // Bytes of compact signatures held at most (index entry overhead counted);
  // SIZE_MAX = everything that is Put stays.
  std::size_t budget_bytes = std::numeric_limits<std::size_t>::max();
  double breech_face_pixel_um = 12.5;  // hold grids (RerankPixelUm of the rerank's configs)
  double firing_pin_pixel_um = 6.25;
  // Screen forms (docs/search.md, "Screening"): every signature Put or fetched
  // is also held at the screening stage's cell grid, heights int8 (~4.6 KB
  // for a Fadul breech face at 50 µm), outside the budget, so that the screen
  // of 500 candidates reads no database even when the budget holds no compact
  // form. 0 = none for that kind.
  double breech_face_screen_pixel_um = 0.0;
  double firing_pin_screen_pixel_um = 0.0;
};

// The cache config a search engine's worker uses: hold grids of its rerank
// correlators, screen forms for the kinds it screens.
struct SearchEngineConfig;
RerankCacheConfig RerankCacheConfigFor(const SearchEngineConfig& config);

class RerankCache final : public SignatureSource {
 public:
  // The full signature of a signature id, or NOT_FOUND.
  using Fetch = std::function<StatusOr<Signature>(std::int64_t signature_id)>;
  explicit RerankCache(const RerankCacheConfig& config, Fetch fetch = {});
  ~RerankCache() override;

  // Compacts and holds (replacing a held one); may evict others, or not keep
  // it at all when it alone exceeds the budget. INVALID_ARGUMENT as CompactSignatureOf.
  Status Put(std::int64_t signature_id, const Signature& signature);
  void Erase(std::int64_t signature_id);
  // Held: expanded; not held: fetched (NOT_FOUND without a fetch), kept, expanded.
  StatusOr<Signature> Load(std::int64_t signature_id) const override;
  // The held screen form at pixel_um (made from the compact form, so the same
  // whichever way the signature arrived); without one, Load, and a screen
  // form made and kept when its kind has a screen grid equal to pixel_um.
  StatusOr<Signature> LoadForScreen(std::int64_t signature_id, double pixel_um) const override;

  bool Holds(std::int64_t signature_id) const;
  std::size_t bytes() const;         // compact and screen forms with their bookkeeping
  std::size_t screen_bytes() const;  // the screen forms' share of bytes()
  std::int64_t screen_held() const;
  std::int64_t held() const;
  std::int64_t hits() const;
  std::int64_t misses() const;     // Loads of a signature not held
  std::int64_t evictions() const;
  const RerankCacheConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The query: signatures (BF and/or FP), or a casing whose signatures are in
// the index (its own signatures are then excluded from the results).
struct SearchQuery {
  std::optional<Signature> breech_face;
  std::optional<Signature> firing_pin;
  std::optional<std::int64_t> casing_id;
};

struct SearchRequest {
  SearchQuery query;
  SearchFilter filter;
  int top_n = 20;          // length of each returned list
  int rerank_k = 0;        // candidates per kind reranked by CMC; 0 = SearchEngineConfig default
  // Candidates per kind of the coarse stage that the screening stage orders
  // for the rerank (docs/search.md, "Screening"): 0 = the config's default for
  // the kind, -1 = no screening; screening happens only when this exceeds the
  // rerank K.
  int screen_k = 0;
  std::optional<double> max_rotation_deg;  // passed to the correlator; unset = any orientation
  // Two-phase search across shard workers (docs/search.md, "Two-phase merge").
  // Phase 1: stop after the coarse stage; SearchResults::coarse_breech_face /
  // coarse_firing_pin hold each kind's top rerank_k (no rerank, empty lists).
  bool coarse_only = false;
  // Phase 2: instead of the coarse stage, rerank exactly these candidates (the
  // merged coarse top K of every worker, each with its global `rank`); the
  // ones this index does not hold, or not of a query kind, are skipped.
  std::optional<std::vector<CoarseHit>> rerank_hits;
  // With rerank_hits: screen them instead of reranking (the middle phase of a
  // three-phase search: the coordinator sends the global coarse ranks below
  // CoarseKeptBeforeScreen): coarse_breech_face / coarse_firing_pin then hold
  // this index's share, screened, in ScreenedBefore order, at most rerank K
  // less the coarse-kept ones.
  bool screen_only = false;
};

struct Candidate {
  std::int64_t casing_id = 0;
  std::int64_t signature_id = 0;
  int shard = 0;
  int rank = 0;              // 1-based position in its list
  int coarse_rank = 0;       // 1-based position in the coarse list
  float coarse_score = 0.0f;
  int screen_rank = 0;       // 1-based position in the screened list; 0 = not screened
  int screen_cmc = -1;       // the screening stage's congruent cells; -1 = not screened
  std::optional<ComparisonResult> comparison;  // CMC result (absent if it could not be compared)
  double score = 0.0;        // what the list is sorted by (CMC count, then CCF)
};

struct CombinedCandidate {
  std::int64_t casing_id = 0;
  int rank = 0;
  std::optional<Candidate> breech_face;
  std::optional<Candidate> firing_pin;
  // Sum of the BF and FP CMC counts, each as a share of its cells
  // (docs/search.md): a casing seen in one list only gets that list's share.
  double combined_score = 0.0;
};

struct SearchResults {
  std::vector<Candidate> breech_face;
  std::vector<Candidate> firing_pin;
  std::vector<CombinedCandidate> combined;
  int shards_answered = 0;
  int shards_total = 0;
  bool partial = false;                 // some shard did not answer
  std::int64_t signatures_scanned = 0;  // coarse stage, all kinds
  int reranked = 0;                     // CMC comparisons done
  int screened = 0;                     // screening comparisons done
  double screen_seconds = 0.0;
  double coarse_seconds = 0.0;
  double rerank_seconds = 0.0;
  // SearchRequest::coarse_only: the coarse top K per kind, best first (K =
  // the screen K when screening); screen_only: the screened share.
  std::vector<CoarseHit> coarse_breech_face;
  std::vector<CoarseHit> coarse_firing_pin;
};

enum class SearchStage { kDescriptor, kCoarse, kScreen, kRerank, kMerge };
std::string_view SearchStageName(SearchStage s);  // "descriptor", "coarse", "screen", "rerank", "merge"
// fraction 0..1 of the stage; called from worker threads (must be thread-safe).
using SearchProgress = std::function<void(SearchStage stage, double fraction)>;

struct SearchEngineConfig {
  // Default K (candidates per kind reranked by CMC), from the measured recall
  // of the coarse stage (docs/search.md).
  int default_rerank_k = 50;
  int max_rerank_k = 5000;
  int max_top_n = 1000;
  int rerank_threads = 2;
  // Query-side translation search of the coarse stage: the query descriptor
  // is computed with its ring centre moved by i * translation_search_um,
  // i = -translation_steps..translation_steps in x and y, and every candidate
  // scores the best of them ((2 steps + 1)^2 times the scan arithmetic, the
  // same memory traffic). Covers the residual offset of the centre estimate
  // between two shots (docs/search.md). 0 steps = off.
  double translation_search_um = 40.0;
  int translation_steps = 1;
  // Outer ring of the translation search: the offsets with
  // translation_steps < max(|i|, |j|) <= outer_translation_steps (16 more
  // for 2: out to +-80 µm), for the casings whose centre estimate is off by
  // more than the inner grid covers. They score only the coarse top
  // outer_rescore_k of the inner search (cheap), and their score is lowered by
  // how much higher the outer set's outer_tail_rank-th best score over those
  // candidates is than the inner set's: more hypotheses raise the chance
  // maxima of non-mates, and this puts both sets' non-mate tails level before
  // the better of the two is kept (docs/search.md). 0 = off.
  int outer_translation_steps = 2;
  int outer_rescore_k = 5000;
  int outer_tail_rank = 100;
  // Screening stage between the coarse stage and the rerank (docs/search.md,
  // "Screening"): the coarse top screen K of a kind get a cheap registration
  // and cell vote (ScreenCorrelationConfig of the kind's correlation config,
  // ~4 ms a candidate against ~20 for the rerank); its best fill the part of
  // the rerank K that the coarse order does not (screen_coarse_share). Where the coarse descriptor ranks a true mate low (a
  // pair that agrees in a few cells only: the DFSC K002 pair, coarse rank
  // 362 of 100,053), the cell vote still finds it. BF: 500, from the measured
  // recall (docs/search.md); FP: off (no firing-pin mate was lost by the
  // coarse stage). A value <= the rerank K turns it off.
  int breech_face_screen_k = 500;
  int firing_pin_screen_k = 0;
  int max_screen_k = 20000;
  // With screening, the coarse top ceil(rerank K * screen_coarse_share) go to
  // the rerank as they are and the screen fills the rest from the coarse ranks
  // below them: neither stage can lose a mate the other ranks high (the cell
  // vote at 50 µm misses some partial Fadul impressions the descriptor ranks
  // 2-4; the descriptor misses the K002 pair that the cell vote ranks 2).
  double screen_coarse_share = 0.5;
  DescriptorConfig breech_face_descriptor = DescriptorConfig{};
  DescriptorConfig firing_pin_descriptor = DescriptorConfig::FiringPin();
  CorrelationConfig breech_face_correlation = CorrelationConfig{};
  CorrelationConfig firing_pin_correlation = CorrelationConfig::FiringPin();
};

// The screening stage's correlator config, derived from the rerank's: cells
// 4x coarser (50 µm for a breech face: the correlator's orientation grid),
// located directly on that grid, the three best orientation candidates at
// their own angle only, no centre search for the polar profile. It orders
// candidates; it decides nothing (docs/search.md, "Screening").
CorrelationConfig ScreenCorrelationConfig(const CorrelationConfig& rerank);

// How many of the rerank K the coarse order fills when screening (the rest
// come from the screen): ceil(k * share), at most k.
int CoarseKeptBeforeScreen(int rerank_k, double screen_coarse_share);
// The screen K of a request for a kind: request.screen_k, or the config's
// default for the kind when 0; 0 (no screening) when -1 or not above rerank_k.
// Shared by the engine and a coordinator.
int ScreenKFor(const SearchRequest& request, SignatureKind kind, int rerank_k, const SearchEngineConfig& config);

// The order of the ranked lists: compared candidates first, then CMC count,
// whole-signature CCF at the registration, coarse score, signature id. Shared
// by the engine and by a coordinator merging shard workers' lists.
bool CandidateRanksBefore(const Candidate& a, const Candidate& b);

class SearchEngine {
 public:
  // INVALID_ARGUMENT for a bad config; the index and source must outlive nothing:
  // they are shared.
  static StatusOr<std::unique_ptr<SearchEngine>> Create(std::shared_ptr<const SignatureIndex> index,
                                                        std::shared_ptr<const SignatureSource> source,
                                                        const SearchEngineConfig& config = {});
  ~SearchEngine();

  // INVALID_ARGUMENT for an empty query, top_n / rerank_k out of range;
  // NOT_FOUND for a query casing not in the index; CANCELLED when *cancelled
  // became true (the search stops using CPU within one block / one comparison).
  StatusOr<SearchResults> Search(const SearchRequest& request, const SearchProgress& progress = {},
                                 const std::atomic<bool>* cancelled = nullptr) const;

  // The coarse stage alone (all translation variants of the query, the outer
  // ring rescoring): the top k of the index for one query signature, as
  // Search reranks them. For benchmarks and tools.
  StatusOr<CoarseSearchResult> SearchCoarse(const Signature& query, const SearchFilter& filter, int k,
                                            const ScanControl& control = {}) const;

  const SearchEngineConfig& config() const;

 private:
  struct Impl;
  explicit SearchEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ballistics
