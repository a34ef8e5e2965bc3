#include "core/models/model_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/common/atomic_file.h"
#include "core/common/sha256.h"

namespace gut::core {

absl::Status CheckModelBytes(absl::string_view bytes, const std::string& source) {
  if (bytes.empty()) return absl::InvalidArgumentError(absl::StrCat("model.path: ", source, " is empty"));
  if (static_cast<int64_t>(bytes.size()) > kMaxModelFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("model.path: ", source, " is ", bytes.size(),
                                                   " bytes; a model file is at most ", kMaxModelFileBytes));
  }
  // torch.jit.save writes a zip archive; a pickle from torch.save(model) or a state dict starts
  // otherwise (or is a zip without code/, which torch::jit::load names later).
  if (bytes.size() < 4 || bytes.substr(0, 4) != absl::string_view("PK\x03\x04", 4)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.path: ", source,
        " is not a TorchScript file (not a zip archive); write one in Python with "
        "torch.jit.save(torch.jit.script(model), path)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelFile> ReadModelFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("model.path: cannot open '", path, "' (", std::strerror(errno), ")"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("model.path: '", path, "' is not a regular file"));
  }
  if (st.st_size > kMaxModelFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("model.path: '", path, "' is ", st.st_size,
                                                   " bytes; a model file is at most ", kMaxModelFileBytes));
  }
  auto bytes = ReadWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  if (auto s = CheckModelBytes(*bytes, "'" + path + "'"); !s.ok()) return s;
  ModelFile f;
  f.sha256 = Sha256Hex(*bytes);
  f.bytes = std::move(*bytes);
  return f;
}

}  // namespace gut::core
