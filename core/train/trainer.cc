#include "core/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/common/random.h"
#include "core/models/functional.h"

namespace gut::core {
namespace {

at::Tensor Forward(const ModelInfo& model, const std::vector<at::Tensor>& p, const at::Tensor& input) {
  return ModelForward(model, p, input);
}

std::vector<int64_t> InputShape(const ModelInfo& model, int64_t n) {
  std::vector<int64_t> s{n};
  s.insert(s.end(), model.input_shape.begin(), model.input_shape.end());
  return s;
}

// The draws PyTorch makes while the reference builds `model`, from `gen`; the values go to `flat`
// (layout order) unless it is null. Pass 1, as the modules are built: every conv and linear tensor
// from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in module order. Pass 2, the reference's init loop:
// He-normal convolutions, zero biases, norm scales 1 and shifts 0.
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

// data.shuffle: reference (see SampleOrder): the order the reference's DataLoader gives one rank.
class ReferenceOrder {
 public:
  ReferenceOrder(const ModelInfo& model, std::vector<int64_t> shard, int batch_size, uint64_t seed,
                 int rank)
      : gen_(at::make_generator<at::CPUGeneratorImpl>(seed)),
        shard_(std::move(shard)),
        order_(shard_.size()),
        batch_size_(batch_size),
        pos_(shard_.size()) {
    DrawTorchInit(model, gen_, nullptr);
    if (rank == 0) at::rand(InputShape(model, 2), gen_);  // torchsummary's input
  }

  const std::vector<int64_t>& Next() {
    if (pos_ >= order_.size()) {
      // The validation loader's iterator after the previous epoch, then the training loader's:
      // each draws an int64 worker base seed before the sampler runs.
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

 private:
  at::Generator gen_;
  std::vector<int64_t> shard_, order_, batch_;
  size_t batch_size_;
  size_t pos_;
  int epoch_ = 0;
};

}  // namespace

struct ModelWorkspace::Impl {
  ModelInfo model;
  std::vector<int64_t> offsets;
  // Flat buffers; the parameter and gradient tensors are views into them.
  std::vector<float> w, g;
  std::vector<at::Tensor> params, grads;
  std::vector<float> batch_images;
  std::vector<int64_t> batch_labels;
  int max_batch = 0;
};

ModelWorkspace::ModelWorkspace(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelWorkspace::~ModelWorkspace() = default;

absl::StatusOr<std::unique_ptr<ModelWorkspace>> ModelWorkspace::Create(const ModelInfo& model,
                                                                      int max_batch,
                                                                      int64_t sample_size) {
  auto impl = std::make_unique<Impl>();
  impl->model = model;
  impl->offsets = model.offsets();
  impl->w.assign(model.num_params(), 0.f);
  impl->g.assign(model.num_params(), 0.f);
  impl->max_batch = max_batch;
  impl->batch_images.resize(static_cast<size_t>(max_batch) * sample_size);
  impl->batch_labels.resize(max_batch);
  try {
    for (size_t k = 0; k < model.layout.size(); ++k) {
      const auto& spec = model.layout[k];
      at::Tensor p = at::from_blob(impl->w.data() + impl->offsets[k], spec.shape, at::kFloat);
      p.set_requires_grad(true);
      at::Tensor gr = at::from_blob(impl->g.data() + impl->offsets[k], spec.shape, at::kFloat);
      p.mutable_grad() = gr;
      impl->params.push_back(p);
      impl->grads.push_back(gr);
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("workspace: LibTorch: ", e.what_without_backtrace()));
  }
  return std::unique_ptr<ModelWorkspace>(new ModelWorkspace(std::move(impl)));
}

struct Trainer::Impl {
  ModelInfo model;
  const Dataset* train = nullptr;
  std::optional<BatchSampler> sampler;      // data.shuffle: agent
  std::optional<ReferenceOrder> reference;  // data.shuffle: reference
  int batches_per_epoch = 0;
  std::vector<int64_t> batch;  // indices of this round's minibatch
  // Augmentation of this round's minibatch (drawn once per round, so every gradient of the round
  // sees the same images): per sample, flip and crop offsets in the padded image.
  Rng64 augment_rng;
  struct Crop {
    bool flip;
    int dy, dx;  // kCifar: offset in the padded image; kImageNet: top-left of the crop
    int h = 0, w = 0;  // kImageNet: the crop's size in the stored image
  };
  std::vector<Crop> crops;
  std::unique_ptr<ModelWorkspace> own;
  ModelWorkspace::Impl* ws = nullptr;

  // `reference_order`: null for BatchSampler(sampler_seed), else that rank's ReferenceOrder.
  Impl(ModelInfo m, const Dataset* t, std::vector<int64_t> shard, int bs, uint64_t sampler_seed,
       const SampleOrder* reference_order)
      : model(std::move(m)),
        train(t),
        batches_per_epoch(static_cast<int>((shard.size() + bs - 1) / bs)),
        augment_rng(0),
        shard(std::move(shard)),
        batch_size(bs),
        sampler_seed(sampler_seed) {
    if (reference_order) order = *reference_order;
    ResetOrder();
  }

  // Back to the first minibatch of the first epoch: the sampler, LibTorch's generator for the
  // reference order and the augmentation stream start over from their seeds.
  void ResetOrder() {
    augment_rng = Rng64(SplitMix64(sampler_seed ^ 0x61756780u));
    sampler.reset();
    reference.reset();
    if (order) {
      reference.emplace(model, shard, batch_size, order->seed, order->rank);
    } else {
      sampler.emplace(shard, batch_size, sampler_seed);
    }
    drawn = 0;
  }

  // What the constructor was given, so that the order can be replayed (Trainer::Rewind).
  std::vector<int64_t> shard;
  int batch_size;
  uint64_t sampler_seed;
  std::optional<SampleOrder> order;
  int64_t drawn = 0;  // NextBatch calls so far

  // Writes training sample `idx`, augmented with crops[b], into out (C x H x W).
  void CopySample(int b, int64_t idx, float* out) const {
    const Dataset& d = *train;
    if (d.augment == Augment::kNone) {
      d.EvalSample(idx, out);
      return;
    }
    if (d.augment == Augment::kImageNet) {
      const Crop& c = crops[b];
      ResampleCrop(d.pixels.data() + idx * d.stored_size(), d.channels, d.stored, d.stored, c.dx, c.dy, c.w, c.h,
                   d.height, d.width, out);
      const int h = d.height, w = d.width;
      for (int ch = 0; ch < d.channels; ++ch) {
        float* plane = out + static_cast<int64_t>(ch) * h * w;
        const float m = d.mean[ch], sd = d.stdev[ch];
        for (int y = 0; y < h; ++y) {
          float* row = plane + y * w;
          if (c.flip) std::reverse(row, row + w);
          for (int x = 0; x < w; ++x) row[x] = (row[x] / 255.0f - m) / sd;
        }
      }
      return;
    }
    const float* src = d.image(idx);
    // kCifar: flip, zero-pad by 4, crop H x W at (dy, dx) of the padded image.
    constexpr int kPad = 4;
    const Crop& c = crops[b];
    const int h = d.height, w = d.width;
    for (int ch = 0; ch < d.channels; ++ch) {
      const float pad = d.pad_value.empty() ? 0.0f : d.pad_value[ch];
      const float* plane = src + static_cast<int64_t>(ch) * h * w;
      float* o = out + static_cast<int64_t>(ch) * h * w;
      for (int y = 0; y < h; ++y) {
        const int sy = y + c.dy - kPad;
        for (int x = 0; x < w; ++x) {
          const int sx = x + c.dx - kPad;
          if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
            o[y * w + x] = pad;
          } else {
            o[y * w + x] = plane[sy * w + (c.flip ? w - 1 - sx : sx)];
          }
        }
      }
    }
  }
};

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const ModelInfo& model,
                                                         const Dataset* train,
                                                         std::vector<int64_t> shard,
                                                         int batch_size, uint64_t sampler_seed) {
  return Create(model, train, std::move(shard), batch_size, sampler_seed, nullptr);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const ModelInfo& model,
                                                         const Dataset* train,
                                                         std::vector<int64_t> shard,
                                                         int batch_size, const SampleOrder& order) {
  if (order.kind != "agent" && order.kind != "reference") {
    return absl::InvalidArgumentError(
        absl::StrCat("data.shuffle: unknown order '", order.kind, "'; allowed: agent, reference"));
  }
  return Create(model, train, std::move(shard), batch_size,
                DeriveSeed(order.seed, order.rank, SeedPurpose::kSampler),
                order.kind == "reference" ? &order : nullptr);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const ModelInfo& model,
                                                         const Dataset* train,
                                                         std::vector<int64_t> shard,
                                                         int batch_size, uint64_t sampler_seed,
                                                         const SampleOrder* reference_order) {
  if (shard.empty()) return absl::InvalidArgumentError("trainer: the agent's shard is empty");
  if (batch_size < 1) return absl::InvalidArgumentError("trainer: batch size must be >= 1");
  const int64_t sample = train->sample_size();
  int64_t expect = 1;
  for (int64_t d : model.input_shape) expect *= d;
  if (sample != expect) {
    return absl::InvalidArgumentError(absl::StrCat("model ", model.name, " expects inputs of ",
                                                   expect, " values, the data set has ", sample));
  }
  for (int64_t i : shard) {
    if (i < 0 || i >= train->size()) {
      return absl::InvalidArgumentError(absl::StrCat("trainer: shard index ", i, " outside the data set"));
    }
  }
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(model, train, std::move(shard), batch_size, sampler_seed, reference_order);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("trainer: LibTorch: ", e.what_without_backtrace()));
  }
  auto ws = ModelWorkspace::Create(model, batch_size, sample);
  if (!ws.ok()) return ws.status();
  impl->own = std::move(*ws);
  impl->ws = impl->own->impl_.get();
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

void Trainer::UseWorkspace(ModelWorkspace* ws) {
  impl_->ws = ws ? ws->impl_.get() : impl_->own->impl_.get();
}

int64_t Trainer::batches_drawn() const { return impl_->drawn; }

void Trainer::Rewind(int64_t batches) {
  impl_->ResetOrder();
  for (int64_t k = 0; k < batches; ++k) NextBatch();
}

void Trainer::NextBatch() {
  ++impl_->drawn;
  impl_->batch = impl_->reference ? impl_->reference->Next() : impl_->sampler->Next();
  Rng64& rng = impl_->augment_rng;
  if (impl_->train->augment == Augment::kCifar) {
    impl_->crops.resize(impl_->batch.size());
    for (auto& c : impl_->crops) {
      c.flip = rng.Below(2) == 1;
      c.dy = static_cast<int>(rng.Below(9));
      c.dx = static_cast<int>(rng.Below(9));
    }
  } else if (impl_->train->augment == Augment::kImageNet) {
    // RandomResizedCrop's draw: area fraction in [0.08, 1], log-uniform aspect in [3/4, 4/3], ten
    // tries, then the whole (square) image; flip after.
    const int side = impl_->train->stored;
    impl_->crops.resize(impl_->batch.size());
    for (auto& c : impl_->crops) {
      c.h = c.w = side;
      c.dy = c.dx = 0;
      for (int attempt = 0; attempt < 10; ++attempt) {
        const double area = double(side) * side * (0.08 + 0.92 * rng.Uniform());
        const double ratio = std::exp(std::log(3.0 / 4) + (std::log(4.0 / 3) - std::log(3.0 / 4)) * rng.Uniform());
        const int w = static_cast<int>(std::lround(std::sqrt(area * ratio)));
        const int h = static_cast<int>(std::lround(std::sqrt(area / ratio)));
        if (w > 0 && w <= side && h > 0 && h <= side) {
          c.h = h;
          c.w = w;
          c.dy = static_cast<int>(rng.Below(side - h + 1));
          c.dx = static_cast<int>(rng.Below(side - w + 1));
          break;
        }
      }
      c.flip = rng.Below(2) == 1;
    }
  }
}

const std::vector<int64_t>& Trainer::batch() const { return impl_->batch; }

void Trainer::AugmentedSample(int b, float* out) const {
  impl_->CopySample(b, impl_->batch[b], out);
}

int Trainer::batches_per_epoch() const { return impl_->batches_per_epoch; }

absl::Span<float> Trainer::point() { return absl::MakeSpan(impl_->ws->w); }
absl::Span<const float> Trainer::gradient() const { return absl::MakeConstSpan(impl_->ws->g); }

absl::Status Trainer::ComputeGradient() {
  ModelWorkspace::Impl& ws = *impl_->ws;
  const auto& idx = impl_->batch;
  const int n = static_cast<int>(idx.size());
  if (n == 0 || n > ws.max_batch) {
    return absl::FailedPreconditionError(absl::StrCat("trainer: batch of ", n, " samples (workspace holds ", ws.max_batch, "); call NextBatch() first"));
  }
  const int64_t sample = impl_->train->sample_size();
  for (int b = 0; b < n; ++b) {
    impl_->CopySample(b, idx[b], ws.batch_images.data() + b * sample);
    ws.batch_labels[b] = impl_->train->labels[idx[b]];
  }
  try {
    std::memset(ws.g.data(), 0, ws.g.size() * sizeof(float));
    at::Tensor input = at::from_blob(ws.batch_images.data(), InputShape(impl_->model, n), at::kFloat);
    at::Tensor target = at::from_blob(ws.batch_labels.data(), {n}, at::kLong);
    at::Tensor loss = at::cross_entropy_loss(Forward(impl_->model, ws.params, input), target);
    loss.backward();
    last_loss_ = loss.item<double>();
    // Autograd accumulates in place into the gradient views; should it ever have replaced one,
    // copy the values back and restore the view.
    for (size_t k = 0; k < ws.params.size(); ++k) {
      at::Tensor& gr = ws.params[k].mutable_grad();
      if (!gr.defined() || gr.data_ptr() != ws.grads[k].data_ptr()) {
        if (gr.defined()) ws.grads[k].copy_(gr);
        gr = ws.grads[k];
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("trainer: LibTorch: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::StatusOr<EvalResult> Trainer::Evaluate(absl::Span<const float> params, const Dataset& data,
                                             int batch_size) const {
  const ModelInfo& model = impl_->model;
  if (static_cast<int64_t>(params.size()) != model.num_params()) {
    return absl::InvalidArgumentError(absl::StrCat("evaluate: got ", params.size(),
                                                   " parameters, the model has ", model.num_params()));
  }
  const auto offsets = model.offsets();
  EvalResult r;
  try {
    c10::InferenceMode inference;
    std::vector<at::Tensor> p;
    for (size_t k = 0; k < model.layout.size(); ++k) {
      p.push_back(at::from_blob(const_cast<float*>(params.data()) + offsets[k], model.layout[k].shape, at::kFloat));
    }
    int64_t correct = 0;
    double loss_sum = 0;
    std::vector<float> staging;  // stored (image-folder) data sets: the batch's centre crops
    for (int64_t start = 0; start < data.size(); start += batch_size) {
      const int64_t n = std::min<int64_t>(batch_size, data.size() - start);
      const float* rows = nullptr;
      if (data.is_stored()) {
        staging.resize(static_cast<size_t>(n) * data.sample_size());
        for (int64_t k = 0; k < n; ++k) data.EvalSample(start + k, staging.data() + k * data.sample_size());
        rows = staging.data();
      } else {
        rows = data.image(start);
      }
      at::Tensor input = at::from_blob(const_cast<float*>(rows), InputShape(model, n), at::kFloat);
      at::Tensor target = at::from_blob(const_cast<int64_t*>(data.labels.data() + start), {n}, at::kLong);
      at::Tensor logits = Forward(model, p, input);
      loss_sum += at::cross_entropy_loss(logits, target, {}, at::Reduction::Sum).item<double>();
      correct += logits.argmax(1).eq(target).sum().item<int64_t>();
    }
    r.samples = data.size();
    r.accuracy = static_cast<double>(correct) / std::max<int64_t>(1, data.size());
    r.loss = loss_sum / std::max<int64_t>(1, data.size());
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("evaluate: LibTorch: ", e.what_without_backtrace()));
  }
  return r;
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
  if (init == "torch") return TorchDefaultInit(model, seed);
  if (init == "gut") return model.InitialParameters(seed);
  return absl::InvalidArgumentError(
      absl::StrCat("model.init: unknown initialisation '", init, "'; allowed: gut, torch"));
}

void SetComputeThreads(int threads) {
  at::set_num_threads(threads);
  at::init_num_threads();
}

}  // namespace gut::core
