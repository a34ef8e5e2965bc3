// NGM, neighbourhood gradient mean of Aketi et al. (docs/algorithms.md §2.8): the round of
// cross_gradient_method.h aggregating self- and cross-gradients with the mixing weights.
#include "core/algorithm/cross_gradient_method.h"
#include "core/algorithm/methods.h"

namespace gut::core {

template <typename T>
std::unique_ptr<Algorithm<T>> MakeNgm(double momentum, absl::Span<const T> x0, double self_weight) {
  return std::make_unique<detail::CrossGradient<T>>(false, momentum, std::vector<int64_t>{}, x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeNgm(double, absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeNgm(double, absl::Span<const double>, double);

}  // namespace gut::core
