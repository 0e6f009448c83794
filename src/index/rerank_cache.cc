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

namespace {

// Heights offset + step * q, NaN where q is the sentinel (compact and screen forms).
template <typename Q>
cv::Mat1f ExpandHeights(int rows, int cols, float offset, float step, const std::vector<Q>& heights, Q invalid) {
  cv::Mat1f v(rows, cols);
  std::size_t i = 0;
  for (int y = 0; y < rows; ++y) {
    float* row = v.ptr<float>(y);
    for (int x = 0; x < cols; ++x, ++i) {
      const Q q = heights[i];
      row[x] = q == invalid ? std::numeric_limits<float>::quiet_NaN() : offset + step * q;
    }
  }
  return v;
}

}  // namespace

Signature ExpandSignature(const CompactSignature& c) {
  Signature s;
  s.kind = c.kind;
  s.modality = c.modality;
  s.pipeline_version = c.pipeline_version;
  s.pixel_um = c.pixel_um;
  s.values = ExpandHeights(c.rows, c.cols, c.offset, c.step, c.heights, kCompactInvalid);
  return s;
}

RerankCacheConfig RerankCacheConfigFor(const SearchEngineConfig& config) {
  RerankCacheConfig c;
  c.breech_face_pixel_um = RerankPixelUm(config.breech_face_correlation);
  c.firing_pin_pixel_um = RerankPixelUm(config.firing_pin_correlation);
  if (config.breech_face_screen_k > 0) {
    c.breech_face_screen_pixel_um = ScreenCorrelationConfig(config.breech_face_correlation).cell_pixel_um;
  }
  if (config.firing_pin_screen_k > 0) {
    c.firing_pin_screen_pixel_um = ScreenCorrelationConfig(config.firing_pin_correlation).cell_pixel_um;
  }
  return c;
}

namespace {

// A screen form: the compact form's int16 heights requantized to int8
// (q8 = q16 / 258, kScreenInvalid the NaN sentinel) at the screening grid.
// 255 levels over a signature's own range: ~0.05 µm for a 12 µm band-passed
// range, far below what a 50 µm cell's NCC can tell apart.
constexpr std::int8_t kScreenInvalid = std::numeric_limits<std::int8_t>::min();
constexpr int kScreenRequantize = 258;  // 32767 / 127, rounded up

struct ScreenForm {
  SignatureKind kind = SignatureKind::kBreechFace;
  Modality modality = Modality::kTopography3d;
  double pixel_um = 0.0;
  int rows = 0, cols = 0;
  float offset = 0.0f, step = 0.0f;
  std::vector<std::int8_t> heights;
  std::size_t bytes() const { return sizeof(*this) + heights.capacity(); }
};

StatusOr<ScreenForm> ScreenFormOf(const CompactSignature& compact, double screen_pixel_um) {
  BALLISTICS_ASSIGN_OR_RETURN(CompactSignature c, CompactSignatureOf(ExpandSignature(compact), screen_pixel_um));
  ScreenForm f;
  f.kind = c.kind;
  f.modality = c.modality;
  f.pixel_um = c.pixel_um;
  f.rows = c.rows;
  f.cols = c.cols;
  f.offset = c.offset;
  f.step = c.step * kScreenRequantize;
  f.heights.resize(c.heights.size());
  for (std::size_t i = 0; i < c.heights.size(); ++i) {
    const std::int16_t q = c.heights[i];
    f.heights[i] = q == kCompactInvalid
                       ? kScreenInvalid
                       : static_cast<std::int8_t>(std::clamp<long>(std::lround(static_cast<double>(q) / kScreenRequantize), -127, 127));
  }
  return f;
}

Signature ExpandScreenForm(const ScreenForm& f) {
  Signature s;
  s.kind = f.kind;
  s.modality = f.modality;
  s.pixel_um = f.pixel_um;
  s.values = ExpandHeights(f.rows, f.cols, f.offset, f.step, f.heights, kScreenInvalid);
  return s;
}

}  // namespace

struct RerankCache::Impl {
  RerankCacheConfig config;
  Fetch fetch;
  mutable std::mutex mu;
  // Screen forms, held for every signature Put or fetched (no budget).
  std::unordered_map<std::int64_t, std::shared_ptr<const ScreenForm>> screen;
  std::size_t screen_bytes = 0;

  double ScreenPixel(SignatureKind k) const {
    return k == SignatureKind::kBreechFace ? config.breech_face_screen_pixel_um : config.firing_pin_screen_pixel_um;
  }
  // The screen form of a compact signature when its kind has one (else null).
  std::shared_ptr<const ScreenForm> MakeScreen(const CompactSignature& c) const {
    const double px = ScreenPixel(c.kind);
    if (!(px > 0)) return nullptr;
    auto f = ScreenFormOf(c, px);
    return f.ok() ? std::make_shared<const ScreenForm>(std::move(f).value()) : nullptr;
  }
  // Caller holds mu.
  void PutScreenLocked(std::int64_t id, std::shared_ptr<const ScreenForm> f) {
    EraseScreenLocked(id);
    if (!f) return;
    screen_bytes += f->bytes() + kScreenEntryOverheadBytes;
    screen[id] = std::move(f);
  }
  void EraseScreenLocked(std::int64_t id) {
    auto it = screen.find(id);
    if (it == screen.end()) return;
    screen_bytes -= it->second->bytes() + kScreenEntryOverheadBytes;
    screen.erase(it);
  }
  static constexpr std::size_t kScreenEntryOverheadBytes = 48;  // hash node, bucket, shared_ptr control block
  StatusOr<std::shared_ptr<const CompactSignature>> Compact(std::int64_t signature_id);
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
  std::shared_ptr<const ScreenForm> screen = impl_->MakeScreen(*shared);
  std::lock_guard<std::mutex> l(impl_->mu);
  impl_->InsertLocked(signature_id, std::move(shared));
  impl_->PutScreenLocked(signature_id, std::move(screen));
  return Status::Ok();
}

void RerankCache::Erase(std::int64_t signature_id) {
  std::lock_guard<std::mutex> l(impl_->mu);
  impl_->EraseLocked(signature_id);
  impl_->EraseScreenLocked(signature_id);
}

// The compact form: held (most recently used now), or fetched and kept.
StatusOr<std::shared_ptr<const CompactSignature>> RerankCache::Impl::Compact(std::int64_t signature_id) {
  {
    std::lock_guard<std::mutex> l(mu);
    auto it = where.find(signature_id);
    if (it != where.end()) {
      lru.splice(lru.begin(), lru, it->second);  // most recently used
      ++hits;
      return it->second->second;
    }
    ++misses;
  }
  if (!fetch) return NotFound("signature " + std::to_string(signature_id) + " is not held for the rerank");
  BALLISTICS_ASSIGN_OR_RETURN(Signature full, fetch(signature_id));
  BALLISTICS_ASSIGN_OR_RETURN(CompactSignature c, CompactSignatureOf(full, HoldPixel(full.kind)));
  auto shared = std::make_shared<const CompactSignature>(std::move(c));
  std::lock_guard<std::mutex> l(mu);
  InsertLocked(signature_id, shared);
  return shared;
}

StatusOr<Signature> RerankCache::Load(std::int64_t signature_id) const {
  // What the rerank gets is the compact form in every case, so that a score
  // does not depend on whether the candidate happened to be held. Expanded
  // outside the lock: ~0.1 ms for 75k points.
  BALLISTICS_ASSIGN_OR_RETURN(std::shared_ptr<const CompactSignature> c, impl_->Compact(signature_id));
  return ExpandSignature(*c);
}

StatusOr<Signature> RerankCache::LoadForScreen(std::int64_t signature_id, double pixel_um) const {
  std::shared_ptr<const ScreenForm> held;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    if (auto it = impl_->screen.find(signature_id); it != impl_->screen.end()) held = it->second;
  }
  auto same_grid = [&](SignatureKind kind) {
    const double px = impl_->ScreenPixel(kind);
    return px > 0 && std::abs(px - pixel_um) <= 0.01 * pixel_um;
  };
  if (held && same_grid(held->kind)) return ExpandScreenForm(*held);
  // Not held (a cache of another config, or dropped): made from the compact
  // form, as Put makes it, and kept.
  BALLISTICS_ASSIGN_OR_RETURN(std::shared_ptr<const CompactSignature> c, impl_->Compact(signature_id));
  std::shared_ptr<const ScreenForm> made = same_grid(c->kind) ? impl_->MakeScreen(*c) : nullptr;
  if (!made) return ExpandSignature(*c);
  Signature out = ExpandScreenForm(*made);
  std::lock_guard<std::mutex> l(impl_->mu);
  impl_->PutScreenLocked(signature_id, std::move(made));
  return out;
}

bool RerankCache::Holds(std::int64_t signature_id) const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->where.count(signature_id) > 0;
}
std::size_t RerankCache::bytes() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->bytes + impl_->screen_bytes;
}
std::size_t RerankCache::screen_bytes() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->screen_bytes;
}
std::int64_t RerankCache::screen_held() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return static_cast<std::int64_t>(impl_->screen.size());
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
