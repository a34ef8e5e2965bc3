// PeerStream: one live Peer.Exchange stream, the client (dialing) or the server (accepting) side,
// as a gRPC callback-API reactor. It owns its write queue and keeps the callback rules:
//  * one write in flight; the next starts from OnWriteDone;
//  * Finish (server) / RemoveHold (client) exactly once, never with a write pending and never
//    while a Start* call is being issued by another thread;
//  * reactions never block: they hand each frame to the exchange core (one short lock) and apply
//    the StreamActions it returns, the same way on both sides (ApplyActions).
// Lifetime: a stream owns itself (self_) from creation until its last reaction (OnDone); it holds
// the exchange core it belongs to by shared_ptr, so the core outlives every stream that can still
// touch it (no core is ever leaked or freed early). Lock order: PeerService::mu_, then
// ExchangeCore::mu_, then PeerStream::smu_ (never the other way round).
#ifndef GUT_SERVICES_PEER_STREAM_H_
#define GUT_SERVICES_PEER_STREAM_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gut/v1/peer.grpc.pb.h"
#include "services/peer_wire.h"

namespace gut::services {

class ExchangeCore;
class PeerService;
class PeerStream;

// What a reaction does after the core handled a frame, outside the core's lock.
struct StreamActions {
  std::vector<FramePtr> send;               // frames for this stream
  bool kick = false;                        // frames were queued on this stream under the lock
  std::shared_ptr<PeerStream> close_other;  // a stream this one replaces
  bool refuse = false;                      // end this stream with `refusal`
  grpc::Status refusal;
};

class PeerStream {
 public:
  virtual ~PeerStream() = default;

  // Queues a frame and starts writing (any thread, never blocks). Dropped once the stream is
  // closing: unacknowledged round frames stay with the edge and go out on the next stream.
  void Send(FramePtr f);
  // Queues without touching gRPC (safe under the core's lock, which fixes the order of frames).
  void Enqueue(FramePtr f);
  // Starts writing the queue if no write is in flight.
  void Kick();

  // Ends the stream. kDrain sends what is queued first; kDiscard drops the queue and finishes
  // with `why` (a server's refusal reaches the client this way); kCancel also cancels the call (a
  // client's only way to refuse; a stuck peer), even one already draining.
  enum class Mode { kDrain, kDiscard, kCancel };
  void Close(const grpc::Status& why, Mode mode);
  // kDrain for OK, else the side's way of refusing (server: finish with the status; client: cancel).
  void Close(const grpc::Status& why);

  bool is_client() const { return client_; }
  const std::string& peer() const { return peer_; }
  // The TLS identity the other side presented (empty on a plaintext connection).
  std::string PeerIdentity() const;
  std::string DebugState();
  // The service closed this stream before its hello and counted why (hello timeout, admission):
  // the failed read that follows is not counted again.
  void MarkRefusedBeforeHello() { refused_before_hello_ = true; }
  std::shared_ptr<PeerStream> self() { return self_; }
  absl::Time created() const { return created_; }

  // Guarded by ExchangeCore::mu_.
  int edge = -1;           // attached edge, once the hellos are exchanged
  int expected_edge = -1;  // client streams: the edge this stream dialed
  bool hello_seen = false;

 protected:
  PeerStream(bool client, PeerService* service);

  virtual void DoWrite(const gut::v1::PeerFrame* f) = 0;
  virtual void DoRead() = 0;
  virtual void DoFinish(const grpc::Status& s, bool graceful) = 0;
  virtual void DoCancel() = 0;
  virtual const grpc::AuthContext* Auth() const = 0;

  // The reaction to a frame that was read: hand it to the core, apply what it says, read on.
  void OnFrame();
  void ApplyActions(StreamActions& a);
  void ReadNext();
  void WriteDone(bool ok);
  void ReadFailed();
  // Leaves a Start* call (or just re-checks) and finishes the stream if it is time.
  void EndCall(bool entered = true);
  // The last reaction: detach from the core, then let go of ourselves.
  void Done(const grpc::Status& s);

  const bool client_;
  PeerService* const service_;
  const absl::Time created_ = absl::Now();
  std::string peer_;
  gut::v1::PeerFrame in_;
  std::shared_ptr<ExchangeCore> core_;  // set once the stream belongs to an exchange
  std::shared_ptr<PeerStream> self_;
  std::atomic<bool> refused_before_hello_{false};

 private:
  absl::Mutex smu_;
  std::deque<FramePtr> queue_ ABSL_GUARDED_BY(smu_);
  FramePtr current_;  // the frame being written (alive until OnWriteDone)
  bool writing_ ABSL_GUARDED_BY(smu_) = false;
  bool closing_ ABSL_GUARDED_BY(smu_) = false;
  bool finished_ ABSL_GUARDED_BY(smu_) = false;
  bool read_failed_ ABSL_GUARDED_BY(smu_) = false;
  int in_call_ ABSL_GUARDED_BY(smu_) = 0;
  grpc::Status close_status_ ABSL_GUARDED_BY(smu_);
};

// Dials one neighbour: `core` owns the edge, `stub` its channel's stub; `hello` opens the stream.
void StartClientStream(std::shared_ptr<ExchangeCore> core, int edge,
                       std::shared_ptr<gut::v1::Peer::Stub> stub, const gut::v1::PeerFrame& hello);

// The reactor of an accepted stream (PeerService::Exchange).
grpc::ServerBidiReactor<gut::v1::PeerFrame, gut::v1::PeerFrame>* StartServerStream(
    PeerService* service, grpc::CallbackServerContext* context);

}  // namespace gut::services

#endif  // GUT_SERVICES_PEER_STREAM_H_
