#include "core/train/torch_draws.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/train/trainer.h"

namespace gut::core {

std::vector<int64_t> InputShape(const ModelInfo& model, int64_t n) {
  std::vector<int64_t> s{n};
  s.insert(s.end(), model.input_shape.begin(), model.input_shape.end());
  return s;
}

void DrawTorchInit(const ModelInfo& model, at::Generator& gen, float* flat) {
  const auto offsets = model.offsets();
  auto store = [&](size_t k, const at::Tensor& t) {
    if (flat) std::memcpy(flat + offsets[k], t.data_ptr<float>(), t.numel() * sizeof(float));
  };
  for (size_t k = 0; k < model.layout.size(); ++k) {
    const ParamSpec& spec = model.layout[k];
    if (!spec.torch_draw) continue;
    const double bound = 1.0 / std::sqrt(static_cast<double>(spec.fan_in));
    store(k, at::empty(spec.shape, at::kFloat).uniform_(-bound, bound, gen));
  }
  for (size_t k = 0; k < model.layout.size(); ++k) {
    const ParamSpec& spec = model.layout[k];
    if (spec.init == InitKind::kNormal) {
      store(k, at::empty(spec.shape, at::kFloat).normal_(0, spec.init_value, gen));
    } else if (spec.init == InitKind::kConstant) {
      store(k, at::full(spec.shape, spec.init_value, at::kFloat));
    }
  }
}

ReferenceOrder::ReferenceOrder(const ModelInfo& model, std::vector<int64_t> shard, int batch_size, uint64_t seed,
                               int rank)
    : gen_(at::make_generator<at::CPUGeneratorImpl>(seed)),
      shard_(std::move(shard)),
      order_(shard_.size()),
      batch_size_(batch_size),
      pos_(shard_.size()) {
  DrawTorchInit(model, gen_, nullptr);
  if (rank == 0) at::rand(InputShape(model, 2), gen_);  // torchsummary's input
}

const std::vector<int64_t>& ReferenceOrder::Next() {
  if (pos_ >= order_.size()) {
    // The validation loader's iterator after the previous epoch, then the training loader's: each
    // draws an int64 worker base seed before the sampler runs.
    for (int k = epoch_ == 0 ? 1 : 2; k > 0; --k) at::empty({}, at::kLong).random_(gen_);
    const at::Tensor perm = at::randperm(static_cast<int64_t>(shard_.size()), gen_, at::kLong);
    const int64_t* p = perm.data_ptr<int64_t>();
    for (size_t k = 0; k < order_.size(); ++k) order_[k] = shard_[p[k]];
    pos_ = 0;
    ++epoch_;
  }
  const size_t end = std::min(order_.size(), pos_ + batch_size_);
  batch_.assign(order_.begin() + pos_, order_.begin() + end);
  pos_ = end;
  return batch_;
}

absl::StatusOr<std::vector<float>> TorchDefaultInit(const ModelInfo& model, uint64_t seed) {
  std::vector<float> flat(model.num_params());
  try {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    DrawTorchInit(model, gen, flat.data());
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("torch init: LibTorch: ", e.what_without_backtrace()));
  }
  return flat;
}

absl::StatusOr<std::vector<float>> InitialModel(const ModelInfo& model, const std::string& init,
                                                uint64_t seed) {
  // A TorchScript model starts from its file's weights, whatever model.init says: that is the
  // model the user built, and the same x0 on every agent.
  if (model.is_script()) return model.script->params;
  if (init == "torch") return TorchDefaultInit(model, seed);
  if (init == "gut") return model.InitialParameters(seed);
  return absl::InvalidArgumentError(
      absl::StrCat("model.init: unknown initialisation '", init, "'; allowed: gut, torch"));
}

}  // namespace gut::core
