// Validation of LRs: Cllr, PAV (Cllr-min), misleading evidence, empirical
// cross-entropy, leave-source-out cross-validation.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ballistics/evidence.h"

namespace ballistics::evidence {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log2(1 + 10^x), stable for large |x|.
double Log2OnePlusPow10(double x) {
  if (x == kInf) return kInf;
  if (x == -kInf) return 0;
  const double y = x * std::log(10.0);
  return (y > 30 ? y + std::log1p(std::exp(-y)) : std::log1p(std::exp(y))) / std::log(2.0);
}

// Cllr of given log10 LRs (Brümmer & du Preez 2006).
double Cllr(std::span<const ScoredLr> lrs, std::span<const double> log10_lr) {
  double km = 0, knm = 0;
  std::int64_t nk = 0, nn = 0;
  for (std::size_t i = 0; i < lrs.size(); ++i) {
    if (lrs[i].same_source) {
      km += Log2OnePlusPow10(-log10_lr[i]);
      ++nk;
    } else {
      knm += Log2OnePlusPow10(log10_lr[i]);
      ++nn;
    }
  }
  return 0.5 * (km / static_cast<double>(nk) + knm / static_cast<double>(nn));
}

}  // namespace

std::vector<double> PavLog10Lr(std::span<const ScoredLr> lrs) {
  const std::size_t n = lrs.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return lrs[a].log10_lr < lrs[b].log10_lr;
  });
  // Blocks of equal scores first (ties must get one value), then pool adjacent
  // violators so that the share of KM pairs never decreases with the score.
  struct Block {
    double km = 0, total = 0;
    std::size_t first = 0, last = 0;  // range in `order`
  };
  std::vector<Block> blocks;
  for (std::size_t i = 0; i < n; ++i) {
    const ScoredLr& s = lrs[order[i]];
    if (blocks.empty() || lrs[order[blocks.back().last]].log10_lr != s.log10_lr) blocks.push_back({0, 0, i, i});
    Block& b = blocks.back();
    b.km += s.same_source ? 1 : 0;
    b.total += 1;
    b.last = i;
    while (blocks.size() > 1) {
      Block& hi = blocks[blocks.size() - 1];
      Block& lo = blocks[blocks.size() - 2];
      if (lo.km / lo.total < hi.km / hi.total) break;
      lo.km += hi.km, lo.total += hi.total, lo.last = hi.last;
      blocks.pop_back();
    }
  }
  double nk = 0;
  for (const ScoredLr& s : lrs) nk += s.same_source ? 1 : 0;
  const double nn = static_cast<double>(n) - nk;
  const double prior_log10_odds = std::log10(nk / nn);
  std::vector<double> out(n, 0.0);
  for (const Block& b : blocks) {
    const double p = b.km / b.total;
    const double v = p <= 0 ? -kInf : p >= 1 ? kInf : std::log10(p / (1 - p)) - prior_log10_odds;
    for (std::size_t i = b.first; i <= b.last; ++i) out[order[i]] = v;
  }
  return out;
}

StatusOr<ValidationMetrics> ComputeMetrics(std::span<const ScoredLr> lrs) {
  ValidationMetrics m;
  m.min_log10_lr_km = kInf;
  m.max_log10_lr_knm = -kInf;
  std::vector<double> log10_lr;
  for (const ScoredLr& s : lrs) {
    if (!std::isfinite(s.log10_lr)) {
      return InvalidArgument("evidence: log10 LR " + std::to_string(s.log10_lr) +
                             " is not finite; calibrated LRs are always bounded");
    }
    log10_lr.push_back(s.log10_lr);
    if (!s.available) ++m.unavailable;
    if (s.same_source) {
      ++m.km;
      if (s.log10_lr < 0) ++m.km_misleading;
      m.min_log10_lr_km = std::min(m.min_log10_lr_km, s.log10_lr);
    } else {
      ++m.knm;
      if (s.log10_lr > 0) ++m.knm_misleading;
      m.max_log10_lr_knm = std::max(m.max_log10_lr_knm, s.log10_lr);
    }
  }
  if (m.km == 0 || m.knm == 0) {
    return InvalidArgument("evidence: validation needs KM and KNM pairs (got " + std::to_string(m.km) + " KM, " +
                           std::to_string(m.knm) + " KNM)");
  }
  m.cllr = Cllr(lrs, log10_lr);
  const std::vector<double> pav = PavLog10Lr(lrs);
  m.cllr_min = Cllr(lrs, pav);
  m.cllr_cal = m.cllr - m.cllr_min;
  m.rmep_ci = ClopperPearson(m.km_misleading, m.km, 0.95);
  m.rmed_ci = ClopperPearson(m.knm_misleading, m.knm, 0.95);
  m.rmep = m.rmep_ci.estimate;
  m.rmed = m.rmed_ci.estimate;
  return m;
}

double EmpiricalCrossEntropy(std::span<const ScoredLr> lrs, double prior_log10_odds) {
  // ECE (Ramos et al. 2013): P(H1) / N_KM sum log2(1 + 1 / (LR O)) +
  // P(H2) / N_KNM sum log2(1 + LR O), with prior odds O.
  const double o = std::pow(10.0, prior_log10_odds);
  const double p1 = o / (1 + o), p2 = 1 / (1 + o);
  double km = 0, knm = 0;
  std::int64_t nk = 0, nn = 0;
  for (const ScoredLr& s : lrs) {
    if (s.same_source) {
      km += Log2OnePlusPow10(-(s.log10_lr + prior_log10_odds));
      ++nk;
    } else {
      knm += Log2OnePlusPow10(s.log10_lr + prior_log10_odds);
      ++nn;
    }
  }
  if (nk == 0 || nn == 0) return std::numeric_limits<double>::quiet_NaN();
  return p1 * km / static_cast<double>(nk) + p2 * knm / static_cast<double>(nn);
}

StatusOr<std::vector<CrossValidatedPair>> CrossValidate(std::span<const LabeledPair> pairs,
                                                        const ReferencePopulation& base,
                                                        const EvidenceConfig& config) {
  BALLISTICS_RETURN_IF_ERROR(config.Validate());
  for (const LabeledPair& p : pairs) {
    Status s = ValidateScore(p.score);
    if (!s.ok()) return s.WithContext(p.reference + " vs " + p.target);
    if (p.reference_source.empty() || p.target_source.empty()) {
      return InvalidArgument("evidence: pair " + p.reference + " vs " + p.target + " has no source label");
    }
  }
  // One model per set of left-out sources ({a} for KM pairs, {a, b} for KNM pairs).
  std::map<std::pair<std::string, std::string>, std::optional<EvidenceModel>> models;
  std::map<std::pair<std::string, std::string>, std::string> why_none;
  std::vector<CrossValidatedPair> out;
  out.reserve(pairs.size());
  for (const LabeledPair& p : pairs) {
    auto key = std::minmax(p.reference_source, p.target_source);
    std::pair<std::string, std::string> k(key.first, key.second);
    auto it = models.find(k);
    if (it == models.end()) {
      ReferencePopulation train = base;
      train.km.clear();
      train.knm.clear();
      for (const LabeledPair& q : pairs) {
        const std::set<std::string> left_out = {k.first, k.second};
        if (left_out.count(q.reference_source) || left_out.count(q.target_source)) continue;
        (q.SameSource() ? train.km : train.knm).push_back(q.score);
      }
      auto m = FitEvidenceModel(train, config);
      if (m.ok()) {
        it = models.emplace(k, std::move(m).value()).first;
      } else if (m.status().code() == StatusCode::kFailedPrecondition) {
        it = models.emplace(k, std::nullopt).first;
        why_none[k] = "no calibrated LR available (leaving out " + k.first +
                      (k.first == k.second ? "" : " and " + k.second) + " leaves " + std::to_string(train.km.size()) +
                      " KM / " + std::to_string(train.knm.size()) + " KNM reference pairs)";
      } else {
        return m.status();
      }
    }
    BALLISTICS_ASSIGN_OR_RETURN(LrResult lr, EvaluateLr(it->second ? &*it->second : nullptr, p.score));
    if (!it->second) lr.basis = why_none[k];
    out.push_back({p, std::move(lr)});
  }
  return out;
}

}  // namespace ballistics::evidence
