// WholeVectorMethod: the shared shape of the bias-correcting baselines that gossip whole vectors
// rather than replica differences (docs/algorithms.md §2.4-2.6: gradient tracking, D², momentum
// tracking). Phase 0 takes the gradient at the agent's own x and sends, phase 1 receives and
// mixes (RunPhase, written once here); the final averaging is plain x <- Wx. Internal to
// core/algorithm.
#ifndef GUT_CORE_ALGORITHM_WHOLE_VECTOR_METHOD_H_
#define GUT_CORE_ALGORITHM_WHOLE_VECTOR_METHOD_H_

#include <algorithm>
#include <string>
#include <vector>

#include "core/algorithm/algorithm.h"
#include "core/algorithm/raw_gossip.h"

namespace gut::core::detail {

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
  void VisitState(StateVisitor<T>* v) override {
    v->Values("x", &x_);
    v->Double("w_self", &w_self_);
    VisitMethodState(v);
  }
  // Whole vectors carry no replica: only the weight and the method's own tracking state change.
  absl::Status Rebase(int64_t, Neighbourhood<T>* nbh) override {
    w_self_ = nbh->self_weight();
    RestartTracking();
    return absl::OkStatus();
  }

 protected:
  virtual void VisitMethodState(StateVisitor<T>* v) = 0;
  // After a rank left: put the tracking variables back into a valid starting state for the
  // survivors (their sum no longer matches what they track).
  virtual void RestartTracking() = 0;

  // Phase 0: the gradient at x, then LocalStep (which fills send_ and the method's state), then
  // the sends (slot 0: send_; slot 1: SecondMessage(), if any). Phase 1: each slot's weighted sum
  // in turn, handed to Combine. The methods only write their arithmetic.
  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) final {
    std::vector<T>* second = SecondMessage();
    const T lr = static_cast<T>(ctx.lr);
    if (phase == 0) {
      absl::Span<T> p = ctx.oracle->point();
      std::copy(x_.begin(), x_.end(), p.begin());
      if (auto s = ctx.oracle->ComputeGradient(); !s.ok()) return s;
      send_.resize(x_.size());
      LocalStep(ctx.oracle->gradient().data(), lr);
      if (auto s = ctx.nbh->Broadcast(ctx.round, 0, absl::MakeSpan(send_)); !s.ok() || second == nullptr) return s;
      return ctx.nbh->Broadcast(ctx.round, 1, absl::MakeSpan(*second));
    }
    const absl::Span<T> r = ScratchOr(ctx.scratch, &recv_, x_.size());
    for (int slot = 0; slot < (second == nullptr ? 1 : 2); ++slot) {
      if (auto s = ctx.nbh->ReceiveWeightedSum(ctx.round, slot, r); !s.ok()) return s;
      Combine(slot, r.data(), lr);
    }
    return absl::OkStatus();
  }

  // g: the round's gradient at x_. Fills send_ (already sized to x_) and updates the state.
  virtual void LocalStep(const T* g, T lr) = 0;
  // The vector sent in slot 1 by the methods that send two messages per round (null: one).
  virtual std::vector<T>* SecondMessage() { return nullptr; }
  // r = sum_j w_ij (neighbour j's message in `slot`), x_.size() values: the mixing step.
  virtual void Combine(int slot, const T* r, T lr) = 0;

  std::string name_;
  double w_self_;
  std::vector<T> x_;
  std::vector<T> send_, recv_;  // transient: the outgoing vector (kept to the next phase), receive
};

}  // namespace gut::core::detail

#endif  // GUT_CORE_ALGORITHM_WHOLE_VECTOR_METHOD_H_
