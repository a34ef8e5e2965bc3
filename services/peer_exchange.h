// GrpcExchange: core's Neighbourhood over gRPC, one bidirectional Peer.Exchange stream per graph
// edge (the lower rank dials). The daemon hands it to the same core::Algorithm gut-sim runs.
//
// Wire behaviour (proto/gut/v1/peer.proto):
//  * Each side opens with a Hello; the acceptor checks run id, protocol version, parameter-layout
//    hash, codec and that the sender is one of its neighbours, and refuses anything else with a
//    logged, counted error (the run goes on). Only then are round frames accepted.
//  * A message is encoded once (the codec, then optional zstd framing), cut into chunks of at most
//    StreamTuning::chunk_bytes, each with a CRC-32, and kept until the receiver acknowledges the
//    complete (round, slot). After a broken stream the dialer reconnects with exponential backoff
//    and both sides resend everything unacknowledged; the receiver drops duplicates.
//  * Reactions never block: they take one short mutex, copy bytes and queue frames. One write is in
//    flight per stream; the next starts from OnWriteDone. Finish is called exactly once, never
//    with a write pending, and a client stream holds itself open until it decides to finish.
//  * Every wait has a deadline (DEADLINE_EXCEEDED names the missing neighbours).
// Byte counters: bytes_sent()/bytes_received() count encoded payload bytes (as InProcessExchange
// does); Stats() also has whole-frame bytes per peer as they go through gRPC.
#ifndef GUT_SERVICES_PEER_EXCHANGE_H_
#define GUT_SERVICES_PEER_EXCHANGE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/codec/codec.h"
#include "core/exchange/neighbourhood.h"
#include "gut/v1/peer.grpc.pb.h"
#include "services/grpc_options.h"

namespace gut::services {

struct PeerAddress {
  int rank = 0;
  double weight = 0;
  std::string address;  // host:port of its Peer service
};

struct GrpcExchangeOptions {
  std::string run_id;
  int rank = 0;
  double self_weight = 0;
  std::vector<PeerAddress> neighbours;  // the order fixes the summation order
  uint64_t layout_hash = 0;
  int64_t num_params = 0;  // bounds the size of an incoming message
  core::CodecOptions codec;
  uint64_t codec_seed = 0;  // the run seed; the agent's stream is derived as in InProcessExchange
  absl::Duration deadline = absl::Seconds(60);
  StreamTuning tuning;
  uint32_t incarnation = 0;
};

// Why frames or streams were refused (the label of gut_agent_frames_rejected_total).
enum class Reject {
  kRunId, kVersion, kLayout, kCodec, kNotNeighbour, kProtocol, kChecksum, kSize, kStale,
  kDuplicate, kOverflow, kNotReady, kCount
};
const char* RejectName(Reject r);

// The wire name of a codec (hello, round frames, hyperparameters).
gut::v1::Codec WireCodec(core::CodecKind kind);

struct PeerStats {
  int rank = 0;
  bool connected = false;
  int64_t frame_bytes_sent = 0, frame_bytes_received = 0;
  int64_t payload_bytes_sent = 0, payload_bytes_received = 0;
  int64_t connects = 0;  // successful handshakes (the first one plus reconnects)
};

struct ExchangeStats {
  std::vector<PeerStats> peers;  // neighbour order
  int64_t unacknowledged = 0;    // frames kept for resending
};

class ExchangeCore;  // peer_exchange.cc
class PeerStream;

// The Peer service of one agent process. Register it with the server before the agent knows its
// neighbours; until an exchange attaches, hellos are refused with UNAVAILABLE (dialers retry).
// It must outlive the grpc::Server it is registered with.
class PeerService final : public gut::v1::Peer::CallbackService {
 public:
  PeerService() = default;
  grpc::ServerBidiReactor<gut::v1::PeerFrame, gut::v1::PeerFrame>* Exchange(
      grpc::CallbackServerContext* context) override;

  void CountReject(Reject r) { rejected_[static_cast<int>(r)].fetch_add(1); }
  int64_t rejected(Reject r) const { return rejected_[static_cast<int>(r)].load(); }

 private:
  friend class GrpcExchange;
  friend class PeerStream;
  absl::Mutex mu_;
  ExchangeCore* exchange_ ABSL_GUARDED_BY(mu_) = nullptr;  // while attached
  std::atomic<int64_t> rejected_[static_cast<int>(Reject::kCount)] = {};
};

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
  absl::Status Broadcast(int64_t round, int slot, absl::Span<float> message) override;
  absl::Status SendTo(int64_t round, int slot, int neighbour_index,
                      absl::Span<float> message) override;
  absl::Status ReceiveWeightedSum(int64_t round, int slot, absl::Span<float> out) override;
  absl::Status ReceiveEach(
      int64_t round, int slot,
      const std::function<void(int neighbour_index, absl::Span<const float> message)>& fn) override;
  int64_t bytes_sent() const override;
  int64_t bytes_received() const override;

  // Waits until every neighbour is connected (deadline: error naming who is missing).
  absl::Status WaitConnected(absl::Duration timeout);
  // Waits until every message sent so far has been acknowledged.
  absl::Status Flush(absl::Duration timeout);
  // Closes every stream (draining queued frames first) and detaches from the service.
  void Shutdown(absl::Duration timeout);
  ExchangeStats Stats() const;
  // Seconds the caller has spent waiting in Receive* so far.
  double wait_seconds() const;


 private:
  explicit GrpcExchange(std::unique_ptr<ExchangeCore> core);
  std::unique_ptr<ExchangeCore> core_;
  bool leak_core_ = false;  // streams outlived Shutdown: the core is never freed
};

}  // namespace gut::services

#endif  // GUT_SERVICES_PEER_EXCHANGE_H_
