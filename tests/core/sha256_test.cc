// SHA-256 against the FIPS 180-4 examples and sha256sum, and chunked updates against one call
// (every split of a message across the 55/56/64-byte padding boundaries).
#include <string>

#include "core/common/sha256.h"
#include "gtest/gtest.h"

namespace gut::core {
namespace {

TEST(Sha256, StandardVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, ChunkedUpdatesEqualOneCall) {
  std::string msg;
  for (int k = 0; k < 200; ++k) msg.push_back(static_cast<char>(k * 37 + 11));
  for (size_t len : {55, 56, 63, 64, 65, 119, 120, 128, 200}) {
    const std::string m = msg.substr(0, len);
    const std::string whole = Sha256Hex(m);
    for (size_t cut = 0; cut <= len; cut += 7) {
      Sha256 s;
      s.Update(m.substr(0, cut));
      s.Update(m.substr(cut));
      std::string hex;
      for (uint8_t b : s.Finish()) hex += "0123456789abcdef"[b >> 4], hex += "0123456789abcdef"[b & 15];
      EXPECT_EQ(hex, whole) << "length " << len << " cut " << cut;
    }
  }
}

}  // namespace
}  // namespace gut::core
