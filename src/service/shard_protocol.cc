#include "shard_protocol.h"

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

namespace ballistics::service {
namespace {

namespace v1 = ::ballistics::v1;

}  // namespace

StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return InvalidArgument(std::string(what) + " '" + path + "' cannot be read");
  std::stringstream ss;
  ss << f.rdbuf();
  if (ss.str().empty()) return InvalidArgument(std::string(what) + " '" + path + "' is empty");
  return ss.str();
}

void SignatureToProto(const Signature& s, v1::QuerySignature* out) {
  out->set_kind(KindToProto(s.kind));
  out->set_modality(std::string(ModalityName(s.modality)));
  out->set_pipeline_version(s.pipeline_version);
  out->set_pixel_um(s.pixel_um);
  out->set_width(s.width());
  out->set_height(s.height());
  std::string bytes(s.values.total() * sizeof(float), '\0');
  for (int y = 0; y < s.values.rows; ++y) {
    std::memcpy(bytes.data() + static_cast<std::size_t>(y) * s.values.cols * sizeof(float), s.values[y],
                s.values.cols * sizeof(float));
  }
  out->set_values(std::move(bytes));
}

StatusOr<Signature> SignatureFromProto(const v1::QuerySignature& p) {
  Signature s;
  BALLISTICS_ASSIGN_OR_RETURN(s.kind, KindFromProto(p.kind(), "query signature"));
  if (p.modality() == ModalityName(Modality::kTopography3d)) {
    s.modality = Modality::kTopography3d;
  } else if (p.modality() == ModalityName(Modality::kImage2d)) {
    s.modality = Modality::kImage2d;
  } else {
    return InvalidArgument("query signature: modality '" + p.modality() + "' is not 3d or 2d");
  }
  if (!(p.pixel_um() > 0 && std::isfinite(p.pixel_um()))) {
    return InvalidArgument("query signature: pixel_um " + std::to_string(p.pixel_um()) + " is not positive");
  }
  if (p.width() <= 0 || p.height() <= 0 || p.width() > 65536 || p.height() > 65536) {
    return InvalidArgument("query signature: size " + std::to_string(p.width()) + "x" + std::to_string(p.height()) +
                           " is out of range");
  }
  const std::size_t want = static_cast<std::size_t>(p.width()) * static_cast<std::size_t>(p.height()) * sizeof(float);
  if (p.values().size() != want) {
    return InvalidArgument("query signature: " + std::to_string(p.values().size()) + " value bytes for " +
                           std::to_string(p.width()) + "x" + std::to_string(p.height()));
  }
  s.pipeline_version = p.pipeline_version();
  s.pixel_um = p.pixel_um();
  s.values.create(p.height(), p.width());
  std::memcpy(s.values.ptr<std::uint8_t>(0), p.values().data(), want);
  return s;
}

void FilterToProto(const SearchFilter& f, v1::ShardFilter* out) {
  for (SignatureKind k : f.kinds) out->add_kinds(KindToProto(k));
  for (const auto& c : f.calibres) out->add_calibres(c);
  for (const auto& a : f.agencies) out->add_agencies(a);
  for (CasingSource s : f.sources) out->add_sources(SourceToProto(s));
  if (f.captured_after_unix) out->set_captured_after_unix(*f.captured_after_unix);
  if (f.captured_before_unix) out->set_captured_before_unix(*f.captured_before_unix);
  for (std::int64_t id : f.exclude_casing_ids) out->add_exclude_casing_ids(id);
}

StatusOr<SearchFilter> FilterFromProto(const v1::ShardFilter& p) {
  SearchFilter f;
  for (int k : p.kinds()) {
    BALLISTICS_ASSIGN_OR_RETURN(SignatureKind kind, KindFromProto(k, "shard filter"));
    f.kinds.push_back(kind);
  }
  for (const auto& c : p.calibres()) f.calibres.push_back(c);
  for (const auto& a : p.agencies()) f.agencies.push_back(a);
  for (int s : p.sources()) {
    BALLISTICS_ASSIGN_OR_RETURN(CasingSource src, SourceFromProto(s));
    f.sources.push_back(src);
  }
  if (p.has_captured_after_unix()) f.captured_after_unix = p.captured_after_unix();
  if (p.has_captured_before_unix()) f.captured_before_unix = p.captured_before_unix();
  for (std::int64_t id : p.exclude_casing_ids()) f.exclude_casing_ids.push_back(id);
  return f;
}

void CandidateToProto(const Candidate& c, v1::ShardCandidate* out) {
  out->set_casing_id(c.casing_id);
  out->set_signature_id(c.signature_id);
  out->set_shard(c.shard);
  out->set_rank(c.rank);
  out->set_coarse_rank(c.coarse_rank);
  out->set_coarse_score(c.coarse_score);
  out->set_score(c.score);
  out->set_screen_rank(c.screen_rank);
  out->set_screen_cmc(c.screen_cmc);
  if (c.comparison) {
    const ComparisonResult& r = *c.comparison;
    v1::ShardComparison* p = out->mutable_comparison();
    p->set_kind(KindToProto(r.kind));
    p->set_cmc(r.cmc);
    p->set_cells(r.cells);
    p->set_ccf(r.ccf);
    p->mutable_registration()->set_theta_deg(r.theta_deg);
    p->mutable_registration()->set_dx_um(r.dx_um);
    p->mutable_registration()->set_dy_um(r.dy_um);
    p->set_identification(r.identification);
  }
}

Candidate CandidateFromProto(const v1::ShardCandidate& p) {
  Candidate c;
  c.casing_id = p.casing_id();
  c.signature_id = p.signature_id();
  c.shard = p.shard();
  c.rank = p.rank();
  c.coarse_rank = p.coarse_rank();
  c.coarse_score = p.coarse_score();
  c.score = p.score();
  c.screen_rank = p.screen_rank();
  c.screen_cmc = p.screen_rank() > 0 ? p.screen_cmc() : -1;
  if (p.has_comparison()) {
    const v1::ShardComparison& q = p.comparison();
    ComparisonResult r;
    r.kind = q.kind() == v1::FIRING_PIN ? SignatureKind::kFiringPin : SignatureKind::kBreechFace;
    r.cmc = q.cmc();
    r.cells = q.cells();
    r.ccf = q.ccf();
    r.theta_deg = q.registration().theta_deg();
    r.dx_um = q.registration().dx_um();
    r.dy_um = q.registration().dy_um();
    r.identification = q.identification();
    c.comparison = std::move(r);
  }
  return c;
}

double OverallFraction(SearchStage s, double f) {
  switch (s) {
    case SearchStage::kDescriptor: return 0.02 * f;
    case SearchStage::kCoarse: return 0.02 + 0.18 * f;
    case SearchStage::kScreen: return 0.20 + 0.30 * f;
    case SearchStage::kRerank: return 0.50 + 0.48 * f;
    case SearchStage::kMerge: return 0.98 + 0.02 * f;
  }
  return 0;
}

std::pair<SearchStage, double> StageOfOverall(double o) {
  o = std::clamp(o, 0.0, 1.0);
  if (o < 0.02) return {SearchStage::kDescriptor, o / 0.02};
  if (o < 0.20) return {SearchStage::kCoarse, (o - 0.02) / 0.18};
  if (o < 0.50) return {SearchStage::kScreen, (o - 0.20) / 0.30};
  if (o < 0.98) return {SearchStage::kRerank, (o - 0.50) / 0.48};
  return {SearchStage::kMerge, (o - 0.98) / 0.02};
}

StatusOr<SearchResults> RunWithProgress(grpc::ServerContext* sc, const CancellableSearch& search,
                                        const std::function<bool(SearchStage stage, double overall)>& send) {
  std::atomic<bool> cancelled{false};
  std::mutex mu;
  std::condition_variable cv;
  SearchStage stage = SearchStage::kDescriptor;
  double overall = 0;
  bool changed = false;
  std::optional<StatusOr<SearchResults>> result;
  std::thread worker([&] {
    auto res = search(
        [&](SearchStage s, double f) {
          std::lock_guard<std::mutex> l(mu);
          const double o = OverallFraction(s, f);
          if (o < overall) return;
          overall = o;
          stage = s;
          changed = true;
        },
        &cancelled);
    std::lock_guard<std::mutex> l(mu);
    result.emplace(std::move(res));
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> l(mu);
    double last_sent = -1;
    while (!result) {
      cv.wait_for(l, std::chrono::milliseconds(50));
      if (sc->IsCancelled()) cancelled = true;
      if (!changed || cancelled) continue;
      changed = false;
      if (overall - last_sent < 0.01 && !(overall >= 1.0 && last_sent < 1.0)) continue;
      last_sent = overall;
      const SearchStage s = stage;
      const double o = overall;
      l.unlock();
      if (!send(s, o)) cancelled = true;
      l.lock();
    }
  }
  worker.join();
  return std::move(*result);
}

StatusOr<ShardTls> LoadShardTls(bool insecure, const std::string& cert_file, const std::string& key_file,
                                const std::string& ca_file) {
  ShardTls t;
  t.insecure = insecure;
  if (insecure) return t;
  if (cert_file.empty() || key_file.empty()) {
    return InvalidArgument("shard TLS: give tls-cert and tls-key (PEM files), or --insecure for a loopback test");
  }
  BALLISTICS_ASSIGN_OR_RETURN(t.cert_chain, ReadPem(cert_file, "TLS certificate"));
  BALLISTICS_ASSIGN_OR_RETURN(t.private_key, ReadPem(key_file, "TLS key"));
  BALLISTICS_ASSIGN_OR_RETURN(t.trusted_roots, ReadPem(ca_file.empty() ? cert_file : ca_file, "shard CA"));
  return t;
}

void HitToProto(const CoarseHit& h, v1::ShardHit* out) {
  out->set_signature_id(h.signature_id);
  out->set_casing_id(h.casing_id);
  out->set_shard(h.shard);
  out->set_score(h.score);
  out->set_rank(h.rank);
  out->set_screen_cmc(h.screen_cmc);
  out->set_screen_ccf(h.screen_ccf);
  out->set_screen_rank(h.screen_rank);
}

CoarseHit HitFromProto(const v1::ShardHit& p) {
  CoarseHit h;
  h.signature_id = p.signature_id();
  h.casing_id = p.casing_id();
  h.shard = p.shard();
  h.score = p.score();
  h.rank = p.rank();
  // Screened in phase 2 of a three-phase search: the worker sets all three.
  h.screen_cmc = p.screen_rank() > 0 || p.screen_cmc() > 0 ? p.screen_cmc() : -1;
  h.screen_ccf = p.screen_ccf();
  h.screen_rank = p.screen_rank();
  return h;
}

}  // namespace ballistics::service
