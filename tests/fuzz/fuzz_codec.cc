// Fuzz target: every codec's Decode on arbitrary bytes (with and without zstd framing), and the
// round-trip property on arbitrary values: Encode leaves in the values exactly what Decode of its
// bytes yields (the property every replica's consistency rests on).
#include <cmath>
#include <cstring>

#include "core/codec/codec.h"
#include "tests/fuzz/input_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  InputReader p(data, size);
  gut::core::CodecOptions o;
  o.kind = static_cast<gut::core::CodecKind>(p.Int(0, 8));
  o.zstd = p.Bool();
  o.int8_chunk = static_cast<int>(p.Int(1, 64));
  o.topk_fraction = 0.001 + 0.999 * p.Fraction();
  o.sparse_values = static_cast<gut::core::ValueCoding>(p.Int(0, 2));
  o.lowrank_rank = static_cast<int>(p.Int(1, 4));
  const size_t n = static_cast<size_t>(p.Int(0, 300));
  // lowrank: a layout of up to three matrices the message is made of (or any other size).
  for (int t = static_cast<int>(p.Int(0, 3)); t > 0; --t) o.tensors.emplace_back(p.Int(1, 12), p.Int(1, 12));
  const gut::core::MessageTag tag{static_cast<int64_t>(p.Int(0, 1000)), static_cast<int>(p.Int(0, 7)), -1};
  gut::core::Codec codec(o, 7);
  if (p.Bool()) {
    const std::string bytes = p.Rest();
    std::vector<float> out(n);
    (void)codec.Decode(bytes, absl::MakeSpan(out), 7, tag);
    return 0;
  }
  std::vector<float> values(n);
  for (auto& v : values) v = p.AnyFloat();
  std::string wire;
  codec.Encode(absl::MakeSpan(values), &wire, tag);
  std::vector<float> back(n);
  if (!codec.Decode(wire, absl::MakeSpan(back), codec.seed(), tag).ok()) __builtin_trap();
  if (n > 0 && std::memcmp(back.data(), values.data(), n * sizeof(float)) != 0) __builtin_trap();
  return 0;
}
