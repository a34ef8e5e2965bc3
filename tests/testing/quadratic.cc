#include "tests/testing/quadratic.h"

#include <stdexcept>

#include "core/algorithm/methods.h"

namespace gut::testing {

namespace {
core::MixingMatrix Ring(int n) {
  return core::MixingMatrix::Build(*core::MakeRing(n), core::WeightRule::kUniform);
}
}  // namespace

QuadraticRun::QuadraticRun(const core::Hyperparameters& h, int n, bool force_tracking)
    : mixing_(Ring(n)) {
  ex_ = std::make_unique<core::InProcessExchange<double>>(mixing_);
  const std::vector<double> x0{1.0, -1.0};
  for (int i = 0; i < n; ++i) {
    oracles_.push_back(std::make_unique<QuadraticOracle>(i, n));
    if (force_tracking) {
      algos_.push_back(core::MakeGutFamily<double>({"gut-forced", h.momentum, h.mu, true}, x0,
                                                   mixing_.self_weight(i)));
    } else {
      auto a = core::CreateAlgorithm<double>(h, x0, mixing_.self_weight(i));
      if (!a.ok()) throw std::runtime_error(std::string(a.status().message()));
      algos_.push_back(std::move(*a));
    }
  }
}

QuadraticRun::QuadraticRun(const core::Hyperparameters& h, core::MixingMatrix w)
    : QuadraticRun(h, std::move(w), core::CodecOptions()) {}

QuadraticRun::QuadraticRun(const core::Hyperparameters& h, core::MixingMatrix w, const core::CodecOptions& codec)
    : mixing_(std::move(w)) {
  ex_ = std::make_unique<core::InProcessExchange<double>>(mixing_, absl::Seconds(60), codec, 12);
  const std::vector<double> x0{1.0, -1.0};
  for (int i = 0; i < mixing_.size(); ++i) {
    oracles_.push_back(std::make_unique<QuadraticOracle>(i, mixing_.size()));
    auto a = core::CreateAlgorithm<double>(h, x0, mixing_.self_weight(i));
    if (!a.ok()) throw std::runtime_error(std::string(a.status().message()));
    algos_.push_back(std::move(*a));
  }
}

QuadraticRun::QuadraticRun(std::vector<std::unique_ptr<core::Algorithm<double>>> algos, int n)
    : mixing_(Ring(n)), algos_(std::move(algos)) {
  ex_ = std::make_unique<core::InProcessExchange<double>>(mixing_);
  for (int i = 0; i < n; ++i) oracles_.push_back(std::make_unique<QuadraticOracle>(i, n));
}

void QuadraticRun::Round(double lr) {
  const int phases = algos_[0]->phases();
  for (int p = 0; p < phases; ++p) {
    for (int i = 0; i < n(); ++i) {
      core::RoundContext<double> ctx{round_, lr, oracles_[i].get(), &ex_->Endpoint(i), {}};
      auto s = algos_[i]->RunPhase(p, ctx);
      if (!s.ok()) throw std::runtime_error(std::string(s.message()));
    }
  }
  ++round_;
}

void QuadraticRun::GossipRound() {
  for (int p = 0; p < 2; ++p)
    for (int i = 0; i < n(); ++i) {
      auto s = algos_[i]->RunGossipPhase(p, round_, &ex_->Endpoint(i));
      if (!s.ok()) throw std::runtime_error(std::string(s.message()));
    }
  ++round_;
}

std::vector<double> QuadraticRun::Mean() const {
  std::vector<double> m(2, 0.0);
  for (int i = 0; i < n(); ++i)
    for (int k = 0; k < 2; ++k) m[k] += x(i)[k] / n();
  return m;
}

double QuadraticRun::Consensus() const {
  const auto m = Mean();
  double s = 0;
  for (int i = 0; i < n(); ++i)
    for (int k = 0; k < 2; ++k) s += (x(i)[k] - m[k]) * (x(i)[k] - m[k]);
  return std::sqrt(s / n());
}

std::vector<double> QuadraticRun::Optimum(int n) {
  double sa = 0, sx = 0, sy = 0;
  for (int i = 0; i < n; ++i) {
    QuadraticOracle o(i, n);
    sa += o.a();
    sx += o.a() * o.b()[0];
    sy += o.a() * o.b()[1];
  }
  return {sx / sa, sy / sa};
}

double QuadraticRun::DistanceToOptimum() const {
  const auto m = Mean();
  const auto o = Optimum(n());
  return std::hypot(m[0] - o[0], m[1] - o[1]);
}

}  // namespace gut::testing
