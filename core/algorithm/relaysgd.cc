// RelaySGD of Vogels et al. (docs/algorithms.md §2.7) on a spanning tree, in the author group's form: after a local
// momentum step x_half = x - eta m, agent i sends each tree neighbour j
//   M_{i->j} = x_half + sum_{k in N(i)\{j}} M_{k->i} (last round's),   c_{i->j} = 1 + sum c_{k->i}
// and sets x = (x_half + sum_j M_{j->i}) / (1 + sum_j c_{j->i}). Relayed sums reach every agent
// of the tree after diam rounds, so the division by the count averages over the whole network
// without a doubly stochastic W. The counts travel in slot 1 as one value and are rounded to
// integers on arrival, so a lossy codec's small error on that value does not matter (bf16 holds
// integers up to 256 exactly; int8 and top-k send a single value with its own scale).
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/algorithm/methods.h"
#include "core/algorithm/raw_gossip.h"

namespace gut::core {
namespace {

template <typename T>
class RelaySgd final : public Algorithm<T> {
 public:
  RelaySgd(double momentum, absl::Span<const T> x0)
      : beta_(static_cast<T>(momentum)), x_(x0.begin(), x0.end()) {
    if (momentum != 0) m_.assign(x0.size(), T(0));
  }
  std::string name() const override { return "relaysgd"; }
  absl::Span<const T> params() const override { return x_; }
  // One stored relay message per tree neighbour, plus the momentum buffer.
  int persistent_buffers() const override {
    return static_cast<int>(in_.size()) + (m_.empty() ? 0 : 1);
  }

  absl::Status RunPhase(int phase, const RoundContext<T>& ctx) override {
    if (phase == 0) {
      if (auto s = Gradient(ctx); !s.ok()) return s;
      return SendRelays(ctx.round, ctx.nbh, x_);
    }
    return ReceiveAndAverage(ctx.round, ctx.nbh, x_);
  }

  void VisitState(StateVisitor<T>* v) override {
    v->Values("x", &x_);
    v->Values("m", &m_);
    int64_t relays = static_cast<int64_t>(in_.size());
    v->Integer("relays", &relays);
    in_.resize(static_cast<size_t>(std::max<int64_t>(0, relays)));
    for (size_t j = 0; j < in_.size(); ++j) v->Values(absl::StrCat("relay/", j), &in_[j]);
    v->Integers("relay_counts", &count_in_);
    v->Values("frozen", &frozen_);
  }
  // The relays sum over a fixed spanning tree; without a rank the tree falls apart.
  absl::Status Rebase(int64_t, Neighbourhood<T>*) override {
    return absl::FailedPreconditionError(
        "relaysgd relays over a fixed spanning tree and cannot continue without a rank; use "
        "fault.on_peer_loss: fail with it");
  }

  // The final averaging relays the models as training left them (frozen, no step): once the
  // relayed sums have crossed the tree (its diameter in rounds), every agent holds the exact
  // average of all final models.
  absl::Status RunGossipPhase(int phase, int64_t round, Neighbourhood<T>* nbh) override {
    if (frozen_.empty()) frozen_ = x_;
    if (phase == 0) return SendRelays(round, nbh, frozen_);
    return ReceiveAndAverage(round, nbh, frozen_);
  }

 private:
  absl::Status Gradient(const RoundContext<T>& ctx) {
    absl::Span<T> p = ctx.oracle->point();
    std::copy(x_.begin(), x_.end(), p.begin());
    if (auto s = ctx.oracle->ComputeGradient(); !s.ok()) return s;
    const T* __restrict g = ctx.oracle->gradient().data();
    T* __restrict x = x_.data();
    const size_t n = x_.size();
    const T lr = static_cast<T>(ctx.lr);
    if (m_.empty()) {
      for (size_t k = 0; k < n; ++k) x[k] -= lr * g[k];
    } else {
      T* __restrict m = m_.data();
      const T beta = beta_;
      for (size_t k = 0; k < n; ++k) {
        m[k] = beta * m[k] + g[k];
        x[k] -= lr * m[k];
      }
    }
    return absl::OkStatus();
  }

  // `own` is this agent's value (x_half in training). Before the first round nothing was
  // received: M = 0, c = 0.
  absl::Status SendRelays(int64_t round, Neighbourhood<T>* nbh, const std::vector<T>& own) {
    const int deg = nbh->degree();
    const size_t n = x_.size();
    if (in_.empty()) {
      in_.assign(deg, std::vector<T>(n, T(0)));
      count_in_.assign(deg, 0);
    }
    out_.resize(n);
    for (int j = 0; j < deg; ++j) {
      std::copy(own.begin(), own.end(), out_.begin());
      int64_t count = 1;
      for (int k = 0; k < deg; ++k) {
        if (k == j) continue;
        const T* __restrict m = in_[k].data();
        T* __restrict o = out_.data();
        for (size_t e = 0; e < n; ++e) o[e] += m[e];
        count += count_in_[k];
      }
      T c[1] = {static_cast<T>(count)};
      if (auto s = nbh->SendTo(round, 0, j, absl::MakeSpan(out_)); !s.ok()) return s;
      if (auto s = nbh->SendTo(round, 1, j, absl::MakeSpan(c, 1)); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // x = (own + sum_j M_{j->i}) / (1 + sum_j c_{j->i}).
  absl::Status ReceiveAndAverage(int64_t round, Neighbourhood<T>* nbh, const std::vector<T>& own) {
    const size_t n = x_.size();
    if (auto s = ReceiveCopies(nbh, round, 0, n, "relaysgd: relay message", &in_); !s.ok()) return s;
    absl::Status bad;
    if (auto s = nbh->ReceiveEach(round, 1, [&](int j, absl::Span<const T> m) {
          const double c = m.size() == 1 ? std::round(static_cast<double>(m[0])) : -1;
          if (!(c >= 1)) {
            bad = absl::InvalidArgumentError(absl::StrCat("relaysgd: bad relay count from neighbour ", j));
            return;
          }
          count_in_[j] = static_cast<int64_t>(c);
        });
        !s.ok()) {
      return s;
    }
    if (!bad.ok()) return bad;
    int64_t total = 1;
    for (int64_t c : count_in_) total += c;
    if (&own != &x_) x_ = own;
    T* __restrict x = x_.data();
    for (const auto& m : in_) {
      const T* __restrict mm = m.data();
      for (size_t e = 0; e < n; ++e) x[e] += mm[e];
    }
    const T inv = T(1) / static_cast<T>(total);
    for (size_t e = 0; e < n; ++e) x[e] *= inv;
    return absl::OkStatus();
  }

  T beta_;
  std::vector<T> x_, m_;
  std::vector<std::vector<T>> in_;  // M_{j->i} of the last round, per neighbour
  std::vector<int64_t> count_in_;   // c_{j->i}
  std::vector<T> out_;              // transient
  std::vector<T> frozen_;           // the final models, relayed by the final averaging
};

}  // namespace

template <typename T>
std::unique_ptr<Algorithm<T>> MakeRelaySgd(double momentum, absl::Span<const T> x0,
                                           double /*self_weight*/) {
  return std::make_unique<RelaySgd<T>>(momentum, x0);
}

template std::unique_ptr<Algorithm<float>> MakeRelaySgd(double, absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeRelaySgd(double, absl::Span<const double>, double);

}  // namespace gut::core
