// The receiving side of a gossip step, written once for every exchange (InProcessExchange and the
// gRPC exchange): out = sum_j w_ij m_j over the neighbours in neighbour-list order, the first term
// assigned and the rest added one by one. Both exchanges call this with the same weights and the
// same decoded messages, which is why a cluster and gut-sim produce identical bits.
#ifndef GUT_CORE_EXCHANGE_WEIGHTED_SUM_H_
#define GUT_CORE_EXCHANGE_WEIGHTED_SUM_H_

#include <algorithm>
#include <vector>

#include "absl/types/span.h"
#include "core/exchange/neighbourhood.h"

namespace gut::core {

// messages[k] points at neighbour k's decoded message of out.size() values. No neighbours: zeros.
template <typename T>
void WeightedSum(const std::vector<NeighbourInfo>& neighbours, const std::vector<const T*>& messages,
                 absl::Span<T> out) {
  T* o = out.data();
  const size_t n = out.size();
  if (neighbours.empty()) {
    std::fill(out.begin(), out.end(), T(0));
    return;
  }
  {
    const T w = static_cast<T>(neighbours[0].weight);
    const T* __restrict m = messages[0];
    for (size_t i = 0; i < n; ++i) o[i] = w * m[i];
  }
  for (size_t k = 1; k < neighbours.size(); ++k) {
    const T w = static_cast<T>(neighbours[k].weight);
    const T* __restrict m = messages[k];
    for (size_t i = 0; i < n; ++i) o[i] += w * m[i];
  }
}

}  // namespace gut::core

#endif  // GUT_CORE_EXCHANGE_WEIGHTED_SUM_H_
