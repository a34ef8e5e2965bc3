// Momentum tracking of Takezawa et al. (docs/algorithms.md §2.6): u = beta u + g,
// x <- W x - eta (u - c), c <- W (c - u) + u. Two messages per neighbour per round (x and c - u);
// buffers u and c.
#include <vector>

#include "core/algorithm/methods.h"
#include "core/algorithm/whole_vector_method.h"

namespace gut::core {
namespace {

// u = beta u + g; d = u - c; x <- W x - eta d; c <- W (c - u) + u (c^0 = 0, u^{-1} = 0).
// c_ holds q = c - u while the messages are in flight, so d = -q.
template <typename T>
class MomentumTracking final : public detail::WholeVectorMethod<T> {
 public:
  MomentumTracking(double momentum, absl::Span<const T> x0, double self_weight)
      : detail::WholeVectorMethod<T>("mt", x0, self_weight), beta_(static_cast<T>(momentum)),
        u_(x0.size(), T(0)), c_(x0.size(), T(0)) {}
  int persistent_buffers() const override { return 2; }

  void LocalStep(const T* __restrict g, T) override {
    T* __restrict u = u_.data();
    T* __restrict c = c_.data();
    const T beta = beta_;
    for (size_t k = 0; k < u_.size(); ++k) {
      u[k] = beta * u[k] + g[k];
      c[k] -= u[k];
    }
    std::copy(this->x_.begin(), this->x_.end(), this->send_.begin());
  }
  std::vector<T>* SecondMessage() override { return &c_; }
  void Combine(int slot, const T* __restrict r, T lr) override {
    const T a = RawMix<T>::Plain(this->w_self_).a;
    const size_t n = u_.size();
    if (slot == 0) {
      const T* __restrict v = this->send_.data();
      const T* __restrict q = c_.data();
      T* __restrict x = this->x_.data();
      for (size_t k = 0; k < n; ++k) x[k] = a * v[k] + r[k] + lr * q[k];
    } else {
      const T* __restrict u = u_.data();
      T* __restrict c = c_.data();
      for (size_t k = 0; k < n; ++k) c[k] = a * c[k] + r[k] + u[k];
    }
  }

 private:
  void VisitMethodState(StateVisitor<T>* v) override {
    v->Values("u", &u_);
    v->Values("c", &c_);
  }
  // Back to the method's start (u = 0, c = 0): the tracked average of u is the survivors' again.
  void RestartTracking() override {
    std::fill(u_.begin(), u_.end(), T(0));
    std::fill(c_.begin(), c_.end(), T(0));
  }

  T beta_;
  std::vector<T> u_, c_;
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeMomentumTracking(double momentum, absl::Span<const T> x0,
                                                   double self_weight) {
  return std::make_unique<MomentumTracking<T>>(momentum, x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeMomentumTracking(double, absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeMomentumTracking(double, absl::Span<const double>, double);

}  // namespace gut::core
