#include "core/models/model.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/common/random.h"
#include "core/models/zoo.h"

namespace gut::core {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t BufferSpec::numel() const {
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
  if (norm != "none")  // EvoNorm and GroupNorm have the same shapes but not the same model
    for (char ch : norm) mix(static_cast<unsigned char>(ch));
  for (const auto& p : layout) {
    for (char ch : p.name) mix(static_cast<unsigned char>(ch));
    for (int64_t d : p.shape) mix(static_cast<uint64_t>(d));
    // Zoo models hash as they always did (their checkpoints stay valid); their dtype is float32.
    if (is_script())
      for (char ch : p.dtype) mix(static_cast<unsigned char>(ch));
  }
  if (is_script()) {
    for (const auto& b : script->buffers) {
      for (char ch : b.name) mix(static_cast<unsigned char>(ch));
      for (int64_t d : b.shape) mix(static_cast<uint64_t>(d));
      for (char ch : b.dtype) mix(static_cast<unsigned char>(ch));
    }
  }
  return h;
}

uint64_t ModelInfo::identity_hash() const {
  uint64_t h = layout_hash();
  if (is_script()) {
    for (char ch : script->sha256) {
      h ^= static_cast<unsigned char>(ch);
      h *= 1099511628211ULL;
    }
  }
  return h;
}

namespace {
std::string DescribeTensor(const char* kind, const std::string& name, const std::vector<int64_t>& shape,
                           const std::string& dtype) {
  std::string dims;
  for (int64_t d : shape) absl::StrAppend(&dims, dims.empty() ? "" : ",", d);
  return absl::StrCat(kind, " ", name, " [", dims, "] ", dtype);
}
}  // namespace

std::vector<std::string> ModelInfo::LayoutDescription() const {
  std::vector<std::string> out;
  for (const auto& p : layout) out.push_back(DescribeTensor("parameter", p.name, p.shape, p.dtype));
  if (is_script())
    for (const auto& b : script->buffers) out.push_back(DescribeTensor("buffer", b.name, b.shape, b.dtype));
  return out;
}


std::vector<float> ModelInfo::InitialParameters(uint64_t run_seed) const {
  std::vector<float> flat(num_params());
  Rng64 rng(DeriveSeed(run_seed, 0, SeedPurpose::kModelInit));
  size_t at = 0;
  for (const auto& p : layout) {
    const int64_t n = p.numel();
    switch (p.init) {
      case InitKind::kUniformFanIn: {
        const double bound = 1.0 / std::sqrt(static_cast<double>(p.fan_in));
        for (int64_t k = 0; k < n; ++k) flat[at++] = static_cast<float>((2.0 * rng.Uniform() - 1.0) * bound);
        break;
      }
      case InitKind::kNormal:
        for (int64_t k = 0; k < n; ++k) {  // Box-Muller, one value per pair of draws
          const double u1 = 1.0 - rng.Uniform(), u2 = rng.Uniform();
          flat[at++] = static_cast<float>(p.init_value * std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * M_PI * u2));
        }
        break;
      case InitKind::kConstant:
        for (int64_t k = 0; k < n; ++k) flat[at++] = static_cast<float>(p.init_value);
        break;
    }
  }
  return flat;
}

namespace {

// Records the parameter tensors of a walk over a network (zoo.h) in call order.
class LayoutBuilder {
 public:
  using V = int;  // no values: only the layout is built
  V Conv(const std::string& name, V, int cin, int cout, int k, int, int, int groups, bool bias, ConvInit init) {
    const int64_t fan_in = int64_t{cin / groups} * k * k;
    ParamSpec w{name + ".weight", {cout, cin / groups, k, k}, fan_in};
    if (init == ConvInit::kHe) {
      w.init = InitKind::kNormal;
      w.init_value = std::sqrt(2.0 / (double(k) * k * cout));
    }
    layout.push_back(w);
    if (bias) {
      ParamSpec b{name + ".bias", {cout}, fan_in};
      if (init == ConvInit::kHe) b.init = InitKind::kConstant;  // 0
      layout.push_back(b);
    }
    return 0;
  }
  V Norm(const std::string& name, V, int c, bool) {
    layout.push_back({name + ".weight", {c}, 1, InitKind::kConstant, 1.0, false});
    layout.push_back({name + ".bias", {c}, 1, InitKind::kConstant, 0.0, false});
    return 0;
  }
  V Act(V) { return 0; }
  V Add(V, V) { return 0; }
  V MaxPool2(V) { return 0; }
  V GlobalAvgPool(V) { return 0; }
  V Linear(const std::string& name, V, int in, int out) {
    layout.push_back({name + ".weight", {out, in}, in});
    layout.push_back({name + ".bias", {out}, in});
    return 0;
  }
  std::vector<ParamSpec> layout;
};

bool SameShape(const std::vector<int64_t>& a, std::vector<int64_t> b) { return a == b; }

}  // namespace

std::string AllowedModelNames() {
  return "lenet5, resnet20, resnet32, resnet44, resnet56, vgg11, mobilenetv2, torchscript";
}

absl::StatusOr<ModelInfo> GetModelInfo(const std::string& name, const ModelOptions& o) {
  if (name == "torchscript") {
    return absl::InvalidArgumentError(
        "model.name: torchscript models are read from model.path (core/models/torchscript.h), not built in");
  }
  ModelInfo m;
  m.name = name;
  m.num_classes = o.num_classes > 0 ? o.num_classes : 10;
  auto bad_input = [&](const std::string& want) {
    std::string got;
    for (int64_t d : o.input_shape) got += (got.empty() ? "" : "x") + std::to_string(d);
    return absl::InvalidArgumentError(absl::StrCat("model.name: ", name, " takes ", want, " inputs, the data set has ", got));
  };
  if (name == "lenet5") {
    // docs/algorithms.md §5.1: 61,706 parameters.
    if (!o.input_shape.empty() && !SameShape(o.input_shape, {1, 28, 28})) return bad_input("1x28x28");
    m.family = "lenet5";
    m.input_shape = {1, 28, 28};
    const int64_t c = m.num_classes;
    m.layout = {
        {"conv1.weight", {6, 1, 5, 5}, 25},   {"conv1.bias", {6}, 25},
        {"conv2.weight", {16, 6, 5, 5}, 150}, {"conv2.bias", {16}, 150},
        {"fc1.weight", {120, 400}, 400},      {"fc1.bias", {120}, 400},
        {"fc2.weight", {84, 120}, 120},       {"fc2.bias", {84}, 120},
        {"fc3.weight", {c, 84}, 84},          {"fc3.bias", {c}, 84},
    };
    return m;
  }
  if (o.norm != "evonorm" && o.norm != "groupnorm") {
    return absl::InvalidArgumentError(absl::StrCat("model.norm: unknown normalisation '", o.norm, "'; allowed: evonorm, groupnorm"));
  }
  m.norm = o.norm;
  LayoutBuilder b;
  if (name == "resnet20" || name == "resnet32" || name == "resnet44" || name == "resnet56") {
    if (!o.input_shape.empty() && !SameShape(o.input_shape, {3, 32, 32})) return bad_input("3x32x32");
    m.family = "resnet";
    m.depth = std::stoi(name.substr(6));
    m.input_shape = {3, 32, 32};
    ResNetCifar(b, 0, m.depth, m.num_classes);
  } else if (name == "vgg11") {
    if (!o.input_shape.empty() && !SameShape(o.input_shape, {3, 32, 32})) return bad_input("3x32x32");
    m.family = "vgg11";
    m.input_shape = {3, 32, 32};
    Vgg11(b, 0, m.num_classes);
  } else if (name == "mobilenetv2") {
    m.family = "mobilenetv2";
    m.input_shape = o.input_shape.empty() ? std::vector<int64_t>{3, 224, 224} : o.input_shape;
    const bool imagenet = SameShape(m.input_shape, {3, 224, 224});
    if (!imagenet && !SameShape(m.input_shape, {3, 32, 32})) return bad_input("3x224x224 or 3x32x32");
    MobileNetV2(b, 0, m.num_classes, imagenet);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("model.name: unknown model '", name, "'; allowed: ", AllowedModelNames()));
  }
  m.layout = std::move(b.layout);
  return m;
}

}  // namespace gut::core
