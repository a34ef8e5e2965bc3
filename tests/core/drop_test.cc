// A rank leaves for good (fault.on_peer_loss: drop): the survivors re-weight (Metropolis on the
// graph without it), every method re-bases its state (Algorithm::Rebase), and training goes on.
// What each method promises then is what it promises on the survivors' graph: its fixed point
// depends only on the graph, the weights and the step, not on the history. So on the
// heterogeneous quadratic (docs/algorithms.md §7.3) every method, dropped mid-run, must end where
// the same method ends when run on the survivors' graph from the start; the bias-correcting ones
// at the survivors' exact minimiser.
#include <thread>

#include "core/algorithm/algorithm.h"
#include "core/exchange/in_process_exchange.h"
#include "core/topology/drop.h"
#include "gtest/gtest.h"
#include "tests/testing/quadratic.h"

namespace gut::testing {
namespace {

constexpr int kN = 8, kDropped = 5;

struct Case {
  std::string label;
  std::string algorithm;
  double lr, momentum, mu;
  bool exact;  // converges to the exact minimiser of the survivors' sum
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.label; }

// Lock-step rounds of the agents in `who` over `ex`.
class Group {
 public:
  Group(std::vector<int> who, const core::MixingMatrix& w, const core::Hyperparameters& h) : who_(std::move(who)) {
    ex_ = std::make_unique<core::InProcessExchange<double>>(w);
    for (int i = 0; i < kN; ++i) oracles_.push_back(std::make_unique<QuadraticOracle>(i, kN));
    algos_.resize(kN);
    for (int i : who_) {
      auto a = core::CreateAlgorithm<double>(h, std::vector<double>{1.0, -1.0}, w.self_weight(i));
      EXPECT_TRUE(a.ok()) << a.status();
      algos_[i] = std::move(*a);
    }
  }
  void Rounds(int k, double lr) {
    for (int r = 0; r < k; ++r) {
      for (int p = 0; p < algos_[who_[0]]->phases(); ++p)
        for (int i : who_) {
          core::RoundContext<double> ctx{round_, lr, oracles_[i].get(), &ex_->Endpoint(i), {}};
          ASSERT_TRUE(algos_[i]->RunPhase(p, ctx).ok());
        }
      ++round_;
    }
  }
  // Drops `rank`: the rest move to `w` and re-base (each in its own thread: a re-base exchanges).
  absl::Status Drop(int rank, const core::MixingMatrix& w) {
    who_.erase(std::find(who_.begin(), who_.end(), rank));
    ex_ = std::make_unique<core::InProcessExchange<double>>(w);
    std::vector<absl::Status> st(kN);
    std::vector<std::thread> ts;
    for (int i : who_) ts.emplace_back([&, i] { st[i] = algos_[i]->Rebase(round_, &ex_->Endpoint(i)); });
    for (auto& t : ts) t.join();
    for (int i : who_)
      if (!st[i].ok()) return st[i];
    return absl::OkStatus();
  }
  std::vector<double> Mean() const {
    std::vector<double> m(2, 0.0);
    for (int i : who_)
      for (int k = 0; k < 2; ++k) m[k] += algos_[i]->params()[k] / who_.size();
    return m;
  }
  // Largest distance between an agent's model here and the same agent's in `other`.
  double MaxDistanceTo(const Group& other) const {
    double d = 0;
    for (int i : who_) {
      d = std::max(d, std::hypot(algos_[i]->params()[0] - other.algos_[i]->params()[0],
                                 algos_[i]->params()[1] - other.algos_[i]->params()[1]));
    }
    return d;
  }
  double MaxDistanceTo(const std::vector<double>& p) const {
    double d = 0;
    for (int i : who_) d = std::max(d, std::hypot(algos_[i]->params()[0] - p[0], algos_[i]->params()[1] - p[1]));
    return d;
  }
  core::Algorithm<double>& algo(int i) { return *algos_[i]; }

 private:
  std::vector<int> who_;
  std::unique_ptr<core::InProcessExchange<double>> ex_;
  std::vector<std::unique_ptr<QuadraticOracle>> oracles_;
  std::vector<std::unique_ptr<core::Algorithm<double>>> algos_;
  int64_t round_ = 0;
};

std::vector<int> All() {
  std::vector<int> v(kN);
  for (int i = 0; i < kN; ++i) v[i] = i;
  return v;
}
std::vector<int> Survivors() {
  auto v = All();
  v.erase(v.begin() + kDropped);
  return v;
}
std::vector<double> SurvivorsOptimum() {
  double sa = 0, sx = 0, sy = 0;
  for (int i : Survivors()) {
    QuadraticOracle o(i, kN);
    sa += o.a();
    sx += o.a() * o.b()[0];
    sy += o.a() * o.b()[1];
  }
  return {sx / sa, sy / sa};
}

class DropTest : public ::testing::TestWithParam<Case> {};

TEST_P(DropTest, SurvivorsEndWhereTheMethodEndsOnTheirGraph) {
  const Case& c = GetParam();
  core::Hyperparameters h;
  h.algorithm = c.algorithm;
  h.lr = c.lr;
  h.momentum = c.momentum;
  h.mu = c.mu;
  h.lazy_mixing = c.algorithm == "d2";
  const auto ring = core::MixingMatrix::Build(*core::MakeRing(kN), core::WeightRule::kUniform);
  auto without = core::MixingWithout(ring.graph(), {kDropped});
  ASSERT_TRUE(without.ok()) << without.status();

  Group dropped(All(), ring, h);
  dropped.Rounds(300, c.lr);
  ASSERT_TRUE(dropped.Drop(kDropped, *without).ok());
  dropped.Rounds(30000, c.lr);

  Group fresh(Survivors(), *without, h);
  fresh.Rounds(30000, c.lr);

  EXPECT_LT(dropped.MaxDistanceTo(fresh), 1e-6) << c.label << ": not where the method ends on the survivors' graph";
  if (c.exact) {
    EXPECT_LT(dropped.MaxDistanceTo(SurvivorsOptimum()), 1e-6) << c.label;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Methods, DropTest,
    ::testing::Values(Case{"dsgd", "dsgd", 0.05, 0, 0, false}, Case{"qg_dsgdm", "qg-dsgdm", 0.02, 0.8, 0, false},
                      Case{"gut", "gut", 0.05, 0, 0.5, false}, Case{"qg_gutm", "qg-gutm", 0.02, 0.8, 0.1, false},
                      Case{"dsgdm", "dsgdm", 0.02, 0.8, 0, false}, Case{"qg_dsgdm_lin", "qg-dsgdm-lin", 0.02, 0.8, 0, false},
                      Case{"gt", "gt", 0.05, 0, 0, true}, Case{"d2", "d2", 0.05, 0, 0, true},
                      Case{"mt", "mt", 0.02, 0.8, 0, true}, Case{"ngm", "ngm", 0.02, 0.8, 0, false},
                      Case{"cga", "cga", 0.02, 0.8, 0, false}),
    [](const auto& info) { return info.param.label; });

TEST(Drop, RelaySgdRefusesToLoseARank) {
  core::Hyperparameters h;
  h.algorithm = "relaysgd";
  h.lr = 0.05;
  auto a = core::CreateAlgorithm<double>(h, std::vector<double>{1.0, -1.0}, 0.5);
  ASSERT_TRUE(a.ok());
  const auto chain = core::MixingMatrix::Build(*core::MakeChain(4), core::WeightRule::kMetropolisHastings);
  core::InProcessExchange<double> ex(chain);
  const auto s = (*a)->Rebase(0, &ex.Endpoint(0));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("relaysgd"), std::string::npos) << s;
}

TEST(Drop, AGraphThatFallsApartIsRefusedNamingTheCutOffRanks) {
  auto chain = core::MakeChain(5);
  auto w = core::MixingWithout(*chain, {2});
  ASSERT_EQ(w.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(w.status().message().find("rank(s) 3, 4 could no longer reach rank 0"), std::string::npos) << w.status();
  auto ring = core::MakeRing(6);
  auto ok = core::MixingWithout(*ring, {2});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->graph().neighbours(2).empty());
  EXPECT_DOUBLE_EQ(ok->self_weight(2), 1.0);
  // Metropolis on the path that is left: rows sum to one.
  for (int i : {0, 1, 3, 4, 5}) {
    double row = ok->self_weight(i);
    for (int k = 0; k < ok->graph().degree(i); ++k) row += ok->weight(i, k);
    EXPECT_NEAR(row, 1.0, 1e-15) << i;
  }
}

}  // namespace
}  // namespace gut::testing
