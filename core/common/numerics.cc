#include "core/common/numerics.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gut::core {
namespace {

constexpr char kMarker[] = "GUT_NUMERICS";
std::vector<std::string>* g_args = nullptr;

// glibc picks libm's exp/log/pow/sin variants by CPU (ifunc): the FMA variants of the double
// functions round differently from the SSE2 ones (measured: exp and log over 3e6 inputs). Masking
// FMA and AVX2 makes every CPU take the SSE2 variants; the float functions agree already.
constexpr char kHwcapsV2[] = "glibc.cpu.hwcaps=-FMA,-FMA4,-AVX2";

}  // namespace

absl::StatusOr<Numerics> ParseNumerics(const std::string& name) {
  if (name == "native") return Numerics::kNative;
  if (name == "portable") return Numerics::kPortable;
  if (name == "portable-v3") return Numerics::kPortableV3;
  return absl::InvalidArgumentError(
      absl::StrCat("run.numerics: unknown mode '", name, "'; allowed: ", AllowedNumerics()));
}

std::string NumericsName(Numerics mode) {
  switch (mode) {
    case Numerics::kPortable: return "portable";
    case Numerics::kPortableV3: return "portable-v3";
    case Numerics::kNative: break;
  }
  return "native";
}

std::string AllowedNumerics() { return "native, portable, portable-v3"; }

std::vector<std::pair<std::string, std::string>> NumericsEnvironment(Numerics mode) {
  if (mode == Numerics::kNative) return {};
  const bool v3 = mode == Numerics::kPortableV3;
  std::vector<std::pair<std::string, std::string>> env = {
      // OpenBLAS (GEMM of linear layers, im2col convolutions): one kernel family everywhere.
      {"OPENBLAS_CORETYPE", v3 ? "Haswell" : "Nehalem"},
      // ATen's own vectorised kernels (elementwise, reductions, softmax).
      {"ATEN_CPU_CAPABILITY", v3 ? "avx2" : "default"},
      // oneDNN (convolutions): its instruction set ceiling.
      {"ONEDNN_MAX_CPU_ISA", v3 ? "AVX2" : "SSE41"},
  };
  if (!v3) {
    const char* have = std::getenv("GLIBC_TUNABLES");
    std::string tunables = have != nullptr ? have : "";
    if (!absl::StrContains(tunables, kHwcapsV2)) tunables += (tunables.empty() ? "" : ":") + std::string(kHwcapsV2);
    env.emplace_back("GLIBC_TUNABLES", tunables);
  }
  env.emplace_back(kMarker, NumericsName(mode));
  return env;
}

Numerics CurrentNumerics() {
  const char* m = std::getenv(kMarker);
  if (m == nullptr) return Numerics::kNative;
  auto mode = ParseNumerics(m);
  if (!mode.ok()) return Numerics::kNative;
  for (const auto& [k, v] : NumericsEnvironment(*mode)) {
    const char* have = std::getenv(k.c_str());
    if (have == nullptr || (k == "GLIBC_TUNABLES" ? !absl::StrContains(have, kHwcapsV2) : v != have)) {
      return Numerics::kNative;
    }
  }
  return *mode;
}

void SetProgramArguments(int argc, char** argv) {
  delete g_args;
  g_args = new std::vector<std::string>(argv, argv + argc);
}

absl::Status CpuSupports(Numerics mode) {
  if (mode != Numerics::kPortableV3) return absl::OkStatus();
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "run.numerics: portable-v3 needs AVX2 and FMA (x86-64-v3), which this CPU lacks; use portable");
}

absl::Status EnterNumerics(Numerics mode) {
  if (auto s = CpuSupports(mode); !s.ok()) return s;
  if (CurrentNumerics() == mode && (mode != Numerics::kNative || std::getenv(kMarker) == nullptr)) {
    unsetenv("GUT_NUMERICS_RESTARTED");
    return absl::OkStatus();
  }
  if (g_args == nullptr || g_args->empty()) {
    return absl::FailedPreconditionError("run.numerics: the program's arguments are unknown; cannot restart it");
  }
  // Once restarted for a mode, a process that still is not in it would restart for ever.
  if (std::getenv("GUT_NUMERICS_RESTARTED") != nullptr) {
    return absl::InternalError(absl::StrCat("run.numerics: restarted for ", NumericsName(mode),
                                            " but its environment is not in force"));
  }
  // Leaving a portable mode: unset what it set, so the libraries choose for themselves again.
  if (const char* m = std::getenv(kMarker); m != nullptr) {
    if (auto old = ParseNumerics(m); old.ok()) {
      for (const auto& [k, v] : NumericsEnvironment(*old)) {
        if (k != "GLIBC_TUNABLES") unsetenv(k.c_str());
      }
    }
    unsetenv(kMarker);
  }
  if (const char* t = std::getenv("GLIBC_TUNABLES"); t != nullptr && absl::StrContains(t, kHwcapsV2)) {
    std::string rest = t;
    rest.erase(rest.find(kHwcapsV2), std::strlen(kHwcapsV2));
    while (absl::StrContains(rest, "::")) rest.erase(rest.find("::"), 1);
    if (!rest.empty() && rest.front() == ':') rest.erase(0, 1);
    if (!rest.empty() && rest.back() == ':') rest.pop_back();
    if (rest.empty()) unsetenv("GLIBC_TUNABLES"); else setenv("GLIBC_TUNABLES", rest.c_str(), 1);
  }
  std::string said;
  for (const auto& [k, v] : NumericsEnvironment(mode)) {
    setenv(k.c_str(), v.c_str(), 1);
    absl::StrAppend(&said, said.empty() ? "" : " ", k, "=", v);
  }
  setenv("GUT_NUMERICS_RESTARTED", "1", 1);
  std::fprintf(stderr, "run.numerics: %s: restarting with %s\n", NumericsName(mode).c_str(),
               said.empty() ? "the libraries' own choices" : said.c_str());
  std::fflush(stderr);
  std::vector<char*> argv;
  for (auto& a : *g_args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv("/proc/self/exe", argv.data());
  return absl::InternalError(absl::StrCat("run.numerics: cannot restart the program: ", std::strerror(errno)));
}

}  // namespace gut::core
