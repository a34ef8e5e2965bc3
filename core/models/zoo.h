// The networks of docs/algorithms.md §5 written once, as walks over a builder. The same walk produces
// the parameter layout (LayoutBuilder in model.cc, no LibTorch) and the forward pass (the LibTorch
// builder in zoo_forward.cc), so the order of the flat parameter vector and the order in which the
// forward pass reads it cannot drift apart.
//
// A builder B provides a value type B::V and:
//   V Conv(name, x, cin, cout, k, stride, pad, groups, bias, init)   init: kDefault or kHe
//   V Norm(name, x, channels, relu)   EvoNorm-S0 (its activation built in; `relu` ignored) or
//                                     GroupNorm(2) followed by ReLU when `relu`
//   V Act(x)                          ReLU under GroupNorm, identity under EvoNorm
//   V Add(a, b), V MaxPool2(x), V GlobalAvgPool(x) (N x C), V Linear(name, x, in, out)
#ifndef GUT_CORE_MODELS_ZOO_H_
#define GUT_CORE_MODELS_ZOO_H_

#include <string>
#include <vector>

namespace gut::core {

// Weight initialisation of a convolution: PyTorch's default U(+-1/sqrt(fan_in)), or the He normal
// N(0, sqrt(2 / (k k C_out))) of the reference code's ResNet and VGG (their biases start at 0).
enum class ConvInit { kDefault, kHe };

// ResNet-(6k+2) for CIFAR (§5.3): stem, three stages of k BasicBlocks (16, 32, 64 channels),
// average pool, fc.
template <class B>
typename B::V ResNetCifar(B& b, typename B::V x, int depth, int classes) {
  const int k = (depth - 2) / 6;
  x = b.Conv("conv1", x, 3, 16, 3, 1, 1, 1, false, ConvInit::kHe);
  x = b.Norm("bn1", x, 16, true);
  int in = 16;
  const int widths[3] = {16, 32, 64};
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < k; ++i) {
      const int stride = (s > 0 && i == 0) ? 2 : 1, out = widths[s];
      const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(i) + ".";
      auto y = b.Conv(p + "conv1", x, in, out, 3, stride, 1, 1, false, ConvInit::kHe);
      y = b.Norm(p + "bn1", y, out, true);
      y = b.Conv(p + "conv2", y, out, out, 3, 1, 1, 1, false, ConvInit::kHe);
      y = b.Norm(p + "bn2", y, out, false);
      auto shortcut = x;
      if (stride != 1 || in != out) {
        shortcut = b.Conv(p + "shortcut.0", x, in, out, 1, stride, 0, 1, false, ConvInit::kHe);
        shortcut = b.Norm(p + "shortcut.1", shortcut, out, false);
      }
      x = b.Act(b.Add(y, shortcut));
      in = out;
    }
  }
  x = b.GlobalAvgPool(x);
  return b.Linear("fc", x, 64, classes);
}

// VGG-11, slim (§5.4): [16, M, 32, M, 64, 64, M, 128, 128, M, 128, 128, M], one Linear.
template <class B>
typename B::V Vgg11(B& b, typename B::V x, int classes) {
  const int cfg[] = {16, -1, 32, -1, 64, 64, -1, 128, 128, -1, 128, 128, -1};
  int in = 3, idx = 0;
  for (int c : cfg) {
    if (c < 0) {
      x = b.MaxPool2(x);
      ++idx;
      continue;
    }
    const std::string p = "features." + std::to_string(idx);
    x = b.Conv(p + ".conv", x, in, c, 3, 1, 1, 1, true, ConvInit::kHe);
    x = b.Norm(p + ".norm", x, c, true);
    in = c;
    ++idx;
  }
  x = b.GlobalAvgPool(x);  // 1 x 1 x 128: the same as flattening
  return b.Linear("classifier", x, 128, classes);
}

// MobileNet-V2 (§5.5). `imagenet`: 224 x 224 input (stem and stage-2 stride 2); else 32 x 32.
template <class B>
typename B::V MobileNetV2(B& b, typename B::V x, int classes, bool imagenet) {
  struct Stage {
    int t, c, n, s;
  };
  const Stage stages[] = {{1, 16, 1, 1}, {6, 24, 2, imagenet ? 2 : 1}, {6, 32, 3, 2}, {6, 64, 4, 2},
                          {6, 96, 3, 1}, {6, 160, 3, 2},               {6, 320, 1, 1}};
  x = b.Conv("conv1", x, 3, 32, 3, imagenet ? 2 : 1, 1, 1, false, ConvInit::kDefault);
  x = b.Norm("bn1", x, 32, true);
  int in = 32, block = 0;
  for (const Stage& st : stages) {
    for (int i = 0; i < st.n; ++i) {
      const int stride = i == 0 ? st.s : 1, hidden = st.t * in;
      const std::string p = "layers." + std::to_string(block++) + ".";
      auto y = b.Conv(p + "conv1", x, in, hidden, 1, 1, 0, 1, false, ConvInit::kDefault);
      y = b.Norm(p + "bn1", y, hidden, true);
      y = b.Conv(p + "conv2", y, hidden, hidden, 3, stride, 1, hidden, false, ConvInit::kDefault);
      y = b.Norm(p + "bn2", y, hidden, true);
      y = b.Conv(p + "conv3", y, hidden, st.c, 1, 1, 0, 1, false, ConvInit::kDefault);
      y = b.Norm(p + "bn3", y, st.c, false);
      if (stride == 1) {
        auto shortcut = x;
        if (in != st.c) {
          shortcut = b.Conv(p + "shortcut.0", x, in, st.c, 1, 1, 0, 1, false, ConvInit::kDefault);
          shortcut = b.Norm(p + "shortcut.1", shortcut, st.c, false);
        }
        y = b.Add(y, shortcut);
      }
      x = y;
      in = st.c;
    }
  }
  x = b.Conv("conv2", x, 320, 1280, 1, 1, 0, 1, false, ConvInit::kDefault);
  x = b.Norm("bn2", x, 1280, true);
  x = b.GlobalAvgPool(x);
  return b.Linear("linear", x, 1280, classes);
}

}  // namespace gut::core

#endif  // GUT_CORE_MODELS_ZOO_H_
