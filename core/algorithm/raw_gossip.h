// RawGossip: the mixing step of the baselines that gossip whole vectors rather than replica
// differences (docs/algorithms.md §2): an agent sends v and forms w_ii v + sum_j w_ij v_j from what it
// received. Broadcast leaves in v what the receivers decoded, so with a lossy codec the self term
// uses the same (compressed) value every neighbour holds. No error feedback: these methods send
// what their papers send, and the lossy codecs are meant for the GUT family.
#ifndef GUT_CORE_ALGORITHM_RAW_GOSSIP_H_
#define GUT_CORE_ALGORITHM_RAW_GOSSIP_H_

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/exchange/neighbourhood.h"

namespace gut::core {

template <typename T>
struct RawMix {
  // out = a v + b r, where r = sum_j w_ij v_j: plain W for (a, b) = (w_ii, 1), the lazy
  // (I + W)/2 for ((1 + w_ii)/2, 1/2).
  T a, b;
  static RawMix Plain(double self_weight) { return {static_cast<T>(self_weight), T(1)}; }
  static RawMix Lazy(double self_weight) {
    return {static_cast<T>((1 + self_weight) / 2), static_cast<T>(0.5)};
  }
  // `out` may be `v` (in place): each element is read before it is written.
  void Apply(const T* v, const T* __restrict r, T* out, size_t n) const {
    for (size_t k = 0; k < n; ++k) out[k] = a * v[k] + b * r[k];
  }
};

// One plain gossip round x <- Wx in two phases (the final averaging of §1.6): phase 0 copies x
// into `send` and broadcasts it, phase 1 receives and mixes. `send` must keep its contents
// between the phases; `recv` is scratch.
template <typename T>
absl::Status RawGossipPhase(int phase, int64_t round, Neighbourhood<T>* nbh, double self_weight,
                            std::vector<T>* x, std::vector<T>* send, std::vector<T>* recv) {
  if (phase == 0) {
    send->assign(x->begin(), x->end());
    return nbh->Broadcast(round, 0, absl::MakeSpan(*send));
  }
  recv->resize(x->size());
  if (auto s = nbh->ReceiveWeightedSum(round, 0, absl::MakeSpan(*recv)); !s.ok()) return s;
  RawMix<T>::Plain(self_weight).Apply(send->data(), recv->data(), x->data(), x->size());
  return absl::OkStatus();
}

// Receives every neighbour's slot-`slot` message of `round` into (*out)[j], j the neighbour index
// (`out` is resized to the degree). A message that is not n values long is refused with
// "<what> from neighbour j has m values, expected n"; nothing after it is copied.
template <typename T>
absl::Status ReceiveCopies(Neighbourhood<T>* nbh, int64_t round, int slot, size_t n, absl::string_view what,
                           std::vector<std::vector<T>>* out) {
  out->resize(nbh->degree());
  absl::Status bad;
  auto s = nbh->ReceiveEach(round, slot, [&](int j, absl::Span<const T> m) {
    if (!bad.ok()) return;
    if (m.size() != n) {
      bad = absl::InvalidArgumentError(
          absl::StrCat(what, " from neighbour ", j, " has ", m.size(), " values, expected ", n));
      return;
    }
    (*out)[j].assign(m.begin(), m.end());
  });
  return s.ok() ? bad : s;
}

// The driver's scratch if it lends one of the right size, else `own` (sized on first use).
template <typename T>
absl::Span<T> ScratchOr(absl::Span<T> lent, std::vector<T>* own, size_t n) {
  if (lent.size() == n) return lent;
  if (own->size() != n) own->assign(n, T(0));
  return absl::MakeSpan(*own);
}

}  // namespace gut::core

#endif  // GUT_CORE_ALGORITHM_RAW_GOSSIP_H_
