// index stage: the compact rerank form (resampling, int16 quantization, NaN
// sentinel) and the budgeted LRU source that fetches what it does not hold.
#include <atomic>
#include <cmath>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "ballistics/index.h"

namespace ballistics {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Random heights in [-6, 6] µm with a NaN disk in the middle and NaN corners
// (the shape of a breech-face annulus).
Signature Annulus(int side, double pixel_um, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> h(-6.0f, 6.0f);
  Signature s;
  s.kind = SignatureKind::kBreechFace;
  s.pipeline_version = "test-1";
  s.pixel_um = pixel_um;
  s.values = cv::Mat1f(side, side);
  const double c = (side - 1) / 2.0;
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      const double r = std::hypot(x - c, y - c) / side;
      s.values(y, x) = (r < 0.15 || r > 0.5) ? kNaN : h(rng);
    }
  }
  return s;
}

TEST(CompactSignatureTest, NativeGridRoundTripsWithinHalfAStep) {
  const Signature s = Annulus(101, 6.25, 1);
  auto c = CompactSignatureOf(s, 0.0);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rows, 101);
  EXPECT_EQ(c->cols, 101);
  EXPECT_DOUBLE_EQ(c->pixel_um, 6.25);
  // 12 µm of range over 65534 levels.
  EXPECT_NEAR(c->step, 12.0 / 65534, 1e-6);
  const Signature back = ExpandSignature(*c);
  EXPECT_EQ(back.kind, s.kind);
  EXPECT_EQ(back.pipeline_version, "test-1");
  double worst = 0;
  for (int y = 0; y < 101; ++y) {
    for (int x = 0; x < 101; ++x) {
      const float a = s.values(y, x), b = back.values(y, x);
      ASSERT_EQ(std::isnan(a), std::isnan(b)) << "validity changed at " << x << "," << y;
      if (!std::isnan(a)) worst = std::max(worst, static_cast<double>(std::abs(a - b)));
    }
  }
  EXPECT_LE(worst, 0.5 * c->step * 1.001 + 1e-6);
  EXPECT_GT(worst, 0.0);  // it is quantized, not a copy
  // int16 instead of float: half the bytes of the grid.
  EXPECT_EQ(c->heights.size(), 101u * 101u);
}

TEST(CompactSignatureTest, CoarserHoldGridAveragesValidFootprints) {
  const Signature s = Annulus(200, 6.25, 2);
  auto c = CompactSignatureOf(s, 12.5);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->rows, 100);
  ASSERT_EQ(c->cols, 100);
  EXPECT_DOUBLE_EQ(c->pixel_um, 12.5);
  const Signature back = ExpandSignature(*c);
  int full = 0, empty = 0;
  for (int y = 0; y < 100; ++y) {
    for (int x = 0; x < 100; ++x) {
      int n = 0;
      double sum = 0;
      for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
          const float v = s.values(2 * y + dy, 2 * x + dx);
          if (!std::isnan(v)) {
            ++n;
            sum += v;
          }
        }
      }
      if (n == 4) {
        ++full;
        EXPECT_NEAR(back.values(y, x), sum / 4, 1e-3) << x << "," << y;
      } else if (n <= 1) {
        ++empty;
        EXPECT_TRUE(std::isnan(back.values(y, x))) << "a point with " << n << " of 4 valid inputs is valid";
      }
    }
  }
  EXPECT_GT(full, 3000);
  EXPECT_GT(empty, 1000);
}

TEST(CompactSignatureTest, ConstantAndEmptySignatures) {
  Signature s = Annulus(20, 6.25, 3);
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 20; ++x) {
      if (!std::isnan(s.values(y, x))) s.values(y, x) = 1.5f;
    }
  }
  auto c = CompactSignatureOf(s, 0.0);
  ASSERT_TRUE(c.ok());
  const Signature back = ExpandSignature(*c);
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 20; ++x) {
      if (!std::isnan(s.values(y, x))) {
        EXPECT_EQ(back.values(y, x), 1.5f);
      }
    }
  }
  s.values.setTo(kNaN);
  c = CompactSignatureOf(s, 0.0);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(std::isnan(ExpandSignature(*c).values(3, 3)));
}

TEST(CompactSignatureTest, RejectsBadInputNamingTheValue) {
  Signature s = Annulus(20, 6.25, 4);
  auto r = CompactSignatureOf(s, -1.0);
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("hold_pixel_um=-1"), std::string::npos) << r.status().ToString();
  r = CompactSignatureOf(s, std::numeric_limits<double>::infinity());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = CompactSignatureOf(s, 1000.0);  // 20 points of 6.25 µm at 1 mm: nothing left
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("hold_pixel_um=1000"), std::string::npos) << r.status().ToString();
  Signature bad = s;
  bad.pixel_um = 0;
  r = CompactSignatureOf(bad, 12.5);
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("pixel_um=0"), std::string::npos);
  bad = s;
  bad.values = cv::Mat1f();
  EXPECT_EQ(CompactSignatureOf(bad, 12.5).status().code(), StatusCode::kInvalidArgument);
}

TEST(RerankCacheTest, HoldsWithinTheBudgetLeastRecentlyUsedOut) {
  const Signature s = Annulus(100, 12.5, 5);
  const std::size_t one = CompactSignatureOf(s, 12.5)->bytes();
  RerankCacheConfig cfg;
  cfg.budget_bytes = 2 * one + 300;  // two entries with their overhead, not three
  RerankCache cache(cfg);
  ASSERT_TRUE(cache.Put(1, s).ok());
  ASSERT_TRUE(cache.Put(2, s).ok());
  EXPECT_EQ(cache.held(), 2);
  ASSERT_TRUE(cache.Load(1).ok());  // 1 is now the most recently used
  ASSERT_TRUE(cache.Put(3, s).ok());
  EXPECT_TRUE(cache.Holds(1));
  EXPECT_FALSE(cache.Holds(2));
  EXPECT_TRUE(cache.Holds(3));
  EXPECT_EQ(cache.evictions(), 1);
  EXPECT_LE(cache.bytes(), cfg.budget_bytes);
  // Without a fetch, a signature not held is NOT_FOUND, naming it.
  auto miss = cache.Load(2);
  ASSERT_EQ(miss.status().code(), StatusCode::kNotFound);
  EXPECT_NE(miss.status().message().find("signature 2"), std::string::npos);
  EXPECT_EQ(cache.misses(), 1);
  EXPECT_EQ(cache.hits(), 1);
  cache.Erase(3);
  EXPECT_FALSE(cache.Holds(3));
  EXPECT_EQ(cache.held(), 1);
  // A budget below one entry holds nothing (and says so by Holds).
  cfg.budget_bytes = one / 2;
  RerankCache tiny(cfg);
  ASSERT_TRUE(tiny.Put(1, s).ok());
  EXPECT_FALSE(tiny.Holds(1));
  EXPECT_EQ(tiny.bytes(), 0u);
}

TEST(RerankCacheTest, FetchesWhatItDoesNotHoldAndKeepsIt) {
  const Signature full = Annulus(160, 6.25, 6);
  std::atomic<int> fetches{0};
  RerankCacheConfig cfg;
  cfg.budget_bytes = 10 * CompactSignatureOf(full, 12.5)->bytes();
  RerankCache cache(cfg, [&](std::int64_t id) -> StatusOr<Signature> {
    ++fetches;
    if (id == 99) return Unavailable("database down");
    if (id > 50) return NotFound("signature " + std::to_string(id) + " is not stored");
    return full;
  });
  RerankCache resident(RerankCacheConfig{});
  ASSERT_TRUE(resident.Put(7, full).ok());
  auto a = cache.Load(7);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(fetches.load(), 1);
  EXPECT_TRUE(cache.Holds(7));
  auto b = cache.Load(7);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(fetches.load(), 1);  // the second Load is a hit
  // Fetched or held: the rerank sees the same compact form (12.5 µm grid).
  auto c = resident.Load(7);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(a->values.size(), cv::Size(80, 80));
  EXPECT_DOUBLE_EQ(a->pixel_um, 12.5);
  EXPECT_EQ(cv::norm(a->values != c->values, cv::NORM_L1), cv::norm(a->values != a->values, cv::NORM_L1))
      << "held and fetched copies differ";  // NaN != NaN on both sides, equal elsewhere
  EXPECT_EQ(cache.Load(99).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(cache.Load(51).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(cache.Holds(99));
  // Fill past the budget through fetches: the budget holds.
  for (int id = 1; id <= 30; ++id) ASSERT_TRUE(cache.Load(id).ok());
  EXPECT_LE(cache.bytes(), cfg.budget_bytes);
  EXPECT_LE(cache.held(), 10);
  EXPECT_GT(cache.evictions(), 0);
}

// Screen forms (docs/search.md, "Screening"): held for every Put signature
// even when the budget holds no compact form, at the screening grid, int8;
// the same values whether the signature was Put or fetched; a source without
// them (the default LoadForScreen) hands out Load.
TEST(RerankCacheTest, ScreenFormsOutsideTheBudgetSameHeldOrFetched) {
  const Signature full = Annulus(160, 6.25, 8);
  RerankCacheConfig cfg = RerankCacheConfigFor(SearchEngineConfig{});
  EXPECT_DOUBLE_EQ(cfg.breech_face_screen_pixel_um, 50.0);  // 4 x the 12.5 µm cell grid
  EXPECT_DOUBLE_EQ(cfg.firing_pin_screen_pixel_um, 0.0);    // firing pins are not screened by default
  cfg.budget_bytes = 0;  // no compact form fits
  std::atomic<int> fetches{0};
  RerankCache put(cfg, [&](std::int64_t) -> StatusOr<Signature> {
    ++fetches;
    return full;
  });
  ASSERT_TRUE(put.Put(7, full).ok());
  EXPECT_FALSE(put.Holds(7));
  EXPECT_EQ(put.screen_held(), 1);
  EXPECT_GT(put.screen_bytes(), 20u * 20u);  // 20 x 20 points at 50 µm
  EXPECT_LT(put.screen_bytes(), 20u * 20u + 256u);  // one byte each and the bookkeeping
  EXPECT_EQ(put.bytes(), put.screen_bytes());
  auto a = put.LoadForScreen(7, 50.0);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(fetches.load(), 0);  // no database read for the screen
  EXPECT_EQ(a->values.size(), cv::Size(20, 20));
  EXPECT_DOUBLE_EQ(a->pixel_um, 50.0);

  // The same signature fetched on a miss: the same screen form, then held.
  RerankCache fetched(cfg, [&](std::int64_t) -> StatusOr<Signature> {
    ++fetches;
    return full;
  });
  auto b = fetched.LoadForScreen(7, 50.0);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(fetches.load(), 1);
  EXPECT_EQ(cv::norm(a->values != b->values, cv::NORM_L1), cv::norm(a->values != a->values, cv::NORM_L1))
      << "Put and fetched screen forms differ";  // NaN != NaN on both sides, equal elsewhere
  ASSERT_TRUE(fetched.LoadForScreen(7, 50.0).ok());
  EXPECT_EQ(fetches.load(), 1);
  // Within one int8 step of the 50 µm area average of the compact form.
  auto compact = put.Load(7);  // fetched: budget 0 holds nothing
  ASSERT_TRUE(compact.ok());
  auto reference = CompactSignatureOf(*compact, 50.0);
  ASSERT_TRUE(reference.ok());
  const Signature r = ExpandSignature(*reference);
  const double step = 12.0 / 254;  // heights span about [-6, 6]
  for (int y = 0; y < r.values.rows; ++y) {
    for (int x = 0; x < r.values.cols; ++x) {
      const float u = r.values(y, x), v = a->values(y, x);
      ASSERT_EQ(std::isnan(u), std::isnan(v)) << y << "," << x;
      if (!std::isnan(u)) ASSERT_NEAR(u, v, step) << y << "," << x;
    }
  }
  // Another grid asked for: not the screen form.
  auto other = put.LoadForScreen(7, 25.0);
  ASSERT_TRUE(other.ok());
  EXPECT_DOUBLE_EQ(other->pixel_um, 12.5);
  put.Erase(7);
  EXPECT_EQ(put.screen_held(), 0);
  EXPECT_EQ(put.bytes(), 0u);
}

}  // namespace
}  // namespace ballistics
