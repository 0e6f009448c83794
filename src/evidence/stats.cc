// Distributions of the evidence stage: binomial tails, Clopper-Pearson
// intervals and the beta-binomial maximum-likelihood fit.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "ballistics/evidence.h"

namespace ballistics::evidence {
namespace {

double LogChoose(int n, int k) {
  return std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0);
}

double LogBeta(double a, double b) { return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b); }

double BinomialLogPmf(int k, int n, double p) {
  if (p <= 0) return k == 0 ? 0.0 : -std::numeric_limits<double>::infinity();
  if (p >= 1) return k == n ? 0.0 : -std::numeric_limits<double>::infinity();
  return LogChoose(n, k) + k * std::log(p) + (n - k) * std::log1p(-p);
}

// The fit's search box: mean in [logistic(-12), logistic(12)] (so a class
// whose counts are all 0 still has a finite, tiny mean) and precision
// alpha + beta in [0.05, 1e6] (1e6: indistinguishable from a binomial for the
// few dozen cells of a comparison).
constexpr double kMinLogit = -12, kMaxLogit = 12;
const double kMinLogPrecision = std::log(0.05), kMaxLogPrecision = std::log(1e6);

BetaBinomial FromParams(double logit_mean, double log_precision) {
  logit_mean = std::clamp(logit_mean, kMinLogit, kMaxLogit);
  log_precision = std::clamp(log_precision, kMinLogPrecision, kMaxLogPrecision);
  const double mean = 1.0 / (1.0 + std::exp(-logit_mean));
  const double s = std::exp(log_precision);
  return {mean * s, (1 - mean) * s};
}

double NegLogLikelihood(std::span<const CmcScore> scores, double u, double v) {
  const BetaBinomial bb = FromParams(u, v);
  // Terms that do not depend on (alpha, beta) (log n choose k) are left out.
  const double lb = LogBeta(bb.alpha, bb.beta);
  double sum = 0;
  for (const CmcScore& s : scores) sum += LogBeta(s.cmc + bb.alpha, s.cells - s.cmc + bb.beta) - lb;
  return -sum;
}

}  // namespace

Status ValidateScore(const CmcScore& s) {
  if (s.cells < 1 || s.cmc < 0 || s.cmc > s.cells) {
    return InvalidArgument("evidence: score cmc=" + std::to_string(s.cmc) + " cells=" + std::to_string(s.cells) +
                           " is not a CMC count out of at least one cell");
  }
  return Status::Ok();
}

double BetaBinomialLogPmf(int k, int n, const BetaBinomial& bb) {
  if (k < 0 || k > n) return -std::numeric_limits<double>::infinity();
  return LogChoose(n, k) + LogBeta(k + bb.alpha, n - k + bb.beta) - LogBeta(bb.alpha, bb.beta);
}

StatusOr<BetaBinomial> FitBetaBinomial(std::span<const CmcScore> scores) {
  if (scores.empty()) return InvalidArgument("evidence: beta-binomial fit of an empty score list");
  double sum_cmc = 0, sum_cells = 0;
  for (const CmcScore& s : scores) {
    BALLISTICS_RETURN_IF_ERROR(ValidateScore(s));
    sum_cmc += s.cmc;
    sum_cells += s.cells;
  }
  // Nelder-Mead (Nelder & Mead 1965) in (logit mean, log precision), started
  // at the pooled proportion; the likelihood is smooth and unimodal enough in
  // these coordinates for a simplex search, and two parameters need no more.
  const double p0 = std::clamp((sum_cmc + 0.5) / (sum_cells + 1.0), 1e-6, 1 - 1e-6);
  const double u0 = std::log(p0 / (1 - p0));
  auto f = [&](const std::array<double, 2>& x) { return NegLogLikelihood(scores, x[0], x[1]); };
  std::array<std::array<double, 2>, 3> simplex = {{{u0, std::log(10.0)}, {u0 + 1.0, std::log(10.0)},
                                                   {u0, std::log(100.0)}}};
  std::array<double, 3> fv;
  for (int i = 0; i < 3; ++i) fv[i] = f(simplex[i]);
  auto clampx = [](std::array<double, 2> x) {
    x[0] = std::clamp(x[0], kMinLogit, kMaxLogit);
    x[1] = std::clamp(x[1], kMinLogPrecision, kMaxLogPrecision);
    return x;
  };
  for (int iter = 0; iter < 500; ++iter) {
    std::array<int, 3> idx = {0, 1, 2};
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return fv[a] < fv[b]; });
    const int best = idx[0], mid = idx[1], worst = idx[2];
    if (std::abs(fv[worst] - fv[best]) < 1e-10 * (1 + std::abs(fv[best])) && iter > 20) break;
    std::array<double, 2> c{(simplex[best][0] + simplex[mid][0]) / 2, (simplex[best][1] + simplex[mid][1]) / 2};
    auto along = [&](double t) {
      return clampx({c[0] + t * (simplex[worst][0] - c[0]), c[1] + t * (simplex[worst][1] - c[1])});
    };
    const auto xr = along(-1.0);
    const double fr = f(xr);
    if (fr < fv[best]) {
      const auto xe = along(-2.0);
      const double fe = f(xe);
      if (fe < fr) {
        simplex[worst] = xe, fv[worst] = fe;
      } else {
        simplex[worst] = xr, fv[worst] = fr;
      }
    } else if (fr < fv[mid]) {
      simplex[worst] = xr, fv[worst] = fr;
    } else {
      const auto xc = fr < fv[worst] ? along(-0.5) : along(0.5);
      const double fc = f(xc);
      if (fc < std::min(fr, fv[worst])) {
        simplex[worst] = xc, fv[worst] = fc;
      } else {  // shrink towards the best point
        for (int i : {mid, worst}) {
          simplex[i] = clampx({(simplex[i][0] + simplex[best][0]) / 2, (simplex[i][1] + simplex[best][1]) / 2});
          fv[i] = f(simplex[i]);
        }
      }
    }
  }
  const int best = static_cast<int>(std::min_element(fv.begin(), fv.end()) - fv.begin());
  return FromParams(simplex[best][0], simplex[best][1]);
}

double BinomialUpperTail(int k, int n, double p) {
  if (k <= 0) return 1.0;
  if (k > n) return 0.0;
  double sum = 0;
  for (int i = k; i <= n; ++i) sum += std::exp(BinomialLogPmf(i, n, p));
  return std::min(sum, 1.0);
}

double BinomialLowerTail(int k, int n, double p) {
  if (k < 0) return 0.0;
  if (k >= n) return 1.0;
  double sum = 0;
  for (int i = 0; i <= k; ++i) sum += std::exp(BinomialLogPmf(i, n, p));
  return std::min(sum, 1.0);
}

Interval ClopperPearson(std::int64_t k, std::int64_t n, double confidence) {
  Interval out;
  if (n <= 0) return {0, 0, 1};
  k = std::clamp<std::int64_t>(k, 0, n);
  out.estimate = static_cast<double>(k) / n;
  const double tail = (1 - confidence) / 2;
  const int ki = static_cast<int>(k), ni = static_cast<int>(n);
  // Lower bound: P(X >= k | p) = tail; upper bound: P(X <= k | p) = tail. Both
  // tails are monotone in p, so bisection finds them.
  auto solve = [&](auto g, double target) {  // g(p) increasing in p; root of g(p) = target
    double lo = 0, hi = 1;
    for (int i = 0; i < 100; ++i) {
      const double mid = (lo + hi) / 2;
      (g(mid) < target ? lo : hi) = mid;
    }
    return (lo + hi) / 2;
  };
  out.lower = k == 0 ? 0.0 : solve([&](double p) { return BinomialUpperTail(ki, ni, p); }, tail);
  out.upper = k == n ? 1.0 : solve([&](double p) { return -BinomialLowerTail(ki, ni, p); }, -tail);
  return out;
}

}  // namespace ballistics::evidence
