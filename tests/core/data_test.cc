#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include "core/common/random.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "gtest/gtest.h"
#include "tests/testing/synthetic_data.h"

namespace gut::core {
namespace {

// Reference values printed by numpy 1.24's RandomState(12).
TEST(LegacyRandom, MatchesNumpyRandomState) {
  LegacyRandom r(12);
  EXPECT_DOUBLE_EQ(r.RandomSample(), 0.15416284237967237);
  EXPECT_DOUBLE_EQ(r.RandomSample(), 0.7400496965154048);
  EXPECT_DOUBLE_EQ(r.RandomSample(), 0.26331501518513467);
  LegacyRandom s(12);
  std::vector<int> v(10);
  std::iota(v.begin(), v.end(), 0);
  s.Shuffle(v);
  EXPECT_EQ(v, (std::vector<int>{5, 8, 7, 0, 4, 9, 3, 2, 1, 6}));
  EXPECT_DOUBLE_EQ(s.Gauss(), 0.7531428339492002);
  EXPECT_DOUBLE_EQ(s.Gauss(), -1.534721340208044);
  EXPECT_DOUBLE_EQ(s.Gauss(), 0.0051270781322723565);
  LegacyRandom d(12);
  auto p = d.Dirichlet(0.1, 5);
  EXPECT_NEAR(p[0], 8.8840548537737e-09, 1e-22);
  EXPECT_NEAR(p[3], 0.9999941383389251, 1e-15);
  EXPECT_NEAR(p[4], 3.9753183306038795e-06, 1e-20);
  auto q = d.Dirichlet(2.0, 4);
  EXPECT_NEAR(q[0], 0.2554088565458256, 1e-15);
  EXPECT_NEAR(q[3], 0.3593162141028338, 1e-15);
  EXPECT_NEAR(d.StandardGamma(0.5), 0.018281792334608398, 1e-16);
}

std::vector<int64_t> SyntheticLabels(int n) {
  std::vector<int64_t> l(n);
  for (int k = 0; k < n; ++k) l[k] = (k * 7 + k / 13) % 10;
  return l;
}

int64_t Sum(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

// Reference values from the reference code's non_iid_dirichlet run under numpy 1.24.
TEST(DirichletPartition, MatchesReferenceImplementation) {
  auto a = DirichletPartition(SyntheticLabels(2000), 10, 4, 0.5, 12);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(std::vector<int64_t>((*a)[0].begin(), (*a)[0].begin() + 3), (std::vector<int64_t>{520, 342, 1967}));
  EXPECT_EQ(std::vector<int64_t>((*a)[2].begin(), (*a)[2].begin() + 3), (std::vector<int64_t>{1171, 911, 818}));
  const std::vector<int64_t> sums_a{494241, 492321, 497054, 515384};
  for (int k = 0; k < 4; ++k) EXPECT_EQ(Sum((*a)[k]), sums_a[k]) << k;

  auto b = DirichletPartition(SyntheticLabels(4000), 10, 16, 0.1, 12);  // two groups: 10 + 6 agents
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(std::vector<int64_t>((*b)[1].begin(), (*b)[1].begin() + 3), (std::vector<int64_t>{1033, 3267, 51}));
  const std::vector<int64_t> sums_b{493058, 483415, 495886, 492580, 492144, 491409, 485694, 525098,
                                    516213, 506593, 495111, 488328, 534235, 493524, 496866, 507846};
  for (int k = 0; k < 16; ++k) EXPECT_EQ(Sum((*b)[k]), sums_b[k]) << k;
}

TEST(DirichletPartition, ShardsAreDisjointEqualAndSkewed) {
  const auto labels = SyntheticLabels(6000);
  auto shards = DirichletPartition(labels, 10, 16, 0.1, 3);
  ASSERT_TRUE(shards.ok());
  std::set<int64_t> seen;
  int dominated = 0;
  for (const auto& s : *shards) {
    EXPECT_EQ(s.size(), 6000u / 16);
    for (int64_t i : s) EXPECT_TRUE(seen.insert(i).second) << "index " << i << " in two shards";
    std::map<int64_t, int> count;
    for (int64_t i : s) ++count[labels[i]];
    std::vector<int> c;
    for (auto& [l, k] : count) c.push_back(k);
    std::sort(c.rbegin(), c.rend());
    if (c[0] + (c.size() > 1 ? c[1] : 0) + (c.size() > 2 ? c[2] : 0) > 0.7 * s.size()) ++dominated;
  }
  EXPECT_GE(dominated, 12) << "alpha = 0.1 should give shards dominated by a few classes";
  // IID for contrast: every class present in every shard.
  auto iid = IidPartition(6000, 16, 3);
  ASSERT_TRUE(iid.ok());
  for (const auto& s : *iid) {
    std::set<int64_t> classes;
    for (int64_t i : s) classes.insert(labels[i]);
    EXPECT_EQ(classes.size(), 10u);
  }
}

TEST(DirichletPartition, RejectsBadArguments) {
  const auto labels = SyntheticLabels(100);
  EXPECT_NE(DirichletPartition(labels, 10, 4, 0, 1).status().message().find("alpha must be a positive number"), std::string::npos);
  EXPECT_NE(DirichletPartition(labels, 10, 4, -1, 1).status().message().find("alpha"), std::string::npos);
  EXPECT_FALSE(DirichletPartition(labels, 10, 200, 0.1, 1).ok());
}

TEST(BatchSampler, ReshufflesEveryEpochAndKeepsLastPartialBatch) {
  std::vector<int64_t> shard(70);
  std::iota(shard.begin(), shard.end(), 100);
  BatchSampler s(shard, 32, 7);
  EXPECT_EQ(s.batches_per_epoch(), 3);
  std::vector<std::vector<int64_t>> epochs(2);
  for (int e = 0; e < 2; ++e) {
    std::vector<size_t> sizes;
    for (int b = 0; b < 3; ++b) {
      const auto& batch = s.Next();
      sizes.push_back(batch.size());
      epochs[e].insert(epochs[e].end(), batch.begin(), batch.end());
    }
    EXPECT_EQ(sizes, (std::vector<size_t>{32, 32, 6}));
    std::vector<int64_t> sorted = epochs[e];
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, shard) << "every sample exactly once per epoch";
  }
  EXPECT_NE(epochs[0], epochs[1]) << "order must change between epochs";
  BatchSampler again(shard, 32, 7);
  EXPECT_EQ(again.Next(), std::vector<int64_t>(epochs[0].begin(), epochs[0].begin() + 32)) << "seeded";
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("gut_idx_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::string Header(uint8_t rank, std::vector<uint32_t> dims) {
    std::string h{0, 0, 8, static_cast<char>(rank)};
    for (uint32_t d : dims) {
      h.push_back(static_cast<char>(d >> 24));
      h.push_back(static_cast<char>(d >> 16));
      h.push_back(static_cast<char>(d >> 8));
      h.push_back(static_cast<char>(d));
    }
    return h;
  }
  void WritePlain(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
  }
  void WriteGz(const std::string& name, const std::string& bytes) {
    gzFile f = gzopen((dir_ / name).c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  }
  void WriteSplit(const std::string& prefix, int n, bool gz) {
    std::string img = Header(3, {static_cast<uint32_t>(n), 28, 28});
    std::string lbl = Header(1, {static_cast<uint32_t>(n)});
    for (int i = 0; i < n; ++i) {
      img += std::string(784, static_cast<char>(i % 2 ? 255 : 0));
      lbl.push_back(static_cast<char>(i % 10));
    }
    auto w = [&](const std::string& f, const std::string& b) { gz ? WriteGz(f + ".gz", b) : WritePlain(f, b); };
    w(prefix + "-images-idx3-ubyte", img);
    w(prefix + "-labels-idx1-ubyte", lbl);
  }
  std::filesystem::path dir_;
};

TEST_F(IdxTest, ReadsGzippedAndPlainFilesAndNormalises) {
  WriteSplit("train", 20, true);
  WriteSplit("t10k", 10, false);
  auto tt = LoadMnistFamily(dir_.string());
  ASSERT_TRUE(tt.ok()) << tt.status();
  EXPECT_EQ(tt->train.size(), 20);
  EXPECT_EQ(tt->test.size(), 10);
  EXPECT_EQ(tt->train.labels[13], 3);
  EXPECT_FLOAT_EQ(tt->train.image(0)[0], -1.0f);
  EXPECT_FLOAT_EQ(tt->train.image(1)[783], 1.0f);
}

TEST_F(IdxTest, TruncatedFileIsAClearError) {
  std::string img = Header(3, {10, 28, 28}) + std::string(784 * 9 + 100, 'x');
  WriteGz("a.gz", img);
  auto r = ReadIdx((dir_ / "a.gz").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated: expected 7840 bytes of IDX payload, got 7156"), std::string::npos) << r.status();
}

// Contents damaged after compression: every byte still inflates, only the gzip trailer's CRC-32
// tells. The reader must notice and name the file instead of training on the damage.
TEST_F(IdxTest, CorruptedGzipContentsAreAnErrorNamingTheFile) {
  // Large enough that zlib inflates it in several calls and checks the CRC only at the end.
  std::string img = Header(3, {500, 28, 28});
  for (int i = 0; i < 500 * 784; ++i) img.push_back(static_cast<char>((i * 7) ^ (i >> 9)));
  WriteGz("a.gz", img);
  std::string bytes;
  {
    std::ifstream in(dir_ / "a.gz", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_TRUE(ReadIdx((dir_ / "a.gz").string()).ok());
  // Flip a bit of the stored CRC-32 (the 8th byte from the end): the data inflates as before.
  bytes[bytes.size() - 8] ^= 0x01;
  WritePlain("b.gz", bytes);
  auto r = ReadIdx((dir_ / "b.gz").string());
  ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  // zlib checks the trailer when the last compressed bytes are consumed: while reading the payload
  // or, at the latest, on the read past its end.
  EXPECT_EQ(r.status().message().rfind((dir_ / "b.gz").string() + ": ", 0), 0u) << r.status();
  EXPECT_NE(r.status().message().find("incorrect data check"), std::string::npos) << r.status();
  // And a flip in the middle of the compressed stream.
  bytes[bytes.size() - 8] ^= 0x01;
  bytes[bytes.size() / 2] ^= 0x40;
  WritePlain("c.gz", bytes);
  auto c = ReadIdx((dir_ / "c.gz").string());
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("c.gz"), std::string::npos) << c.status();
}

TEST_F(IdxTest, CorruptHeaderAndLabelsAreErrors) {
  WritePlain("bad", std::string("\x01\x02\x08\x01\x00\x00\x00\x01\x00", 9));
  EXPECT_NE(ReadIdx((dir_ / "bad").string()).status().message().find("not an IDX file"), std::string::npos);
  WritePlain("float", std::string("\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00", 12));
  EXPECT_NE(ReadIdx((dir_ / "float").string()).status().message().find("element type 0xd is not supported"), std::string::npos);
  WritePlain("trail", Header(1, {2}) + "abc");
  EXPECT_NE(ReadIdx((dir_ / "trail").string()).status().message().find("trailing bytes"), std::string::npos);
  // A label outside [0, 10).
  WriteSplit("train", 4, false);
  WriteSplit("t10k", 4, false);
  WritePlain("t10k-labels-idx1-ubyte", Header(1, {4}) + std::string("\x01\x02\x0c\x03", 4));
  auto tt = LoadMnistFamily(dir_.string());
  ASSERT_FALSE(tt.ok());
  EXPECT_NE(tt.status().message().find("label #2 = 12 is outside [0, 10)"), std::string::npos) << tt.status();
}

TEST_F(IdxTest, MissingFilesNameTheExpectedLayout) {
  auto tt = LoadMnistFamily((dir_ / "nope").string());
  EXPECT_NE(tt.status().message().find("does not exist"), std::string::npos);
  auto t2 = LoadMnistFamily(dir_.string());
  EXPECT_NE(t2.status().message().find("has neither train-images-idx3-ubyte.gz nor train-images-idx3-ubyte"), std::string::npos) << t2.status();
}


std::string TempDataDir(const std::string& name) {
  const auto d = std::filesystem::path(::testing::TempDir()) / ("gut-data-" + name + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

// The binary layout: label byte(s), then the R, G and B planes of 32 x 32; §4's normalisation.
TEST(Cifar, LoadsTheBinaryFormatNormalised) {
  for (int classes : {10, 100}) {
    const std::string dir = TempDataDir("cifar" + std::to_string(classes));
    testing::WriteSyntheticCifar(dir, classes, 6, 4);
    auto tt = LoadCifar(dir, classes);
    ASSERT_TRUE(tt.ok()) << tt.status();
    EXPECT_EQ(tt->train.size(), 30);
    EXPECT_EQ(tt->test.size(), 4);
    EXPECT_EQ(tt->train.num_classes, classes);
    EXPECT_EQ(tt->train.sample_size(), 3072);
    EXPECT_EQ(tt->train.augment, Augment::kCifar);
    EXPECT_EQ(tt->test.augment, Augment::kNone);
    // CIFAR-10: file k (1..5) record r has label (3r + k) % 10; CIFAR-100: one file, fine label.
    EXPECT_EQ(tt->train.labels[0], classes == 10 ? 1 : 1);
    EXPECT_EQ(tt->train.labels[7], classes == 10 ? (3 * 1 + 2) % 10 : (7 * 3 + 1) % 100);
    const float mean[2][3] = {{0.4914f, 0.4822f, 0.4465f}, {0.5071f, 0.4867f, 0.4408f}};
    const float stdv[2][3] = {{0.2023f, 0.1994f, 0.2010f}, {0.2675f, 0.2565f, 0.2761f}};
    const int which = classes == 10 ? 0 : 1;
    const int r = 2;  // record 2 of the first file: pixel byte (c * 7 + i + r) % 256
    for (int c = 0; c < 3; ++c)
      for (int i : {0, 5, 1023}) {
        const float want = (((c * 7 + i + r) % 256) / 255.0f - mean[which][c]) / stdv[which][c];
        EXPECT_FLOAT_EQ(tt->train.image(r)[c * 1024 + i], want) << "channel " << c << " pixel " << i;
      }
    EXPECT_FLOAT_EQ(tt->train.pad_value[1], -mean[which][1] / stdv[which][1]);
    EXPECT_EQ(DetectDataset(dir), classes == 10 ? "cifar10" : "cifar100");
  }
}

TEST(Cifar, MissingOrTruncatedFilesAreNamed) {
  const std::string dir = TempDataDir("cifar-bad");
  auto missing = LoadCifar(dir, 10);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot open " + dir + "/data_batch_1.bin; cifar10 expects the binary version's folder (cifar-10-batches-bin"),
            std::string::npos)
      << missing.status();
  testing::WriteSyntheticCifar(dir, 10, 3, 2);
  std::filesystem::resize_file(dir + "/data_batch_3.bin", 3 * 3073 - 100);
  auto cut = LoadCifar(dir, 10);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("data_batch_3.bin has 9119 bytes, not a whole number of 3073-byte cifar10 records"),
            std::string::npos)
      << cut.status();
  EXPECT_NE(LoadDataset("imagenet", dir).status().message().find("data.dataset: unknown data set 'imagenet'; allowed: fashion-mnist, mnist, cifar10, cifar100"),
            std::string::npos);
}


// imagenette2 layout with two classes: solid-colour images of different sizes and aspect ratios.
std::string WriteImageFolder(const std::string& name) {
  const std::string dir = TempDataDir(name);
  const uint8_t colours[2][3] = {{200, 30, 90}, {20, 160, 240}};
  for (const char* split : {"train", "val"})
    for (int c = 0; c < 2; ++c) {
      const std::string cdir = dir + "/" + split + "/n0" + std::to_string(c);
      std::filesystem::create_directories(cdir);
      for (int k = 0; k < (split[0] == 't' ? 3 : 2); ++k) {
        const int h = 240 + 60 * k, w = 320 - 50 * k;
        testing::WriteJpeg(cdir + "/img" + std::to_string(k) + ".JPEG", h, w, [&](int, int) {
          return std::array<uint8_t, 3>{colours[c][0], colours[c][1], colours[c][2]};
        });
      }
    }
  return dir;
}

TEST(ImageFolder, LoadsClassesStoresSquaresAndNormalisesTheCentreCrop) {
  const std::string dir = WriteImageFolder("imagenette");
  EXPECT_EQ(DetectDataset(dir), "imagenette");
  auto tt = LoadImageFolder(dir, 64, 56);
  ASSERT_TRUE(tt.ok()) << tt.status();
  EXPECT_EQ(tt->train.size(), 6);
  EXPECT_EQ(tt->test.size(), 4);
  EXPECT_EQ(tt->train.num_classes, 2);
  EXPECT_EQ(tt->train.labels, (std::vector<int64_t>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(tt->train.sample_size(), 3 * 56 * 56);
  EXPECT_EQ(tt->train.pixels.size(), size_t(6) * 3 * 64 * 64);
  EXPECT_EQ(tt->train.augment, Augment::kImageNet);
  EXPECT_EQ(tt->test.augment, Augment::kNone);
  // A solid image stays solid through the resize (the filter's weights sum to 1) up to JPEG error.
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
  const uint8_t colour[3] = {20, 160, 240};
  std::vector<float> out(3 * 56 * 56);
  tt->test.EvalSample(3, out.data());  // class 1
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 56 * 56; i += 97) {
      const float want = (colour[c] / 255.0f - mean[c]) / stdv[c];
      ASSERT_NEAR(out[c * 56 * 56 + i], want, 4 / 255.0f / stdv[c]) << "channel " << c;
    }
}

// The resampler against exact values: shrinking a 4-pixel ramp to 2 averages pairs, enlarging
// interpolates, and a crop's offset is honoured.
TEST(ImageFolder, ResampleCropIsAnAntialiasedBilinearFilter) {
  const std::vector<uint8_t> ramp{0, 40, 80, 120};  // 1 x 1 x 4
  std::vector<float> two(2), eight(8), crop(2);
  ResampleCrop(ramp.data(), 1, 1, 4, 0, 0, 4, 1, 1, 2, two.data());
  // Shrinking by 2 widens the triangle to radius 2 around output centres 1 and 3; pixel centres
  // are at 0.5, 1.5, ...: weights (3/4, 3/4, 1/4) and (1/4, 3/4, 3/4), renormalised at the edge.
  EXPECT_NEAR(two[0], (0 * 0.75 + 40 * 0.75 + 80 * 0.25) / 1.75, 1e-4);
  EXPECT_NEAR(two[1], (40 * 0.25 + 80 * 0.75 + 120 * 0.75) / 1.75, 1e-4);
  ResampleCrop(ramp.data(), 1, 1, 4, 0, 0, 4, 1, 1, 8, eight.data());
  for (int k = 1; k < 8; ++k) EXPECT_GE(eight[k], eight[k - 1]);
  EXPECT_NEAR(eight[3], 50.0, 1e-4);  // centre 1.75: 3/4 of pixel 1 (centre 1.5), 1/4 of pixel 2
  ResampleCrop(ramp.data(), 1, 1, 4, 2, 0, 2, 1, 1, 2, crop.data());  // the last two pixels as they are
  EXPECT_NEAR(crop[0], 80, 1e-4);
  EXPECT_NEAR(crop[1], 120, 1e-4);
}

TEST(ImageFolder, BadFoldersAndFilesAreNamed) {
  const std::string empty = TempDataDir("imagenette-empty");
  auto none = LoadImageFolder(empty);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("is not an image folder: imagenette expects " + empty + "/train/<class>/*.JPEG"),
            std::string::npos)
      << none.status();
  const std::string dir = WriteImageFolder("imagenette-bad");
  { std::ofstream(dir + "/train/n01/broken.jpg") << "not a jpeg"; }
  auto broken = LoadImageFolder(dir, 64, 56);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find(dir + "/train/n01/broken.jpg is not a readable JPEG"), std::string::npos)
      << broken.status();
  std::filesystem::remove(dir + "/train/n01/broken.jpg");
  std::filesystem::remove_all(dir + "/val/n01");
  auto missing = LoadImageFolder(dir, 64, 56);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("has no folder 'n01'"), std::string::npos) << missing.status();
}

}  // namespace
}  // namespace gut::core
