// Trainer: the GradientOracle of one agent for a real network. It owns the evaluation-point buffer
// (the model's parameters are views into it, so writing point() moves the model with no copy), the
// flat gradient buffer, and the agent's batch sampler over its shard of a shared Dataset.
// Evaluate() runs the model at any flat parameter vector over a data set.
//
// LibTorch stays behind this interface: the header is Torch-free, LibTorch exceptions are caught
// inside and returned as Status. One thread uses a Trainer at a time; several Trainers may run in
// parallel threads (each op then runs on the calling thread when intra-op threads are 1).
#ifndef GUT_CORE_TRAIN_TRAINER_H_
#define GUT_CORE_TRAIN_TRAINER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/algorithm/algorithm.h"
#include "core/checkpoint/state_bundle.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "core/models/model.h"

namespace gut::core {

struct EvalResult {
  // The model's test metric (ModelInfo::loss): top-1 accuracy in [0, 1] for cross_entropy, the root
  // mean squared error over every target value for mse.
  double metric = 0;
  double loss = 0;  // mean cross-entropy, or the mean squared error
  int64_t samples = 0;
};

// The buffers a forward/backward pass needs: the evaluation point (the model's parameters are
// views into it), the flat gradient and the minibatch staging. A trainer owns one; a simulator
// that runs many agents on a few threads lends each agent its thread's workspace instead, so the
// working set stays a few buffers per thread instead of per agent.
class ModelWorkspace {
 public:
  // Staging sized for minibatches of `data` (its samples and targets) of at most max_batch.
  static absl::StatusOr<std::unique_ptr<ModelWorkspace>> Create(const ModelInfo& model, int max_batch,
                                                               const Dataset& data);
  ~ModelWorkspace();

  struct Impl;  // core/train/trainer_impl.h

 private:
  friend class Trainer;
  explicit ModelWorkspace(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// How an agent orders its shard into minibatches, epoch after epoch (manifest key data.shuffle).
struct SampleOrder {
  // "agent": BatchSampler from DeriveSeed(seed, rank, kSampler), each agent its own stream.
  // "reference": the reference code's DataLoader on PyTorch 1.2. Each of its processes seeds the
  // global generator with the run seed, builds the model (the draws of TorchDefaultInit), and on
  // rank 0 draws torchsummary's input, rand(2, C, H, W). Every epoch the training loader's
  // iterator then draws its worker base seed (one int64) and RandomSampler's randperm of the
  // shard, and the validation loader draws one more int64. Replayed here on LibTorch's generator
  // (same MT19937 and draw rules), so ranks 1..n-1 share one order, as the reference's do.
  std::string kind = "agent";
  uint64_t seed = 0;  // run.seed
  int rank = 0;
};

class Trainer final : public GradientOracle<float> {
 public:
  // `train` must outlive the trainer. The shard holds indices into `train`.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const ModelInfo& model,
                                                         const Dataset* train,
                                                         std::vector<int64_t> shard,
                                                         int batch_size, const SampleOrder& order);
  // An "agent" order drawn from `sampler_seed` directly.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const ModelInfo& model,
                                                         const Dataset* train,
                                                         std::vector<int64_t> shard,
                                                         int batch_size, uint64_t sampler_seed);
  ~Trainer() override;

  // Uses `ws` (same model, batch at least this trainer's) for point(), ComputeGradient() and
  // gradient() until the next call; nullptr goes back to the trainer's own workspace. The point
  // and the gradient live in the workspace: write the point and read the gradient within one
  // binding.
  void UseWorkspace(ModelWorkspace* ws);

  // Draws this round's minibatch (and its augmentation, if the data set has one).
  void NextBatch();
  // Minibatches drawn so far: the whole position of the sampler (a checkpoint stores this).
  int64_t batches_drawn() const;
  // Puts the sampler where it was after `batches` draws, by replaying the draws from the seeds
  // (index arithmetic only, microseconds per round), so a restored agent draws exactly the
  // minibatches and augmentations the uninterrupted one would.
  void Rewind(int64_t batches);
  // Sample b of this round's minibatch as the gradient sees it (augmented), C x H x W into out.
  void AugmentedSample(int b, float* out) const;
  // This round's minibatch: indices into the training set.
  const std::vector<int64_t>& batch() const;
  int batches_per_epoch() const;

  absl::Span<float> point() override;
  absl::Status ComputeGradient() override;
  absl::Span<const float> gradient() const override;
  // Loss of the last ComputeGradient() (mean over the minibatch).
  double last_loss() const { return last_loss_; }

  // Top-1 accuracy and mean loss of `params` over `data`, in batches of `batch_size`.
  absl::StatusOr<EvalResult> Evaluate(absl::Span<const float> params, const Dataset& data,
                                      int batch_size) const;

  // The agent's model at `params` as a file PyTorch loads (model-final.pt): for a TorchScript model
  // the module with these parameters and this agent's buffers, in eval mode (torch.jit.load); for a
  // zoo model a state dict of the layout's names (torch.load; docs/own-model.md gives the PyTorch
  // definitions whose names match).
  absl::StatusOr<std::string> ExportModel(absl::Span<const float> params) const;
  // The same for the mean model of several agents (gut-sim's model-average.pt): `mean` parameters;
  // floating-point buffers averaged over the agents in rank order, integer ones (BatchNorm's
  // num_batches_tracked) the first agent's.
  static absl::StatusOr<std::string> ExportAverageModel(const std::vector<const Trainer*>& agents,
                                                        absl::Span<const float> mean);

  // The agent's buffers (TorchScript models that have any) in a checkpoint: saved, or loaded and
  // checked against the model's buffer sizes. Nothing for other models.
  void VisitBuffers(StateVisitor<float>* v);
  // Back to the file's buffers (a restart from round 0).
  void ResetBuffers();

  struct Impl;  // core/train/trainer_impl.h

 private:
  explicit Trainer(std::unique_ptr<Impl> impl);
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const ModelInfo& model, const Dataset* train,
                                                         std::vector<int64_t> shard, int batch_size,
                                                         uint64_t sampler_seed,
                                                         const SampleOrder* reference_order);
  std::unique_ptr<Impl> impl_;
  double last_loss_ = 0;
};

// The initial model PyTorch would build: LibTorch's generator seeded with `seed`; first every conv
// and linear tensor in layout (module) order drawn with uniform_(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// as nn.Conv2d and nn.Linear initialise themselves when built; then the reference's init loop
// (ResNet, VGG: normal_ for the He convolutions, zero_ for their biases; norm scales 1, shifts 0).
// With the reference code's seed this is its starting point for LeNet-5 (checked against it) and
// the same draw sequence for the other models (manifest: model.init: torch). It draws from a
// generator of its own, so it is thread-safe and leaves LibTorch's global generator alone.
absl::StatusOr<std::vector<float>> TorchDefaultInit(const ModelInfo& model, uint64_t seed);

// The run's initial model for manifest key model.init: "torch" (TorchDefaultInit) or "gut"
// (ModelInfo::InitialParameters). Every agent and every tool builds x0 through this.
absl::StatusOr<std::vector<float>> InitialModel(const ModelInfo& model, const std::string& init,
                                                uint64_t seed);

// Sets LibTorch (and OpenMP/OpenBLAS) to `threads` intra-op threads for the calling thread and
// the process. gut runs agents in parallel, each on one thread.
void SetComputeThreads(int threads);

}  // namespace gut::core

#endif  // GUT_CORE_TRAIN_TRAINER_H_
