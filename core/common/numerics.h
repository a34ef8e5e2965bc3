// run.numerics: whether a process's floating-point results may depend on the CPU it runs on.
//
// LibTorch, oneDNN, OpenBLAS and glibc's libm pick their kernels by CPU (AVX-512, AVX2 + FMA, SSE),
// and kernels of different vector widths sum in different orders and round FMAs differently, so
// the same run gives other bits on another machine. `portable` pins every such choice to one that
// exists on every x86-64 CPU from x86-64-v2 (Nehalem, 2008) up; `portable-v3` pins them to
// x86-64-v3 (AVX2 + FMA: Haswell, 2013; Zen) for machines that all have it, at a fraction of the
// cost. `native` lets each library choose (fastest; bits depend on the CPU).
//
// The choices are environment variables the libraries read once, some when they are loaded
// (OpenBLAS's core type, glibc's ifunc selection), so a process enters a mode by re-executing
// itself with them set (EnterNumerics). docs/numerics.md says what each one pins and why.
#ifndef GUT_CORE_COMMON_NUMERICS_H_
#define GUT_CORE_COMMON_NUMERICS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gut::core {

enum class Numerics { kNative, kPortable, kPortableV3 };

absl::StatusOr<Numerics> ParseNumerics(const std::string& name);  // native, portable, portable-v3
std::string NumericsName(Numerics mode);
std::string AllowedNumerics();

// The environment a mode sets (empty for native), in the order it is applied.
std::vector<std::pair<std::string, std::string>> NumericsEnvironment(Numerics mode);

// The mode this process computes in: the one EnterNumerics entered (GUT_NUMERICS with every
// variable of its environment in place), else native.
Numerics CurrentNumerics();

// Remembers main()'s arguments, so that EnterNumerics can start the program again with them.
void SetProgramArguments(int argc, char** argv);

// Makes this process compute in `mode`. Returns OK when it already does; otherwise starts this
// program again (the same arguments, through /proc/self/exe) with the mode's environment, and does
// not return; returns an error when that is impossible (the CPU lacks what the mode needs, no
// program arguments, exec failed). Leaving a portable mode for native unsets what it had set.
absl::Status EnterNumerics(Numerics mode);

// Whether this CPU can run `mode` (portable-v3 needs AVX2 and FMA); an error naming what it lacks.
absl::Status CpuSupports(Numerics mode);

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_NUMERICS_H_
