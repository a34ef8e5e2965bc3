#include "sim/simulation.h"
#include "core/report/plot.h"

#include <set>
#include <tuple>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/train/trainer.h"
#include "core/data/dataset.h"
#include "gtest/gtest.h"
#include "tests/testing/synthetic_data.h"

namespace gut::sim {
namespace {

class SimulationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("gut_sim_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / "data");
    testing::WriteSyntheticDataset((dir_ / "data").string(), 1280, 200);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  core::RunConfig Config(const std::string& algorithm) {
    const std::string yaml = R"(
run: {name: small, seed: 4, epochs: 4, final_gossip_rounds: 10, threads: 2}
agents: {count: 4}
topology: {graph: ring}
algorithm: {name: )" + algorithm + R"(, lr: 0.03, momentum: 0.9, mu: 0.05}
data: {path: )" + (dir_ / "data").string() + R"(, alpha: 1.0, batch_size: 16, test_batch_size: 64}
)";
    auto c = core::ParseManifest(yaml, "test", {});
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }
  std::filesystem::path dir_;
};

TEST_F(SimulationTest, TrainsWritesMetricsAndSummary) {
  const auto config = Config("qg-gutm");
  auto sim = Simulation::Create(config);
  ASSERT_TRUE(sim.ok()) << sim.status();
  EXPECT_EQ((*sim)->rounds_per_epoch(), 20);  // 320 samples per agent / 16
  std::vector<EpochRecord> seen;
  auto summary = (*sim)->Run([&](const EpochRecord& r) { seen.push_back(r); });
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[3].rounds, 80);
  EXPECT_LT(seen[3].train_loss, seen[0].train_loss);
  EXPECT_GT(summary->final_acc_mean, 0.5) << "the synthetic task is easy";
  EXPECT_LE(summary->final_acc_min, summary->final_acc_mean);
  EXPECT_LT(summary->consensus_after_gossip, summary->consensus_before_gossip);
  EXPECT_EQ(summary->rounds, 80 + 10);
  // 4 agents x 2 neighbours x 4 bytes x P per round.
  EXPECT_EQ(summary->bytes_sent, int64_t{90} * 4 * 2 * 4 * 61706);

  const auto csv = (dir_ / "metrics.csv").string(), json = (dir_ / "summary.json").string();
  ASSERT_TRUE(WriteMetricsCsv(csv, summary->epochs).ok());
  ASSERT_TRUE(WriteSummaryJson(json, config, *summary).ok());
  std::ifstream in(csv);
  std::string line;
  int rows = 0;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("epoch,rounds,lr,train_loss,test_acc_mean", 0), 0u);
  while (std::getline(in, line)) ++rows;
  EXPECT_EQ(rows, 4);
  std::ifstream jin(json);
  auto j = nlohmann::json::parse(jin);
  EXPECT_EQ(j["config"]["algorithm"], "qg-gutm");
  EXPECT_DOUBLE_EQ(j["final"]["test_acc_mean"].get<double>(), summary->final_acc_mean);
  EXPECT_EQ(j["final"]["test_acc_per_agent"].size(), 4u);
  EXPECT_FALSE(std::filesystem::exists(json + ".tmp"));
}

// The rate on every epoch line and in metrics.csv is that epoch's rounds over that epoch's
// training seconds, with checkpoints written at every epoch's end (issue 21: it was the
// cumulative rounds over one epoch's time, 22.7, 44.6, 73.1 rounds/s for three equal epochs).
TEST_F(SimulationTest, TheRateIsEachEpochsRoundsOverItsTrainingTime) {
  const auto config = Config("qg-gutm");
  auto sim = Simulation::Create(config);
  ASSERT_TRUE(sim.ok()) << sim.status();
  std::vector<EpochRecord> seen;
  SimRunOptions o;
  o.checkpoint_dir = (dir_ / "ckpt").string();
  ASSERT_TRUE((*sim)->Run([&](const EpochRecord& r) { seen.push_back(r); }, o).ok());
  ASSERT_EQ(seen.size(), 4u);
  for (size_t e = 0; e < seen.size(); ++e) {
    const double rounds = seen[e].rounds - (e == 0 ? 0 : seen[e - 1].rounds);
    const double seconds = seen[e].train_s - (e == 0 ? 0 : seen[e - 1].train_s);
    EXPECT_EQ(rounds, 20);
    ASSERT_GT(seconds, 0);
    EXPECT_NEAR(seen[e].rounds_per_s, rounds / seconds, 1e-6 * rounds / seconds) << "epoch " << e + 1;
  }
}

TEST_F(SimulationTest, SameSeedSameResultAnyThreadCount) {
  auto c1 = Config("gut");
  c1.epochs = 1;
  auto c2 = c1;
  c2.threads = 1;
  auto a = Simulation::Create(c1);
  auto b = Simulation::Create(c2);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->RunTrainingRounds(7).ok());
  ASSERT_TRUE((*b)->RunTrainingRounds(7).ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ((*a)->Params(i), (*b)->Params(i)) << "agent " << i;
  EXPECT_NE((*a)->Params(0), (*a)->Params(1)) << "agents train on different shards";
}

// Lossy codecs train too, and the bytes on the wire shrink as the codec promises.
TEST_F(SimulationTest, Int8CodecTrainsWithAQuarterOfTheBytes) {
  auto fp32 = Config("qg-gutm");
  auto int8 = fp32;
  int8.codec.kind = core::CodecKind::kInt8;
  auto a = Simulation::Create(fp32);
  auto b = Simulation::Create(int8);
  ASSERT_TRUE(a.ok() && b.ok());
  auto sa = (*a)->Run(nullptr);
  auto sb = (*b)->Run(nullptr);
  ASSERT_TRUE(sa.ok() && sb.ok()) << sb.status();
  EXPECT_GT(sb->final_acc_mean, 0.5);
  EXPECT_NEAR(static_cast<double>(sb->bytes_sent) / sa->bytes_sent, 0.25, 0.001);
}

// lowrank factors each weight matrix by the model's tensor layout; gut-sim once handed the codec a
// moved-from model, so every tensor went as fp32 and the "compressed" run sent full bytes.
TEST_F(SimulationTest, LowRankCodecFactorsTheModelsMatrices) {
  auto config = Config("qg-gutm");
  config.epochs = 1;
  auto fp32 = Simulation::Create(config);
  config.codec.kind = core::CodecKind::kLowRank;
  config.codec.lowrank_rank = 2;
  config.consensus_step = 0.5;
  auto low = Simulation::Create(config);
  ASSERT_TRUE(fp32.ok() && low.ok()) << low.status();
  auto sa = (*fp32)->Run(nullptr);
  auto sb = (*low)->Run(nullptr);
  ASSERT_TRUE(sa.ok() && sb.ok()) << sb.status();
  EXPECT_LT(static_cast<double>(sb->bytes_sent) / sa->bytes_sent, 0.2);
}

TEST_F(SimulationTest, MissingDataIsAClearError) {
  auto c = Config("dsgd");
  std::filesystem::remove_all(dir_ / "data");
  std::filesystem::create_directories(dir_ / "data");
  auto sim = Simulation::Create(c);
  ASSERT_FALSE(sim.ok());
  EXPECT_NE(sim.status().message().find("has neither train-images-idx3-ubyte.gz"), std::string::npos) << sim.status();
}

}  // namespace
}  // namespace gut::sim

namespace gut::sim {
namespace {

// Every baseline of docs/algorithms.md §2 trains through gut-sim on real (synthetic) images.
TEST_F(SimulationTest, EveryBaselineTrains) {
  for (const std::string algo : {"gt", "d2", "mt", "relaysgd", "ngm", "cga"}) {
    std::vector<std::string> sets = {"algorithm.name=" + algo, "algorithm.mu=0", "run.epochs=4", "algorithm.lr=0.1"};
    if (algo == "gt" || algo == "d2") sets.push_back("algorithm.momentum=0");
    if (algo == "relaysgd") {
      sets.push_back("topology.graph=chain");
      sets.push_back("topology.weights=metropolis");
    }
    const std::string yaml = "run: {name: b, seed: 4, final_gossip_rounds: 10, threads: 2}\nagents: {count: 4}\n"
                             "algorithm: {name: qg-gutm, lr: 0.03, momentum: 0.9, mu: 0.05}\n"
                             "data: {path: " + (dir_ / "data").string() + ", alpha: 1.0, batch_size: 16, test_batch_size: 64}\n";
    auto config = core::ParseManifest(yaml, "test", sets);
    ASSERT_TRUE(config.ok()) << algo << ": " << config.status();
    auto sim = Simulation::Create(*config);
    ASSERT_TRUE(sim.ok()) << algo << ": " << sim.status();
    auto summary = (*sim)->Run(nullptr);
    ASSERT_TRUE(summary.ok()) << algo << ": " << summary.status();
    EXPECT_LT(summary->epochs.back().train_loss, summary->epochs[0].train_loss) << algo;
    EXPECT_GT(summary->final_acc_mean, 0.3) << algo;
    EXPECT_LT(summary->consensus_after_gossip, summary->consensus_before_gossip) << algo;
  }
}

// CIFAR-10 files through the whole path: binary loader, augmentation, ResNet-20 with EvoNorm.
TEST_F(SimulationTest, CifarResNet20Trains) {
  const auto data = dir_ / "cifar";
  std::filesystem::create_directories(data);
  testing::WriteSyntheticCifar(data.string(), 10, 16, 16);
  const std::string yaml = "run: {name: c, seed: 4, epochs: 1, final_gossip_rounds: 2, threads: 2}\nagents: {count: 4}\n"
                           "algorithm: {name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.05}\n"
                           "data: {dataset: cifar10, path: " + data.string() + ", alpha: 1.0, batch_size: 10, test_batch_size: 8}\n"
                           "model: {name: resnet20, norm: evonorm}\n";
  auto config = core::ParseManifest(yaml, "test", {});
  ASSERT_TRUE(config.ok()) << config.status();
  auto sim = Simulation::Create(*config);
  ASSERT_TRUE(sim.ok()) << sim.status();
  EXPECT_EQ((*sim)->rounds_per_epoch(), 2);  // 80 images, 20 per agent, batches of 10
  auto summary = (*sim)->Run(nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->num_params, 272474);
  EXPECT_TRUE(std::isfinite(summary->epochs[0].train_loss));
}

// §4's CIFAR augmentation: each sample of a minibatch is its image flipped or not, zero-padded by
// 4 and cropped back to 32 x 32 at a random offset; the padding is a black pixel.
TEST_F(SimulationTest, CifarAugmentationIsFlipAndPaddedCrop) {
  const auto data = dir_ / "cifar-aug";
  std::filesystem::create_directories(data);
  testing::WriteSyntheticCifar(data.string(), 10, 16, 4);
  auto tt = core::LoadCifar(data.string(), 10);
  ASSERT_TRUE(tt.ok()) << tt.status();
  auto model = core::GetModelInfo("resnet20");
  std::vector<int64_t> shard(tt->train.size());
  for (size_t k = 0; k < shard.size(); ++k) shard[k] = static_cast<int64_t>(k);
  auto trainer = core::Trainer::Create(*model, &tt->train, shard, 40, 9);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  std::set<std::tuple<int, int, int>> seen;
  std::vector<float> got(3072);
  for (int round = 0; round < 2; ++round) {
    (*trainer)->NextBatch();
    for (size_t b = 0; b < (*trainer)->batch().size(); ++b) {
      (*trainer)->AugmentedSample(static_cast<int>(b), got.data());
      const float* src = tt->train.image((*trainer)->batch()[b]);
      bool found = false;
      for (int flip = 0; flip < 2 && !found; ++flip)
        for (int dy = 0; dy < 9 && !found; ++dy)
          for (int dx = 0; dx < 9 && !found; ++dx) {
            bool same = true;
            for (int c = 0; c < 3 && same; ++c)
              for (int y = 0; y < 32 && same; ++y)
                for (int x = 0; x < 32 && same; ++x) {
                  const int sy = y + dy - 4, sx = x + dx - 4;
                  const float want = (sy < 0 || sy > 31 || sx < 0 || sx > 31)
                                         ? tt->train.pad_value[c]
                                         : src[c * 1024 + sy * 32 + (flip ? 31 - sx : sx)];
                  same = got[c * 1024 + y * 32 + x] == want;
                }
            if (same) {
              found = true;
              seen.insert({flip, dy, dx});
            }
          }
      ASSERT_TRUE(found) << "sample " << b << " is no flip/crop of its image";
    }
  }
  EXPECT_GT(seen.size(), 20u) << "offsets and flips should vary";
  std::set<int> flips;
  for (const auto& [f, y, x] : seen) flips.insert(f);
  EXPECT_EQ(flips.size(), 2u);
}

// ImageNette's training transform: a random-resized crop of the stored square, resampled to
// 224 x 224, flipped half the time. On a horizontal ramp every row of an unflipped sample rises
// and every row of a flipped one falls; crops differ in the range of the ramp they cover.
TEST_F(SimulationTest, ImageNetAugmentationIsAResizedCropAndFlip) {
  const auto dir = dir_ / "folder";
  for (const char* split : {"train", "val"})
    for (const char* cls : {"a", "b"}) {
      std::filesystem::create_directories(dir / split / cls);
      testing::WriteJpeg((dir / split / cls / "ramp.JPEG").string(), 300, 400, [](int, int x) {
        const auto v = static_cast<uint8_t>(x * 255 / 399);
        return std::array<uint8_t, 3>{v, v, v};
      });
    }
  auto tt = core::LoadImageFolder(dir.string());
  ASSERT_TRUE(tt.ok()) << tt.status();
  auto model = core::GetModelInfo("mobilenetv2");
  auto trainer = core::Trainer::Create(*model, &tt->train, {0, 1}, 2, 5);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  std::vector<float> got(3 * 224 * 224);
  int flipped = 0, plain = 0;
  std::set<int> widths;
  for (int round = 0; round < 20; ++round) {
    (*trainer)->NextBatch();
    for (int b = 0; b < 2; ++b) {
      (*trainer)->AugmentedSample(b, got.data());
      const float* row = got.data() + 224 * 112;  // the middle row of channel 0
      const float rise = row[223] - row[0];
      ASSERT_GT(std::abs(rise), 0.05f) << "a crop of a ramp is a ramp";
      for (int x = 8; x < 224; x += 8) {
        if (rise > 0) {
          ASSERT_GE(row[x], row[x - 8] - 0.03f);
        } else {
          ASSERT_LE(row[x], row[x - 8] + 0.03f);
        }
      }
      (rise > 0 ? plain : flipped)++;
      widths.insert(static_cast<int>(std::abs(rise) * 20));
    }
  }
  EXPECT_GT(flipped, 5);
  EXPECT_GT(plain, 5);
  EXPECT_GT(widths.size(), 5u) << "crop sizes should vary";
}

// An ImageNette-layout folder through the whole path: JPEG decoding, stored squares, the resized
// crops, evaluation on centre crops, MobileNet-V2 at 224 x 224 with EvoNorm.
TEST_F(SimulationTest, ImageFolderMobileNetV2Trains) {
  const auto dir = dir_ / "imagenette";
  for (const char* split : {"train", "val"})
    for (int c = 0; c < 2; ++c) {
      const auto cdir = dir / split / ("n0" + std::to_string(c));
      std::filesystem::create_directories(cdir);
      for (int k = 0; k < (split[0] == 't' ? 4 : 1); ++k)
        testing::WriteJpeg((cdir / ("i" + std::to_string(k) + ".JPEG")).string(), 260 + 10 * k, 300, [&](int y, int x) {
          const auto v = static_cast<uint8_t>(c == 0 ? x % 256 : y % 256);
          return std::array<uint8_t, 3>{v, static_cast<uint8_t>(255 - v), 128};
        });
    }
  const std::string yaml = "run: {name: i, seed: 4, epochs: 1, final_gossip_rounds: 1, threads: 2}\nagents: {count: 4}\n"
                           "algorithm: {name: qg-gutm, lr: 0.01, momentum: 0.9, mu: 0.03}\n"
                           "data: {dataset: imagenette, path: " + dir.string() + ", partition: iid, batch_size: 2, test_batch_size: 2}\n"
                           "model: {name: mobilenetv2}\n";
  auto config = core::ParseManifest(yaml, "test", {});
  ASSERT_TRUE(config.ok()) << config.status();
  auto sim = Simulation::Create(*config);
  ASSERT_TRUE(sim.ok()) << sim.status();
  auto summary = (*sim)->Run(nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->num_params, 2296490);
  EXPECT_TRUE(std::isfinite(summary->epochs[0].train_loss));
  EXPECT_GE(summary->final_acc_mean, 0.0);
}

TEST(Plot, RendersEveryPanelAndSeries) {
  std::vector<EpochRecord> e(3);
  for (int k = 0; k < 3; ++k) {
    e[k].epoch = k + 1;
    e[k].evaluated = true;
    e[k].acc_mean = 0.5 + 0.1 * k;
    e[k].acc_min = e[k].acc_mean - 0.05;
    e[k].acc_max = e[k].acc_mean + 0.05;
    e[k].train_loss = 1.0 / (k + 1);
    e[k].consensus = 0.1 / (k + 1);
  }
  const std::string svg = RenderSvg("run <x>", e);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("<polygon"), std::string::npos) << "min-max band";
  size_t lines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++lines;
  EXPECT_EQ(lines, 3u) << "accuracy, loss, consensus";
  EXPECT_NE(svg.find("mean train loss"), std::string::npos);
  EXPECT_NE(svg.find("run &lt;x&gt;"), std::string::npos) << "title escaped";
}

}  // namespace
}  // namespace gut::sim
