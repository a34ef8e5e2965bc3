// The consensus step of compressed gossip (docs/algorithms.md §8.4): exchange.consensus_step = γ
// makes every method mix with (1 - γ) I + γ W. Checked against an independent replay of DSGD with
// that matrix, and for lossy codecs against the lossless run with the same γ (CHOCO-SGD's claim:
// with error feedback the compressed iteration has the same fixed point).
#include <cmath>
#include <vector>

#include "core/config/exchange_settings.h"
#include "core/config/manifest.h"
#include "core/topology/drop.h"
#include "gtest/gtest.h"
#include "tests/testing/quadratic.h"

namespace gut::core {
namespace {

using testing::QuadraticOracle;
using testing::QuadraticRun;

MixingMatrix RingWithStep(double gamma) {
  RunConfig c;
  c.num_agents = 16;
  c.graph = "ring";
  c.consensus_step = gamma;
  return *BuildMixingMatrix(c);
}

Hyperparameters Method(const std::string& name, double mu = 0) {
  Hyperparameters h;
  h.algorithm = name;
  h.mu = mu;
  return h;
}

// A 4-agent QG-GUTm manifest with the given exchange section.
absl::StatusOr<RunConfig> Parse(const std::string& exchange) {
  return ParseManifest(
      "agents: {count: 4}\ntopology: {graph: ring}\nalgorithm: {name: qg-gutm, lr: 0.1, momentum: 0.9, mu: 0.01}\n"
      "data: {path: " + ::testing::TempDir() + "}\n" + exchange,
      "m.yaml", {});
}

TEST(ConsensusStep, IsTheLazyMixingMatrix) {
  const MixingMatrix w = MixingMatrix::Build(*MakeRing(16), WeightRule::kUniform);
  const MixingMatrix g = RingWithStep(0.3);
  EXPECT_TRUE(g.Validate().ok());
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      EXPECT_NEAR(g.Entry(i, j), (i == j ? 0.7 : 0.0) + 0.3 * w.Entry(i, j), 1e-15) << i << "," << j;
    }
  }
  // gamma = 1 is W itself, bit for bit (the paper's runs do not change).
  const MixingMatrix one = RingWithStep(1.0);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(one.self_weight(i), w.self_weight(i));
    for (int k = 0; k < 2; ++k) EXPECT_EQ(one.weight(i, k), w.weight(i, k));
  }
  // A dropped rank's new weights get the same step.
  auto dropped = MixingWithout(w.graph(), {3}, 0.3);
  ASSERT_TRUE(dropped.ok());
  auto plain = MixingWithout(w.graph(), {3});
  EXPECT_NEAR(dropped->self_weight(4), 0.7 + 0.3 * plain->self_weight(4), 1e-15);
}

// With a lossless codec, DSGD (code form: x <- W_γ x - η ∇f(W_γ x)) through the whole stack equals
// a plain dense replay of that iteration to 1e-9.
TEST(ConsensusStep, LosslessEqualsPlainGossipWithTheLazyMatrix) {
  for (double gamma : {0.3, 0.7}) {
    const int n = 16;
    QuadraticRun run(Method("dsgd"), RingWithStep(gamma));
    const MixingMatrix w = MixingMatrix::Build(*MakeRing(n), WeightRule::kUniform);
    std::vector<std::vector<double>> x(n, {1.0, -1.0});
    std::vector<QuadraticOracle> f;
    for (int i = 0; i < n; ++i) f.emplace_back(i, n);
    const double eta = 0.05;
    for (int t = 0; t < 300; ++t) {
      run.Round(eta);
      std::vector<std::vector<double>> next(n, std::vector<double>(2));
      for (int i = 0; i < n; ++i) {
        for (int k = 0; k < 2; ++k) {
          double z = 0;
          for (int j = 0; j < n; ++j) z += ((i == j ? 1 - gamma : 0.0) + gamma * w.Entry(i, j)) * x[j][k];
          next[i][k] = z - eta * f[i].a() * (z - f[i].b()[k]);
        }
      }
      x = next;
    }
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < 2; ++k) EXPECT_NEAR(run.x(i)[k], x[i][k], 1e-9) << "gamma " << gamma << " agent " << i;
  }
}

// GUT with μ = 1 reaches the exact minimiser for any γ: the step slows consensus, not its limit.
TEST(ConsensusStep, GutMuOneStaysExact) {
  QuadraticRun run(Method("gut", 1.0), RingWithStep(0.3));
  run.Rounds(20000, 0.05);
  EXPECT_LT(run.Consensus(), 1e-9);
  EXPECT_LT(run.DistanceToOptimum(), 1e-9);
}

// With top-k (one of the two coordinates per message) and error feedback, the compressed run
// converges to the point the lossless run with the same γ converges to.
TEST(ConsensusStep, TopKConvergesToTheLosslessPoint) {
  CodecOptions topk;
  topk.kind = CodecKind::kTopK;
  topk.topk_fraction = 0.5;
  for (const auto& [h, eta] : {std::pair{Method("dsgd"), 0.05}, std::pair{Method("gut", 0.5), 0.05},
                               std::pair{Method("gut", 1.0), 0.05}}) {
    QuadraticRun lossless(h, RingWithStep(0.2));
    QuadraticRun compressed(h, RingWithStep(0.2), topk);
    lossless.Rounds(15000, eta);
    compressed.Rounds(15000, eta);
    for (int i = 0; i < 16; ++i)
      for (int k = 0; k < 2; ++k)
        EXPECT_NEAR(compressed.x(i)[k], lossless.x(i)[k], 1e-5) << h.algorithm << " mu " << h.mu << " agent " << i;
    // Every replica the compressed run's neighbours hold of agent i is close to x_i as well.
    EXPECT_LT(compressed.algo(0).replica_error(), 1e-5);
  }
}

// Momentum methods with γ < 1 take the gossip correction directly (docs/algorithms.md §8.4). The
// manifest turns that form on exactly when γ < 1, so γ = 1 runs stay the reference's code path.
TEST(ConsensusStep, DirectFormOnlyBelowOne) {
  auto one = Parse("exchange: {codec: int8}\n");
  auto half = Parse("exchange: {codec: int8, consensus_step: 0.5}\n");
  auto topk = Parse("exchange: {codec: topk, topk_fraction: 0.1}\n");
  ASSERT_TRUE(one.ok() && half.ok() && topk.ok()) << one.status() << half.status() << topk.status();
  EXPECT_FALSE(one->hyper.direct_consensus);
  EXPECT_TRUE(half->hyper.direct_consensus);
  EXPECT_LT(topk->consensus_step, 1);
  EXPECT_TRUE(topk->hyper.direct_consensus) << "top-k's default step is below 1";
}

// exchange.consensus_form overrides the choice either way (the comparison of docs/algorithms.md
// §8.4), survives the coordinator's YAML hand-over, and a misspelt form names the allowed ones.
TEST(ConsensusStep, FormCanBeChosen) {
  auto reference = Parse("exchange: {codec: topk, consensus_step: 0.1, consensus_form: reference}\n");
  auto direct = Parse("exchange: {codec: fp32, consensus_form: direct}\n");
  ASSERT_TRUE(reference.ok() && direct.ok()) << reference.status() << direct.status();
  EXPECT_FALSE(reference->hyper.direct_consensus);
  EXPECT_TRUE(direct->hyper.direct_consensus);
  auto handed_over = ParseManifest(ToYaml(*reference), "coordinator", {});
  ASSERT_TRUE(handed_over.ok()) << handed_over.status();
  EXPECT_FALSE(handed_over->hyper.direct_consensus);
  // At its default the key is not handed over, so older agents still read the manifest.
  auto plain = Parse("exchange: {codec: int8}\n");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(ToYaml(*plain).find("consensus_form"), std::string::npos);
  EXPECT_NE(ToYaml(*reference).find("consensus_form: reference"), std::string::npos);
  auto bad = Parse("exchange: {consensus_form: momentum}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("exchange.consensus_form must be auto, direct or reference, got 'momentum'"),
            std::string::npos)
      << bad.status();
}

// In the direct form the compressed run (top-k, error feedback) still converges to the lossless
// run's point, with momentum and with GUT's tracking.
TEST(ConsensusStep, DirectFormKeepsTheLosslessPoint) {
  CodecOptions topk;
  topk.kind = CodecKind::kTopK;
  topk.topk_fraction = 0.5;
  for (const auto& [name, beta, mu] : {std::tuple{"qg-dsgdm", 0.9, 0.0}, std::tuple{"qg-gutm", 0.5, 0.4}}) {
    Hyperparameters h = Method(name, mu);
    h.momentum = beta;
    h.direct_consensus = true;
    QuadraticRun lossless(h, RingWithStep(0.3));
    QuadraticRun compressed(h, RingWithStep(0.3), topk);
    lossless.Rounds(20000, 0.02);
    compressed.Rounds(20000, 0.02);
    for (int i = 0; i < 16; ++i)
      for (int k = 0; k < 2; ++k) EXPECT_NEAR(compressed.x(i)[k], lossless.x(i)[k], 1e-5) << name << " agent " << i;
  }
}

// A step above what a codec was measured to survive is warned about, naming the codec and γ; a
// divergence under a lossy codec blames the compression, not the learning rate.
TEST(ConsensusStep, RiskyStepsAreWarnedAboutAndDivergenceBlamesTheCodec) {
  auto risky = Parse("exchange: {codec: topk, topk_fraction: 0.1, consensus_step: 1}\n");
  auto fine = Parse("exchange: {codec: topk, topk_fraction: 0.1}\n");
  ASSERT_TRUE(risky.ok() && fine.ok());
  EXPECT_EQ(fine->consensus_step, DefaultConsensusStep(fine->codec));
  EXPECT_TRUE(ExchangeWarnings(*fine).empty());
  const auto warnings = ExchangeWarnings(*risky);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("exchange.consensus_step 1 with exchange.codec topk 0.1"), std::string::npos) << warnings[0];
  const std::string advice = DivergenceAdvice(*risky);
  EXPECT_NE(advice.find("compression is the likely cause"), std::string::npos) << advice;
  EXPECT_NE(advice.find("lower exchange.consensus_step (0.2"), std::string::npos) << advice;
  EXPECT_EQ(advice.find("lower algorithm.lr"), std::string::npos) << advice;
}

// Codecs that diverged at every step tried over the 100-epoch protocol (top-k 1 %, int2) are
// warned about at their default step too, and a divergence points to a denser codec rather than
// to another step.
TEST(ConsensusStep, CodecsThatDivergedInEveryLongRunAreWarnedAbout) {
  for (const char* exchange : {"exchange: {codec: topk, topk_fraction: 0.01}\n", "exchange: {codec: int2}\n"}) {
    auto c = Parse(exchange);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->consensus_step, DefaultConsensusStep(c->codec)) << exchange;
    const auto warnings = ExchangeWarnings(*c);
    ASSERT_EQ(warnings.size(), 1u) << exchange;
    EXPECT_NE(warnings[0].find("diverged in every long run measured"), std::string::npos) << warnings[0];
    EXPECT_NE(warnings[0].find(c->codec.kind == CodecKind::kTopK ? "exchange.codec topk 0.01" : "exchange.codec int2"),
              std::string::npos)
        << warnings[0];
    const std::string advice = DivergenceAdvice(*c);
    EXPECT_NE(advice.find("use a denser codec"), std::string::npos) << advice;
    EXPECT_EQ(advice.find("lower exchange.consensus_step"), std::string::npos) << advice;
  }
}

// A sparse codec is warned about for the methods that gossip whole vectors (no error feedback),
// not for those built on ReplicaGossip.
TEST(ConsensusStep, SparseCodecsAreWarnedAboutOnlyWithoutErrorFeedback) {
  const std::string base = "agents: {count: 4}\ntopology: {graph: ring}\ndata: {path: " + ::testing::TempDir() +
                           "}\nexchange: {codec: topk, topk_fraction: 0.1}\n";
  auto gt = ParseManifest(base + "algorithm: {name: gt, lr: 0.1}\n", "m.yaml", {});
  ASSERT_TRUE(gt.ok()) << gt.status();
  const auto warnings = ExchangeWarnings(*gt);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("exchange.codec topk with algorithm.name gt: this method gossips whole vectors"),
            std::string::npos)
      << warnings[0];
  for (const char* a : {"dsgd", "dsgdm", "qg-dsgdm-lin"}) {
    auto c = ParseManifest(base + "algorithm: {name: " + a + ", lr: 0.1, momentum: 0.5}\n", "m.yaml", {});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(ExchangeWarnings(*c).empty()) << a;
  }
}

}  // namespace
}  // namespace gut::core
