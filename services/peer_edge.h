// PeerEdge: everything one agent keeps about one graph neighbour on the wire.
//  * connection: the neighbour's address, whether we dial it (we have the lower rank), our
//    channel to it, the attached stream, a stream still dialing, the reconnect backoff;
//  * sending: every frame sent and not yet acknowledged, resent on the next stream after a break;
//  * receiving: the MessageAssembler that checks and reassembles its frames;
//  * state the operator sees: connected, said goodbye, down since, counters.
// Thread-safety: a PeerEdge has no lock of its own. It is part of the ExchangeCore's state and
// every member is guarded by ExchangeCore::mu_ (see exchange_core.h for the lock order); the core
// calls these methods with that lock held and never hands a PeerEdge out.
#ifndef GUT_SERVICES_PEER_EDGE_H_
#define GUT_SERVICES_PEER_EDGE_H_

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "gut/v1/peer.grpc.pb.h"
#include "services/frame_assembly.h"
#include "services/peer_stream.h"

namespace gut::services {

struct PeerAddress {
  int rank = 0;
  double weight = 0;
  std::string address;   // host:port of its Peer service
  std::string identity;  // the TLS identity (certificate common name) it must present; "" = any
};

struct PeerStats {
  int rank = 0;
  bool connected = false;
  bool left = false;  // said goodbye and has not come back
  int64_t frame_bytes_sent = 0, frame_bytes_received = 0;
  int64_t payload_bytes_sent = 0, payload_bytes_received = 0;
  int64_t connects = 0;       // successful handshakes (the first one plus reconnects)
  double wait_seconds = 0;    // time the agent waited for this neighbour's messages
  int64_t messages_refused = 0;  // its messages the guard refused (core/exchange/message_guard.h)
  // Live streams replaced by a newer one with this neighbour's hello: a reconnect after a break
  // the old stream did not notice yet, or someone else holding the neighbour's certificate.
  int64_t streams_replaced = 0;
};

class PeerEdge {
 public:
  PeerEdge(PeerAddress peer, bool dialer, const AssemblyLimits& limits, int initial_backoff_ms);

  const PeerAddress& peer() const { return peer_; }
  bool dialer() const { return dialer_; }

  // --- connection ---
  // A dialing edge with nothing attached or dialing whose backoff has passed.
  bool DialDue(absl::Time now) const;
  absl::Time next_dial() const { return next_dial_; }
  void SetChannel(std::shared_ptr<grpc::Channel> channel);
  const std::shared_ptr<gut::v1::Peer::Stub>& stub() const { return stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  void SetPending(std::shared_ptr<PeerStream> s) { pending_ = std::move(s); }
  bool has_stream() const { return stream_ != nullptr; }
  const std::shared_ptr<PeerStream>& stream() const { return stream_; }
  const std::shared_ptr<PeerStream>& pending() const { return pending_; }
  // Attaches `s` after both hellos; queues every unacknowledged frame on it. Returns the stream it
  // replaces (the caller closes it outside the lock).
  std::shared_ptr<PeerStream> Attach(std::shared_ptr<PeerStream> s, int initial_backoff_ms);
  // A stream ended. Returns true if it was the attached one (the edge is now down).
  bool StreamEnded(PeerStream* s, int max_backoff_ms);
  void SaidGoodbye() {
    stats_.left = true;
    down_since_ = absl::Now();
  }
  // Connected and not gone: a missing message is late, not lost.
  bool up() const { return stream_ != nullptr && !stats_.left; }
  absl::Time down_since() const { return down_since_; }

  // --- sending ---
  // Keeps `frames` until acknowledged; returns the stream to write them on now (may be null).
  std::shared_ptr<PeerStream> Queue(const std::vector<FramePtr>& frames, int64_t payload_bytes);
  // Acks are cumulative per slot: (round, slot) covers every earlier round of that slot as well,
  // since one stream delivers a slot's messages in order and a reconnect resends every
  // unacknowledged one in order.
  void Acknowledged(int64_t round, int slot);
  size_t unacknowledged() const { return unacked_.size(); }

  // --- acknowledging what we received (delayed: docs/protocol.md "Acknowledgements") ---
  void OweAck(int64_t round, int slot, absl::Time now);
  int owed_acks() const { return owed_count_; }  // complete messages no ack has covered yet
  absl::Time owed_since() const { return owed_since_; }
  // One Ack frame per slot with owed messages (their bytes counted); nothing is owed afterwards.
  std::vector<FramePtr> TakeOwedAcks();

  // --- receiving ---
  MessageAssembler& in() { return in_; }
  const MessageAssembler& in() const { return in_; }
  void CountReceived(int64_t frame_bytes) { stats_.frame_bytes_received += frame_bytes; }
  void CountPayloadReceived(int64_t bytes) { stats_.payload_bytes_received += bytes; }
  void AddWait(double seconds) { stats_.wait_seconds += seconds; }

  // A new recovery generation: nothing sent or received so far counts any more.
  void Forget();

  const PeerStats& stats() const { return stats_; }

 private:
  PeerAddress peer_;
  bool dialer_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<gut::v1::Peer::Stub> stub_;
  std::shared_ptr<PeerStream> stream_;   // attached
  std::shared_ptr<PeerStream> pending_;  // a client stream dialing, not yet attached
  absl::Time next_dial_ = absl::InfinitePast();
  absl::Time down_since_ = absl::Now();
  int backoff_ms_;
  std::deque<FramePtr> unacked_;
  std::map<int, int64_t> owed_;  // slot -> the latest round received and not acknowledged yet
  int owed_count_ = 0;
  absl::Time owed_since_ = absl::InfiniteFuture();
  MessageAssembler in_;
  PeerStats stats_;
};

}  // namespace gut::services

#endif  // GUT_SERVICES_PEER_EDGE_H_
