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
};

// GUT / QG-GUTm exactly as the reference code runs them (ALGORITHMS.md §1.3), and with mu = 0 the
// reference's DSGD (§1.4 d) and QG-DSGDm (§1.4 e).
template <typename T>
std::unique_ptr<Algorithm<T>> MakeGutFamily(const GutOptions& o, absl::Span<const T> x0,
                                            double self_weight);

// DSGDm (§2.2, adapt-then-combine): local heavy-ball (or Nesterov) step, then gossip. momentum = 0
// is DSGD-ATC x <- W (x - eta g).
template <typename T>
std::unique_ptr<Algorithm<T>> MakeDsgdm(const std::string& name, double momentum, bool nesterov,
                                        absl::Span<const T> x0, double self_weight);

// QG-DSGDm of Lin et al. (§2.3): quasi-global momentum from the gossip-inclusive displacement.
template <typename T>
std::unique_ptr<Algorithm<T>> MakeQgDsgdmLin(double momentum, double ema, bool nesterov,
                                             absl::Span<const T> x0, double self_weight);

}  // namespace gut::core

#endif  // GUT_CORE_ALGORITHM_METHODS_H_
