#include "core/data/npy.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>

#include "gtest/gtest.h"

namespace gut::core {
namespace {

namespace fs = std::filesystem;

template <typename T>
NpyArray Make(NpyType type, std::vector<int64_t> shape, const std::vector<T>& values) {
  NpyArray a;
  a.type = type;
  a.shape = std::move(shape);
  a.data.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(a.data.data(), values.data(), a.data.size());
  return a;
}

// Hand-made .npy bytes: any version, any header text, any payload.
std::string Npy(const std::string& dict, std::string payload = "", int major = 1, int minor = 0) {
  std::string h = dict + "\n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += static_cast<char>(minor);
  for (int k = 0; k < (major == 1 ? 2 : 4); ++k) out += static_cast<char>((h.size() >> (8 * k)) & 0xff);
  return out + h + payload;
}

// Status code and message fragments, each of which the message must contain.
void ExpectError(const absl::Status& s, absl::StatusCode code, std::initializer_list<std::string> parts) {
  EXPECT_EQ(s.code(), code) << s;
  for (const std::string& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << "'" << p << "' not in: " << s;
}

class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gut_npy_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  absl::Status ReadError(const std::string& bytes) { return ReadNpy(Write("bad.npy", bytes)).status(); }
  void WriteSet(const NpyArray& trx, const NpyArray& trY, const NpyArray& tex, const NpyArray& teY) {
    Write("train_x.npy", EncodeNpy(trx));
    Write("train_y.npy", EncodeNpy(trY));
    Write("test_x.npy", EncodeNpy(tex));
    Write("test_y.npy", EncodeNpy(teY));
  }
  absl::Status LoadError(NpyTargets t) { return LoadNpyDataset(dir_.string(), t).status(); }

  fs::path dir_;
};

TEST_F(NpyTest, RoundTripsEveryDtypeAndShape) {
  const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {3, 4}, {2, 0, 3}, {1, 2, 1, 3}};
  for (NpyType t : {NpyType::kFloat32, NpyType::kFloat64, NpyType::kUint8, NpyType::kInt32, NpyType::kInt64}) {
    for (const auto& shape : shapes) {
      NpyArray a;
      a.type = t;
      a.shape = shape;
      a.data.resize(static_cast<size_t>(a.count() * NpyItemSize(t)));
      for (size_t k = 0; k < a.data.size(); ++k) a.data[k] = static_cast<uint8_t>(k * 37 + 11);
      const std::string bytes = EncodeNpy(a);
      EXPECT_EQ((bytes.size() - a.data.size()) % 64, 0u) << "numpy aligns the data to 64 bytes";
      auto b = ReadNpy(Write("a.npy", bytes));
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(b->type, t) << NpyTypeName(t);
      EXPECT_EQ(b->shape, shape);
      EXPECT_EQ(b->data, a.data);
    }
  }
  NpyArray scalar = Make<double>(NpyType::kFloat64, {}, {2.5});
  EXPECT_EQ(scalar.count(), 1);
  EXPECT_NE(EncodeNpy(scalar).find("'shape': (), }"), std::string::npos);
  const std::string u8 = EncodeNpy(Make<uint8_t>(NpyType::kUint8, {2}, {1, 2}));
  EXPECT_EQ(u8.substr(0, 10), std::string("\x93NUMPY\x01\x00\x76\x00", 10));
  EXPECT_NE(u8.find("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }   "), std::string::npos);
  EXPECT_EQ(u8.substr(127), std::string("\n\x01\x02", 3));
}

TEST_F(NpyTest, ReadsOtherVersionsKeyOrdersAndSpellings) {
  const std::string six(24, '\x01');
  for (int major : {2, 3}) {
    auto a = ReadNpy(Write("v.npy", Npy("{'shape': (3, 2), 'fortran_order': False, 'descr': '<f4'}", six, major)));
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(a->type, NpyType::kFloat32);
  }
  // Python 2's numpy wrote long ints; "u1" and "<u1" are uint8 too; double quotes are Python as well.
  auto b = ReadNpy(Write("b.npy", Npy("{\"descr\":'<u1',  'fortran_order':False,'shape':(2L,3L,) }   ", "abcdef")));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b->type, NpyType::kUint8);
  auto c = ReadNpy(Write("c.npy", Npy("{'descr': 'u1', 'fortran_order': True, 'shape': (2,)}", "ab")));
  ASSERT_TRUE(c.ok()) << c.status() << " (1-D Fortran order is C order)";
}

TEST_F(NpyTest, RefusesWhatIsNotANumericLittleEndianCArray) {
  const auto dict = [](const std::string& descr, const std::string& shape, const std::string& fortran = "False") {
    return "{'descr': " + descr + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
  };
  ExpectError(ReadError("PK\x03\x04 zip"), absl::StatusCode::kInvalidArgument, {"bad.npy", "not a .npy file"});
  ExpectError(ReadError(""), absl::StatusCode::kInvalidArgument, {"bad.npy", "not a .npy file"});
  ExpectError(ReadError(Npy(dict("'<f4'", "(1,)"), "1234", 4)), absl::StatusCode::kInvalidArgument,
              {"bad.npy", "unknown .npy format version 4.0"});
  ExpectError(ReadError(Npy(dict("'<f4'", "(1,)"), "1234", 1, 1)), absl::StatusCode::kInvalidArgument, {"version 1.1"});
  ExpectError(ReadError(Npy(dict("'<f4'", "(2, 2)", "True"), std::string(16, 'x'))), absl::StatusCode::kInvalidArgument,
              {"bad.npy", "Fortran"});
  ExpectError(ReadError(Npy(dict("'>f4'", "(2,)"), std::string(8, 'x'))), absl::StatusCode::kInvalidArgument,
              {"bad.npy", "big-endian", "astype('<f4')"});
  ExpectError(ReadError(Npy(dict("'>i8'", "(1,)"), std::string(8, 'x'))), absl::StatusCode::kInvalidArgument,
              {"big-endian", "astype('<i8')"});
  ExpectError(ReadError(Npy(dict("'|O'", "(2,)"), std::string(16, 'x'))), absl::StatusCode::kInvalidArgument,
              {"bad.npy", "object arrays"});
  ExpectError(ReadError(Npy(dict("[('a', '<f4'), ('b', '<i8')]", "(2,)"), std::string(24, 'x'))),
              absl::StatusCode::kInvalidArgument, {"bad.npy", "structured"});
  ExpectError(ReadError(Npy(dict("'<c8'", "(1,)"), std::string(8, 'x'))), absl::StatusCode::kInvalidArgument,
              {"'<c8'", "accepted dtypes", "'<f4'", "'|u1'", "'<i8'"});
  ExpectError(ReadError(Npy(dict("'=f4'", "(1,)"), "1234")), absl::StatusCode::kInvalidArgument, {"accepted dtypes"});
  ExpectError(ReadError(Npy(dict("'<f4'", "(3, 4)"), std::string(40, 'x'))), absl::StatusCode::kDataLoss,
              {"bad.npy", "truncated", "(3, 4)", "needs 48 bytes", "has 40"});
  ExpectError(ReadError(Npy(dict("'<f4'", "(2,)"), std::string(9, 'x'))), absl::StatusCode::kInvalidArgument,
              {"bad.npy", "1 trailing bytes"});
  ExpectError(ReadError(Npy(dict("'<i4'", "(2, -3)"))), absl::StatusCode::kInvalidArgument, {"negative"});
  ExpectError(ReadError(Npy(dict("'<f8'", "(4611686018427387904, 4)"))), absl::StatusCode::kInvalidArgument,
              {"overflows"});
  // Never allocated: the claimed 8 TB are checked against the file first.
  ExpectError(ReadError(Npy(dict("'<f8'", "(1000000, 1000000)"), "x")), absl::StatusCode::kDataLoss,
              {"needs 8000000000000 bytes", "has 1"});
}

TEST_F(NpyTest, RefusesHeadersThatAreNotNumpysDict) {
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)";
  for (const std::string& dict :
       {std::string("{'descr': '<f4', 'shape': (1,)}"), ok + ", 'x': 1}", "{'descr': '<f4', " + ok.substr(1) + "}",
        std::string("['descr', '<f4']"), ok, std::string("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': [1]}"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (1)}"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}"), ok + "} junk",
        std::string(100000, '[')}) {
    ExpectError(ReadError(Npy(dict, "1234")), absl::StatusCode::kInvalidArgument,
                {"bad.npy", "header is not the dict numpy writes"});
  }
  // A header length beyond 1 MiB is refused before it is read; one beyond the file is truncation.
  std::string big = Npy("{}", "", 2);
  big[8] = 0, big[9] = 0, big[10] = 0x20, big[11] = 0;
  ExpectError(ReadError(big), absl::StatusCode::kInvalidArgument, {"bad.npy", "1 MiB"});
  big[10] = 0x01;
  ExpectError(ReadError(big), absl::StatusCode::kDataLoss, {"bad.npy", "truncated"});
  ExpectError(ReadError(std::string("\x93NUMPY\x01", 7)), absl::StatusCode::kDataLoss, {"truncated"});
}

TEST_F(NpyTest, RefusesPathsThatAreNotRegularFiles) {
  ExpectError(ReadNpy((dir_ / "none.npy").string()).status(), absl::StatusCode::kNotFound, {"none.npy"});
  ExpectError(ReadNpy(dir_.string()).status(), absl::StatusCode::kInvalidArgument, {dir_.string(), "a directory"});
  const std::string fifo = (dir_ / "fifo.npy").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectError(ReadNpy(fifo).status(), absl::StatusCode::kInvalidArgument, {"fifo.npy", "a FIFO"});
  ExpectError(ReadNpy("/dev/zero").status(), absl::StatusCode::kInvalidArgument, {"/dev/zero", "not a regular file"});
}

TEST_F(NpyTest, LoadsClassificationSets) {
  std::vector<uint8_t> px(4 * 6);
  for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<uint8_t>(k * 10);
  WriteSet(Make(NpyType::kUint8, {4, 2, 3}, px), Make<int64_t>(NpyType::kInt64, {4}, {0, 3, 1, 3}),
           Make<float>(NpyType::kFloat32, {2, 2, 3}, {0.5f, -1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}),
           Make<int32_t>(NpyType::kInt32, {2}, {6, 0}));
  auto tt = LoadNpyDataset(dir_.string(), NpyTargets::kClasses);
  ASSERT_TRUE(tt.ok()) << tt.status();
  for (const Dataset* d : {&tt->train, &tt->test}) {
    EXPECT_EQ(d->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(d->sample_size(), 6);
    EXPECT_EQ(d->num_classes, 7) << "1 + the largest label of train and test";
    EXPECT_EQ(d->channels + d->height + d->width, 0);
    EXPECT_FALSE(d->is_regression());
  }
  EXPECT_EQ(tt->train.size(), 4);
  EXPECT_EQ(tt->train.labels, (std::vector<int64_t>{0, 3, 1, 3}));
  ASSERT_EQ(tt->train.images.size(), 24u);
  EXPECT_FLOAT_EQ(tt->train.images[0], 0.0f);
  EXPECT_FLOAT_EQ(tt->train.images[7], 70 / 255.0f);
  EXPECT_FLOAT_EQ(tt->train.images[23], 230 / 255.0f);
  EXPECT_EQ(tt->test.labels, (std::vector<int64_t>{6, 0}));
  EXPECT_EQ(tt->test.images, (std::vector<float>{0.5f, -1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
}

TEST_F(NpyTest, LoadsRegressionSets) {
  WriteSet(Make<float>(NpyType::kFloat32, {3, 2}, {1, 2, 3, 4, 5, 6}),
           Make<float>(NpyType::kFloat32, {3}, {0.1f, 0.2f, 0.3f}), Make<float>(NpyType::kFloat32, {1, 2}, {7, 8}),
           Make<float>(NpyType::kFloat32, {1}, {-4}));
  auto tt = LoadNpyDataset(dir_.string(), NpyTargets::kRegression);
  ASSERT_TRUE(tt.ok()) << tt.status();
  EXPECT_EQ(tt->train.target_size, 1);
  EXPECT_TRUE(tt->train.target_shape.empty());
  EXPECT_EQ(tt->train.targets, (std::vector<float>{0.1f, 0.2f, 0.3f}));
  EXPECT_EQ(tt->train.size(), 3);
  EXPECT_TRUE(tt->train.labels.empty());
  EXPECT_EQ(tt->train.num_classes, 0);
  EXPECT_EQ(tt->test.targets, (std::vector<float>{-4}));
  EXPECT_EQ(tt->train.shape, (std::vector<int64_t>{2}));

  std::vector<float> y(3 * 4);
  for (size_t k = 0; k < y.size(); ++k) y[k] = k * 0.5f;
  WriteSet(Make<float>(NpyType::kFloat32, {3, 2}, {1, 2, 3, 4, 5, 6}), Make(NpyType::kFloat32, {3, 2, 2}, y),
           Make<float>(NpyType::kFloat32, {1, 2}, {7, 8}), Make<float>(NpyType::kFloat32, {1, 2, 2}, {1, 2, 3, 4}));
  tt = LoadNpyDataset(dir_.string(), NpyTargets::kRegression);
  ASSERT_TRUE(tt.ok()) << tt.status();
  EXPECT_EQ(tt->train.target_size, 4);
  EXPECT_EQ(tt->train.target_shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(tt->train.targets, y);
  EXPECT_EQ(tt->train.size(), 3);
  EXPECT_EQ(tt->test.size(), 1);
}

TEST_F(NpyTest, RefusesBadSets) {
  const NpyArray x = Make<float>(NpyType::kFloat32, {3, 2}, {1, 2, 3, 4, 5, 6});
  const NpyArray tx = Make<float>(NpyType::kFloat32, {1, 2}, {7, 8});
  const NpyArray y = Make<int64_t>(NpyType::kInt64, {3}, {0, 1, 2});
  const NpyArray ty = Make<int64_t>(NpyType::kInt64, {1}, {1});
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kNotFound,
              {"train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"});
  WriteSet(x, y, tx, ty);
  fs::remove(dir_ / "test_y.npy");
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kNotFound,
              {(dir_ / "test_y.npy").string(), "not found", "train_x.npy, train_y.npy, test_x.npy, test_y.npy"});

  WriteSet(x, Make<int64_t>(NpyType::kInt64, {3}, {0, -2, 1}), tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument,
              {"train_y.npy", "label 1 = -2", "negative"});
  WriteSet(x, y, tx, Make<int32_t>(NpyType::kInt32, {1}, {-1}));
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument, {"test_y.npy", "label 0 = -1"});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  WriteSet(Make<float>(NpyType::kFloat32, {3, 2}, {1, 2, 3, 4, 5, nan}), y, tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument, {"train_x.npy", "sample 2", "NaN"});
  WriteSet(x, Make<float>(NpyType::kFloat32, {3}, {0, 1, 2}), tx,
           Make<float>(NpyType::kFloat32, {1}, {std::numeric_limits<float>::infinity()}));
  ExpectError(LoadError(NpyTargets::kRegression), absl::StatusCode::kInvalidArgument,
              {"test_y.npy", "sample 0", "Inf"});
  WriteSet(x, Make<int64_t>(NpyType::kInt64, {2}, {0, 1}), tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument,
              {"train_x.npy", "3 samples", "train_y.npy", "2 labels"});
  WriteSet(x, y, Make<float>(NpyType::kFloat32, {1, 3}, {7, 8, 9}), ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument,
              {"train_x.npy", "(2,)", "test_x.npy", "(3,)", "same shape"});
  WriteSet(Make<double>(NpyType::kFloat64, {3, 2}, {1, 2, 3, 4, 5, 6}), y, tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument,
              {"train_x.npy", "float64", "x.astype(np.float32)"});
  WriteSet(x, Make<float>(NpyType::kFloat32, {3}, {0, 1, 2}), tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument,
              {"train_y.npy", "class ids must be integers", "model.loss: mse"});
  WriteSet(x, Make<uint8_t>(NpyType::kUint8, {3}, {0, 1, 2}), tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument,
              {"train_y.npy", "int64 or int32", "uint8"});
  WriteSet(x, y, tx, ty);
  ExpectError(LoadError(NpyTargets::kRegression), absl::StatusCode::kInvalidArgument,
              {"train_y.npy", "float32", "int64", "astype(np.float32)"});
  WriteSet(x, Make<int64_t>(NpyType::kInt64, {3, 1}, {0, 1, 2}), tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument, {"train_y.npy", "1-D", "(3, 1)"});
  WriteSet(x, y, Make<float>(NpyType::kFloat32, {0, 2}, {}), Make<int64_t>(NpyType::kInt64, {0}, {}));
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument, {"test_x.npy", "no samples"});
  WriteSet(Make<float>(NpyType::kFloat32, {3}, {1, 2, 3}), y, tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument, {"train_x.npy", "at least 2"});
  WriteSet(Make<int32_t>(NpyType::kInt32, {3, 2}, {1, 2, 3, 4, 5, 6}), y, tx, ty);
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument, {"train_x.npy", "float32 or uint8"});
  Write("train_x.npy", "not npy");
  ExpectError(LoadError(NpyTargets::kClasses), absl::StatusCode::kInvalidArgument, {"train_x.npy", "not a .npy"});
}

}  // namespace
}  // namespace gut::core
