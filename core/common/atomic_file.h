// Whole-file writes that a crash can never leave half done: the content goes to a temporary file
// in the same directory, which is flushed to disk (fsync), renamed over the target, and then the
// directory itself is flushed so that the rename survives a power cut. A reader sees either the
// old file or the new one. Used for every output of a run (CSV, JSON, SVG, Prometheus pages) and
// for checkpoints.
#ifndef GUT_CORE_COMMON_ATOMIC_FILE_H_
#define GUT_CORE_COMMON_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gut::core {

enum class Durability {
  kFsync,   // file and directory flushed before returning (checkpoints, final outputs)
  kRename,  // atomic, but left to the kernel to flush (progress files rewritten every epoch)
};

// Errors name the path and the system's reason; the target is untouched on any error.
absl::Status AtomicWrite(const std::string& path, absl::string_view content,
                         Durability durability = Durability::kFsync);

// The whole file, or NOT_FOUND / a read error naming the path.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_ATOMIC_FILE_H_
