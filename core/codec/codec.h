// Update codecs: how a model-sized float message is put on the wire (docs/algorithms.md §8).
//   fp32     lossless, 4 bytes per value
//   bf16     bfloat16 with round-to-nearest-even, 2 bytes per value
//   int8     stochastic rounding against one float32 scale per chunk (max|v| / 127), ~1 byte per value
//   topk     the k = ceil(fraction * n) largest magnitudes; indices as varint gaps, values as fp32,
//            bf16 or int8 (exchange.sparse_values)
//   randk    k values at indices drawn from the sender's seed and the message's round and slot:
//            every receiver draws the same indices, so none are sent; values as for topk
//   sign     one bit per value and one float scale per chunk (the chunk's mean |v|)
//   lowrank  matrix-shaped tensors as a rank-r product P Q' from one power iteration started at a
//            seeded random Q (PowerGossip-style); other tensors as fp32
// optionally followed by zstd framing of the whole payload.
//
// Encode() replaces the values by their decoded form, bit-identical to what Decode() of the same
// bytes yields on any receiver: the sender advances its public copy by exactly what its
// neighbours add, so replicas never drift, and what a codec drops stays in x - x̂ and goes out in
// the next message (error feedback). Decode() never trusts its input: any size, index or framing
// mismatch is an error that names the codec and what was expected. The randomness of a message
// comes from the sender's seed and the message's tag (round, slot, receiver), never from a stream
// that advances with every encode: a restored checkpoint or a replayed round encodes exactly as
// the first time did. One Codec per sender thread (Encode reuses scratch).
#ifndef GUT_CORE_CODEC_CODEC_H_
#define GUT_CORE_CODEC_CODEC_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/common/random.h"

namespace gut::core {

enum class CodecKind { kFp32, kBf16, kInt8, kTopK, kRandK, kSign, kLowRank, kInt4, kInt2 };
// How a sparse codec (topk, randk) writes the values it keeps.
enum class ValueCoding { kFp32, kBf16, kInt8 };

struct CodecOptions {
  CodecKind kind = CodecKind::kFp32;
  int int8_chunk = 4096;        // values per int8, int4, int2 or sign scale
  double topk_fraction = 0.01;  // share of values topk and randk keep (at least 1)
  ValueCoding sparse_values = ValueCoding::kFp32;
  int lowrank_rank = 1;
  // lowrank: the message's tensors as (rows, cols) in flat order; a tensor with rows or cols of 1
  // (a bias) goes as fp32. Empty: the whole message is one row.
  std::vector<std::pair<int64_t, int64_t>> tensors;
  bool zstd = false;
  int zstd_level = 1;
};

// "fp32", "bf16", "int8", "int4", "int2", "topk", "randk", "sign", "lowrank".
absl::StatusOr<CodecKind> ParseCodecKind(const std::string& name);
const char* CodecName(CodecKind kind);
absl::StatusOr<ValueCoding> ParseValueCoding(const std::string& name);
const char* ValueCodingName(ValueCoding v);
// Lossless codecs leave every value as it was (fp32 with or without zstd).
inline bool IsLossless(const CodecOptions& o) { return o.kind == CodecKind::kFp32; }

// Which message of which round: what a codec's randomness may depend on.
struct MessageTag {
  int64_t round = 0;
  int slot = 0;
  int target = -1;  // the receiver's neighbour index for a message to one neighbour; -1 broadcast
};

class Codec {
 public:
  Codec(CodecOptions options, uint64_t seed);

  const CodecOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }
  // Encodes `values` into `out` (replacing its contents) and overwrites `values` with the
  // decoded values.
  void Encode(absl::Span<float> values, std::string* out, const MessageTag& tag = {});
  // Decodes a payload of exactly out.size() values from the sender whose codec seed is
  // `sender_seed` (randk draws its indices from it).
  absl::Status Decode(absl::string_view bytes, absl::Span<float> out, uint64_t sender_seed,
                      const MessageTag& tag = {}) const;
  // The largest payload a message of n values can have before zstd (bounds a receiver's buffers).
  size_t MaxRawSize(size_t n) const;

 private:
  CodecOptions options_;
  uint64_t seed_;
  std::string scratch_;  // the raw payload before zstd
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
