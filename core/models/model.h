// Model: the parameter layout of a network and its initial values, without LibTorch. All trainable
// tensors live in one flat float vector in layout order; the forward pass (models/functional.h,
// LibTorch) reads them as views of that vector. None of the models has non-trainable state, so the
// flat vector is the complete model.
#ifndef GUT_CORE_MODELS_MODEL_H_
#define GUT_CORE_MODELS_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gut::core {

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t fan_in = 1;  // PyTorch default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  int64_t numel() const;
};

struct ModelInfo {
  std::string name;
  std::vector<ParamSpec> layout;
  std::vector<int64_t> input_shape;  // C, H, W
  int num_classes = 10;

  int64_t num_params() const;
  // Offset of each parameter in the flat vector.
  std::vector<int64_t> offsets() const;
  // Element count of each parameter tensor, in layout order.
  std::vector<int64_t> tensor_sizes() const;
  // FNV-1a over names and shapes: two agents with different layouts must not exchange updates.
  uint64_t layout_hash() const;
  // The initial flat parameters for a run seed, identical on every agent and in every process.
  std::vector<float> InitialParameters(uint64_t run_seed) const;
};

// Known model names and their layouts.
absl::StatusOr<ModelInfo> GetModelInfo(const std::string& name);

}  // namespace gut::core

#endif  // GUT_CORE_MODELS_MODEL_H_
