// The graph after ranks left a run for good (fault.on_peer_loss: drop): the same n nodes, the
// dropped ones isolated, and Metropolis-Hastings weights on what is left (doubly stochastic on any
// graph, so the survivors still average exactly; docs/algorithms.md §10). The survivors must stay
// connected, or the run cannot go on.
#ifndef GUT_CORE_TOPOLOGY_DROP_H_
#define GUT_CORE_TOPOLOGY_DROP_H_

#include <vector>

#include "absl/status/statusor.h"
#include "core/topology/graph.h"
#include "core/topology/mixing.h"

namespace gut::core {

// FAILED_PRECONDITION naming the survivors that would be cut off when the graph falls apart.
// `consensus_step` is the run's exchange.consensus_step, applied to the new weights as to the
// manifest's.
absl::StatusOr<MixingMatrix> MixingWithout(const Graph& graph, const std::vector<int>& dropped,
                                           double consensus_step = 1.0);

}  // namespace gut::core

#endif  // GUT_CORE_TOPOLOGY_DROP_H_
