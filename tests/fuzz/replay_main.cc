// The fuzz targets without libFuzzer (the regular build, any compiler): every file of the corpus
// directories given on the command line, then `--random N` pseudo-random inputs (a fixed seed:
// the same inputs on every run), through LLVMFuzzerTestOneInput. Registered as tests, so the
// corpus and every crash input kept in it are replayed on every commit.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  long random = 0, files = 0;
  for (int k = 1; k < argc; ++k) {
    const std::string a = argv[k];
    if (a == "--random" && k + 1 < argc) {
      random = std::atol(argv[++k]);
      continue;
    }
    for (const auto& e : std::filesystem::recursive_directory_iterator(a)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++files;
    }
  }
  std::mt19937_64 g(12345);
  std::vector<uint8_t> buf;
  for (long k = 0; k < random; ++k) {
    buf.resize(g() % 2048);
    for (auto& b : buf) b = static_cast<uint8_t>(g());
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("replayed %ld corpus file(s) and %ld random input(s)\n", files, random);
  return 0;
}
