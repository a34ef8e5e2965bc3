// Forward passes of the §5 networks over parameter views: the LibTorch builder for the walks of
// zoo.h, EvoNorm-S0 as the reference implements it (§5.2), and the dispatch by model family.
#include <string>

#include "absl/strings/str_cat.h"
#include "core/models/functional.h"
#include "core/models/zoo.h"

namespace gut::core {

at::Tensor EvoNormS0(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, int groups) {
  const int64_t n = x.size(0), c = x.size(1);
  const at::Tensor grouped = x.reshape({n, groups, -1});
  // Biased variance of the input over each group's channels x H x W, per sample.
  const at::Tensor var = at::var(grouped, {2}, /*unbiased=*/false, /*keepdim=*/true);
  const at::Tensor num = (x * at::hardsigmoid(x)).reshape({n, groups, -1});
  const at::Tensor y = (num / at::sqrt(var + 1e-5)).reshape(x.sizes());
  return y * gamma.view({1, c, 1, 1}) + beta.view({1, c, 1, 1});
}

namespace {

class TorchBuilder {
 public:
  using V = at::Tensor;
  TorchBuilder(const std::vector<at::Tensor>& p, bool groupnorm) : p_(p), groupnorm_(groupnorm) {}

  V Conv(const std::string&, const V& x, int, int, int, int stride, int pad, int groups, bool bias, ConvInit) {
    const at::Tensor& w = Next();
    const at::Tensor b = bias ? Next() : at::Tensor();
    return at::conv2d(x, w, b, {stride, stride}, {pad, pad}, {1, 1}, groups);
  }
  V Norm(const std::string&, const V& x, int c, bool relu) {
    const at::Tensor& g = Next();
    const at::Tensor& b = Next();
    if (groupnorm_) {
      at::Tensor y = at::group_norm(x, 2, g, b, 1e-5);
      return relu ? at::relu(y) : y;
    }
    return EvoNormS0(x, g, b, c % 8 == 0 ? 8 : 1);
  }
  V Act(const V& x) { return groupnorm_ ? at::relu(x) : x; }
  V Add(const V& a, const V& b) { return a + b; }
  V MaxPool2(const V& x) { return at::max_pool2d(x, {2, 2}, {2, 2}); }
  V GlobalAvgPool(const V& x) { return x.mean({2, 3}); }
  V Linear(const std::string&, const V& x, int, int) {
    const at::Tensor& w = Next();
    const at::Tensor& b = Next();
    return at::linear(x, w, b);
  }
  size_t used() const { return next_; }

 private:
  const at::Tensor& Next() { return p_.at(next_++); }
  const std::vector<at::Tensor>& p_;
  bool groupnorm_;
  size_t next_ = 0;
};

}  // namespace

at::Tensor ModelForward(const ModelInfo& model, const std::vector<at::Tensor>& p, const at::Tensor& input) {
  if (model.family == "lenet5") return LeNet5Forward(p, input);
  TorchBuilder b(p, model.norm == "groupnorm");
  at::Tensor out;
  if (model.family == "resnet") {
    out = ResNetCifar(b, input, model.depth, model.num_classes);
  } else if (model.family == "vgg11") {
    out = Vgg11(b, input, model.num_classes);
  } else if (model.family == "mobilenetv2") {
    out = MobileNetV2(b, input, model.num_classes, model.input_shape[1] == 224);
  } else {
    TORCH_CHECK(false, "no forward pass for model family '", model.family, "'");
  }
  TORCH_CHECK(b.used() == p.size(), "model ", model.name, ": the forward pass read ", b.used(), " of ", p.size(),
              " parameter tensors");
  return out;
}

}  // namespace gut::core
