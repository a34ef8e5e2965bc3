// CrossGradient: the round shared by NGM (docs/algorithms.md §2.8, ngm.cc) and CGA (§2.9,
// cga.cc). A round has three phases:
//   0: send x (slot 0)
//   1: receive the neighbours' models; on this round's own minibatch compute the cross-gradient
//      at every neighbour's model and send it to that neighbour (slot 1); then the self-gradient
//      at x (last, so the logged loss is the agent's own); keep W x
//   2: receive the cross-gradients computed at x by the neighbours on their data; aggregate
//      (NGM: sum_j w_ij g_ji over N+(i); CGA: the per-tensor QP); quasi-global momentum
//      m_hat <- beta m_hat + (1 - beta)(x_prev - x)/eta, d = beta m_hat + g_agg; x <- W x - eta d.
// The neighbours' models and the received cross-gradients are transient (one round). Internal to
// core/algorithm.
#ifndef GUT_CORE_ALGORITHM_CROSS_GRADIENT_METHOD_H_
#define GUT_CORE_ALGORITHM_CROSS_GRADIENT_METHOD_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/algorithm/methods.h"
#include "core/algorithm/raw_gossip.h"

namespace gut::core::detail {

template <typename T>
class CrossGradient final : public Algorithm<T> {
 public:
  CrossGradient(bool cga, double momentum, std::vector<int64_t> tensor_sizes,
                absl::Span<const T> x0, double self_weight)
      : cga_(cga), beta_(static_cast<T>(momentum)), w_self_(self_weight),
        tensors_(std::move(tensor_sizes)), x_(x0.begin(), x0.end()) {
    if (tensors_.empty()) tensors_.push_back(static_cast<int64_t>(x0.size()));
    if (momentum != 0) {
      mhat_.assign(x0.size(), T(0));
      x_prev_.assign(x0.begin(), x0.end());
    }
  }
  std::string name() const override { return cga_ ? "cga" : "ngm"; }
  int phases() const override { return 3; }
  absl::Span<const T> params() const override { return x_; }
  int persistent_buffers() const override { return mhat_.empty() ? 0 : 2; }
  int64_t solver_fallbacks() const override { return qp_failures_; }

  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) override {
    const size_t n = x_.size();
    Neighbourhood<T>* nbh = ctx.nbh;
    if (phase == 0) {
      send_.assign(x_.begin(), x_.end());
      return nbh->Broadcast(ctx.round, 0, absl::MakeSpan(send_));
    }
    if (phase == 1) {
      const int deg = nbh->degree();
      if (auto s = ReceiveCopies(nbh, ctx.round, 0, n, absl::StrCat(name(), ": model"), &models_); !s.ok())
        return s;
      // W x in neighbour order (bit-reproducible), kept in send_ until phase 2.
      {
        T* __restrict v = send_.data();
        const T ws = static_cast<T>(w_self_);
        for (size_t e = 0; e < n; ++e) v[e] *= ws;
        for (int j = 0; j < deg; ++j) {
          const T w = static_cast<T>(nbh->neighbours()[j].weight);
          const T* __restrict m = models_[j].data();
          for (size_t e = 0; e < n; ++e) v[e] += w * m[e];
        }
      }
      absl::Span<T> point = ctx.oracle->point();
      for (int j = 0; j < deg; ++j) {
        std::copy(models_[j].begin(), models_[j].end(), point.begin());
        if (auto s = ctx.oracle->ComputeGradient(); !s.ok()) return s;
        const auto g = ctx.oracle->gradient();
        models_[j].assign(g.begin(), g.end());  // the model is no longer needed
        if (auto s = nbh->SendTo(ctx.round, 1, j, absl::MakeSpan(models_[j])); !s.ok()) return s;
      }
      std::copy(x_.begin(), x_.end(), point.begin());
      if (auto s = ctx.oracle->ComputeGradient(); !s.ok()) return s;
      const auto g = ctx.oracle->gradient();
      g_self_.assign(g.begin(), g.end());
      return absl::OkStatus();
    }
    // Phase 2: aggregate into g_self_.
    if (!cga_) {
      const absl::Span<T> r = ScratchOr(ctx.scratch, &recv_, n);
      if (auto s = nbh->ReceiveWeightedSum(ctx.round, 1, r); !s.ok()) return s;
      RawMix<T>::Plain(w_self_).Apply(g_self_.data(), r.data(), g_self_.data(), n);
    } else if (auto s = AggregateCga(ctx); !s.ok()) {
      return s;
    }
    Step(static_cast<T>(ctx.lr));
    return absl::OkStatus();
  }

  absl::Status RunGossipPhase(int phase, int64_t round, Neighbourhood<T>* nbh) override {
    return RawGossipPhase(phase, round, nbh, w_self_, &x_, &send_, &recv_);
  }

  void VisitState(StateVisitor<T>* v) override {
    v->Values("x", &x_);
    v->Values("mhat", &mhat_);
    v->Values("x_prev", &x_prev_);
    v->Double("w_self", &w_self_);
    int64_t tensors = static_cast<int64_t>(v_.size());
    v->Integer("qp_tensors", &tensors);
    v_.resize(static_cast<size_t>(std::max<int64_t>(0, tensors)));
    for (size_t t = 0; t < v_.size(); ++t) v->Doubles(absl::StrCat("qp/", t), &v_[t]);
    v->Integer("qp_failures", &qp_failures_);
    v->Value("lr_prev", &lr_prev_);
    v->Flag("first", &first_);
  }
  // Models and cross-gradients travel whole every round; only the weights change, and CGA's warm
  // start (one value per neighbour) starts over.
  absl::Status Rebase(int64_t, Neighbourhood<T>* nbh) override {
    w_self_ = nbh->self_weight();
    v_.clear();
    return absl::OkStatus();
  }

 private:
  absl::Status AggregateCga(const RoundContext<T>& ctx) {
    const size_t n = x_.size();
    const int deg = ctx.nbh->degree();
    if (auto s = ReceiveCopies(ctx.nbh, ctx.round, 1, n, "cga: cross-gradient", &received_); !s.ok()) return s;
    // pi = 1/(deg + 1): scale every gradient, then solve per tensor.
    const T pi = static_cast<T>(1.0 / (deg + 1));
    for (auto& r : received_)
      for (T& v : r) v *= pi;
    for (T& v : g_self_) v *= pi;
    if (v_.size() != tensors_.size()) v_.assign(tensors_.size(), std::vector<double>(deg, 1.0));
    size_t off = 0;
    std::vector<const T*> rows(deg);
    for (size_t t = 0; t < tensors_.size(); ++t) {
      const size_t len = static_cast<size_t>(tensors_[t]);
      for (int j = 0; j < deg; ++j) rows[j] = received_[j].data() + off;
      if (!SolveCgaQp(rows, g_self_.data() + off, len, &v_[t], g_self_.data() + off)) ++qp_failures_;
      off += len;
    }
    return absl::OkStatus();
  }

  // g_self_ holds the aggregated gradient, send_ holds W x.
  void Step(T lr) {
    const size_t n = x_.size();
    T* __restrict x = x_.data();
    const T* __restrict g = g_self_.data();
    const T* __restrict wx = send_.data();
    if (mhat_.empty()) {
      for (size_t e = 0; e < n; ++e) x[e] = wx[e] - lr * g[e];
    } else {
      T* __restrict mh = mhat_.data();
      T* __restrict xp = x_prev_.data();
      const T beta = beta_, one_minus = T(1) - beta_, eta_prev = first_ ? lr : lr_prev_;
      for (size_t e = 0; e < n; ++e) {
        mh[e] = beta * mh[e] + one_minus * (xp[e] - x[e]) / eta_prev;
        const T d = beta * mh[e] + g[e];
        xp[e] = x[e];
        x[e] = wx[e] - lr * d;
      }
    }
    lr_prev_ = lr;
    first_ = false;
  }

  bool cga_;
  T beta_;
  double w_self_;
  std::vector<int64_t> tensors_;
  std::vector<T> x_, mhat_, x_prev_;
  std::vector<T> send_, recv_, g_self_;           // transient
  std::vector<std::vector<T>> models_, received_;  // transient, one per neighbour
  std::vector<std::vector<double>> v_;             // CGA: last QP solution per tensor
  int64_t qp_failures_ = 0;
  T lr_prev_ = 0;
  bool first_ = true;
};

}  // namespace gut::core::detail

#endif  // GUT_CORE_ALGORITHM_CROSS_GRADIENT_METHOD_H_
