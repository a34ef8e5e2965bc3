// ReplicaGossip: the gossip bookkeeping shared by every method of docs/algorithms.md §1.3 family.
// It keeps the agent's public copy x̂_i (what its neighbours hold of it) and the weighted sum of
// the neighbours' copies s_i = sum_{j in N(i)} w_ij x̂_j, so that only model *differences* travel:
//   send   e = x - x̂  (on return of the send, e is what the neighbours decoded)
//   absorb x̂ += e, s += r with r = sum_j w_ij e_j
//   G_k    = s_k - (1 - w_ii) x̂_k   ( = (W x)_i - x_i  for a lossless codec)
// With a lossy codec x̂ advances by the decoded value, so x - x̂ carries the compression error into
// the next message (error feedback) and all replicas stay bit-identical.
#ifndef GUT_CORE_ALGORITHM_REPLICA_GOSSIP_H_
#define GUT_CORE_ALGORITHM_REPLICA_GOSSIP_H_

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/checkpoint/state_bundle.h"
#include "core/exchange/neighbourhood.h"

namespace gut::core {

template <typename T>
class ReplicaGossip {
 public:
  // Every agent starts from the same x0, so s = sum_j w_ij x0 = (1 - w_ii) x0 needs no exchange.
  ReplicaGossip(absl::Span<const T> x0, double self_weight)
      : w_self_(static_cast<T>(self_weight)),
        c_(static_cast<T>(1.0 - self_weight)),
        xhat_(x0.begin(), x0.end()),
        s_(x0.size()) {
    for (size_t k = 0; k < x0.size(); ++k) s_[k] = c_ * x0[k];
  }

  size_t size() const { return xhat_.size(); }
  void VisitState(StateVisitor<T>* v) {
    v->Values("xhat", &xhat_);
    v->Values("s", &s_);
    v->Value("w_self", &w_self_);
    v->Value("c", &c_);
  }
  // Re-bases on a changed neighbourhood (a dropped rank): every agent broadcasts its public copy
  // x̂ once more; as with any message the sender keeps what the receivers decoded, so replicas
  // stay identical under a lossy codec (the difference joins the error feedback x - x̂). Then
  // s = sum_j w_ij x̂_j with the new weights. `buf` is scratch of the model's size.
  absl::Status Rebase(int64_t round, Neighbourhood<T>* nbh, std::vector<T>* buf) {
    w_self_ = static_cast<T>(nbh->self_weight());
    c_ = static_cast<T>(1.0 - nbh->self_weight());
    buf->assign(xhat_.begin(), xhat_.end());
    if (auto s = nbh->Broadcast(round, kRebaseSlot, absl::MakeSpan(*buf)); !s.ok()) return s;
    xhat_.assign(buf->begin(), buf->end());
    return nbh->ReceiveWeightedSum(round, kRebaseSlot, absl::MakeSpan(s_));
  }
  T self_weight() const { return w_self_; }
  T c() const { return c_; }
  T* xhat() { return xhat_.data(); }
  T* s() { return s_.data(); }

  // ||x - x̂|| / ||x|| (0 when x is 0).
  double RelativeError(const T* x) const {
    double d = 0, nx = 0;
    const T* xh = xhat_.data();
    for (size_t k = 0; k < xhat_.size(); ++k) {
      const double e = static_cast<double>(x[k]) - static_cast<double>(xh[k]);
      d += e * e;
      nx += static_cast<double>(x[k]) * static_cast<double>(x[k]);
    }
    return nx > 0 ? std::sqrt(d / nx) : 0.0;
  }

  // e = x - x̂
  void Difference(const T* __restrict x, T* __restrict e) const {
    const T* __restrict xh = xhat_.data();
    for (size_t k = 0; k < xhat_.size(); ++k) e[k] = x[k] - xh[k];
  }
  // One phase of a plain gossip round x <- x + G (x <- W x for a lossless codec; the final
  // averaging of docs/algorithms.md §1.6): phase 0 sends e = x - x̂, phase 1 receives and combines.
  // `e` must keep its contents between the two phases; `r` is scratch.
  absl::Status GossipPhase(int phase, int64_t round, Neighbourhood<T>* nbh, std::vector<T>* x,
                           std::vector<T>* e, std::vector<T>* r) {
    if (phase == 0) {
      e->resize(x->size());
      Difference(x->data(), e->data());
      return nbh->Broadcast(round, 0, absl::MakeSpan(*e));
    }
    r->resize(x->size());
    if (auto s = nbh->ReceiveWeightedSum(round, 0, absl::MakeSpan(*r)); !s.ok()) return s;
    AbsorbAndCombine(e->data(), r->data(), x->data());
    return absl::OkStatus();
  }

  // x̂ += e, s += r, then x += G (the plain combine step x <- W x for a lossless codec).
  void AbsorbAndCombine(const T* __restrict e, const T* __restrict r, T* __restrict x) {
    T* __restrict xh = xhat_.data();
    T* __restrict s = s_.data();
    const T c = c_;
    for (size_t k = 0; k < xhat_.size(); ++k) {
      xh[k] += e[k];
      s[k] += r[k];
      x[k] += s[k] - c * xh[k];
    }
  }

 private:
  T w_self_, c_;
  std::vector<T> xhat_, s_;
};

}  // namespace gut::core

#endif  // GUT_CORE_ALGORITHM_REPLICA_GOSSIP_H_
