#include "core/data/npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

// Element bytes are copied straight into floats and ints: the files are little-endian.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.cc assumes a little-endian host"
#endif

namespace gut::core {
namespace {

constexpr int64_t kMaxHeader = 1 << 20;

struct TypeInfo {
  NpyType type;
  const char* descr;  // as numpy writes it on a little-endian machine
  const char* name;
  int size;
};
constexpr TypeInfo kTypes[] = {{NpyType::kFloat32, "<f4", "float32", 4},
                               {NpyType::kFloat64, "<f8", "float64", 8},
                               {NpyType::kUint8, "|u1", "uint8", 1},
                               {NpyType::kInt32, "<i4", "int32", 4},
                               {NpyType::kInt64, "<i8", "int64", 8}};
constexpr char kAccepted[] = "accepted dtypes: float32 '<f4', float64 '<f8', uint8 '|u1', int32 '<i4', int64 '<i8'";

const TypeInfo& Info(NpyType t) { return kTypes[static_cast<int>(t)]; }

std::string ShapeStr(const std::vector<int64_t>& s) {
  return absl::StrCat("(", absl::StrJoin(s, ", "), s.size() == 1 ? ",)" : ")");
}

absl::Status Bad(const std::string& path, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", why));
}

// What the header dict says. A list descr (a structured dtype) stops the parse: it is refused anyway.
struct Header {
  bool has_descr = false, structured = false, has_shape = false;
  std::string descr;
  int fortran = -1;
  std::vector<int64_t> shape;
};

// Reads the dict numpy writes, {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }, with
// its keys in any order and any Python spacing; anything else is an error().
class HeaderParser {
 public:
  explicit HeaderParser(const std::string& t) : t_(t) {}
  bool Parse(Header& h) {
    if (!Eat('{')) return Fail("not a dict");
    while (!Eat('}')) {
      std::string key;
      if (!Str(key) || !Eat(':')) return Fail("expected a quoted key and ':'");
      if (key == "descr" && !h.has_descr) {
        h.has_descr = true;
        Ws();
        if (At('[')) return h.structured = true;
        if (!Str(h.descr)) return Fail("descr is not a string");
      } else if (key == "fortran_order" && h.fortran < 0) {
        h.fortran = Word("True") ? 1 : Word("False") ? 0 : -1;
        if (h.fortran < 0) return Fail("fortran_order is not True or False");
      } else if (key == "shape" && !h.has_shape) {
        h.has_shape = true;
        if (!Eat('(')) return Fail("shape is not a tuple");
        while (!Eat(')')) {
          h.shape.emplace_back();
          if (!Int(h.shape.back())) return Fail("shape is not a tuple of ints");
          if (Eat(',')) continue;
          // Python reads (5) as 5, not as a tuple.
          if (!Eat(')') || h.shape.size() == 1) return Fail("shape is not a tuple of ints");
          break;
        }
      } else {
        return Fail(absl::StrCat("unexpected or repeated key '", key, "'; numpy writes descr, fortran_order, shape"));
      }
      if (!Eat(',') && !At('}')) return Fail("expected ',' or '}'");
    }
    Ws();
    if (p_ != t_.size()) return Fail("text after the dict");
    return h.has_descr && h.fortran >= 0 && h.has_shape ? true : Fail("lacks one of descr, fortran_order, shape");
  }
  std::string error() const { return absl::StrCat("at offset ", p_, ": ", err_); }

 private:
  bool Fail(std::string why) {
    err_ = std::move(why);
    return false;
  }
  bool At(char c) const { return p_ < t_.size() && t_[p_] == c; }
  bool Digit() const { return p_ < t_.size() && t_[p_] >= '0' && t_[p_] <= '9'; }
  void Ws() {
    while (At(' ') || At('\t') || At('\r') || At('\n')) ++p_;
  }
  bool Eat(char c) {
    Ws();
    return At(c) ? ++p_, true : false;
  }
  bool Word(const char* w) {
    Ws();
    const size_t n = std::strlen(w);
    return t_.compare(p_, n, w) == 0 ? p_ += n, true : false;
  }
  bool Str(std::string& out) {
    Ws();
    if (!At('\'') && !At('"')) return false;
    const char quote = t_[p_++];
    for (; p_ < t_.size() && t_[p_] != quote; ++p_) {
      if (t_[p_] == '\\' && p_ + 1 < t_.size()) ++p_;
      out += t_[p_];
    }
    return p_++ < t_.size();
  }
  bool Int(int64_t& out) {
    Ws();
    const bool neg = At('-');
    if (neg || At('+')) ++p_;
    if (!Digit()) return false;
    uint64_t v = 0;
    for (; Digit() && v < (uint64_t{1} << 59); ++p_) v = v * 10 + static_cast<uint64_t>(t_[p_] - '0');
    if (Digit()) return false;     // beyond 2^59: no real shape, and int64 cannot overflow above
    if (At('L') || At('l')) ++p_;  // Python 2's numpy wrote (3L, 4L)
    out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
    return true;
  }

  const std::string& t_;
  size_t p_ = 0;
  std::string err_;
};

// The dtype a descr names, or why it is refused.
absl::StatusOr<NpyType> ParseDescr(const Header& h) {
  if (h.structured) {
    return absl::InvalidArgumentError(absl::StrCat("structured dtypes (a list descr) are not supported; ", kAccepted));
  }
  const std::string& d = h.descr;
  const char order = !d.empty() && std::strchr("<>|=", d[0]) ? d[0] : 0;
  const std::string base = order ? d.substr(1) : d;
  if (!base.empty() && base[0] == 'O') {
    return absl::InvalidArgumentError(
        absl::StrCat("object arrays (descr '", d, "') hold pickled Python objects and are not read; ", kAccepted));
  }
  if (base == "u1") return NpyType::kUint8;  // one byte has no byte order
  for (const TypeInfo& t : kTypes) {
    if (base != t.descr + 1 || t.size == 1) continue;
    if (order == '<') return t.type;
    if (order == '>') {
      return absl::InvalidArgumentError(
          absl::StrCat("big-endian data (descr '", d, "') is not supported; save a.astype('<", base, "')"));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("dtype descr '", d, "' is not supported; ", kAccepted));
}

// Reads up to n bytes: fewer only at the end of the file.
absl::StatusOr<size_t> ReadFully(int fd, void* dst, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const ssize_t got = ::read(fd, static_cast<char*>(dst) + done, n - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": read failed"));
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

int NpyItemSize(NpyType t) { return Info(t).size; }
const char* NpyTypeName(NpyType t) { return Info(t).name; }

int64_t NpyArray::count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it.
  Fd f{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  if (f.fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  struct stat st;
  if (::fstat(f.fd, &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot stat"));
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                                              : "a special file";
    return Bad(path, absl::StrCat("is not a regular file (", kind, "); expected a .npy file"));
  }
  const auto truncated = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(path, ": file is truncated: ", what));
  };
  // The preamble and the longest header accepted come in one read; the data follows.
  const int64_t size = st.st_size;
  std::string head(static_cast<size_t>(std::min<int64_t>(size, 12 + kMaxHeader)), '\0');
  auto got = ReadFully(f.fd, head.data(), head.size(), path);
  if (!got.ok()) return got.status();
  head.resize(*got);
  if (head.compare(0, 6, "\x93NUMPY") != 0) {
    return Bad(path, absl::StrCat("not a .npy file (no \\x93NUMPY magic at its start; ", size, " bytes)"));
  }
  const int major = static_cast<uint8_t>(head.size() > 6 ? head[6] : 0);
  const int minor = static_cast<uint8_t>(head.size() > 7 ? head[7] : 0);
  if (head.size() >= 8 && (major < 1 || major > 3 || minor != 0)) {
    return Bad(path, absl::StrCat("unknown .npy format version ", major, ".", minor, " (expected 1.0, 2.0 or 3.0)"));
  }
  const int64_t len_bytes = major == 1 ? 2 : 4;  // 2.0 widened the header length to 32 bits
  if (static_cast<int64_t>(head.size()) < 8 + len_bytes) return truncated("it ends inside the .npy preamble");
  int64_t hlen = 0;
  for (int k = 0; k < len_bytes; ++k) hlen |= int64_t{static_cast<uint8_t>(head[8 + k])} << (8 * k);
  if (hlen > kMaxHeader) return Bad(path, absl::StrCat("the .npy header claims ", hlen, " bytes (more than 1 MiB)"));
  const int64_t data_start = 8 + len_bytes + hlen;
  if (data_start > size) {
    return truncated(absl::StrCat("the .npy header needs ", hlen, " bytes but the file has ", size - 8 - len_bytes,
                                  " after the preamble"));
  }
  if (static_cast<int64_t>(head.size()) < data_start) return truncated("it shrank while it was read");
  const std::string header = head.substr(8 + len_bytes, hlen);
  const std::string shown = header.substr(0, std::min<size_t>(header.find_last_not_of(" \n") + 1, 200));
  Header h;
  HeaderParser parser(header);
  if (!parser.Parse(h)) {
    return Bad(path, absl::StrCat("the .npy header is not the dict numpy writes (", parser.error(), "): ", shown));
  }
  auto type = ParseDescr(h);
  if (!type.ok()) return Bad(path, std::string(type.status().message()));
  NpyArray a;
  a.type = *type;
  a.shape = h.shape;
  if (std::any_of(a.shape.begin(), a.shape.end(), [](int64_t d) { return d < 0; })) {
    return Bad(path, absl::StrCat("the .npy shape ", ShapeStr(a.shape), " has a negative dimension"));
  }
  // With at most one dimension Fortran and C order are the same bytes.
  if (h.fortran && a.shape.size() > 1) {
    return Bad(path, "Fortran-order arrays are not supported; save np.ascontiguousarray(a) instead");
  }
  int64_t bytes = NpyItemSize(a.type);
  if (std::find(a.shape.begin(), a.shape.end(), 0) != a.shape.end()) bytes = 0;
  for (int64_t d : a.shape) {
    if (bytes > 0 && d > std::numeric_limits<int64_t>::max() / bytes) {
      return Bad(path, absl::StrCat("the .npy shape ", ShapeStr(a.shape), " is too large (its byte count overflows)"));
    }
    bytes *= d;
  }
  // Checked before anything is allocated: a header may claim terabytes.
  const int64_t have = size - data_start;
  if (bytes > have) {
    return truncated(absl::StrCat("shape ", ShapeStr(a.shape), " of ", NpyTypeName(a.type), " needs ", bytes,
                                  " bytes of data but the file has ", have));
  }
  if (bytes < have) {
    return Bad(path, absl::StrCat(have - bytes, " trailing bytes after the ", bytes, "-byte array of shape ",
                                  ShapeStr(a.shape)));
  }
  a.data.resize(static_cast<size_t>(bytes));
  const size_t early = head.size() - static_cast<size_t>(data_start);  // data bytes that came with the header
  std::memcpy(a.data.data(), head.data() + data_start, early);
  got = ReadFully(f.fd, a.data.data() + early, a.data.size() - early, path);
  if (!got.ok()) return got.status();
  if (*got < a.data.size() - early) return truncated("it shrank while it was read");
  return a;
}

std::string EncodeNpy(const NpyArray& a) {
  std::string dict =
      absl::StrCat("{'descr': '", Info(a.type).descr, "', 'fortran_order': False, 'shape': ", ShapeStr(a.shape), ", }");
  const bool v2 = 10 + dict.size() + 1 > 65535;
  const size_t preamble = v2 ? 12 : 10;
  // Padded as numpy pads: the data starts 64-byte aligned, so that readers may map it in place.
  dict.append((64 - (preamble + dict.size() + 1) % 64) % 64, ' ');
  dict += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  for (size_t k = 0; k < preamble - 8; ++k) out += static_cast<char>((dict.size() >> (8 * k)) & 0xff);
  out += dict;
  out.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  return out;
}

namespace {

template <typename T>
int64_t Load(const std::vector<uint8_t>& bytes, int64_t k) {
  T v;
  std::memcpy(&v, bytes.data() + k * sizeof(T), sizeof(T));
  return static_cast<int64_t>(v);
}

std::vector<float> Floats(const NpyArray& a) {
  std::vector<float> v(static_cast<size_t>(a.count()));
  std::memcpy(v.data(), a.data.data(), v.size() * sizeof(float));
  return v;
}

// Refuses the first NaN or Inf of v, naming its sample (rows of `row` values).
absl::Status Finite(const std::string& path, const std::vector<float>& v, int64_t row) {
  const auto it = std::find_if(v.begin(), v.end(), [](float f) { return !std::isfinite(f); });
  if (it == v.end()) return absl::OkStatus();
  const int64_t k = it - v.begin();
  return Bad(path, absl::StrCat("sample ", k / row, " holds ", std::isnan(*it) ? "NaN" : "Inf", " (element ", k,
                                "); clean or drop it before saving"));
}

absl::StatusOr<Dataset> LoadSplit(const std::string& xp, const std::string& yp, NpyTargets targets) {
  auto x = ReadNpy(xp);
  if (!x.ok()) return x.status();
  if (x->type == NpyType::kFloat64) return Bad(xp, "samples are float64; save x.astype(np.float32)");
  if (x->type != NpyType::kFloat32 && x->type != NpyType::kUint8) {
    return Bad(xp, absl::StrCat("samples must be float32 or uint8, got ", NpyTypeName(x->type)));
  }
  if (x->shape.size() < 2) {
    return Bad(xp, absl::StrCat("expected samples of shape (samples, ...) with at least 2 dimensions, got ",
                                ShapeStr(x->shape), " (one feature per sample: x.reshape(-1, 1))"));
  }
  const int64_t n = x->shape[0];
  if (n == 0) return Bad(xp, absl::StrCat("holds no samples (shape ", ShapeStr(x->shape), ")"));
  Dataset ds;
  ds.shape.assign(x->shape.begin() + 1, x->shape.end());
  if (ds.sample_size() == 0) return Bad(xp, absl::StrCat("samples are empty (shape ", ShapeStr(x->shape), ")"));
  if (x->type == NpyType::kUint8) {
    ds.images.assign(x->data.begin(), x->data.end());
    for (float& v : ds.images) v /= 255.0f;
  } else {
    ds.images = Floats(*x);
    if (auto s = Finite(xp, ds.images, ds.sample_size()); !s.ok()) return s;
  }
  x->data = {};

  auto y = ReadNpy(yp);
  if (!y.ok()) return y.status();
  const bool is_float = y->type == NpyType::kFloat32 || y->type == NpyType::kFloat64;
  const bool classes = targets == NpyTargets::kClasses;
  if (classes && y->type != NpyType::kInt64 && y->type != NpyType::kInt32) {
    return Bad(yp,
               absl::StrCat(is_float ? "class ids must be integers" : "class ids must be int64 or int32", ", got ",
                            NpyTypeName(y->type),
                            is_float ? "; for regression targets set model.loss: mse" : "; save y.astype(np.int64)"));
  }
  if (classes && y->shape.size() != 1) {
    return Bad(yp, absl::StrCat("class ids must be 1-D (one per sample), got shape ", ShapeStr(y->shape)));
  }
  if (!classes && y->type != NpyType::kFloat32) {
    return Bad(yp, absl::StrCat("regression targets (model.loss: mse) must be float32, got ", NpyTypeName(y->type),
                                "; save y.astype(np.float32)",
                                is_float ? "" : ", or drop model.loss: mse if these are class ids"));
  }
  if (y->shape.empty()) return Bad(yp, "expected targets of shape (samples, ...), got a 0-d array");
  if (y->shape[0] != n) {
    return Bad(xp,
               absl::StrCat("has ", n, " samples but ", yp, " has ", y->shape[0], classes ? " labels" : " targets"));
  }
  if (!classes) {
    ds.target_shape.assign(y->shape.begin() + 1, y->shape.end());
    ds.target_size = y->count() / n;
    if (ds.target_size == 0) return Bad(yp, absl::StrCat("targets are empty (shape ", ShapeStr(y->shape), ")"));
    ds.targets = Floats(*y);
    if (auto s = Finite(yp, ds.targets, ds.target_size); !s.ok()) return s;
    return ds;
  }
  ds.labels.resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    ds.labels[k] = y->type == NpyType::kInt32 ? Load<int32_t>(y->data, k) : Load<int64_t>(y->data, k);
    // num_classes is an int, and a model needs an output per class.
    if (ds.labels[k] < 0 || ds.labels[k] >= std::numeric_limits<int>::max()) {
      return Bad(yp, absl::StrCat("label ", k, " = ", ds.labels[k],
                                  ds.labels[k] < 0 ? " is negative; class ids must be >= 0" : " is too large"));
    }
  }
  return ds;
}

}  // namespace

absl::StatusOr<TrainTest> LoadNpyDataset(const std::string& dir, NpyTargets targets) {
  const char* const kNames[] = {"train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"};
  const std::string expected = absl::StrCat("data.dataset: npy expects ", absl::StrJoin(kNames, ", "), " in ", dir);
  std::string p[4];
  for (int k = 0; k < 4; ++k) {
    p[k] = (std::filesystem::path(dir) / kNames[k]).string();
    std::error_code ec;
    if (!std::filesystem::exists(p[k], ec)) {
      return absl::NotFoundError(absl::StrCat(p[k], ": not found (", expected, ")"));
    }
  }
  auto train = LoadSplit(p[0], p[1], targets);
  if (!train.ok()) return train.status();
  auto test = LoadSplit(p[2], p[3], targets);
  if (!test.ok()) return test.status();
  if (train->shape != test->shape) {
    return Bad(p[0], absl::StrCat("holds samples of shape ", ShapeStr(train->shape), " but ", p[2], " holds ",
                                  ShapeStr(test->shape), "; train and test samples must have the same shape"));
  }
  if (train->target_shape != test->target_shape) {
    return Bad(p[1], absl::StrCat("holds targets of shape ", ShapeStr(train->target_shape), " but ", p[3], " holds ",
                                  ShapeStr(test->target_shape), "; train and test targets must have the same shape"));
  }
  if (targets == NpyTargets::kClasses) {
    int64_t top = -1;
    for (const Dataset* d : {&*train, &*test}) {
      for (int64_t l : d->labels) top = std::max(top, l);
    }
    train->num_classes = test->num_classes = static_cast<int>(top + 1);
  }
  return TrainTest{std::move(*train), std::move(*test)};
}

}  // namespace gut::core
