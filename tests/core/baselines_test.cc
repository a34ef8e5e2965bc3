// The baselines of docs/algorithms.md §2 on the heterogeneous quadratic of §7.3: the bias-correcting
// methods (GT, D², momentum tracking, RelaySGD) reach exact consensus at x*, the network-average
// invariants hold round by round, the cross-gradient methods take the neighbourhood-averaged step,
// CGA's QP satisfies its optimality conditions, and each method sends and keeps what §2's table
// says.
#include <cmath>
#include <ostream>
#include <random>

#include "core/algorithm/algorithm.h"
#include "core/algorithm/methods.h"
#include "core/codec/codec.h"
#include "core/config/manifest.h"
#include "core/exchange/in_process_exchange.h"
#include "gtest/gtest.h"
#include "tests/testing/quadratic.h"

namespace gut::testing {
namespace {

core::Hyperparameters H(const std::string& name, double beta, double lr) {
  core::Hyperparameters h;
  h.algorithm = name;
  h.momentum = beta;
  h.lr = lr;
  return h;
}

core::MixingMatrix Ring(int n) {
  return core::MixingMatrix::Build(*core::MakeRing(n), core::WeightRule::kUniform);
}
core::MixingMatrix Chain(int n) {
  return core::MixingMatrix::Build(*core::MakeChain(n), core::WeightRule::kMetropolisHastings);
}

struct Exact {
  std::string label;
  core::Hyperparameters h;
  bool chain;
  int rounds;
};
// gtest prints a parameter into the test's listed name; the label is enough.
void PrintTo(const Exact& e, std::ostream* os) { *os << e.label; }

class ExactConvergence : public ::testing::TestWithParam<Exact> {};

// §7.2.4: with full gradients and a constant step these methods converge to exact consensus at the
// global minimiser x* (acceptance: to 1e-6; they get far closer).
TEST_P(ExactConvergence, ReachesTheMinimiser) {
  const Exact& p = GetParam();
  QuadraticRun run(p.h, p.chain ? Chain(16) : Ring(16));
  run.Rounds(p.rounds, p.h.lr);
  EXPECT_LT(run.Consensus(), 1e-9) << p.label;
  EXPECT_LT(run.DistanceToOptimum(), 1e-9) << p.label;
  for (int i = 0; i < run.n(); ++i) {
    EXPECT_NEAR(run.x(i)[0], QuadraticRun::Optimum(16)[0], 1e-6);
    EXPECT_NEAR(run.x(i)[1], QuadraticRun::Optimum(16)[1], 1e-6);
  }
}

core::Hyperparameters Lazy(core::Hyperparameters h) {
  h.lazy_mixing = true;  // the 16-ring's lambda_min is -1/3: §2.5 mixes with (I + W)/2
  return h;
}

INSTANTIATE_TEST_SUITE_P(
    Baselines, ExactConvergence,
    ::testing::Values(Exact{"gt", H("gt", 0, 0.05), false, 20000},
                      Exact{"d2", Lazy(H("d2", 0, 0.05)), false, 20000},
                      Exact{"mt_beta0", H("mt", 0, 0.05), false, 20000},
                      Exact{"mt_beta09", H("mt", 0.9, 0.01), false, 20000},
                      Exact{"relaysgd", H("relaysgd", 0, 0.05), true, 20000},
                      Exact{"relaysgd_momentum", H("relaysgd", 0.9, 0.01), true, 20000}),
    [](const auto& info) { return info.param.label; });

// The manifest loader decides the lazy mixing from the spectrum: on for the even ring
// (lambda_min = -1/3), off for an odd ring (lambda_min > -1/3).
TEST(D2, ManifestTurnsLazyMixingOnAtTheBoundary) {
  auto parse = [](int n) {
    return core::ParseManifest("algorithm: {name: d2, lr: 0.05}\nagents: {count: " + std::to_string(n) + "}\n",
                               "test", {"data.path=/tmp"});
  };
  auto even = parse(16), odd = parse(15);
  ASSERT_TRUE(even.ok()) << even.status();
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_TRUE(even->hyper.lazy_mixing);
  EXPECT_FALSE(odd->hyper.lazy_mixing);
}

// Gradients of every agent at its own x (GT, MT, D² evaluate there).
std::vector<double> MeanGradientAtX(QuadraticRun& run) {
  std::vector<double> g(2, 0.0);
  for (int i = 0; i < run.n(); ++i)
    for (int k = 0; k < 2; ++k) g[k] += run.oracle(i).a() * (run.x(i)[k] - run.oracle(i).b()[k]) / run.n();
  return g;
}

// §2.4: ȳ^t = ḡ^t, so the average moves by exactly -eta ḡ^t, across step changes too.
TEST(GradientTracking, AverageMovesByAverageGradient) {
  QuadraticRun run(H("gt", 0, 0.05), Ring(16));
  for (int t = 0; t < 60; ++t) {
    const double lr = t < 30 ? 0.05 : 0.01;
    const auto before = run.Mean();
    const auto g = MeanGradientAtX(run);
    run.Round(lr);
    const auto after = run.Mean();
    for (int k = 0; k < 2; ++k) EXPECT_NEAR(after[k], before[k] - lr * g[k], 1e-12) << "t=" << t;
  }
}

// §2.6: the average of c stays 0, so x̄ moves by -eta ū with ū^t = beta ū^{t-1} + ḡ^t.
TEST(MomentumTracking, AverageMovesByAverageMomentum) {
  const double beta = 0.9, lr = 0.01;
  QuadraticRun run(H("mt", beta, lr), Ring(16));
  std::vector<double> u(2, 0.0);
  for (int t = 0; t < 60; ++t) {
    const auto before = run.Mean();
    const auto g = MeanGradientAtX(run);
    for (int k = 0; k < 2; ++k) u[k] = beta * u[k] + g[k];
    run.Round(lr);
    const auto after = run.Mean();
    for (int k = 0; k < 2; ++k) EXPECT_NEAR(after[k], before[k] - lr * u[k], 1e-12) << "t=" << t;
  }
}

// §2.7: the first round, from a common x0: every agent averages the half-steps of itself and its
// tree neighbours (the only values relayed so far).
TEST(RelaySgd, FirstRoundAveragesTheNeighbourhoodsHalfSteps) {
  const double lr = 0.05;
  QuadraticRun run(H("relaysgd", 0, lr), Chain(16));
  run.Round(lr);
  auto half = [&](int j, int k) {
    const auto& o = run.oracle(j);
    const double x0 = k == 0 ? 1.0 : -1.0;
    return x0 - lr * o.a() * (x0 - o.b()[k]);
  };
  for (int i = 0; i < 16; ++i) {
    std::vector<int> nb{i};
    if (i > 0) nb.push_back(i - 1);
    if (i < 15) nb.push_back(i + 1);
    for (int k = 0; k < 2; ++k) {
      double s = 0;
      for (int j : nb) s += half(j, k);
      EXPECT_NEAR(run.x(i)[k], s / nb.size(), 1e-14) << "agent " << i;
    }
  }
}

// The final averaging of RelaySGD relays without a step: after the chain's diameter in rounds the
// counts cover the network and every agent holds the exact average of the models.
TEST(RelaySgd, FinalGossipReachesTheExactAverage) {
  QuadraticRun run(H("relaysgd", 0, 0.05), Chain(16));
  run.Rounds(3, 0.05);
  const auto mean = run.Mean();
  ASSERT_GT(run.Consensus(), 0.1);
  for (int k = 0; k < 15; ++k) run.GossipRound();  // the chain's diameter
  EXPECT_LT(run.Consensus(), 1e-12);
  for (int i = 0; i < 16; ++i) {
    EXPECT_NEAR(run.x(i)[0], mean[0], 1e-12);
    EXPECT_NEAR(run.x(i)[1], mean[1], 1e-12);
  }
}

// The relay counts travel as one value through the codec and are rounded on arrival: under every
// lossy codec the first round still divides by the right count (the models themselves carry the
// codec's error, so the tolerance is the codec's).
TEST(RelaySgd, CountsSurviveLossyCodecs) {
  const core::MixingMatrix w = Chain(16);
  for (core::CodecKind kind : {core::CodecKind::kBf16, core::CodecKind::kInt8, core::CodecKind::kTopK}) {
    core::CodecOptions codec;
    codec.kind = kind;
    codec.topk_fraction = 1.0;  // top-k of everything: only the count matters here
    core::InProcessExchange<double> ex(w, absl::Seconds(5), codec, 3);
    std::vector<std::unique_ptr<core::Algorithm<double>>> algos;
    std::vector<std::unique_ptr<QuadraticOracle>> oracles;
    const std::vector<double> x0{1.0, -1.0};
    for (int i = 0; i < 16; ++i) {
      algos.push_back(*core::CreateAlgorithm<double>(H("relaysgd", 0, 0.05), x0, w.self_weight(i)));
      oracles.push_back(std::make_unique<QuadraticOracle>(i, 16));
    }
    for (int p = 0; p < 2; ++p)
      for (int i = 0; i < 16; ++i) {
        core::RoundContext<double> ctx{0, 0.05, oracles[i].get(), &ex.Endpoint(i), {}};
        ASSERT_TRUE(algos[i]->RunPhase(p, ctx).ok());
      }
    for (int i = 0; i < 16; ++i) {
      std::vector<int> nb{i};
      if (i > 0) nb.push_back(i - 1);
      if (i < 15) nb.push_back(i + 1);
      for (int k = 0; k < 2; ++k) {
        double sum = 0;
        for (int j : nb) sum += x0[k] - 0.05 * oracles[j]->a() * (x0[k] - oracles[j]->b()[k]);
        // A wrong count (0, or one too many) would be off by a third or more.
        EXPECT_NEAR(algos[i]->params()[k], sum / nb.size(), 0.02) << core::CodecName(kind) << " agent " << i;
      }
    }
  }
}

TEST(RelaySgd, ManifestRequiresATree) {
  auto c = core::ParseManifest("algorithm: {name: relaysgd, lr: 0.05}\n", "test", {"data.path=/tmp"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("relaysgd relays over a spanning tree, but topology.graph 'ring' has 16 edges"),
            std::string::npos)
      << c.status();
  EXPECT_NE(c.status().message().find("use topology.graph: chain"), std::string::npos);
  EXPECT_TRUE(core::ParseManifest("algorithm: {name: relaysgd, lr: 0.05}\ntopology: {graph: chain, weights: metropolis}\n",
                                  "test", {"data.path=/tmp"})
                  .ok());
}

// §2.8: from a common x0 the first NGM step is x0 - eta sum_{j in N+(i)} w_ij grad f_j(x0): the
// gradient of the neighbourhood's objective, from the cross-gradients the neighbours sent back.
TEST(CrossGradient, NgmFirstStepUsesTheNeighboursGradients) {
  for (double beta : {0.0, 0.9}) {
    const double lr = 0.05;
    QuadraticRun run(H("ngm", beta, lr), Ring(16));
    run.Round(lr);
    for (int i = 0; i < 16; ++i) {
      for (int k = 0; k < 2; ++k) {
        const double x0 = k == 0 ? 1.0 : -1.0;
        double g = 0;
        for (int j = 0; j < 16; ++j) {
          const double w = run.mixing().Entry(i, j);
          if (w != 0) g += w * run.oracle(j).a() * (x0 - run.oracle(j).b()[k]);
        }
        EXPECT_NEAR(run.x(i)[k], x0 - lr * g, 1e-14) << "beta " << beta << " agent " << i;
      }
    }
    // Cross-gradients: every agent evaluated its gradient at both neighbours' models and its own.
    EXPECT_EQ(run.oracle(0).calls(), 3);
  }
}

// NGM is DSGD on the neighbourhood-averaged gradients with Lin et al.'s quasi-global momentum:
// against a direct dense implementation of §2.8 (uniform weights, changing step).
TEST(CrossGradient, NgmMatchesADenseImplementation) {
  const double beta = 0.9;
  QuadraticRun run(H("ngm", beta, 0.05), Ring(16));
  const int n = 16;
  std::vector<std::vector<double>> x(n, {1.0, -1.0}), xp = x, mh(n, {0.0, 0.0});
  double lr_prev = 0.05;
  for (int t = 0; t < 80; ++t) {
    const double lr = t < 40 ? 0.05 : 0.01;
    auto nx = x;
    for (int i = 0; i < n; ++i) {
      for (int k = 0; k < 2; ++k) {
        double wx = 0, g = 0;
        for (int j = 0; j < n; ++j) {
          const double w = run.mixing().Entry(i, j);
          if (w == 0) continue;
          wx += w * x[j][k];
          g += w * run.oracle(j).a() * (x[i][k] - run.oracle(j).b()[k]);  // grad f_j at x_i
        }
        mh[i][k] = beta * mh[i][k] + (1 - beta) * (xp[i][k] - x[i][k]) / lr_prev;
        nx[i][k] = wx - lr * (beta * mh[i][k] + g);
      }
    }
    xp = x;
    x = nx;
    lr_prev = lr;
    run.Round(lr);
  }
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < 2; ++k) EXPECT_NEAR(run.x(i)[k], x[i][k], 1e-11) << "agent " << i;
}

// CGA's first step from a common x0: per agent, the QP over pi-scaled cross-gradients received
// from the neighbours (grad f_j(x0)) and the own gradient, then x0 - eta (M'v + pi g_i).
TEST(CrossGradient, CgaFirstStepIsTheQpAggregate) {
  const double lr = 0.05;
  QuadraticRun run(H("cga", 0, lr), Ring(16));
  run.Round(lr);
  for (int i = 0; i < 16; ++i) {
    auto grad = [&](int j) {
      const auto& o = run.oracle(j);
      return std::vector<double>{o.a() * (1.0 - o.b()[0]) / 3, o.a() * (-1.0 - o.b()[1]) / 3};
    };
    const auto left = grad((i + 15) % 16), right = grad((i + 1) % 16), self = grad(i);
    // The ring's neighbour order is (i+1, i-1) (core/topology/graph.cc).
    std::vector<double> v, out(2);
    ASSERT_TRUE(core::SolveCgaQp({right.data(), left.data()}, self.data(), 2, &v, out.data()));
    EXPECT_NEAR(run.x(i)[0], 1.0 - lr * out[0], 1e-14) << "agent " << i;
    EXPECT_NEAR(run.x(i)[1], -1.0 - lr * out[1], 1e-14) << "agent " << i;
  }
}

// Both cross-gradient methods stay stable on the quadratic and reach DSGD's neighbourhood of x*.
TEST(CrossGradient, ConvergeOnTheQuadratic) {
  QuadraticRun dsgd(H("dsgd-atc", 0, 0.05), Ring(16));
  dsgd.Rounds(5000, 0.05);
  for (const char* name : {"ngm", "cga"}) {
    QuadraticRun run(H(name, 0.9, 0.01), Ring(16));
    run.Rounds(5000, 0.01);
    EXPECT_LT(run.Consensus(), dsgd.Consensus()) << name;
    EXPECT_LT(run.DistanceToOptimum(), 2 * dsgd.DistanceToOptimum()) << name;
  }
}

// §2.9: the QP's KKT conditions (v >= 0.5; gradient of the objective >= 0, and 0 where v > 0.5)
// and out = M'v + g, on random instances.
TEST(CrossGradient, CgaQpSatisfiesKkt) {
  std::mt19937 rng(7);
  std::normal_distribution<double> nd;
  for (int trial = 0; trial < 200; ++trial) {
    const int deg = 1 + trial % 5;
    const size_t len = 1 + trial % 13;
    std::vector<std::vector<double>> rows(deg, std::vector<double>(len));
    std::vector<double> self(len), out(len);
    for (auto& r : rows)
      for (double& v : r) v = nd(rng);
    for (double& v : self) v = nd(rng) * (trial % 3 == 0 ? 5 : 1);
    std::vector<const double*> ptr;
    for (auto& r : rows) ptr.push_back(r.data());
    std::vector<double> v;
    ASSERT_TRUE(core::SolveCgaQp(ptr, self.data(), len, &v, out.data()));
    ASSERT_EQ(v.size(), static_cast<size_t>(deg));
    for (int k = 0; k < deg; ++k) {
      EXPECT_GE(v[k], 0.5);
      double grad = 1e-12 * v[k];
      for (size_t e = 0; e < len; ++e) {
        double mv = 0;
        for (int l = 0; l < deg; ++l) mv += rows[l][e] * v[l];
        grad += rows[k][e] * (mv + self[e]);
      }
      double scale = 1e-12;
      for (size_t e = 0; e < len; ++e) scale += std::abs(rows[k][e]) * (std::abs(self[e]) + 1);
      EXPECT_GT(grad, -1e-8 * scale) << "trial " << trial;
      if (v[k] > 0.5 + 1e-9) {
        EXPECT_NEAR(grad, 0, 1e-8 * scale) << "trial " << trial;
      }
    }
    for (size_t e = 0; e < len; ++e) {
      double s = self[e];
      for (int k = 0; k < deg; ++k) s += v[k] * rows[k][e];
      EXPECT_NEAR(out[e], s, 1e-12);
    }
  }
}

// A failed QP (non-finite input) keeps the previous solution for that tensor.
TEST(CrossGradient, CgaQpFailureReusesThePreviousSolution) {
  std::vector<double> a{1, 2}, b{NAN, 1}, self{0.5, 0.5}, out(2);
  std::vector<double> v{0.75, 2.0};
  EXPECT_FALSE(core::SolveCgaQp({a.data(), b.data()}, self.data(), 2, &v, out.data()));
  EXPECT_EQ(v, (std::vector<double>{0.75, 2.0}));
}

// CGA counts the QPs it could not solve: none on a well-posed run, some once the iterates overflow
// (a step of 1e300 sends the models, and then the cross-gradients, to inf). Other methods have none.
TEST(CrossGradient, CgaCountsTheQpsItCouldNotSolve) {
  QuadraticRun fine(H("cga", 0, 0.05));
  fine.Rounds(200, 0.05);
  QuadraticRun blown(H("cga", 0, 0.05));
  blown.Rounds(4, 1e300);
  int64_t failed = 0;
  for (int i = 0; i < fine.n(); ++i) {
    EXPECT_EQ(fine.algo(i).solver_fallbacks(), 0) << "agent " << i;
    failed += blown.algo(i).solver_fallbacks();
  }
  EXPECT_GT(failed, 0);
  QuadraticRun gt(H("gt", 0, 0.05));
  gt.Rounds(4, 1e300);
  EXPECT_EQ(gt.algo(0).solver_fallbacks(), 0);
}

// What §2's table says each method sends per neighbour per round (in model-sized vectors of
// 4P bytes, fp32) and keeps between rounds besides x.
TEST(Baselines, SendAndKeepWhatTheTableSays) {
  struct Row {
    core::Hyperparameters h;
    bool chain;
    double messages;  // per neighbour per round
    int buffers;
  };
  const double scalar = 1.0 / 2;  // RelaySGD's count: one value against P = 2
  for (const Row& r : {Row{H("gt", 0, 0.05), false, 2, 2}, Row{Lazy(H("d2", 0, 0.05)), false, 1, 1},
                       Row{H("mt", 0.9, 0.05), false, 2, 2}, Row{H("relaysgd", 0.9, 0.05), true, 1 + scalar, 0},
                       Row{H("ngm", 0.9, 0.05), false, 2, 2}, Row{H("cga", 0.9, 0.05), false, 2, 2},
                       Row{H("ngm", 0, 0.05), false, 2, 0}}) {
    QuadraticRun run(r.h, r.chain ? Chain(16) : Ring(16));
    run.Rounds(10, 0.05);
    const int i = 5;  // degree 2 on both graphs
    const double per_neighbour = run.endpoint(i).bytes_sent() / 10.0 / 2 / (2 * sizeof(float));  // fp32 wire size
    EXPECT_NEAR(per_neighbour, r.messages, 1e-12) << r.h.algorithm;
    // RelaySGD keeps one relay message per tree neighbour (2 here) plus momentum.
    const int expect = r.h.algorithm == "relaysgd" ? 3 : r.buffers;
    EXPECT_EQ(run.algo(i).persistent_buffers(), expect) << r.h.algorithm;
  }
}

TEST(Baselines, HyperparametersTheyDoNotUseAreRefused) {
  auto err = [](core::Hyperparameters h) { return std::string(core::ValidateHyperparameters(h).message()); };
  EXPECT_NE(err(H("gt", 0.9, 0.1)).find("algorithm.momentum: gt has no momentum"), std::string::npos);
  auto h = H("ngm", 0.9, 0.1);
  h.mu = 0.01;
  EXPECT_NE(err(h).find("algorithm.mu: ngm has no mu"), std::string::npos);
  EXPECT_NE(err(H("mt", 1.0, 0.1)).find("algorithm.momentum"), std::string::npos);
  EXPECT_TRUE(core::ValidateHyperparameters(H("cga", 0.9, 0.1)).ok());
}

}  // namespace
}  // namespace gut::testing
