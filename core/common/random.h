// Seed-stable random numbers. Two generators:
//  * LegacyRandom reproduces numpy.random.RandomState (MT19937 with numpy's legacy samplers:
//    random_sample, random_interval, polar Gauss, standard_gamma, dirichlet, shuffle) draw for
//    draw, so the Dirichlet partition of docs/algorithms.md §4 is the reference code's partition.
//  * SplitMix64 derives independent per-agent, per-purpose seeds from the run seed; Rng64 is the
//    general-purpose generator (std::mt19937_64 plus our own distributions, because the standard
//    library's distributions differ between implementations).
// Not thread-safe: one generator per thread.
#ifndef GUT_CORE_COMMON_RANDOM_H_
#define GUT_CORE_COMMON_RANDOM_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace gut::core {

class LegacyRandom {
 public:
  explicit LegacyRandom(uint32_t seed) : mt_(seed) {}

  uint32_t NextU32() { return static_cast<uint32_t>(mt_()); }
  // numpy legacy_double: 53 random bits in [0, 1).
  double RandomSample() {
    const uint32_t a = NextU32() >> 5, b = NextU32() >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }
  // numpy random_interval: uniform integer in [0, max] by masked rejection.
  uint64_t Interval(uint64_t max);
  double Gauss();
  double StandardExponential() { return -std::log(1.0 - RandomSample()); }
  double StandardGamma(double shape);
  // numpy RandomState.dirichlet with every component equal to alpha.
  std::vector<double> Dirichlet(double alpha, int k);
  template <typename T>
  void Shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i-- > 1;) {
      const size_t j = static_cast<size_t>(Interval(i));
      std::swap(v[i], v[j]);
    }
  }

 private:
  std::mt19937 mt_;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

// Seed derivation: a documented function of (run seed, rank, purpose).
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

enum class SeedPurpose : uint64_t { kModelInit = 1, kSampler = 2, kCodec = 3, kPartition = 4 };

inline uint64_t DeriveSeed(uint64_t run_seed, int rank, SeedPurpose purpose) {
  return SplitMix64(SplitMix64(SplitMix64(run_seed) ^ static_cast<uint64_t>(rank)) ^
                    static_cast<uint64_t>(purpose));
}

class Rng64 {
 public:
  explicit Rng64(uint64_t seed) : mt_(seed) {}
  uint64_t Next() { return mt_(); }
  // Uniform in [0, n) without modulo bias.
  uint64_t Below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = mt_(); while (r >= limit);
    return r % n;
  }
  // Uniform double in [0, 1) from 53 bits.
  double Uniform() { return (mt_() >> 11) * (1.0 / 9007199254740992.0); }
  template <typename T>
  void Shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i-- > 1;) std::swap(v[i], v[Below(i + 1)]);
  }

 private:
  std::mt19937_64 mt_;
};

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_RANDOM_H_
