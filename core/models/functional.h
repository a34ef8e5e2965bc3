// Forward passes over parameter views (LibTorch). Only the trainer and model implementations
// include this header.
#ifndef GUT_CORE_MODELS_FUNCTIONAL_H_
#define GUT_CORE_MODELS_FUNCTIONAL_H_

#include <ATen/ATen.h>

#include <vector>

#include "core/models/model.h"

namespace gut::core {

// relu(max_pool2d(x, kernel 2, stride 2)) for NCHW float input, as one fast autograd op.
at::Tensor ReluMaxPool2x2(const at::Tensor& x);

// Logits of LeNet-5 (docs/algorithms.md §5.1) for an N x 1 x 28 x 28 batch; p in ModelInfo layout order.
at::Tensor LeNet5Forward(const std::vector<at::Tensor>& p, const at::Tensor& input);

// EvoNorm-S0 as the reference implements it (docs/algorithms.md §5.2): per sample and group,
// gamma * x * hardsigmoid(x) / sqrt(biased var_group(x) + 1e-5) + beta.
at::Tensor EvoNormS0(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, int groups);

// Logits of any model of GetModelInfo for an N x C x H x W batch; p in the layout order.
at::Tensor ModelForward(const ModelInfo& model, const std::vector<at::Tensor>& p, const at::Tensor& input);

}  // namespace gut::core

#endif  // GUT_CORE_MODELS_FUNCTIONAL_H_
