// Rerank memory: compact signatures (resampled to the rerank's cell grid,
// int16 heights) and a budgeted LRU source that fetches what it does not hold.
// docs/search.md, "Rerank memory", has the measurements.
#include <algorithm>
#include <cmath>
#include <list>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <opencv2/imgproc.hpp>

#include "ballistics/index.h"

namespace ballistics {
namespace {

std::string Fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Per-entry bookkeeping besides the compact signature itself: the LRU list
// node (two pointers + id + shared_ptr) and the hash map node and bucket.
constexpr std::size_t kEntryOverheadBytes = 96;

}  // namespace

double RerankPixelUm(const CorrelationConfig& config) { return config.cell_pixel_um; }

StatusOr<CompactSignature> CompactSignatureOf(const Signature& sig, double hold_pixel_um) {
  const std::string who = std::string("compact signature (") + std::string(SignatureKindName(sig.kind)) + "): ";
  if (!(sig.pixel_um > 0) || !std::isfinite(sig.pixel_um)) {
    return InvalidArgument(who + "pixel_um=" + Fmt(sig.pixel_um) + " is not positive");
  }
  if (sig.values.empty()) return InvalidArgument(who + "values are empty");
  if (!(hold_pixel_um >= 0) || !std::isfinite(hold_pixel_um)) {
    return InvalidArgument(who + "hold_pixel_um=" + Fmt(hold_pixel_um) + " must be finite and >= 0");
  }
  CompactSignature c;
  c.kind = sig.kind;
  c.modality = sig.modality;
  c.pipeline_version = sig.pipeline_version;
  c.pixel_um = sig.pixel_um;
  cv::Mat1f v = sig.values;
  // The same resampling (and 1 % tolerance) as the correlator's MakeLevel
  // (src/correlate/correlator.cc): NaN-aware area average, a point valid when
  // at least half of its footprint was, so the cell grid the correlator builds
  // from the compact form is the one it builds from the original.
  if (hold_pixel_um > sig.pixel_um * 1.01) {
    const double f = sig.pixel_um / hold_pixel_um;
    const cv::Size size(static_cast<int>(std::lround(sig.values.cols * f)),
                        static_cast<int>(std::lround(sig.values.rows * f)));
    if (size.width < 1 || size.height < 1) {
      return InvalidArgument(who + "hold_pixel_um=" + Fmt(hold_pixel_um) + " leaves no point of a " +
                             std::to_string(sig.values.cols) + "x" + std::to_string(sig.values.rows) + " grid at " +
                             Fmt(sig.pixel_um) + " um");
    }
    cv::Mat1f z(sig.values.size()), m(sig.values.size());
    for (int y = 0; y < z.rows; ++y) {
      for (int x = 0; x < z.cols; ++x) {
        const float h = sig.values(y, x);
        const bool ok = std::isfinite(h);
        z(y, x) = ok ? h : 0.0f;
        m(y, x) = ok ? 1.0f : 0.0f;
      }
    }
    cv::Mat1f zs, ms;
    cv::resize(z, zs, size, 0, 0, cv::INTER_AREA);
    cv::resize(m, ms, size, 0, 0, cv::INTER_AREA);
    v = cv::Mat1f(size);
    for (int y = 0; y < size.height; ++y) {
      for (int x = 0; x < size.width; ++x) {
        const float w = ms(y, x);
        v(y, x) = w >= 0.5f ? zs(y, x) / w : std::numeric_limits<float>::quiet_NaN();
      }
    }
    c.pixel_um = sig.pixel_um * 0.5 *
                 (static_cast<double>(sig.values.cols) / size.width + static_cast<double>(sig.values.rows) / size.height);
  }
  c.rows = v.rows;
  c.cols = v.cols;
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (int y = 0; y < v.rows; ++y) {
    for (int x = 0; x < v.cols; ++x) {
      const float h = v(y, x);
      if (std::isfinite(h)) {
        lo = std::min(lo, h);
        hi = std::max(hi, h);
      }
    }
  }
  // q in -32767..32767 (kCompactInvalid = -32768 is the sentinel).
  constexpr double kHalfLevels = 32767.0;
  if (lo <= hi) {
    c.offset = static_cast<float>(0.5 * (static_cast<double>(lo) + hi));
    c.step = hi > lo ? static_cast<float>((static_cast<double>(hi) - lo) / (2.0 * kHalfLevels)) : 1.0f;
  } else {
    c.step = 1.0f;  // nothing valid: every point is the sentinel
  }
  c.heights.resize(static_cast<std::size_t>(v.rows) * v.cols);
  std::size_t i = 0;
  for (int y = 0; y < v.rows; ++y) {
    for (int x = 0; x < v.cols; ++x, ++i) {
      const float h = v(y, x);
      if (!std::isfinite(h)) {
        c.heights[i] = kCompactInvalid;
        continue;
      }
      const double q = std::nearbyint((static_cast<double>(h) - c.offset) / c.step);
      c.heights[i] = static_cast<std::int16_t>(std::clamp(q, -kHalfLevels, kHalfLevels));
    }
  }
  return c;
}

Signature ExpandSignature(const CompactSignature& c) {
  Signature s;
  s.kind = c.kind;
  s.modality = c.modality;
  s.pipeline_version = c.pipeline_version;
  s.pixel_um = c.pixel_um;
  s.values = cv::Mat1f(c.rows, c.cols);
  std::size_t i = 0;
  for (int y = 0; y < c.rows; ++y) {
    float* row = s.values.ptr<float>(y);
    for (int x = 0; x < c.cols; ++x, ++i) {
      const std::int16_t q = c.heights[i];
      row[x] = q == kCompactInvalid ? std::numeric_limits<float>::quiet_NaN() : c.offset + c.step * q;
    }
  }
  return s;
}

struct RerankCache::Impl {
  RerankCacheConfig config;
  Fetch fetch;
  mutable std::mutex mu;
  // Most recently used first.
  using Entry = std::pair<std::int64_t, std::shared_ptr<const CompactSignature>>;
  mutable std::list<Entry> lru;
  std::unordered_map<std::int64_t, std::list<Entry>::iterator> where;
  std::size_t bytes = 0;
  mutable std::int64_t hits = 0, misses = 0, evictions = 0;

  static std::size_t Cost(const CompactSignature& c) { return c.bytes() + kEntryOverheadBytes; }

  double HoldPixel(SignatureKind k) const {
    return k == SignatureKind::kBreechFace ? config.breech_face_pixel_um : config.firing_pin_pixel_um;
  }

  // Caller holds mu.
  void EraseLocked(std::int64_t id) {
    auto it = where.find(id);
    if (it == where.end()) return;
    bytes -= Cost(*it->second->second);
    lru.erase(it->second);
    where.erase(it);
  }
  void InsertLocked(std::int64_t id, std::shared_ptr<const CompactSignature> c) {
    EraseLocked(id);
    const std::size_t cost = Cost(*c);
    if (cost > config.budget_bytes) return;  // would not fit even alone
    while (bytes + cost > config.budget_bytes && !lru.empty()) {
      const Entry& victim = lru.back();
      bytes -= Cost(*victim.second);
      where.erase(victim.first);
      lru.pop_back();
      ++evictions;
    }
    lru.emplace_front(id, std::move(c));
    where[id] = lru.begin();
    bytes += cost;
  }
};

RerankCache::RerankCache(const RerankCacheConfig& config, Fetch fetch) : impl_(std::make_unique<Impl>()) {
  impl_->config = config;
  impl_->fetch = std::move(fetch);
}
RerankCache::~RerankCache() = default;

Status RerankCache::Put(std::int64_t signature_id, const Signature& signature) {
  BALLISTICS_ASSIGN_OR_RETURN(CompactSignature c, CompactSignatureOf(signature, impl_->HoldPixel(signature.kind)));
  auto shared = std::make_shared<const CompactSignature>(std::move(c));
  std::lock_guard<std::mutex> l(impl_->mu);
  impl_->InsertLocked(signature_id, std::move(shared));
  return Status::Ok();
}

void RerankCache::Erase(std::int64_t signature_id) {
  std::lock_guard<std::mutex> l(impl_->mu);
  impl_->EraseLocked(signature_id);
}

StatusOr<Signature> RerankCache::Load(std::int64_t signature_id) const {
  std::shared_ptr<const CompactSignature> held;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    auto it = impl_->where.find(signature_id);
    if (it != impl_->where.end()) {
      impl_->lru.splice(impl_->lru.begin(), impl_->lru, it->second);  // most recently used
      held = it->second->second;
      ++impl_->hits;
    } else {
      ++impl_->misses;
    }
  }
  if (held) return ExpandSignature(*held);  // outside the lock: ~0.1 ms for 75k points
  if (!impl_->fetch) return NotFound("signature " + std::to_string(signature_id) + " is not held for the rerank");
  BALLISTICS_ASSIGN_OR_RETURN(Signature full, impl_->fetch(signature_id));
  BALLISTICS_ASSIGN_OR_RETURN(CompactSignature c, CompactSignatureOf(full, impl_->HoldPixel(full.kind)));
  auto shared = std::make_shared<const CompactSignature>(std::move(c));
  // What the rerank gets is the compact form in every case, so that a score
  // does not depend on whether the candidate happened to be held.
  Signature out = ExpandSignature(*shared);
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->InsertLocked(signature_id, std::move(shared));
  }
  return out;
}

bool RerankCache::Holds(std::int64_t signature_id) const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->where.count(signature_id) > 0;
}
std::size_t RerankCache::bytes() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->bytes;
}
std::int64_t RerankCache::held() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return static_cast<std::int64_t>(impl_->where.size());
}
std::int64_t RerankCache::hits() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->hits;
}
std::int64_t RerankCache::misses() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->misses;
}
std::int64_t RerankCache::evictions() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->evictions;
}
const RerankCacheConfig& RerankCache::config() const { return impl_->config; }

}  // namespace ballistics
