#include "core/config/manifest.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "gtest/gtest.h"

namespace gut::core {
namespace {

const char* kGood = R"(
run: {name: t, seed: 3, epochs: 2}
agents: {count: 8}
topology: {graph: ring, weights: uniform}
algorithm: {name: qg-gutm, lr: 0.1, momentum: 0.9, mu: 0.01}
data: {dataset: fashion-mnist, path: /tmp, partition: dirichlet, alpha: 0.1, batch_size: 32}
)";

std::string Error(const std::string& yaml, std::vector<std::string> overrides = {}) {
  auto c = ParseManifest(yaml, "m.yaml", overrides);
  return c.ok() ? std::string("OK") : std::string(c.status().message());
}

void ExpectError(const std::string& msg, const std::string& needle) {
  EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg << "\nexpected: " << needle;
}

TEST(Manifest, ParsesAndAppliesOverrides) {
  auto c = ParseManifest(kGood, "m.yaml", {"run.epochs=5", "algorithm.mu=0.02", "topology.graph=full",
                                           "algorithm.schedule.milestones=[0.3]"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->epochs, 5);
  EXPECT_EQ(c->schedule.epochs, 5);
  EXPECT_DOUBLE_EQ(c->hyper.mu, 0.02);
  EXPECT_EQ(c->graph, "full");
  EXPECT_EQ(c->num_agents, 8);
  EXPECT_EQ(c->seed, 3u);
  EXPECT_EQ(c->schedule.milestones, std::vector<double>{0.3});
  EXPECT_EQ(c->final_gossip_rounds, 51) << "default";
  EXPECT_EQ(c->codec.kind, CodecKind::kFp32) << "default";
  auto i8 = ParseManifest(kGood, "m.yaml", {"exchange.codec=int8", "exchange.zstd=true"});
  ASSERT_TRUE(i8.ok()) << i8.status();
  EXPECT_EQ(i8->codec.kind, CodecKind::kInt8);
  EXPECT_TRUE(i8->codec.zstd);
  EXPECT_EQ(c->shuffle, "agent") << "default";
  // The recorded YAML parses back to the same configuration, the shuffle order included (the
  // agents get theirs from the coordinator's YAML).
  auto again = ParseManifest(ToYaml(*c), "again", {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ToYaml(*again), ToYaml(*c));
  auto ref = ParseManifest(kGood, "m.yaml", {"data.shuffle=reference"});
  ASSERT_TRUE(ref.ok()) << ref.status();
  auto ref_again = ParseManifest(ToYaml(*ref), "again", {});
  ASSERT_TRUE(ref_again.ok()) << ref_again.status();
  EXPECT_EQ(ref_again->shuffle, "reference");
}

TEST(Manifest, BadManifestsNameTheFieldAndAllowedValues) {
  ExpectError(Error(kGood, {"algorithm.name=adam"}),
              "algorithm.name: unknown algorithm 'adam'; allowed: dsgd, dsgd-atc, dsgdm, qg-dsgdm, qg-dsgdm-lin, gut, qg-gutm");
  ExpectError(Error(kGood, {"topology.graph=hypercube"}),
              "topology.graph: unknown graph 'hypercube'; allowed: ring, torus, torus2d, dyck, petersen, full, chain, exponential, edges");
  ExpectError(Error(kGood, {"data.alpha=0"}), "data.alpha must be a positive number");
  ExpectError(Error(kGood, {"data.alpha=-0.5"}), "data.alpha must be a positive number");
  ExpectError(Error(kGood, {"agents.count=1"}), "agents.count must be in [2, 4096], got 1");
  ExpectError(Error(kGood, {"algorithm.mu=0.1"}), "algorithm.mu: qg-gutm needs mu + momentum < 1");
  ExpectError(Error(kGood, {"data.path=/nonexistent/fmnist"}), "data.path: directory '/nonexistent/fmnist' does not exist");
  ExpectError(Error(kGood, {"topology.graph=edges", "agents.count=4", "topology.edges=[[0,1],[2,3]]",
                            "topology.weights=metropolis"}),
              "topology: graph 'edges' is not connected: node 2 cannot be reached from node 0");
  ExpectError(Error(kGood, {"topology.graph=chain"}), "uniform weights need a regular graph, use weights: metropolis");
  ExpectError(Error(kGood, {"topology.graph=dyck"}), "dyck is defined for 32 agents only, got 8");
  ExpectError(Error(kGood, {"data.partition=shards"}), "data.partition: unknown partition 'shards'; allowed: dirichlet, iid");
  ExpectError(Error(kGood, {"data.shuffle=torch"}), "data.shuffle: unknown order 'torch'; allowed: agent, reference");
  ExpectError(Error(kGood, {"model.name=vgg16"}), "model.name: unknown model 'vgg16'; allowed: lenet5, resnet20");
  ExpectError(Error(kGood, {"model.name=vgg11"}), "model.name: vgg11 takes 3x32x32 inputs, the data set has 1x28x28");
  ExpectError(Error(kGood, {"data.dataset=cifar10", "model.name=resnet20", "model.norm=layernorm"}),
              "model.norm: unknown normalisation 'layernorm'; allowed: evonorm, groupnorm");
  ExpectError(Error(kGood, {"data.dataset=svhn"}), "data.dataset: unknown data set 'svhn'; allowed: fashion-mnist, mnist, cifar10, cifar100");
  ExpectError(Error(kGood, {"topology.weights=max-degree"}), "topology.weights: unknown weight rule 'max-degree'");
  ExpectError(Error(kGood, {"run.epochs=0"}), "run.epochs must be in [1, 100000], got 0");
  ExpectError(Error(kGood, {"exchange.codec=fp8"}), "exchange.codec: unknown codec 'fp8'; allowed: fp32, bf16, int8, int4, int2, topk");
  ExpectError(Error(kGood, {"exchange.codec=topk", "exchange.topk_fraction=0"}), "exchange.topk_fraction must be in (0, 1]");
}

TEST(Manifest, UnknownKeysAndWrongTypesAreRefusedWithTheLine) {
  ExpectError(Error("run:\n  epochs: 3\n  epocs: 4\n"), "m.yaml:3: unknown key 'run.epocs'; allowed keys here: name, seed");
  ExpectError(Error("algorithm:\n  lr: fast\n"), "m.yaml:2: algorithm.lr: cannot read 'fast' as a number");
  ExpectError(Error("colour: blue\n"), "unknown key 'colour'");
  ExpectError(Error("run: [1, 2]\n"), "run must be a mapping");
  ExpectError(Error("run: {epochs: 3\n"), "m.yaml:2: YAML syntax error");
  ExpectError(Error(kGood, {"run.epochs"}), "--set 'run.epochs': expected key.path=value");
  ExpectError(Error(kGood, {"topology.edges=[[0,1,2]]", "topology.graph=edges"}), "topology.edges[0] must be a pair [a, b]");
}

TEST(Manifest, DuplicateKeysAndOversizedCountsAreRefused) {
  ExpectError(Error("run:\n  epochs: 3\n  epochs: 4\n"), "m.yaml:3: key 'run.epochs' appears twice");
  ExpectError(Error("agents: {count: 4}\nagents: {count: 8}\n"), "m.yaml:2: key 'agents' appears twice");
  ExpectError(Error(kGood, {"agents.count=1000000000"}), "agents.count must be in [2, 4096], got 1000000000");
  ExpectError(Error(kGood, {"run.epochs=100000000"}), "run.epochs must be in [1, 100000]");
  ExpectError(Error(kGood, {"data.batch_size=10000000"}), "data.batch_size and data.test_batch_size must be at most 65536");
  ExpectError(Error(kGood, {"exchange.int8_chunk=2000000000"}), "exchange.int8_chunk must be at most");
  ExpectError(Error(kGood, {"fault.rejoin_timeout_s=1e9"}), "at most 86400");
  // Issue 21: the agents blocked behind a lost rank wait for the coordinator's decision (RunCommand
  // .missing), so drop works whatever exchange.deadline_s is, the defaults included.
  EXPECT_TRUE(ParseManifest(kGood, "m.yaml", {"fault.on_peer_loss=drop"}).ok());
  EXPECT_TRUE(ParseManifest(kGood, "m.yaml", {"fault.on_peer_loss=drop", "exchange.deadline_s=5"}).ok());
  EXPECT_FALSE(ParseManifest(kGood, "m.yaml", {"fault.on_refused_peer=sometimes"}).ok());
  const auto big = std::filesystem::temp_directory_path() / "gut_big_manifest.yaml";
  {
    std::ofstream out(big);
    out << kGood << "# " << std::string(2 << 20, 'x') << "\n";
  }
  auto c = LoadManifest(big.string(), {});
  ExpectError(std::string(c.status().message()), "a manifest is at most 1 MiB");
  std::filesystem::remove(big);
}

TEST(Manifest, NumericsModes) {
  for (const char* mode : {"native", "portable", "portable-v3"}) {
    auto c = ParseManifest(kGood, "m.yaml", {std::string("run.numerics=") + mode});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->numerics, mode);
    // Written into the handed-over manifest only when it is not the default.
    EXPECT_EQ(ToYaml(*c).find("numerics") != std::string::npos, std::string(mode) != "native");
  }
  ExpectError(Error(kGood, {"run.numerics=fast"}), "run.numerics: unknown mode 'fast'; allowed: native, portable, portable-v3");
}

// What is not a regular file is refused before it is opened: a directory read as an empty manifest
// (a run on every default), /dev/zero never ended, a FIFO waited for a writer.
TEST(Manifest, OnlyRegularFilesAreRead) {
  const auto dir = std::filesystem::temp_directory_path() / ("gut_manifest_kinds_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto fifo = dir / "fifo.yaml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string p : {dir.string(), std::string("/dev/zero"), fifo.string()}) {
    auto c = LoadManifest(p, {});
    ASSERT_FALSE(c.ok()) << p;
    ExpectError(std::string(c.status().message()), "manifest '" + p + "' is not a regular file");
  }
  auto missing = LoadManifest((dir / "none.yaml").string(), {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(LrSchedule, StepDecayAtMilestones) {
  LrSchedule s;
  s.lr0 = 0.1;
  s.epochs = 100;
  EXPECT_DOUBLE_EQ(s.At(0), 0.1);
  EXPECT_DOUBLE_EQ(s.At(49), 0.1);
  EXPECT_NEAR(s.At(50), 0.01, 1e-15);
  EXPECT_NEAR(s.At(74), 0.01, 1e-15);
  EXPECT_NEAR(s.At(75), 0.001, 1e-15);
  s.epochs = 1;  // milestones at epoch 0 are ignored
  EXPECT_DOUBLE_EQ(s.At(0), 0.1);
  s.epochs = 3;
  EXPECT_NEAR(s.At(1), 0.01, 1e-15);
  EXPECT_NEAR(s.At(2), 0.001, 1e-15);
}

// Every shipped example manifest is valid (its data path pointed at an existing folder) and
// builds the model the paper used for it, with §5's parameter count.
TEST(Manifest, EveryExampleIsValid) {
  const std::map<std::string, int64_t> params = {
      {"fmnist-ring16-qggutm", 61706},          {"fmnist-ring16-qggutm-quick", 61706},
      {"cifar10-ring16-resnet20-qggutm", 272474}, {"cifar10-ring32-vgg11-qggutm", 579786},
      {"cifar10-torus32-resnet20-qggutm", 272474}, {"cifar10-dyck32-resnet20-qggutm", 272474},
      {"cifar100-ring16-resnet20-qggutm", 278324}, {"imagenette-ring16-mobilenetv2-qggutm", 2296490}};
  int seen = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(GUT_SOURCE_DIR) + "/deploy/examples")) {
    if (e.path().extension() != ".yaml") continue;
    const std::string name = e.path().stem().string();
    auto c = LoadManifest(e.path().string(), {"data.path=" + ::testing::TempDir()});
    ASSERT_TRUE(c.ok()) << name << ": " << c.status();
    auto m = ModelForRun(*c);
    ASSERT_TRUE(m.ok()) << name << ": " << m.status();
    ASSERT_TRUE(params.count(name)) << name << " is not listed in this test";
    EXPECT_EQ(m->num_params(), params.at(name)) << name;
    ++seen;
  }
  EXPECT_EQ(seen, static_cast<int>(params.size()));
  // A missing data folder names the data set's layout and where to get it.
  auto missing = LoadManifest(std::string(GUT_SOURCE_DIR) + "/deploy/examples/cifar10-ring16-resnet20-qggutm.yaml",
                              {"data.path=/nonexistent/cifar"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("data.path: directory '/nonexistent/cifar' does not exist (point data.path at the unpacked binary CIFAR-10"),
            std::string::npos)
      << missing.status();
}

}  // namespace
}  // namespace gut::core
