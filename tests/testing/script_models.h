// TorchScript models written in C++ (torch::jit::Module::define: the same TorchScript a Python
// torch.jit.script produces, without Python), saved to bytes as torch.jit.save would, and small
// .npy data sets, for the tests of model.name: torchscript and data.dataset: npy that must run
// where python3-torch is not installed. tests/own_model/python_e2e.sh covers the real Python side.
#ifndef GUT_TESTS_TESTING_SCRIPT_MODELS_H_
#define GUT_TESTS_TESTING_SCRIPT_MODELS_H_

#include <torch/script.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/data/npy.h"

namespace gut::testing {

inline torch::jit::Module Layer(const std::string& type, std::vector<std::pair<std::string, at::Tensor>> params,
                                std::vector<std::pair<std::string, at::Tensor>> buffers = {}) {
  torch::jit::Module m(type);
  m.register_attribute("training", c10::BoolType::get(), true);  // what every nn.Module has
  for (auto& [name, t] : params) m.register_parameter(name, t.set_requires_grad(true), /*is_buffer=*/false);
  for (auto& [name, t] : buffers) m.register_buffer(name, t);
  return m;
}

// gut's LeNet-5 (conv1, conv2, fc1..fc3 as the zoo names them) with the given weights (layout
// order). `pool_first`: max-pool then relu (the zoo's order) instead of relu then max-pool.
inline torch::jit::Module ScriptLeNet(const std::vector<at::Tensor>& w, bool pool_first = false) {
  torch::jit::Module m = Layer("LeNet", {});
  const char* names[] = {"conv1", "conv2", "fc1", "fc2", "fc3"};
  for (int k = 0; k < 5; ++k) m.register_module(names[k], Layer("L", {{"weight", w[2 * k]}, {"bias", w[2 * k + 1]}}));
  const std::string act = pool_first ? "torch.relu(torch.max_pool2d({}, [2, 2]))" : "torch.max_pool2d(torch.relu({}), [2, 2])";
  auto wrap = [&](const std::string& inner) {
    std::string s = act;
    return s.replace(s.find("{}"), 2, inner);
  };
  m.define("def forward(self, x):\n"
           "    x = " + wrap("torch.conv2d(x, self.conv1.weight, self.conv1.bias, [1, 1], [2, 2])") + "\n"
           "    x = " + wrap("torch.conv2d(x, self.conv2.weight, self.conv2.bias)") + "\n"
           "    x = torch.flatten(x, 1)\n"
           "    x = torch.relu(torch.linear(x, self.fc1.weight, self.fc1.bias))\n"
           "    x = torch.relu(torch.linear(x, self.fc2.weight, self.fc2.bias))\n"
           "    return torch.linear(x, self.fc3.weight, self.fc3.bias)\n");
  return m;
}

// A small CNN for 1x28x28 inputs with a BatchNorm (running statistics and a batch counter as
// buffers) and optional dropout: conv(1->4) -> batch norm -> relu -> max-pool -> dropout -> fc(4*14*14 -> 10).
inline torch::jit::Module ScriptBatchNormCnn(uint64_t seed, double dropout = 0.0) {
  at::manual_seed(seed);
  torch::jit::Module m = Layer("Cnn", {});
  m.register_module("conv", Layer("Conv", {{"weight", at::randn({4, 1, 3, 3}) * 0.3}, {"bias", at::zeros({4})}}));
  m.register_module("bn", Layer("BN", {{"weight", at::ones({4})}, {"bias", at::zeros({4})}},
                                {{"running_mean", at::zeros({4})}, {"running_var", at::ones({4})},
                                 {"num_batches_tracked", at::zeros({}, at::kLong)}}));
  m.register_module("fc", Layer("Fc", {{"weight", at::randn({10, 4 * 14 * 14}) * 0.02}, {"bias", at::zeros({10})}}));
  m.register_attribute("p", c10::FloatType::get(), dropout);
  m.define("def forward(self, x):\n"
           "    x = torch.conv2d(x, self.conv.weight, self.conv.bias, [1, 1], [1, 1])\n"
           "    if self.training:\n"
           "        self.bn.num_batches_tracked.add_(1)\n"
           "    x = torch.batch_norm(x, self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var,\n"
           "                         self.training, 0.1, 1e-5, False)\n"
           "    x = torch.max_pool2d(torch.relu(x), [2, 2])\n"
           "    x = torch.dropout(torch.flatten(x, 1), self.p, self.training)\n"
           "    return torch.linear(x, self.fc.weight, self.fc.bias)\n");
  return m;
}

// features -> hidden (tanh) -> outputs.
inline torch::jit::Module ScriptMlp(uint64_t seed, int64_t features, int64_t outputs, int64_t hidden = 16) {
  at::manual_seed(seed);
  torch::jit::Module m = Layer("Mlp", {});
  m.register_module("l1", Layer("L", {{"weight", at::randn({hidden, features}) * 0.3}, {"bias", at::zeros({hidden})}}));
  m.register_module("l2", Layer("L", {{"weight", at::randn({outputs, hidden}) * 0.3}, {"bias", at::zeros({outputs})}}));
  m.define("def forward(self, x):\n"
           "    return torch.linear(torch.tanh(torch.linear(x, self.l1.weight, self.l1.bias)), self.l2.weight, self.l2.bias)\n");
  return m;
}

inline std::string SaveToBytes(torch::jit::Module& m) {
  std::ostringstream out;
  m.save(out);
  return out.str();
}

inline void WriteBytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

template <typename T>
core::NpyArray Npy(core::NpyType type, std::vector<int64_t> shape, const std::vector<T>& values) {
  core::NpyArray a;
  a.type = type;
  a.shape = std::move(shape);
  a.data.resize(values.size() * sizeof(T));
  std::memcpy(a.data.data(), values.data(), a.data.size());
  return a;
}

// train/test .npy files in `dir`: x float32 (n, 1, 28, 28) with class c a bright 6x6 square at a
// class-specific place plus noise; y int64 (classes) or float32 targets (a sum of pixels).
inline void WriteNpyImages(const std::filesystem::path& dir, int train, int test, bool regression = false) {
  std::filesystem::create_directories(dir);
  uint32_t state = 7;
  auto next = [&state] { state = state * 1664525u + 1013904223u; return (state >> 8) / 16777216.0f; };
  for (auto [name, n] : {std::pair<std::string, int>{"train", train}, {"test", test}}) {
    std::vector<float> x(static_cast<size_t>(n) * 784);
    std::vector<int64_t> y(n);
    std::vector<float> t(n);
    for (int i = 0; i < n; ++i) {
      const int c = (i * 7 + 3) % 10;
      y[i] = c;
      float* img = x.data() + static_cast<size_t>(i) * 784;
      for (int p = 0; p < 784; ++p) img[p] = 0.2f * next();
      for (int r = 0; r < 6; ++r)
        for (int q = 0; q < 6; ++q) img[(2 + (c / 5) * 14 + r) * 28 + 2 + (c % 5) * 5 + q] += 0.8f;
      t[i] = 0.1f * static_cast<float>(c) + 0.05f * next();
    }
    WriteBytes(dir / (name + "_x.npy"), core::EncodeNpy(Npy(core::NpyType::kFloat32, {n, 1, 28, 28}, x)));
    WriteBytes(dir / (name + "_y.npy"), regression ? core::EncodeNpy(Npy(core::NpyType::kFloat32, {n}, t))
                                                   : core::EncodeNpy(Npy(core::NpyType::kInt64, {n}, y)));
  }
}

}  // namespace gut::testing

#endif  // GUT_TESTS_TESTING_SCRIPT_MODELS_H_
