// SHA-256 (FIPS 180-4): the identity of a run's TorchScript model file. The coordinator hands the
// file to every agent with its digest; an agent that brings its own copy, and every peer at the
// hello, must hold the same digest. zlib's CRC (crc32.h) guards against accidents only; a model
// file is code that every agent runs, so its identity needs a cryptographic hash.
#ifndef GUT_CORE_COMMON_SHA256_H_
#define GUT_CORE_COMMON_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace gut::core {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  void Update(absl::string_view s) { Update(s.data(), s.size()); }
  // The digest; the object must not be updated afterwards.
  std::array<uint8_t, 32> Finish();

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

// Lower-case hex digest of `data`.
std::string Sha256Hex(absl::string_view data);

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_SHA256_H_
