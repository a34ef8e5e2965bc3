// A random-projection sketch of a parameter vector: s = R x / sqrt(k), R a k x P matrix of random
// signs generated from a fixed seed (the same R on every agent). For any x, y:
// E ||s(x) - s(y)||^2 = ||x - y||^2 (Johnson-Lindenstrauss; relative spread about sqrt(2/k)).
// Agents send sketches instead of parameters, and the coordinator estimates the consensus distance
// sqrt(1/n sum_i ||x_i - x̄||^2) from them: it never sees a model, and k numbers per agent and
// epoch cost nothing on the wire.
#ifndef GUT_CORE_COMMON_SKETCH_H_
#define GUT_CORE_COMMON_SKETCH_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace gut::core {

inline constexpr int kSketchSize = 256;

// The sketch of x (kSketchSize values).
std::vector<float> SketchParams(absl::Span<const float> x, uint64_t seed = 0x67757473ULL);

// sqrt(1/n sum_i ||s_i - s̄||^2): the consensus-distance estimate from n sketches of equal size.
double ConsensusFromSketches(const std::vector<std::vector<float>>& sketches);

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_SKETCH_H_
