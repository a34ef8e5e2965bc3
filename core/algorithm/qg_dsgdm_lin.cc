// QG-DSGDm of Lin et al. (docs/algorithms.md §2.3), adapt-then-combine: the local step uses the
// quasi-global momentum m̂, an exponential average of the gossip-inclusive displacement
// (x_prev - x)/eta, so that momentum sees what the whole neighbourhood moved.
#include <vector>

#include "core/algorithm/adapt_then_combine.h"
#include "core/algorithm/methods.h"

namespace gut::core {
namespace {

template <typename T>
class QgDsgdmLin final : public detail::AdaptThenCombine<T> {
 public:
  QgDsgdmLin(double momentum, double ema, bool nesterov, bool overlap, absl::Span<const T> x0,
             double self_weight)
      : detail::AdaptThenCombine<T>("qg-dsgdm-lin", overlap, x0, self_weight),
        beta_(static_cast<T>(momentum)), ema_(static_cast<T>(ema)), nesterov_(nesterov),
        mhat_(x0.size(), T(0)), x_prev_(x0.size()) {}
  int persistent_buffers() const override { return 4; }

 private:
  // m = beta m̂ + g; d = m (or g + beta m); x_prev = x; x -= eta d.
  void LocalStep(const T* __restrict g, T lr) override {
    T* __restrict x = this->x_.data();
    T* __restrict xp = x_prev_.data();
    const T* __restrict mh = mhat_.data();
    const size_t n = this->x_.size();
    const T beta = beta_;
    for (size_t k = 0; k < n; ++k) {
      const T m = beta * mh[k] + g[k];
      xp[k] = x[k];
      x[k] -= lr * (nesterov_ ? g[k] + beta * m : m);
    }
  }
  // m̂ <- mu~ m̂ + (1 - mu~)(x_prev - x)/eta.
  void AfterCombine(T lr) override {
    T* __restrict mh = mhat_.data();
    const T* __restrict xp = x_prev_.data();
    const T* __restrict x = this->x_.data();
    const size_t n = this->x_.size();
    const T a = ema_, b = T(1) - ema_;
    for (size_t k = 0; k < n; ++k) mh[k] = a * mh[k] + b * (xp[k] - x[k]) / lr;
  }
  // x_prev is rewritten by every local step before it is read: only m̂ carries over.
  void VisitMethodState(StateVisitor<T>* v) override { v->Values("mhat", &mhat_); }

  T beta_, ema_;
  bool nesterov_;
  std::vector<T> mhat_, x_prev_;
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeQgDsgdmLin(double momentum, double ema, bool nesterov, bool overlap,
                                             absl::Span<const T> x0, double self_weight) {
  return std::make_unique<QgDsgdmLin<T>>(momentum, ema, nesterov, overlap, x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeQgDsgdmLin(double, double, bool, bool,
                                                          absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeQgDsgdmLin(double, double, bool, bool,
                                                           absl::Span<const double>, double);

}  // namespace gut::core
