#include "core/common/sketch.h"

#include <cmath>

#include "core/common/random.h"

namespace gut::core {

std::vector<float> SketchParams(absl::Span<const float> x, uint64_t seed) {
  constexpr int kBlocks = kSketchSize / 64;
  std::vector<double> acc(kSketchSize, 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    for (int b = 0; b < kBlocks; ++b) {
      uint64_t bits = SplitMix64(seed ^ SplitMix64(i * kBlocks + b));
      double* a = acc.data() + 64 * b;
      // Branch-free: the sign is bit r of the hash.
      for (int r = 0; r < 64; ++r) a[r] += v * static_cast<double>(static_cast<int>((bits >> r) & 1) * 2 - 1);
    }
  }
  std::vector<float> s(kSketchSize);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kSketchSize));
  for (int r = 0; r < kSketchSize; ++r) s[r] = static_cast<float>(acc[r] * scale);
  return s;
}

double ConsensusFromSketches(const std::vector<std::vector<float>>& sketches) {
  if (sketches.empty()) return 0;
  const size_t k = sketches[0].size();
  std::vector<double> mean(k, 0.0);
  for (const auto& s : sketches)
    for (size_t r = 0; r < k && r < s.size(); ++r) mean[r] += s[r];
  for (double& m : mean) m /= static_cast<double>(sketches.size());
  double sq = 0;
  for (const auto& s : sketches)
    for (size_t r = 0; r < k && r < s.size(); ++r) sq += (s[r] - mean[r]) * (s[r] - mean[r]);
  return std::sqrt(sq / static_cast<double>(sketches.size()));
}

}  // namespace gut::core
