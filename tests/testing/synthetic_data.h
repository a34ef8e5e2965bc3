// Writes a small MNIST-layout data set (IDX, gzipped) into a directory: class c is a bright 6x6
// square at a class-specific position plus deterministic noise, easy enough to learn in a few
// epochs. For tests that need real files without the 30 MB Fashion-MNIST.
#ifndef GUT_TESTS_TESTING_SYNTHETIC_DATA_H_
#define GUT_TESTS_TESTING_SYNTHETIC_DATA_H_

#include <zlib.h>

#include <array>
#include <cstddef>
#include <cstdio>
#include <vector>

#include <jpeglib.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace gut::testing {

inline void WriteIdxGz(const std::string& path, const std::string& header, const std::string& body) {
  gzFile f = gzopen(path.c_str(), "wb1");
  gzwrite(f, header.data(), static_cast<unsigned>(header.size()));
  gzwrite(f, body.data(), static_cast<unsigned>(body.size()));
  gzclose(f);
}

inline std::string IdxHeader(int rank, const uint32_t* dims) {
  std::string h{0, 0, 8, static_cast<char>(rank)};
  for (int d = 0; d < rank; ++d)
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>((dims[d] >> s) & 0xff));
  return h;
}

inline void WriteSyntheticSplit(const std::string& dir, const std::string& prefix, int n, uint32_t seed) {
  std::string img, lbl;
  uint32_t state = seed;
  auto next = [&state] { state = state * 1664525u + 1013904223u; return state >> 24; };
  for (int i = 0; i < n; ++i) {
    const int c = (i * 7 + static_cast<int>(seed)) % 10;
    lbl.push_back(static_cast<char>(c));
    const int r0 = 2 + (c / 5) * 12, c0 = 2 + (c % 5) * 5;
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        int v = static_cast<int>(next() % 60);
        if (y >= r0 && y < r0 + 6 && x >= c0 && x < c0 + 6) v += 180;
        img.push_back(static_cast<char>(v));
      }
  }
  const uint32_t idims[3] = {static_cast<uint32_t>(n), 28, 28};
  const uint32_t ldims[1] = {static_cast<uint32_t>(n)};
  WriteIdxGz(dir + "/" + prefix + "-images-idx3-ubyte.gz", IdxHeader(3, idims), img);
  WriteIdxGz(dir + "/" + prefix + "-labels-idx1-ubyte.gz", IdxHeader(1, ldims), lbl);
}

inline void WriteSyntheticDataset(const std::string& dir, int train, int test) {
  WriteSyntheticSplit(dir, "train", train, 1);
  WriteSyntheticSplit(dir, "t10k", test, 2);
}

// Writes CIFAR binary files: `classes` 10 (data_batch_1..5.bin with `per_file` records each,
// test_batch.bin) or 100 (train.bin with 5 * per_file records, test.bin). Record r of a file has
// label (r * 3 + file) % classes (CIFAR-100: coarse label 99 - fine) and pixel bytes
// (c * 7 + i + r) % 256 for channel c, pixel i.
inline void WriteSyntheticCifar(const std::string& dir, int classes, int per_file, int test_records) {
  auto write = [&](const std::string& name, int records, int file) {
    std::string bytes;
    for (int r = 0; r < records; ++r) {
      const int label = (r * 3 + file) % classes;
      if (classes == 100) bytes.push_back(static_cast<char>(99 - label));
      bytes.push_back(static_cast<char>(label));
      for (int c = 0; c < 3; ++c)
        for (int i = 0; i < 1024; ++i) bytes.push_back(static_cast<char>((c * 7 + i + r) % 256));
    }
    FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  };
  if (classes == 10) {
    for (int k = 1; k <= 5; ++k) write("data_batch_" + std::to_string(k) + ".bin", per_file, k);
    write("test_batch.bin", test_records, 0);
  } else {
    write("train.bin", 5 * per_file, 1);
    write("test.bin", test_records, 0);
  }
}

// Writes an RGB JPEG (quality 95) whose pixel (y, x) is colour(y, x).
template <typename F>
inline void WriteJpeg(const std::string& path, int h, int w, F colour) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  FILE* f = std::fopen(path.c_str(), "wb");
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = w;
  cinfo.image_height = h;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 95, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  std::vector<uint8_t> row(size_t(w) * 3);
  while (cinfo.next_scanline < cinfo.image_height) {
    for (int x = 0; x < w; ++x) {
      const auto c = colour(static_cast<int>(cinfo.next_scanline), x);
      for (int k = 0; k < 3; ++k) row[size_t(x) * 3 + k] = c[k];
    }
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

}  // namespace gut::testing

#endif  // GUT_TESTS_TESTING_SYNTHETIC_DATA_H_
