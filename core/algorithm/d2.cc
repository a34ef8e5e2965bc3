// D² / Exact Diffusion (docs/algorithms.md §2.5): psi = x - eta g, x <- W'(x + psi - psi_prev),
// W' = (I + W)/2 when lambda_min(W) <= -1/3 (the even ring) else W. One message and one buffer
// (psi_prev, which is x_prev - eta g_prev folded into one vector).
#include <vector>

#include "core/algorithm/methods.h"
#include "core/algorithm/whole_vector_method.h"

namespace gut::core {
namespace {

// psi^{t+1} = x^t - eta g^t, phi = psi^{t+1} + x^t - psi^t, x^{t+1} = W' phi with psi^0 = x^0.
// For W' = W this is D²'s x^{t+1} = W(2x^t - x^{t-1} - eta g^t + eta g^{t-1}).
template <typename T>
class D2 final : public detail::WholeVectorMethod<T> {
 public:
  D2(bool lazy, absl::Span<const T> x0, double self_weight)
      : detail::WholeVectorMethod<T>("d2", x0, self_weight), lazy_(lazy), psi_(x0.begin(), x0.end()) {}
  int persistent_buffers() const override { return 1; }

  void LocalStep(const T* __restrict g, T lr) override {
    T* __restrict v = this->send_.data();
    T* __restrict psi = psi_.data();
    const T* __restrict x = this->x_.data();
    for (size_t k = 0; k < this->x_.size(); ++k) {
      const T p = x[k] - lr * g[k];
      v[k] = p + x[k] - psi[k];
      psi[k] = p;
    }
  }
  void Combine(int, const T* r, T) override {
    const RawMix<T> mix = lazy_ ? RawMix<T>::Lazy(this->w_self_) : RawMix<T>::Plain(this->w_self_);
    mix.Apply(this->send_.data(), r, this->x_.data(), this->x_.size());
  }

 private:
  void VisitMethodState(StateVisitor<T>* v) override { v->Values("psi", &psi_); }
  // psi := x is D²'s start (psi^0 = x^0): the first step after the change is plain diffusion.
  void RestartTracking() override { psi_ = this->x_; }

  bool lazy_;
  std::vector<T> psi_;
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeD2(bool lazy, absl::Span<const T> x0, double self_weight) {
  return std::make_unique<D2<T>>(lazy, x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeD2(bool, absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeD2(bool, absl::Span<const double>, double);

}  // namespace gut::core
