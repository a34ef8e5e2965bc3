// Fuzz target: bytes from a peer, as the receiving agent handles them. Parse a PeerFrame; feed
// round frames to a MessageAssembler with the limits a LeNet-sized run sets; decode every message
// that completes with the run's codec. Oracle: no crash, no sanitizer report, memory bounded by the
// limits, and every verdict is one of the outcomes the exchange knows.
#include <cstddef>
#include <cstdint>

#include "core/codec/codec.h"
#include "services/frame_assembly.h"

namespace {

gut::services::AssemblyLimits Limits() {
  gut::services::AssemblyLimits l;
  l.chunk_bytes = 4096;
  l.max_elements = 1024;
  l.max_message_bytes = 1024 * 8 + 4096;
  l.max_buffered_bytes = 16 * l.max_message_bytes;
  l.max_buffered_messages = 64;
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The input is a sequence of frames, each after a two-byte little-endian length.
  gut::services::MessageAssembler a(Limits());
  gut::core::CodecOptions o;
  o.kind = gut::core::CodecKind::kFp32;
  const gut::core::Codec codec(o, 1);
  int64_t last = -1;
  size_t pos = 0;
  while (pos + 2 <= size) {
    const size_t len = std::min<size_t>(data[pos] | (data[pos + 1] << 8), size - pos - 2);
    pos += 2;
    gut::v1::PeerFrame f;
    if (!f.ParseFromArray(data + pos, static_cast<int>(len))) {
      pos += len;
      continue;
    }
    pos += len;
    if (!f.has_round()) continue;
    const auto v = a.Add(f.mutable_round(), last);
    if (v.outcome == gut::services::MessageAssembler::Outcome::kComplete) {
      const int64_t round = f.round().round();
      const int slot = f.round().slot();
      if (!a.Ready(round, slot)) __builtin_trap();
      const auto m = a.Take(round, slot);
      std::vector<float> out(m.elements);
      (void)codec.Decode(m.bytes, absl::MakeSpan(out), 1, {round, slot, -1});
      last = round;
    }
    if (a.buffered_bytes() > Limits().max_buffered_bytes) __builtin_trap();
  }
  return 0;
}
