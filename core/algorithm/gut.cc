// GUT family, following the reference code's memory-efficient form (docs/algorithms.md §1.3).
// All work is two fused element-wise passes over the flat vectors, one before the gradient
// (bookkeeping and the gossiped point z = x + G) and one after it (tracking and the SGD step),
// so the method adds no pass over memory that DSGD does not already make.
#include <algorithm>
#include <vector>

#include "core/algorithm/methods.h"
#include "core/algorithm/replica_gossip.h"

namespace gut::core {
namespace {

template <typename T>
class GutFamily final : public Algorithm<T> {
 public:
  GutFamily(const GutOptions& o, absl::Span<const T> x0, double self_weight)
      : name_(o.name),
        beta_(static_cast<T>(o.momentum)),
        mu_(static_cast<T>(o.mu)),
        tracking_(o.mu != 0 || o.force_tracking),
        direct_(o.direct_consensus && o.momentum != 0),
        overlap_(o.overlap),
        gossip_(x0, self_weight),
        x_(x0.begin(), x0.end()),
        e_(x0.size()) {
    if (tracking_) delta_prev_.assign(x0.size(), T(0));
    if (o.momentum != 0) m_.assign(x0.size(), T(0));
    if (overlap_) g_.assign(x0.size(), T(0));
  }

  std::string name() const override { return name_; }
  absl::Span<const T> params() const override { return x_; }
  double replica_error() const override { return gossip_.RelativeError(x_.data()); }
  int persistent_buffers() const override {
    return 2 + (tracking_ ? 1 : 0) + (m_.empty() ? 0 : 1) + (overlap_ ? 1 : 0);
  }

  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) override {
    if (phase == 0) {
      // Step 1: send e = x - x̂ (already formed by the previous round's last pass).
      if (!e_current_) gossip_.Difference(x_.data(), e_.data());
      e_current_ = false;
      if (auto s = ctx.nbh->Broadcast(ctx.round, 0, absl::MakeSpan(e_)); !s.ok() || !overlap_) return s;
      // exchange.overlap (docs/algorithms.md §12): the gradient is taken at x itself while the
      // messages travel (not at the mixed point x + G, which needs them); it is kept here because
      // the driver's workspace may not outlive the phase.
      absl::Span<T> point = ctx.oracle->point();
      std::copy(x_.begin(), x_.end(), point.begin());
      if (auto s = ctx.oracle->ComputeGradient(); !s.ok()) return s;
      const absl::Span<const T> g = ctx.oracle->gradient();
      std::copy(g.begin(), g.end(), g_.begin());
      return absl::OkStatus();
    }
    const absl::Span<T> r = ctx.scratch.size() == x_.size() ? ctx.scratch : OwnScratch();
    if (auto s = ctx.nbh->ReceiveWeightedSum(ctx.round, 0, r); !s.ok()) return s;
    if (first_) {
      eta_prev_ = static_cast<T>(ctx.lr);
    }
    if (overlap_) {
      PassBeforeGradient<false>(r.data(), nullptr);
      PassAfterGradient(g_.data(), static_cast<T>(ctx.lr));
    } else {
      absl::Span<T> point = ctx.oracle->point();
      PassBeforeGradient<true>(r.data(), point.data());
      if (auto s = ctx.oracle->ComputeGradient(); !s.ok()) return s;
      PassAfterGradient(ctx.oracle->gradient().data(), static_cast<T>(ctx.lr));
    }
    eta_prev_ = static_cast<T>(ctx.lr);
    first_ = false;
    e_current_ = true;
    return absl::OkStatus();
  }

  absl::Status RunGossipPhase(int phase, int64_t round, Neighbourhood<T>* nbh) override {
    e_current_ = false;
    return gossip_.GossipPhase(phase, round, nbh, &x_, &e_, &r_);
  }

  void VisitState(StateVisitor<T>* v) override {
    v->Values("x", &x_);
    gossip_.VisitState(v);
    v->Values("e", &e_);
    v->Values("delta_prev", &delta_prev_);
    v->Values("m", &m_);
    v->Value("eta_prev", &eta_prev_);
    v->Flag("first", &first_);
    v->Flag("e_current", &e_current_);
  }

  // The tracking state (delta_prev, m) is the agent's own; only the replicas follow the graph.
  absl::Status Rebase(int64_t round, Neighbourhood<T>* nbh) override {
    e_current_ = false;
    return gossip_.Rebase(round, nbh, &e_);
  }

 private:
  // The received sum's buffer when the driver lends none (allocated on first use only).
  absl::Span<T> OwnScratch() {
    if (r_.size() != x_.size()) r_.assign(x_.size(), T(0));
    return absl::MakeSpan(r_);
  }

  // Steps 2-5: a = r + w_ii e + (1+beta)(s - c x̂) (old x̂, s; stored over e), x̂ += e, s += r,
  // z = x + (s - c x̂). With kPoint false (exchange.overlap) the gradient is already taken and z is
  // not formed.
  template <bool kPoint>
  void PassBeforeGradient(const T* __restrict r, T* __restrict z) {
    const size_t n = x_.size();
    T* __restrict e = e_.data();
    T* __restrict xh = gossip_.xhat();
    T* __restrict s = gossip_.s();
    const T* __restrict x = x_.data();
    const T c = gossip_.c(), wii = gossip_.self_weight(), b = T(1) + beta_;
    if (tracking_) {
      for (size_t k = 0; k < n; ++k) {
        const T ek = e[k], rk = r[k];
        e[k] = rk + wii * ek + b * (s[k] - c * xh[k]);
        xh[k] += ek;
        s[k] += rk;
        if constexpr (kPoint) z[k] = x[k] + (s[k] - c * xh[k]);
      }
    } else {
      for (size_t k = 0; k < n; ++k) {
        xh[k] += e[k];
        s[k] += r[k];
        if constexpr (kPoint) z[k] = x[k] + (s[k] - c * xh[k]);
      }
    }
  }

  // Steps 7-9: delta = g - G/eta_prev, y = delta - (mu/eta_prev) a - mu delta_prev,
  // m = y (first step) or beta m + y, x -= eta m. With direct consensus (direct_): m accumulates
  // y + G/eta_prev and x += eta (G/eta_prev - m), so G enters x once instead of 1/(1 - beta) times.
  // The same pass forms the next round's message e = x - x̂.
  void PassAfterGradient(const T* __restrict g, T lr) {
    const size_t n = x_.size();
    const T* __restrict xh = gossip_.xhat();
    T* __restrict e = e_.data();
    const T* __restrict s = gossip_.s();
    T* __restrict x = x_.data();
    const T c = gossip_.c(), eta_prev = eta_prev_;
    if (tracking_) {
      // a lives in e's buffer: read a[k] before e[k] is overwritten, element by element.
      T* __restrict a = e;
      T* __restrict dp = delta_prev_.data();
      const T mu = mu_, mu_over_eta = mu_ / eta_prev;
      if (m_.empty()) {
        for (size_t k = 0; k < n; ++k) {
          const T d = g[k] - (s[k] - c * xh[k]) / eta_prev;
          const T y = d - mu_over_eta * a[k] - mu * dp[k];
          dp[k] = d;
          x[k] -= lr * y;
          a[k] = x[k] - xh[k];
        }
      } else if (!direct_) {
        T* __restrict m = m_.data();
        const T beta = beta_;
        for (size_t k = 0; k < n; ++k) {
          const T d = g[k] - (s[k] - c * xh[k]) / eta_prev;
          const T y = d - mu_over_eta * a[k] - mu * dp[k];
          dp[k] = d;
          m[k] = first_ ? y : beta * m[k] + y;
          x[k] -= lr * m[k];
          a[k] = x[k] - xh[k];
        }
      } else {
        // Direct consensus: the gossip correction G moves x once; the momentum buffer carries
        // y + G/eta_prev (the gradient and the tracking terms, not G).
        T* __restrict m = m_.data();
        const T beta = beta_;
        for (size_t k = 0; k < n; ++k) {
          const T step = (s[k] - c * xh[k]) / eta_prev;
          const T d = g[k] - step;
          const T y = d - mu_over_eta * a[k] - mu * dp[k];
          dp[k] = d;
          m[k] = first_ ? y + step : beta * m[k] + (y + step);
          x[k] += lr * (step - m[k]);
          a[k] = x[k] - xh[k];
        }
      }
    } else if (m_.empty()) {
      for (size_t k = 0; k < n; ++k) {
        const T d = g[k] - (s[k] - c * xh[k]) / eta_prev;
        x[k] -= lr * d;
        e[k] = x[k] - xh[k];
      }
    } else if (!direct_) {
      T* __restrict m = m_.data();
      const T beta = beta_;
      for (size_t k = 0; k < n; ++k) {
        const T d = g[k] - (s[k] - c * xh[k]) / eta_prev;
        m[k] = first_ ? d : beta * m[k] + d;
        x[k] -= lr * m[k];
        e[k] = x[k] - xh[k];
      }
    } else {
      // Direct consensus without tracking: momentum on the gradient alone, G applied once.
      T* __restrict m = m_.data();
      const T beta = beta_;
      for (size_t k = 0; k < n; ++k) {
        const T step = (s[k] - c * xh[k]) / eta_prev;
        m[k] = first_ ? g[k] : beta * m[k] + g[k];
        x[k] += lr * (step - m[k]);
        e[k] = x[k] - xh[k];
      }
    }
  }

  std::string name_;
  T beta_, mu_;
  bool tracking_;
  // exchange.consensus_step < 1 with momentum (docs/algorithms.md §8.4): the gossip correction
  // bypasses the momentum buffer, as CHOCO-SGD's consensus step does; otherwise the reference form.
  bool direct_;
  // exchange.overlap: the gradient is taken at x in phase 0, before this round's messages arrive.
  bool overlap_;
  ReplicaGossip<T> gossip_;
  std::vector<T> x_;
  std::vector<T> e_, r_;  // transient: outgoing message (then the accumulator a), received sum
  std::vector<T> delta_prev_, m_;
  std::vector<T> g_;  // exchange.overlap only: phase 0's gradient, used in phase 1 (not state)
  T eta_prev_ = T(0);
  bool first_ = true;
  bool e_current_ = false;  // e_ already holds x - x̂ for the next send
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeGutFamily(const GutOptions& o, absl::Span<const T> x0,
                                            double self_weight) {
  return std::make_unique<GutFamily<T>>(o, x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeGutFamily(const GutOptions&, absl::Span<const float>,
                                                         double);
template std::unique_ptr<Algorithm<double>> MakeGutFamily(const GutOptions&,
                                                          absl::Span<const double>, double);

}  // namespace gut::core
