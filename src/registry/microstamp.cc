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
#include <unordered_map>

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
    BALLISTICS_RETURN_IF_ERROR(loc_[k].alphabet.Validate());
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
  {
    std::vector<std::int64_t> ids = firearm_ids_;
    std::sort(ids.begin(), ids.end());
    auto d = std::adjacent_find(ids.begin(), ids.end());
    if (d != ids.end()) return AlreadyExists("firearm " + std::to_string(*d) + " added twice");
  }
  const std::size_t n = firearm_ids_.size();
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

// One lookup's state for one location: the per-position log-likelihood table
// (reads of this location summed), the consistency table, and the walk.
class LookupRun {
 public:
  using Loc = MicrostampIndex::Loc;

  LookupRun(const Loc& l, double prune) : l_(l), prune_(prune) {}

  Status SetReads(const std::vector<const StampRead*>& reads) {
    const Alphabet& a = l_.alphabet;
    const int n = static_cast<int>(a.chars.size());
    L_ = a.code_length;
    ll_.assign(static_cast<std::size_t>(L_ * n), 0.0);
    consistent_.assign(static_cast<std::size_t>(L_ * n), 1);
    // Look-alike weights by character index.
    std::vector<std::vector<std::pair<int, double>>> look(static_cast<std::size_t>(n));
    for (const auto& [pair, w] : a.lookalikes) {
      const int x = l_.char_index[static_cast<unsigned char>(pair[0])];
      const int y = l_.char_index[static_cast<unsigned char>(pair[1])];
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
        const int o = l_.char_index[static_cast<unsigned char>(*rc.ch)];
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
    for (int p = L_ - 1; p >= 0; --p) {
      const double* row = &ll_[static_cast<std::size_t>(p * n)];
      const double mx = *std::max_element(row, row + n);
      const double mn = *std::min_element(row, row + n);
      bool any = true;
      for (int t = 0; t < n; ++t) any = any && consistent_[static_cast<std::size_t>(p * n + t)];
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

  // Log-likelihood of one packed code.
  double Score(std::uint64_t v) const {
    const int n = static_cast<int>(l_.alphabet.chars.size());
    const std::uint64_t mask = (1ull << l_.bits) - 1;
    double s = 0;
    for (int p = L_ - 1; p >= 0; --p) {
      s += ll_[static_cast<std::size_t>(p * n) + (v & mask)];
      v >>= l_.bits;
    }
    return s;
  }
  bool Consistent(std::uint64_t v) const { return ConsistentFrom(v, 0); }
  bool ConsistentFrom(std::uint64_t v, int depth) const {
    const int n = static_cast<int>(l_.alphabet.chars.size());
    const std::uint64_t mask = (1ull << l_.bits) - 1;
    for (int p = L_ - 1; p >= depth; --p) {
      if (!consistent_[static_cast<std::size_t>(p * n) + (v & mask)]) return false;
      v >>= l_.bits;
    }
    return true;
  }

  struct Hit {
    std::uint32_t owner;
    double ll;
  };
  std::vector<Hit> hits;
  // Ranges kept as a block: every code in them has the same log-likelihood.
  std::vector<std::pair<double, std::int64_t>> bulk;     // (ll, count)
  // Masses relative to exp(max_ll()): codes scored but not listed (exact), and
  // pruned subtrees (size x prefix likelihood x expected likelihood of the rest
  // for uniformly spread codes).
  double scored_mass = 0.0;
  double pruned_mass = 0.0;
  void AddMass(double* m, double ll, std::int64_t count) const {
    const double d = ll - suffix_max_[0];
    if (d > -60) *m += static_cast<double>(count) * std::exp(d);  // below: < 1e-26 each
  }
  double best = -std::numeric_limits<double>::infinity();
  std::int64_t nodes = 0;

  void Walk() {
    // Seed `best` with the best consistent code (a cheap walk: look-alikes and
    // unknowns only), so the full walk prunes from its first node on.
    Seed(0, 0, l_.sorted_codes.size(), 0.0);
    Visit(0, 0, l_.sorted_codes.size(), 0.0);
  }

  // Counts consistent codes; collects their owners when `owners` is given and the count stays <= cap.
  std::int64_t CountConsistent(std::vector<std::uint32_t>* owners, std::size_t cap) {
    std::int64_t count = 0;
    Count(0, 0, l_.sorted_codes.size(), &count, owners, cap);
    return count;
  }

 private:
  int CharAt(std::uint64_t v, int depth) const {
    return static_cast<int>((v >> (l_.bits * (L_ - 1 - depth))) & ((1ull << l_.bits) - 1));
  }
  // [lo, hi) of codes whose character at `depth` is x, inside a range sharing the prefix.
  std::pair<std::size_t, std::size_t> Child(std::size_t lo, std::size_t hi, int depth, int x) const {
    const auto* b = l_.sorted_codes.data();
    const std::size_t a = static_cast<std::size_t>(
        std::partition_point(b + lo, b + hi, [&](std::uint64_t v) { return CharAt(v, depth) < x; }) - b);
    const std::size_t e = static_cast<std::size_t>(
        std::partition_point(b + a, b + hi, [&](std::uint64_t v) { return CharAt(v, depth) <= x; }) - b);
    return {a, e};
  }

  static constexpr std::size_t kEnumerateCap = 4096;
  // Ranges this small are scored code by code: cheaper than descending.
  static constexpr std::size_t kScanRange = 32;

  void Seed(int depth, std::size_t lo, std::size_t hi, double prefix) {
    if (lo >= hi) return;
    if (prefix + suffix_max_[static_cast<std::size_t>(depth)] <= best) return;
    if (hi - lo <= kScanRange || depth == L_) {
      for (std::size_t i = lo; i < hi; ++i) {
        if (ConsistentFrom(l_.sorted_codes[i], depth)) best = std::max(best, prefix + ScoreFrom(l_.sorted_codes[i], depth));
      }
      return;
    }
    const int n = static_cast<int>(l_.alphabet.chars.size());
    const double* row = &ll_[static_cast<std::size_t>(depth * n)];
    for (int x = 0; x < n; ++x) {
      if (!consistent_[static_cast<std::size_t>(depth * n + x)]) continue;
      auto [a, e] = Child(lo, hi, depth, x);
      Seed(depth + 1, a, e, prefix + row[x]);
    }
  }

  // Log-likelihood of positions depth..L-1 of a packed code.
  double ScoreFrom(std::uint64_t v, int depth) const {
    const int n = static_cast<int>(l_.alphabet.chars.size());
    const std::uint64_t mask = (1ull << l_.bits) - 1;
    double s = 0;
    for (int p = L_ - 1; p >= depth; --p) {
      s += ll_[static_cast<std::size_t>(p * n) + (v & mask)];
      v >>= l_.bits;
    }
    return s;
  }

  void Visit(int depth, std::size_t lo, std::size_t hi, double prefix) {
    ++nodes;
    if (lo >= hi) return;
    if (depth == L_ || suffix_flat_[static_cast<std::size_t>(depth)]) {
      // Every code below has exactly this log-likelihood.
      const double ll = prefix + suffix_max_[static_cast<std::size_t>(depth)];
      best = std::max(best, ll);
      if (hi - lo <= kEnumerateCap) {
        for (std::size_t i = lo; i < hi; ++i) hits.push_back({l_.sorted_owner[i], ll});
      } else {
        bulk.push_back({ll, static_cast<std::int64_t>(hi - lo)});
      }
      return;
    }
    if (hi - lo <= kScanRange) {
      for (std::size_t i = lo; i < hi; ++i) {
        const double ll = prefix + ScoreFrom(l_.sorted_codes[i], depth);
        if (ll >= best - prune_) {
          best = std::max(best, ll);
          hits.push_back({l_.sorted_owner[i], ll});
        } else {
          AddMass(&scored_mass, ll, 1);  // scored exactly, too unlikely to list
        }
      }
      return;
    }
    // The characters present at this depth, one binary search each.
    struct Kid {
      int x;
      std::size_t a, e;
    };
    Kid kids[64];
    int nk = 0;
    for (std::size_t a = lo; a < hi;) {
      const int x = CharAt(l_.sorted_codes[a], depth);
      const std::size_t e = Child(a, hi, depth, x).second;
      kids[nk++] = {x, a, e};
      a = e;
    }
    const int n = static_cast<int>(l_.alphabet.chars.size());
    const double* row = &ll_[static_cast<std::size_t>(depth * n)];
    // Best-first: the likeliest character first, so `best` rises early and prunes more.
    std::sort(kids, kids + nk, [&](const Kid& a, const Kid& b) { return row[a.x] > row[b.x]; });
    for (int k = 0; k < nk; ++k) {
      const double p = prefix + row[kids[k].x];
      if (p + suffix_max_[static_cast<std::size_t>(depth + 1)] < best - prune_) {
        AddMass(&pruned_mass, p + suffix_mean_[static_cast<std::size_t>(depth + 1)],
                static_cast<std::int64_t>(kids[k].e - kids[k].a));
        continue;
      }
      Visit(depth + 1, kids[k].a, kids[k].e, p);
    }
  }

  void Count(int depth, std::size_t lo, std::size_t hi, std::int64_t* count, std::vector<std::uint32_t>* owners,
             std::size_t cap) {
    if (lo >= hi) return;
    if (hi - lo <= kScanRange && !(depth == L_ || suffix_any_[static_cast<std::size_t>(depth)])) {
      for (std::size_t i = lo; i < hi; ++i) {
        if (!ConsistentFrom(l_.sorted_codes[i], depth)) continue;
        ++*count;
        if (owners && owners->size() < cap) owners->push_back(l_.sorted_owner[i]);
      }
      return;
    }
    if (depth == L_ || suffix_any_[static_cast<std::size_t>(depth)]) {
      *count += static_cast<std::int64_t>(hi - lo);
      if (owners && owners->size() + (hi - lo) <= cap) {
        for (std::size_t i = lo; i < hi; ++i) owners->push_back(l_.sorted_owner[i]);
      } else if (owners) {
        owners->clear();
        owners->shrink_to_fit();
        owners = nullptr;
        overflow_ = true;
      }
      return;
    }
    const int n = static_cast<int>(l_.alphabet.chars.size());
    for (int x = 0; x < n; ++x) {
      if (!consistent_[static_cast<std::size_t>(depth * n + x)]) continue;
      auto [a, e] = Child(lo, hi, depth, x);
      Count(depth + 1, a, e, count, overflow_ ? nullptr : owners, cap);
    }
  }

 public:
  bool overflow_ = false;

 private:
  const Loc& l_;
  double prune_;
  int L_ = 0;
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
  std::vector<std::unique_ptr<LookupRun>> runs(kStampLocations);
  for (int k = 0; k < kStampLocations; ++k) {
    if (by_loc[k].empty()) continue;
    runs[static_cast<std::size_t>(k)] = std::make_unique<LookupRun>(loc_[k], options.prune_log_ratio);
    BALLISTICS_RETURN_IF_ERROR(runs[static_cast<std::size_t>(k)]->SetReads(by_loc[k]));
  }
  MicrostampLookupResult out;
  int read_locs = 0;
  for (int k = 0; k < kStampLocations; ++k) {
    if (!runs[static_cast<std::size_t>(k)]) continue;
    ++read_locs;
    runs[static_cast<std::size_t>(k)]->Walk();
    out.nodes_visited += runs[static_cast<std::size_t>(k)]->nodes;
  }

  // Exact joint log-likelihood of one firearm (index), -inf when it lacks a
  // code at a location that was read.
  auto joint = [&](std::uint32_t fi) {
    double s = 0;
    for (int k = 0; k < kStampLocations; ++k) {
      if (!runs[static_cast<std::size_t>(k)]) continue;
      const std::uint32_t pos = loc_[k].position[fi];
      if (pos == std::numeric_limits<std::uint32_t>::max()) return -std::numeric_limits<double>::infinity();
      s += runs[static_cast<std::size_t>(k)]->Score(loc_[k].sorted_codes[pos]);
    }
    return s;
  };
  std::unordered_map<std::uint32_t, double> cand;
  for (auto& r : runs) {
    if (!r) continue;
    for (const auto& h : r->hits) cand.emplace(h.owner, 0.0);
  }
  double ref = -std::numeric_limits<double>::infinity();
  for (auto& [fi, ll] : cand) {
    ll = joint(fi);
    ref = std::max(ref, ll);
  }
  // Masses relative to exp(ref). Bulk blocks are evaluated mass when only one
  // location was read; with two, their other-location likelihood is unknown and
  // bounded by that location's best possible value.
  double z = 0, tail = 0;
  for (int k = 0; k < kStampLocations; ++k) {
    const auto& r = runs[static_cast<std::size_t>(k)];
    if (!r) continue;
    double others_max = 0;
    for (int j = 0; j < kStampLocations; ++j) {
      if (j != k && runs[static_cast<std::size_t>(j)]) others_max += runs[static_cast<std::size_t>(j)]->max_ll();
    }
    if (!std::isfinite(ref)) ref = r->best + others_max;
    for (const auto& [ll, count] : r->bulk) {
      const double m = static_cast<double>(count) * std::exp(ll + others_max - ref);
      (read_locs == 1 ? z : tail) += m;
    }
    const double scale = std::exp(r->max_ll() + others_max - ref);
    (read_locs == 1 ? z : tail) += r->scored_mass * scale;
    tail += r->pruned_mass * scale;
  }
  std::vector<std::pair<double, std::uint32_t>> ranked;
  ranked.reserve(cand.size());
  for (const auto& [fi, ll] : cand) {
    if (std::isfinite(ll)) {
      ranked.push_back({ll, fi});
      z += std::exp(ll - ref);
    }
  }
  std::sort(ranked.begin(), ranked.end(), [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : firearm_ids_[a.second] < firearm_ids_[b.second];
  });
  out.tail_mass_estimate = (z + tail) > 0 ? tail / (z + tail) : 0.0;
  for (std::size_t i = 0; i < ranked.size() && static_cast<int>(i) < options.top_k; ++i) {
    MicrostampCandidate c;
    c.firearm_id = firearm_ids_[ranked[i].second];
    c.log_likelihood = ranked[i].first;
    c.posterior = z > 0 ? std::exp(ranked[i].first - ref) / z : 0.0;
    for (int k = 0; k < kStampLocations; ++k) {
      const std::uint32_t pos = loc_[k].position[ranked[i].second];
      if (pos != std::numeric_limits<std::uint32_t>::max()) c.codes[k] = Unpack(loc_[k], loc_[k].sorted_codes[pos]);
    }
    out.candidates.push_back(std::move(c));
  }

  // Consistent codes per location, and firearms consistent everywhere read.
  constexpr std::size_t kJointCap = 1 << 20;
  std::vector<std::uint32_t> owners;
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
    for (std::uint32_t fi : owners) {
      bool ok = true;
      for (int k = 0; k < kStampLocations && ok; ++k) {
        if (k == smallest || !runs[static_cast<std::size_t>(k)]) continue;
        const std::uint32_t pos = loc_[k].position[fi];
        ok = pos != std::numeric_limits<std::uint32_t>::max() &&
             runs[static_cast<std::size_t>(k)]->Consistent(loc_[k].sorted_codes[pos]);
      }
      out.consistent_firearms += ok ? 1 : 0;
    }
  } else {
    out.consistent_firearms = -1;  // too many to intersect; see consistent_codes
  }
  return out;
}

}  // namespace ballistics::registry
