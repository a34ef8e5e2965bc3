// ValidateRunConfig: the checks ParseManifest runs on a manifest once every key is read.
#ifndef GUT_CORE_CONFIG_MANIFEST_CHECKS_H_
#define GUT_CORE_CONFIG_MANIFEST_CHECKS_H_

#include "absl/status/status.h"
#include "core/config/manifest.h"

namespace gut::core {

// INVALID_ARGUMENT naming the first key that is out of range, unknown or impossible with the rest
// of the manifest (the caller prefixes the manifest's name).
absl::Status ValidateRunConfig(const RunConfig& c);

}  // namespace gut::core

#endif  // GUT_CORE_CONFIG_MANIFEST_CHECKS_H_
