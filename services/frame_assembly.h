// Framing of round messages, with no gRPC in it (unit-tested on its own, and fuzzed):
//  * the sending side cuts one encoded message into Round frames of at most `chunk_bytes` payload
//    bytes, each with a CRC-32 of its payload;
//  * the receiving side (one MessageAssembler per neighbour) checks every frame against the
//    bounds of the run, reassembles the chunks, and tells the caller what to do: keep waiting,
//    acknowledge a complete message, count a stale or duplicate frame, or refuse the stream.
// A MessageAssembler never allocates more than the bounds allow (messages ahead, bytes buffered)
// and never trusts a size field. Not thread-safe: the exchange calls it under its lock.
#ifndef GUT_SERVICES_FRAME_ASSEMBLY_H_
#define GUT_SERVICES_FRAME_ASSEMBLY_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/peer_wire.h"

namespace gut::services {

uint32_t Crc32(absl::string_view bytes);

struct RoundHeader {
  int64_t round = 0;
  int slot = 0;
  uint64_t sequence = 0;
  gut::v1::Codec codec = gut::v1::CODEC_FP32;
  gut::v1::Framing framing = gut::v1::FRAMING_NONE;
  uint64_t elements = 0;  // values the message decodes to
};

// Cuts `bytes` (consumed: a single-chunk message takes it over without a copy) into frames.
std::vector<FramePtr> CutIntoFrames(const RoundHeader& header, std::string* bytes, size_t chunk_bytes);

struct AssemblyLimits {
  gut::v1::Codec codec = gut::v1::CODEC_FP32;
  gut::v1::Framing framing = gut::v1::FRAMING_NONE;
  uint64_t chunk_bytes = 1 << 20;
  uint64_t max_message_bytes = 0;  // an encoded message is never larger
  uint64_t max_elements = 0;       // the model's parameter count
  int max_slots = 8;
  int64_t max_rounds_ahead = 64;        // a correct peer is at most a few rounds ahead
  size_t max_buffered_messages = 64;    // partial and complete, per neighbour
  uint64_t max_buffered_bytes = 0;      // partial and complete, per neighbour
};

struct CompleteMessage {
  std::string bytes;
  uint64_t elements = 0;
  absl::Time arrived;  // when its last chunk came in (the receiver's per-neighbour wait time)
};

class MessageAssembler {
 public:
  enum class Outcome {
    kPartial,           // a chunk of a message that is not complete yet
    kComplete,          // the message is complete: acknowledge it
    kStale,             // a round already taken (a resend after a reconnect): acknowledge, drop
    kDuplicateMessage,  // a complete message seen again: acknowledge, drop
    kDuplicateChunk,    // a chunk seen again: drop
    kRefused,           // out of bounds or inconsistent: refuse the stream
  };
  struct Verdict {
    Outcome outcome = Outcome::kPartial;
    Reject reason = Reject::kProtocol;  // kRefused, kStale, kDuplicate*: what to count
    std::string detail;                 // kRefused: what was wrong, for the log
    bool ack() const {
      return outcome == Outcome::kComplete || outcome == Outcome::kStale ||
             outcome == Outcome::kDuplicateMessage;
    }
  };

  explicit MessageAssembler(AssemblyLimits limits) : limits_(limits) {}

  // `last_taken` is the last round of this slot the receiver has already taken (-1: none).
  // The frame's payload is moved out when it can be. `now` stamps a message that completes.
  Verdict Add(gut::v1::Round* frame, int64_t last_taken, absl::Time now = absl::Now());

  bool Ready(int64_t round, int slot) const { return ready_.count({round, slot}) != 0; }
  // The complete message of (round, slot); the caller checked Ready. Partial copies of that
  // slot at or before `round` are dropped: they can never complete.
  CompleteMessage Take(int64_t round, int slot);
  void Clear();
  uint64_t buffered_bytes() const { return buffered_bytes_; }
  size_t buffered_messages() const { return partial_.size() + ready_.size(); }

 private:
  struct Partial {
    std::string bytes;
    uint64_t elements = 0;
    std::vector<bool> have;
    uint32_t got = 0;
  };
  using Key = std::pair<int64_t, int>;  // (round, slot)
  Verdict Refuse(Reject why, std::string detail) const;

  AssemblyLimits limits_;
  std::map<Key, Partial> partial_;
  std::map<Key, CompleteMessage> ready_;
  uint64_t buffered_bytes_ = 0;
};

}  // namespace gut::services

#endif  // GUT_SERVICES_FRAME_ASSEMBLY_H_
