// Run manifest: one YAML file that names a run (agents, graph, weights, algorithm and
// hyperparameters, data and partition, model, exchange deadlines). gut-sim reads it, and so will
// the coordinator. Schema and defaults: the README table of manifest keys. Every key is checked: an unknown key, a
// value of the wrong type or out of range is an error naming the key path (and the line), and the
// allowed values.
#ifndef GUT_CORE_CONFIG_MANIFEST_H_
#define GUT_CORE_CONFIG_MANIFEST_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/algorithm/algorithm.h"
#include "core/codec/codec.h"
#include "core/config/lr_schedule.h"
#include "core/models/model.h"
#include "core/topology/mixing.h"

namespace gut::core {

struct RunConfig {
  // run
  std::string name = "gut-run";
  uint32_t seed = 12;
  int epochs = 100;
  int final_gossip_rounds = 51;
  int eval_every = 1;  // evaluate every agent every k epochs (the last epoch always)
  int threads = 0;     // worker threads of gut-sim; 0 = all cores
  // run.numerics: native, portable or portable-v3 (core/common/numerics.h): whether the bits may
  // depend on the CPU.
  std::string numerics = "native";
  // agents
  int num_agents = 16;
  // topology
  std::string graph = "ring";
  int rows = 0, cols = 0;                 // torus2d
  std::vector<std::pair<int, int>> edges;  // graph: edges
  std::string weights = "uniform";
  // algorithm
  Hyperparameters hyper;
  LrSchedule schedule;
  // data
  std::string dataset = "fashion-mnist";
  std::string data_path = "/usr/share/datasets/fashion-mnist";
  std::string partition = "dirichlet";
  double alpha = 0.1;
  int batch_size = 32;        // per agent
  int test_batch_size = 250;  // evaluation batch (does not change the result; 250 is fastest here)
  // Minibatch order: "agent" (each agent reshuffles its shard from its own stream, derived from
  // run.seed and its rank) or "reference" (the reference code's PyTorch DataLoader order; see
  // core::SampleOrder).
  std::string shuffle = "agent";
  // model
  std::string model = "lenet5";
  std::string init = "gut";  // gut: our seeded RNG; torch: LibTorch's generator, PyTorch's order
  std::string norm = "evonorm";  // model.norm: evonorm or groupnorm (not lenet5)
  // model.path: the TorchScript file of model.name: torchscript (the coordinator's; agents get the
  // file from it). model.loss: cross_entropy (metric: accuracy) or mse (regression; metric: RMSE).
  std::string model_path;
  std::string loss = "cross_entropy";
  // checkpoint
  bool checkpoint_enabled = true;
  int64_t checkpoint_every_rounds = 0;  // 0: once per epoch
  // fault
  std::string on_peer_loss = "fail";  // fail | drop
  double rejoin_timeout_s = 60;       // how long a lost agent may take to come back
  // drop | fail | keep: what the coordinator does with an agent whose model messages most of its
  // neighbours refuse as implausible (docs/algorithms.md §11). "" in a manifest: drop, or fail for
  // relaysgd (which cannot drop a rank).
  std::string on_refused_peer;
  // exchange
  double deadline_s = 60;
  // exchange.codec, zstd, topk_fraction, sparse_values, lowrank_rank, int8_chunk (README, manifest keys; docs/algorithms.md §8).
  // codec.tensors stays empty here: CodecForRun (exchange_settings.h) fills it from the model.
  CodecOptions codec;
  // exchange.consensus_step gamma in (0, 1]: replicas mix with (1 - gamma) I + gamma W. Resolved
  // from "auto" (DefaultConsensusStep) at parse time; consensus_step_auto records that it was.
  double consensus_step = 1.0;
  bool consensus_step_auto = true;
  // exchange.consensus_form, for the momentum methods (docs/algorithms.md §8.4): "auto" (the direct
  // form exactly when consensus_step < 1), "direct" or "reference" (the gossip correction through
  // the momentum buffer, as the paper's code). Resolved into hyper.direct_consensus at parse time.
  std::string consensus_form = "auto";
  // exchange.overlap: 0 (lock-step: a round's gradient waits for its messages) or 1 (the gradient
  // is taken while they travel, docs/algorithms.md §12). Copied into hyper.overlap at parse time.
  int overlap = 0;
};

// Parses manifest text, applies `overrides` ("key.path=value", value parsed as YAML) and validates.
// `source` names the file in error messages.
absl::StatusOr<RunConfig> ParseManifest(const std::string& yaml_text, const std::string& source,
                                        const std::vector<std::string>& overrides);
absl::StatusOr<RunConfig> LoadManifest(const std::string& path,
                                       const std::vector<std::string>& overrides);

// The graph and mixing matrix the manifest describes, validated (connected, symmetric, doubly
// stochastic), with the consensus step applied: (1 - gamma) I + gamma W.
absl::StatusOr<MixingMatrix> BuildMixingMatrix(const RunConfig& config);

// The run's built-in model: model.name and model.norm for data.dataset's input shape and classes
// (a TorchScript model, or any model on npy data, needs the files: core/train/run_model.h).
absl::StatusOr<ModelInfo> ModelForRun(const RunConfig& config);

// The name of the run's test metric: "accuracy" (model.loss: cross_entropy) or "rmse" (mse).
std::string MetricName(const RunConfig& config);

// Rounds between scheduled checkpoints for a run of `rounds_per_epoch` rounds per epoch (0 when
// checkpoints are off).
int64_t CheckpointInterval(const RunConfig& config, int64_t rounds_per_epoch);

// What most likely made training diverge under this configuration, as advice that names the
// setting to change (the epoch driver's divergence error ends with it). In exchange_settings.cc.
std::string DivergenceAdvice(const RunConfig& config);

// The manifest back as YAML (every key, defaults filled in): the run's recorded configuration.
std::string ToYaml(const RunConfig& config);

}  // namespace gut::core

#endif  // GUT_CORE_CONFIG_MANIFEST_H_
