// bf16, int8, int4 and int2, and the value codings the sparse codecs reuse for the values they keep.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/codec/codec_internal.h"

namespace gut::core {

uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace codec_internal {

bool Reader::Varint(uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p == end) return false;
    const uint8_t b = static_cast<uint8_t>(*p++);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void EncodeBf16(absl::Span<float> v, std::string* out) {
  const size_t at = out->size();
  out->resize(at + 2 * v.size());
  char* p = out->data() + at;
  for (size_t k = 0; k < v.size(); ++k) {
    const uint16_t b = FloatToBf16(v[k]);
    std::memcpy(p + 2 * k, &b, 2);
    v[k] = Bf16ToFloat(b);
  }
}

absl::Status DecodeBf16(Reader* in, absl::Span<float> out) {
  if (in->left() < 2 * out.size()) return absl::DataLossError("bf16 values are truncated");
  for (size_t k = 0; k < out.size(); ++k) out[k] = Bf16ToFloat(Get<uint16_t>(in->p + 2 * k));
  in->p += 2 * out.size();
  return absl::OkStatus();
}

size_t Int8Size(size_t n, int chunk) { return n + 4 * ((n + chunk - 1) / chunk); }

void EncodeInt8(absl::Span<float> v, std::string* out, int chunk_values, Rng64* rng) {
  const size_t n = v.size(), chunk = static_cast<size_t>(chunk_values);
  out->reserve(out->size() + Int8Size(n, chunk_values));
  for (size_t start = 0; start < n; start += chunk) {
    const size_t end = std::min(n, start + chunk);
    float maxabs = 0;
    for (size_t k = start; k < end; ++k)
      if (std::isfinite(v[k])) maxabs = std::max(maxabs, std::abs(v[k]));
    const float scale = maxabs > 0 ? maxabs / 127.0f : 0.0f;
    Put<float>(out, scale);
    for (size_t k = start; k < end; ++k) {
      int q = 0;
      if (scale > 0 && std::isfinite(v[k])) {
        // Stochastic rounding: E[q] = v / scale.
        const double t = v[k] / scale;
        q = static_cast<int>(std::floor(t + rng->Uniform()));
        q = std::clamp(q, -127, 127);
      }
      out->push_back(static_cast<char>(static_cast<int8_t>(q)));
      v[k] = static_cast<float>(q) * scale;
    }
  }
}

absl::Status DecodeInt8(Reader* in, absl::Span<float> out, int chunk_values) {
  const size_t n = out.size(), chunk = static_cast<size_t>(chunk_values);
  if (in->left() < Int8Size(n, chunk_values)) return absl::DataLossError("int8 values are truncated");
  for (size_t start = 0; start < n; start += chunk) {
    const size_t end = std::min(n, start + chunk);
    float scale = 0;
    in->Read(&scale);
    if (!std::isfinite(scale) || scale < 0) {
      return absl::DataLossError(absl::StrCat("int8 chunk at value ", start, " has scale ", scale));
    }
    for (size_t k = start; k < end; ++k) {
      const int8_t q = static_cast<int8_t>(*in->p++);
      if (q == -128) return absl::DataLossError(absl::StrCat("int8 value ", k, " is -128, outside [-127, 127]"));
      out[k] = static_cast<float>(q) * scale;
    }
  }
  return absl::OkStatus();
}

namespace {

// int4 and int2: `bits`-bit two's-complement codes q in [-L, L], L = 2^(bits-1) - 1 (7 or 1),
// 8 / bits to a byte, lowest bits first; the code -(L + 1) is refused.
int Levels(int bits) { return (1 << (bits - 1)) - 1; }

}  // namespace

size_t LowBitSize(size_t n, int chunk_values, int bits) {
  const size_t chunk = static_cast<size_t>(chunk_values), per_byte = static_cast<size_t>(8 / bits);
  const size_t full = n / chunk, rest = n % chunk;
  return full * (4 + (chunk + per_byte - 1) / per_byte) + (rest > 0 ? 4 + (rest + per_byte - 1) / per_byte : 0);
}

// Like int8 with 2L + 1 levels instead of 255: stochastic rounding keeps each int4 value unbiased,
// and the error feedback of the replica methods (docs/algorithms.md §8.2) sends what rounding lost
// later. With int2 (L = 1) a value v becomes ±a with probability |v| / max|v| and 0 otherwise.
void EncodeLowBit(absl::Span<float> v, std::string* out, int chunk_values, int bits, Rng64* rng) {
  const size_t n = v.size(), chunk = static_cast<size_t>(chunk_values);
  const int levels = Levels(bits), per_byte = 8 / bits;
  const uint8_t mask = static_cast<uint8_t>((1 << bits) - 1);
  out->reserve(out->size() + LowBitSize(n, chunk_values, bits));
  for (size_t start = 0; start < n; start += chunk) {
    const size_t end = std::min(n, start + chunk);
    float maxabs = 0;
    for (size_t k = start; k < end; ++k)
      if (std::isfinite(v[k])) maxabs = std::max(maxabs, std::abs(v[k]));
    const float scale = maxabs > 0 ? maxabs / static_cast<float>(levels) : 0.0f;
    // int2's decoded magnitude: unbiased ternary rounding (±max with probability |v| / max) has a
    // variance larger than the chunk itself, which error feedback cannot absorb (CHOCO-SGD needs a
    // compressor that shrinks the error). Decoding to ±a with a = Σv² / Σ|v| instead of ±max is the
    // a that minimises E||decoded - v||², which is then (1 - Σv² / (max Σ|v|)) ||v||² < ||v||².
    float wire_scale = scale;
    if (bits == 2 && scale > 0) {
      double sum1 = 0, sum2 = 0;
      for (size_t k = start; k < end; ++k) {
        if (!std::isfinite(v[k])) continue;
        sum1 += std::abs(static_cast<double>(v[k]));
        sum2 += static_cast<double>(v[k]) * v[k];
      }
      wire_scale = static_cast<float>(sum2 / sum1);
    }
    Put<float>(out, wire_scale);
    uint8_t byte = 0;
    for (size_t k = start; k < end; ++k) {
      int q = 0;
      if (scale > 0 && std::isfinite(v[k])) {
        q = static_cast<int>(std::floor(v[k] / static_cast<double>(scale) + rng->Uniform()));
        q = std::clamp(q, -levels, levels);
      }
      v[k] = static_cast<float>(q) * wire_scale;
      const int slot = static_cast<int>((k - start) % per_byte);
      byte = static_cast<uint8_t>(byte | ((static_cast<uint8_t>(q) & mask) << (slot * bits)));
      if (slot == per_byte - 1 || k + 1 == end) {
        out->push_back(static_cast<char>(byte));
        byte = 0;
      }
    }
  }
}

absl::Status DecodeLowBit(Reader* in, absl::Span<float> out, int chunk_values, int bits) {
  const size_t n = out.size(), chunk = static_cast<size_t>(chunk_values);
  const int levels = Levels(bits), per_byte = 8 / bits;
  const int mask = (1 << bits) - 1;
  const char* name = bits == 4 ? "int4" : "int2";
  if (in->left() < LowBitSize(n, chunk_values, bits)) return absl::DataLossError(absl::StrCat(name, " values are truncated"));
  for (size_t start = 0; start < n; start += chunk) {
    const size_t end = std::min(n, start + chunk);
    float scale = 0;
    in->Read(&scale);
    if (!std::isfinite(scale) || scale < 0) {
      return absl::DataLossError(absl::StrCat(name, " chunk at value ", start, " has scale ", scale));
    }
    uint8_t byte = 0;
    for (size_t k = start; k < end; ++k) {
      const int slot = static_cast<int>((k - start) % per_byte);
      if (slot == 0) byte = static_cast<uint8_t>(*in->p++);
      const int code = (byte >> (slot * bits)) & mask;
      const int q = code > levels ? code - (1 << bits) : code;
      if (q < -levels) {
        return absl::DataLossError(absl::StrCat(name, " value ", k, " is ", q, ", outside [-", levels, ", ", levels, "]"));
      }
      out[k] = static_cast<float>(q) * scale;
      if (k + 1 == end && slot + 1 < per_byte && (byte >> ((slot + 1) * bits)) != 0) {
        return absl::DataLossError(absl::StrCat(name, " chunk at value ", start, " has non-zero padding bits"));
      }
    }
  }
  return absl::OkStatus();
}

void EncodeValues(ValueCoding c, absl::Span<float> v, std::string* out, int chunk, Rng64* rng) {
  switch (c) {
    case ValueCoding::kFp32:
      for (float x : v) Put<float>(out, x);
      return;
    case ValueCoding::kBf16:
      return EncodeBf16(v, out);
    case ValueCoding::kInt8:
      return EncodeInt8(v, out, chunk, rng);
  }
}

absl::Status DecodeValues(ValueCoding c, Reader* in, absl::Span<float> out, int chunk) {
  switch (c) {
    case ValueCoding::kFp32:
      if (in->left() < 4 * out.size()) return absl::DataLossError("fp32 values are truncated");
      for (float& x : out) in->Read(&x);
      return absl::OkStatus();
    case ValueCoding::kBf16:
      return DecodeBf16(in, out);
    case ValueCoding::kInt8:
      return DecodeInt8(in, out, chunk);
  }
  return absl::InternalError("unknown value coding");
}

size_t ValuesSize(ValueCoding c, size_t k, int chunk) {
  switch (c) {
    case ValueCoding::kFp32: return 4 * k;
    case ValueCoding::kBf16: return 2 * k;
    case ValueCoding::kInt8: return Int8Size(k, chunk);
  }
  return 0;
}

}  // namespace codec_internal
}  // namespace gut::core
