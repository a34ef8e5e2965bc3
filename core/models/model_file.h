// A TorchScript model file as the coordinator, gut-sim and an agent with its own copy read it:
// bounded, a regular file, a zip archive (what torch.jit.save writes), and its SHA-256, the model's
// identity in the run. No LibTorch here: the coordinator reads and hands over the file without
// loading it; core/models/torchscript.h turns the bytes into a model.
#ifndef GUT_CORE_MODELS_MODEL_FILE_H_
#define GUT_CORE_MODELS_MODEL_FILE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gut::core {

// Far beyond the models gut trains on CPUs (ResNet-50 is ~100 MB), low enough that a wrong path
// (a disk image, /dev/zero) is refused before it is read into memory.
constexpr int64_t kMaxModelFileBytes = int64_t{1} << 30;

struct ModelFile {
  std::string bytes;
  std::string sha256;  // lower-case hex
};

// Errors name the path: missing, not a regular file, empty, over kMaxModelFileBytes, not a zip
// archive (then it cannot be TorchScript).
absl::StatusOr<ModelFile> ReadModelFile(const std::string& path);

// The same content check on bytes that came from elsewhere (the coordinator's hand-over).
absl::Status CheckModelBytes(absl::string_view bytes, const std::string& source);

}  // namespace gut::core

#endif  // GUT_CORE_MODELS_MODEL_FILE_H_
