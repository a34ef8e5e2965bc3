// NumPy .npy files: a reader for format versions 1.0, 2.0 and 3.0, a writer, and the loader of
// data.dataset: npy (train_x/train_y/test_x/test_y.npy). It lets any data set a user can put into
// numpy arrays be trained on without a new loader. The reader trusts nothing in the file: the
// header is parsed as the Python dict numpy writes, and the array's byte count is checked against
// the file's size before anything is allocated from it, so a damaged or hostile file costs an error
// naming it, not memory or a crash.
#ifndef GUT_CORE_DATA_NPY_H_
#define GUT_CORE_DATA_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"

namespace gut::core {

// The element types numpy writes on little-endian machines that data sets use.
enum class NpyType { kFloat32, kFloat64, kUint8, kInt32, kInt64 };

struct NpyArray {
  NpyType type = NpyType::kFloat32;
  std::vector<int64_t> shape;  // C order; {} for a 0-d array
  std::vector<uint8_t> data;   // little-endian element bytes, count() * itemsize
  int64_t count() const;       // prod(shape): 1 for a 0-d array
};

// Bytes per element of `t` and its numpy name ("float32", ...).
int NpyItemSize(NpyType t);
const char* NpyTypeName(NpyType t);

// Reads a whole .npy file. Refuses with an error naming the file and the problem: not a .npy (magic),
// an unknown format version, a header that is not the dict numpy writes, Fortran order, big-endian
// data, object arrays (descr 'O'), structured dtypes (a list descr), any descr not in NpyType
// (saying which dtypes are accepted), a truncated file (how many bytes the shape needs and how many
// there are), bytes after the array, a path that is not a regular file (a directory, a FIFO, /dev/zero).
// Missing file: NotFound; truncated: DataLoss; anything else: InvalidArgument.
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// What the y arrays hold.
enum class NpyTargets { kClasses, kRegression };

// Loads data.dataset: npy from `dir`: train_x.npy, train_y.npy, test_x.npy, test_y.npy.
// x: float32 (kept as is) or uint8 (scaled to [0, 1]), shape (samples, ...); Dataset::shape is
// x.shape[1:], the same for train and test. kClasses: y is 1-D int32/int64 class ids >= 0, and
// num_classes = 1 + the largest over both sets. kRegression: y is float32 (samples, ...), stored as
// targets with target_shape y.shape[1:]. NaN/Inf, empty sets and count mismatches are refused.
absl::StatusOr<TrainTest> LoadNpyDataset(const std::string& dir, NpyTargets targets);

// Encodes an array as .npy version 1.0 bytes (2.0 only if the header would not fit 1.0's 64 KiB),
// as np.save writes it. `a.data` is written as it is, even when its size does not match the shape
// (tests use that to make truncated files).
std::string EncodeNpy(const NpyArray& a);

}  // namespace gut::core

#endif  // GUT_CORE_DATA_NPY_H_
