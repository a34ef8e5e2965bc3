// MessageGuard: the receiving agent's plausibility check of every neighbour message, shared by
// InProcessExchange (gut-sim) and the gRPC exchange, so a cluster and gut-sim refuse the same
// messages and stay bit-identical. A participant that is broken, buggy or hostile must not be able
// to poison a run silently: the gossip of the GUT and DSGD families accumulates every message into
// the receiver's replicas for good, so one forged update would stay in them for the rest of the run.
//
// A message m_j from neighbour j in slot s is refused when
//   * it holds NaN or infinity                                  (non_finite)
//   * ||m_j|| > kHuge * ||x_i||, the receiver's own model          (implausible: a model difference
//     or a neighbour's whole model a hundred times the size of the receiver's model is nonsense;
//     relayed sums of RelaySGD stay below n times a model, and n <= 64 in every shipped graph)
//   * it is exactly zero while the receiver's own message is not negligible, over kTiny * ||x_i||
//     (zero: a training step or a gossip correction is never exactly zero in float; a blanked or
//     forged message is).
// A refused message is replaced by the receiver's own message of the same round and slot (the
// neighbour is taken to have done what the receiver did: self-centred, the safe choice for the
// differences of replica gossip and for whole vectors alike), and the caller counts and logs it
// against the sender. The scale is the receiver's own model, which the driver hands over before
// every round (Neighbourhood::NoteModelNorm); without it (unit tests that drive an algorithm by
// hand) only non-finite messages are refused.
//
// Why nothing tighter: a neighbour's honest step can jump by any factor relative to the receiver's
// own step or to its own previous ones (a dropped neighbour re-bases one side of a ring first; the
// drop test's survivors do exactly that), and a guard that refuses an honest message keeps refusing
// its successors. Bounded influence of a plausible but hostile neighbour is exchange.robust: clip.
// The guard keeps no history, so checkpoints and recovery need nothing from it, and a cluster and
// gut-sim (which run it on the same decoded messages) refuse the same ones.
//
// Thread-safety: none; the agent thread that sends and receives owns it.
#ifndef GUT_CORE_EXCHANGE_MESSAGE_GUARD_H_
#define GUT_CORE_EXCHANGE_MESSAGE_GUARD_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "core/exchange/neighbourhood.h"

namespace gut::core {

enum class Implausible { kNone, kNonFinite, kZero, kTooLarge };

// The label of gut_agent_frames_rejected_total and of the logs.
inline const char* ImplausibleName(Implausible why) {
  switch (why) {
    case Implausible::kNonFinite: return "non_finite";
    case Implausible::kZero: return "zero";
    case Implausible::kTooLarge: return "implausible";
    case Implausible::kNone: break;
  }
  return "none";
}

struct GuardVerdict {
  Implausible why = Implausible::kNone;
  double norm = 0;   // ||m_j|| (NaN when non-finite)
  double bound = 0;  // the bound it broke (kTooLarge)
  std::string reason;  // one phrase for logs and errors
};

// The L2 norm in double; NaN or infinity when a value is not finite.
template <typename T>
double MessageNorm(absl::Span<const T> m) {
  double s = 0;
  for (T x : m) s += static_cast<double>(x) * static_cast<double>(x);
  return std::sqrt(s);
}

template <typename T>
class MessageGuard {
 public:
  static constexpr double kHuge = 100;
  static constexpr double kTiny = 1e-6;

  // ||x_i|| before the round (0: unknown; then only non-finite messages are refused).
  void NoteModelNorm(double norm) { model_norm_ = std::isfinite(norm) ? norm : 0.0; }

  // The receiver's own message of a round in `slot` to neighbour index `target` (-1: to all), as
  // the receivers decode it; called before that round's messages in `slot` are received.
  void Sent(int slot, int target, absl::Span<const T> m) {
    if (target < 0) {  // a broadcast replaces whatever went to single neighbours in the slot
      for (auto it = own_.lower_bound({slot, -1}); it != own_.end() && it->first.first == slot;) it = own_.erase(it);
    }
    Own& o = own_[{slot, target}];
    o.values.assign(m.begin(), m.end());
    o.norm = MessageNorm(m);
  }

  // Neighbour index k's message in `slot`; kNone: accepted.
  GuardVerdict Check(int k, int slot, absl::Span<const T> m) const {
    GuardVerdict v;
    v.norm = MessageNorm(m);
    if (!std::isfinite(v.norm)) {
      v.why = Implausible::kNonFinite;
      v.reason = "it holds NaN or infinity";
      return v;
    }
    if (model_norm_ <= 0) return v;
    if (v.norm > kHuge * model_norm_) {
      v.why = Implausible::kTooLarge;
      v.bound = kHuge * model_norm_;
      v.reason = absl::StrFormat("its norm %.3g is over %gx that of this agent's model (%.3g)", v.norm, kHuge,
                                 model_norm_);
      return v;
    }
    const Own* own = FindOwn(k, slot);
    if (v.norm == 0 && own != nullptr && own->norm > kTiny * model_norm_) {
      v.why = Implausible::kZero;
      v.reason = absl::StrFormat("it is all zeros while this agent's own message has norm %.3g", own->norm);
    }
    return v;
  }

  // A new recovery generation or neighbourhood: neighbour indices start over.
  void Reset() { own_.clear(); }

  // What stands in for a refused message from neighbour index k in `slot`: the receiver's own
  // message (zeros if it sent none in that slot).
  absl::Span<const T> Substitute(int k, int slot, size_t n) {
    const Own* own = FindOwn(k, slot);
    if (own != nullptr && own->values.size() == n) return own->values;
    zeros_.assign(n, T(0));
    return zeros_;
  }

 private:
  struct Own {
    std::vector<T> values;
    double norm = 0;
  };
  const Own* FindOwn(int k, int slot) const {
    auto it = own_.find({slot, k});
    if (it == own_.end()) it = own_.find({slot, -1});
    return it == own_.end() ? nullptr : &it->second;
  }

  double model_norm_ = 0;
  std::map<std::pair<int, int>, Own> own_;  // (slot, target) -> own message
  std::vector<T> zeros_;
};

// Who sent the messages an agent (or every agent of gut-sim) refused, and the first one.
struct RefusalLog {
  std::map<int, int64_t> by_sender;
  std::map<int, int64_t> first_round_of;  // sender -> round of its first refused message
  int first_sender = -1;
  int64_t first_round = -1;

  void Add(int sender, int64_t round) {
    ++by_sender[sender];
    auto [it, fresh] = first_round_of.emplace(sender, round);
    if (!fresh) it->second = std::min(it->second, round);
    if (first_round < 0 || round < first_round || (round == first_round && sender < first_sender)) {
      first_sender = sender;
      first_round = round;
    }
  }
  int64_t From(int sender) const {
    auto it = by_sender.find(sender);
    return it == by_sender.end() ? 0 : it->second;
  }
  int64_t Total() const {
    int64_t total = 0;
    for (const auto& [rank, n] : by_sender) total += n;
    return total;
  }
  void Merge(const RefusalLog& o) {
    for (const auto& [rank, n] : o.by_sender) by_sender[rank] += n;
    for (const auto& [rank, r] : o.first_round_of) {
      auto [it, fresh] = first_round_of.emplace(rank, r);
      if (!fresh) it->second = std::min(it->second, r);
    }
    if (o.first_round >= 0 && (first_round < 0 || o.first_round < first_round ||
                               (o.first_round == first_round && o.first_sender < first_sender))) {
      first_sender = o.first_sender;
      first_round = o.first_round;
    }
  }
};

// The start of a divergence error when messages were refused (empty when none were): the first
// sender is named, since the refusals it causes spread: its receivers drift and their messages
// are refused next.
inline std::string RefusalHint(const RefusalLog& log) {
  if (log.first_sender < 0) return "";
  return absl::StrFormat(
      "implausible messages were refused, the first from agent %d in round %d (%d from it, %d in all; the "
      "receivers' replicas lack the refused steps, which the GUT family's tracking accumulates): a broken or "
      "hostile agent %d, not the learning rate, is the likely cause; otherwise ",
      log.first_sender, log.first_round, log.From(log.first_sender), log.Total(), log.first_sender);
}

// Screens every neighbour's message of one (round, slot): messages[k] is replaced by the
// substitute when refused, and `refused(k, verdict)` is called for each refusal.
template <typename T, typename OnRefused>
void ScreenMessages(MessageGuard<T>* guard, int slot, std::vector<absl::Span<const T>>* messages,
                    OnRefused&& refused) {
  for (size_t k = 0; k < messages->size(); ++k) {
    GuardVerdict v = guard->Check(static_cast<int>(k), slot, (*messages)[k]);
    if (v.why == Implausible::kNone) continue;
    (*messages)[k] = guard->Substitute(static_cast<int>(k), slot, (*messages)[k].size());
    refused(static_cast<int>(k), v);
  }
}

}  // namespace gut::core

#endif  // GUT_CORE_EXCHANGE_MESSAGE_GUARD_H_
