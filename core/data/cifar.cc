// CIFAR-10/100 in the official binary format and the dataset dispatch by name (docs/algorithms.md §4).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/data/dataset.h"
#include "core/data/npy.h"

namespace gut::core {

namespace {

struct CifarFormat {
  const char* name;
  int label_bytes;  // CIFAR-100 records carry the coarse label first, then the fine one
  int num_classes;
  std::vector<std::string> train_files, test_files;
  float mean[3], std[3];
  const char* layout_hint;
};

CifarFormat Cifar10() {
  return {"cifar10", 1, 10,
          {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"},
          {"test_batch.bin"}, {0.4914f, 0.4822f, 0.4465f}, {0.2023f, 0.1994f, 0.2010f},
          "the binary version's folder (cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin)"};
}
CifarFormat Cifar100() {
  return {"cifar100", 2, 100, {"train.bin"}, {"test.bin"}, {0.5071f, 0.4867f, 0.4408f}, {0.2675f, 0.2565f, 0.2761f},
          "the binary version's folder (cifar-100-binary: train.bin, test.bin)"};
}

constexpr int kPixels = 32 * 32;
constexpr int kImageBytes = 3 * kPixels;

absl::Status ReadCifarFiles(const std::string& dir, const CifarFormat& f, const std::vector<std::string>& files,
                            Dataset* d) {
  d->channels = 3;
  d->height = d->width = 32;
  d->num_classes = f.num_classes;
  for (int c = 0; c < 3; ++c) d->pad_value.push_back(-f.mean[c] / f.std[c]);  // a black pixel
  d->augment = Augment::kCifar;
  const int record = f.label_bytes + kImageBytes;
  for (const auto& name : files) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("data: cannot open ", path, "; ", f.name, " expects ", f.layout_hint,
                                              " in data.path (download it from https://www.cs.toronto.edu/~kriz/cifar.html; "
                                              "nothing is fetched at run time)"));
    }
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.empty() || bytes.size() % record != 0) {
      return absl::DataLossError(absl::StrCat("data: ", path, " has ", bytes.size(), " bytes, not a whole number of ",
                                              record, "-byte ", f.name, " records (truncated or not ", f.name, ")"));
    }
    const size_t n = bytes.size() / record;
    const size_t base = d->images.size();
    d->images.resize(base + n * kImageBytes);
    for (size_t r = 0; r < n; ++r) {
      const auto* rec = reinterpret_cast<const unsigned char*>(bytes.data()) + r * record;
      const int label = rec[f.label_bytes - 1];
      if (label >= f.num_classes) {
        return absl::DataLossError(absl::StrCat("data: ", path, " record ", r, " has label ", label, ", ", f.name,
                                                " has ", f.num_classes, " classes"));
      }
      d->labels.push_back(label);
      float* out = d->images.data() + base + r * kImageBytes;
      const unsigned char* px = rec + f.label_bytes;  // R plane, G plane, B plane: already CHW
      for (int c = 0; c < 3; ++c)
        for (int i = 0; i < kPixels; ++i)
          out[c * kPixels + i] = (px[c * kPixels + i] / 255.0f - f.mean[c]) / f.std[c];
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainTest> LoadCifar(const std::string& dir, int classes) {
  if (classes != 10 && classes != 100) return absl::InvalidArgumentError("data: CIFAR has 10 or 100 classes");
  const CifarFormat f = classes == 10 ? Cifar10() : Cifar100();
  TrainTest tt;
  if (auto s = ReadCifarFiles(dir, f, f.train_files, &tt.train); !s.ok()) return s;
  if (auto s = ReadCifarFiles(dir, f, f.test_files, &tt.test); !s.ok()) return s;
  tt.test.augment = Augment::kNone;
  return tt;
}

absl::StatusOr<DatasetShape> GetDatasetShape(const std::string& name) {
  if (name == "fashion-mnist" || name == "mnist") return DatasetShape{{1, 28, 28}, 10};
  if (name == "cifar10") return DatasetShape{{3, 32, 32}, 10};
  if (name == "cifar100") return DatasetShape{{3, 32, 32}, 100};
  if (name == "imagenette") return DatasetShape{{3, 224, 224}, 10};
  if (name == "npy") return DatasetShape{{}, 0};  // whatever the arrays hold (core/data/npy.h)
  return absl::InvalidArgumentError(
      absl::StrCat("data.dataset: unknown data set '", name, "'; allowed: ", AllowedDatasetNames()));
}

std::string AllowedDatasetNames() { return "fashion-mnist, mnist, cifar10, cifar100, imagenette, npy"; }

absl::StatusOr<TrainTest> LoadDataset(const std::string& name, const std::string& dir, bool regression) {
  if (name == "npy") return LoadNpyDataset(dir, regression ? NpyTargets::kRegression : NpyTargets::kClasses);
  if (name == "fashion-mnist" || name == "mnist") return LoadMnistFamily(dir);
  if (name == "cifar10") return LoadCifar(dir, 10);
  if (name == "cifar100") return LoadCifar(dir, 100);
  if (name == "imagenette") return LoadImageFolder(dir);
  return GetDatasetShape(name).status();
}

std::string DetectDataset(const std::string& dir) {
  namespace fs = std::filesystem;
  if (fs::exists(fs::path(dir) / "train_x.npy")) return "npy";
  if (fs::exists(fs::path(dir) / "data_batch_1.bin")) return "cifar10";
  if (fs::exists(fs::path(dir) / "train.bin")) return "cifar100";
  if (fs::is_directory(fs::path(dir) / "train") && fs::is_directory(fs::path(dir) / "val")) return "imagenette";
  return "fashion-mnist";  // the MNIST family's IDX files (the loader names what is missing)
}

}  // namespace gut::core
