#include "core/topology/mixing.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gut::core {

absl::StatusOr<WeightRule> ParseWeightRule(const std::string& name) {
  if (name == "uniform") return WeightRule::kUniform;
  if (name == "metropolis" || name == "metropolis-hastings") return WeightRule::kMetropolisHastings;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown weight rule '", name, "'; allowed: uniform, metropolis (metropolis-hastings)"));
}

MixingMatrix MixingMatrix::Build(const Graph& graph, WeightRule rule) {
  const int n = graph.size();
  std::vector<double> self(n);
  std::vector<std::vector<double>> w(n);
  for (int i = 0; i < n; ++i) {
    const auto& nb = graph.neighbours(i);
    w[i].resize(nb.size());
    if (rule == WeightRule::kUniform) {
      const double u = 1.0 / (graph.degree(i) + 1);
      std::fill(w[i].begin(), w[i].end(), u);
      self[i] = u;
    } else {
      double sum = 0;
      for (size_t k = 0; k < nb.size(); ++k) {
        w[i][k] = 1.0 / (1 + std::max(graph.degree(i), graph.degree(nb[k])));
        sum += w[i][k];
      }
      self[i] = 1.0 - sum;
    }
  }
  return MixingMatrix(graph, std::move(self), std::move(w));
}

MixingMatrix MixingMatrix::WithConsensusStep(double gamma) const {
  if (gamma == 1.0) return *this;
  std::vector<double> self(self_.size());
  std::vector<std::vector<double>> w = weights_;
  for (size_t i = 0; i < self_.size(); ++i) {
    for (double& x : w[i]) x *= gamma;
    self[i] = (1.0 - gamma) + gamma * self_[i];
  }
  return MixingMatrix(graph_, std::move(self), std::move(w));
}

double MixingMatrix::Entry(int i, int j) const {
  if (i == j) return self_[i];
  const auto& nb = graph_.neighbours(i);
  for (size_t k = 0; k < nb.size(); ++k)
    if (nb[k] == j) return weights_[i][k];
  return 0.0;
}

absl::Status MixingMatrix::Validate() const {
  constexpr double kTol = 1e-9;
  const int n = size();
  if (n < 2) {
    return absl::InvalidArgumentError(absl::StrCat("a gossip graph needs at least 2 agents, got ", n));
  }
  if (!graph_.IsConnected()) {
    // Name one node that the first component cannot reach.
    std::vector<bool> seen(n, false);
    std::function<void(int)> visit = [&](int i) {
      seen[i] = true;
      for (int j : graph_.neighbours(i))
        if (!seen[j]) visit(j);
    };
    visit(0);
    int lost = 0;
    while (seen[lost]) ++lost;
    return absl::InvalidArgumentError(absl::StrCat("graph '", graph_.name(),
                                                   "' is not connected: node ", lost,
                                                   " cannot be reached from node 0"));
  }
  for (int i = 0; i < n; ++i) {
    if (!(self_[i] > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("mixing weight w[", i, "][", i, "] = ", self_[i], " must be positive"));
    }
    double row = self_[i];
    const auto& nb = graph_.neighbours(i);
    for (size_t k = 0; k < nb.size(); ++k) {
      const int j = nb[k];
      if (!(weights_[i][k] > 0)) {
        return absl::InvalidArgumentError(absl::StrCat("mixing weight w[", i, "][", j,
                                                       "] = ", weights_[i][k], " must be positive"));
      }
      if (std::abs(weights_[i][k] - Entry(j, i)) > kTol) {
        return absl::InvalidArgumentError(absl::StrCat(
            "mixing matrix is not symmetric: w[", i, "][", j, "] = ", weights_[i][k], " but w[",
            j, "][", i, "] = ", Entry(j, i),
            graph_.degree(i) != graph_.degree(j)
                ? absl::StrCat(" (node ", i, " has degree ", graph_.degree(i), ", node ", j, " has degree ",
                               graph_.degree(j), "; uniform weights need a regular graph, use weights: metropolis)")
                : std::string()));
      }
      row += weights_[i][k];
    }
    if (std::abs(row - 1.0) > kTol) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mixing matrix is not doubly stochastic: row ", i, " sums to ", row,
          " (degree ", graph_.degree(i),
          "); uniform weights need a regular graph, use weights: metropolis"));
    }
  }
  // Symmetric rows summing to 1 imply columns sum to 1.
  return absl::OkStatus();
}

std::vector<std::vector<double>> MixingMatrix::Dense() const {
  const int n = size();
  std::vector<std::vector<double>> d(n, std::vector<double>(n, 0.0));
  for (int i = 0; i < n; ++i) {
    d[i][i] = self_[i];
    const auto& nb = graph_.neighbours(i);
    for (size_t k = 0; k < nb.size(); ++k) d[i][nb[k]] = weights_[i][k];
  }
  return d;
}

std::vector<double> SymmetricEigenvalues(std::vector<std::vector<double>> a) {
  const int n = static_cast<int>(a.size());
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (int p = 0; p < n; ++p)
      for (int q = p + 1; q < n; ++q) off += a[p][q] * a[p][q];
    if (off < 1e-30) break;
    for (int p = 0; p < n; ++p) {
      for (int q = p + 1; q < n; ++q) {
        if (std::abs(a[p][q]) < 1e-300) continue;
        const double theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < n; ++k) {  // columns p, q
          const double akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (int k = 0; k < n; ++k) {  // rows p, q
          const double apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
      }
    }
  }
  std::vector<double> ev(n);
  for (int i = 0; i < n; ++i) ev[i] = a[i][i];
  std::sort(ev.begin(), ev.end(), std::greater<double>());
  return ev;
}

Spectrum MixingMatrix::ComputeSpectrum() const {
  Spectrum s;
  s.eigenvalues = SymmetricEigenvalues(Dense());
  s.lambda2 = s.eigenvalues.size() > 1 ? s.eigenvalues[1] : 0.0;
  s.lambda_min = s.eigenvalues.back();
  const double m = std::max(std::abs(s.lambda2), std::abs(s.lambda_min));
  s.rho = 1 - m;
  s.p = 1 - m * m;
  return s;
}

}  // namespace gut::core
