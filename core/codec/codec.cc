// Codec: names, dispatch to the codecs' implementations and the optional zstd framing.
#include "core/codec/codec.h"

#include <zstd.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/codec/codec_internal.h"

namespace gut::core {

using codec_internal::Reader;

namespace {

constexpr const char* kCodecNames = "fp32, bf16, int8, int4, int2, topk, randk, sign, lowrank";
// Keeps randk's index stream apart from the stochastic rounding stream of the same message.
constexpr uint64_t kIndexSalt = 0x72616e646b696478ull;  // "randkidx"

// Index seed of randk: the sender's seed and the message's round and slot. Not its receiver: a
// message to one neighbour keeps the same positions as a broadcast of the same round would.
uint64_t IndexSeed(uint64_t sender_seed, const MessageTag& tag) {
  return SplitMix64(sender_seed ^ MessageKey(tag.round, tag.slot, -1) ^ kIndexSalt);
}

}  // namespace

absl::StatusOr<CodecKind> ParseCodecKind(const std::string& name) {
  for (CodecKind k : {CodecKind::kFp32, CodecKind::kBf16, CodecKind::kInt8, CodecKind::kInt4, CodecKind::kInt2,
                      CodecKind::kTopK, CodecKind::kRandK, CodecKind::kSign, CodecKind::kLowRank}) {
    if (name == CodecName(k)) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown codec '", name, "'; allowed: ", kCodecNames));
}

const char* CodecName(CodecKind kind) {
  switch (kind) {
    case CodecKind::kFp32: return "fp32";
    case CodecKind::kBf16: return "bf16";
    case CodecKind::kInt8: return "int8";
    case CodecKind::kInt4: return "int4";
    case CodecKind::kInt2: return "int2";
    case CodecKind::kTopK: return "topk";
    case CodecKind::kRandK: return "randk";
    case CodecKind::kSign: return "sign";
    case CodecKind::kLowRank: return "lowrank";
  }
  return "?";
}

absl::StatusOr<ValueCoding> ParseValueCoding(const std::string& name) {
  for (ValueCoding v : {ValueCoding::kFp32, ValueCoding::kBf16, ValueCoding::kInt8}) {
    if (name == ValueCodingName(v)) return v;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown value coding '", name, "'; allowed: fp32, bf16, int8"));
}

const char* ValueCodingName(ValueCoding v) {
  switch (v) {
    case ValueCoding::kFp32: return "fp32";
    case ValueCoding::kBf16: return "bf16";
    case ValueCoding::kInt8: return "int8";
  }
  return "?";
}

Codec::Codec(CodecOptions options, uint64_t seed) : options_(std::move(options)), seed_(seed) {
  options_.int8_chunk = std::max(1, options_.int8_chunk);
  options_.lowrank_rank = std::max(1, options_.lowrank_rank);
}

size_t Codec::MaxRawSize(size_t n) const {
  const CodecOptions& o = options_;
  switch (o.kind) {
    case CodecKind::kFp32: return 4 * n;
    case CodecKind::kBf16: return 2 * n;
    case CodecKind::kInt8: return codec_internal::Int8Size(n, o.int8_chunk);
    case CodecKind::kInt4: return codec_internal::LowBitSize(n, o.int8_chunk, 4);
    case CodecKind::kInt2: return codec_internal::LowBitSize(n, o.int8_chunk, 2);
    case CodecKind::kTopK: {
      // A varint count, at most 5 bytes per index gap, the values.
      const size_t k = codec_internal::KeptValues(o, n);
      return 10 + 5 * k + codec_internal::ValuesSize(o.sparse_values, k, o.int8_chunk);
    }
    case CodecKind::kRandK:
      return codec_internal::ValuesSize(o.sparse_values, codec_internal::KeptValues(o, n), o.int8_chunk);
    case CodecKind::kSign: return codec_internal::SignSize(n, o.int8_chunk);
    case CodecKind::kLowRank: return codec_internal::LowRankSize(o, n);
  }
  return 0;
}

void Codec::Encode(absl::Span<float> values, std::string* out, const MessageTag& tag) {
  const uint64_t key = SplitMix64(seed_ ^ MessageKey(tag.round, tag.slot, tag.target));
  Rng64 rng(key);
  std::string* raw = options_.zstd ? &scratch_ : out;
  raw->clear();
  const CodecOptions& o = options_;
  switch (o.kind) {
    case CodecKind::kFp32:
      if (!values.empty()) raw->assign(reinterpret_cast<const char*>(values.data()), 4 * values.size());
      break;
    case CodecKind::kBf16: codec_internal::EncodeBf16(values, raw); break;
    case CodecKind::kInt8: codec_internal::EncodeInt8(values, raw, o.int8_chunk, &rng); break;
    case CodecKind::kInt4: codec_internal::EncodeLowBit(values, raw, o.int8_chunk, 4, &rng); break;
    case CodecKind::kInt2: codec_internal::EncodeLowBit(values, raw, o.int8_chunk, 2, &rng); break;
    case CodecKind::kTopK: codec_internal::EncodeTopK(o, values, raw, &rng); break;
    case CodecKind::kRandK: codec_internal::EncodeRandK(o, values, raw, IndexSeed(seed_, tag), &rng); break;
    case CodecKind::kSign: codec_internal::EncodeSign(values, raw, o.int8_chunk); break;
    case CodecKind::kLowRank: codec_internal::EncodeLowRank(o, values, raw, key); break;
  }
  if (!options_.zstd) return;
  out->resize(ZSTD_compressBound(raw->size()));
  const size_t z = ZSTD_compress(out->data(), out->size(), raw->data(), raw->size(), o.zstd_level);
  // Compression into a buffer of compressBound bytes cannot fail.
  out->resize(ZSTD_isError(z) ? 0 : z);
}

absl::Status Codec::Decode(absl::string_view bytes, absl::Span<float> out, uint64_t sender_seed,
                           const MessageTag& tag) const {
  const CodecOptions& o = options_;
  const char* name = CodecName(o.kind);
  std::string unpacked;
  if (o.zstd) {
    const size_t limit = MaxRawSize(out.size());
    const unsigned long long declared = ZSTD_getFrameContentSize(bytes.data(), bytes.size());
    if (declared == ZSTD_CONTENTSIZE_ERROR) {
      return absl::DataLossError(absl::StrCat(name, "+zstd payload of ", bytes.size(), " bytes is not a zstd frame"));
    }
    if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > limit) {
      return absl::DataLossError(absl::StrCat(name, "+zstd payload declares ", declared, " bytes, more than the ",
                                              limit, " a message of ", out.size(), " values can take"));
    }
    unpacked.resize(limit);
    const size_t got = ZSTD_decompress(unpacked.data(), unpacked.size(), bytes.data(), bytes.size());
    if (ZSTD_isError(got)) {
      return absl::DataLossError(absl::StrCat(name, "+zstd payload: ", ZSTD_getErrorName(got)));
    }
    unpacked.resize(got);
    bytes = unpacked;
  }
  const size_t n = out.size();
  Reader in{bytes.data(), bytes.data() + bytes.size()};
  auto size_error = [&](size_t expected) {
    return absl::DataLossError(
        absl::StrCat(name, " payload has ", bytes.size(), " bytes, expected ", expected, " for ", n, " values"));
  };
  absl::Status s;
  switch (o.kind) {
    case CodecKind::kFp32:
      if (bytes.size() != 4 * n) return size_error(4 * n);
      if (n > 0) std::memcpy(out.data(), bytes.data(), 4 * n);
      return absl::OkStatus();
    case CodecKind::kBf16:
      if (bytes.size() != 2 * n) return size_error(2 * n);
      return codec_internal::DecodeBf16(&in, out);
    case CodecKind::kInt8:
      if (bytes.size() != MaxRawSize(n)) return size_error(MaxRawSize(n));
      s = codec_internal::DecodeInt8(&in, out, o.int8_chunk);
      break;
    case CodecKind::kInt4:
    case CodecKind::kInt2:
      if (bytes.size() != MaxRawSize(n)) return size_error(MaxRawSize(n));
      s = codec_internal::DecodeLowBit(&in, out, o.int8_chunk, o.kind == CodecKind::kInt4 ? 4 : 2);
      break;
    case CodecKind::kTopK: s = codec_internal::DecodeTopK(o, &in, out); break;
    case CodecKind::kRandK: s = codec_internal::DecodeRandK(o, &in, out, IndexSeed(sender_seed, tag)); break;
    case CodecKind::kSign: s = codec_internal::DecodeSign(&in, out, o.int8_chunk); break;
    case CodecKind::kLowRank: s = codec_internal::DecodeLowRank(o, &in, out); break;
  }
  if (!s.ok()) {
    return s.message().find(name) == 0 ? s : absl::DataLossError(absl::StrCat(name, " payload: ", s.message()));
  }
  if (in.left() != 0) {
    return absl::DataLossError(absl::StrCat(name, " payload has ", in.left(), " bytes after its ", n, " values"));
  }
  return absl::OkStatus();
}

}  // namespace gut::core
