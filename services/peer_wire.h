// Small conversions between core's types and the peer wire contract (proto/gut/v1/peer.proto),
// in one place: codec names, the reasons a frame or stream is refused (the label of
// gut_agent_frames_rejected_total), and the hello an agent opens every stream with.
#ifndef GUT_SERVICES_PEER_WIRE_H_
#define GUT_SERVICES_PEER_WIRE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/codec/codec.h"
#include "gut/v1/peer.pb.h"

namespace gut::services {

using FramePtr = std::shared_ptr<const gut::v1::PeerFrame>;

// Why a frame or a stream was refused. Every refusal is counted under its name.
enum class Reject {
  kRunId,         // hello for another run
  kVersion,       // another protocol version
  kLayout,        // another model (parameter layout hash)
  kCodec,         // another codec or framing
  kNotNeighbour,  // the claimed rank is not a neighbour (or not one that dials us)
  kIdentity,      // TLS identity missing or not the one bound to the claimed rank
  kGeneration,    // another recovery generation (retried once both sides agree)
  kProtocol,      // frame out of order, unknown kind, or unreadable bytes
  kChecksum,      // payload CRC mismatch
  kSize,          // a size or count out of bounds
  kStale,         // a round already received (a resend after a reconnect)
  kDuplicate,     // a chunk or message received twice
  kOverflow,      // too far ahead, or too much buffered
  kNotReady,      // the agent has not joined a run yet, or is shutting down
  kHelloTimeout,  // no hello within the hello timeout
  kTooManyPending,  // too many streams waiting for their hello
  kNonFinite,     // a decoded message holds NaN or infinity (replaced, core/exchange/message_guard.h)
  kZeroMessage,   // a decoded message is all zeros where a real one never is (replaced)
  kImplausible,   // a decoded message is far larger than its sender's last one or ours (replaced)
  kNumerics,      // another run.numerics mode (its bits would differ from this agent's)
  kCount
};
const char* RejectName(Reject r);

// Why a neighbour's stream ended, from gRPC's status code and text, as a phrase for the log: a
// neighbour that "stopped answering" (no keepalive ping answered: hung, paused, or cut off by the
// network) is another fault than one that "closed its connection" (its process exited, was
// killed or restarted); the raw text follows the phrase.
std::string StreamEndCause(int grpc_code, const std::string& message);

// Where two layout descriptions (Hello.layout) first differ, as a phrase for the refusing side's
// log: "tensor 4 differs: here 'parameter fc1.weight [120,400] float32', the peer '...'".
std::string LayoutDifference(const std::vector<std::string>& here, const std::vector<std::string>& peer);

// What an agent computes, as its hello states it: two agents exchange updates only if all agree.
struct Computation {
  uint64_t layout_hash;
  const std::vector<std::string>* layout;
  std::string model_sha256;
  std::string numerics;
  gut::v1::Codec codec;
};
struct Mismatch {
  Reject why;
  std::string message;  // for the refusing side's log: what differs, with the first tensor that does
};
// The first way the hello's sender computes otherwise than `ours` (layout, model file, numerics,
// codec), or nothing.
std::optional<Mismatch> CompareComputation(const gut::v1::Hello& h, const Computation& ours);

// The wire name of a codec (hello, round frames, hyperparameters).
gut::v1::Codec WireCodec(core::CodecKind kind);

}  // namespace gut::services

#endif  // GUT_SERVICES_PEER_WIRE_H_
