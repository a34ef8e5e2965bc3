// The coordinator's control state without gRPC, on a fake clock: the bootstrap barrier's first
// command, a rejoin rolling everyone back to the newest checkpoint they all hold, identities bound
// at Join, lost and stopped agents, the fail and drop policies, and the saved state surviving a
// coordinator restart.
#include "coordinator/membership.h"

#include "gtest/gtest.h"

namespace gut::coordinator {
namespace {

core::RunConfig Config(const std::string& policy = "fail", const std::string& graph = "ring") {
  core::RunConfig c;
  c.num_agents = 4;
  c.graph = graph;
  c.weights = graph == "ring" ? "uniform" : "metropolis";
  c.on_peer_loss = policy;
  c.rejoin_timeout_s = 10;
  return c;
}

class MembershipTest : public ::testing::Test {
 protected:
  void Make(const core::RunConfig& c) {
    config_ = c;
    w_ = std::make_unique<core::MixingMatrix>(*core::BuildMixingMatrix(c));
    m_ = std::make_unique<Membership>(config_, *w_, absl::Seconds(3));
  }
  JoinOutcome JoinAs(int r, const std::string& identity = "", std::vector<int64_t> checkpoints = {}) {
    JoinInfo j;
    j.name = identity.empty() ? "a" + std::to_string(r) : identity;
    j.identity = identity;
    j.address = "127.0.0.1:" + std::to_string(7000 + r);
    j.requested_rank = r;
    j.checkpoints = std::move(checkpoints);
    auto out = m_->Join(j, now_);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : JoinOutcome{};
  }
  absl::Status Beat(int r, std::vector<int64_t> checkpoints, int64_t round, const std::string& identity = "") {
    gut::v1::HeartbeatRequest h;
    h.set_rank(r);
    h.set_incarnation(m_->agents().at(r).incarnation);
    h.set_round(round);
    for (int64_t c : checkpoints) h.add_checkpoints(c);
    return m_->Heartbeat(h, identity, now_);
  }
  void Bootstrap() {
    for (int r = 0; r < 4; ++r) JoinAs(r);
    ASSERT_TRUE(m_->all_joined());
    m_->Begin(now_);
  }
  // A running 4-ring with fault.on_refused_peer = policy, every agent holding rounds 30, 20 and
  // 10; returns the generation.
  uint64_t StartRefusalRun(const std::string& policy) {
    core::RunConfig c = Config("fail");
    c.on_refused_peer = policy;
    Make(c);
    Bootstrap();
    for (int r = 0; r < 4; ++r) EXPECT_TRUE(Beat(r, {30, 20, 10}, 31).ok());
    return m_->generation();
  }

  core::RunConfig config_;
  std::unique_ptr<core::MixingMatrix> w_;
  std::unique_ptr<Membership> m_;
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

TEST_F(MembershipTest, BootstrapGivesEveryAgentItsNeighboursAndTheFirstGeneration) {
  Make(Config());
  for (int r = 0; r < 3; ++r) JoinAs(r);
  EXPECT_FALSE(m_->all_joined());
  EXPECT_EQ(m_->unjoined(), std::vector<int>{3});
  JoinAs(3);
  m_->Begin(now_);
  EXPECT_EQ(m_->generation(), 1u);
  EXPECT_EQ(m_->restore_round(), 0);
  const auto c = m_->CommandFor(2);
  ASSERT_EQ(c.topology().neighbours_size(), 2);
  EXPECT_EQ(c.topology().neighbours(0).rank(), 3);
  EXPECT_EQ(c.topology().neighbours(0).address(), "127.0.0.1:7003");
  EXPECT_DOUBLE_EQ(c.topology().self_weight(), 1.0 / 3);
  EXPECT_EQ(c.action(), gut::v1::RunCommand::CONTINUE);
}

TEST_F(MembershipTest, ARejoinRestoresTheNewestRoundEveryAgentHolds) {
  Make(Config());
  Bootstrap();
  ASSERT_TRUE(Beat(0, {30, 20}, 31).ok());
  ASSERT_TRUE(Beat(1, {30, 20}, 32).ok());
  ASSERT_TRUE(Beat(3, {30, 20}, 31).ok());
  const auto again = JoinAs(2, "", {20, 10});  // restarted: its newest checkpoint is 20
  EXPECT_TRUE(again.rejoin);
  EXPECT_EQ(again.incarnation, 2u);
  EXPECT_FALSE(m_->waiting_for_agents());
  m_->Recover("rejoin", now_);
  EXPECT_EQ(m_->generation(), 2u);
  EXPECT_EQ(m_->restore_round(), 20);
  // The old process of rank 2 is superseded.
  gut::v1::HeartbeatRequest old;
  old.set_rank(2);
  old.set_incarnation(1);
  EXPECT_EQ(m_->Heartbeat(old, "", now_).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MembershipTest, NoCommonCheckpointMeansTheStart) {
  Make(Config());
  Bootstrap();
  ASSERT_TRUE(Beat(0, {30}, 31).ok());
  JoinAs(1, "", {20});
  m_->Recover("rejoin", now_);
  EXPECT_EQ(m_->restore_round(), 0);
}

// Issue 21: a Join the same process retries (its call timed out in the bootstrap barrier) is not
// a new incarnation, before or after the run began; another process under the name is a rejoin.
TEST_F(MembershipTest, AJoinRetriedByTheSameProcessIsNotARejoin) {
  Make(Config());
  auto join = [&](int r, uint64_t nonce) {
    JoinInfo j;
    j.name = "a" + std::to_string(r);
    j.address = "127.0.0.1:7000";
    j.requested_rank = r;
    j.nonce = nonce;
    auto out = m_->Join(j, now_);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : JoinOutcome{};
  };
  for (int r = 0; r < 4; ++r) join(r, 100 + r);
  JoinOutcome again = join(1, 101);
  EXPECT_TRUE(again.retry);
  EXPECT_EQ(again.incarnation, 1u);
  m_->Begin(now_);
  again = join(1, 101);  // the retry lands after the barrier completed
  EXPECT_TRUE(again.retry);
  EXPECT_FALSE(again.rejoin) << "no recovery for a retry";
  EXPECT_EQ(again.incarnation, 1u);
  const JoinOutcome restarted = join(1, 999);
  EXPECT_TRUE(restarted.rejoin);
  EXPECT_FALSE(restarted.retry);
  EXPECT_EQ(restarted.incarnation, 2u);
}

TEST_F(MembershipTest, IdentitiesAreBoundAtJoin) {
  Make(Config());
  for (int r = 0; r < 4; ++r) JoinAs(r, "agent-" + std::to_string(r));
  m_->Begin(now_);
  JoinInfo thief;
  thief.name = "agent-1";
  thief.identity = "agent-5";
  thief.address = "10.0.0.9:1";
  auto stolen = m_->Join(thief, now_);
  EXPECT_EQ(stolen.status().code(), absl::StatusCode::kPermissionDenied);
  thief.name = "agent-5";
  thief.requested_rank = 1;
  EXPECT_EQ(m_->Join(thief, now_).status().code(), absl::StatusCode::kAlreadyExists);
  thief.name = "someone";
  EXPECT_EQ(m_->Join(thief, now_).status().code(), absl::StatusCode::kPermissionDenied)
      << "the agent name must be the certificate's";
  EXPECT_EQ(Beat(1, {}, 5, "agent-5").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(Beat(1, {}, 5, "agent-1").ok());
  EXPECT_EQ(m_->CheckIdentity(0, "agent-1").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(m_->agents().at(1).address, "127.0.0.1:7001") << "a refused join moves nothing";
}

TEST_F(MembershipTest, ASilentAgentFailsTheRunAfterTheRejoinTimeout) {
  Make(Config("fail"));
  Bootstrap();
  for (int r = 0; r < 4; ++r) ASSERT_TRUE(Beat(r, {}, 12).ok());
  now_ += absl::Seconds(2);
  for (int r : {0, 1, 3}) ASSERT_TRUE(Beat(r, {}, 14).ok());
  EXPECT_EQ(m_->Tick(now_), "");
  EXPECT_EQ(m_->CommandFor(1).missing_size(), 0) << "nobody is judged while every agent beats";
  now_ += absl::Seconds(2);  // rank 2 silent for 4 s > 3 s
  for (int r : {0, 1, 3}) ASSERT_TRUE(Beat(r, {}, 14).ok());
  EXPECT_NE(m_->Tick(now_).find("agent 2 ('a2') is silent since round 12"), std::string::npos);
  EXPECT_EQ(m_->agents().at(2).state, AgentState::kLost);
  // Every agent, not only 2's neighbours, learns that 2 is being judged: rank 0 is two hops away
  // from 2 on this ring and must wait for the decision instead of blaming 1 or 3.
  for (int r : {0, 1, 3}) {
    const auto c = m_->CommandFor(r);
    EXPECT_EQ(std::vector<int>(c.missing().begin(), c.missing().end()), std::vector<int>{2}) << "rank " << r;
  }
  EXPECT_TRUE(m_->waiting_for_agents());
  now_ += absl::Seconds(9);  // 13 s after its last heartbeat
  const std::string log = m_->Tick(now_);
  EXPECT_NE(log.find("run failed: agent 2 ('a2') was lost at round 12"), std::string::npos) << log;
  EXPECT_EQ(m_->CommandFor(0).action(), gut::v1::RunCommand::FAIL);
  EXPECT_NE(m_->failure().find("fault.rejoin_timeout_s"), std::string::npos);
}

TEST_F(MembershipTest, ASilentAgentIsDroppedAndTheSurvivorsGetANewTopology) {
  Make(Config("drop"));
  Bootstrap();
  for (int r = 0; r < 4; ++r) ASSERT_TRUE(Beat(r, {24, 12}, 25).ok());
  gut::v1::LeaveRequest bye;
  bye.set_rank(3);
  bye.set_planned(true);
  bye.set_round(25);
  ASSERT_TRUE(m_->Leave(bye, "", now_).ok());
  EXPECT_EQ(m_->agents().at(3).state, AgentState::kAway);
  ASSERT_EQ(m_->CommandFor(1).missing_size(), 1);
  EXPECT_EQ(m_->CommandFor(1).missing(0), 3) << "a stopped agent is judged as well";
  now_ += absl::Seconds(11);
  for (int r : {0, 1, 2}) ASSERT_TRUE(Beat(r, {24, 12}, 25).ok());
  const std::string log = m_->Tick(now_);
  EXPECT_NE(log.find("dropped it: 3 agents go on from round 24"), std::string::npos) << log;
  EXPECT_EQ(m_->generation(), 2u);
  ASSERT_EQ(m_->dropped().size(), 1u);
  EXPECT_EQ(m_->dropped()[0].rank, 3);
  EXPECT_EQ(m_->dropped()[0].round, 24);
  EXPECT_EQ(m_->active_agents(), 3);
  const auto c0 = m_->CommandFor(0);  // 0's neighbours were 1 and 3
  EXPECT_EQ(c0.topology().version(), 2u);
  ASSERT_EQ(c0.topology().neighbours_size(), 1);
  EXPECT_EQ(c0.topology().neighbours(0).rank(), 1);
  EXPECT_DOUBLE_EQ(c0.topology().self_weight() + c0.topology().neighbours(0).weight(), 1.0);
  EXPECT_EQ(c0.topology().dropped(0), 3);
  EXPECT_EQ(c0.missing_size(), 0) << "the judgement is over once it is dropped";
}

// fault.on_refused_peer (issue 20): agents accuse a neighbour whose messages they refused.
absl::Status Accuse(Membership* m, int accuser, int sender, int64_t first_round, absl::Time now,
                    uint64_t generation) {
  gut::v1::HeartbeatRequest h;
  h.set_rank(accuser);
  h.set_incarnation(m->agents().at(accuser).incarnation);
  h.set_generation(generation);
  h.set_round(first_round + 3);
  for (int64_t c : {30, 20, 10}) h.add_checkpoints(c);
  auto* r = h.add_refused();
  r->set_rank(sender);
  r->set_first_round(first_round);
  r->set_count(4);
  return m->Heartbeat(h, "", now);
}

TEST_F(MembershipTest, ASenderMostOfItsNeighboursRefuseIsDroppedFromARoundBeforeTheFirstRefusal) {
  const uint64_t g = StartRefusalRun("drop");
  // One accuser of agent 0 (neighbours 1 and 3) is not a majority: a liar cannot drop anyone.
  ASSERT_TRUE(Accuse(m_.get(), 1, 0, 25, now_, g).ok());
  // Agent 2 is not agent 0's neighbour: its word does not count.
  ASSERT_TRUE(Accuse(m_.get(), 2, 0, 12, now_, g).ok());
  // Nor does an accusation from an old generation.
  ASSERT_TRUE(Accuse(m_.get(), 3, 0, 22, now_, g - 1).ok());
  EXPECT_EQ(m_->Tick(now_), "");
  EXPECT_EQ(m_->generation(), g);
  ASSERT_TRUE(Accuse(m_.get(), 3, 0, 22, now_, g).ok());
  // A majority. The newest round every survivor listed at or before round 22 is 20, but their
  // lists are a heartbeat old: first every survivor is told to keep round 20 ...
  EXPECT_EQ(m_->Tick(now_), "");
  EXPECT_EQ(m_->generation(), g);
  EXPECT_EQ(m_->CommandFor(2).hold_round(), 20);
  // ... and the drop waits until each says so in a heartbeat (holding 20, with 20 in its list).
  auto beat = [&](int r, std::vector<int64_t> held, int64_t holding) {
    gut::v1::HeartbeatRequest h;
    h.set_rank(r);
    h.set_incarnation(m_->agents().at(r).incarnation);
    h.set_generation(g);
    h.set_round(40);
    h.set_holding(holding);
    for (int64_t c : held) h.add_checkpoints(c);
    ASSERT_TRUE(m_->Heartbeat(h, "", now_).ok());
  };
  beat(1, {40, 30, 20}, 20);
  beat(3, {40, 30, 20}, 20);
  beat(2, {40, 30, 20}, 0);
  EXPECT_EQ(m_->Tick(now_), "") << "agent 2 has not said it holds 20 yet";
  beat(2, {40, 30, 20}, 20);
  const std::string log = m_->Tick(now_);
  EXPECT_NE(log.find("agent 0 ('a0') sent model messages that 2 of its 2 neighbours (agent 1, 3) refused as "
                     "implausible, the first in round 22; dropped it: 3 agents go on from round 20"),
            std::string::npos)
      << log;
  EXPECT_EQ(m_->generation(), g + 1);
  EXPECT_EQ(m_->restore_round(), 20) << "a round every survivor holds, before round 22 (30 is after it)";
  EXPECT_EQ(m_->CommandFor(1).hold_round(), 0) << "the hold ends with the new generation";
  EXPECT_EQ(m_->agents().at(0).state, AgentState::kDropped);
  EXPECT_TRUE(m_->failure().empty());
  gut::v1::HeartbeatRequest h;
  h.set_rank(0);
  h.set_incarnation(m_->agents().at(0).incarnation);
  EXPECT_EQ(m_->Heartbeat(h, "", now_).code(), absl::StatusCode::kFailedPrecondition) << "the sender is told";
}

// Issue 21: a coordinator that did not run (SIGSTOP, a paused VM) must not blame the agents for it.
TEST_F(MembershipTest, TimeTheCoordinatorDidNotRunIsNotHeldAgainstAnyAgent) {
  Make(Config("drop"));
  Bootstrap();
  for (int r = 0; r < 4; ++r) ASSERT_TRUE(Beat(r, {12}, 14).ok());
  // Agent 3 was already silent for 2 s when the coordinator stopped for 74 s.
  now_ += absl::Seconds(2);
  for (int r : {0, 1, 2}) ASSERT_TRUE(Beat(r, {12}, 15).ok());
  now_ += absl::Seconds(74);
  ASSERT_TRUE(Beat(0, {12}, 99).ok());  // handled as the coordinator woke, before the monitor ran
  m_->ForgiveStall(absl::Seconds(74), now_);
  EXPECT_EQ(m_->Tick(now_), "") << "nobody is lost on time the coordinator did not observe";
  EXPECT_EQ(m_->agents().at(1).state, AgentState::kAlive);
  EXPECT_EQ(m_->generation(), 1u);
  // The clocks go on from where they stopped: agent 3 (silent 2 s before) is lost after 1 s more,
  // dropped after the rejoin timeout; agent 0, heard at the wake-up, is not moved into the future.
  now_ += absl::Seconds(1.5);
  for (int r : {0, 1, 2}) ASSERT_TRUE(Beat(r, {12}, 99).ok());
  EXPECT_NE(m_->Tick(now_).find("agent 3 ('a3') is silent since round 14"), std::string::npos);
  now_ += absl::Seconds(10);
  for (int r : {0, 1, 2}) ASSERT_TRUE(Beat(r, {12}, 99).ok());
  EXPECT_NE(m_->Tick(now_).find("dropped it"), std::string::npos);
  EXPECT_EQ(m_->dropped().at(0).rank, 3);
}

TEST_F(MembershipTest, ARoundLostBeforeTheHoldArrivedFallsBackToARoundAllStillHold) {
  const uint64_t g = StartRefusalRun("drop");
  for (int r : {1, 3}) ASSERT_TRUE(Accuse(m_.get(), r, 0, 22, now_, g).ok());
  EXPECT_EQ(m_->Tick(now_), "");
  EXPECT_EQ(m_->CommandFor(2).hold_round(), 20);
  // Agent 2's checkpoints moved on (40, 30) before the hold reached it: no round at or before 22
  // is common any more but the start, which needs no file.
  gut::v1::HeartbeatRequest h;
  h.set_rank(2);
  h.set_incarnation(m_->agents().at(2).incarnation);
  h.set_generation(g);
  h.set_holding(20);
  for (int64_t k : {40, 30}) h.add_checkpoints(k);
  ASSERT_TRUE(m_->Heartbeat(h, "", now_).ok());
  const std::string log = m_->Tick(now_);
  EXPECT_NE(log.find("dropped it: 3 agents go on from round 0"), std::string::npos) << log;
  EXPECT_EQ(m_->restore_round(), 0);
}

TEST_F(MembershipTest, RefusedSenderPoliciesFailAndKeep) {
  for (const std::string policy : {"fail", "keep"}) {
    SCOPED_TRACE(policy);
    const uint64_t g = StartRefusalRun(policy);
    for (int r : {1, 3}) ASSERT_TRUE(Accuse(m_.get(), r, 0, 7, now_, g).ok());
    const std::string log = m_->Tick(now_);
    if (policy == "fail") {
      EXPECT_NE(m_->failure().find("agent 0 ('a0') sent model messages that 2 of its 2 neighbours"), std::string::npos);
      EXPECT_NE(m_->failure().find("(fault.on_refused_peer: fail)"), std::string::npos) << m_->failure();
    } else {
      EXPECT_EQ(log, "");
      EXPECT_TRUE(m_->failure().empty());
      EXPECT_EQ(m_->agents().at(0).state, AgentState::kAlive);
    }
  }
}

TEST_F(MembershipTest, DroppingACutVertexFailsTheRunInstead) {
  Make(Config("drop", "chain"));
  Bootstrap();
  for (int r = 0; r < 4; ++r) ASSERT_TRUE(Beat(r, {}, 5).ok());
  now_ += absl::Seconds(20);
  for (int r : {0, 2, 3}) ASSERT_TRUE(Beat(r, {}, 5).ok());
  m_->Tick(now_);
  EXPECT_NE(m_->failure().find("cannot be dropped"), std::string::npos) << m_->failure();
  EXPECT_NE(m_->failure().find("could no longer reach rank 0"), std::string::npos) << m_->failure();
}

// Issue 21: agents asked to stop together (a Ctrl-C) stop at one round, one past the highest round
// any active agent has completed, so that each holds a stop checkpoint of the same round.
TEST_F(MembershipTest, AgentsAskedToStopAreGivenOneStopRound) {
  Make(Config("fail"));
  Bootstrap();
  auto stopping = [&](int r, int64_t round) {
    gut::v1::HeartbeatRequest h;
    h.set_rank(r);
    h.set_incarnation(m_->agents().at(r).incarnation);
    h.set_generation(m_->generation());
    h.set_round(round);
    h.set_stopping(true);
    return m_->Heartbeat(h, "", now_);
  };
  for (int r = 0; r < 4; ++r) ASSERT_TRUE(Beat(r, {}, 20).ok());
  ASSERT_TRUE(stopping(0, 21).ok());
  EXPECT_EQ(m_->CommandFor(0).stop_round(), 0) << "not decided before the others have had a heartbeat to say so";
  now_ += absl::Milliseconds(300);
  ASSERT_TRUE(stopping(1, 22).ok());
  ASSERT_TRUE(stopping(2, 21).ok());
  ASSERT_TRUE(Beat(3, {}, 22).ok());  // not stopping: its round counts all the same
  EXPECT_EQ(m_->Tick(now_), "");
  now_ += absl::Milliseconds(400);
  EXPECT_NE(m_->Tick(now_).find("agent(s) 0, 1, 2 asked to stop: each stops at round 23"), std::string::npos);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(m_->CommandFor(r).stop_round(), 23) << r;
  ASSERT_TRUE(stopping(0, 30).ok());
  now_ += absl::Seconds(1);
  m_->Tick(now_);
  EXPECT_EQ(m_->CommandFor(0).stop_round(), 23) << "decided once";
  EXPECT_TRUE(m_->agents_stopping());
}

TEST_F(MembershipTest, SavedStateSurvivesARestart) {
  Make(Config("drop"));
  Bootstrap();
  for (int r = 0; r < 4; ++r) ASSERT_TRUE(Beat(r, {12}, 14).ok());
  now_ += absl::Seconds(15);
  for (int r : {0, 1, 2}) ASSERT_TRUE(Beat(r, {12}, 14).ok());
  m_->Tick(now_);
  ASSERT_EQ(m_->dropped().size(), 1u);
  const auto saved = m_->ToJson();
  Membership restored(config_, *w_, absl::Seconds(3));
  ASSERT_TRUE(restored.FromJson(saved, now_).ok());
  EXPECT_EQ(restored.generation(), m_->generation());
  EXPECT_EQ(restored.dropped().size(), 1u);
  EXPECT_EQ(restored.agents().at(0).state, AgentState::kUnknown);
  EXPECT_EQ(restored.agents().at(3).state, AgentState::kDropped);
  auto command = restored.CommandFor(0);
  EXPECT_EQ(std::vector<int>(command.missing().begin(), command.missing().end()), (std::vector<int>{0, 1, 2}))
      << "not heard from since the restart: judged until they are";
  command.clear_missing();
  EXPECT_EQ(command.SerializeAsString(), m_->CommandFor(0).SerializeAsString());
  EXPECT_TRUE(restored.waiting_for_agents()) << "not heard from since the restart";
  gut::v1::HeartbeatRequest h;
  for (int r : {0, 1, 2}) {
    h.set_rank(r);
    h.set_incarnation(restored.agents().at(r).incarnation);
    ASSERT_TRUE(restored.Heartbeat(h, "", now_).ok());
  }
  EXPECT_FALSE(restored.waiting_for_agents());
  EXPECT_EQ(restored.CommandFor(0).missing_size(), 0);
  nlohmann::json broken = saved;
  broken.erase("agents");
  EXPECT_EQ(restored.FromJson(broken, now_).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace gut::coordinator
