// Dataset: an in-memory labelled sample set, samples as float32 rows (images: normalised NCHW).
// Immutable once loaded; shared read-only by every agent of a process. Classification sets carry
// int64 class labels; regression sets (data.dataset: npy with model.loss: mse) carry float targets.
#ifndef GUT_CORE_DATA_DATASET_H_
#define GUT_CORE_DATA_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gut::core {

// Training-time augmentation (§4), applied per sample when a minibatch is drawn:
// kCifar = horizontal flip with p = 0.5, then a random 32x32 crop of the image zero-padded by 4;
// kImageNet = random-resized crop (scale 0.08-1, aspect 3/4-4/3) resampled to height x width,
// then a horizontal flip with p = 0.5 (stored data sets only).
enum class Augment { kNone, kCifar, kImageNet };

struct Dataset {
  // channels x height x width is what the model sees (one sample's size), unless `shape` is set.
  int channels = 0, height = 0, width = 0, num_classes = 0;
  // One sample's shape when it is not an image (npy arrays: any rank, e.g. {features} or
  // {C, H, W}); empty: {channels, height, width}.
  std::vector<int64_t> shape;
  std::vector<float> images;    // size() * sample_size() (float data sets)
  std::vector<int64_t> labels;  // in [0, num_classes); empty for a regression set
  // Regression: size() * target_size float targets, row-major (npy y of shape (N,) has
  // target_size 1 and target_shape {}; (N, k) has k and {k}).
  std::vector<float> targets;
  int64_t target_size = 0;
  std::vector<int64_t> target_shape;
  Augment augment = Augment::kNone;
  std::vector<float> pad_value;  // per channel: a black pixel after normalisation (crop padding)
  // Stored data sets (image folders): each sample is a stored x stored x 3 square of bytes (CHW),
  // normalised with mean/stdev when a sample is produced; images stays empty. Evaluation sees the
  // centre height x width crop.
  std::vector<uint8_t> pixels;
  int stored = 0;
  std::vector<float> mean, stdev;

  bool is_regression() const { return target_size > 0; }
  int64_t size() const {
    return is_regression() ? static_cast<int64_t>(targets.size()) / target_size : static_cast<int64_t>(labels.size());
  }
  // One sample's shape as the model sees it (shape, or channels x height x width).
  std::vector<int64_t> sample_shape() const {
    return shape.empty() ? std::vector<int64_t>{channels, height, width} : shape;
  }
  int64_t sample_size() const {
    if (shape.empty()) return int64_t{channels} * height * width;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  bool is_stored() const { return stored > 0; }
  int64_t stored_size() const { return int64_t{channels} * stored * stored; }
  // Float data sets only.
  const float* image(int64_t i) const { return images.data() + i * sample_size(); }
  // Sample i as evaluation sees it (no augmentation), sample_size() floats into out.
  void EvalSample(int64_t i, float* out) const;
};

// Resamples the crop (x0, y0, cw, ch) of a channels x sh x sw byte image to channels x oh x ow
// floats with an antialiased bilinear (triangle) filter, as PIL's bilinear resize does.
void ResampleCrop(const uint8_t* src, int channels, int sh, int sw, int x0, int y0, int cw, int ch, int oh, int ow,
                  float* out);

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
// An image-folder data set (ImageNette's imagenette2 layout): dir/train/<class>/*.{JPEG,jpg,jpeg}
// and dir/val/<class>/*; classes are the sorted folder names of train (val must have the same).
// Each image is resized so that its short side is `stored`, its centre stored x stored square is
// kept as bytes; samples are crop x crop (train: kImageNet augmentation; val: the centre crop), with
// ImageNet's normalisation (§4). Evaluation is exactly §4's (resize 256, centre crop 224); training
// crops are drawn from the centre square rather than the whole resized image (a departure from §4
// that keeps every image at stored x stored bytes).
absl::StatusOr<TrainTest> LoadImageFolder(const std::string& dir, int stored = 256, int crop = 224);

// The data set a directory holds, by its files: npy (train_x.npy), cifar10, cifar100, imagenette
// (train/ and val/ folders), else fashion-mnist (IDX).
std::string DetectDataset(const std::string& dir);
// Loads the manifest's data.dataset from data.path. `regression`: npy's y arrays are float targets
// (model.loss: mse) rather than class ids.
absl::StatusOr<TrainTest> LoadDataset(const std::string& name, const std::string& dir, bool regression = false);

// The samples `indices` of `full`, in that order, as a data set of their own (an agent keeps only
// its shard; batch k then draws the same samples as from the full set). Stored-size image folders
// keep their bytes; decoded sets their floats.
Dataset Subset(const Dataset& full, const std::vector<int64_t>& indices);

}  // namespace gut::core

#endif  // GUT_CORE_DATA_DATASET_H_
