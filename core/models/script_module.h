// One LibTorch copy of a TorchScript model (model.name: torchscript), prepared for training. Each
// model workspace holds one; its parameters are views of the workspace's flat buffers, and the
// agent whose step runs swaps its own buffers in. Only the trainer and torchscript.cc include this.
//
// Preparation rewrites the forward graph of this in-memory copy only (the file, and what
// model-final.pt saves, keep the user's code): calls are inlined and constants folded, and
// relu + 2x2 max-pool pairs become gut's fused kernel (models/functional.h: ReluMaxPool2x2,
// identical values and gradients, a third of LeNet-5's step time). The graph executor's optimiser is
// off on every call: its profiling runs and fusions would make the first rounds compute other bits
// than the later ones, and a restarted agent or a gut-sim worker thread would then leave the cluster.
#ifndef GUT_CORE_MODELS_SCRIPT_MODULE_H_
#define GUT_CORE_MODELS_SCRIPT_MODULE_H_

#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/models/model.h"

namespace gut::core {

class ScriptModule {
 public:
  // A fresh copy of the module in `src.bytes`; `prepare`: the training graph rewrite above.
  static absl::StatusOr<std::unique_ptr<ScriptModule>> Load(const ScriptSource& src, bool prepare);

  // Points parameter k at w + offsets[k] and its gradient at g + offsets[k] (g null: no gradient).
  void BindParameters(const ModelInfo& model, float* w, float* g);
  // After a backward pass: should autograd have replaced a gradient view instead of accumulating
  // into it, copies the values back and restores the view.
  void KeepGradientViews();
  // Swaps `buffers` (an agent's, in BufferSpec order) into the module; after a forward pass,
  // TakeBuffers reads them back (a module may assign a new tensor to a buffer).
  void PutBuffers(const std::vector<at::Tensor>& buffers);
  void TakeBuffers(std::vector<at::Tensor>* buffers) const;
  void SetTraining(bool on) { module_.train(on); }
  // forward(input) -> one tensor; anything else is an error naming what came back.
  at::Tensor Forward(const at::Tensor& input);

  torch::jit::Module& module() { return module_; }
  // The module's parameters and buffers as named_parameters() / named_buffers() list them, a tensor
  // tied under two names once (as PyTorch's own named_parameters() does).
  const std::vector<std::string>& parameter_names() const { return param_names_; }
  const std::vector<at::Tensor>& parameters() const { return params_; }
  const std::vector<std::string>& buffer_names() const { return buffer_names_; }
  // Whether the prepared forward graph draws random numbers (dropout and the like).
  bool random() const { return random_; }

 private:
  struct Slot {
    c10::intrusive_ptr<c10::ivalue::Object> owner;
    size_t index;
  };
  torch::jit::Module module_;
  std::vector<std::string> param_names_, buffer_names_;
  std::vector<at::Tensor> params_, grads_;  // grads_: the bound views (undefined: none)
  std::vector<Slot> buffers_;
  bool random_ = false;
};

// The spec's initial values as tensors (each agent's own copy).
std::vector<at::Tensor> InitialBuffers(const ScriptSource& src);
// A tensor's dtype as gut names it (float32, int64, ...), and back.
std::string DtypeName(at::ScalarType t);
absl::StatusOr<at::ScalarType> DtypeFromName(const std::string& name);

}  // namespace gut::core

#endif  // GUT_CORE_MODELS_SCRIPT_MODULE_H_
