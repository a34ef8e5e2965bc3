// A participant that forges its model updates (issue: trust no one): agent 0 of a real 4-agent
// loopback cluster plays the hostile agent with gut-agentd's drill flag, sending 1e30 everywhere
// or all zeros instead of its messages for 8 of the 13 rounds while its own state stays honest.
// Its neighbours (1 and 3) must refuse every forged message, count each under its reason and
// against agent 0 and name agent 0 in their logs; agent 2, who never hears from agent 0, counts
// nothing; no NaN reaches anyone (all parameters finite, every process exits 0). That half runs
// with fault.on_refused_peer: keep (refuse and substitute only); the run is short on purpose: over
// hundreds of rounds the refused steps make the GUT family drift (docs/algorithms.md §11). The
// default, drop, is the second test: the coordinator hears the refusals in the neighbours'
// heartbeats, drops agent 0 and the others restore a round before the first forged message and
// finish without it.
#include <cmath>

#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace gut {
namespace {

// The value of a Prometheus sample line "name{labels} value" in a text page, -1 if absent.
double Sample(const std::string& page, const std::string& series) {
  const size_t at = page.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(page.substr(at + series.size() + 2));
}

std::vector<float> Floats(const fs::path& p) {
  const std::string raw = Read(p);
  std::vector<float> v(raw.size() / 4);
  std::memcpy(v.data(), raw.data(), v.size() * 4);
  return v;
}

class ForgedUpdates : public Cluster, public ::testing::WithParamInterface<const char*> {};

TEST_P(ForgedUpdates, AreRefusedCountedAndBlamedOnTheSenderAndTheRunFinishes) {
  const std::string mode = GetParam();
  const std::string reason = mode == "huge" ? "implausible" : "zero";
  const std::string manifest = WriteManifest(Manifest((dir_ / "data").string(), 2, "fp32", 30,
                                                      "{name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}",
                                                      "{graph: ring, weights: uniform}", "fault: {on_refused_peer: keep}\n"));
  rank_extra_[0] = {"--inject-forged-updates", mode + ":2:8"};
  pid_t coordinator = -1;
  const auto agents = StartByHand(manifest, &coordinator, {"--metrics", "127.0.0.1:0"});
  for (int r = 0; r < 4; ++r) EXPECT_EQ(Wait(agents[r], 120), 0) << "agent " << r << ":\n" << Read(AgentLog(r));
  EXPECT_EQ(Wait(coordinator, 30), 0) << Read(dir_ / "coordinator.log");
  EXPECT_NE(Read(dir_ / "out" / "summary.json").find("\"finished\""), std::string::npos);

  for (int r = 0; r < 4; ++r) {
    const std::string page = Read(dir_ / ("rank-" + std::to_string(r)) / "metrics.prom");
    ASSERT_FALSE(page.empty()) << "rank " << r;
    const bool neighbour = r == 1 || r == 3;
    EXPECT_EQ(Sample(page, "gut_agent_peer_messages_refused_total{peer=\"0\"}"), neighbour ? 8 : -1) << "rank " << r;
    EXPECT_EQ(Sample(page, "gut_agent_frames_rejected_total{reason=\"" + reason + "\"}"), neighbour ? 8 : 0)
        << "rank " << r;
    for (int p : {1, 2, 3}) {
      EXPECT_LE(Sample(page, "gut_agent_peer_messages_refused_total{peer=\"" + std::to_string(p) + "\"}"), 0)
          << "rank " << r << " refused honest agent " << p;
    }
    if (neighbour) {
      EXPECT_NE(Read(AgentLog(r)).find("message from agent 0: "), std::string::npos) << Read(AgentLog(r));
    }
    for (float x : Floats(dir_ / ("rank-" + std::to_string(r)) / "params-final.f32")) {
      ASSERT_TRUE(std::isfinite(x)) << "rank " << r;
    }
  }
}

TEST_P(ForgedUpdates, DropTheSenderAndTheOthersFinishFromARoundBeforeTheFirstForgery) {
  const std::string mode = GetParam();
  // 40 rounds per epoch, checkpoints every 5 rounds: the forgery starts at round 12 and would go
  // on for 100 rounds; the drop must land long before the run ends.
  const fs::path data = dir_ / "big";
  fs::create_directories(data);
  testing::WriteSyntheticDataset(data.string(), 2560, 100);
  const std::string manifest = WriteManifest(
      Manifest(data.string(), 3, "fp32", 30, "{name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}",
               "{graph: ring, weights: uniform}", "checkpoint: {every_rounds: 5}\n"));
  rank_extra_[0] = {"--inject-forged-updates", mode + ":12:100"};
  pid_t coordinator = -1;
  const auto agents = StartByHand(manifest, &coordinator, {"--metrics", "127.0.0.1:0"});
  EXPECT_NE(Wait(agents[0], 120), 0) << "the dropped forger does not finish:\n" << Read(AgentLog(0));
  for (int r = 1; r < 4; ++r) EXPECT_EQ(Wait(agents[r], 120), 0) << "agent " << r << ":\n" << Read(AgentLog(r));
  EXPECT_EQ(Wait(coordinator, 30), 0) << Read(dir_ / "coordinator.log");
  const std::string log = Read(dir_ / "coordinator.log");
  const std::string said = "agent 0 ('a0') sent model messages that 2 of its 2 neighbours (agent 1, 3) refused as "
                           "implausible, the first in round 12; dropped it: 3 agents go on from round ";
  const size_t at = log.find(said);
  ASSERT_NE(at, std::string::npos) << log;
  // A round at or before the first forged message (which one depends on how far the agents got
  // before the coordinator's decision reached them: the membership tests pin that down).
  const int64_t restored = std::stoll(log.substr(at + said.size()));
  EXPECT_LE(restored, 12);
  EXPECT_EQ(restored % 5, 0);
  const auto summary = nlohmann::json::parse(Read(dir_ / "out" / "summary.json"));
  EXPECT_EQ(summary["status"], "finished") << summary.dump(1);
  ASSERT_EQ(summary["dropped"].size(), 1u) << summary.dump(1);
  EXPECT_EQ(summary["dropped"][0]["rank"], 0);
  EXPECT_EQ(summary["dropped"][0]["round"], restored);
  EXPECT_EQ(summary["final"]["test_acc_per_agent"].size(), 3u) << "the three survivors are evaluated";
  for (int r = 1; r < 4; ++r) {
    for (float x : Floats(dir_ / ("rank-" + std::to_string(r)) / "params-final.f32")) {
      ASSERT_TRUE(std::isfinite(x)) << "rank " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ForgedUpdates, ::testing::Values("huge", "zeros"));

}  // namespace
}  // namespace gut
