// Forgery: the drill that plays a broken or hostile agent (gut-agentd and gut-sim
// --inject-forged-updates, the adversary tests and bench/forged_updates.sh): the agent puts forged
// values on the wire instead of its slot-0 messages of `rounds` rounds from `from_round` on, while
// its own state goes on with the honest ones. Modes: "huge" (every value 1e30), "zeros",
// "negate10" (the honest message times -10: plausible, so the message guard lets it through).
#ifndef GUT_CORE_EXCHANGE_FORGERY_H_
#define GUT_CORE_EXCHANGE_FORGERY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"

namespace gut::core {

struct Forgery {
  std::string mode;  // empty: none
  int64_t from_round = 0;
  int64_t rounds = 0;

  bool Active(int64_t round, int slot) const {
    return !mode.empty() && slot == 0 && round >= from_round && round < from_round + rounds;
  }
  // The forged message for an honest one.
  template <typename T>
  void Forge(absl::Span<const T> honest, std::vector<T>* out) const {
    out->assign(honest.begin(), honest.end());
    for (T& v : *out) v = mode == "huge" ? T(1e30) : mode == "zeros" ? T(0) : T(-10) * v;
  }
};

// "MODE:FROM_ROUND:ROUNDS".
inline absl::StatusOr<Forgery> ParseForgery(const std::string& text) {
  std::vector<std::string> p = absl::StrSplit(text, ':');
  Forgery f;
  if (p.size() != 3 || (p[0] != "huge" && p[0] != "zeros" && p[0] != "negate10") ||
      !absl::SimpleAtoi(p[1], &f.from_round) || !absl::SimpleAtoi(p[2], &f.rounds) || f.from_round < 0 ||
      f.rounds < 1) {
    return absl::InvalidArgumentError("expected MODE:FROM_ROUND:ROUNDS with MODE huge, zeros or negate10, "
                                      "FROM_ROUND >= 0 and ROUNDS >= 1, got '" + text + "'");
  }
  f.mode = p[0];
  return f;
}

}  // namespace gut::core

#endif  // GUT_CORE_EXCHANGE_FORGERY_H_
