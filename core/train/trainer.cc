#include "core/train/trainer.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/models/functional.h"
#include "core/train/trainer_impl.h"

namespace gut::core {

ModelWorkspace::ModelWorkspace(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelWorkspace::~ModelWorkspace() = default;

absl::StatusOr<std::unique_ptr<ModelWorkspace>> ModelWorkspace::Create(const ModelInfo& model, int max_batch,
                                                                      const Dataset& data) {
  auto impl = std::make_unique<Impl>();
  impl->model = model;
  impl->offsets = model.offsets();
  impl->w.assign(model.num_params(), 0.f);
  impl->g.assign(model.num_params(), 0.f);
  impl->max_batch = max_batch;
  impl->batch_images.resize(static_cast<size_t>(max_batch) * data.sample_size());
  impl->batch_labels.resize(max_batch);
  impl->batch_targets.resize(static_cast<size_t>(max_batch) * data.target_size);
  if (model.is_script()) {
    auto m = ScriptModule::Load(*model.script, /*prepare=*/true);
    if (!m.ok()) return absl::InternalError(absl::StrCat("workspace: ", m.status().message()));
    impl->script = std::move(*m);
    try {
      impl->script->BindParameters(model, impl->w.data(), impl->g.data());
      impl->script->SetTraining(true);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("workspace: LibTorch: ", c10::GetExceptionString(e)));
    }
    return std::unique_ptr<ModelWorkspace>(new ModelWorkspace(std::move(impl)));
  }
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

void Trainer::Impl::CopySample(int b, int64_t idx, float* out) const {
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
  if (model.is_script()) impl->buffers = InitialBuffers(*model.script);
  auto ws = ModelWorkspace::Create(model, batch_size, *train);
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

void Trainer::Impl::StageTargets(ModelWorkspace::Impl& ws, int n) const {
  if (!train->is_regression()) {
    for (int b = 0; b < n; ++b) ws.batch_labels[b] = train->labels[batch[b]];
    return;
  }
  const int64_t t = train->target_size;
  for (int b = 0; b < n; ++b)
    std::copy_n(train->targets.begin() + batch[b] * t, t, ws.batch_targets.begin() + static_cast<int64_t>(b) * t);
}

void Trainer::Impl::BindScript(ModelWorkspace::Impl& ws, bool training) const {
  if (ws.script_training != training) {
    ws.script->SetTraining(training);
    ws.script_training = training;
  }
  ws.script->PutBuffers(buffers);
}

at::Tensor WorkspaceForward(ModelWorkspace::Impl& ws, const at::Tensor& input) {
  return ws.script ? ws.script->Forward(input) : ModelForward(ws.model, ws.params, input);
}

namespace {
std::mutex& RandomModelMutex() {
  static std::mutex mu;
  return mu;
}
}  // namespace

RandomScope::RandomScope(const ModelInfo& model, uint64_t seed) {
  if (!model.is_script() || !model.script->random) return;
  lock_ = std::unique_lock<std::mutex>(RandomModelMutex());
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> l(gen.mutex());
  gen.set_current_seed(seed);
}

absl::Status Trainer::ComputeGradient() {
  ModelWorkspace::Impl& ws = *impl_->ws;
  const auto& idx = impl_->batch;
  const int n = static_cast<int>(idx.size());
  if (n == 0 || n > ws.max_batch) {
    return absl::FailedPreconditionError(absl::StrCat("trainer: batch of ", n, " samples (workspace holds ", ws.max_batch, "); call NextBatch() first"));
  }
  const int64_t sample = impl_->train->sample_size();
  for (int b = 0; b < n; ++b) impl_->CopySample(b, idx[b], ws.batch_images.data() + b * sample);
  impl_->StageTargets(ws, n);
  try {
    // The step's random draws (dropout masks) depend on the agent and the minibatch only.
    RandomScope random(impl_->model, SplitMix64(impl_->sampler_seed ^ 0x64726f70u) + impl_->drawn);
    if (ws.script) impl_->BindScript(ws, /*training=*/true);
    std::memset(ws.g.data(), 0, ws.g.size() * sizeof(float));
    at::Tensor input = at::from_blob(ws.batch_images.data(), InputShape(impl_->model, n), at::kFloat);
    const at::Tensor out = WorkspaceForward(ws, input);
    at::Tensor loss;
    if (impl_->model.regression()) {
      at::Tensor target = at::from_blob(ws.batch_targets.data(), {n, impl_->train->target_size}, at::kFloat);
      loss = at::mse_loss(out.reshape({n, -1}), target);
    } else {
      at::Tensor target = at::from_blob(ws.batch_labels.data(), {n}, at::kLong);
      loss = at::cross_entropy_loss(out, target);
    }
    loss.backward();
    last_loss_ = loss.item<double>();
    if (ws.script) {
      ws.script->KeepGradientViews();
      ws.script->TakeBuffers(&impl_->buffers);
    } else {
      // Autograd accumulates in place into the gradient views; should it ever have replaced one,
      // copy the values back and restore the view.
      for (size_t k = 0; k < ws.params.size(); ++k) {
        at::Tensor& gr = ws.params[k].mutable_grad();
        if (!gr.defined() || gr.data_ptr() != ws.grads[k].data_ptr()) {
          if (gr.defined()) ws.grads[k].copy_(gr);
          gr = ws.grads[k];
        }
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("trainer: LibTorch: ", c10::GetExceptionString(e)));
  }
  return absl::OkStatus();
}

void SetComputeThreads(int threads) {
  at::set_num_threads(threads);
  at::init_num_threads();
}

}  // namespace gut::core
