// Process-wide settings for the binaries (never called by libraries).
#ifndef GUT_CORE_COMMON_PROCESS_H_
#define GUT_CORE_COMMON_PROCESS_H_

namespace gut::core {

// Keeps large LibTorch activations (MBs per batch) in malloc's arenas instead of fresh mmap()s:
// with glibc's defaults every evaluation batch page-faults its activations in again, which made
// evaluation several times slower and spent most of it in the kernel.
void TuneAllocator();

// Raises the soft limit on open files to the hard limit (the daemons): the default soft limit of
// 1024 is what a stranger holding idle connections exhausts first. Returns the new soft limit.
long RaiseFileLimit();

// Adds group-write and every "other" bit to the umask (the daemons): run directories, logs,
// checkpoints and outputs come out 0750/0640 at most, since they hold a run's models, names and
// addresses. A stricter umask stays. Returns the new umask.
unsigned RestrictFileModes();

// The CPU seconds (user + system) this process has used so far (benchmarks).
double CpuSeconds();

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_PROCESS_H_
