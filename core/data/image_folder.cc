// Image-folder data sets (ImageNette) decoded with libjpeg, stored as bytes at a fixed square size,
// and the antialiased bilinear resampler their transforms use (docs/algorithms.md §4).
#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <filesystem>

#include <jpeglib.h>  // needs size_t and FILE first

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/dataset.h"

namespace gut::core {

namespace fs = std::filesystem;

namespace {

// Per output position: the first source index and the normalised triangle-filter weights.
struct Taps {
  std::vector<int> first;
  std::vector<std::vector<float>> w;
};

Taps MakeTaps(int in_offset, int in_len, int out_len, int src_len) {
  Taps t;
  const double scale = double(in_len) / out_len;
  const double support = std::max(1.0, scale);  // the filter widens when shrinking (antialias)
  for (int o = 0; o < out_len; ++o) {
    const double centre = in_offset + (o + 0.5) * scale;
    int lo = static_cast<int>(std::floor(centre - support)), hi = static_cast<int>(std::ceil(centre + support));
    lo = std::max(lo, in_offset);
    hi = std::min(hi, in_offset + in_len);
    hi = std::min(hi, src_len);
    std::vector<float> w;
    double sum = 0;
    for (int i = lo; i < hi; ++i) {
      const double d = std::abs((i + 0.5 - centre) / support);
      const double v = std::max(0.0, 1.0 - d);
      w.push_back(static_cast<float>(v));
      sum += v;
    }
    if (sum <= 0) {  // degenerate: nearest pixel
      lo = std::clamp(static_cast<int>(centre), in_offset, std::min(in_offset + in_len, src_len) - 1);
      w.assign(1, 1.0f);
      sum = 1;
    }
    for (float& v : w) v = static_cast<float>(v / sum);
    t.first.push_back(lo);
    t.w.push_back(std::move(w));
  }
  return t;
}

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void OnJpegError(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

// Decodes a JPEG file into interleaved RGB bytes.
absl::Status DecodeJpeg(const std::string& path, std::vector<uint8_t>* rgb, int* h, int* w) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return absl::NotFoundError(absl::StrCat("data: cannot open ", path));
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = OnJpegError;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::fclose(f);
    return absl::DataLossError(absl::StrCat("data: ", path, " is not a readable JPEG: ", err.message));
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;  // greyscale and YCbCr both come out as RGB
  jpeg_start_decompress(&cinfo);
  *w = static_cast<int>(cinfo.output_width);
  *h = static_cast<int>(cinfo.output_height);
  rgb->resize(size_t(*w) * *h * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = rgb->data() + size_t(cinfo.output_scanline) * *w * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  std::fclose(f);
  return absl::OkStatus();
}

bool IsJpeg(const fs::path& p) {
  const std::string ext = absl::AsciiStrToLower(p.extension().string());
  return ext == ".jpeg" || ext == ".jpg";
}

absl::Status ReadSplit(const fs::path& dir, const std::vector<std::string>& classes, int stored, int crop,
                       Dataset* d) {
  static const float kMean[3] = {0.485f, 0.456f, 0.406f}, kStd[3] = {0.229f, 0.224f, 0.225f};
  d->channels = 3;
  d->height = d->width = crop;
  d->stored = stored;
  d->num_classes = static_cast<int>(classes.size());
  d->mean.assign(kMean, kMean + 3);
  d->stdev.assign(kStd, kStd + 3);
  std::vector<uint8_t> rgb, planar;
  std::vector<float> square(size_t(3) * stored * stored);
  for (size_t c = 0; c < classes.size(); ++c) {
    const fs::path cdir = dir / classes[c];
    if (!fs::is_directory(cdir)) {
      return absl::NotFoundError(absl::StrCat("data: ", dir.string(), " has no folder '", classes[c],
                                              "' (every class of train/ must be in ", dir.filename().string(), "/ too)"));
    }
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(cdir))
      if (e.is_regular_file() && IsJpeg(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      int h = 0, w = 0;
      if (auto s = DecodeJpeg(f.string(), &rgb, &h, &w); !s.ok()) return s;
      planar.resize(rgb.size());
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          for (int ch = 0; ch < 3; ++ch) planar[(size_t(ch) * h + y) * w + x] = rgb[(size_t(y) * w + x) * 3 + ch];
      // Resize the short side to `stored`, keep the centre square: the source crop that maps onto it.
      const double scale = double(stored) / std::min(h, w);
      const int cw = std::min(w, static_cast<int>(std::lround(stored / scale)));
      const int chh = std::min(h, static_cast<int>(std::lround(stored / scale)));
      ResampleCrop(planar.data(), 3, h, w, (w - cw) / 2, (h - chh) / 2, cw, chh, stored, stored, square.data());
      const size_t base = d->pixels.size();
      d->pixels.resize(base + square.size());
      for (size_t k = 0; k < square.size(); ++k)
        d->pixels[base + k] = static_cast<uint8_t>(std::clamp(std::lround(square[k]), 0L, 255L));
      d->labels.push_back(static_cast<int64_t>(c));
    }
  }
  if (d->labels.empty()) return absl::NotFoundError(absl::StrCat("data: no JPEG images under ", dir.string()));
  return absl::OkStatus();
}

}  // namespace

void ResampleCrop(const uint8_t* src, int channels, int sh, int sw, int x0, int y0, int cw, int ch, int oh, int ow,
                  float* out) {
  const Taps tx = MakeTaps(x0, cw, ow, sw), ty = MakeTaps(y0, ch, oh, sh);
  std::vector<float> rows(size_t(ch) * ow);  // horizontal pass over the crop's rows
  for (int c = 0; c < channels; ++c) {
    const uint8_t* plane = src + size_t(c) * sh * sw;
    for (int y = 0; y < ch; ++y) {
      const uint8_t* row = plane + size_t(y0 + y) * sw;
      for (int o = 0; o < ow; ++o) {
        float v = 0;
        const auto& w = tx.w[o];
        for (size_t k = 0; k < w.size(); ++k) v += w[k] * row[tx.first[o] + k];
        rows[size_t(y) * ow + o] = v;
      }
    }
    float* op = out + size_t(c) * oh * ow;
    for (int o = 0; o < oh; ++o) {
      const auto& w = ty.w[o];
      float* dst = op + size_t(o) * ow;
      std::fill(dst, dst + ow, 0.0f);
      for (size_t k = 0; k < w.size(); ++k) {
        const float* r = rows.data() + size_t(ty.first[o] - y0 + static_cast<int>(k)) * ow;
        for (int x = 0; x < ow; ++x) dst[x] += w[k] * r[x];
      }
    }
  }
}

void Dataset::EvalSample(int64_t i, float* out) const {
  if (!is_stored()) {
    std::copy(image(i), image(i) + sample_size(), out);
    return;
  }
  const uint8_t* src = pixels.data() + i * stored_size();
  const int off_y = (stored - height) / 2, off_x = (stored - width) / 2;
  for (int c = 0; c < channels; ++c)
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x)
        out[(size_t(c) * height + y) * width + x] =
            (src[(size_t(c) * stored + off_y + y) * stored + off_x + x] / 255.0f - mean[c]) / stdev[c];
}

absl::StatusOr<TrainTest> LoadImageFolder(const std::string& dir, int stored, int crop) {
  const fs::path root(dir), train = root / "train";
  fs::path val = root / "val";
  if (!fs::is_directory(val) && fs::is_directory(root / "test")) val = root / "test";
  if (!fs::is_directory(train) || !fs::is_directory(val)) {
    return absl::NotFoundError(absl::StrCat(
        "data: ", dir, " is not an image folder: imagenette expects ", dir, "/train/<class>/*.JPEG and ", dir,
        "/val/<class>/*.JPEG (the imagenette2 archive from https://github.com/fastai/imagenette, unpacked; "
        "nothing is fetched at run time)"));
  }
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(train))
    if (e.is_directory()) classes.push_back(e.path().filename().string());
  std::sort(classes.begin(), classes.end());
  if (classes.size() < 2) return absl::NotFoundError(absl::StrCat("data: ", train.string(), " needs one folder per class"));
  if (crop > stored) return absl::InvalidArgumentError("data: the crop is larger than the stored image");
  TrainTest tt;
  if (auto s = ReadSplit(train, classes, stored, crop, &tt.train); !s.ok()) return s;
  if (auto s = ReadSplit(val, classes, stored, crop, &tt.test); !s.ok()) return s;
  tt.train.augment = Augment::kImageNet;
  return tt;
}

}  // namespace gut::core
