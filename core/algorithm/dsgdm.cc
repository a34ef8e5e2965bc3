// DSGDm (ALGORITHMS.md §2.2) and QG-DSGDm of Lin et al. (§2.3): adapt, then combine. The gradient
// is taken at the agent's own x_i in phase 0, the local step is applied, and the half-step model
// is gossiped through the same replica bookkeeping as the GUT family.
#include <vector>

#include "core/algorithm/methods.h"
#include "core/algorithm/replica_gossip.h"

namespace gut::core {
namespace {

template <typename T>
class AdaptThenCombine : public Algorithm<T> {
 public:
  AdaptThenCombine(std::string name, absl::Span<const T> x0, double self_weight)
      : name_(std::move(name)), gossip_(x0, self_weight), x_(x0.begin(), x0.end()),
        e_(x0.size()), r_(x0.size()) {}

  std::string name() const override { return name_; }
  absl::Span<const T> params() const override { return x_; }

  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) override {
    if (phase == 0) {
      absl::Span<T> point = ctx.oracle->point();
      std::copy(x_.begin(), x_.end(), point.begin());
      if (auto s = ctx.oracle->ComputeGradient(); !s.ok()) return s;
      LocalStep(ctx.oracle->gradient().data(), static_cast<T>(ctx.lr));
      gossip_.Difference(x_.data(), e_.data());
      return ctx.nbh->Broadcast(ctx.round, 0, absl::MakeSpan(e_));
    }
    if (auto s = ctx.nbh->ReceiveWeightedSum(ctx.round, 0, absl::MakeSpan(r_)); !s.ok()) return s;
    gossip_.AbsorbAndCombine(e_.data(), r_.data(), x_.data());
    AfterCombine(static_cast<T>(ctx.lr));
    return absl::OkStatus();
  }

  absl::Status RunGossipPhase(int phase, int64_t round, Neighbourhood<T>* nbh) override {
    return gossip_.GossipPhase(phase, round, nbh, &x_, &e_, &r_);
  }

 protected:
  // x <- x - eta d for the method's direction d.
  virtual void LocalStep(const T* g, T lr) = 0;
  virtual void AfterCombine(T lr) {}

  std::string name_;
  ReplicaGossip<T> gossip_;
  std::vector<T> x_;
  std::vector<T> e_, r_;
};

template <typename T>
class Dsgdm final : public AdaptThenCombine<T> {
 public:
  Dsgdm(std::string name, double momentum, bool nesterov, absl::Span<const T> x0,
        double self_weight)
      : AdaptThenCombine<T>(std::move(name), x0, self_weight),
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
  T beta_;
  bool nesterov_;
  std::vector<T> m_;
};

template <typename T>
class QgDsgdmLin final : public AdaptThenCombine<T> {
 public:
  QgDsgdmLin(double momentum, double ema, bool nesterov, absl::Span<const T> x0,
             double self_weight)
      : AdaptThenCombine<T>("qg-dsgdm-lin", x0, self_weight),
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
  T beta_, ema_;
  bool nesterov_;
  std::vector<T> mhat_, x_prev_;
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeDsgdm(const std::string& name, double momentum, bool nesterov,
                                        absl::Span<const T> x0, double self_weight) {
  return std::make_unique<Dsgdm<T>>(name, momentum, nesterov, x0, self_weight);
}

template <typename T>
std::unique_ptr<Algorithm<T>> MakeQgDsgdmLin(double momentum, double ema, bool nesterov,
                                             absl::Span<const T> x0, double self_weight) {
  return std::make_unique<QgDsgdmLin<T>>(momentum, ema, nesterov, x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeDsgdm(const std::string&, double, bool,
                                                     absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeDsgdm(const std::string&, double, bool,
                                                      absl::Span<const double>, double);
template std::unique_ptr<Algorithm<float>> MakeQgDsgdmLin(double, double, bool,
                                                          absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeQgDsgdmLin(double, double, bool,
                                                           absl::Span<const double>, double);

}  // namespace gut::core
