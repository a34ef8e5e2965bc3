#include "core/models/script_module.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/library.h>

#include <cstring>
#include <sstream>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/models/functional.h"

namespace gut::core {
namespace {

// relu(max_pool2d(x, 2)) for what the fused kernel covers (4-D float input); the ATen ops for
// anything else, so the rewrite never changes what a model computes.
at::Tensor FusedReluMaxPool(const at::Tensor& x) {
  if (x.dim() == 4 && x.scalar_type() == at::kFloat && x.size(2) >= 2 && x.size(3) >= 2) return ReluMaxPool2x2(x);
  return at::relu(at::max_pool2d(x, {2, 2}));
}

}  // namespace
}  // namespace gut::core

// A function registered with def() runs above autograd (CompositeImplicitAutograd), so the custom
// autograd function inside records its own backward.
TORCH_LIBRARY(gut, m) { m.def("relu_max_pool2x2(Tensor x) -> Tensor", &gut::core::FusedReluMaxPool); }

namespace gut::core {
namespace {

using torch::jit::Block;
using torch::jit::Node;
using torch::jit::Value;

bool IntListIs(const Value* v, std::initializer_list<int64_t> want, bool or_empty = false) {
  auto iv = torch::jit::toIValue(v);
  if (!iv || !iv->isIntList()) return false;
  const auto got = iv->toIntVector();
  return (or_empty && got.empty()) || got == std::vector<int64_t>(want);
}

// max_pool2d(x, kernel 2, stride 2 (or default), padding 0, dilation 1, floor).
bool IsPool2x2(const Node* n) {
  if (n->kind() != c10::aten::max_pool2d || n->inputs().size() != 6) return false;
  auto ceil = torch::jit::toIValue(n->input(5));
  return IntListIs(n->input(1), {2, 2}) && IntListIs(n->input(2), {2, 2}, true) && IntListIs(n->input(3), {0, 0}) &&
         IntListIs(n->input(4), {1, 1}) && ceil && ceil->isBool() && !ceil->toBool();
}

bool IsRelu(const Node* n) { return n->kind() == c10::aten::relu || n->kind() == c10::aten::relu_; }

// An in-place relu may be fused only when nothing else reads the tensor it overwrites.
bool ReluFusable(const Node* r) {
  return r->kind() == c10::aten::relu || r->input(0)->uses().size() == 1;
}

void FuseReluMaxPool(Block* block, torch::jit::Graph* g) {
  static const c10::Symbol kFused = c10::Symbol::fromQualString("gut::relu_max_pool2x2");
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    Node* n = *it;
    ++it;
    for (Block* sub : n->blocks()) FuseReluMaxPool(sub, g);
    Node *first = nullptr, *second = nullptr;  // the pair, in graph order
    if (IsPool2x2(n) && IsRelu(n->input(0)->node())) {
      first = n->input(0)->node();
      second = n;
      if (!ReluFusable(first)) continue;
    } else if (IsRelu(n) && IsPool2x2(n->input(0)->node())) {
      first = n->input(0)->node();
      second = n;
    } else {
      continue;
    }
    if (first->output()->uses().size() != 1 || first->owningBlock() != block) continue;
    torch::jit::WithInsertPoint guard(second);
    Value* fused = g->insert(kFused, {first->input(0)});
    second->output()->replaceAllUsesWith(fused);
    second->destroy();
    first->destroy();
  }
}

bool DrawsRandomNumbers(const Block* block) {
  static const std::unordered_set<std::string> kRandom = {
      "aten::dropout",       "aten::dropout_",       "aten::feature_dropout", "aten::feature_dropout_",
      "aten::alpha_dropout", "aten::alpha_dropout_", "aten::feature_alpha_dropout",
      "aten::feature_alpha_dropout_", "aten::bernoulli", "aten::bernoulli_", "aten::rand", "aten::rand_like",
      "aten::randn",         "aten::randn_like",     "aten::randint",          "aten::randint_like",
      "aten::randperm",      "aten::normal",         "aten::normal_",          "aten::uniform_",
      "aten::multinomial",   "aten::rrelu",          "aten::rrelu_",           "aten::rrelu_with_noise",
      "aten::exponential_",  "aten::geometric_",     "aten::cauchy_",          "aten::log_normal_",
      "aten::random_",       "aten::poisson",        "aten::native_dropout"};
  for (const Node* n : block->nodes()) {
    if (kRandom.count(n->kind().toQualString())) return true;
    for (const Block* b : n->blocks())
      if (DrawsRandomNumbers(b)) return true;
  }
  return false;
}

// Sets the graph executor's optimiser (a thread-local flag) for one call and puts it back.
class NoOptimise {
 public:
  NoOptimise() : was_(torch::jit::getGraphExecutorOptimize()) { torch::jit::setGraphExecutorOptimize(false); }
  ~NoOptimise() { torch::jit::setGraphExecutorOptimize(was_); }

 private:
  bool was_;
};

}  // namespace

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

absl::StatusOr<at::ScalarType> DtypeFromName(const std::string& name) {
  for (at::ScalarType t : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kShort,
                           at::kChar, at::kByte, at::kBool}) {
    if (DtypeName(t) == name) return t;
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported tensor dtype '", name, "'"));
}

std::vector<at::Tensor> InitialBuffers(const ScriptSource& src) {
  std::vector<at::Tensor> out;
  for (const BufferSpec& b : src.buffers) {
    at::Tensor t = at::empty(b.shape, at::TensorOptions().dtype(*DtypeFromName(b.dtype)));
    std::memcpy(t.data_ptr(), b.initial.data(), b.initial.size());
    out.push_back(t);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<ScriptModule>> ScriptModule::Load(const ScriptSource& src, bool prepare) {
  auto m = std::make_unique<ScriptModule>();
  try {
    std::istringstream in(src.bytes);
    m->module_ = torch::jit::load(in);
    std::unordered_set<const c10::TensorImpl*> seen;
    for (const auto& p : m->module_.named_parameters(/*recurse=*/true)) {
      if (!seen.insert(p.value.unsafeGetTensorImpl()).second) continue;
      m->param_names_.push_back(p.name);
      m->params_.push_back(p.value);
    }
    for (const auto& b : m->module_.named_buffers(/*recurse=*/true)) {
      if (!seen.insert(b.value.unsafeGetTensorImpl()).second) continue;
      // The owner of "a.b.c" is submodule a.b; its attribute c holds the buffer.
      torch::jit::Module owner = m->module_;
      std::string path = b.name;
      for (size_t dot; (dot = path.find('.')) != std::string::npos; path = path.substr(dot + 1)) {
        owner = owner.attr(path.substr(0, dot)).toModule();
      }
      m->buffer_names_.push_back(b.name);
      m->buffers_.push_back({owner._ivalue(), owner.type()->getAttributeSlot(path)});
    }
    if (prepare) {
      auto& fn = torch::jit::toGraphFunction(m->module_.get_method("forward").function());
      std::shared_ptr<torch::jit::Graph> g = fn.graph();
      torch::jit::Inline(*g);
      torch::jit::ConstantPropagation(g);
      FuseReluMaxPool(g->block(), g.get());
      torch::jit::EliminateDeadCode(g);
      m->random_ = DrawsRandomNumbers(g->block());
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(c10::GetExceptionString(e));
  }
  return m;
}

void ScriptModule::BindParameters(const ModelInfo& model, float* w, float* g) {
  const auto offsets = model.offsets();
  grads_.resize(params_.size());
  for (size_t k = 0; k < params_.size(); ++k) {
    const auto& shape = model.layout[k].shape;
    params_[k].set_data(at::from_blob(w + offsets[k], shape, at::kFloat));
    if (g != nullptr && params_[k].requires_grad()) {
      grads_[k] = at::from_blob(g + offsets[k], shape, at::kFloat);
      params_[k].mutable_grad() = grads_[k];
    }
  }
}

void ScriptModule::KeepGradientViews() {
  for (size_t k = 0; k < params_.size(); ++k) {
    if (!grads_[k].defined()) continue;
    at::Tensor& gr = params_[k].mutable_grad();
    if (!gr.defined() || gr.data_ptr() != grads_[k].data_ptr()) {
      if (gr.defined()) grads_[k].copy_(gr);
      gr = grads_[k];
    }
  }
}

void ScriptModule::PutBuffers(const std::vector<at::Tensor>& buffers) {
  for (size_t k = 0; k < buffers_.size(); ++k) buffers_[k].owner->setSlot(buffers_[k].index, buffers[k]);
}

void ScriptModule::TakeBuffers(std::vector<at::Tensor>* buffers) const {
  for (size_t k = 0; k < buffers_.size(); ++k) (*buffers)[k] = buffers_[k].owner->getSlot(buffers_[k].index).toTensor();
}

at::Tensor ScriptModule::Forward(const at::Tensor& input) {
  NoOptimise no_optimise;
  c10::IValue out = module_.forward({input});
  TORCH_CHECK(out.isTensor(), "forward returned ", out.tagKind(), "; gut needs forward(x) to return one tensor");
  return out.toTensor();
}

}  // namespace gut::core
