// model.name: torchscript in a real cluster: the coordinator hands its model file to agents that
// have none, and the cluster computes what gut-sim computes to the bit (BatchNorm buffers and
// dropout masks included); FetchModel serves only joined ranks of the run, with the join token;
// an agent's own copy is used only when it is the run's file. Runs without Python: the model is
// TorchScript written in C++ (tests/testing/script_models.h).
#include <grpcpp/grpcpp.h>

#include <thread>

#include "agent/agent_data.h"
#include "core/common/sha256.h"
#include "core/config/manifest.h"
#include "gut/v1/coordinator.grpc.pb.h"
#include "sim/simulation.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/testing/script_models.h"

namespace gut {
namespace {

class ModelHandover : public Cluster {
 protected:
  std::string WriteModel() {
    auto m = testing::ScriptBatchNormCnn(8, /*dropout=*/0.2);
    const std::string bytes = testing::SaveToBytes(m);
    testing::WriteBytes(dir_ / "model.pt", bytes);
    return bytes;
  }
  std::string ModelManifest(int agents = 4) {
    return "run: {name: mh, seed: 3, epochs: 2, final_gossip_rounds: 3, threads: 2}\n"
           "agents: {count: " + std::to_string(agents) + "}\n"
           "topology: {graph: ring}\n"
           "algorithm: {name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}\n"
           "data: {path: " + (dir_ / "data").string() + ", partition: dirichlet, alpha: 1.0, batch_size: 16, "
           "test_batch_size: 50}\n"
           "model: {name: torchscript, path: " + (dir_ / "model.pt").string() + "}\n"
           "exchange: {deadline_s: 30}\n";
  }
};

TEST_F(ModelHandover, AgentsReceiveTheModelAndComputeWhatTheSimulatorComputes) {
  WriteModel();
  const std::string manifest = WriteManifest(ModelManifest());
  pid_t coordinator = -1;
  auto agents = StartByHand(manifest, &coordinator);
  ASSERT_EQ(Wait(coordinator, 240), 0) << Read(dir_ / "coordinator.log");
  for (pid_t a : agents) EXPECT_EQ(Wait(a, 30), 0);
  auto config = core::LoadManifest(manifest, {});
  ASSERT_TRUE(config.ok()) << config.status();
  auto sim = sim::Simulation::Create(*config);
  ASSERT_TRUE(sim.ok()) << sim.status();
  ASSERT_TRUE((*sim)->Run(nullptr).ok());
  for (int r = 0; r < 4; ++r) {
    const auto rank_dir = dir_ / ("rank-" + std::to_string(r));
    EXPECT_NE(Read(AgentLog(r)).find("received the run's model file from the coordinator"), std::string::npos);
    const std::string got = Read(rank_dir / "params-final.f32");
    const auto want = (*sim)->Params(r);
    ASSERT_EQ(got.size(), want.size() * sizeof(float)) << "rank " << r;
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0) << "rank " << r << " differs from gut-sim";
    EXPECT_EQ(Read(rank_dir / "model-final.pt"), *(*sim)->ExportModel(r)) << "rank " << r << "'s model-final.pt";
  }
  const std::string summary = Read(dir_ / "out" / "summary.json");
  EXPECT_NE(summary.find(core::Sha256Hex(Read(dir_ / "model.pt"))), std::string::npos) << summary;
}

// A plain gRPC client in the role of an agent, and of a stranger.
TEST_F(ModelHandover, OnlyJoinedRanksOfTheRunGetTheModelWithTheToken) {
  const std::string bytes = WriteModel();
  std::ofstream(dir_ / "token") << "s3cret\n";
  const std::string manifest = WriteManifest(ModelManifest(3));
  coordinator_args_ = {GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                       "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--join-token-file",
                       (dir_ / "token").string(), "--join-timeout-s", "60"};
  Spawn(coordinator_args_, (dir_ / "coordinator.log").string());
  ASSERT_TRUE(WaitForFile(dir_ / "port", 20));
  std::ifstream(dir_ / "port") >> port_;
  auto stub = gut::v1::Coordinator::NewStub(grpc::CreateChannel("127.0.0.1:" + port_, grpc::InsecureChannelCredentials()));
  auto fetch = [&](const std::string& run, int rank, const std::string& token, std::string* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    gut::v1::FetchModelRequest req;
    req.set_run_id(run);
    req.set_rank(rank);
    req.set_join_token(token);
    auto reader = stub->FetchModel(&ctx, req);
    gut::v1::ModelChunk c;
    while (reader->Read(&c)) *out += c.data();
    return reader->Finish();
  };
  // Joins: the barrier answers once all three are in.
  std::vector<gut::v1::JoinResponse> joined(3);
  std::vector<std::thread> ts;
  for (int r = 0; r < 3; ++r) {
    ts.emplace_back([&, r] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      EXPECT_TRUE(stub->Join(&ctx, AgentJoin("a" + std::to_string(r), r, "s3cret"), &joined[r]).ok());
    });
    if (r == 0) {
      // While rank 0 waits in the barrier: rank 1 has never joined, so it gets nothing.
      ASSERT_TRUE(WaitForLog(dir_ / "coordinator.log", "agent 'a0' joined", 20));
      const std::string state = Read(dir_ / "out" / "coordinator-state.json");
      const size_t at = state.find("\"run_id\": \"") + 11;
      std::string early;
      grpc::Status s = fetch(state.substr(at, state.find('"', at) - at), 1, "s3cret", &early);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
      EXPECT_NE(s.error_message().find("never joined"), std::string::npos) << s.error_message();
    }
  }
  for (auto& t : ts) t.join();
  const std::string run = joined[0].run_id();
  EXPECT_EQ(joined[0].model_sha256(), core::Sha256Hex(bytes));
  EXPECT_EQ(joined[0].model_size(), static_cast<int64_t>(bytes.size()));
  std::string got;
  grpc::Status s = fetch("another-run", 0, "s3cret", &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  s = fetch(run, 0, "", &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = fetch(run, 7, "s3cret", &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(got.empty()) << "a refused caller got bytes";
  s = fetch(run, 2, "s3cret", &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(got == bytes) << "the model file came back altered (" << got.size() << " of " << bytes.size() << " bytes)";
  EXPECT_NE(Read(dir_ / "coordinator.log").find("handed the model file"), std::string::npos);
}

// Edge devices: every agent trains on its own .npy files (--data-dir DIR --local-data), of
// different sizes; the rounds per epoch follow the smallest set, the model comes from the
// coordinator, and the run finishes with every agent's model file.
TEST_F(ModelHandover, EdgeAgentsTrainOnTheirOwnNpyFiles) {
  WriteModel();
  fs::create_directories(dir_ / "coordinator-data");
  std::string text = ModelManifest();
  text.replace(text.find("data: {path: " + (dir_ / "data").string()), 13 + (dir_ / "data").string().size(),
               "data: {dataset: npy, path: " + (dir_ / "coordinator-data").string());
  const std::string manifest = WriteManifest(text);
  pid_t coordinator = -1;
  std::vector<std::string> extra = {"--local-data"};
  for (int r = 0; r < 4; ++r) testing::WriteNpyImages(dir_ / ("edge-" + std::to_string(r)), 96 + 32 * r, 30);
  coordinator_args_ = {GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                       "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--linger-s", "1"};
  coordinator = Spawn(coordinator_args_, (dir_ / "coordinator.log").string());
  ASSERT_TRUE(WaitForFile(dir_ / "port", 20));
  std::ifstream(dir_ / "port") >> port_;
  std::vector<pid_t> agents;
  for (int r = 0; r < 4; ++r) {
    agents.push_back(Spawn({GUT_AGENTD, "--coordinator", "127.0.0.1:" + port_, "--rank", std::to_string(r), "--name",
                            "edge" + std::to_string(r), "--data-dir", (dir_ / ("edge-" + std::to_string(r))).string(),
                            "--local-data", "--checkpoint-dir", (dir_ / ("rank-" + std::to_string(r))).string(),
                            "--report-flush-s", "2"},
                           AgentLog(r)));
  }
  ASSERT_EQ(Wait(coordinator, 240), 0) << Read(dir_ / "coordinator.log") << Read(AgentLog(0));
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(Wait(agents[r], 30), 0) << Read(AgentLog(r));
    // 96 samples on the smallest device: 6 rounds of 16 per epoch on every agent.
    EXPECT_NE(Read(AgentLog(r)).find("rank " + std::to_string(r) + ": " + std::to_string(96 + 32 * r) +
                                      " samples, 6 rounds per epoch"),
              std::string::npos)
        << Read(AgentLog(r));
    EXPECT_TRUE(fs::exists(dir_ / ("rank-" + std::to_string(r)) / "model-final.pt"));
  }
}

TEST_F(ModelHandover, AnAgentsOwnCopyMustBeTheRunsFile) {
  const std::string bytes = WriteModel();
  auto other = testing::ScriptMlp(1, 784, 10);
  testing::WriteBytes(dir_ / "other.pt", testing::SaveToBytes(other));
  gut::v1::JoinResponse join;
  join.set_model_sha256(core::Sha256Hex(bytes));
  join.set_model_size(static_cast<int64_t>(bytes.size()));
  agent::AgentOptions o;
  o.model_file = (dir_ / "other.pt").string();
  auto refused = agent::RunModelFile(o, join, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--model " + o.model_file + " is not the run's model: its SHA-256 is " +
                                             core::Sha256Hex(Read(dir_ / "other.pt")) + ", the coordinator's file's " +
                                             core::Sha256Hex(bytes)),
            std::string::npos)
      << refused.status();
  o.model_file = (dir_ / "model.pt").string();
  auto own = agent::RunModelFile(o, join, nullptr);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(own->bytes == bytes);
}

}  // namespace
}  // namespace gut
