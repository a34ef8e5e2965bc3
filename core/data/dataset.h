// Dataset: an in-memory labelled image set, images as normalised float32 NCHW rows.
// Immutable once loaded; shared read-only by every agent of a process.
#ifndef GUT_CORE_DATA_DATASET_H_
#define GUT_CORE_DATA_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gut::core {

// Training-time augmentation (§4), applied per sample when a minibatch is drawn:
// kCifar = horizontal flip with p = 0.5, then a random 32x32 crop of the image zero-padded by 4.
enum class Augment { kNone, kCifar };

struct Dataset {
  int channels = 0, height = 0, width = 0, num_classes = 0;
  std::vector<float> images;    // size() * channels * height * width
  std::vector<int64_t> labels;  // in [0, num_classes)
  Augment augment = Augment::kNone;
  std::vector<float> pad_value;  // per channel: a black pixel after normalisation (crop padding)

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t sample_size() const { return int64_t{channels} * height * width; }
  const float* image(int64_t i) const { return images.data() + i * sample_size(); }
};

struct TrainTest {
  Dataset train, test;
};

// Reads an IDX file (gzip-compressed or plain: zlib reads both). Returns the dimensions and the
// raw unsigned-byte payload. Any mismatch (magic, element type, truncation, trailing garbage) is
// an error naming the file and what was expected.
struct IdxArray {
  std::vector<int> dims;
  std::vector<uint8_t> data;
};
absl::StatusOr<IdxArray> ReadIdx(const std::string& path);

// Loads an MNIST-family directory: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
// (Debian's dataset-fashion-mnist layout). Pixels are mapped to [-1, 1] ((x/255 - 0.5)/0.5).
absl::StatusOr<TrainTest> LoadMnistFamily(const std::string& dir);

// Loads CIFAR-10 (classes = 10: data_batch_1..5.bin, test_batch.bin) or CIFAR-100 (100:
// train.bin, test.bin, fine labels) from the official binary files in `dir`, normalised with §4's
// per-channel mean and std; the training split is marked for kCifar augmentation.
absl::StatusOr<TrainTest> LoadCifar(const std::string& dir, int classes);

// Input shape and class count of a data set by its manifest name.
struct DatasetShape {
  std::vector<int64_t> input;  // C, H, W
  int num_classes = 10;
};
absl::StatusOr<DatasetShape> GetDatasetShape(const std::string& name);
std::string AllowedDatasetNames();
// The data set a directory holds, by its files: cifar10, cifar100, else fashion-mnist (IDX).
std::string DetectDataset(const std::string& dir);
// Loads the manifest's data.dataset from data.path.
absl::StatusOr<TrainTest> LoadDataset(const std::string& name, const std::string& dir);

}  // namespace gut::core

#endif  // GUT_CORE_DATA_DATASET_H_
