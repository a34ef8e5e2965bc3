// Model: the parameter layout of a network and its initial values, without LibTorch. All trainable
// tensors live in one flat float vector in layout order; the forward pass (models/functional.h,
// LibTorch) reads them as views of that vector. None of the built-in (zoo) models has
// non-trainable state, so for them the flat vector is the complete model. A TorchScript model
// (model.name: torchscript, core/models/torchscript.h) may also have buffers (BatchNorm's running
// statistics and the like): each agent keeps its own, outside the flat vector.
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
  std::string dtype = "float32";  // the algorithms work on float32; TorchScript buffers may differ
  int64_t numel() const;
};

// A TorchScript buffer: its place in the module, shape, dtype and the file's values (raw bytes, the
// starting point of every agent's own copy).
struct BufferSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;
  std::string initial;
  int64_t numel() const;
};

// What model.name: torchscript brings besides the layout: the file as read (every LibTorch copy of
// the module is loaded from these bytes), its SHA-256, the file's parameters (every agent's x0, the
// same everywhere as the algorithms assume) and buffers.
struct ScriptSource {
  std::string bytes;
  std::string sha256;  // lower-case hex
  std::vector<float> params;
  std::vector<BufferSpec> buffers;
  // The forward pass draws random numbers (dropout and the like): the trainer seeds them per agent
  // and round so that a cluster and gut-sim draw the same masks.
  bool random = false;
};

struct ModelInfo {
  std::string name;    // lenet5, resnet20/32/44/56, vgg11, mobilenetv2, torchscript
  std::string family;  // lenet5, resnet, vgg11, mobilenetv2, torchscript
  int depth = 0;       // resnet
  std::string norm = "none";  // evonorm, groupnorm (none for lenet5)
  std::vector<ParamSpec> layout;
  std::vector<int64_t> input_shape;  // C, H, W (torchscript: one sample's shape, any rank)
  int num_classes = 10;               // torchscript: the output's size per sample
  std::shared_ptr<const ScriptSource> script;  // torchscript only
  // model.loss: "cross_entropy" (test metric: accuracy) or "mse" (regression; test metric: RMSE).
  std::string loss = "cross_entropy";
  bool regression() const { return loss == "mse"; }

  bool is_script() const { return script != nullptr; }

  int64_t num_params() const;
  // Offset of each parameter in the flat vector.
  std::vector<int64_t> offsets() const;
  // Element count of each parameter tensor, in layout order.
  std::vector<int64_t> tensor_sizes() const;
  // FNV-1a over names and shapes (torchscript: and dtypes, and the buffers'): two agents with
  // different layouts must not exchange updates.
  uint64_t layout_hash() const;
  // What a checkpoint is tied to: the layout hash, and for a TorchScript model its file's SHA-256
  // too (two files can share a layout and differ in code).
  uint64_t identity_hash() const;
  // The layout as text, one entry per tensor ("param conv1.weight [6,1,5,5] float32", then
  // "buffer ..."): what the hello carries so that a mismatch can name the first tensor that differs.
  std::vector<std::string> LayoutDescription() const;
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
// Every model.name, torchscript included.
std::string AllowedModelNames();

}  // namespace gut::core

#endif  // GUT_CORE_MODELS_MODEL_H_
