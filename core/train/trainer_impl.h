// The state behind Trainer and ModelWorkspace (core/train/trainer.h), shared by the files that
// implement them: trainer.cc (sampling, gradients) and trainer_io.cc (evaluation, model export,
// buffers in checkpoints). Internal to core/train.
#ifndef GUT_CORE_TRAIN_TRAINER_IMPL_H_
#define GUT_CORE_TRAIN_TRAINER_IMPL_H_

#include <ATen/ATen.h>

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/common/random.h"
#include "core/data/partition.h"
#include "core/models/script_module.h"
#include "core/train/torch_draws.h"
#include "core/train/trainer.h"

namespace gut::core {

struct ModelWorkspace::Impl {
  ModelInfo model;
  std::vector<int64_t> offsets;
  // Flat buffers; the parameter and gradient tensors are views into them.
  std::vector<float> w, g;
  std::vector<at::Tensor> params, grads;
  std::vector<float> batch_images;
  std::vector<int64_t> batch_labels;
  std::vector<float> batch_targets;  // regression: max_batch x target_size
  int max_batch = 0;
  // TorchScript: this workspace's copy of the module (parameters bound to w and g), and whether it
  // is in train mode now (switching walks every submodule, so it is done only on a change).
  std::unique_ptr<ScriptModule> script;
  bool script_training = true;
};


struct Trainer::Impl {
  ModelInfo model;
  const Dataset* train = nullptr;
  std::optional<BatchSampler> sampler;      // data.shuffle: agent
  std::optional<ReferenceOrder> reference;  // data.shuffle: reference
  int batches_per_epoch = 0;
  std::vector<int64_t> batch;  // indices of this round's minibatch
  // Augmentation of this round's minibatch (drawn once per round, so every gradient of the round
  // sees the same images): per sample, flip and crop offsets in the padded image.
  Rng64 augment_rng;
  struct Crop {
    bool flip;
    int dy, dx;  // kCifar: offset in the padded image; kImageNet: top-left of the crop
    int h = 0, w = 0;  // kImageNet: the crop's size in the stored image
  };
  std::vector<Crop> crops;
  std::unique_ptr<ModelWorkspace> own;
  ModelWorkspace::Impl* ws = nullptr;

  // `reference_order`: null for BatchSampler(sampler_seed), else that rank's ReferenceOrder.
  Impl(ModelInfo m, const Dataset* t, std::vector<int64_t> shard, int bs, uint64_t sampler_seed,
       const SampleOrder* reference_order)
      : model(std::move(m)),
        train(t),
        batches_per_epoch(static_cast<int>((shard.size() + bs - 1) / bs)),
        augment_rng(0),
        shard(std::move(shard)),
        batch_size(bs),
        sampler_seed(sampler_seed) {
    if (reference_order) order = *reference_order;
    ResetOrder();
  }

  // Back to the first minibatch of the first epoch: the sampler, LibTorch's generator for the
  // reference order and the augmentation stream start over from their seeds.
  void ResetOrder() {
    augment_rng = Rng64(SplitMix64(sampler_seed ^ 0x61756780u));
    sampler.reset();
    reference.reset();
    if (order) {
      reference.emplace(model, shard, batch_size, order->seed, order->rank);
    } else {
      sampler.emplace(shard, batch_size, sampler_seed);
    }
    drawn = 0;
  }

  // What the constructor was given, so that the order can be replayed (Trainer::Rewind).
  std::vector<int64_t> shard;
  int batch_size;
  uint64_t sampler_seed;
  std::optional<SampleOrder> order;
  int64_t drawn = 0;  // NextBatch calls so far

  // Writes training sample `idx`, augmented with crops[b], into out (C x H x W).
  void CopySample(int b, int64_t idx, float* out) const;
  // Training targets of this round's minibatch into the workspace's staging.
  void StageTargets(ModelWorkspace::Impl& ws, int n) const;
  // Points the workspace's module (TorchScript) at this agent: its buffers, train or eval mode.
  void BindScript(ModelWorkspace::Impl& ws, bool training) const;

  // TorchScript: this agent's own buffers (BufferSpec order); they move with the agent between
  // gut-sim's workspaces, and a checkpoint carries them.
  mutable std::vector<at::Tensor> buffers;
};

// The forward pass of the workspace's model: the zoo's functional form or the TorchScript module.
at::Tensor WorkspaceForward(ModelWorkspace::Impl& ws, const at::Tensor& input);

// Models that draw random numbers (dropout) run one at a time in a process, each from LibTorch's
// default generator seeded for its agent and step, so that a cluster and gut-sim draw the same
// masks whatever thread runs the agent. Null lock for every other model.
class RandomScope {
 public:
  RandomScope(const ModelInfo& model, uint64_t seed);

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace gut::core

#endif  // GUT_CORE_TRAIN_TRAINER_IMPL_H_
