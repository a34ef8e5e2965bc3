// The checks of a parsed manifest (ParseManifest runs them after every key is read): ranges,
// names and the combinations that cannot work, each error naming the key and the allowed values.
#include "core/config/manifest_checks.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/common/numerics.h"
#include "core/data/dataset.h"

namespace gut::core {
namespace {

// Upper bounds: far beyond any real run, low enough that a typo cannot make a process allocate
// gigabytes or loop for days before saying so.
constexpr int kMaxAgents = 4096;
constexpr int kMaxEpochs = 100000;
constexpr int kMaxBatch = 65536;

}  // namespace

absl::Status ValidateRunConfig(const RunConfig& c) {
  auto bad = [](const std::string& msg) { return absl::InvalidArgumentError(msg); };
  if (c.num_agents < 2 || c.num_agents > kMaxAgents) {
    return bad(absl::StrCat("agents.count must be in [2, ", kMaxAgents, "], got ", c.num_agents));
  }
  if (c.epochs < 1 || c.epochs > kMaxEpochs) {
    return bad(absl::StrCat("run.epochs must be in [1, ", kMaxEpochs, "], got ", c.epochs));
  }
  if (c.final_gossip_rounds > 1000000) {
    return bad(absl::StrCat("run.final_gossip_rounds must be at most 1000000, got ", c.final_gossip_rounds));
  }
  if (c.threads > 1024) return bad(absl::StrCat("run.threads must be at most 1024, got ", c.threads));
  if (c.batch_size > kMaxBatch || c.test_batch_size > kMaxBatch) {
    return bad(absl::StrCat("data.batch_size and data.test_batch_size must be at most ", kMaxBatch, ", got ",
                            c.batch_size, " and ", c.test_batch_size));
  }
  if (c.codec.int8_chunk > (1 << 26)) {
    return bad(absl::StrCat("exchange.int8_chunk must be at most ", 1 << 26, ", got ", c.codec.int8_chunk));
  }
  if (c.deadline_s > 86400 || c.rejoin_timeout_s > 86400) {
    return bad("exchange.deadline_s and fault.rejoin_timeout_s must be at most 86400 (a day)");
  }
  if (c.edges.size() > static_cast<size_t>(kMaxAgents) * kMaxAgents / 2) {
    return bad(absl::StrCat("topology.edges has ", c.edges.size(), " entries, more than any graph of ", kMaxAgents,
                            " agents"));
  }
  if (c.final_gossip_rounds < 0)
    return bad(absl::StrCat("run.final_gossip_rounds must be >= 0, got ", c.final_gossip_rounds));
  if (c.eval_every < 1) return bad(absl::StrCat("run.eval_every must be >= 1, got ", c.eval_every));
  if (c.threads < 0) return bad(absl::StrCat("run.threads must be >= 0 (0 = all cores), got ", c.threads));
  if (auto n = ParseNumerics(c.numerics); !n.ok()) return bad(std::string(n.status().message()));
  if (c.batch_size < 1) return bad(absl::StrCat("data.batch_size must be >= 1, got ", c.batch_size));
  if (c.test_batch_size < 1)
    return bad(absl::StrCat("data.test_batch_size must be >= 1, got ", c.test_batch_size));
  if (c.shuffle != "agent" && c.shuffle != "reference")
    return bad(absl::StrCat("data.shuffle: unknown order '", c.shuffle, "'; allowed: agent, reference"));
  if (auto shape = GetDatasetShape(c.dataset); !shape.ok()) return bad(std::string(shape.status().message()));
  if (c.partition != "dirichlet" && c.partition != "iid")
    return bad(absl::StrCat("data.partition: unknown partition '", c.partition, "'; allowed: dirichlet, iid"));
  if (c.partition == "dirichlet" && (!(c.alpha > 0) || !std::isfinite(c.alpha)))
    return bad(absl::StrCat("data.alpha must be a positive number (Dirichlet concentration), got ", c.alpha));
  if (c.loss != "cross_entropy" && c.loss != "mse")
    return bad(absl::StrCat("model.loss: unknown loss '", c.loss, "'; allowed: cross_entropy (metric: accuracy), mse (metric: RMSE)"));
  if (c.model == "torchscript") {
    // The file itself is read by whoever runs the model (gut-sim, the coordinator): agents get
    // the manifest without it.
    if (c.model_path.empty())
      return bad("model.path: model.name: torchscript needs the file torch.jit.save wrote (model.path: /path/model.pt)");
  } else {
    if (!c.model_path.empty())
      return bad(absl::StrCat("model.path is for model.name: torchscript; model '", c.model, "' is built in"));
    if (auto m = ModelForRun(c); !m.ok()) return bad(std::string(m.status().message()));
  }
  if (c.loss == "mse" && c.dataset != "npy")
    return bad(absl::StrCat("model.loss: mse needs regression targets (data.dataset: npy with float32 y); data set '",
                            c.dataset, "' holds class labels"));
  if (c.loss == "mse" && c.partition == "dirichlet")
    return bad("data.partition: dirichlet splits by class label; regression targets (model.loss: mse) need iid");
  if (c.init != "gut" && c.init != "torch")
    return bad(absl::StrCat("model.init: unknown initialisation '", c.init, "'; allowed: gut, torch"));
  if (c.checkpoint_every_rounds < 0)
    return bad(absl::StrCat("checkpoint.every_rounds must be >= 0 (0 = once per epoch), got ", c.checkpoint_every_rounds));
  if (c.on_peer_loss != "fail" && c.on_peer_loss != "drop")
    return bad(absl::StrCat("fault.on_peer_loss: unknown policy '", c.on_peer_loss, "'; allowed: fail, drop"));
  if (!(c.rejoin_timeout_s > 0) || !std::isfinite(c.rejoin_timeout_s))
    return bad(absl::StrCat("fault.rejoin_timeout_s must be a positive number of seconds, got ", c.rejoin_timeout_s));
  if (c.on_peer_loss == "drop" && c.hyper.algorithm == "relaysgd")
    return bad("fault.on_peer_loss: relaysgd relays over a fixed spanning tree and cannot drop a rank; use fail");
  if (c.on_refused_peer != "drop" && c.on_refused_peer != "fail" && c.on_refused_peer != "keep")
    return bad(absl::StrCat("fault.on_refused_peer: unknown policy '", c.on_refused_peer, "'; allowed: drop, fail, keep"));
  if (c.on_refused_peer == "drop" && c.hyper.algorithm == "relaysgd")
    return bad("fault.on_refused_peer: relaysgd cannot drop a rank; use fail or keep");
  if (!(c.deadline_s > 0)) return bad(absl::StrCat("exchange.deadline_s must be positive, got ", c.deadline_s));
  if (!(c.codec.topk_fraction > 0 && c.codec.topk_fraction <= 1))
    return bad(absl::StrCat("exchange.topk_fraction must be in (0, 1], got ", c.codec.topk_fraction));
  if (c.codec.int8_chunk < 1)
    return bad(absl::StrCat("exchange.int8_chunk must be >= 1, got ", c.codec.int8_chunk));
  if (c.codec.lowrank_rank < 1 || c.codec.lowrank_rank > 64)
    return bad(absl::StrCat("exchange.lowrank_rank must be in [1, 64], got ", c.codec.lowrank_rank));
  if (c.codec.zstd_level < 1 || c.codec.zstd_level > 19)
    return bad(absl::StrCat("exchange.zstd_level must be in [1, 19], got ", c.codec.zstd_level));
  if (!(c.consensus_step > 0 && c.consensus_step <= 1))
    return bad(absl::StrCat("exchange.consensus_step must be in (0, 1] or auto, got ", c.consensus_step));
  if (c.consensus_form != "auto" && c.consensus_form != "direct" && c.consensus_form != "reference")
    return bad(absl::StrCat("exchange.consensus_form must be auto, direct or reference, got '", c.consensus_form, "'"));
  if (c.consensus_step != 1 && c.hyper.algorithm == "relaysgd")
    return bad(absl::StrCat("exchange.consensus_step: relaysgd relays exact sums over a spanning tree and has no "
                            "consensus step to shrink; use 1 (got ", c.consensus_step, ")"));
  if (c.overlap != 0 && c.overlap != 1)
    return bad(absl::StrCat("exchange.overlap must be 0 (lock-step) or 1 (gradient while the messages travel), got ",
                            c.overlap));
  if (!(c.schedule.gamma > 0)) return bad(absl::StrCat("algorithm.schedule.gamma must be positive, got ", c.schedule.gamma));
  for (double m : c.schedule.milestones)
    if (!(m >= 0 && m <= 1))
      return bad(absl::StrCat("algorithm.schedule.milestones: each milestone is a fraction of the epochs in [0, 1], got ", m));
  if (auto s = ValidateHyperparameters(c.hyper); !s.ok()) return s;
  if (!std::filesystem::is_directory(c.data_path)) {
    std::string hint = "install Debian's dataset-fashion-mnist, or point data.path at a directory with the four "
                       "MNIST IDX files";
    if (c.dataset == "cifar10") {
      hint = "point data.path at the unpacked binary CIFAR-10 (cifar-10-batches-bin: data_batch_1..5.bin, "
             "test_batch.bin from https://www.cs.toronto.edu/~kriz/cifar.html)";
    } else if (c.dataset == "cifar100") {
      hint = "point data.path at the unpacked binary CIFAR-100 (cifar-100-binary: train.bin, test.bin from "
             "https://www.cs.toronto.edu/~kriz/cifar.html)";
    } else if (c.dataset == "imagenette") {
      hint = "point data.path at the unpacked imagenette2 archive (train/<class>/*.JPEG, val/<class>/*.JPEG from "
             "https://github.com/fastai/imagenette)";
    }
    return bad(absl::StrCat("data.path: directory '", c.data_path, "' does not exist (", hint,
                            "; nothing is downloaded at run time)"));
  }
  auto w = BuildMixingMatrix(c);
  if (!w.ok()) return w.status();
  if (c.hyper.algorithm == "relaysgd" && w->graph().num_edges() != c.num_agents - 1) {
    return bad(absl::StrCat("algorithm.name: relaysgd relays over a spanning tree, but topology.graph '",
                            c.graph, "' has ", w->graph().num_edges(), " edges for ", c.num_agents,
                            " agents (a tree has ", c.num_agents - 1,
                            "); use topology.graph: chain with topology.weights: metropolis (the ring's spanning tree) or a tree of edges"));
  }
  return absl::OkStatus();
}

}  // namespace gut::core
