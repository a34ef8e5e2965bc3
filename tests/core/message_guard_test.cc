// The receiver's plausibility check of neighbour messages (core/exchange/message_guard.h), alone
// and inside InProcessExchange, where gut-sim meets it.
#include "core/exchange/message_guard.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "core/exchange/in_process_exchange.h"
#include "core/topology/graph.h"
#include "core/topology/mixing.h"
#include "gtest/gtest.h"

namespace gut::core {
namespace {

TEST(MessageGuard, RefusesNonFiniteHugeAndZeroMessagesOnly) {
  MessageGuard<float> g;
  std::vector<float> own(4, 0.5f);
  g.Sent(0, -1, own);
  // Without a model scale only non-finite messages are refused.
  EXPECT_EQ(g.Check(0, 0, std::vector<float>{1e30f, 0, 0, 0}).why, Implausible::kNone);
  EXPECT_EQ(g.Check(0, 0, std::vector<float>{0, 0, 0, 0}).why, Implausible::kNone);
  EXPECT_EQ(g.Check(0, 0, std::vector<float>{1, std::nanf(""), 0, 0}).why, Implausible::kNonFinite);
  EXPECT_EQ(g.Check(0, 0, std::vector<float>{std::numeric_limits<float>::infinity(), 0, 0, 0}).why,
            Implausible::kNonFinite);

  g.NoteModelNorm(2.0);
  EXPECT_EQ(g.Check(0, 0, std::vector<float>{199, 0, 0, 0}).why, Implausible::kNone);  // under 100x the model
  const GuardVerdict big = g.Check(0, 0, std::vector<float>{201, 0, 0, 0});
  EXPECT_EQ(big.why, Implausible::kTooLarge);
  EXPECT_NE(big.reason.find("100x"), std::string::npos) << big.reason;
  const GuardVerdict zero = g.Check(1, 0, std::vector<float>{0, 0, 0, 0});
  EXPECT_EQ(zero.why, Implausible::kZero);
  EXPECT_STREQ(ImplausibleName(zero.why), "zero");
  // A zero message is fine when ours is negligible too (converged to rounding noise).
  g.Sent(0, -1, std::vector<float>{1e-9f, 0, 0, 0});
  EXPECT_EQ(g.Check(1, 0, std::vector<float>{0, 0, 0, 0}).why, Implausible::kNone);
  // Another slot has its own message: none sent there, so no zero rule.
  EXPECT_EQ(g.Check(1, 3, std::vector<float>{0, 0, 0, 0}).why, Implausible::kNone);
}

TEST(MessageGuard, TheSubstituteIsWhatTheReceiverSentThatNeighbour) {
  MessageGuard<double> g;
  g.Sent(1, 0, std::vector<double>{1, 2});  // SendTo neighbour 0
  g.Sent(1, 1, std::vector<double>{3, 4});  // SendTo neighbour 1
  EXPECT_EQ(g.Substitute(1, 1, 2)[0], 3);
  EXPECT_EQ(g.Substitute(0, 1, 2)[1], 2);
  g.Sent(1, -1, std::vector<double>{5, 6});  // a broadcast replaces both
  EXPECT_EQ(g.Substitute(0, 1, 2)[0], 5);
  EXPECT_EQ(g.Substitute(1, 1, 2)[1], 6);
  EXPECT_EQ(g.Substitute(0, 2, 2)[0], 0);  // nothing sent in slot 2: zeros
}

// In gut-sim's exchange: agent 0 broadcasts NaN; its neighbours use their own message instead and
// count it, agent 0 (who receives honest messages) counts nothing.
TEST(MessageGuard, InProcessExchangeReplacesAndCountsLikeTheWire) {
  const auto w = MixingMatrix::Build(*MakeRing(3), WeightRule::kUniform);
  InProcessExchange<float> ex(w);
  std::vector<std::vector<float>> out(3, std::vector<float>(8));
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&, i] {
      std::vector<float> m(8, static_cast<float>(i + 1));
      if (i == 0) m[3] = std::nanf("");
      ex.Endpoint(i).NoteModelNorm(10);
      ASSERT_TRUE(ex.Endpoint(i).Broadcast(0, 0, absl::MakeSpan(m)).ok());
      ASSERT_TRUE(ex.Endpoint(i).ReceiveWeightedSum(0, 0, absl::MakeSpan(out[i])).ok());
    });
  }
  for (auto& t : ts) t.join();
  const float third = static_cast<float>(w.weight(1, 0));
  EXPECT_EQ(out[1][3], third * 2.0f + third * 3.0f);  // agent 0's NaN replaced by agent 1's own 2
  EXPECT_TRUE(std::isnan(out[0][3]) == false);
  EXPECT_EQ(ex.messages_refused(0), 0);
  EXPECT_EQ(ex.messages_refused(1), 1);
  EXPECT_EQ(ex.messages_refused(2), 1);
  const RefusalLog log = ex.Refusals();
  EXPECT_EQ(log.by_sender.at(0), 2);
  EXPECT_EQ(log.by_sender.count(1) + log.by_sender.count(2), 0u);
  EXPECT_EQ(log.first_sender, 0);
  EXPECT_EQ(log.first_round, 0);
}

// A divergence after refusals names the sender first (the learning-rate advice comes after).
TEST(MessageGuard, TheDivergenceHintNamesWhoseMessagesWereRefused) {
  RefusalLog log;
  EXPECT_EQ(RefusalHint(log), "");
  log.Add(5, 40);  // the drift spreads: later refusals of other senders
  log.Add(3, 20);
  log.Add(3, 21);
  RefusalLog other;
  other.Add(4, 30);
  log.Merge(other);
  const std::string h = RefusalHint(log);
  EXPECT_NE(h.find("the first from agent 3 in round 20 (2 from it, 4 in all"), std::string::npos) << h;
  EXPECT_NE(h.find("hostile agent 3, not the learning rate"), std::string::npos) << h;
}

}  // namespace
}  // namespace gut::core
