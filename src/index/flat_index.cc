// Flat (exhaustive) signature index: every descriptor of a kind is scored.
//
// Memory layout, per kind (BF, FP), chosen so that the scan streams memory
// once and the inner loop is a SIMD multiply-add over lanes:
//   descriptors are packed in blocks of kLanes signatures; within a block the
//   coefficient (r, k) of all lanes is contiguous, (re, im) interleaved, and
//   the coefficients are frequency-major (the kernels sum over rings):
//       block[((k * R + r) * kLanes + lane) * 2 + {0: re, 1: im}]   (int8)
//   so the ring-summed cross-spectrum of kLanes candidates is
//       X[k][lane] += q_re * c_re + q_im * c_im,  q_im * c_re - q_re * c_im
//   (exact int32 sums of int8 products, cross_spectrum.cc), followed by one
//   inverse DFT per block, SIMD across the lanes (lane_dft.cc). Filter fields
//   live in parallel arrays indexed by slot = block * kLanes + lane; a block
//   whose lanes all fail the filter is not scored at all.
// Removal moves the last slot into the hole, so the blocks stay dense.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "ballistics/index.h"
#include "internal.h"

namespace ballistics {

bool SearchFilter::Matches(const SignatureRecord& r) const {
  if (!kinds.empty() && std::find(kinds.begin(), kinds.end(), r.kind) == kinds.end()) return false;
  if (!modalities.empty() && std::find(modalities.begin(), modalities.end(), r.modality) == modalities.end())
    return false;
  if (!calibres.empty() && std::find(calibres.begin(), calibres.end(), r.calibre) == calibres.end()) return false;
  if (!agencies.empty() && std::find(agencies.begin(), agencies.end(), r.agency) == agencies.end()) return false;
  if (!sources.empty() && std::find(sources.begin(), sources.end(), r.source) == sources.end()) return false;
  if (captured_after_unix || captured_before_unix) {
    if (r.captured_at_unix == kUnknownTime) return false;
    if (captured_after_unix && r.captured_at_unix < *captured_after_unix) return false;
    if (captured_before_unix && r.captured_at_unix >= *captured_before_unix) return false;
  }
  if (!exclude_casing_ids.empty() &&
      std::find(exclude_casing_ids.begin(), exclude_casing_ids.end(), r.casing_id) != exclude_casing_ids.end()) {
    return false;
  }
  return true;
}

bool HitBefore(const CoarseHit& a, const CoarseHit& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.signature_id < b.signature_id;
}

namespace {

using index_internal::kLanes;

class FlatIndex final : public SignatureIndex {
 public:
  Status Add(const SignatureRecord& record, const CoarseDescriptor& d) override {
    if (d.coeffs.empty() || d.rings <= 0 || d.frequencies <= 0 ||
        d.coeffs.size() != static_cast<std::size_t>(d.rings) * d.frequencies * 2) {
      return InvalidArgument("index: add signature " + std::to_string(record.signature_id) +
                             ": malformed descriptor (" + std::to_string(d.coeffs.size()) + " coefficients for " +
                             std::to_string(d.rings) + " rings x " + std::to_string(d.frequencies) +
                             " frequencies)");
    }
    if (d.frequencies > index_internal::kMaxFrequencies) {
      return InvalidArgument("index: add: frequencies=" + std::to_string(d.frequencies) + " above " +
                             std::to_string(index_internal::kMaxFrequencies));
    }
    if (d.kind != record.kind) {
      return InvalidArgument("index: add signature " + std::to_string(record.signature_id) + ": record kind " +
                             std::string(SignatureKindName(record.kind)) + " but descriptor kind " +
                             std::string(SignatureKindName(d.kind)));
    }
    std::unique_lock lock(mu_);
    if (where_.count(record.signature_id) != 0) {
      return AlreadyExists("index: signature " + std::to_string(record.signature_id) + " is already indexed");
    }
    if (calibres_.size() >= 65535 || agencies_.size() >= 65535) {
      return ResourceExhausted("index: more than 65535 distinct calibres or agencies");
    }
    KindStore& s = stores_[KindIndex(record.kind)];
    if (s.count == 0 && s.rings == 0) {
      s.rings = d.rings;
      s.freqs = d.frequencies;
    } else if (s.rings != d.rings || s.freqs != d.frequencies) {
      return InvalidArgument("index: add signature " + std::to_string(record.signature_id) + ": descriptor is " +
                             std::to_string(d.rings) + " x " + std::to_string(d.frequencies) + ", the index holds " +
                             std::to_string(s.rings) + " x " + std::to_string(s.freqs));
    }
    const std::size_t slot = s.count;
    if (slot % kLanes == 0) s.data.resize(s.data.size() + s.Dim() * kLanes, 0);
    s.WriteLane(slot, d.coeffs.data());
    s.scale.push_back(d.scale);
    s.signature_id.push_back(record.signature_id);
    s.casing_id.push_back(record.casing_id);
    s.calibre.push_back(Intern(calibres_, calibre_codes_, record.calibre));
    s.agency.push_back(Intern(agencies_, agency_codes_, record.agency));
    s.source.push_back(static_cast<std::uint8_t>(record.source));
    s.modality.push_back(static_cast<std::uint8_t>(record.modality));
    s.captured.push_back(record.captured_at_unix);
    s.shard.push_back(static_cast<std::int16_t>(record.shard));
    s.valid_rings.push_back(static_cast<std::uint8_t>(std::min(d.valid_rings, 255)));
    ++s.count;
    where_[record.signature_id] = Where{KindIndex(record.kind), slot};
    by_casing_[record.casing_id].push_back(record.signature_id);
    return Status::Ok();
  }

  Status Remove(std::int64_t signature_id) override {
    std::unique_lock lock(mu_);
    auto it = where_.find(signature_id);
    if (it == where_.end()) return NotFound("index: signature " + std::to_string(signature_id) + " is not indexed");
    KindStore& s = stores_[it->second.kind];
    const std::size_t slot = it->second.slot;
    const std::int64_t casing = s.casing_id[slot];
    const std::size_t last = s.count - 1;
    if (slot != last) {
      std::vector<std::int8_t> tmp(s.Dim());
      s.ReadLane(last, tmp.data());
      s.WriteLane(slot, tmp.data());
      s.scale[slot] = s.scale[last];
      s.signature_id[slot] = s.signature_id[last];
      s.casing_id[slot] = s.casing_id[last];
      s.calibre[slot] = s.calibre[last];
      s.agency[slot] = s.agency[last];
      s.source[slot] = s.source[last];
      s.modality[slot] = s.modality[last];
      s.captured[slot] = s.captured[last];
      s.shard[slot] = s.shard[last];
      s.valid_rings[slot] = s.valid_rings[last];
      where_[s.signature_id[slot]].slot = slot;
    }
    s.scale.pop_back();
    s.signature_id.pop_back();
    s.casing_id.pop_back();
    s.calibre.pop_back();
    s.agency.pop_back();
    s.source.pop_back();
    s.modality.pop_back();
    s.captured.pop_back();
    s.shard.pop_back();
    s.valid_rings.pop_back();
    --s.count;
    if (s.count % kLanes == 0) s.data.resize(s.count / kLanes * s.Dim() * kLanes);
    where_.erase(it);
    auto& ids = by_casing_[casing];
    ids.erase(std::remove(ids.begin(), ids.end(), signature_id), ids.end());
    if (ids.empty()) by_casing_.erase(casing);
    return Status::Ok();
  }

  std::int64_t Size() const override {
    std::shared_lock lock(mu_);
    return static_cast<std::int64_t>(where_.size());
  }

  using SignatureIndex::SearchCoarse;
  StatusOr<CoarseSearchResult> SearchCoarse(std::span<const CoarseDescriptor> queries, const SearchFilter& filter,
                                            int k, const ScanControl& control) const override {
    if (k < 1) return InvalidArgument("index: search: k=" + std::to_string(k) + " must be >= 1");
    if (queries.empty()) return InvalidArgument("index: search: no query descriptor");
    const CoarseDescriptor& query = queries[0];
    for (const CoarseDescriptor& q : queries) {
      if (q.kind != query.kind || q.rings != query.rings || q.frequencies != query.frequencies ||
          q.coeffs.size() != static_cast<std::size_t>(query.rings) * query.frequencies * 2) {
        return InvalidArgument("index: search: the query descriptors differ in kind or shape");
      }
    }
    std::shared_lock lock(mu_);
    CoarseSearchResult result;
    result.shards_total = 1;
    result.shards_answered = 1;
    const KindStore& s = stores_[KindIndex(query.kind)];
    if (!filter.kinds.empty() && std::find(filter.kinds.begin(), filter.kinds.end(), query.kind) == filter.kinds.end()) {
      return result;  // the filter excludes the query's kind: nothing to score
    }
    if (s.count == 0) return result;
    if (query.rings != s.rings || query.frequencies != s.freqs) {
      return InvalidArgument("index: search: query descriptor is " + std::to_string(query.rings) + " x " +
                             std::to_string(query.frequencies) + ", the index holds " + std::to_string(s.rings) +
                             " x " + std::to_string(s.freqs));
    }
    const CompiledFilter cf = Compile(filter);
    const index_internal::Isa isa = index_internal::DetectIsa();
    index_internal::LaneScorer scorer(s.freqs, isa);
    const index_internal::PackedQueries packed = index_internal::PackQueries(queries);
    const std::size_t per_variant = static_cast<std::size_t>(s.freqs) * kLanes;
    std::vector<std::int32_t> xre(per_variant * packed.variants);
    std::vector<std::int32_t> xim(xre.size());
    std::vector<CoarseHit> heap;  // min-heap on HitBefore: the worst kept hit on top
    heap.reserve(static_cast<std::size_t>(k) + 1);
    float best[kLanes], bound[kLanes], peak[kLanes];
    const std::size_t blocks = (s.count + kLanes - 1) / kLanes;
    const std::size_t block_bytes = static_cast<std::size_t>(s.Dim()) * kLanes;
    constexpr std::size_t kCheckEvery = 64;  // blocks between cancellation / progress checks
    for (std::size_t b = 0; b < blocks; ++b) {
      if (b % kCheckEvery == 0) {
        if (control.cancelled != nullptr && control.cancelled->load(std::memory_order_relaxed)) {
          return Cancelled("index: search cancelled");
        }
        if (control.progress && b % (kCheckEvery * 64) == 0) control.progress(static_cast<double>(b) / blocks);
      }
      const std::size_t first = b * kLanes;
      const int lanes = static_cast<int>(std::min<std::size_t>(kLanes, s.count - first));
      std::uint32_t pass = 0;
      for (int l = 0; l < lanes; ++l) {
        if (cf.Passes(s, first + l)) pass |= 1u << l;
      }
      if (pass == 0) continue;
      result.scanned += __builtin_popcount(pass);
      std::fill(best, best + kLanes, -2.0f);
      // The block's bytes are read once for all query variants.
      index_internal::BlockCrossSpectra(isa, s.data.data() + b * block_bytes, packed, s.rings, s.freqs, xre.data(),
                                        xim.data(), b + 1 < blocks ? s.data.data() + (b + 1) * block_bytes : nullptr);
      const bool full = static_cast<int>(heap.size()) >= k;
      for (int v = 0; v < packed.variants; ++v) {
        const std::int32_t* vre = xre.data() + v * per_variant;
        const std::int32_t* vim = xim.data() + v * per_variant;
        const float q_scale = packed.scale[v];
        // Exact pruning: the correlation at any shift is at most sum_k |X_k|
        // (triangle inequality), so a block none of whose lanes can beat both
        // its best variant so far and the k-th best hit skips the inverse
        // DFT. The 1e-3 margin covers float rounding of the DFT.
        std::fill(bound, bound + kLanes, 0.0f);
        for (int f = 0; f < s.freqs; ++f) {
          for (int l = 0; l < kLanes; ++l) {
            const float r = static_cast<float>(vre[f * kLanes + l]), i = static_cast<float>(vim[f * kLanes + l]);
            bound[l] += std::sqrt(r * r + i * i);
          }
        }
        std::uint32_t need = 0;
        for (int l = 0; l < lanes; ++l) {
          if ((pass & (1u << l)) == 0) continue;
          const float per_variant_bound = bound[l] * q_scale * 1.001f;
          const float to_beat = full ? std::max(best[l], heap.front().score / s.scale[first + l]) : best[l];
          if (per_variant_bound >= to_beat) need |= 1u << l;
        }
        if (need == 0) continue;
        // All lanes at once (SIMD across candidates): as cheap as one.
        scorer.Run(vre, vim, peak);
        for (int l = 0; l < lanes; ++l) {
          if (need & (1u << l)) best[l] = std::max(best[l], peak[l] * q_scale);
        }
      }
      for (int l = 0; l < lanes; ++l) {
        if ((pass & (1u << l)) == 0) continue;
        const std::size_t slot = first + l;
        CoarseHit hit{s.signature_id[slot], s.casing_id[slot], best[l] * s.scale[slot], s.shard[slot]};
        if (static_cast<int>(heap.size()) < k) {
          heap.push_back(hit);
          std::push_heap(heap.begin(), heap.end(), HitBefore);
        } else if (HitBefore(hit, heap.front())) {
          std::pop_heap(heap.begin(), heap.end(), HitBefore);
          heap.back() = hit;
          std::push_heap(heap.begin(), heap.end(), HitBefore);
        }
      }
    }
    std::sort(heap.begin(), heap.end(), HitBefore);
    result.hits = std::move(heap);
    if (control.progress) control.progress(1.0);
    return result;
  }

  std::optional<SignatureRecord> FindRecord(std::int64_t signature_id) const override {
    std::shared_lock lock(mu_);
    auto it = where_.find(signature_id);
    if (it == where_.end()) return std::nullopt;
    return RecordAt(it->second);
  }

  std::optional<CoarseDescriptor> FindDescriptor(std::int64_t signature_id) const override {
    std::shared_lock lock(mu_);
    auto it = where_.find(signature_id);
    if (it == where_.end()) return std::nullopt;
    const KindStore& s = stores_[it->second.kind];
    CoarseDescriptor d;
    d.kind = it->second.kind == 0 ? SignatureKind::kBreechFace : SignatureKind::kFiringPin;
    d.rings = s.rings;
    d.frequencies = s.freqs;
    d.scale = s.scale[it->second.slot];
    d.valid_rings = s.valid_rings[it->second.slot];
    d.coeffs.resize(s.Dim());
    s.ReadLane(it->second.slot, d.coeffs.data());
    return d;
  }

  std::vector<SignatureRecord> RecordsOfCasing(std::int64_t casing_id) const override {
    std::shared_lock lock(mu_);
    std::vector<SignatureRecord> out;
    auto it = by_casing_.find(casing_id);
    if (it == by_casing_.end()) return out;
    for (std::int64_t id : it->second) out.push_back(RecordAt(where_.at(id)));
    return out;
  }

  std::size_t MemoryBytes() const override {
    std::shared_lock lock(mu_);
    std::size_t bytes = 0;
    for (const KindStore& s : stores_) bytes += s.Bytes();
    // unordered_map nodes: key + value + next pointer + cached hash, plus the bucket array.
    bytes += where_.size() * (sizeof(std::int64_t) + sizeof(Where) + 2 * sizeof(void*)) +
             where_.bucket_count() * sizeof(void*);
    bytes += by_casing_.size() * (sizeof(std::int64_t) + sizeof(std::vector<std::int64_t>) + 2 * sizeof(void*)) +
             by_casing_.bucket_count() * sizeof(void*);
    for (const auto& [casing, ids] : by_casing_) bytes += ids.capacity() * sizeof(std::int64_t);
    for (const auto& c : calibres_) bytes += c.capacity() + sizeof(std::string);
    for (const auto& a : agencies_) bytes += a.capacity() + sizeof(std::string);
    return bytes;
  }

 private:
  struct Where {
    int kind = 0;
    std::size_t slot = 0;
  };

  struct KindStore {
    int rings = 0, freqs = 0;
    std::size_t count = 0;
    std::vector<std::int8_t> data;  // blocks, see the layout at the top
    std::vector<float> scale;
    std::vector<std::int64_t> signature_id, casing_id, captured;
    std::vector<std::uint16_t> calibre, agency;
    std::vector<std::uint8_t> source, modality, valid_rings;
    std::vector<std::int16_t> shard;

    int Dim() const { return rings * freqs * 2; }
    // Lane `slot % kLanes` of block `slot / kLanes`: coefficient j at
    // ((j / 2) * kLanes + lane) * 2 + j % 2.
    void WriteLane(std::size_t slot, const std::int8_t* coeffs) {
      std::int8_t* block = data.data() + slot / kLanes * static_cast<std::size_t>(Dim()) * kLanes;
      const std::size_t lane = slot % kLanes;
      for (int c = 0; c < Dim() / 2; ++c) {  // c = r * freqs + k: descriptor order
        const std::size_t pos = index_internal::BlockCoeff(c / freqs, c % freqs, rings);
        block[(pos * kLanes + lane) * 2] = coeffs[2 * c];
        block[(pos * kLanes + lane) * 2 + 1] = coeffs[2 * c + 1];
      }
    }
    void ReadLane(std::size_t slot, std::int8_t* coeffs) const {
      const std::int8_t* block = data.data() + slot / kLanes * static_cast<std::size_t>(Dim()) * kLanes;
      const std::size_t lane = slot % kLanes;
      for (int c = 0; c < Dim() / 2; ++c) {
        const std::size_t pos = index_internal::BlockCoeff(c / freqs, c % freqs, rings);
        coeffs[2 * c] = block[(pos * kLanes + lane) * 2];
        coeffs[2 * c + 1] = block[(pos * kLanes + lane) * 2 + 1];
      }
    }
    std::size_t Bytes() const {
      return data.capacity() + scale.capacity() * sizeof(float) +
             (signature_id.capacity() + casing_id.capacity() + captured.capacity()) * sizeof(std::int64_t) +
             (calibre.capacity() + agency.capacity()) * sizeof(std::uint16_t) +
             source.capacity() + modality.capacity() + valid_rings.capacity() +
             shard.capacity() * sizeof(std::int16_t);
    }
  };

  // The filter translated to the interned codes once per search.
  struct CompiledFilter {
    bool any_calibre = true, any_agency = true, any_source = true, any_modality = true;
    std::uint32_t modality_mask = 0;
    std::vector<bool> calibre_ok, agency_ok;
    std::uint32_t source_mask = 0;
    bool by_time = false;
    std::int64_t after = std::numeric_limits<std::int64_t>::min();
    std::int64_t before = std::numeric_limits<std::int64_t>::max();
    std::vector<std::int64_t> excluded;  // sorted

    bool Passes(const KindStore& s, std::size_t slot) const {
      if (!any_calibre && !calibre_ok[s.calibre[slot]]) return false;
      if (!any_agency && !agency_ok[s.agency[slot]]) return false;
      if (!any_modality && (modality_mask & (1u << s.modality[slot])) == 0) return false;
      if (!any_source && (source_mask & (1u << s.source[slot])) == 0) return false;
      if (by_time) {
        const std::int64_t t = s.captured[slot];
        if (t == kUnknownTime || t < after || t >= before) return false;
      }
      if (!excluded.empty() && std::binary_search(excluded.begin(), excluded.end(), s.casing_id[slot])) return false;
      return true;
    }
  };

  CompiledFilter Compile(const SearchFilter& f) const {
    CompiledFilter c;
    if (!f.calibres.empty()) {
      c.any_calibre = false;
      c.calibre_ok.assign(calibres_.size(), false);
      for (const auto& name : f.calibres) {
        auto it = calibre_codes_.find(name);
        if (it != calibre_codes_.end()) c.calibre_ok[it->second] = true;
      }
    }
    if (!f.agencies.empty()) {
      c.any_agency = false;
      c.agency_ok.assign(agencies_.size(), false);
      for (const auto& name : f.agencies) {
        auto it = agency_codes_.find(name);
        if (it != agency_codes_.end()) c.agency_ok[it->second] = true;
      }
    }
    if (!f.modalities.empty()) {
      c.any_modality = false;
      for (Modality m : f.modalities) c.modality_mask |= 1u << static_cast<unsigned>(m);
    }
    if (!f.sources.empty()) {
      c.any_source = false;
      for (CasingSource src : f.sources) c.source_mask |= 1u << static_cast<unsigned>(src);
    }
    if (f.captured_after_unix || f.captured_before_unix) {
      c.by_time = true;
      if (f.captured_after_unix) c.after = *f.captured_after_unix;
      if (f.captured_before_unix) c.before = *f.captured_before_unix;
    }
    c.excluded = f.exclude_casing_ids;
    std::sort(c.excluded.begin(), c.excluded.end());
    return c;
  }

  static int KindIndex(SignatureKind k) { return k == SignatureKind::kBreechFace ? 0 : 1; }

  static std::uint16_t Intern(std::vector<std::string>& names, std::unordered_map<std::string, std::uint16_t>& codes,
                              const std::string& name) {
    auto it = codes.find(name);
    if (it != codes.end()) return it->second;
    // Add refuses more than 65535 distinct names, far beyond any database.
    const auto code = static_cast<std::uint16_t>(names.size());
    names.push_back(name);
    codes.emplace(name, code);
    return code;
  }

  SignatureRecord RecordAt(const Where& w) const {
    const KindStore& s = stores_[w.kind];
    SignatureRecord r;
    r.signature_id = s.signature_id[w.slot];
    r.casing_id = s.casing_id[w.slot];
    r.kind = w.kind == 0 ? SignatureKind::kBreechFace : SignatureKind::kFiringPin;
    r.modality = static_cast<Modality>(s.modality[w.slot]);
    r.calibre = calibres_[s.calibre[w.slot]];
    r.agency = agencies_[s.agency[w.slot]];
    r.source = static_cast<CasingSource>(s.source[w.slot]);
    r.captured_at_unix = s.captured[w.slot];
    r.shard = s.shard[w.slot];
    return r;
  }

  mutable std::shared_mutex mu_;
  KindStore stores_[2];
  std::unordered_map<std::int64_t, Where> where_;
  std::unordered_map<std::int64_t, std::vector<std::int64_t>> by_casing_;
  std::vector<std::string> calibres_, agencies_;
  std::unordered_map<std::string, std::uint16_t> calibre_codes_, agency_codes_;
};

}  // namespace

std::unique_ptr<SignatureIndex> MakeFlatIndex() { return std::make_unique<FlatIndex>(); }

}  // namespace ballistics
