// Trainer: what reads a model without training it: evaluation over a data set, the model files
// PyTorch loads (model-final.pt, model-average.pt) and the agent's buffers in checkpoints.
#include <torch/csrc/jit/serialization/pickle.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/models/functional.h"
#include "core/train/trainer_impl.h"

namespace gut::core {
namespace {

// Accumulates one evaluation batch: correct predictions and summed cross-entropy, or summed squared
// errors (in double, so that the RMSE does not depend on the batch size).
void Score(const ModelInfo& model, const at::Tensor& out, const Dataset& data, int64_t start, int64_t n,
           double* loss_sum, double* hits_or_sq) {
  if (model.regression()) {
    const at::Tensor target =
        at::from_blob(const_cast<float*>(data.targets.data() + start * data.target_size), {n, data.target_size}, at::kFloat);
    const double sq = (out.reshape({n, -1}).to(at::kDouble) - target.to(at::kDouble)).pow(2).sum().item<double>();
    *loss_sum += sq;
    *hits_or_sq += sq;
    return;
  }
  const at::Tensor target = at::from_blob(const_cast<int64_t*>(data.labels.data() + start), {n}, at::kLong);
  *loss_sum += at::cross_entropy_loss(out, target, {}, at::Reduction::Sum).item<double>();
  *hits_or_sq += static_cast<double>(out.argmax(1).eq(target).sum().item<int64_t>());
}

// A copy of the model's file with `params` and `buffers` in it, in eval mode, as torch.jit.save
// writes it. The copy is loaded unprepared: what is saved is the user's own code.
absl::StatusOr<std::string> SaveScript(const ModelInfo& model, absl::Span<const float> params,
                                       const std::vector<at::Tensor>& buffers) {
  auto m = ScriptModule::Load(*model.script, /*prepare=*/false);
  if (!m.ok()) return m.status();
  try {
    at::NoGradGuard no_grad;
    const auto offsets = model.offsets();
    for (size_t k = 0; k < model.layout.size(); ++k) {
      (*m)->parameters()[k].copy_(
          at::from_blob(const_cast<float*>(params.data()) + offsets[k], model.layout[k].shape, at::kFloat));
    }
    std::vector<at::Tensor> own;
    for (const at::Tensor& b : buffers) own.push_back(b.clone());
    (*m)->PutBuffers(own);
    (*m)->SetTraining(false);
    std::ostringstream out;
    (*m)->module().save(out);
    return out.str();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("saving the TorchScript model: ", c10::GetExceptionString(e)));
  }
}

// A zoo model as a state dict (parameter name -> tensor) in torch.save's format.
absl::StatusOr<std::string> SaveStateDict(const ModelInfo& model, absl::Span<const float> params) {
  try {
    c10::Dict<std::string, at::Tensor> dict;
    const auto offsets = model.offsets();
    for (size_t k = 0; k < model.layout.size(); ++k) {
      dict.insert(model.layout[k].name,
                  at::from_blob(const_cast<float*>(params.data()) + offsets[k], model.layout[k].shape, at::kFloat).clone());
    }
    const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("saving the state dict: ", c10::GetExceptionString(e)));
  }
}

}  // namespace

absl::StatusOr<EvalResult> Trainer::Evaluate(absl::Span<const float> params, const Dataset& data,
                                             int batch_size) const {
  const ModelInfo& model = impl_->model;
  if (static_cast<int64_t>(params.size()) != model.num_params()) {
    return absl::InvalidArgumentError(absl::StrCat("evaluate: got ", params.size(),
                                                   " parameters, the model has ", model.num_params()));
  }
  ModelWorkspace::Impl& ws = *impl_->ws;
  const auto offsets = model.offsets();
  EvalResult r;
  try {
    RandomScope random(model, SplitMix64(impl_->sampler_seed ^ 0x6576616cu));
    std::vector<at::Tensor> p;
    if (ws.script) {
      // The workspace's module reads `params` in place for this evaluation, then trains on its
      // own buffers again.
      ws.script->BindParameters(model, const_cast<float*>(params.data()), nullptr);
      impl_->BindScript(ws, /*training=*/false);
    } else {
      for (size_t k = 0; k < model.layout.size(); ++k) {
        p.push_back(at::from_blob(const_cast<float*>(params.data()) + offsets[k], model.layout[k].shape, at::kFloat));
      }
    }
    c10::InferenceMode inference;
    double score = 0, loss_sum = 0;
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
      const at::Tensor out = ws.script ? ws.script->Forward(input) : ModelForward(model, p, input);
      Score(model, out, data, start, n, &loss_sum, &score);
    }
    const double count = static_cast<double>(std::max<int64_t>(1, data.size()));
    r.samples = data.size();
    if (model.regression()) {
      const double values = count * std::max<int64_t>(1, data.target_size);
      r.loss = loss_sum / values;
      r.metric = std::sqrt(score / values);
    } else {
      r.loss = loss_sum / count;
      r.metric = score / count;
    }
  } catch (const std::exception& e) {
    if (ws.script) ws.script->BindParameters(model, ws.w.data(), ws.g.data());
    return absl::InternalError(absl::StrCat("evaluate: LibTorch: ", c10::GetExceptionString(e)));
  }
  if (ws.script) ws.script->BindParameters(model, ws.w.data(), ws.g.data());
  return r;
}

absl::StatusOr<std::string> Trainer::ExportModel(absl::Span<const float> params) const {
  const ModelInfo& model = impl_->model;
  if (static_cast<int64_t>(params.size()) != model.num_params()) {
    return absl::InvalidArgumentError(absl::StrCat("export: got ", params.size(), " parameters, the model has ",
                                                   model.num_params()));
  }
  return model.is_script() ? SaveScript(model, params, impl_->buffers) : SaveStateDict(model, params);
}

absl::StatusOr<std::string> Trainer::ExportAverageModel(const std::vector<const Trainer*>& agents,
                                                        absl::Span<const float> mean) {
  if (agents.empty()) return absl::InvalidArgumentError("export: no agents to average");
  const ModelInfo& model = agents[0]->impl_->model;
  if (!model.is_script()) return agents[0]->ExportModel(mean);
  std::vector<at::Tensor> buffers;
  try {
    for (size_t k = 0; k < agents[0]->impl_->buffers.size(); ++k) {
      const at::Tensor& first = agents[0]->impl_->buffers[k];
      if (!at::isFloatingType(first.scalar_type())) {
        buffers.push_back(first);
        continue;
      }
      at::Tensor sum = at::zeros(first.sizes(), at::kDouble);
      for (const Trainer* t : agents) sum += t->impl_->buffers[k].to(at::kDouble);
      buffers.push_back((sum / static_cast<double>(agents.size())).to(first.scalar_type()));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("averaging buffers: ", c10::GetExceptionString(e)));
  }
  return SaveScript(model, mean, buffers);
}

void Trainer::VisitBuffers(StateVisitor<float>* v) {
  std::vector<at::Tensor>& buffers = impl_->buffers;
  if (buffers.empty()) return;
  std::string bytes;
  if (!v->loading()) {
    for (const at::Tensor& b : buffers) {
      const at::Tensor c = b.contiguous();
      bytes.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
    }
  }
  v->Text("model_buffers", &bytes);
  if (!v->loading() || !v->status().ok()) return;
  std::vector<at::Tensor> fresh = InitialBuffers(*impl_->model.script);
  size_t total = 0;
  for (const at::Tensor& b : fresh) total += b.nbytes();
  if (bytes.size() != total) {
    v->Reject("model_buffers", absl::StrCat(bytes.size(), " bytes; this model's buffers hold ", total));
    return;
  }
  size_t at = 0;
  for (at::Tensor& b : fresh) {
    std::memcpy(b.data_ptr(), bytes.data() + at, b.nbytes());
    at += b.nbytes();
  }
  buffers = std::move(fresh);
}

void Trainer::ResetBuffers() {
  if (impl_->model.is_script()) impl_->buffers = InitialBuffers(*impl_->model.script);
}

}  // namespace gut::core
