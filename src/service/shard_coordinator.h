// The coordinator's search backend (`ballisticsd --role coordinator`): holds no
// index. A search reads the query casing's signatures from PostgreSQL, sends
// them to every shard worker (ShardService.SearchShards) at once, each call
// with a deadline (shard_timeout_ms, and never later than the client's own
// deadline less a margin for storing the result), and merges the answers:
// BF and FP lists by the engine's order (CMC count, CCF, coarse score), the
// combined list by combined score (a casing's signatures share one shard, so
// one worker saw all its evidence). Workers that fail, are down, or miss the
// deadline leave their shards out: the result is flagged partial and names
// the missing shards. It never waits past the deadline. Replicas (two workers
// holding one shard) are merged without duplicates.
#pragma once

#include <memory>

#include "ballistics/status.h"
#include "search_backend.h"

namespace ballistics::service {

// INVALID_ARGUMENT for no workers or unreadable TLS files.
StatusOr<std::unique_ptr<SearchBackend>> MakeShardCoordinator(const ServerConfig& config);

}  // namespace ballistics::service
