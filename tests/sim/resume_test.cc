// gut-sim stopped and resumed from a checkpoint ends bit-identical to an uninterrupted run, for a
// method of each family (replica gossip with a lossy codec, whole-vector tracking, the
// three-phase cross-gradient round, relays over a tree), whether it resumes at the stop or from an
// earlier scheduled checkpoint in the middle of an epoch.
#include <atomic>
#include <filesystem>
#include <ostream>

#include "gtest/gtest.h"
#include "sim/simulation.h"
#include "tests/testing/synthetic_data.h"

namespace gut::sim {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string name, algorithm, topology, codec;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.algorithm << " on " << c.topology << ", " << c.codec; }

class ResumeTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gut_resume_" + std::to_string(::getpid()) + "_" + GetParam().name);
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    testing::WriteSyntheticDataset((dir_ / "data").string(), 640, 100);
  }
  void TearDown() override { fs::remove_all(dir_); }

  core::RunConfig Config() {
    const Case& c = GetParam();
    const std::string yaml = "run: {name: resume, seed: 5, epochs: 3, final_gossip_rounds: 6, threads: 2}\n"
                             "agents: {count: 4}\ntopology: " + c.topology + "\nalgorithm: " + c.algorithm +
                             "\ndata: {path: " + (dir_ / "data").string() +
                             ", alpha: 1.0, batch_size: 16, test_batch_size: 64}\n"
                             "checkpoint: {every_rounds: 7}\nexchange: {codec: " + c.codec + "}\n";
    auto config = core::ParseManifest(yaml, "test", {});
    EXPECT_TRUE(config.ok()) << config.status();
    return *config;
  }

  std::vector<std::vector<float>> Params(const Simulation& s) {
    std::vector<std::vector<float>> p;
    for (int i = 0; i < s.num_agents(); ++i) p.push_back(s.Params(i));
    return p;
  }

  fs::path dir_;
};

TEST_P(ResumeTest, StoppedAndResumedRunEndsBitIdentical) {
  const auto config = Config();
  auto whole = Simulation::Create(config);
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto expected = (*whole)->Run(nullptr);
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_EQ((*whole)->rounds_per_epoch(), 10);

  for (bool from_stop : {true, false}) {
    SCOPED_TRACE(from_stop ? "resumed at the stop (round 20)" : "resumed at round 14 (mid-epoch)");
    const std::string ckpt = (dir_ / (from_stop ? "stop" : "scheduled")).string();
    std::atomic<bool> stop{false};
    SimRunOptions first;
    first.checkpoint_dir = ckpt;
    first.stop = &stop;
    auto a = Simulation::Create(config);
    ASSERT_TRUE(a.ok());
    auto stopped = (*a)->Run([&](const EpochRecord& r) { stop = r.epoch == 2; }, first);
    ASSERT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
    EXPECT_TRUE(fs::exists(ckpt + "/ckpt-000000000020-stop.gutckpt"));
    EXPECT_TRUE(fs::exists(ckpt + "/ckpt-000000000014.gutckpt"));
    EXPECT_TRUE(fs::exists(ckpt + "/ckpt-000000000007.gutckpt"));
    if (!from_stop) fs::remove(ckpt + "/ckpt-000000000020-stop.gutckpt");

    SimRunOptions again;
    again.checkpoint_dir = ckpt;
    again.resume = true;
    auto b = Simulation::Create(config);
    ASSERT_TRUE(b.ok());
    std::vector<EpochRecord> seen;
    auto resumed = (*b)->Run([&](const EpochRecord& r) { seen.push_back(r); }, again);
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    EXPECT_EQ((*b)->start_round(), from_stop ? 20 : 14);
    EXPECT_EQ(Params(**b), Params(**whole)) << "final parameters differ from the uninterrupted run";
    EXPECT_EQ(resumed->final_acc, expected->final_acc);
    EXPECT_EQ(resumed->bytes_sent, expected->bytes_sent);
    ASSERT_EQ(resumed->epochs.size(), 3u);
    ASSERT_EQ(seen.size(), 3u) << "the restored epochs are reported again, then the new one";
    for (size_t e = 0; e < 3; ++e) {
      EXPECT_EQ(resumed->epochs[e].train_loss, expected->epochs[e].train_loss) << "epoch " << e + 1;
      EXPECT_EQ(resumed->epochs[e].acc_mean, expected->epochs[e].acc_mean) << "epoch " << e + 1;
      EXPECT_EQ(resumed->epochs[e].consensus, expected->epochs[e].consensus) << "epoch " << e + 1;
    }
    EXPECT_EQ(resumed->consensus_before_gossip, expected->consensus_before_gossip);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Methods, ResumeTest,
    ::testing::Values(
        Case{"qggutm_int8", "{name: qg-gutm, lr: 0.03, momentum: 0.9, mu: 0.05}", "{graph: ring}", "int8"},
        Case{"qggutm_int8_overlap", "{name: qg-gutm, lr: 0.03, momentum: 0.9, mu: 0.05}", "{graph: ring}",
             "int8, overlap: 1"},
        Case{"dsgdm_topk_overlap", "{name: dsgdm, lr: 0.03, momentum: 0.9}", "{graph: ring}",
             "topk, topk_fraction: 0.1, overlap: 1"},
        Case{"gt", "{name: gt, lr: 0.03}", "{graph: ring}", "fp32"},
        Case{"cga", "{name: cga, lr: 0.03, momentum: 0.9}", "{graph: ring}", "fp32"},
        Case{"relaysgd", "{name: relaysgd, lr: 0.03, momentum: 0.9}", "{graph: chain, weights: metropolis}", "fp32"}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(ResumeErrors, ResumeWithoutACheckpointIsAClearError) {
  const fs::path dir = fs::temp_directory_path() / ("gut_resume_none_" + std::to_string(::getpid()));
  fs::create_directories(dir / "data");
  testing::WriteSyntheticDataset((dir / "data").string(), 320, 50);
  auto config = core::ParseManifest("run: {epochs: 1}\nagents: {count: 3}\nalgorithm: {name: dsgd}\ndata: {path: " + (dir / "data").string() +
                                        ", alpha: 1.0, batch_size: 16}\n",
                                    "test", {});
  ASSERT_TRUE(config.ok()) << config.status();
  auto s = Simulation::Create(*config);
  ASSERT_TRUE(s.ok());
  SimRunOptions o;
  o.checkpoint_dir = (dir / "empty").string();
  o.resume = true;
  auto r = (*s)->Run(nullptr, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("no usable checkpoint in"), std::string::npos) << r.status();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gut::sim
