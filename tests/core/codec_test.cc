#include "core/codec/codec.h"

#include <cmath>
#include <limits>
#include <ostream>
#include <vector>

#include "gtest/gtest.h"

namespace gut::core {
namespace {

std::vector<float> Values(size_t n, uint64_t seed = 1) {
  Rng64 r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>((r.Uniform() - 0.5) * 0.02);
  return v;
}

struct Case {
  CodecKind kind;
  bool zstd;
};
void PrintTo(const Case& c, std::ostream* os) { *os << CodecName(c.kind) << (c.zstd ? "+zstd" : ""); }

class CodecRoundTrip : public ::testing::TestWithParam<Case> {};

// The sender's in-place decoded values equal what any receiver decodes, bit for bit: replicas
// stay identical under every codec.
TEST_P(CodecRoundTrip, SenderAndReceiverAgreeBitForBit) {
  CodecOptions o;
  o.kind = GetParam().kind;
  o.zstd = GetParam().zstd;
  o.int8_chunk = 1000;
  o.topk_fraction = 0.05;
  Codec sender(o, 7), receiver(o, 99);
  for (size_t n : {size_t{1}, size_t{999}, size_t{61706}}) {
    auto v = Values(n, n);
    const auto original = v;
    std::string wire;
    sender.Encode(absl::MakeSpan(v), &wire);
    std::vector<float> got(n, -1.0f);
    ASSERT_TRUE(receiver.Decode(wire, absl::MakeSpan(got)).ok()) << CodecName(o.kind) << " n=" << n;
    for (size_t k = 0; k < n; ++k) {
      ASSERT_EQ(got[k], v[k]) << "index " << k;
    }
    if (o.kind == CodecKind::kFp32) {
      EXPECT_EQ(got, original);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, CodecRoundTrip,
                         ::testing::Values(Case{CodecKind::kFp32, false}, Case{CodecKind::kBf16, false},
                                           Case{CodecKind::kInt8, false}, Case{CodecKind::kTopK, false},
                                           Case{CodecKind::kFp32, true}, Case{CodecKind::kBf16, true},
                                           Case{CodecKind::kInt8, true}, Case{CodecKind::kTopK, true}),
                         [](const auto& info) {
                           return std::string(CodecName(info.param.kind)) + (info.param.zstd ? "_zstd" : "");
                         });

TEST(Codec, WireSizesPerValue) {
  const size_t p = 61706;
  auto size = [&](CodecKind kind) {
    CodecOptions o;
    o.kind = kind;
    Codec c(o, 1);
    auto v = Values(p);
    std::string wire;
    c.Encode(absl::MakeSpan(v), &wire);
    return static_cast<double>(wire.size()) / (4.0 * p);
  };
  EXPECT_DOUBLE_EQ(size(CodecKind::kFp32), 1.0);
  EXPECT_DOUBLE_EQ(size(CodecKind::kBf16), 0.5);
  EXPECT_DOUBLE_EQ(size(CodecKind::kInt8), (p + 4.0 * 16) / (4.0 * p));  // 16 chunks of 4096
  EXPECT_LE(size(CodecKind::kTopK), 0.0201);
}

TEST(Codec, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 1.0f / 256)), 1.0f) << "tie goes to even";
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256) << "tie goes to even";
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  auto v = Values(10000);
  for (float x : v) EXPECT_LE(std::abs(Bf16ToFloat(FloatToBf16(x)) - x), std::abs(x) / 256 + 1e-30f);
}

TEST(Codec, Int8IsUnbiasedAndBounded) {
  CodecOptions o;
  o.kind = CodecKind::kInt8;
  o.int8_chunk = 64;
  Codec c(o, 3);
  std::vector<float> base = Values(64, 5);
  const float scale = [&] {
    float m = 0;
    for (float x : base) m = std::max(m, std::abs(x));
    return m / 127;
  }();
  std::vector<double> mean(64, 0.0);
  const int reps = 4000;
  for (int r = 0; r < reps; ++r) {
    auto v = base;
    std::string wire;
    c.Encode(absl::MakeSpan(v), &wire, MessageKey(r, 0, -1));
    for (size_t k = 0; k < 64; ++k) {
      ASSERT_LE(std::abs(v[k] - base[k]), scale * 1.0001f);
      mean[k] += v[k] / reps;
    }
  }
  for (size_t k = 0; k < 64; ++k) EXPECT_NEAR(mean[k], base[k], 4 * scale / std::sqrt(double(reps))) << k;
}

// A message's randomness comes from its key alone: the same (round, slot, receiver) encodes to the
// same bytes however many messages came before (a restored checkpoint replays rounds exactly), and
// different keys round differently.
TEST(Codec, Int8RoundingDependsOnlyOnTheMessageKey) {
  CodecOptions o;
  o.kind = CodecKind::kInt8;
  Codec a(o, 7), b(o, 7), other_sender(o, 8);
  const std::vector<float> base = Values(1000, 2);
  auto encode = [&](Codec& c, uint64_t key) {
    auto v = base;
    std::string wire;
    c.Encode(absl::MakeSpan(v), &wire, key);
    return wire;
  };
  for (int r = 0; r < 5; ++r) encode(a, MessageKey(r, 0, -1));  // a has encoded before, b has not
  EXPECT_EQ(encode(a, MessageKey(9, 1, 2)), encode(b, MessageKey(9, 1, 2)));
  EXPECT_NE(encode(a, MessageKey(9, 1, 2)), encode(a, MessageKey(9, 1, 3)));
  EXPECT_NE(encode(a, MessageKey(9, 1, 2)), encode(a, MessageKey(10, 1, 2)));
  EXPECT_NE(encode(a, MessageKey(9, 1, 2)), encode(other_sender, MessageKey(9, 1, 2)));
}

TEST(Codec, TopKKeepsTheLargestMagnitudes) {
  CodecOptions o;
  o.kind = CodecKind::kTopK;
  o.topk_fraction = 0.3;
  Codec c(o, 1);
  std::vector<float> v{0.1f, -5.0f, 0.2f, 3.0f, -0.3f, 0.0f, 4.0f, 0.05f, -0.01f, 0.02f};
  std::string wire;
  c.Encode(absl::MakeSpan(v), &wire);
  EXPECT_EQ(v, (std::vector<float>{0, -5.0f, 0, 3.0f, 0, 0, 4.0f, 0, 0, 0}));
}

TEST(Codec, GarbageIsRefusedWithAReason) {
  std::vector<float> out(100);
  auto decode = [&](CodecKind kind, const std::string& bytes, bool zstd = false) {
    CodecOptions o;
    o.kind = kind;
    o.zstd = zstd;
    return std::string(Codec(o, 1).Decode(bytes, absl::MakeSpan(out)).message());
  };
  EXPECT_NE(decode(CodecKind::kFp32, std::string(399, 'x')).find("fp32 payload has 399 bytes, expected 400 for 100 values"), std::string::npos);
  EXPECT_NE(decode(CodecKind::kBf16, std::string(7, 'x')).find("expected 200"), std::string::npos);
  std::string topk("\x02\x00\x00\x00", 4);
  topk += std::string("\x05\x00\x00\x00\x00\x00\x80\x3f", 8) + std::string("\x03\x00\x00\x00\x00\x00\x80\x3f", 8);
  EXPECT_NE(decode(CodecKind::kTopK, topk).find("index #1 = 3 is out of range or not ascending"), std::string::npos);
  EXPECT_NE(decode(CodecKind::kTopK, std::string("\xff\x00\x00\x00", 4)).find("keeps 255 values of 100"), std::string::npos);
  EXPECT_NE(decode(CodecKind::kFp32, "not zstd at all", true).find("not a zstd frame"), std::string::npos);
  std::string int8(4 + 100, '\0');
  int8[4 + 17] = static_cast<char>(0x80);
  EXPECT_NE(decode(CodecKind::kInt8, int8).find("value 17 is -128"), std::string::npos);
  EXPECT_NE(ParseCodecKind("fp8").status().message().find("allowed: fp32, bf16, int8, topk"), std::string::npos);
}

}  // namespace
}  // namespace gut::core
