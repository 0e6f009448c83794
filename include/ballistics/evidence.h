// evidence stage: from a comparison score (CMC count out of N cells) to a
// calibrated likelihood ratio and error-rate estimates, with the reference data
// they rest on named next to every number (docs/accuracy.md, "Evidence strength").
//
//   reference population (KM and KNM CMC scores of one signature kind, optionally
//   one calibre) --FitEvidenceModel--> EvidenceModel --EvaluateLr--> LrResult
//
// Two models, both fitted on the same reference population:
//   * Error rates (Song et al. 2018, "Estimating error rates for firearm evidence
//     identifications in forensic science", Forensic Sci. Int. 284): the CMC count
//     of a pair with N cells is Binomial(N, p) with p_KNM (chance congruence) and
//     p_KM estimated from the reference counts; the false-positive rate at the
//     decision threshold C is the binomial upper tail P(X >= C | KNM), the
//     false-negative rate the lower tail P(X < C | KM). Next to it the plain
//     empirical rates. Every rate has a Clopper-Pearson (1934) interval.
//   * Likelihood ratio: beta-binomial fits of the KM and the KNM CMC counts
//     (maximum likelihood; the beta-binomial absorbs the overdispersion a plain
//     binomial ignores, cf. Zemmels et al. 2023 and the score-based LRs of Riva &
//     Champod 2014), LR(c, N) = BB(c; N, KM) / BB(c; N, KNM). The ratio of two
//     fitted densities is unbounded in the tails, where there are no data, so it
//     is clamped to the empirical lower and upper bounds (ELUB, Vergeer et al.
//     2016, "Numerical likelihood ratios outputted by LR systems are often based
//     on extrapolation: when to stop extrapolating?", Sci. Justice 56): roughly,
//     no LR above the number of KNM reference pairs or below 1 / the number of KM
//     reference pairs is supported by the data. A small reference population gets
//     tight bounds and a flag; an empty one (no KM or no KNM pair) gives no LR.
//
// Validation (Brümmer & du Preez 2006, "Application-independent evaluation of
// speaker detection", Comput. Speech Lang. 20): Cllr, Cllr-min after the pool
// adjacent violators (PAV) transform, rates of misleading evidence, Tippett and
// empirical cross-entropy (ECE, Ramos et al. 2013) plots, with leave-source-out
// cross-validation.
//
// Pure domain code: no SQL, no gRPC. Errors as Status at the boundary.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballistics/status.h"
#include "ballistics/surface.h"

namespace ballistics::evidence {

// One comparison's score as the correlate stage reports it.
struct CmcScore {
  int cmc = 0;    // congruent matching cells (pair score: the smaller direction)
  int cells = 0;  // cells of the direction that gave `cmc`
};

// Known-match and known-non-match scores of one kind of signature.
struct ReferencePopulation {
  std::string name;                 // "fadul" (free text, shown in the basis)
  SignatureKind kind = SignatureKind::kBreechFace;
  std::string calibre;              // "" = any calibre
  std::string pipeline_version;     // normalization + scorer the scores came from
  std::vector<CmcScore> km;
  std::vector<CmcScore> knm;
};

// INVALID_ARGUMENT naming the pair when cells < 1, cmc < 0 or cmc > cells.
Status ValidateScore(const CmcScore& s);

struct EvidenceConfig {
  int decision_threshold_cmc = 6;   // NIST C >= 6 (CorrelationConfig::cmc_threshold)
  double confidence = 0.95;         // of every Clopper-Pearson interval
  // Below either size the population is "small": LRs are still given (ELUB keeps
  // them within what the data support) but flagged. Not a tuned value: with 20
  // pairs a single misleading pair moves an empirical rate by 5 %.
  int min_km_pairs = 20;
  int min_knm_pairs = 20;
  // ELUB: misleading dummy pairs added to each side (Vergeer et al. 2016 use 1).
  int elub_dummy_pairs = 1;
  Status Validate() const;
};

struct BetaBinomial {
  double alpha = 1, beta = 1;
  double Mean() const { return alpha / (alpha + beta); }
};
// log P(X = k) for X ~ BetaBinomial(n, alpha, beta); -inf outside 0..n.
double BetaBinomialLogPmf(int k, int n, const BetaBinomial& bb);
// Maximum-likelihood fit over scores with varying n (Nelder-Mead on logit mean
// and log precision, both kept in a finite box so all-zero counts stay finite).
// INVALID_ARGUMENT for an empty list or a bad score.
StatusOr<BetaBinomial> FitBetaBinomial(std::span<const CmcScore> scores);

// Binomial tails, exact sums (n up to a few 10^5).
double BinomialUpperTail(int k, int n, double p);  // P(X >= k)
double BinomialLowerTail(int k, int n, double p);  // P(X <= k)

struct Interval {
  double estimate = 0, lower = 0, upper = 0;
};
// Clopper-Pearson exact interval for k successes in n trials at `confidence`.
// n = 0 gives [0, 1].
Interval ClopperPearson(std::int64_t k, std::int64_t n, double confidence);

// Error rates at the decision threshold, empirical and from Song's binomial model.
struct ErrorRates {
  int threshold_cmc = 6;
  std::int64_t km_pairs = 0, knm_pairs = 0;
  std::int64_t false_negatives = 0, false_positives = 0;  // in the reference data
  Interval empirical_fnr, empirical_fpr;                  // Clopper-Pearson on the counts above
  Interval p_km, p_knm;             // per-cell congruence probability, CP on (sum CMC, sum cells)
  // The binomial tails averaged over the cell counts of the reference pairs of
  // the class, at p and at the CP bounds of p (the tails are monotone in p).
  Interval binomial_fnr, binomial_fpr;
};

// Everything needed to turn a score into an LR; serializable (ModelToJson).
struct EvidenceModel {
  static constexpr std::string_view kModelName = "beta-binomial CMC + ELUB";
  std::string name;
  SignatureKind kind = SignatureKind::kBreechFace;
  std::string calibre;
  std::string pipeline_version;
  EvidenceConfig config;
  std::vector<CmcScore> km, knm;    // the reference population itself
  BetaBinomial km_fit, knm_fit;
  double log10_lr_lower = 0, log10_lr_upper = 0;  // ELUB
  ErrorRates rates;
  bool small_reference = false;
};

// FAILED_PRECONDITION when the population has no KM or no KNM pair (no LR can
// be calibrated), INVALID_ARGUMENT for bad scores or config.
StatusOr<EvidenceModel> FitEvidenceModel(const ReferencePopulation& population,
                                         const EvidenceConfig& config = {});

struct LrResult {
  bool available = false;
  double lr = 1, log10_lr = 0;      // after the ELUB clamp
  double log10_lr_unbounded = 0;    // the ratio of the fits before the clamp
  bool at_bound = false;            // clamped to an ELUB bound
  bool small_reference = false;
  std::int64_t km_pairs = 0, knm_pairs = 0;
  // Song's binomial tail for this pair: P(CMC >= observed | KNM, N = its cells),
  // with the interval from the CP bounds of p_KNM.
  Interval chance_tail;
  // One line for examiners and CSV files (never a comma), e.g. "beta-binomial CMC +
  // ELUB; reference fadul BF: 63 KM / 717 KNM pairs; LR bounds 1/64 to 707". Without a model:
  // "no calibrated LR available (no reference population)".
  std::string basis;
};

inline constexpr std::string_view kNoLrBasis = "no calibrated LR available (no reference population)";

// model == nullptr: available = false with kNoLrBasis. INVALID_ARGUMENT for a bad score.
StatusOr<LrResult> EvaluateLr(const EvidenceModel* model, const CmcScore& score);

// ---- serialization (one JSON object; the store keeps the same text) ----
std::string ModelToJson(const EvidenceModel& model);
// INVALID_ARGUMENT naming the field that is missing or out of range.
StatusOr<EvidenceModel> ModelFromJson(std::string_view json);

// ---- validation ----

struct ScoredLr {
  bool same_source = false;
  double log10_lr = 0;              // 0 (LR 1) where no LR was available
  bool available = false;
};

struct ValidationMetrics {
  std::int64_t km = 0, knm = 0, unavailable = 0;
  double cllr = 0;                  // bits; 1 = neutral system, 0 = perfect
  double cllr_min = 0;              // after PAV (discrimination only)
  double cllr_cal = 0;              // cllr - cllr_min (calibration loss)
  std::int64_t km_misleading = 0;   // KM with LR < 1
  std::int64_t knm_misleading = 0;  // KNM with LR > 1
  double rmep = 0, rmed = 0;        // rates of misleading evidence (KM side, KNM side)
  Interval rmep_ci, rmed_ci;        // Clopper-Pearson
  double min_log10_lr_km = 0, max_log10_lr_knm = 0;
};

// Cllr = 1/(2 N_km) sum log2(1 + 1/LR) + 1/(2 N_knm) sum log2(1 + LR).
// INVALID_ARGUMENT when either class is empty.
StatusOr<ValidationMetrics> ComputeMetrics(std::span<const ScoredLr> lrs);
// PAV-optimal log10 LRs for the given scores (same order); ties pooled; may be +-inf.
std::vector<double> PavLog10Lr(std::span<const ScoredLr> lrs);

// A pair with its two sources (firearm, slide) for leave-source-out validation.
struct LabeledPair {
  std::string reference, target;                // scan names
  std::string reference_source, target_source;  // firearm / slide
  CmcScore score;
  bool SameSource() const { return reference_source == target_source; }
};

struct CrossValidatedPair {
  LabeledPair pair;
  LrResult lr;
};

// Leave-source-out: each pair gets its LR from a model fitted on the pairs that
// involve neither of its two sources (for KM pairs: leave-one-firearm-out).
// Pairs whose training set lacks KM or KNM pairs get no LR (counted as LR 1 in
// the metrics, and reported). `base` gives name, kind, calibre and version.
StatusOr<std::vector<CrossValidatedPair>> CrossValidate(std::span<const LabeledPair> pairs,
                                                        const ReferencePopulation& base,
                                                        const EvidenceConfig& config = {});

// ---- plots (PNG, drawn with OpenCV) ----
// Tippett plot: share of KM and KNM pairs with log10 LR >= x.
// ECE plot: empirical cross-entropy against prior log10 odds for the system,
// after PAV, and the neutral reference (Ramos et al. 2013).
// INVALID_ARGUMENT when a class is empty, INTERNAL when the file cannot be written.
Status WriteTippettPlot(std::span<const ScoredLr> lrs, const std::string& title, const std::string& png_path);
Status WriteEcePlot(std::span<const ScoredLr> lrs, const std::string& title, const std::string& png_path);

// Empirical cross-entropy at prior log10 odds (for tests and plots), bits.
double EmpiricalCrossEntropy(std::span<const ScoredLr> lrs, double prior_log10_odds);

}  // namespace ballistics::evidence
