#include "core/codec/codec.h"

#include <cmath>
#include <cstring>
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
  ValueCoding values = ValueCoding::kFp32;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << CodecName(c.kind) << "_" << ValueCodingName(c.values) << (c.zstd ? "_zstd" : "");
}

// A LeNet-like layout of matrices and biases summing to `total` values (the rest one bias).
std::vector<std::pair<int64_t, int64_t>> Layout(size_t total) {
  std::vector<std::pair<int64_t, int64_t>> t = {{6, 25}, {1, 6}, {16, 150}, {1, 16}, {40, 30}};
  size_t used = 0;
  for (auto [r, c] : t) used += static_cast<size_t>(r * c);
  if (total < used) return {};
  t.emplace_back(1, static_cast<int64_t>(total - used));
  return t;
}

CodecOptions Options(const Case& c, size_t n) {
  CodecOptions o;
  o.kind = c.kind;
  o.zstd = c.zstd;
  o.sparse_values = c.values;
  o.int8_chunk = 1000;
  o.topk_fraction = 0.05;
  o.lowrank_rank = 2;
  o.tensors = Layout(n);
  return o;
}

class CodecRoundTrip : public ::testing::TestWithParam<Case> {};

// The sender's in-place decoded values equal what any receiver decodes (a receiver has its own
// codec seed and is told the sender's), bit for bit: replicas stay identical under every codec.
TEST_P(CodecRoundTrip, SenderAndReceiverAgreeBitForBit) {
  for (size_t n : {size_t{1}, size_t{999}, size_t{4000}, size_t{61706}}) {
    const CodecOptions o = Options(GetParam(), n);
    Codec sender(o, 7), receiver(o, 99);
    for (int round = 0; round < 3; ++round) {
      auto v = Values(n, n + round);
      const auto original = v;
      std::string wire;
      const MessageTag tag{round, 1, round - 1};
      sender.Encode(absl::MakeSpan(v), &wire, tag);
      std::vector<float> got(n, -1.0f);
      ASSERT_TRUE(receiver.Decode(wire, absl::MakeSpan(got), sender.seed(), MessageTag{round, 1, -1}).ok())
          << CodecName(o.kind) << " n=" << n;
      for (size_t k = 0; k < n; ++k) ASSERT_EQ(got[k], v[k]) << "n " << n << " index " << k;
      if (o.kind == CodecKind::kFp32) {
        EXPECT_EQ(got, original);
      }
      EXPECT_LE(wire.size(), o.zstd ? wire.size() : sender.MaxRawSize(n));
    }
  }
}

// Error feedback: sending e = x - x̂ and adding what arrives to x̂, message after message, brings
// the public copy x̂ to x under every codec (each is a contraction in expectation).
TEST_P(CodecRoundTrip, ErrorFeedbackDrivesTheReplicaToTheModel) {
  const size_t n = 4000;
  const CodecOptions o = Options(GetParam(), n);
  Codec c(o, 5);
  const auto x = Values(n, 3);
  std::vector<float> xhat(n, 0.0f), e(n);
  auto rel = [&] {
    double d = 0, nx = 0;
    for (size_t k = 0; k < n; ++k) {
      d += double(x[k] - xhat[k]) * (x[k] - xhat[k]);
      nx += double(x[k]) * x[k];
    }
    return std::sqrt(d / nx);
  };
  std::string wire;
  for (int r = 0; r < 400; ++r) {
    for (size_t k = 0; k < n; ++k) e[k] = x[k] - xhat[k];
    c.Encode(absl::MakeSpan(e), &wire, MessageTag{r, 0, -1});
    for (size_t k = 0; k < n; ++k) xhat[k] += e[k];
  }
  EXPECT_LT(rel(), 1e-2) << CodecName(o.kind);
}

INSTANTIATE_TEST_SUITE_P(
    All, CodecRoundTrip,
    ::testing::Values(Case{CodecKind::kFp32, false}, Case{CodecKind::kBf16, false}, Case{CodecKind::kInt8, false},
                      Case{CodecKind::kInt4, false}, Case{CodecKind::kInt4, true}, Case{CodecKind::kInt2, false},
                      Case{CodecKind::kInt2, true},
                      Case{CodecKind::kTopK, false}, Case{CodecKind::kTopK, false, ValueCoding::kBf16},
                      Case{CodecKind::kTopK, false, ValueCoding::kInt8}, Case{CodecKind::kRandK, false},
                      Case{CodecKind::kRandK, false, ValueCoding::kInt8}, Case{CodecKind::kSign, false},
                      Case{CodecKind::kLowRank, false}, Case{CodecKind::kFp32, true}, Case{CodecKind::kBf16, true},
                      Case{CodecKind::kInt8, true}, Case{CodecKind::kTopK, true, ValueCoding::kInt8},
                      Case{CodecKind::kRandK, true, ValueCoding::kBf16}, Case{CodecKind::kSign, true},
                      Case{CodecKind::kLowRank, true}),
    [](const auto& info) {
      return std::string(CodecName(info.param.kind)) + "_" + ValueCodingName(info.param.values) +
             (info.param.zstd ? "_zstd" : "");
    });

double WireRatio(CodecOptions o, size_t p) {
  Codec c(o, 1);
  auto v = Values(p);
  std::string wire;
  c.Encode(absl::MakeSpan(v), &wire);
  return static_cast<double>(wire.size()) / (4.0 * p);
}

TEST(Codec, WireSizesPerValue) {
  const size_t p = 61706;
  auto ratio = [&](CodecKind kind, double fraction = 0.01, ValueCoding values = ValueCoding::kFp32) {
    CodecOptions o;
    o.kind = kind;
    o.topk_fraction = fraction;
    o.sparse_values = values;
    return WireRatio(o, p);
  };
  EXPECT_DOUBLE_EQ(ratio(CodecKind::kFp32), 1.0);
  EXPECT_DOUBLE_EQ(ratio(CodecKind::kBf16), 0.5);
  EXPECT_DOUBLE_EQ(ratio(CodecKind::kInt8), (p + 4.0 * 16) / (4.0 * p));  // 16 chunks of 4096
  // int4: two values per byte (16 chunks of 4096, the last one odd-sized) and a scale per chunk.
  EXPECT_DOUBLE_EQ(ratio(CodecKind::kInt4), (15 * (4 + 2048) + 4 + (p - 15 * 4096 + 1) / 2) / (4.0 * p));
  // int2: four values per byte.
  EXPECT_DOUBLE_EQ(ratio(CodecKind::kInt2), (15 * (4 + 1024) + 4 + (p - 15 * 4096 + 3) / 4) / (4.0 * p));
  // topk: ~1 byte per index gap at 10 %, up to 2 at 1 %, plus the values.
  EXPECT_LE(ratio(CodecKind::kTopK, 0.01), 0.01 * (4 + 2) / 4 + 1e-4);
  EXPECT_LE(ratio(CodecKind::kTopK, 0.1, ValueCoding::kInt8), 0.1 * (1 + 1) / 4 + 1e-3);
  EXPECT_LE(ratio(CodecKind::kTopK, 0.1, ValueCoding::kBf16), 0.1 * (1 + 2) / 4 + 1e-3);
  // randk sends the values only: k int8 values and one scale.
  const double k = std::ceil(0.1 * p);
  EXPECT_DOUBLE_EQ(ratio(CodecKind::kRandK, 0.1, ValueCoding::kInt8), (k + 4 * 2) / (4.0 * p));
  EXPECT_DOUBLE_EQ(ratio(CodecKind::kRandK, 0.1), k / p);
  // sign: a bit per value and a float per 4096.
  EXPECT_DOUBLE_EQ(ratio(CodecKind::kSign), (std::ceil(p / 8.0) + 4 * 16) / (4.0 * p));
}

TEST(Codec, LowRankSendsTheFactorsOfEachMatrixAndTheRestAsIs) {
  CodecOptions o;
  o.kind = CodecKind::kLowRank;
  o.lowrank_rank = 1;
  o.tensors = {{120, 256}, {1, 120}, {6, 25}};
  const size_t n = 120 * 256 + 120 + 150;
  // rank 1: 120 + 256 values for the first matrix, the bias as is, 6 + 25 for the last.
  EXPECT_DOUBLE_EQ(WireRatio(o, n), (120.0 + 256 + 120 + 6 + 25) / n);
  // A rank-1 matrix comes through (to float rounding), the bias exactly.
  std::vector<float> v(n);
  for (int i = 0; i < 120; ++i)
    for (int j = 0; j < 256; ++j) v[i * 256 + j] = 0.01f * (i % 7 - 3) * (j % 5 + 1);
  for (int k = 0; k < 120; ++k) v[120 * 256 + k] = 0.5f - k;
  for (int k = 0; k < 150; ++k) v[120 * 256 + 120 + k] = 0.25f * (k % 3 == 0) * (k < 25 ? 1 : -1);
  const auto original = v;
  Codec c(o, 3);
  std::string wire;
  c.Encode(absl::MakeSpan(v), &wire);
  for (size_t k = 0; k < 120 * 256; ++k) ASSERT_NEAR(v[k], original[k], 1e-5) << k;
  for (size_t k = 120 * 256; k < 120 * 256 + 120; ++k) ASSERT_EQ(v[k], original[k]) << k;
  // A message that is not a whole number of layouts goes as fp32, losslessly.
  std::vector<float> odd = Values(1001);
  const auto odd0 = odd;
  c.Encode(absl::MakeSpan(odd), &wire);
  EXPECT_EQ(odd, odd0);
  EXPECT_EQ(wire.size(), 4u * 1001);
}

TEST(Codec, RandKIndicesComeFromTheSenderSeedRoundAndSlot) {
  CodecOptions o;
  o.kind = CodecKind::kRandK;
  o.topk_fraction = 0.1;
  const size_t n = 1000;
  auto kept = [&](uint64_t seed, MessageTag tag) {
    Codec c(o, seed);
    std::vector<float> v(n, 1.0f);
    std::string wire;
    c.Encode(absl::MakeSpan(v), &wire, tag);
    std::vector<int> idx;
    for (size_t k = 0; k < n; ++k)
      if (v[k] != 0) idx.push_back(static_cast<int>(k));
    EXPECT_EQ(idx.size(), 100u);
    return idx;
  };
  // The receiver does not matter (a broadcast and a message to one neighbour keep the same values).
  EXPECT_EQ(kept(7, {3, 0, -1}), kept(7, {3, 0, 2}));
  EXPECT_NE(kept(7, {3, 0, -1}), kept(7, {4, 0, -1}));
  EXPECT_NE(kept(7, {3, 0, -1}), kept(7, {3, 1, -1}));
  EXPECT_NE(kept(7, {3, 0, -1}), kept(8, {3, 0, -1}));
  // A receiver that assumes another sender's seed puts the values in the wrong places.
  Codec c(o, 7);
  auto v = Values(n);
  std::string wire;
  c.Encode(absl::MakeSpan(v), &wire, {3, 0, -1});
  std::vector<float> right(n), wrong(n);
  ASSERT_TRUE(c.Decode(wire, absl::MakeSpan(right), 7, {3, 0, -1}).ok());
  ASSERT_TRUE(c.Decode(wire, absl::MakeSpan(wrong), 8, {3, 0, -1}).ok());
  EXPECT_EQ(right, v);
  EXPECT_NE(wrong, v);
}

TEST(Codec, SignKeepsSignsAndTheChunkMeanMagnitude) {
  CodecOptions o;
  o.kind = CodecKind::kSign;
  o.int8_chunk = 4;
  std::vector<float> v{1.0f, -3.0f, 0.5f, -0.5f, 2.0f, 2.0f};
  std::string wire;
  Codec(o, 1).Encode(absl::MakeSpan(v), &wire);
  EXPECT_EQ(v, (std::vector<float>{1.25f, -1.25f, 1.25f, -1.25f, 2.0f, 2.0f}));
  EXPECT_EQ(wire.size(), 2 * 4 + 1u);
}

TEST(Codec, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 1.0f / 256)), 1.0f) << "tie goes to even";
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256) << "tie goes to even";
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  auto v = Values(10000);
  for (float x : v) EXPECT_LE(std::abs(Bf16ToFloat(FloatToBf16(x)) - x), std::abs(x) / 256 + 1e-30f);
}

TEST(Codec, IntegerCodecsAreUnbiasedAndBounded) {
  for (const auto& [kind, levels] :
       {std::pair<CodecKind, int>{CodecKind::kInt8, 127}, {CodecKind::kInt4, 7}}) {
    CodecOptions o;
    o.kind = kind;
    o.int8_chunk = 64;
    Codec c(o, 3);
    std::vector<float> base = Values(64, 5);
    const float scale = [&, levels = levels] {
      float m = 0;
      for (float x : base) m = std::max(m, std::abs(x));
      return m / levels;
    }();
    std::vector<double> mean(64, 0.0);
    const int reps = 4000;
    for (int r = 0; r < reps; ++r) {
      auto v = base;
      std::string wire;
      c.Encode(absl::MakeSpan(v), &wire, MessageTag{r, 0, -1});
      for (size_t k = 0; k < 64; ++k) {
        ASSERT_LE(std::abs(v[k] - base[k]), scale * 1.0001f) << CodecName(kind);
        mean[k] += v[k] / reps;
      }
    }
    for (size_t k = 0; k < 64; ++k) EXPECT_NEAR(mean[k], base[k], 4 * scale / std::sqrt(double(reps))) << CodecName(kind) << " " << k;
  }
}

// int2 trades unbiasedness for contraction: its decoded chunk is ±Σv²/Σ|v| where a value is kept
// (probability |v| / max|v|), so the expected squared error is below the message's own norm (the
// property error feedback needs), where unbiased ternary rounding's is above it.
TEST(Codec, Int2ShrinksTheErrorOnAverage) {
  CodecOptions o;
  o.kind = CodecKind::kInt2;
  o.int8_chunk = 256;
  Codec c(o, 3);
  std::vector<float> base = Values(256, 5);
  base[17] = 4 * *std::max_element(base.begin(), base.end());  // one outlier makes max|v| large
  double norm2 = 0, sum1 = 0, maxabs = 0;
  for (float x : base) {
    norm2 += double(x) * x;
    sum1 += std::abs(x);
    maxabs = std::max(maxabs, double(std::abs(x)));
  }
  double err2 = 0;
  const int reps = 2000;
  for (int r = 0; r < reps; ++r) {
    auto v = base;
    std::string wire;
    c.Encode(absl::MakeSpan(v), &wire, MessageTag{r, 0, -1});
    for (size_t k = 0; k < v.size(); ++k) {
      err2 += (double(v[k]) - base[k]) * (double(v[k]) - base[k]) / reps;
      ASSERT_TRUE(v[k] == 0 || std::abs(std::abs(v[k]) - norm2 / sum1) < 1e-5 * norm2 / sum1) << v[k];
    }
  }
  const double expected = norm2 * (1 - norm2 / (maxabs * sum1));
  EXPECT_NEAR(err2, expected, 0.05 * norm2);
  EXPECT_LT(err2, 0.9 * norm2);
  EXPECT_GT(maxabs * sum1 - norm2, norm2) << "unbiased rounding would not have shrunk this chunk";
}

// A message's randomness comes from its key alone: the same (round, slot, receiver) encodes to the
// same bytes however many messages came before (a restored checkpoint replays rounds exactly), and
// different keys round differently.
TEST(Codec, Int8RoundingDependsOnlyOnTheMessageKey) {
  CodecOptions o;
  o.kind = CodecKind::kInt8;
  Codec a(o, 7), b(o, 7), other_sender(o, 8);
  const std::vector<float> base = Values(1000, 2);
  auto encode = [&](Codec& c, MessageTag tag) {
    auto v = base;
    std::string wire;
    c.Encode(absl::MakeSpan(v), &wire, tag);
    return wire;
  };
  for (int r = 0; r < 5; ++r) encode(a, {r, 0, -1});  // a has encoded before, b has not
  EXPECT_EQ(encode(a, {9, 1, 2}), encode(b, {9, 1, 2}));
  EXPECT_NE(encode(a, {9, 1, 2}), encode(a, {9, 1, 3}));
  EXPECT_NE(encode(a, {9, 1, 2}), encode(a, {10, 1, 2}));
  EXPECT_NE(encode(a, {9, 1, 2}), encode(other_sender, {9, 1, 2}));
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
  auto decode = [&](CodecKind kind, const std::string& bytes, bool zstd = false, CodecOptions o = {}) {
    o.kind = kind;
    o.zstd = zstd;
    return std::string(Codec(o, 1).Decode(bytes, absl::MakeSpan(out), 1).message());
  };
  auto has = [](const std::string& message, const std::string& part) {
    return message.find(part) != std::string::npos ? ::testing::AssertionSuccess()
                                                    : ::testing::AssertionFailure() << "'" << message << "'";
  };
  EXPECT_TRUE(has(decode(CodecKind::kFp32, std::string(399, 'x')), "fp32 payload has 399 bytes, expected 400 for 100 values"));
  EXPECT_TRUE(has(decode(CodecKind::kBf16, std::string(7, 'x')), "expected 200"));
  // topk: count 2, gaps 95 and 10 (the second index, 106, is past the end).
  EXPECT_TRUE(has(decode(CodecKind::kTopK, std::string("\x02\x5f\x0a", 3) + std::string(8, '\0')),
                  "topk payload: index #1 = 106 is out of range"));
  EXPECT_TRUE(has(decode(CodecKind::kTopK, std::string("\xff\x01", 2)), "keeps 255 values of 100"));
  EXPECT_TRUE(has(decode(CodecKind::kTopK, std::string("\x01\x05", 2) + std::string(2, '\0')), "topk payload: fp32 values are truncated"));
  EXPECT_TRUE(has(decode(CodecKind::kTopK, std::string("\x01\x05", 2) + std::string(5, '\0')), "1 bytes after its 100 values"));
  EXPECT_TRUE(has(decode(CodecKind::kRandK, std::string(3, '\0')), "randk payload has 3 bytes, expected 4 for 1 of 100 values"));
  EXPECT_TRUE(has(decode(CodecKind::kSign, std::string(3, '\0')), "sign payload has 3 bytes, expected 17"));
  // int4: 100 values are a scale and 50 bytes; the nibble 0x8 (-8) is outside [-7, 7].
  EXPECT_TRUE(has(decode(CodecKind::kInt4, std::string(53, '\0')), "int4 payload has 53 bytes, expected 54"));
  EXPECT_TRUE(has(decode(CodecKind::kInt4, std::string(4, '\0') + "\x80" + std::string(49, '\0')),
                  "int4 value 1 is -8, outside [-7, 7]"));
  // int2: 100 values are a scale and 25 bytes; the code 0b10 (-2) is outside [-1, 1].
  EXPECT_TRUE(has(decode(CodecKind::kInt2, std::string(4, '\0') + "\x08" + std::string(24, '\0')),
                  "int2 value 1 is -2, outside [-1, 1]"));
  std::string sign(17, '\0');
  const float bad_scale = -1.0f;
  std::memcpy(sign.data(), &bad_scale, 4);
  EXPECT_TRUE(has(decode(CodecKind::kSign, sign), "sign payload: scale -1"));
  CodecOptions lr;
  lr.tensors = {{10, 10}};
  EXPECT_TRUE(has(decode(CodecKind::kLowRank, std::string(10, '\0'), false, lr), "lowrank payload has 10 bytes, expected 80"));
  std::string factors(80, '\0');
  const float two = 2.0f;
  std::memcpy(factors.data(), &two, 4);
  EXPECT_TRUE(has(decode(CodecKind::kLowRank, factors, false, lr), "factor entry 2 of the tensor at value 0 is outside [-1, 1]"));
  EXPECT_TRUE(has(decode(CodecKind::kFp32, "not zstd at all", true), "not a zstd frame"));
  std::string int8(4 + 100, '\0');
  int8[4 + 17] = static_cast<char>(0x80);
  EXPECT_TRUE(has(decode(CodecKind::kInt8, int8), "value 17 is -128"));
  EXPECT_TRUE(has(std::string(ParseCodecKind("fp8").status().message()), "allowed: fp32, bf16, int8, int4, int2, topk, randk, sign, lowrank"));
  EXPECT_TRUE(has(std::string(ParseValueCoding("fp16").status().message()), "allowed: fp32, bf16, int8"));
}

}  // namespace
}  // namespace gut::core
