// Pieces shared by the codecs' implementations (codec.cc, dense_codecs.cc, sparse_codecs.cc,
// lowrank_codec.cc). Internal to core/codec.
#ifndef GUT_CORE_CODEC_CODEC_INTERNAL_H_
#define GUT_CORE_CODEC_CODEC_INTERNAL_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/codec/codec.h"

namespace gut::core::codec_internal {

// Little-endian byte order on the wire; every supported host is little-endian, which the
// static_assert pins down rather than converting on each value.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "gut's wire format assumes a little-endian host");

template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}

template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// A read cursor that refuses to run past the end of the payload.
struct Reader {
  const char* p;
  const char* end;
  size_t left() const { return static_cast<size_t>(end - p); }
  template <typename T>
  bool Read(T* v) {
    if (left() < sizeof(T)) return false;
    *v = Get<T>(p);
    p += sizeof(T);
    return true;
  }
  bool Varint(uint64_t* v);
};
void PutVarint(std::string* out, uint64_t v);

// Dense value codings, encoding in place (the values become their decoded form).
void EncodeBf16(absl::Span<float> v, std::string* out);
absl::Status DecodeBf16(Reader* in, absl::Span<float> out);
void EncodeInt8(absl::Span<float> v, std::string* out, int chunk, Rng64* rng);
absl::Status DecodeInt8(Reader* in, absl::Span<float> out, int chunk);
size_t Int8Size(size_t n, int chunk);
// int4 (bits 4) and int2 (bits 2): per chunk a float32 scale (max |v| / L, L = 7 or 1), then the
// chunk's values 8 / bits to a byte (lowest bits first), each q in [-L, L] in two's complement;
// -(L + 1) is refused, as are non-zero padding bits after a chunk's last value.
void EncodeLowBit(absl::Span<float> v, std::string* out, int chunk, int bits, Rng64* rng);
absl::Status DecodeLowBit(Reader* in, absl::Span<float> out, int chunk, int bits);
size_t LowBitSize(size_t n, int chunk, int bits);
// Values in one of the three codings.
void EncodeValues(ValueCoding c, absl::Span<float> v, std::string* out, int chunk, Rng64* rng);
absl::Status DecodeValues(ValueCoding c, Reader* in, absl::Span<float> out, int chunk);
size_t ValuesSize(ValueCoding c, size_t k, int chunk);

// Sparse codecs and sign.
size_t KeptValues(const CodecOptions& o, size_t n);
void EncodeTopK(const CodecOptions& o, absl::Span<float> v, std::string* out, Rng64* rng);
absl::Status DecodeTopK(const CodecOptions& o, Reader* in, absl::Span<float> out);
// The k indices randk keeps, ascending, from a seed every receiver can compute.
std::vector<uint32_t> RandomIndices(uint64_t seed, size_t n, size_t k);
void EncodeRandK(const CodecOptions& o, absl::Span<float> v, std::string* out, uint64_t index_seed, Rng64* rng);
absl::Status DecodeRandK(const CodecOptions& o, Reader* in, absl::Span<float> out, uint64_t index_seed);
void EncodeSign(absl::Span<float> v, std::string* out, int chunk);
absl::Status DecodeSign(Reader* in, absl::Span<float> out, int chunk);
size_t SignSize(size_t n, int chunk);

// Low rank.
void EncodeLowRank(const CodecOptions& o, absl::Span<float> v, std::string* out, uint64_t key);
absl::Status DecodeLowRank(const CodecOptions& o, Reader* in, absl::Span<float> out);
size_t LowRankSize(const CodecOptions& o, size_t n);

}  // namespace gut::core::codec_internal

#endif  // GUT_CORE_CODEC_CODEC_INTERNAL_H_
