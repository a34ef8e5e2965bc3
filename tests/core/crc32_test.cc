// The accelerated CRC-32 against zlib's, bit for bit: every length from 0 to 600 (the folding
// path's tail and block boundaries), every start offset within a 16-byte line (unaligned loads),
// chained calls, a message-sized buffer, and the standard check value.
#include <random>
#include <string>
#include <vector>

#include "core/common/crc32.h"
#include "gtest/gtest.h"

namespace gut::core {
namespace {

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = static_cast<uint8_t>(g());
  return b;
}

TEST(Crc32Test, CheckValue) {
  const std::string s = "123456789";
  EXPECT_EQ(Crc32(0, s.data(), s.size()), 0xCBF43926u);
  const std::string zeros(4096, '\0');
  EXPECT_EQ(Crc32(0, zeros.data(), zeros.size()), Crc32Reference(0, zeros.data(), zeros.size()));
}

TEST(Crc32Test, EqualsZlibForEveryLengthAndAlignment) {
  const auto b = RandomBytes(700, 1);
  for (size_t off = 0; off < 16; ++off) {
    for (size_t n = 0; n + off <= 616; ++n) {
      ASSERT_EQ(Crc32(0, b.data() + off, n), Crc32Reference(0, b.data() + off, n)) << "offset " << off << " length " << n;
    }
  }
}

TEST(Crc32Test, ChainsLikeZlib) {
  const auto b = RandomBytes(1 << 20, 2);
  const uint32_t whole = Crc32Reference(0, b.data(), b.size());
  EXPECT_EQ(Crc32(0, b.data(), b.size()), whole);
  for (size_t cut : {size_t{1}, size_t{63}, size_t{64}, size_t{1000}, size_t{123457}}) {
    EXPECT_EQ(Crc32(Crc32(0, b.data(), cut), b.data() + cut, b.size() - cut), whole) << "cut at " << cut;
  }
  // A single flipped bit changes the checksum.
  auto c = b;
  c[777] ^= 4;
  EXPECT_NE(Crc32(0, c.data(), c.size()), whole);
}

TEST(Crc32Test, ReportsItsPath) {
#if defined(__x86_64__)
  std::printf("CRC-32 by carry-less multiplication: %s\n", Crc32Accelerated() ? "yes" : "no (zlib)");
#else
  EXPECT_FALSE(Crc32Accelerated());
#endif
}

}  // namespace
}  // namespace gut::core
