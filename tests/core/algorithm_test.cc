// The GUT family and baselines against docs/algorithms.md §7: reference traces and long-run values of
// the heterogeneous quadratic (§7.3), the tracking invariant, reductions, the first iteration,
// stability and the final gossip rounds (§7.2). Everything runs through the same Algorithm code
// as training, in double precision.
#include <array>
#include <cmath>
#include <ostream>
#include <vector>

#include "core/algorithm/algorithm.h"
#include "core/algorithm/methods.h"
#include "gtest/gtest.h"
#include "tests/testing/quadratic.h"

namespace gut::testing {
namespace {

core::Hyperparameters H(const std::string& name, double mu, double beta, double lr) {
  core::Hyperparameters h;
  h.algorithm = name;
  h.mu = mu;
  h.momentum = beta;
  h.lr = lr;
  return h;
}

void ExpectPoint(absl::Span<const double> x, double a, double b, double tol = 1e-9) {
  EXPECT_NEAR(x[0], a, tol);
  EXPECT_NEAR(x[1], b, tol);
}

// A reference trace (docs/algorithms.md §7.3): steps of `rounds` rounds at learning rate `lr`, after
// each of which the listed agents stand at the listed points (agent, x[0], x[1]).
struct TraceStep {
  int rounds;
  double lr;
  std::vector<std::array<double, 3>> points;
};
struct Trace {
  std::string label, name;
  double mu, beta, lr;
  std::vector<TraceStep> steps;
};
void PrintTo(const Trace& t, std::ostream* os) { *os << t.label; }

class GutTraces : public ::testing::TestWithParam<Trace> {};

TEST_P(GutTraces, MatchesReference) {
  const Trace& t = GetParam();
  QuadraticRun run(H(t.name, t.mu, t.beta, t.lr));
  for (size_t k = 0; k < t.steps.size(); ++k) {
    run.Rounds(t.steps[k].rounds, t.steps[k].lr);
    for (const auto& [agent, a, b] : t.steps[k].points) {
      SCOPED_TRACE(::testing::Message() << "step " << k << ", agent " << agent);
      ExpectPoint(run.x(static_cast<int>(agent)), a, b);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Reference, GutTraces,
    ::testing::Values(
        // GUT mu 0.9, eta 0.05: agents 0 and 5 after rounds 1, 2 and 3.
        Trace{"GutMu09", "gut", 0.9, 0, 0.05,
              {{1, 0.05, {{0, 1.2, -0.95}, {5, 0.7086582838, -0.4380602337}}},
               {1, 0.05, {{0, 1.4223285698, -0.8575848188}, {5, 0.6149947815, -0.2005761464}}},
               {1, 0.05, {{0, 1.6356683101, -0.7839289956}, {5, 0.4172111061, 0.0865858849}}}}},
        // QG-GUTm mu 0.06, beta 0.9, eta 0.01: the same three rounds.
        Trace{"QgGutm", "qg-gutm", 0.06, 0.9, 0.01,
              {{1, 0.01, {{0, 1.04, -0.99}, {5, 0.9417316568, -0.8876120467}}},
               {1, 0.01, {{0, 1.1192697295, -0.9660015200}, {5, 0.8516633719, -0.7073218247}}},
               {1, 0.01, {{0, 1.2397885286, -0.9239606897}, {5, 0.7470356980, -0.4950918931}}}}},
        // The learning-rate lag: five rounds at 0.05, then two at 0.005 (the tracker uses the
        // previous round's rate).
        Trace{"LearningRateLag", "gut", 0.9, 0, 0.05,
              {{5, 0.05, {{0, 1.8316033073, -0.6766872229}}},
               {1, 0.005, {{0, 1.8298931438, -0.6727542222}}},
               {1, 0.005, {{0, 1.7034020982, -0.6784911487}}}}}),
    [](const auto& info) { return info.param.label; });

struct LongRun {
  std::string name;
  double mu, beta, lr, consensus, distance;
  bool exact;  // converges to exact consensus at x*
};
void PrintTo(const LongRun& r, std::ostream* os) { *os << r.name << " mu=" << r.mu << " beta=" << r.beta; }

class LongRunTest : public ::testing::TestWithParam<LongRun> {};

TEST_P(LongRunTest, MatchesReferenceAfter20000Iterations) {
  const LongRun& p = GetParam();
  QuadraticRun run(H(p.name, p.mu, p.beta, p.lr));
  run.Rounds(20000, p.lr);
  if (p.exact) {
    EXPECT_LT(run.Consensus(), 1e-12);
    EXPECT_LT(run.DistanceToOptimum(), 1e-10);
  } else {
    EXPECT_NEAR(run.Consensus(), p.consensus, 1e-6 * p.consensus);
    EXPECT_NEAR(run.DistanceToOptimum(), p.distance, 1e-6 * p.distance);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Reference, LongRunTest,
    ::testing::Values(LongRun{"dsgd", 0, 0, 0.05, 3.046103e+00, 6.106321e-02, false},
                      LongRun{"gut", 0.5, 0, 0.05, 2.143507e+00, 4.271014e-02, false},
                      LongRun{"gut", 0.9, 0, 0.05, 6.360608e-01, 1.256152e-02, false},
                      LongRun{"gut", 1.0, 0, 0.05, 0, 0, true},
                      LongRun{"qg-dsgdm", 0, 0.9, 0.01, 1.134866e+00, 2.247619e-02, false},
                      LongRun{"qg-gutm", 0.06, 0.9, 0.01, 1.036305e+00, 2.051253e-02, false},
                      LongRun{"qg-dsgdm-lin", 0, 0.9, 0.01, 1.077117e+00, 2.247619e-02, false},
                      LongRun{"dsgd-atc", 0, 0, 0.05, 2.891124e+00, 6.106321e-02, false}),
    [](const auto& info) {
      std::string s = info.param.name + "_mu" + std::to_string(int(info.param.mu * 100));
      for (char& c : s)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return s;
    });

// §7.3 cross-checks: DSGD's fixed point with the effective step eta (1 - mu) / (1 + mu beta).
TEST(GutFixedPoint, MatchesDsgdWithEffectiveStep) {
  QuadraticRun dsgd(H("dsgd", 0, 0, 0.005));
  dsgd.Rounds(20000, 0.005);
  EXPECT_NEAR(dsgd.Consensus(), 6.360608e-01, 1e-6);
  QuadraticRun dsgd2(H("dsgd", 0, 0, 0.025));
  dsgd2.Rounds(20000, 0.025);
  EXPECT_NEAR(dsgd2.Consensus(), 2.143507e+00, 2e-6);
}

// §7.2.1: with beta = 0 the network average of y equals the average gradient, so
// x̄^{t+1} = x̄^t - eta ḡ^t at every iteration, across learning-rate changes too.
TEST(GutInvariant, AverageMovesByAverageGradient) {
  QuadraticRun run(H("gut", 0.7, 0, 0.05));
  for (int t = 0; t < 60; ++t) {
    const double lr = t < 20 ? 0.05 : (t < 40 ? 0.005 : 0.02);
    const auto before = run.Mean();
    // The gradient of round t is taken at z_i = (W x)_i; compute it independently.
    std::vector<double> gbar(2, 0.0);
    for (int i = 0; i < run.n(); ++i) {
      double z[2] = {0, 0};
      for (int j = 0; j < run.n(); ++j) {
        const double w = run.mixing().Entry(i, j);
        for (int k = 0; k < 2; ++k) z[k] += w * run.x(j)[k];
      }
      for (int k = 0; k < 2; ++k) gbar[k] += run.oracle(i).a() * (z[k] - run.oracle(i).b()[k]) / run.n();
    }
    run.Round(lr);
    const auto after = run.Mean();
    for (int k = 0; k < 2; ++k) EXPECT_NEAR(after[k], before[k] - lr * gbar[k], 1e-12) << "t=" << t;
  }
}

// §7.2.1 with momentum: m̄^t = (beta + mu) m̄^{t-1} + ḡ^t - mu ḡ^{t-1}, m̄^0 = ḡ^0, where
// m̄^t = (x̄^t - x̄^{t+1}) / eta.
TEST(GutInvariant, MomentumAverageRecursion) {
  const double beta = 0.9, mu = 0.06, lr = 0.01;
  QuadraticRun run(H("qg-gutm", mu, beta, lr));
  std::vector<double> m_prev(2, 0.0), g_prev(2, 0.0);
  for (int t = 0; t < 50; ++t) {
    const auto before = run.Mean();
    std::vector<double> gbar(2, 0.0);
    for (int i = 0; i < run.n(); ++i) {
      double z[2] = {0, 0};
      for (int j = 0; j < run.n(); ++j)
        for (int k = 0; k < 2; ++k) z[k] += run.mixing().Entry(i, j) * run.x(j)[k];
      for (int k = 0; k < 2; ++k) gbar[k] += run.oracle(i).a() * (z[k] - run.oracle(i).b()[k]) / run.n();
    }
    run.Round(lr);
    const auto after = run.Mean();
    for (int k = 0; k < 2; ++k) {
      const double m = (before[k] - after[k]) / lr;
      const double expect = t == 0 ? gbar[k] : (beta + mu) * m_prev[k] + gbar[k] - mu * g_prev[k];
      EXPECT_NEAR(m, expect, 1e-9) << "t=" << t;
      m_prev[k] = m;
      g_prev[k] = gbar[k];
    }
  }
}

// §7.2.2: mu = 0 turns GUT into the reference code's DSGD / QG-DSGDm bit for bit.
TEST(GutReduction, MuZeroIsDsgdBitForBit) {
  for (double beta : {0.0, 0.9}) {
    QuadraticRun tracked(H("gut", 0, beta, 0.05), 16, /*force_tracking=*/true);
    QuadraticRun plain(H(beta == 0 ? "dsgd" : "qg-dsgdm", 0, beta, 0.05));
    for (int t = 0; t < 200; ++t) {
      const double lr = t < 100 ? 0.05 : 0.005;
      tracked.Round(lr);
      plain.Round(lr);
    }
    for (int i = 0; i < 16; ++i)
      for (int k = 0; k < 2; ++k) EXPECT_EQ(tracked.x(i)[k], plain.x(i)[k]) << "beta " << beta;
  }
}

// §1.4 (d): DSGD as the code runs it is x <- Wx - eta grad F(Wx); checked against a direct
// dense implementation.
TEST(GutReduction, DsgdIsCombineThenStep) {
  const double lr = 0.05;
  QuadraticRun run(H("dsgd", 0, 0, lr));
  std::vector<std::vector<double>> x(16, std::vector<double>{1.0, -1.0});
  for (int t = 0; t < 50; ++t) {
    std::vector<std::vector<double>> nx(16, std::vector<double>(2, 0.0));
    for (int i = 0; i < 16; ++i) {
      double z[2] = {0, 0};
      for (int j = 0; j < 16; ++j)
        for (int k = 0; k < 2; ++k) z[k] += run.mixing().Entry(i, j) * x[j][k];
      for (int k = 0; k < 2; ++k) nx[i][k] = z[k] - lr * run.oracle(i).a() * (z[k] - run.oracle(i).b()[k]);
    }
    x = nx;
    run.Round(lr);
  }
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 2; ++k) EXPECT_NEAR(run.x(i)[k], x[i][k], 1e-12);
}

// §7.2.3: from a common x0 every variant's first step is x0 - eta grad F_i(x0).
TEST(GutFirstIteration, IsLocalGradientStep) {
  for (auto h : {H("dsgd", 0, 0, 0.05), H("gut", 0.9, 0, 0.05), H("qg-gutm", 0.06, 0.9, 0.05),
                 H("qg-dsgdm", 0, 0.9, 0.05)}) {
    QuadraticRun run(h);
    run.Round(0.05);
    for (int i = 0; i < 16; ++i) {
      const auto& o = run.oracle(i);
      ExpectPoint(run.x(i), 1 - 0.05 * o.a() * (1 - o.b()[0]), -1 - 0.05 * o.a() * (-1 - o.b()[1]), 1e-14);
    }
  }
}

// §7.2.5 and §1.4 (g): QG-GUTm needs beta + mu < 1.
TEST(GutStability, DivergesWhenBetaPlusMuExceedsOne) {
  // Built directly: the registry refuses mu + beta >= 1.
  auto make = [](double mu) {
    std::vector<std::unique_ptr<core::Algorithm<double>>> a;
    const std::vector<double> x0{1.0, -1.0};
    for (int i = 0; i < 16; ++i) a.push_back(core::MakeGutFamily<double>({"qg-gutm", 0.9, mu}, x0, 1.0 / 3));
    return a;
  };
  QuadraticRun stable(make(0.099));
  QuadraticRun unstable(make(0.15));
  stable.Rounds(5000, 0.01);
  unstable.Rounds(5000, 0.01);
  EXPECT_LT(stable.DistanceToOptimum(), 1.0);
  EXPECT_TRUE(!(unstable.DistanceToOptimum() < 1e6)) << unstable.DistanceToOptimum();
}

// §7.2.6: K rounds of x <- Wx shrink the consensus distance by at most max|lambda|^K and leave x̄.
TEST(FinalGossip, ShrinksConsensusAndKeepsAverage) {
  QuadraticRun run(H("qg-gutm", 0.01, 0.9, 0.05));
  run.Rounds(300, 0.05);
  const auto mean = run.Mean();
  const double c0 = run.Consensus();
  ASSERT_GT(c0, 1e-3);
  const double lambda = run.mixing().ComputeSpectrum().eigenvalues[1];
  for (int k = 1; k <= 51; ++k) {
    run.GossipRound();
    EXPECT_LE(run.Consensus(), c0 * std::pow(std::max(lambda, 1.0 / 3), k) * (1 + 1e-9));
  }
  const auto after = run.Mean();
  EXPECT_NEAR(after[0], mean[0], 1e-12);
  EXPECT_NEAR(after[1], mean[1], 1e-12);
}

TEST(Memory, GutAddsOneBufferOverItsDsgdCounterpart) {
  const std::vector<double> x0(10, 0.0);
  auto count = [&](const core::Hyperparameters& h) {
    return (*core::CreateAlgorithm<double>(h, x0, 1.0 / 3))->persistent_buffers();
  };
  EXPECT_EQ(count(H("dsgd", 0, 0, 0.1)), 2);
  EXPECT_EQ(count(H("gut", 0.9, 0, 0.1)), 3);
  EXPECT_EQ(count(H("qg-dsgdm", 0, 0.9, 0.1)), 3);
  EXPECT_EQ(count(H("qg-gutm", 0.01, 0.9, 0.1)), 4);
}

TEST(Hyperparameters, RejectsBadValuesNamingTheField) {
  auto err = [](const core::Hyperparameters& h) {
    return std::string(core::ValidateHyperparameters(h).message());
  };
  EXPECT_NE(err(H("adam", 0, 0, 0.1)).find("algorithm.name: unknown algorithm 'adam'; allowed: dsgd"), std::string::npos);
  EXPECT_NE(err(H("qg-gutm", 0.1, 0.9, 0.1)).find("algorithm.mu: qg-gutm needs mu + momentum < 1"), std::string::npos);
  EXPECT_NE(err(H("gut", 1.5, 0, 0.1)).find("algorithm.mu: gut needs 0 < mu <= 1"), std::string::npos);
  EXPECT_NE(err(H("qg-dsgdm", 0, 1.0, 0.1)).find("algorithm.momentum"), std::string::npos);
  EXPECT_NE(err(H("dsgd", 0, 0, -1)).find("algorithm.lr must be a positive number"), std::string::npos);
  EXPECT_TRUE(core::ValidateHyperparameters(H("qg-gutm", 0.01, 0.9, 0.1)).ok());
}

}  // namespace
}  // namespace gut::testing
