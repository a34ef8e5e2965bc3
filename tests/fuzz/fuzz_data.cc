// Fuzz target: the data readers on damaged files. The input, written to a private temporary
// directory, is read as an IDX file (plain and as the MNIST layout), as every file of a CIFAR-10
// directory, and as the one image of an image folder. Oracle: no crash, no sanitizer report, no
// runaway allocation; damage is an error naming the file.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/data/dataset.h"

namespace fs = std::filesystem;

namespace {

const fs::path& Dir() {
  // In memory where the machine has a tmpfs; every file but one of each layout is a symlink to it,
  // so an execution writes its input once.
  static const fs::path d = [] {
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path p = base / ("gut-fuzz-data-" + std::to_string(getpid()));
    fs::create_directories(p / "cifar");
    fs::create_directories(p / "images" / "train" / "a");
    fs::create_directories(p / "images" / "val" / "a");
    for (const char* f : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}) {
      std::error_code ec;
      fs::create_symlink(p / "cifar" / "test_batch.bin", p / "cifar" / f, ec);
    }
    std::error_code ec;
    fs::create_symlink(p / "images" / "train" / "a" / "x.jpg", p / "images" / "val" / "a" / "x.jpg", ec);
    return p;
  }();
  return d;
}

void Write(const fs::path& p, const uint8_t* data, size_t size) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const fs::path& d = Dir();
  switch (data[0] % 3) {
    case 0:
      Write(d / "idx", data + 1, size - 1);
      (void)gut::core::ReadIdx((d / "idx").string());
      break;
    case 1:
      Write(d / "cifar" / "test_batch.bin", data + 1, size - 1);
      (void)gut::core::LoadCifar((d / "cifar").string(), 10);
      break;
    default:
      Write(d / "images" / "train" / "a" / "x.jpg", data + 1, size - 1);
      (void)gut::core::LoadImageFolder((d / "images").string(), 16, 8);
      break;
  }
  return 0;
}
