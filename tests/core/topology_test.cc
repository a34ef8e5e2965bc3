#include <cmath>

#include "core/topology/graph.h"
#include "core/topology/mixing.h"
#include "gtest/gtest.h"

namespace gut::core {
namespace {

Spectrum SpectrumOf(const absl::StatusOr<Graph>& g, WeightRule rule = WeightRule::kUniform) {
  EXPECT_TRUE(g.ok()) << g.status();
  MixingMatrix w = MixingMatrix::Build(*g, rule);
  EXPECT_TRUE(w.Validate().ok()) << w.Validate();
  return w.ComputeSpectrum();
}

TEST(Topology, RingSpectraMatchTable) {
  const std::vector<std::pair<int, double>> rows = {
      {8, 0.804738}, {16, 0.949253}, {24, 0.977284}, {32, 0.987190}, {40, 0.991792}};
  for (const auto& [n, l2] : rows) {
    Spectrum s = SpectrumOf(MakeRing(n));
    EXPECT_NEAR(s.lambda2, l2, 1e-6) << n;
    EXPECT_NEAR(s.lambda_min, -1.0 / 3, 1e-6) << n;
    EXPECT_NEAR(s.rho, 1 - l2, 1e-6);
    // Closed form: 1/3 + 2/3 cos(2 pi k / n).
    EXPECT_NEAR(s.lambda2, 1.0 / 3 + 2.0 / 3 * std::cos(2 * M_PI / n), 1e-12);
  }
  EXPECT_NEAR(SpectrumOf(MakeRing(16)).p, 0.098919, 1e-6);
}

TEST(Topology, CirculantTorusDyckFullPetersen) {
  Spectrum t = SpectrumOf(MakeCirculantTorus(32));
  EXPECT_NEAR(t.lambda2, 0.875157, 1e-6);
  EXPECT_NEAR(t.lambda_min, -0.482843, 1e-6);
  EXPECT_NEAR(t.p, 0.234101, 1e-6);
  Spectrum d = SpectrumOf(MakeCodeDyck(32));
  EXPECT_NEAR(d.lambda2, 0.853553, 1e-6);
  EXPECT_NEAR(d.lambda_min, -0.5, 1e-6);
  EXPECT_NEAR(d.rho, 0.146447, 1e-6);
  Spectrum f = SpectrumOf(MakeFull(16));
  EXPECT_NEAR(f.lambda2, 0, 1e-9);
  EXPECT_NEAR(f.lambda_min, 0, 1e-9);
  EXPECT_NEAR(f.rho, 1, 1e-9);
  Spectrum p = SpectrumOf(MakePetersen(10));
  EXPECT_NEAR(p.lambda2, 0.5, 1e-9);
  EXPECT_NEAR(p.lambda_min, -0.25, 1e-9);
  // The product torus C_8 x C_4 is a different graph from the circulant.
  EXPECT_NEAR(SpectrumOf(MakeTorus2D(8, 4)).lambda2, 0.882843, 1e-6);
}

TEST(Topology, CodeDyckStructure) {
  auto g = MakeCodeDyck(32);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->num_edges(), 48);
  EXPECT_TRUE(g->IsRegular());
  EXPECT_EQ(g->degree(0), 3);
  // Explicit cross edges of docs/algorithms.md §3.
  for (auto [a, b] : std::vector<std::pair<int, int>>{{0, 8}, {2, 10}, {1, 17}, {7, 23}, {9, 25}, {15, 31}, {16, 24}, {22, 30}})
    EXPECT_TRUE(g->HasEdge(a, b)) << a << "-" << b;
  // Bipartite: 2-colour by BFS.
  std::vector<int> colour(32, -1);
  colour[0] = 0;
  std::vector<int> q{0};
  for (size_t h = 0; h < q.size(); ++h)
    for (int j : g->neighbours(q[h])) {
      if (colour[j] < 0) {
        colour[j] = 1 - colour[q[h]];
        q.push_back(j);
      }
      EXPECT_NE(colour[j], colour[q[h]]);
    }
  // Neighbour order: next in cycle, previous in cycle, cross.
  EXPECT_EQ(g->neighbours(0), (std::vector<int>{1, 7, 8}));
}

TEST(Topology, MixingMatricesAreSymmetricDoublyStochastic) {
  for (auto g : {MakeRing(16), MakeCirculantTorus(32), MakeCodeDyck(32), MakeFull(5), MakeExponential(16), MakeTorus2D(4, 5)}) {
    ASSERT_TRUE(g.ok());
    auto w = MixingMatrix::Build(*g, WeightRule::kUniform).Dense();
    for (size_t i = 0; i < w.size(); ++i) {
      double row = 0, col = 0;
      for (size_t j = 0; j < w.size(); ++j) {
        row += w[i][j];
        col += w[j][i];
        EXPECT_EQ(w[i][j], w[j][i]);
      }
      EXPECT_NEAR(row, 1, 1e-12);
      EXPECT_NEAR(col, 1, 1e-12);
    }
  }
}

TEST(Topology, IrregularGraphNeedsMetropolis) {
  auto chain = MakeChain(5);
  ASSERT_TRUE(chain.ok());
  absl::Status s = MixingMatrix::Build(*chain, WeightRule::kUniform).Validate();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not symmetric: w[0][1] = 0.5 but w[1][0] = 0.333333 (node 0 has degree 1, node 1 has degree 2"), std::string::npos) << s;
  EXPECT_NE(s.message().find("weights: metropolis"), std::string::npos) << s;
  EXPECT_TRUE(MixingMatrix::Build(*chain, WeightRule::kMetropolisHastings).Validate().ok());
  EXPECT_NEAR(MixingMatrix::Build(*chain, WeightRule::kMetropolisHastings).Entry(0, 0), 2.0 / 3, 1e-12);
}

TEST(Topology, ErrorsNameTheNodeOrEdge) {
  auto g = Graph::FromEdges("edges", 4, {{0, 1}, {2, 3}});
  ASSERT_TRUE(g.ok());
  absl::Status s = MixingMatrix::Build(*g, WeightRule::kMetropolisHastings).Validate();
  EXPECT_NE(s.message().find("not connected: node 2 cannot be reached from node 0"), std::string::npos) << s;
  EXPECT_NE(Graph::FromEdges("edges", 4, {{0, 5}}).status().message().find("edge #0 (0, 5) names a node outside [0, 4)"), std::string::npos);
  EXPECT_NE(Graph::FromEdges("edges", 4, {{1, 1}}).status().message().find("self loop"), std::string::npos);
  EXPECT_NE(Graph::FromNeighbourLists("x", {{1}, {}}).status().message().find("not symmetric: edge 0->1"), std::string::npos);
  EXPECT_NE(MakeCodeDyck(16).status().message().find("32 agents only"), std::string::npos);
  EXPECT_NE(MakeRing(2).status().message().find("at least 3"), std::string::npos);
}

}  // namespace
}  // namespace gut::core
