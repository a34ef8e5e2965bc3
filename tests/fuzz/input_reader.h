// InputReader: takes typed values off the front of a fuzz input (the harnesses' own, so that they
// build with any compiler, libFuzzer or not). Every read is defined on any input: past the end it
// yields zeros and empty strings.
#ifndef GUT_TESTS_FUZZ_INPUT_READER_H_
#define GUT_TESTS_FUZZ_INPUT_READER_H_

#include <cstdint>
#include <cstring>
#include <string>

class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size) : p_(data), n_(size) {}

  uint64_t U64() {
    uint64_t v = 0;
    const size_t k = n_ < 8 ? n_ : 8;
    std::memcpy(&v, p_, k);
    Skip(k);
    return v;
  }
  bool Bool() { return Byte() & 1; }
  uint8_t Byte() {
    if (n_ == 0) return 0;
    const uint8_t b = *p_;
    Skip(1);
    return b;
  }
  // Uniform enough in [lo, hi] for fuzzing.
  int64_t Int(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(U64() % static_cast<uint64_t>(hi - lo + 1)); }
  double Fraction() { return static_cast<double>(U64() >> 11) / 9007199254740992.0; }
  float AnyFloat() {
    uint32_t bits = static_cast<uint32_t>(U64());
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  std::string String(size_t max) {
    const size_t k = std::min<size_t>(Byte() % (max + 1), n_);
    std::string s(reinterpret_cast<const char*>(p_), k);
    Skip(k);
    return s;
  }
  std::string Rest() {
    std::string s(reinterpret_cast<const char*>(p_), n_);
    Skip(n_);
    return s;
  }

 private:
  void Skip(size_t k) {
    p_ += k;
    n_ -= k;
  }
  const uint8_t* p_;
  size_t n_;
};

#endif  // GUT_TESTS_FUZZ_INPUT_READER_H_
