#include "core/models/model.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/common/random.h"

namespace gut::core {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t ModelInfo::num_params() const {
  int64_t n = 0;
  for (const auto& p : layout) n += p.numel();
  return n;
}

std::vector<int64_t> ModelInfo::tensor_sizes() const {
  std::vector<int64_t> sizes;
  for (const auto& p : layout) sizes.push_back(p.numel());
  return sizes;
}

std::vector<int64_t> ModelInfo::offsets() const {
  std::vector<int64_t> o;
  int64_t at = 0;
  for (const auto& p : layout) {
    o.push_back(at);
    at += p.numel();
  }
  return o;
}

uint64_t ModelInfo::layout_hash() const {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ULL;
    }
  };
  for (char ch : name) mix(static_cast<unsigned char>(ch));
  for (const auto& p : layout) {
    for (char ch : p.name) mix(static_cast<unsigned char>(ch));
    for (int64_t d : p.shape) mix(static_cast<uint64_t>(d));
  }
  return h;
}

std::vector<float> ModelInfo::InitialParameters(uint64_t run_seed) const {
  std::vector<float> flat(num_params());
  Rng64 rng(DeriveSeed(run_seed, 0, SeedPurpose::kModelInit));
  size_t at = 0;
  for (const auto& p : layout) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(p.fan_in));
    for (int64_t k = 0; k < p.numel(); ++k)
      flat[at++] = static_cast<float>((2.0 * rng.Uniform() - 1.0) * bound);
  }
  return flat;
}

absl::StatusOr<ModelInfo> GetModelInfo(const std::string& name) {
  if (name == "lenet5") {
    // ALGORITHMS.md §5.1: 61,706 parameters.
    ModelInfo m;
    m.name = name;
    m.input_shape = {1, 28, 28};
    m.num_classes = 10;
    m.layout = {
        {"conv1.weight", {6, 1, 5, 5}, 25},   {"conv1.bias", {6}, 25},
        {"conv2.weight", {16, 6, 5, 5}, 150}, {"conv2.bias", {16}, 150},
        {"fc1.weight", {120, 400}, 400},      {"fc1.bias", {120}, 400},
        {"fc2.weight", {84, 120}, 120},       {"fc2.bias", {84}, 120},
        {"fc3.weight", {10, 84}, 84},         {"fc3.bias", {10}, 84},
    };
    return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model.name: unknown model '", name, "'; allowed: lenet5"));
}

}  // namespace gut::core
