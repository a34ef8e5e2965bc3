#include "core/models/torchscript.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/models/script_module.h"

namespace gut::core {
namespace {

std::string Shape(at::IntArrayRef s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// The first line of a LibTorch error (the rest is a TorchScript traceback that names files of the
// user's machine, or C++ frames).
std::string FirstLine(const std::string& what) {
  const size_t nl = what.find('\n');
  return what.substr(0, nl == std::string::npos ? what.size() : nl);
}

}  // namespace

absl::StatusOr<ModelInfo> LoadTorchScriptModel(ModelFile file, const std::string& source) {
  if (auto s = CheckModelBytes(file.bytes, source); !s.ok()) return s;
  auto src = std::make_shared<ScriptSource>();
  src->bytes = std::move(file.bytes);
  src->sha256 = std::move(file.sha256);
  auto loaded = ScriptModule::Load(*src, /*prepare=*/true);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.path: ", source, " is not a TorchScript model LibTorch can load (", FirstLine(std::string(loaded.status().message())),
        "); write one in Python with torch.jit.save(torch.jit.script(model), path), with the same PyTorch version (1.13)"));
  }
  ScriptModule& m = **loaded;
  if (m.module().find_method("forward") == c10::nullopt) {
    return absl::InvalidArgumentError(absl::StrCat("model.path: ", source, " has no forward method"));
  }
  ModelInfo info;
  info.name = "torchscript";
  info.family = "torchscript";
  for (size_t k = 0; k < m.parameters().size(); ++k) {
    const at::Tensor& p = m.parameters()[k];
    const std::string& name = m.parameter_names()[k];
    if (p.scalar_type() != at::kFloat || p.layout() != at::kStrided || p.is_quantized()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.path: ", source, ": parameter '", name, "' is ", DtypeName(p.scalar_type()),
          p.layout() != at::kStrided ? " (not dense)" : "",
          "; gut trains dense float32 parameters: call model.float() before torch.jit.script"));
    }
    ParamSpec spec;
    spec.name = name;
    spec.shape = p.sizes().vec();
    spec.init = InitKind::kConstant;
    spec.torch_draw = false;
    info.layout.push_back(spec);
    const at::Tensor c = p.detach().contiguous();
    src->params.insert(src->params.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  if (info.layout.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("model.path: ", source, " has no trainable parameters (named_parameters() is empty)"));
  }
  const bool any_trainable = std::any_of(m.parameters().begin(), m.parameters().end(),
                                         [](const at::Tensor& p) { return p.requires_grad(); });
  if (!any_trainable) {
    return absl::InvalidArgumentError(absl::StrCat("model.path: ", source,
                                                   " has no trainable parameters (every one has requires_grad=False)"));
  }
  for (float v : src->params) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("model.path: ", source, ": the file's parameters hold NaN or Inf"));
    }
  }
  std::vector<at::Tensor> buffers(m.buffer_names().size());
  m.TakeBuffers(&buffers);
  for (size_t k = 0; k < buffers.size(); ++k) {
    const at::Tensor c = buffers[k].contiguous();
    if (c.layout() != at::kStrided || !DtypeFromName(DtypeName(c.scalar_type())).ok()) {
      return absl::InvalidArgumentError(absl::StrCat("model.path: ", source, ": buffer '", m.buffer_names()[k],
                                                     "' is a ", DtypeName(c.scalar_type()), " tensor gut cannot keep"));
    }
    BufferSpec b{m.buffer_names()[k], c.sizes().vec(), DtypeName(c.scalar_type()),
                 std::string(static_cast<const char*>(c.data_ptr()), c.nbytes())};
    src->buffers.push_back(std::move(b));
  }
  src->random = m.random();
  info.script = std::move(src);
  info.num_classes = 0;
  return info;
}

absl::Status ProbeModel(ModelInfo* model, const Dataset& train, const Dataset& test) {
  const std::vector<int64_t> shape = train.sample_shape();
  const std::string who = model->is_script() ? "the TorchScript model" : "model " + model->name;
  auto where = [&](const Dataset& d) { return &d == &train ? "training" : "test"; };
  // Labels and targets against the model's output, for any model.
  auto check_output = [&](const Dataset& d, int64_t per_sample, const std::string& got) -> absl::Status {
    if (model->regression()) {
      if (!d.is_regression()) {
        return absl::InvalidArgumentError("model.loss: mse needs float targets; the data set holds class labels (use cross_entropy)");
      }
      if (per_sample != d.target_size) {
        return absl::InvalidArgumentError(absl::StrCat(who, " outputs ", got, " (", per_sample,
                                                       " values per sample); the ", where(d), " targets have ",
                                                       d.target_size, " per sample"));
      }
      return absl::OkStatus();
    }
    if (d.is_regression()) {
      return absl::InvalidArgumentError("model.loss: cross_entropy needs class labels; the data set holds float targets (use mse)");
    }
    const int64_t top = d.labels.empty() ? 0 : *std::max_element(d.labels.begin(), d.labels.end());
    if (top >= per_sample) {
      return absl::InvalidArgumentError(absl::StrCat("the ", where(d), " labels go up to class ", top, ", but ", who,
                                                     " outputs ", got, ": ", per_sample, " classes"));
    }
    return absl::OkStatus();
  };
  if (!model->is_script()) {
    model->input_shape = shape;
    for (const Dataset* d : {&train, &test}) {
      if (auto s = check_output(*d, model->num_classes, absl::StrCat(model->num_classes, " logits")); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  auto loaded = ScriptModule::Load(*model->script, /*prepare=*/true);
  if (!loaded.ok()) return loaded.status();
  ScriptModule& m = **loaded;
  std::vector<float> w = model->script->params;
  m.BindParameters(*model, w.data(), nullptr);
  m.PutBuffers(InitialBuffers(*model->script));
  for (const Dataset* d : {&train, &test}) {
    const int64_t n = std::min<int64_t>(2, d->size());
    std::vector<int64_t> dims{n};
    dims.insert(dims.end(), shape.begin(), shape.end());
    std::vector<float> rows(static_cast<size_t>(n * d->sample_size()));
    for (int64_t k = 0; k < n; ++k) d->EvalSample(k, rows.data() + k * d->sample_size());
    at::Tensor out;
    try {
      c10::InferenceMode inference;
      m.SetTraining(d == &train);
      out = m.Forward(at::from_blob(rows.data(), dims, at::kFloat));
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(who, " fails on a batch of ", n, " ", where(*d),
                                                     " samples of shape ", Shape(dims), ": ",
                                                     FirstLine(c10::GetExceptionString(e))));
    }
    const std::string got = Shape(out.sizes());
    if (out.dim() < 1 || out.size(0) != n || out.scalar_type() != at::kFloat) {
      return absl::InvalidArgumentError(absl::StrCat(who, " maps a batch of ", n, " samples ",
                                                     Shape(dims), " to a ", DtypeName(out.scalar_type()), " tensor ",
                                                     got, "; gut needs float32 [", n, ", ...], one row per sample"));
    }
    if (!model->regression() && out.dim() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(who, " outputs ", got,
                                                     " for cross_entropy; it needs [batch, classes] logits"));
    }
    const int64_t per_sample = out.numel() / n;
    if (auto s = check_output(*d, per_sample, got); !s.ok()) return s;
    if (d == &train) model->num_classes = static_cast<int>(per_sample);
  }
  model->input_shape = shape;
  return absl::OkStatus();
}

}  // namespace gut::core
