// Microstamp index: validation, exact identity, Bayesian fusion of partial
// reads, and the issue's accuracy claims on synthetic registries (10 million
// FP-tip codes; 1 million firearms with both locations for the fusion test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "ballistics/registry.h"
#include "registry/microstamp_synth.h"

namespace ballistics::registry {
namespace {

using testing::BuildSynthIndex;
using testing::DegradedRead;
using testing::SynthBfCode;
using testing::SynthFpCode;

int Swaps(const StampRead& r, const std::string& code) {
  int s = 0;
  for (std::size_t i = 0; i < code.size(); ++i) s += r.chars[i].ch && *r.chars[i].ch != code[i];
  return s;
}

// 1-based rank of the firearm among the candidates, 0 when absent.
int RankOf(const MicrostampLookupResult& r, std::int64_t id) {
  for (std::size_t i = 0; i < r.candidates.size(); ++i) {
    if (r.candidates[i].firearm_id == id) return static_cast<int>(i) + 1;
  }
  return 0;
}
double PosteriorOf(const MicrostampLookupResult& r, std::int64_t id) {
  for (const auto& c : r.candidates) {
    if (c.firearm_id == id) return c.posterior;
  }
  return 0.0;
}

TEST(MicrostampTest, RejectsBadCodesAndReads) {
  MicrostampIndex index;
  Status s = index.Add(1, "AB12CD3", "");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("AB12CD3"), std::string::npos) << s.message();
  s = index.Add(1, "AB12CD3a", "");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'a'"), std::string::npos) << s.message();
  EXPECT_EQ(index.Add(0, "AB12CD34", "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.Add(2, "", "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.Add(3, "AB12CD34", "012301230124").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "AB12CD34", 0.9)}).status().code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(index.Add(4, "AB12CD34", "012301230123").ok());
  ASSERT_TRUE(index.Add(5, "AB12CD35", "").ok());
  ASSERT_TRUE(index.Build().ok());
  EXPECT_EQ(index.Lookup({}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "AB12CD3", 0.9)}).status().code(),
            StatusCode::kInvalidArgument);
  auto bad = index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "AB12CD3#", 0.9)});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'#'"), std::string::npos);
  EXPECT_EQ(index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "AB12CD34", 1.5)}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(MicrostampTest, DuplicateCodeIsRefused) {
  MicrostampIndex index;
  ASSERT_TRUE(index.Add(1, "AB12CD34", "").ok());
  ASSERT_TRUE(index.Add(2, "AB12CD34", "").ok());
  Status s = index.Build();
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("AB12CD34"), std::string::npos) << s.message();
}

TEST(MicrostampTest, ExactAndLookalikeReads) {
  MicrostampIndex index;
  ASSERT_TRUE(index.Add(10, "0B1S2Z00", "000111222333").ok());
  ASSERT_TRUE(index.Add(11, "O81S2Z00", "000111222330").ok());  // look-alike of 10 at positions 1-2
  ASSERT_TRUE(index.Add(12, "XXXXXXXX", "").ok());
  ASSERT_TRUE(index.Build().ok());
  EXPECT_EQ(*index.FindExact(StampLocation::kFiringPinTip, "0B1S2Z00"), 10);
  EXPECT_EQ(*index.FindExact(StampLocation::kBreechFace, "000111222330"), 11);
  EXPECT_EQ(index.FindExact(StampLocation::kFiringPinTip, "0B1S2Z01").status().code(), StatusCode::kNotFound);

  auto r = index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "0B1S2Z00", 0.9)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_GE(r->candidates.size(), 2u);
  EXPECT_EQ(r->candidates[0].firearm_id, 10);
  EXPECT_EQ(r->candidates[1].firearm_id, 11);
  EXPECT_EQ(r->candidates[0].codes[0], "0B1S2Z00");
  EXPECT_EQ(r->consistent_codes[0], 2);  // 10 and its look-alike twin 11; never XXXXXXXX
  EXPECT_GT(r->candidates[0].posterior, 0.9);
  double sum = 0;
  for (const auto& c : r->candidates) sum += c.posterior;
  EXPECT_NEAR(sum, 1.0, 1e-9);
  // The first two positions unknown: both codes fit equally well on FP;
  // the breech-face read breaks the tie.
  r = index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "??1S2Z00", 0.9)});
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->candidates[0].posterior, r->candidates[1].posterior, 1e-12);
  r = index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "??1S2Z00", 0.9),
                    StampRead::Parse(StampLocation::kBreechFace, "0001112223?0", 0.8)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->candidates[0].firearm_id, 11);
  // A read '0' is consistent with 0 or its look-alike 1; firearm 10's last tooth '3' is a hard mismatch.
  EXPECT_EQ(r->consistent_firearms, 1);
  // Two reads of the same location multiply: agreeing reads sharpen the posterior.
  auto one = index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "0B1S2Z00", 0.6)});
  auto two = index.Lookup({StampRead::Parse(StampLocation::kFiringPinTip, "0B1S2Z00", 0.6),
                           StampRead::Parse(StampLocation::kFiringPinTip, "0B1S2Z00", 0.6)});
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_GT(two->candidates[0].posterior, one->candidates[0].posterior);
}

// Issue 7: with 2 of 8 characters unknown and one look-alike swap, the true
// firearm ranks first among 10 million registered codes. A random other code
// can fit the read as well only by matching its 6 read characters up to one
// look-alike (about 1e7 * 7 / 36^6 = 3 % per read): the bar is 95 % of 300
// reads, and every miss must be lost to such a code (checked).
TEST(MicrostampScaleTest, TenMillionCodesTwoUnknownOneSwap) {
  constexpr std::int64_t kCodes = 10'000'000;
  MicrostampIndex index;
  ASSERT_TRUE(BuildSynthIndex(index, kCodes, /*with_bf=*/false).ok());
  const Alphabet& a = index.alphabet(StampLocation::kFiringPinTip);
  std::mt19937_64 rng(7);
  int first = 0, trials = 0;
  double sum_post = 0, sum_tail = 0;
  for (; trials < 300; ++trials) {
    const std::int64_t id = std::uniform_int_distribution<std::int64_t>(1, kCodes)(rng);
    const std::string code = SynthFpCode(static_cast<std::uint64_t>(id - 1));
    StampRead read = DegradedRead(a, StampLocation::kFiringPinTip, code, 2, 1, 0.9, rng);
    if (Swaps(read, code) != 1) {  // no readable character with a look-alike: draw again
      --trials;
      continue;
    }
    auto r = index.Lookup({read});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_FALSE(r->candidates.empty());
    EXPECT_GE(r->consistent_codes[0], 1);
    const int rank = RankOf(*r, id);
    EXPECT_GT(rank, 0) << code;
    if (rank == 1) {
      ++first;
    } else {
      // A miss is only allowed against a code that fits the read as well:
      // it differs from the read characters at most at one position, by a look-alike.
      const std::string& w = r->candidates[0].codes[0];
      int diff = 0;
      for (std::size_t i = 0; i < w.size(); ++i) {
        if (!read.chars[i].ch || *read.chars[i].ch == w[i]) continue;
        ++diff;
      }
      EXPECT_LE(diff, 1) << "true " << code << " lost to " << w;
      EXPECT_GE(r->candidates[0].log_likelihood, r->candidates[static_cast<std::size_t>(rank - 1)].log_likelihood);
    }
    sum_post += PosteriorOf(*r, id);
    sum_tail += r->tail_mass_estimate;
  }
  RecordProperty("rank1_rate", std::to_string(static_cast<double>(first) / trials));
  std::printf("10M codes, 2 unknown + 1 look-alike swap: true firearm first in %d/%d reads, mean posterior %.3f, "
              "mean tail estimate %.2g\n", first, trials, sum_post / trials, sum_tail / trials);
  EXPECT_GE(first, 285);
}

// Issue 7: reads of two locations together beat either alone. FP tip: 4 of 8
// unknown + 1 swap, BF gear: 5 of 12 unknown + 1 swap, confidence 0.8; 1
// million firearms with both codes; 200 trials.
TEST(MicrostampScaleTest, TwoLocationsBeatEitherAlone) {
  constexpr std::int64_t kCodes = 1'000'000;
  MicrostampIndex index;
  ASSERT_TRUE(BuildSynthIndex(index, kCodes, /*with_bf=*/true).ok());
  const Alphabet& fa = index.alphabet(StampLocation::kFiringPinTip);
  const Alphabet& ba = index.alphabet(StampLocation::kBreechFace);
  std::mt19937_64 rng(11);
  int first[3] = {0, 0, 0};
  double post[3] = {0, 0, 0};
  const int kTrials = 200;
  for (int t = 0; t < kTrials; ++t) {
    const std::int64_t id = std::uniform_int_distribution<std::int64_t>(1, kCodes)(rng);
    const auto u = static_cast<std::uint64_t>(id - 1);
    StampRead fp = DegradedRead(fa, StampLocation::kFiringPinTip, SynthFpCode(u), 4, 1, 0.8, rng);
    StampRead bf = DegradedRead(ba, StampLocation::kBreechFace, SynthBfCode(u), 5, 1, 0.8, rng);
    const std::vector<std::vector<StampRead>> sets = {{fp}, {bf}, {fp, bf}};
    for (int k = 0; k < 3; ++k) {
      auto r = index.Lookup(sets[static_cast<std::size_t>(k)]);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      first[k] += RankOf(*r, id) == 1;
      post[k] += PosteriorOf(*r, id);
    }
  }
  std::printf("1M firearms, rank-1 rate / mean posterior: FP alone %.3f / %.3f, BF alone %.3f / %.3f, both %.3f / %.3f\n",
              first[0] / double(kTrials), post[0] / kTrials, first[1] / double(kTrials), post[1] / kTrials,
              first[2] / double(kTrials), post[2] / kTrials);
  EXPECT_GT(first[2], first[0]);
  EXPECT_GT(first[2], first[1]);
  EXPECT_GT(post[2], post[0]);
  EXPECT_GT(post[2], post[1]);
}

}  // namespace
}  // namespace ballistics::registry
