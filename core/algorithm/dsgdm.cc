// DSGDm (docs/algorithms.md §2.2), adapt-then-combine: a local heavy-ball (or Nesterov) step, then
// gossip of the half-step model. With momentum 0 this is DSGD-ATC, x <- W(x - eta g) ("dsgd-atc").
#include <vector>

#include "core/algorithm/adapt_then_combine.h"
#include "core/algorithm/methods.h"

namespace gut::core {
namespace {

template <typename T>
class Dsgdm final : public detail::AdaptThenCombine<T> {
 public:
  Dsgdm(std::string name, double momentum, bool nesterov, bool overlap, absl::Span<const T> x0,
        double self_weight)
      : detail::AdaptThenCombine<T>(std::move(name), overlap, x0, self_weight),
        beta_(static_cast<T>(momentum)), nesterov_(nesterov) {
    if (momentum != 0) m_.assign(x0.size(), T(0));
  }
  int persistent_buffers() const override { return 2 + (m_.empty() ? 0 : 1); }

 private:
  void LocalStep(const T* __restrict g, T lr) override {
    T* __restrict x = this->x_.data();
    const size_t n = this->x_.size();
    if (m_.empty()) {
      for (size_t k = 0; k < n; ++k) x[k] -= lr * g[k];
      return;
    }
    T* __restrict m = m_.data();
    const T beta = beta_;
    for (size_t k = 0; k < n; ++k) {
      m[k] = beta * m[k] + g[k];
      x[k] -= lr * (nesterov_ ? g[k] + beta * m[k] : m[k]);
    }
  }
  void VisitMethodState(StateVisitor<T>* v) override { v->Values("m", &m_); }

  T beta_;
  bool nesterov_;
  std::vector<T> m_;
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeDsgdm(const std::string& name, double momentum, bool nesterov,
                                        bool overlap, absl::Span<const T> x0, double self_weight) {
  return std::make_unique<Dsgdm<T>>(name, momentum, nesterov, overlap, x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeDsgdm(const std::string&, double, bool, bool,
                                                     absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeDsgdm(const std::string&, double, bool, bool,
                                                      absl::Span<const double>, double);

}  // namespace gut::core
