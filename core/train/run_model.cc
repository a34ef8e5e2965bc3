#include "core/train/run_model.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/models/torchscript.h"

namespace gut::core {

absl::StatusOr<ModelInfo> BuildRunModel(const RunConfig& config, const TrainTest& data, const ModelFile* file) {
  absl::StatusOr<ModelInfo> model;
  if (config.model == "torchscript") {
    ModelFile read;
    if (file == nullptr) {
      auto f = ReadModelFile(config.model_path);
      if (!f.ok()) return f.status();
      read = std::move(*f);
    } else {
      read = *file;
    }
    model = LoadTorchScriptModel(std::move(read), file == nullptr ? "'" + config.model_path + "'" : "the run's model file");
  } else if (config.dataset != "npy") {
    model = ModelForRun(config);  // the built-in data set's shape and class count, as always
  } else {
    ModelOptions o;
    o.norm = config.norm;
    o.num_classes = data.train.is_regression() ? static_cast<int>(data.train.target_size) : data.train.num_classes;
    o.input_shape = data.train.sample_shape();
    model = GetModelInfo(config.model, o);
  }
  if (!model.ok()) return model.status();
  model->loss = config.loss;
  if (auto s = ProbeModel(&*model, data.train, data.test); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (data.path ", config.data_path, ")"));
  }
  return model;
}

absl::StatusOr<TrainTest> LoadRunData(const RunConfig& config, const std::string& dir) {
  return LoadDataset(config.dataset, dir, config.loss == "mse");
}

}  // namespace gut::core
