// Issue 21: who is named when an agent goes missing. The coordinator alone judges a missing rank
// (RunCommand.missing); every agent blocked behind it, its neighbours and theirs two hops away,
// waits for that decision instead of its own exchange.deadline_s. So the rank that went missing is
// the one dropped or named, whatever the deadline, and no live rank is blamed for waiting.
//
// Ring of 4: 0-1-2-3-0. Agent 3 goes missing; 0 and 2 wait for it, 1 waits for 0 and 2.
#include <signal.h>

#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace gut {
namespace {

class Blame : public Cluster {
 protected:
  std::string Text(int epochs, double deadline_s, const std::string& fault) {
    return Manifest((dir_ / "data").string(), epochs, "fp32", deadline_s,
                    "{name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}", "{graph: ring, weights: uniform}",
                    "checkpoint: {every_rounds: 3}\nfault: " + fault + "\n");
  }
  nlohmann::json Summary() { return nlohmann::json::parse(Read(dir_ / "out" / "summary.json")); }
  // Agent 3 goes missing (`signal`) after epoch 2; the others must finish with agent 3 dropped.
  void ExpectDropped(const std::string& text, int signal, double seconds) {
    pid_t coordinator;
    auto agents = StartByHand(WriteManifest(text), &coordinator);
    ASSERT_TRUE(WaitForLog(AgentLog(3), "epoch 2/", 120)) << Read(AgentLog(3));
    ASSERT_EQ(kill(agents[3], signal), 0);
    for (int r : {0, 1, 2}) {
      EXPECT_EQ(Wait(agents[r], seconds), 0) << Read(AgentLog(r));
      EXPECT_EQ(Read(AgentLog(r)).find("no message from agent"), std::string::npos) << Read(AgentLog(r));
    }
    EXPECT_EQ(Wait(coordinator, 30), 0) << Read(dir_ / "coordinator.log");
    // The neighbours' logs say what happened: a hung agent stopped answering (keepalive), a killed
    // one closed its connection.
    const std::string said = signal == SIGSTOP ? "agent 3 stopped answering" : "agent 3 closed its connection";
    EXPECT_NE((Read(AgentLog(0)) + Read(AgentLog(2))).find(said), std::string::npos) << Read(AgentLog(0));
    const auto summary = Summary();
    EXPECT_EQ(summary["status"], "finished") << summary.dump(1);
    ASSERT_EQ(summary["dropped"].size(), 1u) << summary.dump(1);
    EXPECT_EQ(summary["dropped"][0]["rank"], 3) << summary.dump(1);
    EXPECT_EQ(summary["final"]["agents"], 3) << summary.dump(1);
  }
};

// Before: the validator refused drop with deadline_s < rejoin_timeout_s + 15, and without that
// rule agent 1 gave up after 6 s, naming its live neighbours 0 and 2, before the drop at 3 + 12 s.
TEST_F(Blame, DropWithADeadlineShorterThanTheRejoinWindowDropsTheLostRank) {
  ExpectDropped(Text(8, 6, "{on_peer_loss: drop, rejoin_timeout_s: 12}"), SIGKILL, 120);
}

// The manifest's defaults (exchange.deadline_s 60, fault.rejoin_timeout_s 60) raced: the two-hop
// rank's deadline and the coordinator's drop ended at about the same time.
TEST_F(Blame, DropAtTheDefaultTimeoutsDropsTheLostRank) {
  ExpectDropped(Text(8, 60, "{on_peer_loss: drop}"), SIGKILL, 240);
}

// A hung agent (SIGSTOP: its streams stay open, so nobody sees them close) is dropped too.
TEST_F(Blame, AHungAgentIsDropped) {
  ExpectDropped(Text(8, 6, "{on_peer_loss: drop, rejoin_timeout_s: 4}"), SIGSTOP, 120);
}

// With fail, the run fails naming the hung agent: before, its neighbours' deadlines (6 s) ended
// long before the coordinator's verdict (3 + 8 s) and the summary said "agent 0: ... no message
// from agent(s) 3", naming a live rank first.
TEST_F(Blame, AHungAgentIsTheRankNamedWhenTheRunFails) {
  pid_t coordinator;
  auto agents = StartByHand(WriteManifest(Text(40, 6, "{on_peer_loss: fail, rejoin_timeout_s: 8}")), &coordinator);
  ASSERT_TRUE(WaitForLog(AgentLog(3), "epoch 2/", 120)) << Read(AgentLog(3));
  ASSERT_EQ(kill(agents[3], SIGSTOP), 0);
  for (int r : {0, 1, 2}) {
    EXPECT_EQ(Wait(agents[r], 60), 1) << Read(AgentLog(r));
    EXPECT_NE(Read(AgentLog(r)).find("agent 3 ('a3') was lost at round"), std::string::npos) << Read(AgentLog(r));
    EXPECT_EQ(Read(AgentLog(r)).find("no message from agent"), std::string::npos) << Read(AgentLog(r));
  }
  EXPECT_EQ(Wait(coordinator, 30), 1) << Read(dir_ / "coordinator.log");
  const auto summary = Summary();
  EXPECT_EQ(summary["status"], "failed") << summary.dump(1);
  EXPECT_EQ(summary["failure"].get<std::string>().rfind("agent 3 ('a3') was lost at round", 0), 0u) << summary.dump(1);
}

}  // namespace
}  // namespace gut
