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

// How a tensor starts: PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), N(0, value), or the
// constant `value` (norm scales 1, shifts 0, He-initialised convolutions' biases 0).
enum class InitKind { kUniformFanIn, kNormal, kConstant };

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t fan_in = 1;
  InitKind init = InitKind::kUniformFanIn;
  double init_value = 0;  // the normal's standard deviation, or the constant
  // PyTorch draws this tensor from its generator when the module is built (conv and linear weights
  // and biases; not norm scales and shifts), before any re-initialisation overwrites it.
  bool torch_draw = true;
  int64_t numel() const;
};

struct ModelInfo {
  std::string name;    // lenet5, resnet20/32/44/56, vgg11, mobilenetv2
  std::string family;  // lenet5, resnet, vgg11, mobilenetv2
  int depth = 0;       // resnet
  std::string norm = "none";  // evonorm, groupnorm (none for lenet5)
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

struct ModelOptions {
  std::string norm = "evonorm";        // evonorm or groupnorm (ignored by lenet5)
  int num_classes = 0;                 // 0: the model's default (10)
  std::vector<int64_t> input_shape;    // C, H, W; empty: the model's default
};

// Known model names and their layouts (docs/algorithms.md §5). Inputs: lenet5 1x28x28; resnet*, vgg11
// 3x32x32; mobilenetv2 3x224x224 (ImageNette) or 3x32x32 (CIFAR).
absl::StatusOr<ModelInfo> GetModelInfo(const std::string& name, const ModelOptions& options = {});
std::string AllowedModelNames();

}  // namespace gut::core

#endif  // GUT_CORE_MODELS_MODEL_H_
