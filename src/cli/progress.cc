#include "progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ballistics::cli {

ProgressBar::ProgressBar(std::string label, std::size_t total)
    : label_(std::move(label)), total_(total), start_(std::chrono::steady_clock::now()) {
  const char* force = std::getenv("BALLISTICS_PROGRESS");
  enabled_ = (force && std::strcmp(force, "1") == 0) || (isatty(STDERR_FILENO) && !(force && std::strcmp(force, "0") == 0));
  last_draw_ = start_ - std::chrono::seconds(1);
}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Advance(std::size_t n) {
  done_ += n;
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  // Redraw at most 10 times a second: drawing is slower than the work for tiny items.
  if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
  last_draw_ = now;
  Draw(false);
}

void ProgressBar::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (enabled_) Draw(true);
}

void ProgressBar::Draw(bool final) {
  const std::size_t done = done_.load();
  const double frac = total_ ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth + 0.5);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = (done > 0 && done < total_) ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : 0.0;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r%s [%s] %zu/%zu %5.1f%% %6.1fs eta %5.1fs", label_.c_str(), bar.c_str(), done,
               total_, 100.0 * frac, elapsed, eta);
  if (final) std::fputc('\n', stderr);
  std::fflush(stderr);
}

}  // namespace ballistics::cli
