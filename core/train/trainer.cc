#include "core/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/models/functional.h"

namespace gut::core {

struct Trainer::Impl {
  ModelInfo model;
  const Dataset* train = nullptr;
  BatchSampler sampler;
  std::vector<int64_t> offsets;
  // Flat buffers; the parameter and gradient tensors are views into them.
  std::vector<float> w, g;
  std::vector<at::Tensor> params;
  std::vector<at::Tensor> grads;
  // Minibatch staging.
  std::vector<float> batch_images;
  std::vector<int64_t> batch_labels;
  int batch_size = 0;

  Impl(ModelInfo m, const Dataset* t, std::vector<int64_t> shard, int bs, uint64_t seed)
      : model(std::move(m)), train(t), sampler(std::move(shard), bs, seed), batch_size(bs) {}

  at::Tensor Forward(const std::vector<at::Tensor>& p, const at::Tensor& input) const {
    return LeNet5Forward(p, input);
  }
  std::vector<int64_t> InputShape(int64_t n) const {
    std::vector<int64_t> s{n};
    s.insert(s.end(), model.input_shape.begin(), model.input_shape.end());
    return s;
  }
};

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const ModelInfo& model,
                                                         const Dataset* train,
                                                         std::vector<int64_t> shard,
                                                         int batch_size, uint64_t sampler_seed) {
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
  auto impl = std::make_unique<Impl>(model, train, std::move(shard), batch_size, sampler_seed);
  const int64_t n = model.num_params();
  impl->offsets = model.offsets();
  impl->w.assign(n, 0.f);
  impl->g.assign(n, 0.f);
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
    return absl::InternalError(absl::StrCat("trainer: LibTorch: ", e.what_without_backtrace()));
  }
  impl->batch_images.resize(static_cast<size_t>(batch_size) * sample);
  impl->batch_labels.resize(batch_size);
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

void Trainer::NextBatch() {
  Impl& m = *impl_;
  const auto& idx = m.sampler.Next();
  const int64_t sample = m.train->sample_size();
  for (size_t b = 0; b < idx.size(); ++b) {
    std::memcpy(m.batch_images.data() + b * sample, m.train->image(idx[b]), sample * sizeof(float));
    m.batch_labels[b] = m.train->labels[idx[b]];
  }
  m.batch_size = static_cast<int>(idx.size());
}

int Trainer::batches_per_epoch() const { return impl_->sampler.batches_per_epoch(); }

absl::Span<float> Trainer::point() { return absl::MakeSpan(impl_->w); }
absl::Span<const float> Trainer::gradient() const { return absl::MakeConstSpan(impl_->g); }

absl::Status Trainer::ComputeGradient() {
  Impl& m = *impl_;
  try {
    std::memset(m.g.data(), 0, m.g.size() * sizeof(float));
    at::Tensor input = at::from_blob(m.batch_images.data(), m.InputShape(m.batch_size), at::kFloat);
    at::Tensor target = at::from_blob(m.batch_labels.data(), {m.batch_size}, at::kLong);
    at::Tensor loss = at::cross_entropy_loss(m.Forward(m.params, input), target);
    loss.backward();
    last_loss_ = loss.item<double>();
    // Autograd accumulates in place into the gradient views; should it ever have replaced one,
    // copy the values back and restore the view.
    for (size_t k = 0; k < m.params.size(); ++k) {
      at::Tensor& gr = m.params[k].mutable_grad();
      if (!gr.defined() || gr.data_ptr() != m.grads[k].data_ptr()) {
        if (gr.defined()) m.grads[k].copy_(gr);
        gr = m.grads[k];
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("trainer: LibTorch: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::StatusOr<EvalResult> Trainer::Evaluate(absl::Span<const float> params, const Dataset& data,
                                             int batch_size) const {
  const Impl& m = *impl_;
  if (static_cast<int64_t>(params.size()) != m.model.num_params()) {
    return absl::InvalidArgumentError(absl::StrCat("evaluate: got ", params.size(),
                                                   " parameters, the model has ", m.model.num_params()));
  }
  EvalResult r;
  try {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> p;
    for (size_t k = 0; k < m.model.layout.size(); ++k) {
      p.push_back(at::from_blob(const_cast<float*>(params.data()) + m.offsets[k],
                                m.model.layout[k].shape, at::kFloat));
    }
    int64_t correct = 0;
    double loss_sum = 0;
    for (int64_t start = 0; start < data.size(); start += batch_size) {
      const int64_t n = std::min<int64_t>(batch_size, data.size() - start);
      at::Tensor input = at::from_blob(const_cast<float*>(data.image(start)), m.InputShape(n), at::kFloat);
      at::Tensor target = at::from_blob(const_cast<int64_t*>(data.labels.data() + start), {n}, at::kLong);
      at::Tensor logits = m.Forward(p, input);
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

void SetComputeThreads(int threads) {
  at::set_num_threads(threads);
  at::init_num_threads();
}

}  // namespace gut::core
