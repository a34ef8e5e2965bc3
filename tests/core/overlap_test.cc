// exchange.overlap (docs/algorithms.md §12): the gradient is taken before the round's messages are
// received, so that they travel while it is computed. Checked here on the heterogeneous quadratic
// (§7.3), in double: the order of the calls, the round's exact algebra against a dense
// implementation, convergence next to the lock-step methods, and the manifest key.
#include <memory>
#include <string>
#include <vector>

#include "core/algorithm/algorithm.h"
#include "core/config/exchange_settings.h"
#include "core/config/manifest.h"
#include "gtest/gtest.h"
#include "tests/testing/quadratic.h"

namespace gut::testing {
namespace {

core::Hyperparameters H(const std::string& name, double mu, double beta, double lr, bool overlap) {
  core::Hyperparameters h;
  h.algorithm = name;
  h.mu = mu;
  h.momentum = beta;
  h.lr = lr;
  h.overlap = overlap;
  return h;
}

// A neighbourhood and an oracle that write what is called, in order, into one log.
class Recorder final : public core::Neighbourhood<double>, public core::GradientOracle<double> {
 public:
  Recorder(core::Neighbourhood<double>* inner, QuadraticOracle* oracle, std::string* log)
      : inner_(inner), oracle_(oracle), log_(log) {}
  int rank() const override { return inner_->rank(); }
  double self_weight() const override { return inner_->self_weight(); }
  const std::vector<core::NeighbourInfo>& neighbours() const override { return inner_->neighbours(); }
  absl::Status Broadcast(int64_t round, int slot, absl::Span<double> m) override {
    *log_ += "send ";
    return inner_->Broadcast(round, slot, m);
  }
  absl::Status SendTo(int64_t round, int slot, int j, absl::Span<double> m) override {
    *log_ += "send ";
    return inner_->SendTo(round, slot, j, m);
  }
  absl::Status ReceiveWeightedSum(int64_t round, int slot, absl::Span<double> out) override {
    *log_ += "receive ";
    return inner_->ReceiveWeightedSum(round, slot, out);
  }
  absl::Status ReceiveEach(int64_t round, int slot,
                           const std::function<void(int, absl::Span<const double>)>& fn) override {
    *log_ += "receive ";
    return inner_->ReceiveEach(round, slot, fn);
  }
  int64_t bytes_sent() const override { return inner_->bytes_sent(); }
  int64_t bytes_received() const override { return inner_->bytes_received(); }
  int64_t raw_bytes_sent() const override { return inner_->raw_bytes_sent(); }
  absl::Span<double> point() override { return oracle_->point(); }
  absl::Status ComputeGradient() override {
    *log_ += "gradient ";
    return oracle_->ComputeGradient();
  }
  absl::Span<const double> gradient() const override { return oracle_->gradient(); }

 private:
  core::Neighbourhood<double>* inner_;
  QuadraticOracle* oracle_;
  std::string* log_;
};

// The calls agent 0 makes in one round, phase by phase ("|" between phases).
std::string CallOrder(const core::Hyperparameters& h) {
  const auto w = core::MixingMatrix::Build(*core::MakeRing(4), core::WeightRule::kUniform);
  core::InProcessExchange<double> ex(w);
  std::vector<std::unique_ptr<QuadraticOracle>> oracles;
  std::vector<std::unique_ptr<core::Algorithm<double>>> algos;
  std::vector<std::string> logs(4);
  std::vector<std::unique_ptr<Recorder>> rec;
  for (int i = 0; i < 4; ++i) {
    oracles.push_back(std::make_unique<QuadraticOracle>(i, 4));
    rec.push_back(std::make_unique<Recorder>(&ex.Endpoint(i), oracles[i].get(), &logs[i]));
    algos.push_back(*core::CreateAlgorithm<double>(h, std::vector<double>{1, -1}, w.self_weight(i)));
  }
  for (int p = 0; p < algos[0]->phases(); ++p) {
    for (int i = 0; i < 4; ++i) {
      core::RoundContext<double> ctx{0, h.lr, rec[i].get(), rec[i].get(), {}};
      EXPECT_TRUE(algos[i]->RunPhase(p, ctx).ok());
      if (p + 1 < algos[0]->phases()) logs[i] += "| ";
    }
  }
  return logs[0];
}

TEST(Overlap, TheGradientRunsBeforeTheRoundsMessagesAreReceived) {
  for (const char* a : {"dsgd", "qg-dsgdm", "gut", "qg-gutm"}) {
    SCOPED_TRACE(a);
    const double mu = std::string(a).find("gut") != std::string::npos ? 0.01 : 0;
    const double beta = std::string(a).find("qg") != std::string::npos ? 0.9 : 0;
    EXPECT_EQ(CallOrder(H(a, mu, beta, 0.05, false)), "send | receive gradient ");
    EXPECT_EQ(CallOrder(H(a, mu, beta, 0.05, true)), "send gradient | receive ");
  }
  for (const char* a : {"dsgd-atc", "dsgdm", "qg-dsgdm-lin"}) {
    SCOPED_TRACE(a);
    const double beta = std::string(a) == "dsgd-atc" ? 0 : 0.9;
    EXPECT_EQ(CallOrder(H(a, 0, beta, 0.05, false)), "gradient send | receive ");
    EXPECT_EQ(CallOrder(H(a, 0, beta, 0.05, true)), "send gradient | receive ");
  }
}

// With overlap, DSGD in either form is x <- W x - eta grad f(x) (Lian et al.'s D-PSGD): the
// gradient at the agent's own model, the combine on the copies sent before the step.
TEST(Overlap, DsgdIsCombineAtTheOwnModelMinusTheGradientThere) {
  for (const char* a : {"dsgd", "dsgd-atc"}) {
    SCOPED_TRACE(a);
    const double lr = 0.05;
    QuadraticRun run(H(a, 0, 0, lr, true));
    const int n = run.n();
    std::vector<std::vector<double>> x(n, std::vector<double>{1, -1});
    for (int round = 0; round < 30; ++round) {
      std::vector<std::vector<double>> next(n, std::vector<double>(2, 0.0));
      for (int i = 0; i < n; ++i) {
        const auto& nb = run.mixing().graph().neighbours(i);
        for (int k = 0; k < 2; ++k) next[i][k] = run.mixing().self_weight(i) * x[i][k];
        for (size_t j = 0; j < nb.size(); ++j)
          for (int k = 0; k < 2; ++k) next[i][k] += run.mixing().weight(i, static_cast<int>(j)) * x[nb[j]][k];
        const QuadraticOracle& f = run.oracle(i);
        for (int k = 0; k < 2; ++k) next[i][k] -= lr * f.a() * (x[i][k] - f.b()[k]);
      }
      x = next;
      run.Round(lr);
      for (int i = 0; i < n; ++i) {
        ASSERT_NEAR(run.x(i)[0], x[i][0], 1e-12) << "round " << round << ", agent " << i;
        ASSERT_NEAR(run.x(i)[1], x[i][1], 1e-12) << "round " << round << ", agent " << i;
      }
    }
  }
}

// Every overlapping method converges where its lock-step form does on the heterogeneous quadratic:
// with a decaying step both means approach the optimum x* and the agents reach consensus, the
// overlapping run within 10 % of the lock-step run's residuals (measured: within 5 %).
TEST(Overlap, ConvergesWhereTheLockStepMethodDoes) {
  struct M {
    const char* name;
    double mu, beta, lr;
  };
  for (const M& m : {M{"dsgd", 0, 0, 0.05}, M{"gut", 0.5, 0, 0.05}, M{"qg-dsgdm", 0, 0.9, 0.01},
                     M{"qg-gutm", 0.05, 0.9, 0.01}, M{"dsgd-atc", 0, 0, 0.05}, M{"dsgdm", 0, 0.9, 0.01},
                     M{"qg-dsgdm-lin", 0, 0.9, 0.01}}) {
    SCOPED_TRACE(m.name);
    QuadraticRun lock(H(m.name, m.mu, m.beta, m.lr, false));
    QuadraticRun over(H(m.name, m.mu, m.beta, m.lr, true));
    const double start = over.DistanceToOptimum();
    for (double lr : {m.lr, m.lr / 10, m.lr / 100}) {
      lock.Rounds(3000, lr);
      over.Rounds(3000, lr);
    }
    EXPECT_LT(over.DistanceToOptimum(), 0.01 * start);
    EXPECT_LT(over.DistanceToOptimum(), 1.1 * lock.DistanceToOptimum());
    EXPECT_LT(over.Consensus(), 1.1 * lock.Consensus());
    EXPECT_GT(over.Consensus(), 0) << "the runs differ: the variant is not the lock-step method";
    EXPECT_NE(over.x(0)[0], lock.x(0)[0]);
  }
}

// GUT's stable range of mu shrinks at its top end with overlap (docs/algorithms.md §12, and the
// manifest warns): on the ring at eta L = 0.1, mu = 0.8 still converges like lock-step, mu = 1
// (exact in lock-step) diverges.
TEST(Overlap, GutIsStableUpToMuPointEightOnTheRing) {
  QuadraticRun lock(H("gut", 0.8, 0, 0.05, false)), over(H("gut", 0.8, 0, 0.05, true));
  lock.Rounds(20000, 0.05);
  over.Rounds(20000, 0.05);
  EXPECT_LT(over.Consensus(), 1.1 * lock.Consensus());
  QuadraticRun one(H("gut", 1.0, 0, 0.005, true)), exact(H("gut", 1.0, 0, 0.005, false));
  one.Rounds(20000, 0.005);
  exact.Rounds(20000, 0.005);
  EXPECT_LT(exact.Consensus(), 1e-9);
  EXPECT_FALSE(one.Consensus() < 1) << "mu = 1 with overlap converged: revisit the manifest warning";
}

TEST(Overlap, ManifestKeyIsCheckedAndHandedOver) {
  const std::string base = R"(
run: {name: t, seed: 3, epochs: 2}
agents: {count: 8}
algorithm: {name: qg-gutm, lr: 0.1, momentum: 0.9, mu: 0.01}
data: {dataset: fashion-mnist, path: /tmp}
)";
  auto off = core::ParseManifest(base, "m.yaml", {});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->hyper.overlap);
  EXPECT_EQ(core::ToYaml(*off).find("overlap"), std::string::npos) << "left out at its default";
  auto on = core::ParseManifest(base, "m.yaml", {"exchange.overlap=1"});
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_TRUE(on->hyper.overlap);
  auto again = core::ParseManifest(core::ToYaml(*on), "handed-over", {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->hyper.overlap) << "the agents get the key from the coordinator";
  EXPECT_EQ(core::DescribeExchange(*on), "fp32, consensus step 1, overlap") << "the start-up log line";
  EXPECT_EQ(core::DescribeExchange(*off), "fp32, consensus step 1");

  auto two = core::ParseManifest(base, "m.yaml", {"exchange.overlap=2"});
  ASSERT_FALSE(two.ok());
  EXPECT_NE(std::string(two.status().message()).find("exchange.overlap must be 0 (lock-step) or 1"),
            std::string::npos)
      << two.status();
  auto gt = core::ParseManifest(base, "m.yaml",
                                {"exchange.overlap=1", "algorithm.name=gt", "algorithm.mu=0", "algorithm.momentum=0"});
  ASSERT_FALSE(gt.ok());
  EXPECT_NE(std::string(gt.status().message())
                .find("exchange.overlap: 1 is defined for dsgd, qg-dsgdm, gut, qg-gutm, dsgd-atc, dsgdm, "
                      "qg-dsgdm-lin"),
            std::string::npos)
      << gt.status();
  EXPECT_NE(std::string(gt.status().message()).find("set exchange.overlap: 0"), std::string::npos);

  auto top = core::ParseManifest(base, "m.yaml",
                                 {"exchange.overlap=1", "algorithm.name=gut", "algorithm.mu=1", "algorithm.momentum=0"});
  ASSERT_TRUE(top.ok()) << top.status();
  const auto warnings = core::ExchangeWarnings(*top);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("exchange.overlap 1 with algorithm.mu 1"), std::string::npos) << warnings[0];
  EXPECT_TRUE(core::ExchangeWarnings(*on).empty());
}

}  // namespace
}  // namespace gut::testing
