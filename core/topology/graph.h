// Graph: an undirected communication graph over agents 0..n-1 with an ordered neighbour list per
// agent (the order decides nothing numerically; it is the order in which an agent's neighbours are
// listed in messages, logs and weighted sums). Builders for the graphs of docs/algorithms.md §3.
//
// A Graph is an immutable value; builders return absl::StatusOr and name the offending parameter.
// Thread-safe for concurrent reads.
#ifndef GUT_CORE_TOPOLOGY_GRAPH_H_
#define GUT_CORE_TOPOLOGY_GRAPH_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace gut::core {

class Graph {
 public:
  // Builds a graph from explicit neighbour lists. Fails on self loops, duplicate neighbours,
  // out-of-range ranks or asymmetric lists (j in N(i) but i not in N(j)).
  static absl::StatusOr<Graph> FromNeighbourLists(std::string name,
                                                  std::vector<std::vector<int>> neighbours);
  // Builds an undirected graph on n nodes from an edge list; neighbour lists are sorted.
  static absl::StatusOr<Graph> FromEdges(std::string name, int n,
                                         const std::vector<std::pair<int, int>>& edges);

  int size() const { return static_cast<int>(neighbours_.size()); }
  const std::vector<int>& neighbours(int rank) const { return neighbours_[rank]; }
  int degree(int rank) const { return static_cast<int>(neighbours_[rank].size()); }
  bool HasEdge(int i, int j) const;
  int num_edges() const;
  bool IsRegular() const;
  bool IsConnected() const;
  const std::string& name() const { return name_; }

 private:
  Graph(std::string name, std::vector<std::vector<int>> neighbours)
      : name_(std::move(name)), neighbours_(std::move(neighbours)) {}
  std::string name_;
  std::vector<std::vector<int>> neighbours_;
};

// Ring: N(r) = {r+1, r-1} mod n. n >= 3 (n = 2 is the single edge, allowed as a chain).
absl::StatusOr<Graph> MakeRing(int n);
// The reference code's "torus": the circulant C_n(1, 4), N(r) = {r±1, r±4} mod n. n >= 9.
absl::StatusOr<Graph> MakeCirculantTorus(int n);
// A true 2-D torus rows x cols (product of two cycles), row-major ranks.
absl::StatusOr<Graph> MakeTorus2D(int rows, int cols);
// The reference code's 32-node "Dyck" graph (docs/algorithms.md §3), not the textbook Dyck graph.
absl::StatusOr<Graph> MakeCodeDyck(int n);
// The canonical Petersen graph (n must be 10).
absl::StatusOr<Graph> MakePetersen(int n);
absl::StatusOr<Graph> MakeFull(int n);
// Path 0-1-...-(n-1).
absl::StatusOr<Graph> MakeChain(int n);
// Undirected exponential graph: i ~ i + 2^k mod n for all 2^k < n.
absl::StatusOr<Graph> MakeExponential(int n);

}  // namespace gut::core

#endif  // GUT_CORE_TOPOLOGY_GRAPH_H_
