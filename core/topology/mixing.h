// MixingMatrix: the gossip weights W of a Graph (docs/algorithms.md §3). Stored sparsely, aligned with
// the graph's neighbour lists: weight(i, k) is w_ij for j = graph.neighbours(i)[k].
//
// Immutable after construction; thread-safe for concurrent reads. Validate() checks every
// property the algorithms rely on and names the node or edge that breaks it.
#ifndef GUT_CORE_TOPOLOGY_MIXING_H_
#define GUT_CORE_TOPOLOGY_MIXING_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/topology/graph.h"

namespace gut::core {

enum class WeightRule { kUniform, kMetropolisHastings };

absl::StatusOr<WeightRule> ParseWeightRule(const std::string& name);

struct Spectrum {
  std::vector<double> eigenvalues;  // descending
  double lambda2 = 0;               // second largest
  double lambda_min = 0;            // smallest
  double rho = 0;                   // 1 - max(|lambda2|, |lambda_min|)
  double p = 0;                     // 1 - max(|lambda2|, |lambda_min|)^2
};

class MixingMatrix {
 public:
  // Uniform: w_ij = 1/(deg_i + 1) on N+(i) (doubly stochastic on regular graphs only; Validate()
  // rejects it otherwise). Metropolis-Hastings: w_ij = 1/(1 + max(deg_i, deg_j)),
  // w_ii = 1 - sum_j w_ij.
  static MixingMatrix Build(const Graph& graph, WeightRule rule);

  // (1 - gamma) I + gamma W: the consensus step of compressed gossip (docs/algorithms.md §8.4).
  // Still symmetric and doubly stochastic, with the spectral gap scaled by gamma. gamma = 1 returns
  // W itself, bit for bit.
  MixingMatrix WithConsensusStep(double gamma) const;

  // Checks: the graph is connected, W is symmetric, every weight on N+(i) is positive and every
  // row and column sums to 1 (within 1e-9).
  absl::Status Validate() const;

  const Graph& graph() const { return graph_; }
  int size() const { return graph_.size(); }
  double self_weight(int i) const { return self_[i]; }
  double weight(int i, int k) const { return weights_[i][k]; }  // k-th neighbour of i
  // w_ij for any pair (0 if not adjacent).
  double Entry(int i, int j) const;
  std::vector<std::vector<double>> Dense() const;
  // Eigenvalues of the symmetric W (Jacobi rotations).
  Spectrum ComputeSpectrum() const;

 private:
  MixingMatrix(Graph graph, std::vector<double> self, std::vector<std::vector<double>> weights)
      : graph_(std::move(graph)), self_(std::move(self)), weights_(std::move(weights)) {}
  Graph graph_;
  std::vector<double> self_;
  std::vector<std::vector<double>> weights_;
};

// Eigenvalues of a dense symmetric matrix, descending. Cyclic Jacobi; fine up to a few hundred rows.
std::vector<double> SymmetricEigenvalues(std::vector<std::vector<double>> a);

}  // namespace gut::core

#endif  // GUT_CORE_TOPOLOGY_MIXING_H_
