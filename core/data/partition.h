// Data partitioning across agents (docs/algorithms.md §4) and the per-agent batch sampler.
#ifndef GUT_CORE_DATA_PARTITION_H_
#define GUT_CORE_DATA_PARTITION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/common/random.h"

namespace gut::core {

// The reference code's non_iid_dirichlet partition, drawn with numpy's legacy RandomState(seed)
// stream: shards[k] holds the training-set indices of agent k, each of size floor(N/n).
// Fails for alpha <= 0, n < 1 or n > N.
absl::StatusOr<std::vector<std::vector<int64_t>>> DirichletPartition(
    const std::vector<int64_t>& labels, int num_classes, int num_agents, double alpha,
    uint32_t seed);

// IID partition: a seeded shuffle cut into n equal windows of floor(N/n).
absl::StatusOr<std::vector<std::vector<int64_t>>> IidPartition(int64_t num_samples, int num_agents,
                                                               uint32_t seed);

// Per-agent minibatch order: reshuffled at every epoch from a seeded stream, fixed batch size,
// the last partial batch kept. Iterating past the end of an epoch starts the next one.
class BatchSampler {
 public:
  BatchSampler(std::vector<int64_t> shard, int batch_size, uint64_t seed);

  int batches_per_epoch() const { return batches_per_epoch_; }
  // Indices of the next minibatch (a view valid until the next call).
  const std::vector<int64_t>& Next();

 private:
  std::vector<int64_t> order_;
  std::vector<int64_t> batch_;
  int batch_size_;
  int batches_per_epoch_;
  size_t pos_;
  Rng64 rng_;
};

}  // namespace gut::core

#endif  // GUT_CORE_DATA_PARTITION_H_
