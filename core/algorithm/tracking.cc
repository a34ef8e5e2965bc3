// Bias-correcting baselines that gossip whole vectors (ALGORITHMS.md §2.4-2.6): gradient tracking,
// D² / Exact Diffusion and momentum tracking. Each round is two phases: phase 0 takes the gradient
// at the agent's own x and sends, phase 1 receives and mixes. The final averaging is plain x <- Wx.
#include <vector>

#include "core/algorithm/methods.h"
#include "core/algorithm/raw_gossip.h"

namespace gut::core {
namespace {

template <typename T>
class WholeVectorMethod : public Algorithm<T> {
 public:
  WholeVectorMethod(std::string name, absl::Span<const T> x0, double self_weight)
      : name_(std::move(name)), w_self_(self_weight), x_(x0.begin(), x0.end()) {}
  std::string name() const override { return name_; }
  absl::Span<const T> params() const override { return x_; }
  absl::Status RunGossipPhase(int phase, int64_t round, Neighbourhood<T>* nbh) override {
    return RawGossipPhase(phase, round, nbh, w_self_, &x_, &send_, &recv_);
  }

 protected:
  // Writes x into the oracle's point and computes the round's gradient there.
  absl::Status GradientAtX(const RoundContext<T>& ctx) {
    absl::Span<T> p = ctx.oracle->point();
    std::copy(x_.begin(), x_.end(), p.begin());
    return ctx.oracle->ComputeGradient();
  }
  absl::Span<T> Scratch(const RoundContext<T>& ctx) { return ScratchOr(ctx.scratch, &recv_, x_.size()); }

  std::string name_;
  double w_self_;
  std::vector<T> x_;
  std::vector<T> send_, recv_;  // transient: the outgoing vector (kept to the next phase), receive
};

// x^{t+1} = W (x^t - eta y^t); y^{t+1} = W y^t + g^{t+1} - g^t, y^0 = g^0. y_ holds W y^{t-1}
// between rounds (0 before the first), so y^t = y_ + g^t - g_prev.
template <typename T>
class GradientTracking final : public WholeVectorMethod<T> {
 public:
  GradientTracking(absl::Span<const T> x0, double self_weight)
      : WholeVectorMethod<T>("gt", x0, self_weight), y_(x0.size(), T(0)), g_prev_(x0.size(), T(0)) {}
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
  std::vector<T> y_, g_prev_;
};

// Exact Diffusion: psi^{t+1} = x^t - eta g^t, phi = psi^{t+1} + x^t - psi^t, x^{t+1} = W' phi with
// psi^0 = x^0. For W' = W this is D²'s x^{t+1} = W(2x^t - x^{t-1} - eta g^t + eta g^{t-1}).
template <typename T>
class D2 final : public WholeVectorMethod<T> {
 public:
  D2(bool lazy, absl::Span<const T> x0, double self_weight)
      : WholeVectorMethod<T>("d2", x0, self_weight),
        mix_(lazy ? RawMix<T>::Lazy(self_weight) : RawMix<T>::Plain(self_weight)),
        psi_(x0.begin(), x0.end()) {}
  int persistent_buffers() const override { return 1; }

  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) override {
    const size_t n = this->x_.size();
    if (phase == 0) {
      if (auto s = this->GradientAtX(ctx); !s.ok()) return s;
      const T* __restrict g = ctx.oracle->gradient().data();
      this->send_.resize(n);
      T* __restrict v = this->send_.data();
      T* __restrict psi = psi_.data();
      const T* __restrict x = this->x_.data();
      const T lr = static_cast<T>(ctx.lr);
      for (size_t k = 0; k < n; ++k) {
        const T p = x[k] - lr * g[k];
        v[k] = p + x[k] - psi[k];
        psi[k] = p;
      }
      return ctx.nbh->Broadcast(ctx.round, 0, absl::MakeSpan(this->send_));
    }
    const absl::Span<T> r = this->Scratch(ctx);
    if (auto s = ctx.nbh->ReceiveWeightedSum(ctx.round, 0, r); !s.ok()) return s;
    mix_.Apply(this->send_.data(), r.data(), this->x_.data(), n);
    return absl::OkStatus();
  }

 private:
  RawMix<T> mix_;
  std::vector<T> psi_;
};

// u = beta u + g; d = u - c; x <- W x - eta d; c <- W (c - u) + u (c^0 = 0, u^{-1} = 0).
// c_ holds q = c - u while the messages are in flight, so d = -q.
template <typename T>
class MomentumTracking final : public WholeVectorMethod<T> {
 public:
  MomentumTracking(double momentum, absl::Span<const T> x0, double self_weight)
      : WholeVectorMethod<T>("mt", x0, self_weight), beta_(static_cast<T>(momentum)),
        u_(x0.size(), T(0)), c_(x0.size(), T(0)) {}
  int persistent_buffers() const override { return 2; }

  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) override {
    const size_t n = this->x_.size();
    if (phase == 0) {
      if (auto s = this->GradientAtX(ctx); !s.ok()) return s;
      const T* __restrict g = ctx.oracle->gradient().data();
      T* __restrict u = u_.data();
      T* __restrict c = c_.data();
      const T beta = beta_;
      for (size_t k = 0; k < n; ++k) {
        u[k] = beta * u[k] + g[k];
        c[k] -= u[k];
      }
      this->send_.assign(this->x_.begin(), this->x_.end());
      if (auto s = ctx.nbh->Broadcast(ctx.round, 0, absl::MakeSpan(this->send_)); !s.ok()) return s;
      return ctx.nbh->Broadcast(ctx.round, 1, absl::MakeSpan(c_));
    }
    const absl::Span<T> r = this->Scratch(ctx);
    const RawMix<T> mix = RawMix<T>::Plain(this->w_self_);
    if (auto s = ctx.nbh->ReceiveWeightedSum(ctx.round, 0, r); !s.ok()) return s;
    {
      const T* __restrict v = this->send_.data();
      const T* __restrict rr = r.data();
      const T* __restrict q = c_.data();
      T* __restrict x = this->x_.data();
      const T lr = static_cast<T>(ctx.lr);
      for (size_t k = 0; k < n; ++k) x[k] = mix.a * v[k] + rr[k] + lr * q[k];
    }
    if (auto s = ctx.nbh->ReceiveWeightedSum(ctx.round, 1, r); !s.ok()) return s;
    {
      const T* __restrict rr = r.data();
      const T* __restrict u = u_.data();
      T* __restrict c = c_.data();
      for (size_t k = 0; k < n; ++k) c[k] = mix.a * c[k] + rr[k] + u[k];
    }
    return absl::OkStatus();
  }

 private:
  T beta_;
  std::vector<T> u_, c_;
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeGradientTracking(absl::Span<const T> x0, double self_weight) {
  return std::make_unique<GradientTracking<T>>(x0, self_weight);
}
template <typename T>
std::unique_ptr<Algorithm<T>> MakeD2(bool lazy, absl::Span<const T> x0, double self_weight) {
  return std::make_unique<D2<T>>(lazy, x0, self_weight);
}
template <typename T>
std::unique_ptr<Algorithm<T>> MakeMomentumTracking(double momentum, absl::Span<const T> x0,
                                                   double self_weight) {
  return std::make_unique<MomentumTracking<T>>(momentum, x0, self_weight);
}

#define GUT_INSTANTIATE(T)                                                                        \
  template std::unique_ptr<Algorithm<T>> MakeGradientTracking(absl::Span<const T>, double);       \
  template std::unique_ptr<Algorithm<T>> MakeD2(bool, absl::Span<const T>, double);               \
  template std::unique_ptr<Algorithm<T>> MakeMomentumTracking(double, absl::Span<const T>, double);
GUT_INSTANTIATE(float)
GUT_INSTANTIATE(double)
#undef GUT_INSTANTIATE

}  // namespace gut::core
