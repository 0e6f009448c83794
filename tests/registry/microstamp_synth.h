// Synthetic microstamp registries and reads for tests and bench/microstamp_bench.cc.
//
// Codes are an affine bijection of the firearm number over the code space
// (code = (i * a + b) mod n^L with gcd(a, n) = 1), so 10 million codes are
// distinct without a dedup pass and look uniformly spread; reads copy the true
// code, blank `unknown` positions and swap `swaps` characters for a look-alike.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ballistics/registry.h"

namespace ballistics::testing {

inline std::string SynthCode(const registry::Alphabet& a, std::uint64_t i, std::uint64_t mult, std::uint64_t add) {
  std::uint64_t space = 1;
  for (int k = 0; k < a.code_length; ++k) space *= a.chars.size();
  std::uint64_t v = static_cast<std::uint64_t>((static_cast<unsigned __int128>(i) * mult + add) % space);
  std::string s(static_cast<std::size_t>(a.code_length), '0');
  for (int k = a.code_length - 1; k >= 0; --k) {
    s[static_cast<std::size_t>(k)] = a.chars[v % a.chars.size()];
    v /= a.chars.size();
  }
  return s;
}
// 2654435761 is prime (Knuth's multiplicative hash), so coprime to 36^8 and 4^12.
inline std::string SynthFpCode(std::uint64_t i) {
  static const registry::Alphabet a = registry::Alphabet::AlphanumericFp();
  return SynthCode(a, i, 2654435761ull, 977ull);
}
inline std::string SynthBfCode(std::uint64_t i) {
  static const registry::Alphabet a = registry::Alphabet::GearBf();
  return SynthCode(a, i, 2654435761ull, 12345ull);
}

// Firearm ids 1..n; with_bf adds the breech-face gear code.
inline Status BuildSynthIndex(registry::MicrostampIndex& index, std::int64_t n, bool with_bf) {
  index.Reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint64_t u = static_cast<std::uint64_t>(i);
    BALLISTICS_RETURN_IF_ERROR(index.Add(i + 1, SynthFpCode(u), with_bf ? SynthBfCode(u) : std::string()));
  }
  return index.Build();
}

// A look-alike of c in the alphabet, or 0 when c has none.
inline char LookalikeOf(const registry::Alphabet& a, char c, std::mt19937_64& rng) {
  std::vector<char> v;
  for (const auto& [pair, w] : a.lookalikes) {
    if (pair[0] == c) v.push_back(pair[1]);
    if (pair[1] == c) v.push_back(pair[0]);
  }
  if (v.empty()) return 0;
  return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
}

// A partial read of `code`: `unknown` positions blanked, `swaps` of the others
// replaced by a look-alike (positions whose character has one), the rest kept.
inline registry::StampRead DegradedRead(const registry::Alphabet& a, registry::StampLocation loc,
                                        const std::string& code, int unknown, int swaps, double confidence,
                                        std::mt19937_64& rng) {
  registry::StampRead r = registry::StampRead::Parse(loc, code, confidence);
  std::vector<int> pos(code.size());
  for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int>(i);
  std::shuffle(pos.begin(), pos.end(), rng);
  int u = 0, s = 0;
  for (int p : pos) {
    if (u < unknown) {
      r.chars[static_cast<std::size_t>(p)].ch.reset();
      ++u;
    } else if (s < swaps) {
      const char l = LookalikeOf(a, code[static_cast<std::size_t>(p)], rng);
      if (l != 0) {
        r.chars[static_cast<std::size_t>(p)].ch = l;
        ++s;
      }
    }
  }
  return r;
}

}  // namespace ballistics::testing
