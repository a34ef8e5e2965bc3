// Cross-gradient methods (ALGORITHMS.md §2.8 NGM, §2.9 CGA). A round has three phases:
//   0: send x (slot 0)
//   1: receive the neighbours' models; on this round's own minibatch compute the cross-gradient
//      at every neighbour's model and send it to that neighbour (slot 1); then the self-gradient
//      at x (last, so the logged loss is the agent's own); keep W x
//   2: receive the cross-gradients computed at x by the neighbours on their data; aggregate
//      (NGM: sum_j w_ij g_ji over N+(i); CGA: the per-tensor QP); quasi-global momentum
//      m_hat <- beta m_hat + (1 - beta)(x_prev - x)/eta, d = beta m_hat + g_agg; x <- W x - eta d.
// The neighbours' models and the received cross-gradients are transient (one round).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/algorithm/methods.h"
#include "core/algorithm/raw_gossip.h"

namespace gut::core {

namespace {

// Solves the d x d system a z = b in place (Gaussian elimination, partial pivoting).
bool SolveLinear(std::vector<double> a, std::vector<double> b, size_t d, std::vector<double>* z) {
  for (size_t col = 0; col < d; ++col) {
    size_t piv = col;
    for (size_t r = col + 1; r < d; ++r)
      if (std::abs(a[r * d + col]) > std::abs(a[piv * d + col])) piv = r;
    if (!(std::abs(a[piv * d + col]) > 0)) return false;
    if (piv != col) {
      for (size_t c = 0; c < d; ++c) std::swap(a[col * d + c], a[piv * d + c]);
      std::swap(b[col], b[piv]);
    }
    for (size_t r = col + 1; r < d; ++r) {
      const double f = a[r * d + col] / a[col * d + col];
      for (size_t c = col; c < d; ++c) a[r * d + c] -= f * a[col * d + c];
      b[r] -= f * b[col];
    }
  }
  z->assign(d, 0.0);
  for (size_t r = d; r-- > 0;) {
    double s = b[r];
    for (size_t c = r + 1; c < d; ++c) s -= a[r * d + c] * (*z)[c];
    (*z)[r] = s / a[r * d + r];
  }
  for (double v : *z)
    if (!std::isfinite(v)) return false;
  return true;
}

// min 1/2 v'Qv + c'v subject to v >= lo, Q symmetric positive definite (so the minimiser is
// unique). Up to 12 variables: every active set is tried and the one whose solution satisfies the
// KKT conditions (free variables >= lo, gradient >= 0 on the bound ones) wins; it is exact even
// when Q is nearly singular (M M' with fewer tensor elements than neighbours). Beyond that: cyclic
// coordinate descent.
bool SolveBoxQp(const std::vector<double>& q, const std::vector<double>& c, double lo,
                std::vector<double>* v) {
  const size_t d = c.size();
  if (d == 0) return true;
  auto objective = [&](const std::vector<double>& x) {
    double f = 0;
    for (size_t a = 0; a < d; ++a) {
      double qa = 0;
      for (size_t b = 0; b < d; ++b) qa += q[a * d + b] * x[b];
      f += 0.5 * x[a] * qa + c[a] * x[a];
    }
    return f;
  };
  if (d <= 12) {
    std::vector<double> best;
    double best_f = 0;
    for (uint32_t mask = 0; mask < (1u << d); ++mask) {  // bit set = free variable
      std::vector<size_t> fr;
      for (size_t k = 0; k < d; ++k)
        if (mask >> k & 1) fr.push_back(k);
      std::vector<double> x(d, lo);
      if (!fr.empty()) {
        const size_t m = fr.size();
        std::vector<double> a(m * m), b(m), z;
        for (size_t i = 0; i < m; ++i) {
          b[i] = -c[fr[i]];
          for (size_t k = 0; k < d; ++k)
            if (!(mask >> k & 1)) b[i] -= q[fr[i] * d + k] * lo;
          for (size_t j = 0; j < m; ++j) a[i * m + j] = q[fr[i] * d + fr[j]];
        }
        if (!SolveLinear(a, b, m, &z)) continue;
        bool feasible = true;
        for (size_t i = 0; i < m; ++i) {
          feasible &= z[i] >= lo;
          x[fr[i]] = z[i];
        }
        if (!feasible) continue;
      }
      // Among feasible candidates the KKT point has the lowest objective.
      const double f = objective(x);
      if (best.empty() || f < best_f) {
        best = x;
        best_f = f;
      }
    }
    if (best.empty()) return false;
    *v = best;
    return true;
  }
  for (int sweep = 0; sweep < 2000; ++sweep) {
    double change = 0, scale = 0;
    for (size_t k = 0; k < d; ++k) {
      double s = c[k];
      for (size_t l = 0; l < d; ++l)
        if (l != k) s += q[k * d + l] * (*v)[l];
      const double nv = std::max(lo, -s / q[k * d + k]);
      change = std::max(change, std::abs(nv - (*v)[k]));
      scale = std::max(scale, std::abs(nv));
      (*v)[k] = nv;
    }
    if (!std::isfinite(change)) return false;
    if (change <= 1e-12 * std::max(1.0, scale)) break;
  }
  return true;
}

template <typename T>
bool SolveCgaQpImpl(const std::vector<const T*>& rows, const T* self, size_t len,
                    std::vector<double>* v, T* out) {
  constexpr double kEps = 1e-12, kLo = 0.5;
  const size_t deg = rows.size();
  if (v->size() != deg) v->assign(deg, 1.0);
  // Active rows: the non-zero ones.
  std::vector<size_t> act;
  for (size_t k = 0; k < deg; ++k) {
    bool nz = false;
    for (size_t e = 0; e < len && !nz; ++e) nz = rows[k][e] != 0;
    if (nz) act.push_back(k);
  }
  const size_t d = act.size();
  std::vector<double> q(d * d), c(d), sol(d);
  for (size_t a = 0; a < d; ++a) {
    for (size_t b = a; b < d; ++b) {
      double s = 0;
      for (size_t e = 0; e < len; ++e) s += double(rows[act[a]][e]) * double(rows[act[b]][e]);
      q[a * d + b] = q[b * d + a] = s;
    }
    q[a * d + a] += kEps;
    double s = 0;
    for (size_t e = 0; e < len; ++e) s += double(rows[act[a]][e]) * double(self[e]);
    c[a] = s;
    sol[a] = std::max(kLo, (*v)[act[a]]);
  }
  bool ok = true;
  for (double x : q) ok &= std::isfinite(x);
  for (double x : c) ok &= std::isfinite(x);
  if (ok) ok = SolveBoxQp(q, c, kLo, &sol);
  if (ok) {
    for (size_t a = 0; a < d; ++a) (*v)[act[a]] = sol[a];
    for (size_t k = 0; k < deg; ++k)
      if (std::find(act.begin(), act.end(), k) == act.end()) (*v)[k] = kLo;
  }
  // out = M' v + self with the (new or previous) v.
  for (size_t e = 0; e < len; ++e) {
    double s = double(self[e]);
    for (size_t k = 0; k < deg; ++k) s += (*v)[k] * double(rows[k][e]);
    out[e] = static_cast<T>(s);
  }
  return ok;
}

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

}  // namespace

bool SolveCgaQp(const std::vector<const float*>& rows, const float* self, size_t len,
                std::vector<double>* v, float* out) {
  return SolveCgaQpImpl(rows, self, len, v, out);
}
bool SolveCgaQp(const std::vector<const double*>& rows, const double* self, size_t len,
                std::vector<double>* v, double* out) {
  return SolveCgaQpImpl(rows, self, len, v, out);
}

template <typename T>
std::unique_ptr<Algorithm<T>> MakeCrossGradient(bool cga, double momentum,
                                                std::vector<int64_t> tensor_sizes,
                                                absl::Span<const T> x0, double self_weight) {
  return std::make_unique<CrossGradient<T>>(cga, momentum, std::move(tensor_sizes), x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeCrossGradient(bool, double, std::vector<int64_t>,
                                                             absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeCrossGradient(bool, double, std::vector<int64_t>,
                                                              absl::Span<const double>, double);

}  // namespace gut::core
