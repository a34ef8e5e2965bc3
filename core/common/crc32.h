// CRC-32 with the IEEE polynomial, exactly zlib's crc32() (the peer protocol's frame checksum and
// the checkpoint file's), but computed by carry-less multiplication (PCLMULQDQ) on x86-64 CPUs
// that have it: zlib 1.2.13's table code ran at about 3.7 GB/s here, and checking every frame
// twice (sender and receiver) was a quarter of the CPU the message path spent per round
// (bench/exchange_bench). Other CPUs, and buffers under 64 bytes, use zlib.
#ifndef GUT_CORE_COMMON_CRC32_H_
#define GUT_CORE_COMMON_CRC32_H_

#include <cstddef>
#include <cstdint>

namespace gut::core {

// zlib's crc32(crc, data, size): Crc32(Crc32(0, a), b) == Crc32(0, a + b).
uint32_t Crc32(uint32_t crc, const void* data, size_t size);

// The table-driven reference (zlib), for tests and benchmarks.
uint32_t Crc32Reference(uint32_t crc, const void* data, size_t size);

// Whether Crc32 uses the carry-less multiplication path on this CPU.
bool Crc32Accelerated();

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_CRC32_H_
