// Factories of the concrete methods; CreateAlgorithm (registry.cc) picks one by name.
#ifndef GUT_CORE_ALGORITHM_METHODS_H_
#define GUT_CORE_ALGORITHM_METHODS_H_

#include <memory>

#include "core/algorithm/algorithm.h"

namespace gut::core {

struct GutOptions {
  std::string name;
  double momentum = 0;  // beta
  double mu = 0;        // 0 turns the tracking terms off (DSGD, QG-DSGDm as the reference runs them)
  bool force_tracking = false;  // keep the tracking terms even when mu == 0 (reduction tests)
  bool direct_consensus = false;  // Hyperparameters::direct_consensus (momentum methods only)
  bool overlap = false;           // Hyperparameters::overlap
};

// GUT / QG-GUTm exactly as the reference code runs them (docs/algorithms.md §1.3), and with mu = 0 the
// reference's DSGD (§1.4 d) and QG-DSGDm (§1.4 e).
template <typename T>
std::unique_ptr<Algorithm<T>> MakeGutFamily(const GutOptions& o, absl::Span<const T> x0,
                                            double self_weight);

// DSGDm (§2.2, adapt-then-combine): local heavy-ball (or Nesterov) step, then gossip. momentum = 0
// is DSGD-ATC x <- W (x - eta g).
template <typename T>
std::unique_ptr<Algorithm<T>> MakeDsgdm(const std::string& name, double momentum, bool nesterov,
                                        bool overlap, absl::Span<const T> x0, double self_weight);

// QG-DSGDm of Lin et al. (§2.3): quasi-global momentum from the gossip-inclusive displacement.
template <typename T>
std::unique_ptr<Algorithm<T>> MakeQgDsgdmLin(double momentum, double ema, bool nesterov, bool overlap,
                                             absl::Span<const T> x0, double self_weight);

// Gradient tracking, ATC form (§2.4): x <- W(x - eta y), y <- W y + g_new - g_old. Two messages
// (x - eta y and y), buffers y and g_prev.
template <typename T>
std::unique_ptr<Algorithm<T>> MakeGradientTracking(absl::Span<const T> x0, double self_weight);

// D² / Exact Diffusion (§2.5): psi = x - eta g, x <- W'(x + psi - psi_prev), W' = (I + W)/2 when
// `lazy` (lambda_min(W) <= -1/3) else W. One message, one buffer (psi_prev: it is
// x_prev - eta g_prev folded into one vector).
template <typename T>
std::unique_ptr<Algorithm<T>> MakeD2(bool lazy, absl::Span<const T> x0, double self_weight);

// Momentum tracking (§2.6): u = beta u + g, x <- W x - eta (u - c), c <- W (c - u) + u. Two
// messages (x and c - u), buffers u and c.
template <typename T>
std::unique_ptr<Algorithm<T>> MakeMomentumTracking(double momentum, absl::Span<const T> x0,
                                                   double self_weight);

// RelaySGD on a spanning tree (§2.7), the author group's form that divides by the relayed count:
// x <- (x_half + sum_j M_{j->i}) / (1 + sum_j c_{j->i}), with local heavy-ball momentum. Per
// neighbour one model-sized relay message (slot 0) and its count (slot 1, one value). The
// neighbourhood must be the tree (the manifest checks this).
template <typename T>
std::unique_ptr<Algorithm<T>> MakeRelaySgd(double momentum, absl::Span<const T> x0,
                                           double self_weight);

// NGM and CGA (§2.8, §2.9): models are exchanged (slot 0), each agent computes cross-gradients
// of its own minibatch at every neighbour's model and sends them back (slot 1). NGM averages
// self- and cross-gradients with the mixing weights; CGA solves a small QP per parameter tensor
// (`tensor_sizes`). Then quasi-global momentum (beta > 0), step, and the gossip x <- Wx.
template <typename T>
std::unique_ptr<Algorithm<T>> MakeNgm(double momentum, absl::Span<const T> x0, double self_weight);
template <typename T>
std::unique_ptr<Algorithm<T>> MakeCga(double momentum, std::vector<int64_t> tensor_sizes,
                                      absl::Span<const T> x0, double self_weight);

// CGA's aggregation QP (§2.9) for one tensor: rows[k] = pi g_k (k neighbours), self = pi g_self.
// Minimises 1/2 v'(M M' + eps I) v + (M self)' v subject to v >= 0.5 and writes M' v + self into
// out. Rows that are all zero are left out of the QP (their v stays 0.5). Returns false (and
// leaves out untouched) if the solution is not finite; `v` holds the previous solution on entry
// (the warm start, and the fallback) and the new one on return.
bool SolveCgaQp(const std::vector<const float*>& rows, const float* self, size_t len,
                std::vector<double>* v, float* out);
bool SolveCgaQp(const std::vector<const double*>& rows, const double* self, size_t len,
                std::vector<double>* v, double* out);

}  // namespace gut::core

#endif  // GUT_CORE_ALGORITHM_METHODS_H_
