#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/algorithm/algorithm.h"
#include "core/algorithm/methods.h"

namespace gut::core {

const std::vector<std::pair<std::string, std::string>>& AlgorithmNames() {
  static const auto* names = new std::vector<std::pair<std::string, std::string>>{
      {"dsgd", "D-PSGD as the GUT reference code runs it: x <- Wx - eta grad F(Wx) (mu = 0, beta = 0)"},
      {"dsgd-atc", "adapt-then-combine DSGD: x <- W(x - eta grad F(x))"},
      {"dsgdm", "DSGD with local heavy-ball (or Nesterov) momentum, adapt-then-combine"},
      {"qg-dsgdm", "QG-DSGDm as the GUT reference code runs it (mu = 0, beta > 0)"},
      {"qg-dsgdm-lin", "QG-DSGDm of Lin et al. (ICML 2021), quasi-global EMA momentum"},
      {"gut", "Global Update Tracking (beta = 0, 0 < mu <= 1)"},
      {"qg-gutm", "GUT with quasi-global momentum (beta > 0, mu > 0, mu + beta < 1)"},
      {"gt", "gradient tracking (DSGT, adapt-then-combine), two messages per round"},
      {"d2", "D2 / Exact Diffusion ((I+W)/2 when lambda_min(W) <= -1/3)"},
      {"mt", "momentum tracking (Takezawa et al.), two messages per round"},
      {"relaysgd", "RelaySGD on a spanning tree (topology.graph: chain for ring experiments)"},
      {"ngm", "neighbourhood gradient mean: cross-gradients, quasi-global momentum"},
      {"cga", "cross-gradient aggregation: per-tensor QP over cross-gradients"},
  };
  return *names;
}

std::string AllowedAlgorithmNames() {
  std::vector<std::string> n;
  for (const auto& [name, help] : AlgorithmNames()) n.push_back(name);
  return absl::StrJoin(n, ", ");
}

namespace {
// The methods built on ReplicaGossip: the GUT family (gut.cc) and adapt-then-combine
// (adapt_then_combine.h).
constexpr const char* kReplicaGossip[] = {"dsgd", "qg-dsgdm", "gut", "qg-gutm", "dsgd-atc", "dsgdm", "qg-dsgdm-lin"};
}  // namespace

bool GossipsReplicas(const std::string& name) {
  for (const char* a : kReplicaGossip)
    if (name == a) return true;
  return false;
}

// Both replica-gossip shapes implement exchange.overlap (docs/algorithms.md §12), none of the others.
bool AlgorithmOverlaps(const std::string& name) { return GossipsReplicas(name); }

std::string OverlapAlgorithmNames() { return absl::StrJoin(kReplicaGossip, ", "); }

absl::Status ValidateHyperparameters(const Hyperparameters& h) {
  bool known = false;
  for (const auto& [name, help] : AlgorithmNames()) known |= (name == h.algorithm);
  if (!known) {
    return absl::InvalidArgumentError(absl::StrCat("algorithm.name: unknown algorithm '",
                                                   h.algorithm, "'; allowed: ",
                                                   AllowedAlgorithmNames()));
  }
  if (!(h.lr > 0) || !std::isfinite(h.lr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("algorithm.lr must be a positive number, got ", h.lr));
  }
  const std::string& a = h.algorithm;
  const bool needs_momentum = (a == "qg-dsgdm" || a == "qg-gutm" || a == "qg-dsgdm-lin");
  const bool takes_momentum = needs_momentum || a == "dsgdm" || a == "mt" || a == "relaysgd" ||
                              a == "ngm" || a == "cga";
  const bool baseline = a == "gt" || a == "d2" || a == "mt" || a == "relaysgd" || a == "ngm" || a == "cga";
  if (h.nesterov && a != "dsgdm" && a != "qg-dsgdm-lin") {
    return absl::InvalidArgumentError(absl::StrCat("algorithm.nesterov: only dsgdm and qg-dsgdm-lin have a Nesterov "
                                                   "variant here; set it to false for ", a));
  }
  if ((a == "gt" || a == "d2") && h.momentum != 0) {
    return absl::InvalidArgumentError(absl::StrCat("algorithm.momentum: ", a,
                                                   " has no momentum; set it to 0, got ", h.momentum));
  }
  if (baseline && h.mu != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "algorithm.mu: ", a, " has no mu (GUT's scaling factor); set it to 0, got ", h.mu));
  }
  if (takes_momentum) {
    if (!(h.momentum >= 0 && h.momentum < 1) || (needs_momentum && h.momentum == 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "algorithm.momentum: ", a, " needs beta in ", needs_momentum ? "(0, 1)" : "[0, 1)",
          ", got ", h.momentum));
    }
  }
  if (a == "gut") {
    if (!(h.mu > 0 && h.mu <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("algorithm.mu: gut needs 0 < mu <= 1, got ", h.mu));
    }
  }
  if (a == "qg-gutm") {
    if (!(h.mu > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("algorithm.mu: qg-gutm needs mu > 0, got ", h.mu));
    }
    if (!(h.mu + h.momentum < 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "algorithm.mu: qg-gutm needs mu + momentum < 1 (the average dynamics diverge "
          "otherwise, docs/algorithms.md §1.4 g); got mu = ", h.mu, ", momentum = ", h.momentum));
    }
  }
  if (h.overlap && !AlgorithmOverlaps(a)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "exchange.overlap: 1 is defined for ", OverlapAlgorithmNames(), " (docs/algorithms.md §12); ", a,
        " needs its neighbours' messages before its gradient or sends more than one message a round; "
        "set exchange.overlap: 0"));
  }
  if (a == "qg-dsgdm-lin" && h.qgm_beta >= 0 && !(h.qgm_beta < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("algorithm.qgm_beta must be in [0, 1), got ", h.qgm_beta));
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<std::unique_ptr<Algorithm<T>>> CreateAlgorithm(const Hyperparameters& h,
                                                              absl::Span<const T> x0,
                                                              double self_weight) {
  if (auto s = ValidateHyperparameters(h); !s.ok()) return s;
  const std::string& a = h.algorithm;
  const bool ov = h.overlap;
  if (a == "dsgd") return MakeGutFamily<T>({a, 0.0, 0.0, false, false, ov}, x0, self_weight);
  if (a == "qg-dsgdm")
    return MakeGutFamily<T>({a, h.momentum, 0.0, false, h.direct_consensus, ov}, x0, self_weight);
  if (a == "gut") return MakeGutFamily<T>({a, 0.0, h.mu, false, false, ov}, x0, self_weight);
  if (a == "qg-gutm")
    return MakeGutFamily<T>({a, h.momentum, h.mu, false, h.direct_consensus, ov}, x0, self_weight);
  if (a == "dsgd-atc") return MakeDsgdm<T>(a, 0.0, false, ov, x0, self_weight);
  if (a == "dsgdm") return MakeDsgdm<T>(a, h.momentum, h.nesterov, ov, x0, self_weight);
  if (a == "gt") return MakeGradientTracking<T>(x0, self_weight);
  if (a == "d2") return MakeD2<T>(h.lazy_mixing, x0, self_weight);
  if (a == "mt") return MakeMomentumTracking<T>(h.momentum, x0, self_weight);
  if (a == "relaysgd") return MakeRelaySgd<T>(h.momentum, x0, self_weight);
  if (a == "ngm" || a == "cga") {
    int64_t total = 0;
    for (int64_t t : h.tensor_sizes) total += t;
    if (!h.tensor_sizes.empty() && total != static_cast<int64_t>(x0.size())) {
      return absl::InvalidArgumentError(absl::StrCat("algorithm: tensor sizes add up to ", total,
                                                     ", the model has ", x0.size(), " parameters"));
    }
    if (a == "ngm") return MakeNgm<T>(h.momentum, x0, self_weight);
    return MakeCga<T>(h.momentum, h.tensor_sizes, x0, self_weight);
  }
  // qg-dsgdm-lin
  return MakeQgDsgdmLin<T>(h.momentum, h.qgm_beta >= 0 ? h.qgm_beta : h.momentum, h.nesterov, ov, x0,
                           self_weight);
}

template absl::StatusOr<std::unique_ptr<Algorithm<float>>> CreateAlgorithm(
    const Hyperparameters&, absl::Span<const float>, double);
template absl::StatusOr<std::unique_ptr<Algorithm<double>>> CreateAlgorithm(
    const Hyperparameters&, absl::Span<const double>, double);

}  // namespace gut::core
