// Microstamp index and lookup (design: docs/registry.md, "Microstamp index").
//
// Codes are packed (ceil(log2 n) bits per character, first character most
// significant) and sorted per location, so all codes sharing a prefix form one
// contiguous range and a child range is two binary searches away. A lookup is a
// best-first branch-and-bound walk of that implicit trie: the bound of a prefix
// is its log-likelihood plus the best possible log-likelihood of the remaining
// positions; branches more than prune_log_ratio below the best code found are
// cut, and their expected mass (size x prefix likelihood x mean likelihood of
// the rest) is reported as the tail the posterior leaves out.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "ballistics/registry.h"

namespace ballistics::registry {

std::string_view StampLocationName(StampLocation l) {
  return l == StampLocation::kFiringPinTip ? "fp_tip" : "breech_face";
}

StatusOr<StampLocation> ParseStampLocation(std::string_view s) {
  if (s == "fp_tip" || s == "fp" || s == "fp-tip") return StampLocation::kFiringPinTip;
  if (s == "breech_face" || s == "bf" || s == "breech-face") return StampLocation::kBreechFace;
  return InvalidArgument("unknown stamp location '" + std::string(s) + "' (expected fp_tip or breech_face)");
}

Alphabet Alphabet::AlphanumericFp() {
  Alphabet a;
  a.chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  a.code_length = 8;
  // Look-alikes of engraved / stamped glyphs under a comparison microscope
  // (the pairs OCR post-correction literature lists for alphanumeric serials).
  a.lookalikes = {{"0O", 1.0}, {"0D", 0.5}, {"OD", 0.5}, {"OQ", 0.5}, {"0Q", 0.3}, {"8B", 1.0},
                  {"1I", 1.0}, {"1L", 0.4}, {"IL", 0.3}, {"17", 0.3}, {"5S", 1.0}, {"2Z", 1.0},
                  {"6G", 0.7}, {"UV", 0.5}, {"MN", 0.3}, {"3B", 0.3}, {"4A", 0.2}};
  return a;
}

Alphabet Alphabet::GearBf() {
  Alphabet a;
  a.chars = "0123";
  a.code_length = 12;
  // A worn or shallow tooth reads as the neighbouring radial length.
  a.lookalikes = {{"01", 1.0}, {"12", 1.0}, {"23", 1.0}};
  a.lookalike_share = 0.9;
  return a;
}

Status Alphabet::Validate() const {
  if (chars.size() < 2 || chars.size() > 64) {
    return InvalidArgument("alphabet '" + chars + "' must have 2..64 characters");
  }
  bool seen[256] = {};
  for (unsigned char c : chars) {
    if (c <= 0x20 || c >= 0x7f || c == '?') {
      return InvalidArgument("alphabet character '" + std::string(1, static_cast<char>(c)) +
                             "' is not a printable ASCII character other than '?'");
    }
    if (seen[c]) return InvalidArgument("alphabet '" + chars + "' repeats '" + std::string(1, c) + "'");
    seen[c] = true;
  }
  int bits = 1;
  while ((1u << bits) < chars.size()) ++bits;
  if (code_length <= 0 || code_length * bits > 64) {
    return InvalidArgument("code length " + std::to_string(code_length) + " of alphabet '" + chars +
                           "' does not fit 64 bits");
  }
  for (const auto& [pair, w] : lookalikes) {
    if (pair.size() != 2 || pair[0] == pair[1] || !seen[static_cast<unsigned char>(pair[0])] ||
        !seen[static_cast<unsigned char>(pair[1])]) {
      return InvalidArgument("look-alike pair '" + pair + "' is not two different characters of the alphabet");
    }
    if (!(w > 0) || !std::isfinite(w)) {
      return InvalidArgument("look-alike pair '" + pair + "' has weight " + std::to_string(w) + ", not > 0");
    }
  }
  if (!(lookalike_share >= 0 && lookalike_share < 1)) {
    return InvalidArgument("lookalike_share " + std::to_string(lookalike_share) + " is not in [0, 1)");
  }
  return Status::Ok();
}

StampRead StampRead::Parse(StampLocation loc, std::string_view text, double confidence) {
  StampRead r;
  r.location = loc;
  for (char c : text) {
    if (c == '-' || c == ' ') continue;
    ReadChar rc;
    if (c != '?') rc.ch = c;
    rc.confidence = confidence;
    r.chars.push_back(rc);
  }
  return r;
}

MicrostampIndex::MicrostampIndex(Alphabet fp, Alphabet bf) {
  loc_[0].alphabet = std::move(fp);
  loc_[1].alphabet = std::move(bf);
  for (Loc& l : loc_) {
    std::fill(std::begin(l.char_index), std::end(l.char_index), -1);
    for (std::size_t i = 0; i < l.alphabet.chars.size(); ++i) {
      l.char_index[static_cast<unsigned char>(l.alphabet.chars[i])] = static_cast<int>(i);
    }
    l.bits = 1;
    while ((1u << l.bits) < l.alphabet.chars.size()) ++l.bits;
  }
}

void MicrostampIndex::Reserve(std::size_t n) {
  firearm_ids_.reserve(n);
  for (Loc& l : loc_) l.pending.reserve(n);
}

StatusOr<std::uint64_t> MicrostampIndex::Pack(const Loc& l, std::string_view code) const {
  if (static_cast<int>(code.size()) != l.alphabet.code_length) {
    return InvalidArgument("code '" + std::string(code) + "' has " + std::to_string(code.size()) +
                           " characters; this location's codes have " + std::to_string(l.alphabet.code_length));
  }
  std::uint64_t v = 0;
  for (char c : code) {
    const int x = l.char_index[static_cast<unsigned char>(c)];
    if (x < 0) {
      return InvalidArgument("code '" + std::string(code) + "': character '" + std::string(1, c) +
                             "' is not in the alphabet '" + l.alphabet.chars + "'");
    }
    v = (v << l.bits) | static_cast<std::uint64_t>(x);
  }
  return v;
}

std::string MicrostampIndex::Unpack(const Loc& l, std::uint64_t v) const {
  const int n = l.alphabet.code_length;
  std::string s(static_cast<std::size_t>(n), '?');
  const std::uint64_t mask = (1ull << l.bits) - 1;
  for (int i = n - 1; i >= 0; --i) {
    s[static_cast<std::size_t>(i)] = l.alphabet.chars[static_cast<std::size_t>(v & mask)];
    v >>= l.bits;
  }
  return s;
}

// Marks "no code at this location" in pending (a real packed code is < 2^64-1
// because code_length*bits <= 64 and the top pattern would need every char = 2^bits-1
// with a full alphabet of 64 — excluded by rejecting that one value below).
static constexpr std::uint64_t kNoCode = std::numeric_limits<std::uint64_t>::max();

Status MicrostampIndex::Add(std::int64_t firearm_id, std::string_view fp_code, std::string_view bf_code) {
  if (built_) return FailedPrecondition("microstamp index: Add after Build");
  if (firearm_id <= 0) return InvalidArgument("firearm id " + std::to_string(firearm_id) + " is not positive");
  if (fp_code.empty() && bf_code.empty()) {
    return InvalidArgument("firearm " + std::to_string(firearm_id) + ": no code at either location");
  }
  if (firearm_ids_.size() >= std::numeric_limits<std::uint32_t>::max() - 1) {
    return ResourceExhausted("microstamp index is full");
  }
  std::uint64_t packed[kStampLocations] = {kNoCode, kNoCode};
  std::string_view codes[kStampLocations] = {fp_code, bf_code};
  for (int k = 0; k < kStampLocations; ++k) {
    if (codes[k].empty()) continue;
    if (!alphabets_checked_) {
      BALLISTICS_RETURN_IF_ERROR(loc_[0].alphabet.Validate());
      BALLISTICS_RETURN_IF_ERROR(loc_[1].alphabet.Validate());
      alphabets_checked_ = true;
    }
    auto p = Pack(loc_[k], codes[k]);
    if (!p.ok()) return p.status().WithContext(std::string(StampLocationName(static_cast<StampLocation>(k))));
    if (*p == kNoCode) return InvalidArgument("code '" + std::string(codes[k]) + "' is reserved");
    packed[k] = *p;
  }
  firearm_ids_.push_back(firearm_id);
  for (int k = 0; k < kStampLocations; ++k) loc_[k].pending.push_back(packed[k]);
  return Status::Ok();
}

Status MicrostampIndex::Build() {
  if (built_) return FailedPrecondition("microstamp index: Build called twice");
  const std::size_t n = firearm_ids_.size();
  {
    // Firearms in id order: FindFirearm is a binary search, and a live index
    // merges its delta into a new base by id.
    std::vector<std::uint32_t> order(n);
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) { return firearm_ids_[a] < firearm_ids_[b]; });
    for (std::size_t i = 1; i < n; ++i) {
      if (firearm_ids_[order[i]] == firearm_ids_[order[i - 1]]) {
        return AlreadyExists("firearm " + std::to_string(firearm_ids_[order[i]]) + " added twice");
      }
    }
    if (!std::is_sorted(firearm_ids_.begin(), firearm_ids_.end())) {
      std::vector<std::int64_t> ids(n);
      for (std::size_t i = 0; i < n; ++i) ids[i] = firearm_ids_[order[i]];
      firearm_ids_ = std::move(ids);
      for (Loc& l : loc_) {
        std::vector<std::uint64_t> p(n);
        for (std::size_t i = 0; i < n; ++i) p[i] = l.pending[order[i]];
        l.pending = std::move(p);
      }
    }
  }
  for (Loc& l : loc_) {
    std::vector<std::pair<std::uint64_t, std::uint32_t>> v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (l.pending[i] != kNoCode) v.emplace_back(l.pending[i], static_cast<std::uint32_t>(i));
    }
    std::sort(v.begin(), v.end());
    for (std::size_t i = 1; i < v.size(); ++i) {
      if (v[i].first == v[i - 1].first) {
        return AlreadyExists("code '" + Unpack(l, v[i].first) + "' is registered for firearms " +
                             std::to_string(firearm_ids_[v[i - 1].second]) + " and " +
                             std::to_string(firearm_ids_[v[i].second]));
      }
    }
    l.sorted_codes.resize(v.size());
    l.sorted_owner.resize(v.size());
    l.position.assign(n, std::numeric_limits<std::uint32_t>::max());
    for (std::size_t i = 0; i < v.size(); ++i) {
      l.sorted_codes[i] = v[i].first;
      l.sorted_owner[i] = v[i].second;
      l.position[v[i].second] = static_cast<std::uint32_t>(i);
    }
    l.pending.clear();
    l.pending.shrink_to_fit();
  }
  built_ = true;
  return Status::Ok();
}

std::int64_t MicrostampIndex::IndexOfFirearm(std::int64_t firearm_id) const {
  auto it = std::lower_bound(firearm_ids_.begin(), firearm_ids_.end(), firearm_id);
  return it != firearm_ids_.end() && *it == firearm_id ? it - firearm_ids_.begin() : -1;
}

std::size_t MicrostampIndex::memory_bytes() const {
  std::size_t b = firearm_ids_.capacity() * sizeof(std::int64_t);
  for (const Loc& l : loc_) {
    b += l.sorted_codes.capacity() * 8 + l.sorted_owner.capacity() * 4 + l.position.capacity() * 4 +
         l.pending.capacity() * 8;
  }
  return b;
}

StatusOr<std::int64_t> MicrostampIndex::FindExact(StampLocation loc, std::string_view code) const {
  if (!built_) return FailedPrecondition("microstamp index: lookup before Build");
  const Loc& l = loc_[static_cast<int>(loc)];
  BALLISTICS_ASSIGN_OR_RETURN(std::uint64_t v, Pack(l, code));
  auto it = std::lower_bound(l.sorted_codes.begin(), l.sorted_codes.end(), v);
  if (it == l.sorted_codes.end() || *it != v) {
    return NotFound("no firearm carries code '" + std::string(code) + "' at the " +
                    std::string(StampLocationName(loc)));
  }
  return firearm_ids_[l.sorted_owner[static_cast<std::size_t>(it - l.sorted_codes.begin())]];
}

namespace {
constexpr int kMaxSegments = 2;  // a base and a delta
constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

// A hit's owner across segments: segment in the high word, firearm index in the low.
inline std::uint64_t OwnerKey(int seg, std::uint32_t fi) { return (static_cast<std::uint64_t>(seg) << 32) | fi; }
inline int KeySeg(std::uint64_t k) { return static_cast<int>(k >> 32); }
inline std::uint32_t KeyFirearm(std::uint64_t k) { return static_cast<std::uint32_t>(k & 0xffffffffu); }
}  // namespace

// One lookup's state for one location: the per-position log-likelihood table
// (reads of this location summed), the consistency table, and the walk over
// the live codes of every segment at once (a node is one range per segment;
// every decision uses the live count summed over segments, so the walk is the
// one over a single index of the same codes).
class LookupRun {
 public:
  using Loc = MicrostampIndex::Loc;
  struct SegLoc {
    const Loc* loc = nullptr;
    const std::vector<std::uint32_t>* dead = nullptr;  // sorted dead positions, may be null
  };
  // A trie node: per segment the range of sorted codes sharing the prefix, and
  // the part [dlo, dhi) of the segment's dead positions that falls inside it.
  struct Ranges {
    std::size_t lo[kMaxSegments];
    std::size_t hi[kMaxSegments];
    std::uint32_t dlo[kMaxSegments];
    std::uint32_t dhi[kMaxSegments];
  };

  LookupRun(const SegLoc* segs, int nseg, double prune) : nseg_(nseg), prune_(prune) {
    for (int s = 0; s < nseg; ++s) segs_[s] = segs[s];
    l_ = segs[0].loc;
  }

  // Joint mode (MicrostampLookupOptions::Fused::kExactJoint): every code reached is
  // scored with the owning firearm's code at the other location, and bounds add
  // that location's best possible log-likelihood.
  void SetOther(const LookupRun* other, const SegLoc* other_segs) {
    other_ = other;
    for (int s = 0; s < nseg_; ++s) other_segs_[s] = other_segs[s];
    other_max_ = other->max_ll();
    other_mean_ = other->suffix_mean_[0];
  }

  Status SetReads(const std::vector<const StampRead*>& reads) {
    const Alphabet& a = l_->alphabet;
    const int n = static_cast<int>(a.chars.size());
    L_ = a.code_length;
    ll_.assign(static_cast<std::size_t>(L_ * n), 0.0);
    consistent_.assign(static_cast<std::size_t>(L_ * n), 1);
    // Look-alike weights by character index.
    std::vector<std::vector<std::pair<int, double>>> look(static_cast<std::size_t>(n));
    for (const auto& [pair, w] : a.lookalikes) {
      const int x = l_->char_index[static_cast<unsigned char>(pair[0])];
      const int y = l_->char_index[static_cast<unsigned char>(pair[1])];
      look[static_cast<std::size_t>(x)].push_back({y, w});
      look[static_cast<std::size_t>(y)].push_back({x, w});
    }
    for (const StampRead* r : reads) {
      if (static_cast<int>(r->chars.size()) != L_) {
        return InvalidArgument("a " + std::string(StampLocationName(r->location)) + " read has " +
                               std::to_string(r->chars.size()) + " positions; codes there have " +
                               std::to_string(L_));
      }
      for (int p = 0; p < L_; ++p) {
        const ReadChar& rc = r->chars[static_cast<std::size_t>(p)];
        if (!rc.ch) continue;  // uniform: adds the same constant to every code
        const int o = l_->char_index[static_cast<unsigned char>(*rc.ch)];
        if (o < 0) {
          return InvalidArgument("read character '" + std::string(1, *rc.ch) + "' at position " +
                                 std::to_string(p + 1) + " is not in the alphabet '" + a.chars + "'");
        }
        if (!(rc.confidence > 0.0 && rc.confidence <= 1.0)) {
          return InvalidArgument("confidence " + std::to_string(rc.confidence) + " at position " +
                                 std::to_string(p + 1) + " is not in (0, 1]");
        }
        // Keep every likelihood positive: a confidence of 1 would make one
        // misread exclude the true code for good.
        const double c = std::min(rc.confidence, 1.0 - 1e-6);
        const auto& lk = look[static_cast<std::size_t>(o)];
        double wsum = 0;
        for (const auto& [y, w] : lk) wsum += w;
        const double share = lk.empty() ? 0.0 : a.lookalike_share;
        const int others = n - 1 - static_cast<int>(lk.size());
        const double p_other = others > 0 ? (1 - c) * (1 - share) / others : 0.0;
        double* row = &ll_[static_cast<std::size_t>(p * n)];
        std::vector<double> lik(static_cast<std::size_t>(n), p_other);
        lik[static_cast<std::size_t>(o)] = c;
        for (const auto& [y, w] : lk) lik[static_cast<std::size_t>(y)] = (1 - c) * share * w / wsum;
        for (int t = 0; t < n; ++t) {
          row[t] += std::log(std::max(lik[static_cast<std::size_t>(t)], 1e-300));
          bool ok = t == o;
          for (const auto& [y, w] : lk) ok = ok || y == t;
          if (!ok) consistent_[static_cast<std::size_t>(p * n + t)] = 0;
        }
      }
    }
    suffix_max_.assign(static_cast<std::size_t>(L_ + 1), 0.0);
    suffix_flat_.assign(static_cast<std::size_t>(L_ + 1), 1);
    suffix_any_.assign(static_cast<std::size_t>(L_ + 1), 1);
    suffix_mean_.assign(static_cast<std::size_t>(L_ + 1), 0.0);
    consistent_share_ = 1.0;
    for (int p = L_ - 1; p >= 0; --p) {
      const double* row = &ll_[static_cast<std::size_t>(p * n)];
      const double mx = *std::max_element(row, row + n);
      const double mn = *std::min_element(row, row + n);
      bool any = true;
      int nc = 0;
      for (int t = 0; t < n; ++t) {
        any = any && consistent_[static_cast<std::size_t>(p * n + t)];
        nc += consistent_[static_cast<std::size_t>(p * n + t)];
      }
      consistent_share_ *= static_cast<double>(nc) / n;
      suffix_max_[static_cast<std::size_t>(p)] = suffix_max_[static_cast<std::size_t>(p + 1)] + mx;
      double mean = 0;
      for (int t = 0; t < n; ++t) mean += std::exp(row[t] - mx);
      suffix_mean_[static_cast<std::size_t>(p)] =
          suffix_mean_[static_cast<std::size_t>(p + 1)] + mx + std::log(mean / n);
      suffix_flat_[static_cast<std::size_t>(p)] = suffix_flat_[static_cast<std::size_t>(p + 1)] && mx == mn;
      suffix_any_[static_cast<std::size_t>(p)] = suffix_any_[static_cast<std::size_t>(p + 1)] && any;
    }
    return Status::Ok();
  }

  double max_ll() const { return suffix_max_[0]; }
  // Share of the code space consistent with the reads (product over positions):
  // times the number of codes, the expected consistent count, the measure of
  // which location is the more informative.
  double consistent_share() const { return consistent_share_; }
  // Live codes of this location over all segments.
  std::size_t LiveCodes() const { return Live(Root()); }

  // Log-likelihood of one packed code.
  double Score(std::uint64_t v) const {
    const int n = static_cast<int>(l_->alphabet.chars.size());
    const std::uint64_t mask = (1ull << l_->bits) - 1;
    double s = 0;
    for (int p = L_ - 1; p >= 0; --p) {
      s += ll_[static_cast<std::size_t>(p * n) + (v & mask)];
      v >>= l_->bits;
    }
    return s;
  }
  bool Consistent(std::uint64_t v) const { return ConsistentFrom(v, 0); }
  bool ConsistentFrom(std::uint64_t v, int depth) const {
    const int n = static_cast<int>(l_->alphabet.chars.size());
    const std::uint64_t mask = (1ull << l_->bits) - 1;
    for (int p = L_ - 1; p >= depth; --p) {
      if (!consistent_[static_cast<std::size_t>(p * n) + (v & mask)]) return false;
      v >>= l_->bits;
    }
    return true;
  }

  struct Hit {
    std::uint64_t owner;  // OwnerKey
    double ll;
  };
  std::vector<Hit> hits;
  // Ranges kept as a block: every code in them has the same log-likelihood at this location.
  std::vector<std::pair<double, std::int64_t>> bulk;     // (ll, count)
  // Masses relative to exp(max_ll() + other_max_): codes scored but not listed
  // (exact), and pruned subtrees (size x prefix likelihood x expected
  // likelihood of the rest for uniformly spread codes).
  double scored_mass = 0.0;
  double pruned_mass = 0.0;
  void AddMass(double* m, double ll, std::int64_t count) const {
    const double d = ll - suffix_max_[0] - other_max_;
    if (d > -60) *m += static_cast<double>(count) * std::exp(d);  // below: < 1e-26 each
  }
  double best = -std::numeric_limits<double>::infinity();
  std::int64_t nodes = 0;

  void Walk() {
    // Seed `best` with the best consistent code (a cheap walk: look-alikes and
    // unknowns only), so the full walk prunes from its first node on.
    Seed(0, Root(), 0.0);
    Visit(0, Root(), 0.0);
  }

  // Counts consistent codes; collects their owners when `owners` is given and the count stays <= cap.
  std::int64_t CountConsistent(std::vector<std::uint64_t>* owners, std::size_t cap) {
    std::int64_t count = 0;
    Count(0, Root(), &count, owners, cap);
    return count;
  }

 private:
  Ranges Root() const {
    Ranges r;
    for (int s = 0; s < nseg_; ++s) {
      r.lo[s] = 0;
      r.hi[s] = segs_[s].loc->sorted_codes.size();
      r.dlo[s] = 0;
      r.dhi[s] = segs_[s].dead ? static_cast<std::uint32_t>(segs_[s].dead->size()) : 0;
    }
    return r;
  }
  // Dead positions of segment s inside [lo, hi), narrowed from the parent's part.
  void NarrowDead(int s, const Ranges& parent, Ranges* c) const {
    if (parent.dlo[s] == parent.dhi[s] || c->lo[s] >= c->hi[s]) {
      c->dlo[s] = c->dhi[s] = parent.dlo[s];
      return;
    }
    const std::uint32_t* d = segs_[s].dead->data();
    c->dlo[s] = static_cast<std::uint32_t>(
        std::lower_bound(d + parent.dlo[s], d + parent.dhi[s], static_cast<std::uint32_t>(c->lo[s])) - d);
    c->dhi[s] = static_cast<std::uint32_t>(
        std::lower_bound(d + c->dlo[s], d + parent.dhi[s], static_cast<std::uint32_t>(c->hi[s])) - d);
  }
  std::size_t Live(const Ranges& r) const {
    std::size_t n = 0;
    for (int s = 0; s < nseg_; ++s) {
      if (r.hi[s] > r.lo[s]) n += r.hi[s] - r.lo[s] - (r.dhi[s] - r.dlo[s]);
    }
    return n;
  }
  // Calls f(code, owner key) for each live code of the ranges in ascending code
  // order (the order of one index of the same codes; codes are unique across segments).
  template <class F>
  void ForEachLive(const Ranges& r, F&& f) const {
    std::size_t i[kMaxSegments];
    std::uint32_t dead[kMaxSegments];
    for (int s = 0; s < nseg_; ++s) {
      i[s] = r.lo[s];
      dead[s] = r.dlo[s];
    }
    for (;;) {
      int pick = -1;
      std::uint64_t v = 0;
      for (int s = 0; s < nseg_; ++s) {
        while (i[s] < r.hi[s] && dead[s] < r.dhi[s] && (*segs_[s].dead)[dead[s]] == i[s]) {
          ++i[s];
          ++dead[s];
        }
        if (i[s] < r.hi[s] && (pick < 0 || segs_[s].loc->sorted_codes[i[s]] < v)) {
          pick = s;
          v = segs_[s].loc->sorted_codes[i[s]];
        }
      }
      if (pick < 0) return;
      f(v, OwnerKey(pick, segs_[pick].loc->sorted_owner[i[pick]]));
      ++i[pick];
    }
  }
  // Log-likelihood of the owner's code at the other location (0 outside joint
  // mode, -inf when the firearm has no code there).
  double OtherScore(std::uint64_t owner) const {
    if (!other_) return 0.0;
    const Loc* o = other_segs_[KeySeg(owner)].loc;
    const std::uint32_t pos = o->position[KeyFirearm(owner)];
    if (pos == kNone) return -std::numeric_limits<double>::infinity();
    return other_->Score(o->sorted_codes[pos]);
  }

  int CharAt(std::uint64_t v, int depth) const {
    return static_cast<int>((v >> (l_->bits * (L_ - 1 - depth))) & ((1ull << l_->bits) - 1));
  }
  // [lo, hi) of codes whose character at `depth` is x, inside a range sharing the prefix.
  std::pair<std::size_t, std::size_t> Child(const Loc* l, std::size_t lo, std::size_t hi, int depth, int x) const {
    const auto* b = l->sorted_codes.data();
    const std::size_t a = static_cast<std::size_t>(
        std::partition_point(b + lo, b + hi, [&](std::uint64_t v) { return CharAt(v, depth) < x; }) - b);
    const std::size_t e = static_cast<std::size_t>(
        std::partition_point(b + a, b + hi, [&](std::uint64_t v) { return CharAt(v, depth) <= x; }) - b);
    return {a, e};
  }
  Ranges ChildRanges(const Ranges& r, int depth, int x) const {
    Ranges c;
    for (int s = 0; s < nseg_; ++s) {
      if (r.hi[s] > r.lo[s]) {
        std::tie(c.lo[s], c.hi[s]) = Child(segs_[s].loc, r.lo[s], r.hi[s], depth, x);
      } else {
        c.lo[s] = c.hi[s] = r.lo[s];
      }
      NarrowDead(s, r, &c);
    }
    return c;
  }

  static constexpr std::size_t kEnumerateCap = 4096;
  // Ranges this small are scored code by code: cheaper than descending.
  static constexpr std::size_t kScanRange = 32;

  void Seed(int depth, const Ranges& r, double prefix) {
    const std::size_t live = Live(r);
    if (live == 0) return;
    if (prefix + suffix_max_[static_cast<std::size_t>(depth)] + other_max_ <= best) return;
    if (live <= kScanRange || depth == L_) {
      ForEachLive(r, [&](std::uint64_t v, std::uint64_t owner) {
        if (ConsistentFrom(v, depth)) best = std::max(best, prefix + ScoreFrom(v, depth) + OtherScore(owner));
      });
      return;
    }
    const int n = static_cast<int>(l_->alphabet.chars.size());
    const double* row = &ll_[static_cast<std::size_t>(depth * n)];
    for (int x = 0; x < n; ++x) {
      if (!consistent_[static_cast<std::size_t>(depth * n + x)]) continue;
      Seed(depth + 1, ChildRanges(r, depth, x), prefix + row[x]);
    }
  }

  // Log-likelihood of positions depth..L-1 of a packed code.
  double ScoreFrom(std::uint64_t v, int depth) const {
    const int n = static_cast<int>(l_->alphabet.chars.size());
    const std::uint64_t mask = (1ull << l_->bits) - 1;
    double s = 0;
    for (int p = L_ - 1; p >= depth; --p) {
      s += ll_[static_cast<std::size_t>(p * n) + (v & mask)];
      v >>= l_->bits;
    }
    return s;
  }

  void Visit(int depth, const Ranges& r, double prefix) {
    ++nodes;
    const std::size_t live = Live(r);
    if (live == 0) return;
    if ((depth == L_ || suffix_flat_[static_cast<std::size_t>(depth)]) && (!other_ || live > kEnumerateCap)) {
      // Every code below has exactly this log-likelihood at this location.
      const double ll = prefix + suffix_max_[static_cast<std::size_t>(depth)];
      if (live <= kEnumerateCap) {
        best = std::max(best, ll);
        ForEachLive(r, [&](std::uint64_t, std::uint64_t owner) { hits.push_back({owner, ll}); });
      } else {
        // Too many to list; in joint mode their other location is unknown and
        // bounded by its best value (the block counts in the tail).
        if (!other_) best = std::max(best, ll);
        bulk.push_back({ll, static_cast<std::int64_t>(live)});
      }
      return;
    }
    if (live <= kScanRange || depth == L_ || suffix_flat_[static_cast<std::size_t>(depth)]) {
      ForEachLive(r, [&](std::uint64_t v, std::uint64_t owner) {
        const double ll = prefix + ScoreFrom(v, depth) + OtherScore(owner);
        if (ll >= best - prune_) {
          best = std::max(best, ll);
          hits.push_back({owner, ll});
        } else {
          AddMass(&scored_mass, ll, 1);  // scored exactly, too unlikely to list
        }
      });
      return;
    }
    // The characters present at this depth in any segment, one binary search each.
    struct Kid {
      int x;
      Ranges r;
      std::size_t live;
    };
    Kid by_char[64];
    std::uint64_t present = 0;
    for (int s = 0; s < nseg_; ++s) {
      const Loc* l = segs_[s].loc;
      for (std::size_t a = r.lo[s]; a < r.hi[s];) {
        const int x = CharAt(l->sorted_codes[a], depth);
        const std::size_t e = Child(l, a, r.hi[s], depth, x).second;
        if (!(present >> x & 1)) {
          present |= 1ull << x;
          for (int t = 0; t < nseg_; ++t) by_char[x].r.lo[t] = by_char[x].r.hi[t] = r.lo[t];  // empty
        }
        by_char[x].r.lo[s] = a;
        by_char[x].r.hi[s] = e;
        a = e;
      }
    }
    for (std::uint64_t m = present; m; m &= m - 1) {
      const int x = __builtin_ctzll(m);
      for (int t = 0; t < nseg_; ++t) NarrowDead(t, r, &by_char[x].r);
    }
    Kid kids[64];
    int nk = 0;
    for (int x = 0; present; ++x, present >>= 1) {
      if (!(present & 1)) continue;
      Kid k{x, by_char[x].r, 0};
      k.live = Live(k.r);
      if (k.live > 0) kids[nk++] = k;
    }
    const int n = static_cast<int>(l_->alphabet.chars.size());
    const double* row = &ll_[static_cast<std::size_t>(depth * n)];
    // Best-first: the likeliest character first, so `best` rises early and prunes more.
    std::sort(kids, kids + nk, [&](const Kid& a, const Kid& b) { return row[a.x] > row[b.x]; });
    for (int k = 0; k < nk; ++k) {
      const double p = prefix + row[kids[k].x];
      if (p + suffix_max_[static_cast<std::size_t>(depth + 1)] + other_max_ < best - prune_) {
        AddMass(&pruned_mass, p + suffix_mean_[static_cast<std::size_t>(depth + 1)] + other_mean_,
                static_cast<std::int64_t>(kids[k].live));
        continue;
      }
      Visit(depth + 1, kids[k].r, p);
    }
  }

  void Count(int depth, const Ranges& r, std::int64_t* count, std::vector<std::uint64_t>* owners, std::size_t cap) {
    const std::size_t live = Live(r);
    if (live == 0) return;
    const bool all = depth == L_ || suffix_any_[static_cast<std::size_t>(depth)];
    if (live <= kScanRange && !all) {
      ForEachLive(r, [&](std::uint64_t v, std::uint64_t owner) {
        if (!ConsistentFrom(v, depth)) return;
        ++*count;
        if (owners && owners->size() < cap) owners->push_back(owner);
      });
      return;
    }
    if (all) {
      *count += static_cast<std::int64_t>(live);
      if (owners && owners->size() + live <= cap) {
        ForEachLive(r, [&](std::uint64_t, std::uint64_t owner) { owners->push_back(owner); });
      } else if (owners) {
        owners->clear();
        owners->shrink_to_fit();
        owners = nullptr;
        overflow_ = true;
      }
      return;
    }
    const int n = static_cast<int>(l_->alphabet.chars.size());
    for (int x = 0; x < n; ++x) {
      if (!consistent_[static_cast<std::size_t>(depth * n + x)]) continue;
      Count(depth + 1, ChildRanges(r, depth, x), count, overflow_ ? nullptr : owners, cap);
    }
  }

 public:
  bool overflow_ = false;

 private:
  SegLoc segs_[kMaxSegments];
  SegLoc other_segs_[kMaxSegments];
  int nseg_ = 1;
  const Loc* l_ = nullptr;
  double prune_;
  const LookupRun* other_ = nullptr;
  double other_max_ = 0.0;
  double other_mean_ = 0.0;
  int L_ = 0;
  double consistent_share_ = 1.0;
  std::vector<double> ll_;
  std::vector<char> consistent_;
  std::vector<double> suffix_max_;
  std::vector<double> suffix_mean_;  // sum of log(mean likelihood over the alphabet)
  std::vector<char> suffix_flat_;
  std::vector<char> suffix_any_;
};

StatusOr<MicrostampLookupResult> MicrostampIndex::Lookup(const std::vector<StampRead>& reads,
                                                         const MicrostampLookupOptions& options) const {
  if (!built_) return FailedPrecondition("microstamp index: lookup before Build");
  Segment seg;
  seg.index = this;
  return LookupSegments(&seg, 1, reads, options);
}

StatusOr<MicrostampLookupResult> MicrostampIndex::LookupSegments(const Segment* segs, int nseg,
                                                                 const std::vector<StampRead>& reads,
                                                                 const MicrostampLookupOptions& options) {
  if (nseg < 1 || nseg > kMaxSegments) return Internal("microstamp lookup over " + std::to_string(nseg) + " segments");
  for (int s = 0; s < nseg; ++s) {
    if (!segs[s].index || !segs[s].index->built_) return FailedPrecondition("microstamp index: lookup before Build");
  }
  if (reads.empty()) return InvalidArgument("microstamp lookup needs at least one read");
  if (options.top_k <= 0) return InvalidArgument("top_k " + std::to_string(options.top_k) + " is not positive");
  if (!(options.prune_log_ratio > 0)) {
    return InvalidArgument("prune_log_ratio " + std::to_string(options.prune_log_ratio) + " is not positive");
  }
  std::vector<const StampRead*> by_loc[kStampLocations];
  for (const StampRead& r : reads) {
    const int k = static_cast<int>(r.location);
    if (k < 0 || k >= kStampLocations) return InvalidArgument("read with an unknown location " + std::to_string(k));
    by_loc[k].push_back(&r);
  }
  LookupRun::SegLoc seglocs[kStampLocations][kMaxSegments];
  for (int k = 0; k < kStampLocations; ++k) {
    for (int s = 0; s < nseg; ++s) seglocs[k][s] = {&segs[s].index->loc_[k], segs[s].dead[k]};
  }
  auto firearm_id = [&](std::uint64_t key) { return segs[KeySeg(key)].index->firearm_ids_[KeyFirearm(key)]; };
  auto code_of = [&](int k, std::uint64_t key, std::uint64_t* v) {
    const Loc& l = segs[KeySeg(key)].index->loc_[k];
    const std::uint32_t pos = l.position[KeyFirearm(key)];
    if (pos == kNone) return false;
    *v = l.sorted_codes[pos];
    return true;
  };
  const MicrostampIndex& first = *segs[0].index;

  std::vector<std::unique_ptr<LookupRun>> runs(kStampLocations);
  int read_locs = 0;
  for (int k = 0; k < kStampLocations; ++k) {
    if (by_loc[k].empty()) continue;
    ++read_locs;
    runs[static_cast<std::size_t>(k)] = std::make_unique<LookupRun>(seglocs[k], nseg, options.prune_log_ratio);
    BALLISTICS_RETURN_IF_ERROR(runs[static_cast<std::size_t>(k)]->SetReads(by_loc[k]));
  }
  MicrostampLookupResult out;
  const bool joint = read_locs == kStampLocations && options.fused == MicrostampLookupOptions::Fused::kExactJoint;
  const bool primary = read_locs == kStampLocations && options.fused == MicrostampLookupOptions::Fused::kPrimary;
  int walked = -1;  // kPrimary and kExactJoint: the one location walked
  if (joint || primary) {
    // Walk the location with the fewer expected consistent codes: its bound
    // cuts sooner, and the other location costs one table lookup per code reached.
    double expected[kStampLocations];
    for (int k = 0; k < kStampLocations; ++k) {
      expected[k] = runs[static_cast<std::size_t>(k)]->consistent_share() *
                    static_cast<double>(runs[static_cast<std::size_t>(k)]->LiveCodes());
    }
    walked = expected[1] < expected[0] ? 1 : 0;
    const int other = 1 - walked;
    if (joint) {
      runs[static_cast<std::size_t>(walked)]->SetOther(runs[static_cast<std::size_t>(other)].get(), seglocs[other]);
    }
    runs[static_cast<std::size_t>(walked)]->Walk();
    out.nodes_visited += runs[static_cast<std::size_t>(walked)]->nodes;
  } else {
    for (auto& r : runs) {
      if (!r) continue;
      r->Walk();
      out.nodes_visited += r->nodes;
    }
  }

  // Exact joint log-likelihood of one firearm, -inf when it lacks a code at a
  // location that was read.
  auto joint_ll = [&](std::uint64_t key) {
    double s = 0;
    for (int k = 0; k < kStampLocations; ++k) {
      if (!runs[static_cast<std::size_t>(k)]) continue;
      std::uint64_t v;
      if (!code_of(k, key, &v)) return -std::numeric_limits<double>::infinity();
      s += runs[static_cast<std::size_t>(k)]->Score(v);
    }
    return s;
  };
  std::unordered_map<std::uint64_t, double> cand;
  for (auto& r : runs) {
    if (!r) continue;
    for (const auto& h : r->hits) cand.emplace(h.owner, 0.0);
  }
  double ref = -std::numeric_limits<double>::infinity();
  for (auto& [key, ll] : cand) {
    ll = joint_ll(key);
    ref = std::max(ref, ll);
  }
  // Masses relative to exp(ref). Per-location walks: bulk blocks and scored
  // codes are evaluated mass when only one location was read; with two, their
  // other-location likelihood is unknown and bounded by that location's best
  // possible value. Joint walk: scored codes were scored jointly (evaluated),
  // bulk blocks bounded.
  double z = 0, tail = 0;
  for (int k = 0; k < kStampLocations; ++k) {
    const auto& r = runs[static_cast<std::size_t>(k)];
    if (!r || (walked >= 0 && k != walked)) continue;
    double others_max = 0;
    for (int j = 0; j < kStampLocations; ++j) {
      if (j != k && runs[static_cast<std::size_t>(j)]) others_max += runs[static_cast<std::size_t>(j)]->max_ll();
    }
    if (!std::isfinite(ref)) ref = joint ? r->best : r->best + others_max;
    if (!std::isfinite(ref)) ref = r->max_ll() + others_max;
    for (const auto& [ll, count] : r->bulk) {
      const double m = static_cast<double>(count) * std::exp(ll + others_max - ref);
      (read_locs == 1 ? z : tail) += m;
    }
    const double scale = std::exp(r->max_ll() + others_max - ref);
    (read_locs == 1 || joint ? z : tail) += r->scored_mass * scale;
    tail += r->pruned_mass * scale;
  }
  std::vector<std::pair<double, std::uint64_t>> ranked;
  ranked.reserve(cand.size());
  for (const auto& [key, ll] : cand) {
    if (std::isfinite(ll)) {
      ranked.push_back({ll, key});
      z += std::exp(ll - ref);
    }
  }
  std::sort(ranked.begin(), ranked.end(), [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : firearm_id(a.second) < firearm_id(b.second);
  });
  out.tail_mass_estimate = (z + tail) > 0 ? tail / (z + tail) : 0.0;
  for (std::size_t i = 0; i < ranked.size() && static_cast<int>(i) < options.top_k; ++i) {
    MicrostampCandidate c;
    c.firearm_id = firearm_id(ranked[i].second);
    c.log_likelihood = ranked[i].first;
    c.posterior = z > 0 ? std::exp(ranked[i].first - ref) / z : 0.0;
    for (int k = 0; k < kStampLocations; ++k) {
      std::uint64_t v;
      if (code_of(k, ranked[i].second, &v)) c.codes[k] = first.Unpack(first.loc_[k], v);
    }
    out.candidates.push_back(std::move(c));
  }

  // Consistent codes per location, and firearms consistent everywhere read.
  constexpr std::size_t kJointCap = 1 << 20;
  std::vector<std::uint64_t> owners;
  int smallest = -1;
  for (int k = 0; k < kStampLocations; ++k) {
    if (!runs[static_cast<std::size_t>(k)]) continue;
    out.consistent_codes[k] = runs[static_cast<std::size_t>(k)]->CountConsistent(nullptr, 0);
    if (smallest < 0 || out.consistent_codes[k] < out.consistent_codes[smallest]) smallest = k;
  }
  if (read_locs == 1) {
    out.consistent_firearms = out.consistent_codes[smallest];
  } else if (static_cast<std::size_t>(out.consistent_codes[smallest]) <= kJointCap) {
    runs[static_cast<std::size_t>(smallest)]->CountConsistent(&owners, kJointCap);
    for (std::uint64_t key : owners) {
      bool ok = true;
      for (int k = 0; k < kStampLocations && ok; ++k) {
        if (k == smallest || !runs[static_cast<std::size_t>(k)]) continue;
        std::uint64_t v;
        ok = code_of(k, key, &v) && runs[static_cast<std::size_t>(k)]->Consistent(v);
      }
      out.consistent_firearms += ok ? 1 : 0;
    }
  } else {
    out.consistent_firearms = -1;  // too many to intersect; see consistent_codes
  }
  return out;
}

// ------------------------------------------------------------------ live index

StatusOr<std::shared_ptr<const LiveMicrostampIndex>> LiveMicrostampIndex::FromBase(
    std::shared_ptr<const MicrostampIndex> base) {
  if (!base || !base->built_) return InvalidArgument("live microstamp index: the base index is not built");
  auto live = std::shared_ptr<LiveMicrostampIndex>(new LiveMicrostampIndex());
  live->base_ = std::move(base);
  return std::shared_ptr<const LiveMicrostampIndex>(std::move(live));
}

std::size_t LiveMicrostampIndex::size() const {
  return base_->size() - dead_firearms_.size() + delta_entries_.size();
}

StatusOr<std::shared_ptr<const LiveMicrostampIndex>> LiveMicrostampIndex::Apply(
    const std::vector<MicrostampChange>& changes) const {
  auto next = std::shared_ptr<LiveMicrostampIndex>(new LiveMicrostampIndex(*this));
  // Entries by id (the last change of a firearm wins); linear in the delta.
  std::unordered_map<std::int64_t, std::size_t> slot;
  std::vector<MicrostampChange>& entries = next->delta_entries_;
  std::vector<char> gone(entries.size(), 0);
  slot.reserve(entries.size() + changes.size());
  for (std::size_t i = 0; i < entries.size(); ++i) slot[entries[i].firearm_id] = i;
  std::vector<std::uint32_t> new_dead;
  std::unordered_set<std::uint32_t> new_dead_set;
  for (const MicrostampChange& c : changes) {
    if (c.firearm_id <= 0) return InvalidArgument("firearm id " + std::to_string(c.firearm_id) + " is not positive");
    auto it = slot.find(c.firearm_id);
    const bool in_delta = it != slot.end();
    const std::int64_t fi = base_->IndexOfFirearm(c.firearm_id);
    const bool live_in_base =
        fi >= 0 && !std::binary_search(dead_firearms_.begin(), dead_firearms_.end(), static_cast<std::uint32_t>(fi)) &&
        !new_dead_set.count(static_cast<std::uint32_t>(fi));
    if (c.revoked && !in_delta && !live_in_base) {
      return NotFound("firearm " + std::to_string(c.firearm_id) + " has no live microstamp code to revoke");
    }
    if (in_delta) {
      gone[it->second] = 1;
      slot.erase(it);
    }
    // Its base codes are dead from now on (revoked, or replaced by the delta entry).
    if (live_in_base) {
      new_dead.push_back(static_cast<std::uint32_t>(fi));
      new_dead_set.insert(static_cast<std::uint32_t>(fi));
    }
    if (!c.revoked) {
      slot[c.firearm_id] = entries.size();
      entries.push_back(c);
      gone.push_back(0);
    }
  }
  std::size_t w = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (gone[i]) continue;
    if (w != i) entries[w] = std::move(entries[i]);  // never self-move (it empties a string)
    ++w;
  }
  entries.resize(w);
  std::sort(entries.begin(), entries.end(),
            [](const MicrostampChange& a, const MicrostampChange& b) { return a.firearm_id < b.firearm_id; });
  for (std::uint32_t f : new_dead) {
    next->dead_firearms_.push_back(f);
    for (int k = 0; k < kStampLocations; ++k) {
      const std::uint32_t pos = base_->loc_[k].position[f];
      if (pos != kNone) next->dead_[k].push_back(pos);
    }
  }
  std::sort(next->dead_firearms_.begin(), next->dead_firearms_.end());
  for (auto& d : next->dead_) std::sort(d.begin(), d.end());
  // The delta as an index of its own (small: rebuilt whole), alphabets of the base.
  auto delta = std::make_shared<MicrostampIndex>(base_->loc_[0].alphabet, base_->loc_[1].alphabet);
  delta->Reserve(next->delta_entries_.size());
  for (const MicrostampChange& e : next->delta_entries_) {
    BALLISTICS_RETURN_IF_ERROR(delta->Add(e.firearm_id, e.fp_code, e.bf_code));
    // A code must not be live in the base under another firearm.
    const std::string_view codes[kStampLocations] = {e.fp_code, e.bf_code};
    for (int k = 0; k < kStampLocations; ++k) {
      if (codes[k].empty()) continue;
      BALLISTICS_ASSIGN_OR_RETURN(std::uint64_t v, base_->Pack(base_->loc_[k], codes[k]));
      const auto& sc = base_->loc_[k].sorted_codes;
      auto p = std::lower_bound(sc.begin(), sc.end(), v);
      if (p == sc.end() || *p != v) continue;
      const auto pos = static_cast<std::uint32_t>(p - sc.begin());
      if (!std::binary_search(next->dead_[k].begin(), next->dead_[k].end(), pos)) {
        return AlreadyExists("code '" + std::string(codes[k]) + "' is registered for firearms " +
                             std::to_string(base_->firearm_ids_[base_->loc_[k].sorted_owner[pos]]) + " and " +
                             std::to_string(e.firearm_id));
      }
    }
  }
  BALLISTICS_RETURN_IF_ERROR(delta->Build());
  next->delta_ = std::move(delta);
  return std::shared_ptr<const LiveMicrostampIndex>(std::move(next));
}

StatusOr<std::shared_ptr<const LiveMicrostampIndex>> LiveMicrostampIndex::Compact() const {
  auto merged = std::make_shared<MicrostampIndex>(base_->loc_[0].alphabet, base_->loc_[1].alphabet);
  merged->Reserve(size());
  // Packed codes are copied as they are (same alphabets): no re-validation.
  auto push = [&](const MicrostampIndex& from, std::uint32_t fi) {
    merged->firearm_ids_.push_back(from.firearm_ids_[fi]);
    for (int k = 0; k < kStampLocations; ++k) {
      const std::uint32_t pos = from.loc_[k].position[fi];
      merged->loc_[k].pending.push_back(pos == kNone ? kNoCode : from.loc_[k].sorted_codes[pos]);
    }
  };
  const MicrostampIndex* delta = delta_.get();
  const std::size_t nb = base_->size(), nd = delta ? delta->size() : 0;
  std::size_t b = 0, d = 0;
  while (b < nb || d < nd) {
    if (b < nb && std::binary_search(dead_firearms_.begin(), dead_firearms_.end(), static_cast<std::uint32_t>(b))) {
      ++b;
      continue;
    }
    if (d >= nd || (b < nb && base_->firearm_ids_[b] < delta->firearm_ids_[d])) {
      push(*base_, static_cast<std::uint32_t>(b++));
    } else {
      push(*delta, static_cast<std::uint32_t>(d++));
    }
  }
  BALLISTICS_RETURN_IF_ERROR(merged->Build());
  return FromBase(std::move(merged));
}

StatusOr<MicrostampLookupResult> LiveMicrostampIndex::Lookup(const std::vector<StampRead>& reads,
                                                             const MicrostampLookupOptions& options) const {
  MicrostampIndex::Segment segs[2];
  segs[0].index = base_.get();
  for (int k = 0; k < kStampLocations; ++k) segs[0].dead[k] = &dead_[k];
  int n = 1;
  if (delta_ && delta_->size() > 0) segs[n++].index = delta_.get();
  return MicrostampIndex::LookupSegments(segs, n, reads, options);
}

StatusOr<std::int64_t> LiveMicrostampIndex::FindExact(StampLocation loc, std::string_view code) const {
  if (delta_ && delta_->size() > 0) {
    auto d = delta_->FindExact(loc, code);
    if (d.ok() || d.status().code() != StatusCode::kNotFound) return d;
  }
  auto b = base_->FindExact(loc, code);
  if (!b.ok()) return b;
  const std::int64_t fi = base_->IndexOfFirearm(*b);
  if (std::binary_search(dead_firearms_.begin(), dead_firearms_.end(), static_cast<std::uint32_t>(fi))) {
    return NotFound("no firearm carries code '" + std::string(code) + "' at the " +
                    std::string(StampLocationName(loc)) + " (revoked or re-registered)");
  }
  return b;
}

}  // namespace ballistics::registry
