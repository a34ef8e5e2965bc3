// The run's model for the data an agent (or gut-sim) has loaded: a built-in model shaped for the
// data's samples and classes, or the TorchScript model of model.path, checked on the data before
// the first round (ProbeModel). Every program that trains builds its model here.
#ifndef GUT_CORE_TRAIN_RUN_MODEL_H_
#define GUT_CORE_TRAIN_RUN_MODEL_H_

#include "absl/status/statusor.h"
#include "core/config/manifest.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/models/model_file.h"

namespace gut::core {

// `file`: the TorchScript model's bytes when the caller has them already (an agent's copy from
// the coordinator); null reads model.path.
absl::StatusOr<ModelInfo> BuildRunModel(const RunConfig& config, const TrainTest& data, const ModelFile* file = nullptr);

// The data set of the run, with the targets its loss needs (LoadDataset).
absl::StatusOr<TrainTest> LoadRunData(const RunConfig& config, const std::string& dir);

}  // namespace gut::core

#endif  // GUT_CORE_TRAIN_RUN_MODEL_H_
