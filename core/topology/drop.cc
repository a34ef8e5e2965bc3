#include "core/topology/drop.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gut::core {

absl::StatusOr<MixingMatrix> MixingWithout(const Graph& graph, const std::vector<int>& dropped,
                                           double consensus_step) {
  const std::set<int> gone(dropped.begin(), dropped.end());
  std::vector<std::vector<int>> lists(graph.size());
  int first = -1;
  for (int i = 0; i < graph.size(); ++i) {
    if (gone.count(i)) continue;
    if (first < 0) first = i;
    for (int j : graph.neighbours(i))
      if (!gone.count(j)) lists[i].push_back(j);
  }
  if (first < 0) return absl::FailedPreconditionError("every rank has left the run");
  // Survivors reachable from the first one.
  std::vector<bool> seen(graph.size(), false);
  std::vector<int> stack = {first};
  seen[first] = true;
  while (!stack.empty()) {
    const int i = stack.back();
    stack.pop_back();
    for (int j : lists[i])
      if (!seen[j]) {
        seen[j] = true;
        stack.push_back(j);
      }
  }
  std::vector<int> cut;
  for (int i = 0; i < graph.size(); ++i)
    if (!gone.count(i) && !seen[i]) cut.push_back(i);
  if (!cut.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "without rank(s) ", absl::StrJoin(dropped, ", "), " the ", graph.name(), " graph falls apart: rank(s) ",
        absl::StrJoin(cut, ", "), " could no longer reach rank ", first));
  }
  auto g = Graph::FromNeighbourLists(absl::StrCat(graph.name(), " without ", absl::StrJoin(dropped, ",")),
                                     std::move(lists));
  if (!g.ok()) return g.status();
  return MixingMatrix::Build(*g, WeightRule::kMetropolisHastings).WithConsensusStep(consensus_step);
}

}  // namespace gut::core
