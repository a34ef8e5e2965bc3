// Texts that leave the process for someone else (the coordinator's Status RPC, the status page)
// must not show how a machine's disks are laid out: RedactPaths keeps the last component of every
// absolute path and replaces the directories with "...", so "cannot write
// '/var/lib/gut/run-7/metrics.csv'" becomes "cannot write '.../metrics.csv'". Logs and local
// files (summary.json) keep the full text.
#ifndef GUT_CORE_COMMON_REDACT_H_
#define GUT_CORE_COMMON_REDACT_H_

#include <string>

namespace gut::core {

std::string RedactPaths(const std::string& text);

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_REDACT_H_
