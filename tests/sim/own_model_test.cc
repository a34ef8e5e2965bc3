// gut-sim on a user's model and arrays (model.name: torchscript, data.dataset: npy): a model with
// dropout draws the same masks whatever thread runs an agent, a stopped run with BatchNorm buffers
// resumes to the bit, a regression names its metric RMSE everywhere, and bad files are refused
// with errors that name them.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/config/manifest.h"
#include "gtest/gtest.h"
#include "sim/simulation.h"
#include "tests/testing/script_models.h"

namespace gut::sim {
namespace {

namespace fs = std::filesystem;

class OwnModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gut_own_model_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    testing::WriteNpyImages(dir_ / "images", 256, 64);
    testing::WriteNpyImages(dir_ / "targets", 256, 64, /*regression=*/true);
    auto cnn = testing::ScriptBatchNormCnn(5, /*dropout=*/0.3);
    testing::WriteBytes(dir_ / "cnn.pt", testing::SaveToBytes(cnn));
    torch::jit::Module mlp = testing::Layer("Regressor", {});
    mlp.register_module("inner", testing::ScriptMlp(6, 784, 1));
    mlp.define("def forward(self, x):\n    return self.inner.forward(torch.flatten(x, 1))\n");
    testing::WriteBytes(dir_ / "mlp.pt", testing::SaveToBytes(mlp));
  }
  void TearDown() override { fs::remove_all(dir_); }

  core::RunConfig Config(const std::string& model, const std::string& data, const std::string& extra = "") {
    const std::string yaml = "run: {name: own, seed: 4, epochs: 2, final_gossip_rounds: 3, threads: 2}\n"
                             "agents: {count: 4}\n"
                             "algorithm: {name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}\n"
                             "data: {dataset: npy, path: " + (dir_ / data).string() +
                             ", partition: iid, batch_size: 16, test_batch_size: 32}\n"
                             "model: " + model + "\n" + extra;
    auto c = core::ParseManifest(yaml, "test", {});
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }

  fs::path dir_;
};

std::string AllParams(const Simulation& s) {
  std::string out;
  for (int i = 0; i < s.num_agents(); ++i) {
    const auto p = s.Params(i);
    out.append(reinterpret_cast<const char*>(p.data()), p.size() * sizeof(float));
  }
  return out;
}

TEST_F(OwnModelTest, DropoutDrawsTheSameMasksOnOneThreadOrTwo) {
  std::string params[2];
  std::vector<double> acc[2];
  for (int threads : {1, 2}) {
    core::RunConfig c = Config("{name: torchscript, path: " + (dir_ / "cnn.pt").string() + "}", "images");
    c.threads = threads;
    auto sim = Simulation::Create(c);
    ASSERT_TRUE(sim.ok()) << sim.status();
    auto sum = (*sim)->Run(nullptr);
    ASSERT_TRUE(sum.ok()) << sum.status();
    params[threads - 1] = AllParams(**sim);
    acc[threads - 1] = sum->final_acc;
  }
  EXPECT_TRUE(params[0] == params[1]) << "the agents' parameters depend on the thread count";
  EXPECT_EQ(acc[0], acc[1]);
  // Dropout is on in training: another seed gives other masks, hence other parameters.
  core::RunConfig c = Config("{name: torchscript, path: " + (dir_ / "cnn.pt").string() + "}", "images");
  c.seed = 5;
  auto other = Simulation::Create(c);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Run(nullptr).ok());
  EXPECT_FALSE(AllParams(**other) == params[0]);
}

TEST_F(OwnModelTest, StoppedAndResumedRunWithBuffersEndsBitIdentical) {
  const core::RunConfig c = Config("{name: torchscript, path: " + (dir_ / "cnn.pt").string() + "}", "images");
  auto whole = Simulation::Create(c);
  ASSERT_TRUE(whole.ok());
  auto expected = (*whole)->Run(nullptr);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const std::string ckpt = (dir_ / "ckpt").string();
  std::atomic<bool> stop{false};
  SimRunOptions first;
  first.checkpoint_dir = ckpt;
  first.stop = &stop;
  auto a = Simulation::Create(c);
  ASSERT_TRUE(a.ok());
  auto stopped = (*a)->Run([&](const EpochRecord& r) { stop = r.epoch == 1; }, first);
  ASSERT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  SimRunOptions again;
  again.checkpoint_dir = ckpt;
  again.resume = true;
  auto b = Simulation::Create(c);
  ASSERT_TRUE(b.ok());
  auto resumed = (*b)->Run(nullptr, again);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_GT((*b)->start_round(), 0);
  EXPECT_TRUE(AllParams(**b) == AllParams(**whole));
  EXPECT_EQ(resumed->final_acc, expected->final_acc) << "the agents' BatchNorm statistics came back from the checkpoint";
  // The models PyTorch would load are the same files.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*(*b)->ExportModel(i), *(*whole)->ExportModel(i)) << "agent " << i;
}

TEST_F(OwnModelTest, RegressionNamesItsMetricRmse) {
  const core::RunConfig c =
      Config("{name: torchscript, path: " + (dir_ / "mlp.pt").string() + ", loss: mse}", "targets");
  auto sim = Simulation::Create(c);
  ASSERT_TRUE(sim.ok()) << sim.status();
  auto sum = (*sim)->Run(nullptr);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_GT(sum->final_acc_mean, 0.0);
  EXPECT_TRUE(std::isfinite(sum->final_acc_mean));
  const std::string json = (dir_ / "summary.json").string(), csv = (dir_ / "metrics.csv").string();
  ASSERT_TRUE(report::WriteSummaryJson(json, c, *sum).ok());
  ASSERT_TRUE(report::WriteMetricsCsv(csv, sum->epochs, core::Durability::kRename, report::Metric::For(c)).ok());
  std::ifstream in(json);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["metric"], "rmse");
  EXPECT_EQ(j["final"]["test_rmse_mean"].get<double>(), sum->final_acc_mean);
  EXPECT_FALSE(j["final"].contains("test_acc_mean"));
  EXPECT_EQ(j["config"]["loss"], "mse");
  EXPECT_EQ(j["config"]["model_sha256"].get<std::string>().size(), 64u);
  std::ifstream rows(csv);
  std::string header;
  std::getline(rows, header);
  EXPECT_NE(header.find("test_rmse_mean,test_rmse_min,test_rmse_max"), std::string::npos) << header;
  EXPECT_NE(report::FormatProgress(sum->epochs[0], report::Metric::For(c)).find("rmse "), std::string::npos);
  EXPECT_EQ(report::FormatProgress(sum->epochs[0], report::Metric::For(c)).find("%"), std::string::npos)
      << "an RMSE is not a percentage";
}

// The libraries read run.numerics' settings when they load, so a process not started in the mode
// cannot switch to it (gut-sim restarts itself first; tests/numerics/ runs it).
TEST_F(OwnModelTest, APortableRunNeedsAProcessInThatMode) {
  core::RunConfig c = Config("{name: lenet5}", "images");
  c.numerics = "portable";
  auto sim = Simulation::Create(c);
  ASSERT_FALSE(sim.ok());
  EXPECT_NE(sim.status().message().find("this process computes in native mode, the run asks for portable"),
            std::string::npos)
      << sim.status();
}

TEST_F(OwnModelTest, BadFilesAreRefusedNamingThem) {
  auto create_error = [&](const std::string& model, const std::string& data, const std::string& partition = "iid") {
    auto c = core::ParseManifest("agents: {count: 4}\nalgorithm: {name: dsgd}\ndata: {dataset: npy, path: " + (dir_ / data).string() +
                                     ", partition: " + partition + "}\nmodel: " + model + "\n",
                                 "test", {});
    if (!c.ok()) return std::string(c.status().message());
    auto s = Simulation::Create(*c);
    return s.ok() ? std::string("no error") : std::string(s.status().message());
  };
  EXPECT_NE(create_error("{name: torchscript}", "images").find("model.path: model.name: torchscript needs the file"),
            std::string::npos);
  EXPECT_NE(create_error("{name: torchscript, path: " + (dir_ / "nope.pt").string() + "}", "images")
                .find("model.path: cannot open '" + (dir_ / "nope.pt").string() + "'"),
            std::string::npos);
  EXPECT_NE(create_error("{name: torchscript, path: " + dir_.string() + "}", "images").find("is not a regular file"),
            std::string::npos);
  EXPECT_NE(create_error("{name: lenet5, path: " + (dir_ / "cnn.pt").string() + "}", "images")
                .find("model.path is for model.name: torchscript"),
            std::string::npos);
  EXPECT_NE(create_error("{name: lenet5, loss: mse}", "targets", "dirichlet").find("data.partition: dirichlet splits by class"),
            std::string::npos);
  EXPECT_NE(create_error("{name: lenet5}", "targets").find("class ids must be integers"), std::string::npos)
      << create_error("{name: lenet5}", "targets");
  fs::remove(dir_ / "images" / "test_y.npy");
  const std::string missing = create_error("{name: torchscript, path: " + (dir_ / "cnn.pt").string() + "}", "images");
  EXPECT_NE(missing.find("test_y.npy"), std::string::npos) << missing;
}

}  // namespace
}  // namespace gut::sim
