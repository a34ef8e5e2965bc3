// Gradient tracking, adapt-then-combine (docs/algorithms.md §2.4): x <- W(x - eta y),
// y <- W y + g_new - g_old. Two messages per neighbour per round (x - eta y and y); buffers y and
// g_prev.
#include <vector>

#include "core/algorithm/methods.h"
#include "core/algorithm/whole_vector_method.h"

namespace gut::core {
namespace {

// x^{t+1} = W (x^t - eta y^t); y^{t+1} = W y^t + g^{t+1} - g^t, y^0 = g^0. y_ holds W y^{t-1}
// between rounds (0 before the first), so y^t = y_ + g^t - g_prev.
template <typename T>
class GradientTracking final : public detail::WholeVectorMethod<T> {
 public:
  GradientTracking(absl::Span<const T> x0, double self_weight)
      : detail::WholeVectorMethod<T>("gt", x0, self_weight), y_(x0.size(), T(0)), g_prev_(x0.size(), T(0)) {}
  int persistent_buffers() const override { return 2; }

  void LocalStep(const T* __restrict g, T lr) override {
    T* __restrict v = this->send_.data();
    T* __restrict y = y_.data();
    T* __restrict gp = g_prev_.data();
    const T* __restrict x = this->x_.data();
    for (size_t k = 0; k < this->x_.size(); ++k) {
      y[k] += g[k] - gp[k];
      gp[k] = g[k];
      v[k] = x[k] - lr * y[k];
    }
  }
  std::vector<T>* SecondMessage() override { return &y_; }
  void Combine(int slot, const T* r, T) override {
    const RawMix<T> mix = RawMix<T>::Plain(this->w_self_);
    if (slot == 0) {
      mix.Apply(this->send_.data(), r, this->x_.data(), this->x_.size());
    } else {
      mix.Apply(y_.data(), r, y_.data(), y_.size());
    }
  }

 private:
  void VisitMethodState(StateVisitor<T>* v) override {
    v->Values("y", &y_);
    v->Values("g_prev", &g_prev_);
  }
  // y_ := g_prev makes the next round's y equal the new gradient: y^0 = g^0 again, so the
  // survivors' y sum to their gradients' sum.
  void RestartTracking() override { y_ = g_prev_; }

  std::vector<T> y_, g_prev_;
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeGradientTracking(absl::Span<const T> x0, double self_weight) {
  return std::make_unique<GradientTracking<T>>(x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeGradientTracking(absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeGradientTracking(absl::Span<const double>, double);

}  // namespace gut::core
