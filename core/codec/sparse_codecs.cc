// topk, randk and sign (docs/algorithms.md §8). The sparse codecs send k = ceil(fraction * n)
// values; topk also sends where they are, as varint-coded gaps between ascending indices (about a
// byte each at the densities used), randk sends no indices at all: they come from the sender's
// seed and the message's round and slot, which every receiver knows.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/codec/codec_internal.h"

namespace gut::core::codec_internal {

size_t KeptValues(const CodecOptions& o, size_t n) {
  if (n == 0) return 0;
  return std::min(n, std::max<size_t>(1, static_cast<size_t>(std::ceil(o.topk_fraction * static_cast<double>(n)))));
}

void EncodeTopK(const CodecOptions& o, absl::Span<float> v, std::string* out, Rng64* rng) {
  const size_t n = v.size(), k = KeptValues(o, n);
  PutVarint(out, k);
  if (k == 0) return;
  std::vector<uint32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0u);
  auto mag = [&](uint32_t i) { return std::isfinite(v[i]) ? std::abs(v[i]) : 0.0f; };
  std::nth_element(idx.begin(), idx.begin() + static_cast<ptrdiff_t>(k - 1), idx.end(), [&](uint32_t a, uint32_t b) {
    return mag(a) > mag(b) || (mag(a) == mag(b) && a < b);
  });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  uint32_t prev = 0;
  for (size_t j = 0; j < k; ++j) {
    PutVarint(out, idx[j] - (j == 0 ? 0 : prev + 1));  // gap to the previous index, minus one
    prev = idx[j];
  }
  std::vector<float> kept(k);
  for (size_t j = 0; j < k; ++j) kept[j] = v[idx[j]];
  EncodeValues(o.sparse_values, absl::MakeSpan(kept), out, o.int8_chunk, rng);
  std::fill(v.begin(), v.end(), 0.0f);
  for (size_t j = 0; j < k; ++j) v[idx[j]] = kept[j];
}

absl::Status DecodeTopK(const CodecOptions& o, Reader* in, absl::Span<float> out) {
  const size_t n = out.size();
  uint64_t k = 0;
  if (!in->Varint(&k)) return absl::DataLossError("topk payload: truncated count");
  if (k > n) return absl::DataLossError(absl::StrCat("topk payload keeps ", k, " values of ", n));
  std::vector<uint32_t> idx(k);
  uint64_t at = 0;
  for (size_t j = 0; j < k; ++j) {
    uint64_t gap = 0;
    if (!in->Varint(&gap)) return absl::DataLossError(absl::StrCat("topk payload: index #", j, " is truncated"));
    at = (j == 0 ? 0 : at + 1) + gap;
    if (at >= n) return absl::DataLossError(absl::StrCat("topk payload: index #", j, " = ", at, " is out of range"));
    idx[j] = static_cast<uint32_t>(at);
  }
  std::vector<float> kept(k);
  if (auto s = DecodeValues(o.sparse_values, in, absl::MakeSpan(kept), o.int8_chunk); !s.ok()) {
    return absl::DataLossError(absl::StrCat("topk payload: ", s.message()));
  }
  std::fill(out.begin(), out.end(), 0.0f);
  for (size_t j = 0; j < k; ++j) out[idx[j]] = kept[j];
  return absl::OkStatus();
}

std::vector<uint32_t> RandomIndices(uint64_t seed, size_t n, size_t k) {
  // Floyd's sampling: k distinct values of [0, n) with k draws.
  Rng64 rng(seed);
  std::vector<uint32_t> out;
  out.reserve(k);
  std::vector<bool> taken(n, false);
  for (size_t j = n - k; j < n; ++j) {
    const size_t t = static_cast<size_t>(rng.Below(j + 1));
    const size_t pick = taken[t] ? j : t;
    taken[pick] = true;
    out.push_back(static_cast<uint32_t>(pick));
  }
  std::sort(out.begin(), out.end());
  return out;
}

void EncodeRandK(const CodecOptions& o, absl::Span<float> v, std::string* out, uint64_t index_seed, Rng64* rng) {
  const size_t n = v.size(), k = KeptValues(o, n);
  const auto idx = RandomIndices(index_seed, n, k);
  std::vector<float> kept(k);
  for (size_t j = 0; j < k; ++j) kept[j] = std::isfinite(v[idx[j]]) ? v[idx[j]] : 0.0f;
  EncodeValues(o.sparse_values, absl::MakeSpan(kept), out, o.int8_chunk, rng);
  std::fill(v.begin(), v.end(), 0.0f);
  for (size_t j = 0; j < k; ++j) v[idx[j]] = kept[j];
}

absl::Status DecodeRandK(const CodecOptions& o, Reader* in, absl::Span<float> out, uint64_t index_seed) {
  const size_t n = out.size(), k = KeptValues(o, n);
  if (in->left() != ValuesSize(o.sparse_values, k, o.int8_chunk)) {
    return absl::DataLossError(absl::StrCat("randk payload has ", in->left(), " bytes, expected ",
                                            ValuesSize(o.sparse_values, k, o.int8_chunk), " for ", k, " of ", n,
                                            " values"));
  }
  std::vector<float> kept(k);
  if (auto s = DecodeValues(o.sparse_values, in, absl::MakeSpan(kept), o.int8_chunk); !s.ok()) {
    return absl::DataLossError(absl::StrCat("randk payload: ", s.message()));
  }
  const auto idx = RandomIndices(index_seed, n, k);
  std::fill(out.begin(), out.end(), 0.0f);
  for (size_t j = 0; j < k; ++j) out[idx[j]] = kept[j];
  return absl::OkStatus();
}

size_t SignSize(size_t n, int chunk) { return 4 * ((n + chunk - 1) / chunk) + (n + 7) / 8; }

void EncodeSign(absl::Span<float> v, std::string* out, int chunk_values) {
  const size_t n = v.size(), chunk = static_cast<size_t>(chunk_values);
  std::vector<float> scales;
  for (size_t start = 0; start < n; start += chunk) {
    const size_t end = std::min(n, start + chunk);
    double sum = 0;
    for (size_t k = start; k < end; ++k)
      if (std::isfinite(v[k])) sum += std::abs(v[k]);
    scales.push_back(static_cast<float>(sum / static_cast<double>(end - start)));
  }
  for (float s : scales) Put<float>(out, s);
  const size_t at = out->size();
  out->resize(at + (n + 7) / 8, '\0');
  for (size_t k = 0; k < n; ++k) {
    const bool negative = v[k] < 0;
    if (!negative) (*out)[at + k / 8] = static_cast<char>((*out)[at + k / 8] | (1 << (k % 8)));
    const float s = scales[k / chunk];
    v[k] = negative ? -s : s;
  }
}

absl::Status DecodeSign(Reader* in, absl::Span<float> out, int chunk_values) {
  const size_t n = out.size(), chunk = static_cast<size_t>(chunk_values);
  if (in->left() != SignSize(n, chunk_values)) {
    return absl::DataLossError(absl::StrCat("sign payload has ", in->left(), " bytes, expected ",
                                            SignSize(n, chunk_values), " for ", n, " values"));
  }
  std::vector<float> scales((n + chunk - 1) / chunk);
  for (float& s : scales) {
    in->Read(&s);
    if (!std::isfinite(s) || s < 0) return absl::DataLossError(absl::StrCat("sign payload: scale ", s));
  }
  for (size_t k = 0; k < n; ++k) {
    const bool positive = (static_cast<uint8_t>(in->p[k / 8]) >> (k % 8)) & 1;
    out[k] = positive ? scales[k / chunk] : -scales[k / chunk];
  }
  in->p += (n + 7) / 8;
  return absl::OkStatus();
}

}  // namespace gut::core::codec_internal
