#include "sim/simulation.h"
#include "sim/plot.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

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
