#include <zlib.h>

#include <filesystem>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/data/dataset.h"

namespace gut::core {
namespace {

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

absl::Status ReadExact(gzFile f, const std::string& path, void* dst, size_t n, const char* what) {
  size_t done = 0;
  auto* p = static_cast<char*>(dst);
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
    const int got = gzread(f, p + done, chunk);
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      return absl::DataLossError(
          absl::StrCat(path, ": corrupt data while reading ", what, ": ", msg ? msg : "?"));
    }
    if (got == 0) {
      return absl::DataLossError(absl::StrCat(path, ": file is truncated: expected ", n,
                                              " bytes of ", what, ", got ", done));
    }
    done += static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<IdxArray> ReadIdx(const std::string& path) {
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  unsigned char magic[4];
  if (auto s = ReadExact(f.get(), path, magic, 4, "IDX header"); !s.ok()) return s;
  if (magic[0] != 0 || magic[1] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not an IDX file (magic must start with two zero bytes)"));
  }
  if (magic[2] != 0x08) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": IDX element type 0x", absl::Hex(magic[2]), " is not supported (expected 0x08, unsigned byte)"));
  }
  const int ndim = magic[3];
  if (ndim < 1 || ndim > 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": IDX rank ", ndim, " out of range [1, 4]"));
  }
  IdxArray out;
  uint64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    unsigned char b[4];
    if (auto s = ReadExact(f.get(), path, b, 4, "IDX dimensions"); !s.ok()) return s;
    const uint32_t v = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    if (v == 0 || v > (1u << 28)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": IDX dimension ", d, " = ", v, " is not plausible"));
    }
    out.dims.push_back(static_cast<int>(v));
    total *= v;
  }
  if (total > (uint64_t{1} << 34)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": IDX payload of ", total, " bytes is too large"));
  }
  // Grow with what actually arrives: a header that claims gigabytes costs nothing until the bytes
  // are really there (a damaged or hostile file cannot make us allocate them up front).
  while (out.data.size() < total) {
    const size_t have = out.data.size();
    // Doubling from 64 KiB: few reads for a real file, little memory for a lying header.
    const size_t want = static_cast<size_t>(std::min<uint64_t>(std::max<uint64_t>(64 << 10, have), total - have));
    out.data.resize(have + want);
    const int got = gzread(f.get(), out.data.data() + have, static_cast<unsigned>(want));
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(f.get(), &errnum);
      return absl::DataLossError(absl::StrCat(path, ": corrupt data while reading IDX payload: ", msg ? msg : "?"));
    }
    out.data.resize(have + static_cast<size_t>(got));
    if (got == 0) {
      return absl::DataLossError(absl::StrCat(path, ": file is truncated: expected ", total,
                                              " bytes of IDX payload, got ", have));
    }
  }
  // Reading past the end makes zlib check the gzip trailer: a CRC or length mismatch (contents
  // corrupted after compression) shows up only here.
  char extra;
  const int tail = gzread(f.get(), &extra, 1);
  if (tail > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": trailing bytes after the ", total, "-byte IDX payload"));
  }
  if (tail < 0) {
    int errnum = 0;
    const char* msg = gzerror(f.get(), &errnum);
    return absl::DataLossError(absl::StrCat(path, ": the gzip data is corrupt (", msg ? msg : "?",
                                            "); the file was damaged after it was written"));
  }
  return out;
}

namespace {

absl::StatusOr<std::string> FindFile(const std::string& dir, const std::string& stem) {
  for (const std::string& name : {stem + ".gz", stem}) {
    const auto p = std::filesystem::path(dir) / name;
    if (std::filesystem::exists(p)) return p.string();
  }
  return absl::NotFoundError(absl::StrCat("data directory '", dir, "' has neither ", stem,
                                          ".gz nor ", stem,
                                          " (expected the MNIST IDX layout, e.g. Debian's "
                                          "dataset-fashion-mnist in /usr/share/datasets/fashion-mnist)"));
}

absl::StatusOr<Dataset> LoadSplit(const std::string& dir, const std::string& prefix) {
  auto img_path = FindFile(dir, prefix + "-images-idx3-ubyte");
  if (!img_path.ok()) return img_path.status();
  auto lbl_path = FindFile(dir, prefix + "-labels-idx1-ubyte");
  if (!lbl_path.ok()) return lbl_path.status();
  auto img = ReadIdx(*img_path);
  if (!img.ok()) return img.status();
  auto lbl = ReadIdx(*lbl_path);
  if (!lbl.ok()) return lbl.status();
  if (img->dims.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(*img_path, ": expected a rank-3 image array (N, H, W), got rank ", img->dims.size()));
  }
  if (lbl->dims.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(*lbl_path, ": expected a rank-1 label array, got rank ", lbl->dims.size()));
  }
  if (img->dims[0] != lbl->dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(*img_path, " has ", img->dims[0], " images but ",
                                                   *lbl_path, " has ", lbl->dims[0], " labels"));
  }
  Dataset ds;
  ds.channels = 1;
  ds.height = img->dims[1];
  ds.width = img->dims[2];
  ds.num_classes = 10;
  ds.labels.resize(lbl->dims[0]);
  for (size_t i = 0; i < ds.labels.size(); ++i) {
    const int l = lbl->data[i];
    if (l >= ds.num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat(*lbl_path, ": label #", i, " = ", l, " is outside [0, 10)"));
    }
    ds.labels[i] = l;
  }
  ds.images.resize(img->data.size());
  for (size_t i = 0; i < img->data.size(); ++i) {
    ds.images[i] = (img->data[i] / 255.0f - 0.5f) / 0.5f;
  }
  return ds;
}

}  // namespace

absl::StatusOr<TrainTest> LoadMnistFamily(const std::string& dir) {
  if (!std::filesystem::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("data directory '", dir, "' does not exist"));
  }
  TrainTest tt;
  auto train = LoadSplit(dir, "train");
  if (!train.ok()) return train.status();
  auto test = LoadSplit(dir, "t10k");
  if (!test.ok()) return test.status();
  if (train->height != test->height || train->width != test->width) {
    return absl::InvalidArgumentError(absl::StrCat("data directory '", dir, "': train images are ",
                                                   train->height, "x", train->width, " but test images are ",
                                                   test->height, "x", test->width));
  }
  tt.train = std::move(*train);
  tt.test = std::move(*test);
  return tt;
}

}  // namespace gut::core
