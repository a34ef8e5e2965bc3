#include "core/models/functional.h"

namespace gut::core {

at::Tensor LeNet5Forward(const std::vector<at::Tensor>& p, const at::Tensor& input) {
  at::Tensor x = at::conv2d(input, p[0], p[1], /*stride=*/{1, 1}, /*padding=*/{2, 2});
  x = ReluMaxPool2x2(x);
  x = at::conv2d(x, p[2], p[3]);
  x = ReluMaxPool2x2(x);
  x = x.flatten(1);
  x = at::relu(at::linear(x, p[4], p[5]));
  x = at::relu(at::linear(x, p[6], p[7]));
  return at::linear(x, p[8], p[9]);
}

}  // namespace gut::core
