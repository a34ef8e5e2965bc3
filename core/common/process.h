// Process-wide settings for the binaries (never called by libraries).
#ifndef GUT_CORE_COMMON_PROCESS_H_
#define GUT_CORE_COMMON_PROCESS_H_

namespace gut::core {

// Keeps large LibTorch activations (MBs per batch) in malloc's arenas instead of fresh mmap()s:
// with glibc's defaults every evaluation batch page-faults its activations in again, which made
// evaluation several times slower and spent most of it in the kernel.
void TuneAllocator();

// The CPU seconds (user + system) this process has used so far (benchmarks).
double CpuSeconds();

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_PROCESS_H_
