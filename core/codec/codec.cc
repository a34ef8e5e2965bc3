#include "core/codec/codec.h"

#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gut::core {
namespace {

// Little-endian byte order on the wire; every supported host is little-endian, which the
// static_assert below pins down rather than converting on each value.
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

}  // namespace

absl::StatusOr<CodecKind> ParseCodecKind(const std::string& name) {
  if (name == "fp32") return CodecKind::kFp32;
  if (name == "bf16") return CodecKind::kBf16;
  if (name == "int8") return CodecKind::kInt8;
  if (name == "topk") return CodecKind::kTopK;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown codec '", name, "'; allowed: fp32, bf16, int8, topk"));
}

const char* CodecName(CodecKind kind) {
  switch (kind) {
    case CodecKind::kFp32: return "fp32";
    case CodecKind::kBf16: return "bf16";
    case CodecKind::kInt8: return "int8";
    case CodecKind::kTopK: return "topk";
  }
  return "?";
}

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

Codec::Codec(CodecOptions options, uint64_t seed) : options_(options), seed_(seed) {
  options_.int8_chunk = std::max(1, options_.int8_chunk);
}

size_t Codec::MaxRawSize(size_t n) const {
  switch (options_.kind) {
    case CodecKind::kFp32: return 4 * n;
    case CodecKind::kBf16: return 2 * n;
    case CodecKind::kInt8: return n + 4 * ((n + options_.int8_chunk - 1) / options_.int8_chunk);
    case CodecKind::kTopK: return 4 + 8 * n;
  }
  return 0;
}

void Codec::EncodeRaw(absl::Span<float> v, std::string* out, Rng64* rng) {
  out->clear();
  const size_t n = v.size();
  switch (options_.kind) {
    case CodecKind::kFp32:
      if (n > 0) out->assign(reinterpret_cast<const char*>(v.data()), 4 * n);
      return;
    case CodecKind::kBf16: {
      out->resize(2 * n);
      char* p = out->data();
      for (size_t k = 0; k < n; ++k) {
        const uint16_t b = FloatToBf16(v[k]);
        std::memcpy(p + 2 * k, &b, 2);
        v[k] = Bf16ToFloat(b);
      }
      return;
    }
    case CodecKind::kInt8: {
      out->reserve(MaxRawSize(n));
      const size_t chunk = static_cast<size_t>(options_.int8_chunk);
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
      return;
    }
    case CodecKind::kTopK: {
      const size_t k = std::min(n, std::max<size_t>(1, static_cast<size_t>(std::ceil(options_.topk_fraction * n))));
      if (k == 0) {  // nothing to send
        Put<uint32_t>(out, 0);
        return;
      }
      std::vector<uint32_t> idx(n);
      std::iota(idx.begin(), idx.end(), 0u);
      auto mag = [&](uint32_t i) { return std::isfinite(v[i]) ? std::abs(v[i]) : 0.0f; };
      std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), [&](uint32_t a, uint32_t b) {
        return mag(a) > mag(b) || (mag(a) == mag(b) && a < b);
      });
      idx.resize(k);
      std::sort(idx.begin(), idx.end());
      Put<uint32_t>(out, static_cast<uint32_t>(k));
      std::vector<float> kept(k);
      for (size_t j = 0; j < k; ++j) {
        kept[j] = v[idx[j]];
        Put<uint32_t>(out, idx[j]);
        Put<float>(out, kept[j]);
      }
      std::fill(v.begin(), v.end(), 0.0f);
      for (size_t j = 0; j < k; ++j) v[idx[j]] = kept[j];
      return;
    }
  }
}

void Codec::Encode(absl::Span<float> values, std::string* out, uint64_t message_key) {
  Rng64 rng(SplitMix64(seed_ ^ message_key));
  if (!options_.zstd) {
    EncodeRaw(values, out, &rng);
    return;
  }
  std::string raw;
  EncodeRaw(values, &raw, &rng);
  out->resize(ZSTD_compressBound(raw.size()));
  const size_t z = ZSTD_compress(out->data(), out->size(), raw.data(), raw.size(), options_.zstd_level);
  // Compression into a buffer of compressBound bytes cannot fail.
  out->resize(ZSTD_isError(z) ? 0 : z);
}

absl::Status Codec::Decode(absl::string_view bytes, absl::Span<float> out) const {
  if (!options_.zstd) return DecodeRaw(bytes, out);
  const size_t limit = MaxRawSize(out.size());
  const unsigned long long declared = ZSTD_getFrameContentSize(bytes.data(), bytes.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) {
    return absl::DataLossError(absl::StrCat(CodecName(options_.kind), "+zstd payload of ", bytes.size(),
                                            " bytes is not a zstd frame"));
  }
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > limit) {
    return absl::DataLossError(absl::StrCat(CodecName(options_.kind), "+zstd payload declares ", declared,
                                            " bytes, more than the ", limit, " a message of ", out.size(),
                                            " values can take"));
  }
  std::string raw(limit, '\0');
  const size_t got = ZSTD_decompress(raw.data(), raw.size(), bytes.data(), bytes.size());
  if (ZSTD_isError(got)) {
    return absl::DataLossError(absl::StrCat(CodecName(options_.kind), "+zstd payload: ", ZSTD_getErrorName(got)));
  }
  raw.resize(got);
  return DecodeRaw(raw, out);
}

absl::Status Codec::DecodeRaw(absl::string_view b, absl::Span<float> out) const {
  const size_t n = out.size();
  const char* name = CodecName(options_.kind);
  auto size_error = [&](size_t expected) {
    return absl::DataLossError(absl::StrCat(name, " payload has ", b.size(), " bytes, expected ", expected,
                                            " for ", n, " values"));
  };
  switch (options_.kind) {
    case CodecKind::kFp32:
      if (b.size() != 4 * n) return size_error(4 * n);
      if (n > 0) std::memcpy(out.data(), b.data(), 4 * n);
      return absl::OkStatus();
    case CodecKind::kBf16:
      if (b.size() != 2 * n) return size_error(2 * n);
      for (size_t k = 0; k < n; ++k) out[k] = Bf16ToFloat(Get<uint16_t>(b.data() + 2 * k));
      return absl::OkStatus();
    case CodecKind::kInt8: {
      if (b.size() != MaxRawSize(n)) return size_error(MaxRawSize(n));
      const size_t chunk = static_cast<size_t>(options_.int8_chunk);
      const char* p = b.data();
      for (size_t start = 0; start < n; start += chunk) {
        const size_t end = std::min(n, start + chunk);
        const float scale = Get<float>(p);
        p += 4;
        if (!std::isfinite(scale) || scale < 0) {
          return absl::DataLossError(absl::StrCat("int8 payload: chunk at value ", start, " has scale ", scale));
        }
        for (size_t k = start; k < end; ++k) {
          const int8_t q = static_cast<int8_t>(*p++);
          if (q == -128) return absl::DataLossError(absl::StrCat("int8 payload: value ", k, " is -128, outside [-127, 127]"));
          out[k] = static_cast<float>(q) * scale;
        }
      }
      return absl::OkStatus();
    }
    case CodecKind::kTopK: {
      if (b.size() < 4) return size_error(4);
      const uint32_t k = Get<uint32_t>(b.data());
      if (k > n) return absl::DataLossError(absl::StrCat("topk payload keeps ", k, " values of ", n));
      if (b.size() != 4 + 8 * size_t{k}) return size_error(4 + 8 * size_t{k});
      std::fill(out.begin(), out.end(), 0.0f);
      int64_t prev = -1;
      for (uint32_t j = 0; j < k; ++j) {
        const uint32_t i = Get<uint32_t>(b.data() + 4 + 8 * j);
        if (i >= n || static_cast<int64_t>(i) <= prev) {
          return absl::DataLossError(absl::StrCat("topk payload: index #", j, " = ", i,
                                                  " is out of range or not ascending"));
        }
        out[i] = Get<float>(b.data() + 8 + 8 * j);
        prev = i;
      }
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown codec");
}

}  // namespace gut::core
