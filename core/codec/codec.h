// Update codecs: how a model-sized float message is put on the wire (DESIGN.md, issue 3).
//   fp32  lossless, 4 bytes per value
//   bf16  bfloat16 with round-to-nearest-even, 2 bytes per value
//   int8  stochastic rounding against one float32 scale per chunk (max|v| / 127), ~1 byte per value
//   topk  the k largest magnitudes as (uint32 index, float32 value), ascending indices
// optionally followed by zstd framing of the whole payload.
//
// Encode() replaces the values by their decoded form, bit-identical to what Decode() of the same
// bytes yields on any receiver: the sender advances its public copy by exactly what its
// neighbours add, so replicas never drift (error feedback lives in the algorithm's x - x̂).
// Decode() never trusts its input: any size, index or framing mismatch is an error that names the
// codec and what was expected. The randomness of a message (int8's stochastic rounding) is drawn
// from the sender's seed and the message's key (round, slot, receiver), never from a stream that
// advances with every encode: a message depends only on what is sent and where, so a restored
// checkpoint or a replayed round encodes exactly as the first time did. One Codec per sender
// thread (Encode reuses scratch).
#ifndef GUT_CORE_CODEC_CODEC_H_
#define GUT_CORE_CODEC_CODEC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/common/random.h"

namespace gut::core {

enum class CodecKind { kFp32, kBf16, kInt8, kTopK };

struct CodecOptions {
  CodecKind kind = CodecKind::kFp32;
  int int8_chunk = 4096;        // values per int8 scale
  double topk_fraction = 0.01;  // share of values topk keeps (at least 1)
  bool zstd = false;
  int zstd_level = 1;
};

// "fp32", "bf16", "int8", "topk".
absl::StatusOr<CodecKind> ParseCodecKind(const std::string& name);
const char* CodecName(CodecKind kind);

class Codec {
 public:
  Codec(CodecOptions options, uint64_t seed);

  const CodecOptions& options() const { return options_; }
  // Encodes `values` into `out` (replacing its contents) and overwrites `values` with the
  // decoded values. `message_key` (MessageKey) seeds the message's randomness.
  void Encode(absl::Span<float> values, std::string* out, uint64_t message_key = 0);
  // Decodes a payload of exactly out.size() values.
  absl::Status Decode(absl::string_view bytes, absl::Span<float> out) const;

 private:
  void EncodeRaw(absl::Span<float> values, std::string* out, Rng64* rng);
  absl::Status DecodeRaw(absl::string_view bytes, absl::Span<float> out) const;
  size_t MaxRawSize(size_t n) const;

  CodecOptions options_;
  uint64_t seed_;
};

// The key of one message: its round, its slot and its receiver (the neighbour index for a message
// to one neighbour, -1 for a broadcast).
inline uint64_t MessageKey(int64_t round, int slot, int target) {
  return SplitMix64(SplitMix64(static_cast<uint64_t>(round)) ^ (static_cast<uint64_t>(slot) << 32) ^
                    static_cast<uint64_t>(static_cast<uint32_t>(target + 1)));
}

// bfloat16 helpers (round to nearest even; NaN stays NaN).
uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t b);

}  // namespace gut::core

#endif  // GUT_CORE_CODEC_CODEC_H_
