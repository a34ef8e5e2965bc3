// What LibTorch's generator draws for gut: PyTorch's module initialisation in the reference's
// order (model.init: torch) and the reference code's DataLoader order (data.shuffle: reference).
// Internal to core/train: the trainer and its helpers include it.
#ifndef GUT_CORE_TRAIN_TORCH_DRAWS_H_
#define GUT_CORE_TRAIN_TORCH_DRAWS_H_

#include <ATen/ATen.h>

#include <vector>

#include "core/models/model.h"

namespace gut::core {

// The draws PyTorch makes while the reference builds `model`, from `gen`; the values go to `flat`
// (layout order) unless it is null. Pass 1, as the modules are built: every conv and linear tensor
// from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in module order. Pass 2, the reference's init loop:
// He-normal convolutions, zero biases, norm scales 1 and shifts 0.
void DrawTorchInit(const ModelInfo& model, at::Generator& gen, float* flat);

// {n} followed by the model's input shape.
std::vector<int64_t> InputShape(const ModelInfo& model, int64_t n);

// data.shuffle: reference (see SampleOrder): the order the reference's DataLoader gives one rank.
class ReferenceOrder {
 public:
  ReferenceOrder(const ModelInfo& model, std::vector<int64_t> shard, int batch_size, uint64_t seed, int rank);
  // The next minibatch: indices into the training set.
  const std::vector<int64_t>& Next();

 private:
  at::Generator gen_;
  std::vector<int64_t> shard_, order_, batch_;
  size_t batch_size_;
  size_t pos_;
  int epoch_ = 0;
};

}  // namespace gut::core

#endif  // GUT_CORE_TRAIN_TORCH_DRAWS_H_
