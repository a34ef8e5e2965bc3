// Test fixtures for the algorithm tests: the heterogeneous quadratic of docs/algorithms.md §7.3 as a
// GradientOracle, and a lock-step driver that runs n agents of one Algorithm over an
// InProcessExchange (the same phase protocol gut-sim uses).
#ifndef GUT_TESTS_TESTING_QUADRATIC_H_
#define GUT_TESTS_TESTING_QUADRATIC_H_

#include <cmath>
#include <memory>
#include <vector>

#include "core/algorithm/algorithm.h"
#include "core/exchange/in_process_exchange.h"
#include "core/topology/graph.h"
#include "core/topology/mixing.h"

namespace gut::testing {

// f_i(x) = (a_i / 2) ||x - b_i||^2 with a_i = 1 + 0.5 (i mod 3), b_i = 5 (cos, sin)(2 pi i / n).
class QuadraticOracle final : public core::GradientOracle<double> {
 public:
  QuadraticOracle(int i, int n) : point_(2), grad_(2) {
    a_ = 1 + 0.5 * (i % 3);
    b_ = {5 * std::cos(2 * M_PI * i / n), 5 * std::sin(2 * M_PI * i / n)};
  }
  absl::Span<double> point() override { return absl::MakeSpan(point_); }
  absl::Status ComputeGradient() override {
    for (int k = 0; k < 2; ++k) grad_[k] = a_ * (point_[k] - b_[k]);
    ++calls_;
    return absl::OkStatus();
  }
  absl::Span<const double> gradient() const override { return grad_; }
  double a() const { return a_; }
  const std::vector<double>& b() const { return b_; }
  int calls() const { return calls_; }

 private:
  double a_;
  std::vector<double> b_, point_, grad_;
  int calls_ = 0;
};

class QuadraticRun {
 public:
  // n-ring with uniform weights, every agent at x0 = (1, -1).
  QuadraticRun(const core::Hyperparameters& h, int n = 16, bool force_tracking = false);
  explicit QuadraticRun(std::vector<std::unique_ptr<core::Algorithm<double>>> algos, int n = 16);
  // Any graph and weights (e.g. the chain RelaySGD relays over), every agent at x0 = (1, -1).
  QuadraticRun(const core::Hyperparameters& h, core::MixingMatrix w);
  // ... with every message through `codec` (in float, as on the wire).
  QuadraticRun(const core::Hyperparameters& h, core::MixingMatrix w, const core::CodecOptions& codec);

  void Round(double lr);
  void Rounds(int k, double lr) {
    for (int r = 0; r < k; ++r) Round(lr);
  }
  void GossipRound();

  int n() const { return static_cast<int>(algos_.size()); }
  absl::Span<const double> x(int i) const { return algos_[i]->params(); }
  std::vector<double> Mean() const;
  double Consensus() const;
  double DistanceToOptimum() const;  // ||x̄ - x*||
  static std::vector<double> Optimum(int n);
  QuadraticOracle& oracle(int i) { return *oracles_[i]; }
  core::Algorithm<double>& algo(int i) { return *algos_[i]; }
  const core::Neighbourhood<double>& endpoint(int i) { return ex_->Endpoint(i); }
  const core::MixingMatrix& mixing() const { return mixing_; }

 private:
  core::MixingMatrix mixing_;
  std::unique_ptr<core::InProcessExchange<double>> ex_;
  std::vector<std::unique_ptr<QuadraticOracle>> oracles_;
  std::vector<std::unique_ptr<core::Algorithm<double>>> algos_;
  int64_t round_ = 0;
};

}  // namespace gut::testing

#endif  // GUT_TESTS_TESTING_QUADRATIC_H_
