// AdaptThenCombine: the shared shape of DSGD-ATC, DSGDm (docs/algorithms.md §2.2) and QG-DSGDm of
// Lin et al. (§2.3). The gradient is taken at the agent's own x_i in phase 0, the method's local
// step is applied, and the half-step model is gossiped through the same replica bookkeeping as
// the GUT family (ReplicaGossip), so lossy codecs keep every replica bit-identical here too.
// With exchange.overlap (docs/algorithms.md §12) the order of phase 0 turns round: x itself is sent
// first and the gradient and local step run while the message travels, so the round computes
// x <- W x - eta d(x) (the combine lands on the pre-step copy) instead of x <- W(x - eta d(x)).
// Internal to core/algorithm: the concrete methods live in dsgdm.cc and qg_dsgdm_lin.cc.
#ifndef GUT_CORE_ALGORITHM_ADAPT_THEN_COMBINE_H_
#define GUT_CORE_ALGORITHM_ADAPT_THEN_COMBINE_H_

#include <string>
#include <vector>

#include "core/algorithm/algorithm.h"
#include "core/algorithm/replica_gossip.h"

namespace gut::core::detail {

template <typename T>
class AdaptThenCombine : public Algorithm<T> {
 public:
  AdaptThenCombine(std::string name, bool overlap, absl::Span<const T> x0, double self_weight)
      : name_(std::move(name)), overlap_(overlap), gossip_(x0, self_weight), x_(x0.begin(), x0.end()),
        e_(x0.size()), r_(x0.size()) {}

  std::string name() const override { return name_; }
  absl::Span<const T> params() const override { return x_; }
  double replica_error() const override { return gossip_.RelativeError(x_.data()); }

  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) override {
    if (phase == 0) {
      if (overlap_) {
        gossip_.Difference(x_.data(), e_.data());
        if (auto s = ctx.nbh->Broadcast(ctx.round, 0, absl::MakeSpan(e_)); !s.ok()) return s;
      }
      absl::Span<T> point = ctx.oracle->point();
      std::copy(x_.begin(), x_.end(), point.begin());
      if (auto s = ctx.oracle->ComputeGradient(); !s.ok()) return s;
      LocalStep(ctx.oracle->gradient().data(), static_cast<T>(ctx.lr));
      if (overlap_) return absl::OkStatus();
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

  void VisitState(StateVisitor<T>* v) override {
    v->Values("x", &x_);
    gossip_.VisitState(v);
    VisitMethodState(v);
  }
  absl::Status Rebase(int64_t round, Neighbourhood<T>* nbh) override {
    return gossip_.Rebase(round, nbh, &e_);
  }

 protected:
  // x <- x - eta d for the method's direction d.
  virtual void LocalStep(const T* g, T lr) = 0;
  virtual void AfterCombine(T lr) {}
  virtual void VisitMethodState(StateVisitor<T>* v) = 0;

  std::string name_;
  bool overlap_;  // exchange.overlap: send before the local step, not after it
  ReplicaGossip<T> gossip_;
  std::vector<T> x_;
  std::vector<T> e_, r_;  // transient within a round: the message, the received sum
};

}  // namespace gut::core::detail

#endif  // GUT_CORE_ALGORITHM_ADAPT_THEN_COMBINE_H_
