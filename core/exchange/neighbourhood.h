// Neighbourhood: one agent's view of the gossip exchange. The algorithm hands it the messages it
// sends in a round and gets back the mixing-weighted sum (or the individual copies) of what its
// neighbours sent in the same round. Implementations: InProcessExchange (the simulator, tests) and
// the gRPC exchange of services/ (the daemon). The algorithm cannot tell them apart.
//
// Contract (checked by tests/core/neighbourhood_conformance_test.cc for every implementation):
//  * A round r has `slots` numbered 0, 1, ...; slot k carries at most one message per sender per
//    neighbour. Methods that send one message per round use slot 0 only; methods that send two
//    (gradient tracking, momentum tracking, NGM, CGA) use slots 0 and 1.
//  * Broadcast(r, k, m) sends m to every neighbour; SendTo(r, k, j, m) sends to neighbour index j
//    only (for per-neighbour messages such as cross-gradients or relays). On return `m` holds what
//    the receivers will decode: identical for a lossless codec, the decoded value for a lossy one,
//    so that the sender can keep its public copy bit-identical to its neighbours' replicas.
//    Sending never blocks on the receivers.
//  * ReceiveWeightedSum(r, k, out) waits until every neighbour's slot-k message of round r is in,
//    then writes sum_j w_ij m_j. The sum runs in neighbour-list order, so the result is
//    bit-reproducible; the receiver applies w_ij, the sender never pre-scales. ReceiveEach hands the
//    individual messages over in neighbour-list order. Each (round, slot) is received once.
//  * Messages for future rounds are buffered; a message for a round already received is an error.
//  * Waiting has a deadline; when it passes the call returns DEADLINE_EXCEEDED naming the
//    neighbours still missing. Nothing ever waits forever.
// One agent thread calls these methods; implementations are internally synchronised.
#ifndef GUT_CORE_EXCHANGE_NEIGHBOURHOOD_H_
#define GUT_CORE_EXCHANGE_NEIGHBOURHOOD_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace gut::core {

struct NeighbourInfo {
  int rank = 0;
  double weight = 0;  // w_ij
};

// Slots 0 .. kMaxSlots - 1 exist. The last one is reserved for Algorithm::Rebase (a one-off
// exchange after the graph changed, in the round training resumes at).
constexpr int kMaxSlots = 8;
constexpr int kRebaseSlot = kMaxSlots - 1;

template <typename T>
class Neighbourhood {
 public:
  virtual ~Neighbourhood() = default;

  virtual int rank() const = 0;
  virtual double self_weight() const = 0;  // w_ii
  virtual const std::vector<NeighbourInfo>& neighbours() const = 0;
  int degree() const { return static_cast<int>(neighbours().size()); }

  // ||x_i||, the agent's model, before each round: the scale against which received messages are
  // judged (core/exchange/message_guard.h). Drivers call it; an exchange without a guard ignores it.
  virtual void NoteModelNorm(double norm) {}

  virtual absl::Status Broadcast(int64_t round, int slot, absl::Span<T> message) = 0;
  virtual absl::Status SendTo(int64_t round, int slot, int neighbour_index,
                              absl::Span<T> message) = 0;
  virtual absl::Status ReceiveWeightedSum(int64_t round, int slot, absl::Span<T> out) = 0;
  virtual absl::Status ReceiveEach(
      int64_t round, int slot,
      const std::function<void(int neighbour_index, absl::Span<const T> message)>& fn) = 0;

  // Bytes this agent has put on the wire so far (as an fp32 transport would), and received.
  virtual int64_t bytes_sent() const = 0;
  virtual int64_t bytes_received() const = 0;
  // What the same messages would have taken as plain fp32 (4 bytes per value per receiver): the
  // denominator of the compression ratio.
  virtual int64_t raw_bytes_sent() const = 0;
};

}  // namespace gut::core

#endif  // GUT_CORE_EXCHANGE_NEIGHBOURHOOD_H_
