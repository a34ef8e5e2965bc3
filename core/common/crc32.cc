#include "core/common/crc32.h"

#include <zlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace gut::core {

uint32_t Crc32Reference(uint32_t crc, const void* data, size_t size) {
  // zlib takes at most uInt bytes at a time.
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (size > 0) {
    const uInt n = static_cast<uInt>(size > (1u << 30) ? (1u << 30) : size);
    c = crc32(c, p, n);
    p += n;
    size -= n;
  }
  return static_cast<uint32_t>(c);
}

#if defined(__x86_64__)
namespace {

// Folding a 128-bit remainder forward over the bit-reflected IEEE polynomial: each constant is
// x^k mod P(x) for the distance k it moves bits (reflected, as the data is), so
// clmul(lo, K_lo) ^ clmul(hi, K_hi) is congruent to the block moved k bits on.
//   by 512 bits (four blocks at once):  x^(512+32) and x^(512-32)  -> 0x154442bd4, 0x1c6e41596
//   by 128 bits (one block):            x^(128+32) and x^(128-32)  -> 0x1751997d0, 0x0ccaa009e
//   64 bits down to 32:                 x^64                        -> 0x163cd6124
// and the Barrett reduction's P(x) (reflected, with the x^32 term) and floor(x^64 / P(x)).
alignas(16) constexpr uint64_t kFold4[2] = {0x154442bd4, 0x1c6e41596};
alignas(16) constexpr uint64_t kFold1[2] = {0x1751997d0, 0x0ccaa009e};
alignas(16) constexpr uint64_t kFold64[2] = {0x163cd6124, 0};
alignas(16) constexpr uint64_t kBarrett[2] = {0x1db710641, 0x1f7011641};

__attribute__((target("pclmul,sse4.1"))) inline __m128i Fold(__m128i x, __m128i k, __m128i next) {
  const __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
  const __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

// The raw (not inverted) CRC state after `size` bytes; size >= 64 and a multiple of 16.
__attribute__((target("pclmul,sse4.1"))) uint32_t FoldBlocks(uint32_t state, const uint8_t* p, size_t size) {
  auto load = [](const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };
  __m128i x0 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(state)));
  __m128i x1 = load(p + 16), x2 = load(p + 32), x3 = load(p + 48);
  p += 64;
  size -= 64;
  __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kFold4));
  for (; size >= 64; p += 64, size -= 64) {
    x0 = Fold(x0, k, load(p));
    x1 = Fold(x1, k, load(p + 16));
    x2 = Fold(x2, k, load(p + 32));
    x3 = Fold(x3, k, load(p + 48));
  }
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(kFold1));
  x0 = Fold(x0, k, x1);
  x0 = Fold(x0, k, x2);
  x0 = Fold(x0, k, x3);
  for (; size >= 16; p += 16, size -= 16) x0 = Fold(x0, k, load(p));

  // 128 bits -> 64: the low half moved 64 bits on, into the high half.
  const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
  x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), _mm_clmulepi64_si128(x0, k, 0x10));
  // 64 -> 32 bits (plus the 32 above them).
  k = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kFold64));
  x0 = _mm_xor_si128(_mm_srli_si128(x0, 4), _mm_clmulepi64_si128(_mm_and_si128(x0, low32), k, 0x00));
  // Barrett reduction to the 32-bit remainder.
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(kBarrett));
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x0, low32), k, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), k, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x0, t), 1));
}

bool HavePclmul() {
  static const bool have = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return have;
}

}  // namespace

bool Crc32Accelerated() { return HavePclmul(); }

uint32_t Crc32(uint32_t crc, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (size < 64 || !HavePclmul()) return Crc32Reference(crc, p, size);
  const size_t blocks = size & ~static_cast<size_t>(15);
  crc = ~FoldBlocks(~crc, p, blocks);
  return Crc32Reference(crc, p + blocks, size - blocks);
}

#else

bool Crc32Accelerated() { return false; }

uint32_t Crc32(uint32_t crc, const void* data, size_t size) { return Crc32Reference(crc, data, size); }

#endif

}  // namespace gut::core
