// ParallelFor: the one work-sharing loop of the code base (the search's screen
// and rerank, the shard scan, the bulk load's descriptors, the CLI's batch
// scoring). Header-only; callers link their own threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace ballistics {

// Runs fn(i) for every i in [0, n) on min(threads, n) threads, the calling
// one included; indices are handed out one at a time (uneven costs balance).
// Once *cancelled is true no further index is started.
template <typename Fn>
void ParallelFor(std::size_t n, int threads, const Fn& fn, const std::atomic<bool>* cancelled = nullptr) {
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      if (cancelled != nullptr && cancelled->load(std::memory_order_relaxed)) return;
      fn(i);
    }
  };
  const int t = std::min<int>(std::max(threads, 1), static_cast<int>(std::max<std::size_t>(n, 1)));
  std::vector<std::thread> pool;
  for (int i = 1; i < t; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

}  // namespace ballistics
