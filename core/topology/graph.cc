#include "core/topology/graph.h"

#include <algorithm>
#include <queue>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gut::core {

absl::StatusOr<Graph> Graph::FromNeighbourLists(std::string name,
                                                std::vector<std::vector<int>> neighbours) {
  const int n = static_cast<int>(neighbours.size());
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("graph '", name, "' has no nodes"));
  for (int i = 0; i < n; ++i) {
    std::set<int> seen;
    for (int j : neighbours[i]) {
      if (j < 0 || j >= n) {
        return absl::InvalidArgumentError(absl::StrCat("graph '", name, "': node ", i,
                                                       " lists neighbour ", j, " outside [0, ", n,
                                                       ")"));
      }
      if (j == i) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph '", name, "': node ", i, " has a self loop"));
      }
      if (!seen.insert(j).second) {
        return absl::InvalidArgumentError(absl::StrCat("graph '", name, "': node ", i,
                                                       " lists neighbour ", j, " twice"));
      }
    }
  }
  for (int i = 0; i < n; ++i) {
    for (int j : neighbours[i]) {
      const auto& back = neighbours[j];
      if (std::find(back.begin(), back.end(), i) == back.end()) {
        return absl::InvalidArgumentError(absl::StrCat("graph '", name, "' is not symmetric: edge ",
                                                       i, "->", j, " has no edge ", j, "->", i));
      }
    }
  }
  return Graph(std::move(name), std::move(neighbours));
}

absl::StatusOr<Graph> Graph::FromEdges(std::string name, int n,
                                       const std::vector<std::pair<int, int>>& edges) {
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("graph '", name, "' has no nodes"));
  std::vector<std::set<int>> adj(n);
  for (size_t k = 0; k < edges.size(); ++k) {
    const auto [a, b] = edges[k];
    if (a < 0 || a >= n || b < 0 || b >= n) {
      return absl::InvalidArgumentError(absl::StrCat("graph '", name, "': edge #", k, " (", a,
                                                     ", ", b, ") names a node outside [0, ", n,
                                                     ")"));
    }
    if (a == b) {
      return absl::InvalidArgumentError(
          absl::StrCat("graph '", name, "': edge #", k, " (", a, ", ", b, ") is a self loop"));
    }
    adj[a].insert(b);
    adj[b].insert(a);
  }
  std::vector<std::vector<int>> lists(n);
  for (int i = 0; i < n; ++i) lists[i].assign(adj[i].begin(), adj[i].end());
  return FromNeighbourLists(std::move(name), std::move(lists));
}

bool Graph::HasEdge(int i, int j) const {
  const auto& l = neighbours_[i];
  return std::find(l.begin(), l.end(), j) != l.end();
}

int Graph::num_edges() const {
  int twice = 0;
  for (const auto& l : neighbours_) twice += static_cast<int>(l.size());
  return twice / 2;
}

bool Graph::IsRegular() const {
  for (int i = 1; i < size(); ++i)
    if (degree(i) != degree(0)) return false;
  return true;
}

bool Graph::IsConnected() const {
  std::vector<bool> seen(size(), false);
  std::queue<int> q;
  q.push(0);
  seen[0] = true;
  int count = 1;
  while (!q.empty()) {
    const int i = q.front();
    q.pop();
    for (int j : neighbours_[i]) {
      if (!seen[j]) {
        seen[j] = true;
        ++count;
        q.push(j);
      }
    }
  }
  return count == size();
}

namespace {

absl::Status NeedAtLeast(const char* graph, int n, int min) {
  if (n < min) {
    return absl::InvalidArgumentError(
        absl::StrCat(graph, " needs at least ", min, " agents, got ", n));
  }
  return absl::OkStatus();
}

// Circulant graph C_n(offsets): i ~ i ± o mod n, neighbours listed per offset as (+o, -o),
// duplicates dropped (e.g. o = n/2).
absl::StatusOr<Graph> Circulant(std::string name, int n, const std::vector<int>& offsets) {
  std::vector<std::vector<int>> lists(n);
  for (int i = 0; i < n; ++i) {
    for (int o : offsets) {
      for (int j : {(i + o) % n, ((i - o) % n + n) % n}) {
        if (j != i && std::find(lists[i].begin(), lists[i].end(), j) == lists[i].end())
          lists[i].push_back(j);
      }
    }
  }
  return Graph::FromNeighbourLists(std::move(name), std::move(lists));
}

}  // namespace

absl::StatusOr<Graph> MakeRing(int n) {
  if (auto s = NeedAtLeast("ring", n, 3); !s.ok()) return s;
  return Circulant("ring", n, {1});
}

absl::StatusOr<Graph> MakeCirculantTorus(int n) {
  if (auto s = NeedAtLeast("torus (circulant C_n(1,4))", n, 9); !s.ok()) return s;
  return Circulant("torus", n, {1, 4});
}

absl::StatusOr<Graph> MakeTorus2D(int rows, int cols) {
  if (rows < 3 || cols < 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("torus2d needs rows >= 3 and cols >= 3, got rows=", rows, " cols=", cols));
  }
  const int n = rows * cols;
  std::vector<std::vector<int>> lists(n);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      lists[r * cols + c] = {r * cols + (c + 1) % cols, r * cols + (c + cols - 1) % cols,
                             ((r + 1) % rows) * cols + c, ((r + rows - 1) % rows) * cols + c};
    }
  }
  return Graph::FromNeighbourLists("torus2d", std::move(lists));
}

absl::StatusOr<Graph> MakeCodeDyck(int n) {
  if (n != 32) {
    return absl::InvalidArgumentError(absl::StrCat("dyck is defined for 32 agents only, got ", n));
  }
  // Four 8-cycles B_k = {8k..8k+7}; cross edge 8k+i ~ 8 sigma(k) + i with
  // sigma = (0 1)(2 3) for even i and (0 2)(1 3) for odd i. Order: next, previous, cross.
  std::vector<std::vector<int>> lists(32);
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 8; ++i) {
      const int sigma = (i % 2 == 0) ? (k ^ 1) : (k ^ 2);
      lists[8 * k + i] = {8 * k + (i + 1) % 8, 8 * k + (i + 7) % 8, 8 * sigma + i};
    }
  }
  return Graph::FromNeighbourLists("dyck", std::move(lists));
}

absl::StatusOr<Graph> MakePetersen(int n) {
  if (n != 10) {
    return absl::InvalidArgumentError(absl::StrCat("petersen has exactly 10 agents, got ", n));
  }
  std::vector<std::pair<int, int>> edges;
  for (int i = 0; i < 5; ++i) {
    edges.emplace_back(i, (i + 1) % 5);          // outer cycle
    edges.emplace_back(i, i + 5);                // spokes
    edges.emplace_back(5 + i, 5 + (i + 2) % 5);  // inner pentagram
  }
  return Graph::FromEdges("petersen", 10, edges);
}

absl::StatusOr<Graph> MakeFull(int n) {
  if (auto s = NeedAtLeast("full", n, 2); !s.ok()) return s;
  std::vector<std::vector<int>> lists(n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (j != i) lists[i].push_back(j);
  return Graph::FromNeighbourLists("full", std::move(lists));
}

absl::StatusOr<Graph> MakeChain(int n) {
  if (auto s = NeedAtLeast("chain", n, 2); !s.ok()) return s;
  std::vector<std::vector<int>> lists(n);
  for (int i = 0; i < n; ++i) {
    if (i > 0) lists[i].push_back(i - 1);
    if (i + 1 < n) lists[i].push_back(i + 1);
  }
  return Graph::FromNeighbourLists("chain", std::move(lists));
}

absl::StatusOr<Graph> MakeExponential(int n) {
  if (auto s = NeedAtLeast("exponential", n, 2); !s.ok()) return s;
  std::vector<int> offsets;
  for (int o = 1; o < n; o *= 2) offsets.push_back(o);
  return Circulant("exponential", n, offsets);
}

}  // namespace gut::core
