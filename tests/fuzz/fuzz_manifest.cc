// Fuzz target: the run manifest parser (YAML, the schema checks, --set overrides). Oracle: no
// crash and no sanitizer report; every input is either a valid configuration, which round-trips
// through its own YAML to the same configuration, or an error message.
#include <string>

#include "core/config/manifest.h"
#include "tests/fuzz/input_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  InputReader p(data, size);
  std::vector<std::string> overrides;
  if (p.Bool()) overrides.push_back(p.String(64));
  const std::string text = p.Rest();
  auto c = gut::core::ParseManifest(text, "fuzz", overrides);
  if (!c.ok()) {
    if (c.status().message().empty()) __builtin_trap();
    return 0;
  }
  auto again = gut::core::ParseManifest(gut::core::ToYaml(*c), "fuzz-again", {});
  if (!again.ok() || gut::core::ToYaml(*again) != gut::core::ToYaml(*c)) __builtin_trap();
  return 0;
}
