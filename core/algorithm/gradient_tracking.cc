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

  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) override {
    const size_t n = this->x_.size();
    if (phase == 0) {
      if (auto s = this->GradientAtX(ctx); !s.ok()) return s;
      const T* __restrict g = ctx.oracle->gradient().data();
      this->send_.resize(n);
      T* __restrict v = this->send_.data();
      T* __restrict y = y_.data();
      T* __restrict gp = g_prev_.data();
      const T* __restrict x = this->x_.data();
      const T lr = static_cast<T>(ctx.lr);
      for (size_t k = 0; k < n; ++k) {
        y[k] += g[k] - gp[k];
        gp[k] = g[k];
        v[k] = x[k] - lr * y[k];
      }
      if (auto s = ctx.nbh->Broadcast(ctx.round, 0, absl::MakeSpan(this->send_)); !s.ok()) return s;
      return ctx.nbh->Broadcast(ctx.round, 1, absl::MakeSpan(y_));
    }
    const absl::Span<T> r = this->Scratch(ctx);
    const RawMix<T> mix = RawMix<T>::Plain(this->w_self_);
    if (auto s = ctx.nbh->ReceiveWeightedSum(ctx.round, 0, r); !s.ok()) return s;
    mix.Apply(this->send_.data(), r.data(), this->x_.data(), n);
    if (auto s = ctx.nbh->ReceiveWeightedSum(ctx.round, 1, r); !s.ok()) return s;
    mix.Apply(y_.data(), r.data(), y_.data(), n);
    return absl::OkStatus();
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
