// model.name: torchscript. A user's PyTorch model, scripted and saved in Python
// (torch.jit.save(torch.jit.script(model), path)), trained by gut like a built-in one: the flat
// parameter vector the algorithms work on is the module's named_parameters() in order, float32;
// buffers (BatchNorm's running statistics and the like) stay with each agent. Torch-free API; the
// LibTorch side is core/models/script_module.h.
#ifndef GUT_CORE_MODELS_TORCHSCRIPT_H_
#define GUT_CORE_MODELS_TORCHSCRIPT_H_

#include <string>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/models/model_file.h"

namespace gut::core {

// Loads the module from `file` (`source` names it in errors) and reads its layout, parameters and
// buffers. Errors: not TorchScript, no forward method, no trainable parameters, a parameter that is
// not a dense float32 tensor. input_shape and num_classes are left for ProbeModel.
absl::StatusOr<ModelInfo> LoadTorchScriptModel(ModelFile file, const std::string& source);

// Runs the model once on two training samples (train mode, on a copy: no agent's buffers move) and
// one test sample (eval mode) before round 1, so that a model and data that do not fit are named at
// start-up: an input shape the model rejects, an output that is not one tensor of [N, classes]
// (cross_entropy) or of the targets' size per sample (mse), class labels beyond the output.
// Fills model->input_shape and, for a TorchScript model, model->num_classes (its output size).
absl::Status ProbeModel(ModelInfo* model, const Dataset& train, const Dataset& test);

}  // namespace gut::core

#endif  // GUT_CORE_MODELS_TORCHSCRIPT_H_
