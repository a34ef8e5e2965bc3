// GrpcExchange: core's Neighbourhood over gRPC, one bidirectional Peer.Exchange stream per graph
// edge (the lower rank dials). The daemon hands it to the same core::Algorithm gut-sim runs.
//
// Wire behaviour (proto/gut/v1/peer.proto, docs/protocol.md):
//  * Each side opens with a Hello; the acceptor checks run id, protocol version, parameter-layout
//    hash, codec, the recovery generation, that the sender is one of its neighbours and, with TLS,
//    that its certificate is the one bound to that rank. Anything else is refused with a logged,
//    counted reason that reveals nothing of ours; the run goes on.
//  * A message is encoded once (the codec, then optional zstd), cut into chunks of at most
//    StreamTuning::chunk_bytes with a CRC-32 each (frame_assembly.h), and kept until the receiver
//    acknowledges it; after a broken stream the dialer reconnects with exponential backoff and
//    everything unacknowledged is resent; the receiver drops duplicates.
//  * Every wait has a deadline: exchange.deadline_s for a connected neighbour, the peer-loss grace
//    for one that is down or said goodbye. Interrupt() ends any wait at once (a rollback, a stop).
//  * Every decoded message passes core's MessageGuard (the same check gut-sim makes): one that holds
//    NaN or infinity, is all zeros, or is implausibly large is replaced by this agent's own message,
//    counted (gut_agent_frames_rejected_total{reason}, per neighbour in Stats()) and logged against
//    its sender; the run goes on.
// Byte counters: bytes_sent()/bytes_received() count encoded payload bytes (as InProcessExchange
// does); Stats() also has whole-frame bytes and wait time per neighbour.
// Threads: one agent thread calls the Neighbourhood methods, Reset and Shutdown; Interrupt and
// Stats may be called from any thread.
#ifndef GUT_SERVICES_GRPC_EXCHANGE_H_
#define GUT_SERVICES_GRPC_EXCHANGE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/exchange/message_guard.h"
#include "core/exchange/neighbourhood.h"
#include "services/exchange_core.h"
#include "services/peer_service.h"

namespace gut::services {

class GrpcExchange final : public core::Neighbourhood<float> {
 public:
  // Attaches to `service` (which must outlive the exchange) and starts dialing the neighbours
  // with a higher rank. Returns at once; connections come up in the background.
  static absl::StatusOr<std::unique_ptr<GrpcExchange>> Create(GrpcExchangeOptions options,
                                                              PeerService* service);
  ~GrpcExchange() override;  // Shutdown(5 s) if not done

  int rank() const override;
  double self_weight() const override;
  const std::vector<core::NeighbourInfo>& neighbours() const override;
  void NoteModelNorm(double norm) override { guard_.NoteModelNorm(norm); }
  absl::Status Broadcast(int64_t round, int slot, absl::Span<float> message) override;
  absl::Status SendTo(int64_t round, int slot, int neighbour_index, absl::Span<float> message) override;
  absl::Status ReceiveWeightedSum(int64_t round, int slot, absl::Span<float> out) override;
  absl::Status ReceiveEach(
      int64_t round, int slot,
      const std::function<void(int neighbour_index, absl::Span<const float> message)>& fn) override;
  int64_t bytes_sent() const override;
  int64_t bytes_received() const override;
  int64_t raw_bytes_sent() const override;

  // Waits until every neighbour is connected (deadline: error naming who is missing).
  absl::Status WaitConnected(absl::Duration timeout);
  // Waits until every message sent so far has been acknowledged.
  absl::Status Flush(absl::Duration timeout);
  // Tells every connected neighbour that this agent is leaving on purpose.
  void SayGoodbye(const std::string& reason, int64_t rounds);
  // Any thread: every current and future wait returns `why` until Reset.
  void Interrupt(absl::Status why);
  // Any thread: the coordinator judges these missing ranks; see ExchangeCore::CoordinatorJudging.
  void CoordinatorJudging(std::vector<int> missing, absl::Time fresh_until);
  // A new recovery generation, with the (possibly changed) neighbourhood; see ExchangeCore::Reset.
  void Reset(uint64_t generation, std::vector<PeerAddress> neighbours, double self_weight, int64_t next_round);
  // Closes every stream (draining queued frames first) and detaches from the service.
  void Shutdown(absl::Duration timeout);
  ExchangeStats Stats() const;
  // The messages this agent refused, by sender, and the first (any thread).
  core::RefusalLog Refusals() const {
    absl::MutexLock l(&refused_mu_);
    return refusals_;
  }
  // Seconds the caller has spent waiting in Receive* so far.
  double wait_seconds() const;
  // Counters a checkpoint restores, so that the totals continue.
  void RestoreByteCounters(int64_t sent, int64_t received, int64_t raw_sent);

 private:
  explicit GrpcExchange(std::shared_ptr<ExchangeCore> core) : core_(std::move(core)) {}
  absl::Status SendMessage(int64_t round, int slot, int target, absl::Span<float> message);
  // The decoded messages of (round, slot) after the guard, in neighbour order.
  std::vector<absl::Span<const float>> Screened(int64_t round, int slot);

  std::shared_ptr<ExchangeCore> core_;
  // The agent thread only.
  core::MessageGuard<float> guard_;
  std::vector<float> forged_;
  mutable absl::Mutex refused_mu_;  // a leaf lock: Stats() reads what the agent thread counts
  // By sender rank, so counts follow a neighbour across a changed neighbourhood.
  core::RefusalLog refusals_ ABSL_GUARDED_BY(refused_mu_);
  std::map<int, absl::Time> last_logged_ ABSL_GUARDED_BY(refused_mu_);  // sender rank -> last log line
};

}  // namespace gut::services

#endif  // GUT_SERVICES_GRPC_EXCHANGE_H_
