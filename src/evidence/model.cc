// Fitting the evidence model on a reference population and evaluating LRs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballistics/evidence.h"

namespace ballistics::evidence {
namespace {

double UnboundedLog10Lr(const EvidenceModel& m, const CmcScore& s) {
  return (BetaBinomialLogPmf(s.cmc, s.cells, m.km_fit) - BetaBinomialLogPmf(s.cmc, s.cells, m.knm_fit)) /
         std::log(10.0);
}

// Empirical lower and upper bounds (ELUB; Vergeer et al. 2016, Sci. Justice 56:482).
//
// Idea of the paper: an LR of 10^t can only be trusted as far as the LR system,
// used to take decisions at that value, does better than the neutral system
// (LR = 1 always, i.e. deciding on the prior alone) on the reference data, even
// after one misleading dummy pair per hypothesis is added. As we implement it:
// at threshold T (decide "same source" when LR >= T, prior odds 1/T, equal
// costs), with d dummies per side,
//   P_miss(T) = (#KM with LR < T + d) / (N_KM + d)
//   P_fa(T)   = (#KNM with LR >= T + d) / (N_KNM + d)
// the system's Bayes risk is (P_miss + T P_fa) / (1 + T); the neutral system's is
// 1 / (1 + T) for T > 1 and T / (1 + T) for T < 1. The upper bound is the largest
// T up to which P_miss + T P_fa <= 1 holds at every T' in (1, T]; the lower bound
// the smallest T down to which P_miss / T + P_fa <= 1 holds at every T' in [T, 1).
// With perfectly separated data this gives UB = (N_KNM + d) N_KM / (N_KM + d) and
// LB = (N_KNM + d) / ((N_KM + d) N_KNM): the LR cannot exceed about the number of
// KNM reference pairs nor fall below about 1 / the number of KM pairs.
void Elub(const std::vector<double>& km_log10, const std::vector<double>& knm_log10, int dummies,
          double* log10_lower, double* log10_upper) {
  const double nk = static_cast<double>(km_log10.size()), nn = static_cast<double>(knm_log10.size());
  std::vector<double> km = km_log10, knm = knm_log10;
  std::sort(km.begin(), km.end());
  std::sort(knm.begin(), knm.end());
  auto p_miss = [&](double t) {  // share of KM below log10 T
    return (static_cast<double>(std::lower_bound(km.begin(), km.end(), t) - km.begin()) + dummies) /
           (nk + dummies);
  };
  auto p_fa = [&](double t) {  // share of KNM at or above log10 T
    return (static_cast<double>(knm.end() - std::lower_bound(knm.begin(), knm.end(), t)) + dummies) /
           (nn + dummies);
  };
  // No bound can exceed log10(N + d) (the dummy alone rules it out), so a grid of
  // 0.001 in log10 up to there is enough.
  constexpr double kStep = 0.001;
  const double t_max = std::log10(std::max(nk, nn) + dummies) + kStep;
  double upper = 0;
  for (double t = kStep; t <= t_max; t += kStep) {
    if (p_miss(t) + std::pow(10.0, t) * p_fa(t) > 1) break;
    upper = t;
  }
  double lower = 0;
  for (double t = -kStep; t >= -t_max; t -= kStep) {
    if (p_miss(t) / std::pow(10.0, t) + p_fa(t) > 1) break;
    lower = t;
  }
  *log10_lower = lower;
  *log10_upper = upper;
}

ErrorRates ComputeErrorRates(const std::vector<CmcScore>& km, const std::vector<CmcScore>& knm,
                             const EvidenceConfig& config) {
  ErrorRates r;
  r.threshold_cmc = config.decision_threshold_cmc;
  r.km_pairs = static_cast<std::int64_t>(km.size());
  r.knm_pairs = static_cast<std::int64_t>(knm.size());
  std::int64_t km_cmc = 0, km_cells = 0, knm_cmc = 0, knm_cells = 0;
  for (const CmcScore& s : km) {
    km_cmc += s.cmc, km_cells += s.cells;
    if (s.cmc < r.threshold_cmc) ++r.false_negatives;
  }
  for (const CmcScore& s : knm) {
    knm_cmc += s.cmc, knm_cells += s.cells;
    if (s.cmc >= r.threshold_cmc) ++r.false_positives;
  }
  r.empirical_fnr = ClopperPearson(r.false_negatives, r.km_pairs, config.confidence);
  r.empirical_fpr = ClopperPearson(r.false_positives, r.knm_pairs, config.confidence);
  // Song et al. 2018: cells of a KNM pair are congruent by chance independently
  // with probability p_KNM, so CMC ~ Binomial(N, p_KNM); likewise for KM pairs.
  // p is estimated from the pooled cells (an interval that treats cells as
  // independent trials: narrower than the truth where cells are correlated).
  r.p_km = ClopperPearson(km_cmc, km_cells, config.confidence);
  r.p_knm = ClopperPearson(knm_cmc, knm_cells, config.confidence);
  auto mean_tail = [](const std::vector<CmcScore>& v, auto tail) {
    double sum = 0;
    for (const CmcScore& s : v) sum += tail(s.cells);
    return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
  };
  const int c = r.threshold_cmc;
  auto fpr = [&](double p) { return mean_tail(knm, [&](int n) { return BinomialUpperTail(c, n, p); }); };
  auto fnr = [&](double p) { return mean_tail(km, [&](int n) { return BinomialLowerTail(c - 1, n, p); }); };
  // Upper tail grows with p, lower tail falls with p.
  r.binomial_fpr = {fpr(r.p_knm.estimate), fpr(r.p_knm.lower), fpr(r.p_knm.upper)};
  r.binomial_fnr = {fnr(r.p_km.estimate), fnr(r.p_km.upper), fnr(r.p_km.lower)};
  return r;
}

std::string FormatLr(double log10_lr) {
  char buf[64];
  const double lr = std::pow(10.0, log10_lr);
  if (log10_lr >= 0) {
    std::snprintf(buf, sizeof(buf), lr >= 100 ? "%.0f" : "%.3g", lr);
  } else {
    std::snprintf(buf, sizeof(buf), "1/%.3g", 1.0 / lr);
  }
  return buf;
}

std::string Basis(const EvidenceModel& m) {
  std::string s = std::string(EvidenceModel::kModelName) + "; reference " + (m.name.empty() ? "?" : m.name) + " " +
                  std::string(SignatureKindName(m.kind));
  if (!m.calibre.empty()) s += " " + m.calibre;
  s += ": " + std::to_string(m.km.size()) + " KM / " + std::to_string(m.knm.size()) + " KNM pairs; LR bounds " +
       FormatLr(m.log10_lr_lower) + " to " + FormatLr(m.log10_lr_upper);
  if (m.small_reference) s += "; SMALL REFERENCE POPULATION";
  return s;
}

}  // namespace

Status EvidenceConfig::Validate() const {
  if (decision_threshold_cmc < 1) {
    return InvalidArgument("evidence: decision_threshold_cmc=" + std::to_string(decision_threshold_cmc) +
                           " must be at least 1");
  }
  if (!(confidence > 0 && confidence < 1)) {
    return InvalidArgument("evidence: confidence=" + std::to_string(confidence) + " must lie in (0, 1)");
  }
  if (min_km_pairs < 0 || min_knm_pairs < 0) return InvalidArgument("evidence: minimum pair counts must be >= 0");
  if (elub_dummy_pairs < 1) {
    return InvalidArgument("evidence: elub_dummy_pairs=" + std::to_string(elub_dummy_pairs) +
                           " must be at least 1 (without dummies ELUB bounds nothing)");
  }
  return Status::Ok();
}

StatusOr<EvidenceModel> FitEvidenceModel(const ReferencePopulation& population, const EvidenceConfig& config) {
  BALLISTICS_RETURN_IF_ERROR(config.Validate());
  for (const auto* v : {&population.km, &population.knm}) {
    for (const CmcScore& s : *v) BALLISTICS_RETURN_IF_ERROR(ValidateScore(s));
  }
  if (population.km.empty() || population.knm.empty()) {
    return FailedPrecondition("evidence: reference population '" + population.name + "' has " +
                              std::to_string(population.km.size()) + " KM and " +
                              std::to_string(population.knm.size()) +
                              " KNM pairs; both are needed to calibrate an LR");
  }
  EvidenceModel m;
  m.name = population.name;
  m.kind = population.kind;
  m.calibre = population.calibre;
  m.pipeline_version = population.pipeline_version;
  m.config = config;
  m.km = population.km;
  m.knm = population.knm;
  BALLISTICS_ASSIGN_OR_RETURN(m.km_fit, FitBetaBinomial(m.km));
  BALLISTICS_ASSIGN_OR_RETURN(m.knm_fit, FitBetaBinomial(m.knm));
  std::vector<double> km_log10, knm_log10;
  for (const CmcScore& s : m.km) km_log10.push_back(UnboundedLog10Lr(m, s));
  for (const CmcScore& s : m.knm) knm_log10.push_back(UnboundedLog10Lr(m, s));
  Elub(km_log10, knm_log10, config.elub_dummy_pairs, &m.log10_lr_lower, &m.log10_lr_upper);
  m.rates = ComputeErrorRates(m.km, m.knm, config);
  m.small_reference = static_cast<int>(m.km.size()) < config.min_km_pairs ||
                      static_cast<int>(m.knm.size()) < config.min_knm_pairs;
  return m;
}

StatusOr<LrResult> EvaluateLr(const EvidenceModel* model, const CmcScore& score) {
  BALLISTICS_RETURN_IF_ERROR(ValidateScore(score));
  LrResult r;
  if (model == nullptr) {
    r.basis = std::string(kNoLrBasis);
    return r;
  }
  r.available = true;
  r.km_pairs = static_cast<std::int64_t>(model->km.size());
  r.knm_pairs = static_cast<std::int64_t>(model->knm.size());
  r.small_reference = model->small_reference;
  r.log10_lr_unbounded = UnboundedLog10Lr(*model, score);
  r.log10_lr = std::clamp(r.log10_lr_unbounded, model->log10_lr_lower, model->log10_lr_upper);
  r.at_bound = r.log10_lr != r.log10_lr_unbounded;
  r.lr = std::pow(10.0, r.log10_lr);
  const ErrorRates& e = model->rates;
  r.chance_tail = {BinomialUpperTail(score.cmc, score.cells, e.p_knm.estimate),
                   BinomialUpperTail(score.cmc, score.cells, e.p_knm.lower),
                   BinomialUpperTail(score.cmc, score.cells, e.p_knm.upper)};
  r.basis = Basis(*model);
  return r;
}

// ---- JSON ----

namespace {

constexpr std::string_view kFormat = "ballistics-evidence-model-1";

nlohmann::json Scores(const std::vector<CmcScore>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (const CmcScore& s : v) a.push_back({s.cmc, s.cells});
  return a;
}

nlohmann::json Iv(const Interval& i) { return {{"estimate", i.estimate}, {"lower", i.lower}, {"upper", i.upper}}; }

}  // namespace

std::string ModelToJson(const EvidenceModel& m) {
  const ErrorRates& e = m.rates;
  nlohmann::json j{
      {"format", kFormat},
      {"model", EvidenceModel::kModelName},
      {"name", m.name},
      {"kind", std::string(SignatureKindName(m.kind))},
      {"calibre", m.calibre},
      {"pipeline_version", m.pipeline_version},
      {"config",
       {{"decision_threshold_cmc", m.config.decision_threshold_cmc},
        {"confidence", m.config.confidence},
        {"min_km_pairs", m.config.min_km_pairs},
        {"min_knm_pairs", m.config.min_knm_pairs},
        {"elub_dummy_pairs", m.config.elub_dummy_pairs}}},
      {"km", Scores(m.km)},
      {"knm", Scores(m.knm)},
      // Derived values, written for readers; ModelFromJson refits from the scores
      // and config, so a hand-edited fit can never disagree with its data.
      {"km_fit", {{"alpha", m.km_fit.alpha}, {"beta", m.km_fit.beta}}},
      {"knm_fit", {{"alpha", m.knm_fit.alpha}, {"beta", m.knm_fit.beta}}},
      {"log10_lr_lower", m.log10_lr_lower},
      {"log10_lr_upper", m.log10_lr_upper},
      {"small_reference", m.small_reference},
      {"error_rates",
       {{"threshold_cmc", e.threshold_cmc},
        {"false_negatives", e.false_negatives},
        {"false_positives", e.false_positives},
        {"empirical_fnr", Iv(e.empirical_fnr)},
        {"empirical_fpr", Iv(e.empirical_fpr)},
        {"p_km", Iv(e.p_km)},
        {"p_knm", Iv(e.p_knm)},
        {"binomial_fnr", Iv(e.binomial_fnr)},
        {"binomial_fpr", Iv(e.binomial_fpr)}}}};
  return j.dump(1);
}

StatusOr<EvidenceModel> ModelFromJson(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("evidence model: not a JSON object");
  if (!j.contains("format") || j["format"] != kFormat) {
    return InvalidArgument("evidence model: field 'format' is not \"" + std::string(kFormat) + "\"");
  }
  try {
    ReferencePopulation pop;
    pop.name = j.at("name").get<std::string>();
    const std::string kind = j.at("kind").get<std::string>();
    if (kind == "BF") {
      pop.kind = SignatureKind::kBreechFace;
    } else if (kind == "FP") {
      pop.kind = SignatureKind::kFiringPin;
    } else {
      return InvalidArgument("evidence model: field 'kind' is '" + kind + "', expected BF or FP");
    }
    pop.calibre = j.at("calibre").get<std::string>();
    pop.pipeline_version = j.at("pipeline_version").get<std::string>();
    auto scores = [&](const char* key) {
      std::vector<CmcScore> v;
      for (const auto& e : j.at(key)) v.push_back({e.at(0).get<int>(), e.at(1).get<int>()});
      return v;
    };
    pop.km = scores("km");
    pop.knm = scores("knm");
    EvidenceConfig config;
    const auto& c = j.at("config");
    config.decision_threshold_cmc = c.at("decision_threshold_cmc").get<int>();
    config.confidence = c.at("confidence").get<double>();
    config.min_km_pairs = c.at("min_km_pairs").get<int>();
    config.min_knm_pairs = c.at("min_knm_pairs").get<int>();
    config.elub_dummy_pairs = c.at("elub_dummy_pairs").get<int>();
    auto m = FitEvidenceModel(pop, config);
    if (!m.ok()) return m.status().WithContext("evidence model");
    return m;
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(std::string("evidence model: missing or mistyped field: ") + e.what());
  }
}

}  // namespace ballistics::evidence
