// A terminal progress bar for long CLI operations (ingest of many files,
// score-pairs, search). Draws on stderr only when it is a terminal, or when
// forced (BALLISTICS_PROGRESS=1); otherwise prints nothing so logs and pipes
// stay clean. Thread-safe: Advance() may be called from worker threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>

namespace ballistics::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::size_t total);
  ~ProgressBar();  // finishes the line
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void Advance(std::size_t n = 1);
  void Finish();

 private:
  void Draw(bool final);

  std::string label_;
  std::size_t total_;
  std::atomic<std::size_t> done_{0};
  bool enabled_;
  bool finished_ = false;
  std::mutex mu_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace ballistics::cli
