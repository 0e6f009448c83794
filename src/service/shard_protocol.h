// Conversions between the domain search types (include/ballistics/index.h)
// and the internal ShardService messages (proto/ballistics/v1/shard.proto),
// shared by the worker (shard_server.cc) and the coordinator
// (shard_coordinator.cc), plus the progress scale both use.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "ballistics/index.h"
#include "ballistics/status.h"
#include "ballistics/v1/shard.grpc.pb.h"
#include "proto_convert.h"

namespace ballistics::service {

// Largest ShardService message: a query carries whole signatures (a Fadul
// breech face is ~1 MB of float32), a result only ids and scores.
inline constexpr int kShardMaxMessageBytes = 256 << 20;

void SignatureToProto(const Signature& s, v1::QuerySignature* out);
// INVALID_ARGUMENT naming the field for a malformed signature (size mismatch, bad kind or pixel size).
StatusOr<Signature> SignatureFromProto(const v1::QuerySignature& p);

void FilterToProto(const SearchFilter& f, v1::ShardFilter* out);
StatusOr<SearchFilter> FilterFromProto(const v1::ShardFilter& p);

void CandidateToProto(const Candidate& c, v1::ShardCandidate* out);
Candidate CandidateFromProto(const v1::ShardCandidate& p);
void HitToProto(const CoarseHit& h, v1::ShardHit* out);
CoarseHit HitFromProto(const v1::ShardHit& p);

// Ranked-list order: ballistics::CandidateRanksBefore (include/ballistics/index.h).

// Stage -> share of the whole search, so one progress bar runs 0..1 once
// (descriptor 2 %, coarse 18 %, rerank 78 %, merge 2 %), and back.
double OverallFraction(SearchStage s, double fraction);
std::pair<SearchStage, double> StageOfOverall(double overall);

// Runs `search` on its own thread while the calling (gRPC handler) thread
// streams its progress: `send(stage, overall)` each time the overall fraction
// (OverallFraction, kept from going back) has grown by 1 % or reached 1, so at
// most ~100 messages per search. A cancelled call (client cancel, deadline) or
// a failed send sets the flag that `search` gets to poll. Used by the client
// API's Search and the worker's SearchShards alike.
using CancellableSearch = std::function<StatusOr<SearchResults>(const SearchProgress&, const std::atomic<bool>*)>;
StatusOr<SearchResults> RunWithProgress(grpc::ServerContext* sc, const CancellableSearch& search,
                                        const std::function<bool(SearchStage stage, double overall)>& send);

// TLS between coordinator and workers (docs/operations.md, "Several machines"):
// PEM file contents.
struct ShardTls {
  bool insecure = false;
  std::string cert_chain;   // this side's certificate (server cert on a worker, client cert on the coordinator)
  std::string private_key;
  std::string trusted_roots;  // the other side's certificates must chain to these
};
// A PEM file's text (client API and shard TLS alike); INVALID_ARGUMENT naming
// `what` and the path when it cannot be read or is empty.
StatusOr<std::string> ReadPem(const std::string& path, const char* what);
// Reads the files; with insecure, nothing is read. `ca_file` empty = cert_file
// (one self-signed pair shared by every process).
StatusOr<ShardTls> LoadShardTls(bool insecure, const std::string& cert_file, const std::string& key_file,
                                const std::string& ca_file);

}  // namespace ballistics::service
