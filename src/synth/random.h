// Small, portable random number tools for the generator. The standard library's
// distributions are implementation-defined (libstdc++ and libc++ give different
// normals for the same engine), so the generator uses its own: SplitMix64 for
// hashing keys into seeds (Steele, Lea & Flood 2014, "Fast splittable
// pseudorandom number generators") and xoshiro256++ for streams (Blackman & Vigna
// 2021, "Scrambled linear pseudorandom number generators").
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

namespace ballistics::synth::internal {

// SplitMix64 finalizer: a bijective 64-bit mix with full avalanche.
inline std::uint64_t Mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Hash of a key and up to two signed integers (spectral indices, stream ids).
inline std::uint64_t HashKey(std::uint64_t key, std::int64_t a, std::int64_t b = 0) {
  return Mix64(key ^ Mix64(static_cast<std::uint64_t>(a) ^ Mix64(static_cast<std::uint64_t>(b) + 0x51ed27ull)));
}

// Named sub-streams of one seed, so adding a new random quantity never shifts the others.
enum class Stream : std::int64_t {
  kFirearmParams = 1,
  kBreechIsotropic,
  kBreechProfile,
  kBreechModulation,
  kFiringPinMarks,
  kShotParams = 100,
  kShotNoise,
  kShotContact,
  kShotDeformX,
  kShotDeformY,
  kShotDropout,
  kShotWhiteNoise,
  kShotFiringPinNoise,
};

inline std::uint64_t StreamSeed(std::uint64_t seed, Stream s, std::int64_t extra = 0) {
  return HashKey(seed, static_cast<std::int64_t>(s), extra);
}

// Uniform in [-sqrt(3), sqrt(3)): zero mean, unit variance, from 32 random bits.
inline float UnitVarianceUniform(std::uint32_t bits) {
  constexpr float kScale = 3.4641016151377544f / 4294967296.0f;  // 2*sqrt(3) / 2^32
  return static_cast<float>(bits) * kScale - 1.7320508075688772f;
}

class Xoshiro256pp {
 public:
  explicit Xoshiro256pp(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& w : s_) {
      x = Mix64(x);
      w = x;
    }
  }
  std::uint64_t Next() {
    const std::uint64_t result = Rotl(s_[0] + s_[3], 23) + s_[0];
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Standard normal by Box-Muller (not a hot path).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  static std::uint64_t Rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

}  // namespace ballistics::synth::internal
